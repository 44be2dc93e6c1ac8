"""Best-shot policies and posting filters (SPEC §3 step 7).

A camera job offers every detection of a track as a `ShotCandidate` (after the `PostFilter` let it
through) and posts whatever the policy returns:

- `OverallBest` (`overall_only=True`): exactly one shot per track, its best, when the track ends or
  at `finish()` (end of file).
- `EveryIntervalBest` (`realtime_every_interval=True`): the best shot of every `realtime_interval_s`
  window of the track, windows counted from the track's first candidate. A window's shot is posted
  when the track's first candidate of a later window arrives, or when the track ends.
- `ImprovingBest` (realtime, the default): the first candidate of a track at once, then a better
  one only when its quality is at least 0.1 above the last shot posted, or when
  `realtime_interval_s` has passed since that post (the best held back meanwhile is posted then,
  or when the track ends).

Ties in quality keep the earlier candidate. Tracks are identified by the tracker's integer ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from actors.tracking import inside_region

REASON_OUTSIDE_ROI = "outside_roi"
REASON_TOO_SMALL = "too_small"
REASON_TOO_LARGE = "too_large"
REASON_LOW_QUALITY = "low_quality"


@dataclass(frozen=True, eq=False)
class ShotCandidate:
    """One face of a track that could be posted. bbox is x1, y1, x2, y2 in frame pixels; time_s is
    stream seconds; payload is the caller's (the aligned crop, landmarks, wall time...)."""

    track_id: int
    time_s: float
    quality: float
    bbox: Sequence[float] | np.ndarray
    payload: Any = None


def face_size(bbox: Sequence[float] | np.ndarray) -> float:
    """Face size in pixels: the longer side of the box, as the detector's `min_face_size` uses."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return max(x2 - x1, y2 - y1)


@dataclass(frozen=True)
class PostFilter:
    """Whether a face may be posted at all; `reason` names the first rule it breaks, in the order
    roi, min_face_size, max_face_size, min_quality."""

    roi: Sequence[float] | None = None
    min_quality: float = 0.0
    min_face_size: float = 0.0
    max_face_size: float | None = None

    def reason(self, face: ShotCandidate) -> str | None:
        """None when the face may be posted, else one of the REASON_* codes (for statistics)."""
        if not inside_region(np.asarray(face.bbox), self.roi)[0]:
            return REASON_OUTSIDE_ROI
        size = face_size(face.bbox)
        if size < self.min_face_size:
            return REASON_TOO_SMALL
        if self.max_face_size is not None and size > self.max_face_size:
            return REASON_TOO_LARGE
        if face.quality < self.min_quality:
            return REASON_LOW_QUALITY
        return None


class BestShotPolicy(Protocol):
    def offer(self, candidate: ShotCandidate) -> list[ShotCandidate]:
        """Take one candidate; the shots to post now."""
        ...

    def end_track(self, track_id: int) -> list[ShotCandidate]:
        """The track ended; the shots it still owes, and the policy forgets it."""
        ...

    def finish(self) -> list[ShotCandidate]:
        """End every track (end of file), by track id."""
        ...


class OverallBest:
    """One shot per track: its best, when it ends."""

    def __init__(self) -> None:
        self._best: dict[int, ShotCandidate] = {}

    def offer(self, candidate: ShotCandidate) -> list[ShotCandidate]:
        best = self._best.get(candidate.track_id)
        if best is None or candidate.quality > best.quality:
            self._best[candidate.track_id] = candidate
        return []

    def end_track(self, track_id: int) -> list[ShotCandidate]:
        best = self._best.pop(track_id, None)
        return [] if best is None else [best]

    def finish(self) -> list[ShotCandidate]:
        return [shot for track_id in sorted(self._best) for shot in self.end_track(track_id)]


class EveryIntervalBest:
    """The best shot of every `interval_s` window of a track."""

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"realtime_interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._first_time: dict[int, float] = {}
        self._pending: dict[int, tuple[int, ShotCandidate]] = {}  # track -> (window, best so far)

    def offer(self, candidate: ShotCandidate) -> list[ShotCandidate]:
        track_id = candidate.track_id
        first = self._first_time.setdefault(track_id, candidate.time_s)
        window = math.floor((candidate.time_s - first) / self.interval_s)
        pending = self._pending.get(track_id)
        if pending is None or window > pending[0]:
            self._pending[track_id] = (window, candidate)
            return [] if pending is None else [pending[1]]
        if candidate.quality > pending[1].quality:
            self._pending[track_id] = (pending[0], candidate)
        return []

    def end_track(self, track_id: int) -> list[ShotCandidate]:
        self._first_time.pop(track_id, None)
        pending = self._pending.pop(track_id, None)
        return [] if pending is None else [pending[1]]

    def finish(self) -> list[ShotCandidate]:
        return [shot for track_id in sorted(self._first_time) for shot in self.end_track(track_id)]


class ImprovingBest:
    """The first shot of a track at once, then a better one only when it is clearly better
    (quality at least `min_gain` above the last shot posted) or `interval_s` has passed since that
    post; a better shot held back meanwhile is posted when the interval is up or the track ends.
    So a track never yields one event per slightly better frame, and its early first post can still
    be corrected."""

    def __init__(self, interval_s: float = 1.0, min_gain: float = 0.1) -> None:
        self.interval_s, self.min_gain = interval_s, min_gain
        self._posted: dict[int, ShotCandidate] = {}
        self._posted_at: dict[int, float] = {}  # stream time of the post (a held shot is older)
        self._held: dict[int, ShotCandidate] = {}

    def offer(self, candidate: ShotCandidate) -> list[ShotCandidate]:
        track_id = candidate.track_id
        posted = self._posted.get(track_id)
        if posted is None:
            return self._post(candidate, candidate.time_s)
        held = self._held.get(track_id)
        best = candidate if candidate.quality > max(posted.quality, held.quality if held else -1.0) else held
        if best is None:
            return []
        clear_gain = best.quality >= posted.quality + self.min_gain - 1e-9
        if clear_gain or candidate.time_s - self._posted_at[track_id] >= self.interval_s:
            return self._post(best, candidate.time_s)
        self._held[track_id] = best
        return []

    def _post(self, shot: ShotCandidate, now_s: float) -> list[ShotCandidate]:
        self._posted[shot.track_id] = shot
        self._posted_at[shot.track_id] = now_s
        self._held.pop(shot.track_id, None)
        return [shot]

    def end_track(self, track_id: int) -> list[ShotCandidate]:
        self._posted.pop(track_id, None)
        self._posted_at.pop(track_id, None)
        held = self._held.pop(track_id, None)
        return [] if held is None else [held]

    def finish(self) -> list[ShotCandidate]:
        return [shot for track_id in sorted(set(self._posted) | set(self._held)) for shot in self.end_track(track_id)]


def best_shot_policy(
    overall_only: bool = True, realtime_interval_s: float = 1.0, realtime_every_interval: bool = False
) -> BestShotPolicy:
    """The policy a camera's stream settings ask for."""
    if overall_only:
        return OverallBest()
    if realtime_every_interval:
        return EveryIntervalBest(realtime_interval_s)
    return ImprovingBest(realtime_interval_s)
