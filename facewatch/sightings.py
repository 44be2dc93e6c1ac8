"""What a camera job hands to the event pipeline: one best shot of one track, already embedded.

Only this small record crosses actor boundaries (never a frame): the job stores the shot's media
(thumbnail, normalised crop, full frame) in the shared media store itself and passes their keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


def event_id_for(job_id: int, run: int, track_id: int, shot: int) -> str:
    """A deterministic event id, so a retried hand-off never creates a second event.

    `run` is 0 for single-pass video jobs (a restarted job re-reads the same file and re-derives the
    same ids, so nothing is duplicated) and the job's attempt number for live cameras (a restarted
    camera sees new frames whose track numbering starts again).
    """
    return f"j{job_id}-r{run}-t{track_id}-s{shot}"


@dataclass
class FaceSighting:
    event_id: str
    job_id: int | None  # None: a still photo posted to POST /v1/events
    camera_group_id: int
    timestamp: datetime
    bbox: list[float]
    detection_score: float
    quality: float
    embedding: np.ndarray  # float32, L2-normalised
    model: str
    camera_id: int | None = None
    video_id: int | None = None
    track_id: int | None = None
    video_offset_s: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    thumbnail_key: str = ""
    crop_key: str = ""
    frame_key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    # The track's best frames (actors/track_identity.py): their vectors (k × d, the shot's own among them)
    # and qualities. Empty for a one-frame sighting (a still photo): its own vector is then the evidence.
    track_embeddings: np.ndarray | None = None
    track_qualities: list[float] = field(default_factory=list)


def track_event_prefix(event_id: str) -> str:
    """The id prefix every shot of the same track shares (`j{job}-r{run}-t{track}-s`)."""
    return event_id.rsplit("-s", 1)[0] + "-s"
