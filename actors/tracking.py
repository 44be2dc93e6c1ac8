"""IoU face tracker (SPEC §3 step 5) and the region-of-tracking filter applied before it.

Detections are matched to tracks greedily, highest IoU first (ties broken by track id, then by
detection index, so results are deterministic). With a handful of faces per frame this gives the
same answer as an optimal assignment in practice and needs no SciPy. A track that goes without a
detection for more than `miss_interval_s` ends; a face seen again after that starts a new track.

Between detections a track moves on at its measured velocity (a constant-velocity prediction, the
cheap half of a Kalman filter): a live camera detects only a few frames a second (`detect_fps`), and a
face that moves its own width in that time would otherwise no longer overlap its last box and start a
second track (a second event for the same person). `predict` gives the boxes on the frames between
detections; `expire` ends tracks on those frames without a detection. What IoU leaves unmatched is
matched by distance in a second pass (a face of about the same size within one face width), so a fast
face's second detection still joins its track and gives it a velocity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Track:
    """One tracked face. Boxes are x1, y1, x2, y2 in frame pixels; times are stream seconds."""

    track_id: int
    first_time_s: float
    last_time_s: float
    first_box: np.ndarray
    box: np.ndarray
    hits: int = 1
    payload: Any = field(default=None, repr=False)  # the payload of the latest detection
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box corners, pixels per second

    def predicted(self, t_s: float) -> np.ndarray:
        """The box at stream time `t_s`, moved on at the track's velocity from its last detection."""
        return self.box + self.velocity * max(0.0, t_s - self.last_time_s)


@dataclass(frozen=True)
class TrackUpdate:
    """What one `IouTracker.update` did: (track_id, detection index) per detection, in detection
    order, and the tracks that ended (by track id)."""

    assignments: list[tuple[int, int]]
    ended: list[Track]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` (N, 4) with every box in `b` (M, 4): (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def inside_region(boxes: np.ndarray, region: Sequence[float] | None) -> np.ndarray:
    """Boolean mask of the boxes (N, 4) whose centre lies inside region [x1, y1, x2, y2] (edges
    included); all True when region is None. Used for `rot` before tracking and `roi` before posting."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if region is None:
        return np.ones(len(boxes), bool)
    x1, y1, x2, y2 = region
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)


# The second, distance-based matching pass (see `IouTracker._match_near`).
NEAR_FACE_WIDTHS = 1.0
NEAR_SIZE_RATIO = 1.5


class IouTracker:
    """Assigns detections to tracks by IoU; track ids start at 1 and only increase."""

    def __init__(self, iou_threshold: float = 0.3, miss_interval_s: float = 1.0) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if miss_interval_s < 0:
            raise ValueError(f"miss_interval_s must be >= 0, got {miss_interval_s}")
        self.iou_threshold = iou_threshold
        self.miss_interval_s = miss_interval_s
        self._tracks: dict[int, Track] = {}
        self._next_id = 1

    @property
    def active(self) -> list[Track]:
        """The live tracks, by track id."""
        return list(self._tracks.values())

    def update(self, t_s: float, boxes: np.ndarray, payloads: Sequence[Any] | None = None) -> TrackUpdate:
        """Feed the detections of one frame at stream time `t_s` (call it for every frame the
        detector ran on, with no boxes when it found none, so stale tracks end on time)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if payloads is not None and len(payloads) != len(boxes):
            raise ValueError(f"{len(payloads)} payloads for {len(boxes)} boxes")
        ended = self._end_stale(t_s)
        matches = self._match(t_s, boxes)
        assignments = []
        for index, box in enumerate(boxes):
            payload = None if payloads is None else payloads[index]
            track_id = matches.get(index)
            if track_id is None:
                track_id = self._start(t_s, box, payload)
            else:
                self._extend(self._tracks[track_id], t_s, box, payload)
            assignments.append((track_id, index))
        return TrackUpdate(assignments, ended)

    def predict(self, t_s: float) -> list[tuple[int, np.ndarray]]:
        """(track id, predicted box) of every live track at `t_s`: the frames between detections."""
        return [(tid, track.predicted(t_s)) for tid, track in self._tracks.items()]

    def expire(self, t_s: float) -> list[Track]:
        """End the tracks unseen for more than `miss_interval_s` at `t_s` (a frame without detection)."""
        return self._end_stale(t_s)

    def finish(self) -> list[Track]:
        """End every track (end of file or of the stream), by track id."""
        ended = list(self._tracks.values())
        self._tracks.clear()
        return ended

    def _end_stale(self, t_s: float) -> list[Track]:
        stale = [tid for tid, track in self._tracks.items() if t_s - track.last_time_s > self.miss_interval_s]
        return [self._tracks.pop(tid) for tid in stale]

    def _match(self, t_s: float, boxes: np.ndarray) -> dict[int, int]:
        """Greedy IoU matching of the detections with the tracks' predicted boxes: index -> track id."""
        track_ids = list(self._tracks)
        if not track_ids or not len(boxes):
            return {}
        predicted = np.stack([self._tracks[tid].predicted(t_s) for tid in track_ids])
        ious = iou_matrix(predicted, boxes)
        rows, cols = np.nonzero(ious >= self.iou_threshold)
        # Sort by IoU descending; lexsort's stability keeps (track order, detection index) for ties.
        order = np.lexsort((cols, rows, -ious[rows, cols]))
        matches: dict[int, int] = {}
        used_tracks: set[int] = set()
        for row, col in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
            if row not in used_tracks and col not in matches:
                used_tracks.add(row)
                matches[col] = track_ids[row]
        self._match_near(predicted, boxes, track_ids, matches, used_tracks)
        return matches

    @staticmethod
    def _match_near(predicted: np.ndarray, boxes: np.ndarray, track_ids: list[int], matches: dict[int, int],
                    used_tracks: set[int]) -> None:
        """Second pass for what IoU left unmatched: a detection of about the same size whose centre
        lies within one face width of a track's predicted centre is that face, moved fast (a track
        needs this second detection before it has a velocity to predict with)."""
        free_rows = [r for r in range(len(track_ids)) if r not in used_tracks]
        free_cols = [c for c in range(len(boxes)) if c not in matches]
        if not free_rows or not free_cols:
            return
        a, b = predicted[free_rows], boxes[free_cols]
        size_a = np.maximum(a[:, 2] - a[:, 0], 1e-6)
        size_b = np.maximum(b[:, 2] - b[:, 0], 1e-6)
        centre_a = (a[:, :2] + a[:, 2:]) / 2
        centre_b = (b[:, :2] + b[:, 2:]) / 2
        distance = np.linalg.norm(centre_a[:, None] - centre_b[None], axis=2) / size_a[:, None]
        ratio = size_b[None] / size_a[:, None]
        near = (distance <= NEAR_FACE_WIDTHS) & (ratio >= 1 / NEAR_SIZE_RATIO) & (ratio <= NEAR_SIZE_RATIO)
        rows, cols = np.nonzero(near)
        for i in np.lexsort((cols, rows, distance[rows, cols])).tolist():
            row, col = free_rows[rows[i]], free_cols[cols[i]]
            if row not in used_tracks and col not in matches:
                used_tracks.add(row)
                matches[col] = track_ids[row]

    def _start(self, t_s: float, box: np.ndarray, payload: Any) -> int:
        track_id = self._next_id
        self._next_id += 1
        self._tracks[track_id] = Track(track_id, t_s, t_s, box.copy(), box.copy(), payload=payload)
        return track_id

    @staticmethod
    def _extend(track: Track, t_s: float, box: np.ndarray, payload: Any) -> None:
        dt = t_s - track.last_time_s
        if dt > 0:
            # Half the new step, half the old velocity: detections jitter by a few pixels, and a
            # single jittery step must not throw the prediction off.
            step = (box - track.box) / dt
            track.velocity = step if track.hits == 1 else (track.velocity + step) / 2
        track.last_time_s = t_s
        track.box = box.copy()
        track.hits += 1
        track.payload = payload
