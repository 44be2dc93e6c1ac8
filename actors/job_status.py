"""A job's health and statistics, without Ray: what its heartbeats and its final summary say.

Status (SPEC §3): `failing` while the source is down; `degraded` when a post failed in the last
`DEGRADED_AFTER_FAILURE_S` seconds or frames were dropped since the last heartbeat (decoded frames
the pipeline could not take, or packets dropped before decoding because the decoder fell behind: each
with its reason); `ok` otherwise (the manager shows `starting` during the first 30 s). Frames a live
camera does not detect on (`detect_fps`) are not dropped: they are decoded and tracked.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ray.exceptions import RayTaskError

from actors.frame_pipeline import Counters
from actors.video_source import SourceError

log = logging.getLogger("facewatch.camera_job")

DEGRADED_AFTER_FAILURE_S = 30.0
DROPPING_ERROR = "frames are dropped: processing is slower than the stream"
DECODE_BEHIND_ERROR = "frames are dropped before decoding: this node cannot decode the stream in real time"


def short_error(exc: BaseException) -> str:
    """One readable line of an error (Ray errors carry whole tracebacks)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, SourceError):
        return cause.reason
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[-1] if len(lines) > 1 else (lines[0] if lines else type(cause).__name__)
    return text[:500]


class JobHealth:
    """The last error, whether the source is down, and when posting last failed."""

    def __init__(self, job_id: int, clock: Any = time.monotonic) -> None:
        self.job_id = job_id
        self.clock = clock
        self.failing_error = ""  # set while the source is down
        self.last_error = ""
        self.last_failure_at: float | None = None
        self._lock = threading.Lock()

    def set_failing(self, error: str) -> None:
        self.failing_error = error
        self.last_error = error
        log.warning("job %s: %s", self.job_id, error)

    def source_up(self) -> None:
        self.failing_error = ""

    def record_failure(self, counters: Counters, faces: int, error: str) -> None:
        """`faces` shots could not be posted."""
        with self._lock:
            counters.faces_failed += faces
            self.last_error = error
            self.last_failure_at = self.clock()
        log.warning("job %s: %s", self.job_id, error)

    def status(self, dropping: bool, decode_behind: bool = False) -> tuple[str, str]:
        """(status, error); `dropping`: frames were dropped since the last heartbeat; `decode_behind`:
        some of them before decoding."""
        if self.failing_error:
            return "failing", self.failing_error
        if self.last_failure_at is not None and self.clock() - self.last_failure_at < DEGRADED_AFTER_FAILURE_S:
            return "degraded", self.last_error
        if dropping:
            return "degraded", DECODE_BEHIND_ERROR if decode_behind else DROPPING_ERROR
        return "ok", ""


@dataclass(frozen=True)
class Beat:
    """The counters at one heartbeat, to turn the next one's into rates."""

    at: float
    handled: int
    processed: int
    dropped: int
    dropped_undecoded: int = 0


def job_stats(c: Counters, decoded: int, dropped: int, previous: Beat | None, now: float,
              extra: dict[str, Any]) -> dict[str, Any]:
    """The statistics of a heartbeat: counters, and fps / detect_fps since the previous beat."""
    fps = detect_fps = 0.0
    if previous is not None and now > previous.at:
        dt = now - previous.at
        fps = (c.frames_handled - previous.handled) / dt
        detect_fps = (c.frames_processed - previous.processed) / dt
    return {
        **extra,
        "frames_decoded": decoded, "frames_processed": c.frames_processed,
        "frames_dropped": dropped, "frames_motion_skipped": c.frames_motion_skipped,
        "fps": round(fps, 2), "detect_fps": round(detect_fps, 2),
        "faces_detected": c.faces_detected, "faces_outside_rot": c.faces_outside_rot,
        "faces_filtered": dict(c.faces_filtered), "faces_posted": c.faces_posted, "faces_failed": c.faces_failed,
        "events": c.events, "sightings_dropped": c.sightings_dropped, "tracks": c.tracks,
        "source_opens": c.source_opens, "source_errors": c.source_errors,
    }


def video_summary(c: Counters, decoded: int, dropped: int, frames_total: int | None, duration_s: float | None,
                  source_fps: float | None, processing_s: float, event_counts: dict[str, int],
                  source_warning: str) -> dict[str, Any]:
    """What a finished video job reports (`finished(summary)`)."""
    total = max(frames_total or 0, c.frames_handled)
    duration = duration_s if duration_s is not None else (c.frames_handled / source_fps if source_fps else 0.0)
    return {
        "frames_done": c.frames_handled, "frames_total": total, "duration_s": round(float(duration), 3),
        "frames": c.frames_handled, "seconds": round(float(duration), 3), "processing_s": round(processing_s, 3),
        "frames_decoded": decoded, "frames_dropped": dropped,
        "frames_motion_skipped": c.frames_motion_skipped,
        "frames_processed": c.frames_processed, "faces_detected": c.faces_detected,
        "faces_posted": c.faces_posted, "faces_failed": c.faces_failed, "tracks": c.tracks,
        "sightings_dropped": c.sightings_dropped, **event_counts,
        "source_warning": source_warning,
    }
