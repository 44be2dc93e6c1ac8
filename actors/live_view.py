"""What a running camera sees now: a JPEG snapshot of its latest decoded frame and its current faces.

A camera job (actors/camera_job.py) owns one `LiveView`: it hands over every decoded frame
(`frame`) and the face boxes of every detected frame (`faces`); about once a second (`interval_s`)
the view writes two files into the media store, each atomically (temporary file + rename, so a
reader never sees half a file):

    live/camera-<id>.jpg    the latest decoded frame
    live/camera-<id>.json   {"width", "height", "at": ISO time, "faces": [{"bbox": [x1,y1,x2,y2], "track_id"}]}

The API (`GET /v1/cameras/{id}/snapshot`, `/live-faces`) reads them back (`read_snapshot`,
`read_live_faces`); files older than `STALE_AFTER_S` mean the camera is not running (its job stopped,
was killed or hangs). Frames never travel through the Ray object store: only these files do, over
the shared media root every node mounts. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facewatch.errors import NotFound
from models.images import encode_jpeg
from storage.media import write_atomically

log = logging.getLogger("facewatch.live_view")

LIVE_DIR = "live"
SNAPSHOT_INTERVAL_S = 1.0
# Boxes not refreshed for this long are no longer current (the face left; detection runs every n-th frame).
FACES_MAX_AGE_S = 1.5
# A snapshot older than this means its camera is not running (a running job rewrites it every second).
STALE_AFTER_S = 5.0
NOT_RUNNING = "no snapshot: the camera is not running"


def live_paths(media_root: Path | str, camera_id: int) -> tuple[Path, Path]:
    """The snapshot's and the sidecar's paths for a camera."""
    folder = Path(media_root) / LIVE_DIR
    return folder / f"camera-{int(camera_id)}.jpg", folder / f"camera-{int(camera_id)}.json"


class LiveView:
    """Writes a camera's snapshot and current faces about once every `interval_s` (see the module doc)."""

    def __init__(self, media_root: Path | str, camera_id: int, interval_s: float = SNAPSHOT_INTERVAL_S,
                 jpeg_quality: int = 80, clock: Callable[[], float] = time.time) -> None:
        self.image_path, self.meta_path = live_paths(media_root, camera_id)
        self.interval_s, self.jpeg_quality, self.clock = interval_s, jpeg_quality, clock
        self._written_at = -float("inf")
        self._faces: list[dict[str, Any]] = []
        self._faces_at = -float("inf")
        self.writes = 0

    def faces(self, boxes: Sequence[np.ndarray], track_ids: Sequence[int]) -> None:
        """The faces (x1, y1, x2, y2 in frame pixels) and track ids found in the latest detected frame."""
        self._faces = [{"bbox": [round(float(v), 1) for v in box[:4]], "track_id": int(track)}
                       for box, track in zip(boxes, track_ids, strict=True)]
        self._faces_at = self.clock()

    def frame(self, image: np.ndarray | Callable[[], np.ndarray]) -> bool:
        """Offers a decoded RGB frame (or a function that converts to it, called only when the frame
        is written: a camera's frames are converted to RGB only when needed); writes it (and the
        faces) when the last write is `interval_s` old. Returns whether it wrote."""
        now = self.clock()
        if now - self._written_at < self.interval_s:
            return False
        self._written_at = now
        if callable(image):
            image = image()
        height, width = image.shape[:2]
        faces = self._faces if now - self._faces_at <= FACES_MAX_AGE_S else []
        meta = {"width": int(width), "height": int(height), "at": datetime.fromtimestamp(now, UTC).isoformat(),
                "faces": faces}
        try:
            write_atomically(self.image_path, encode_jpeg(image, self.jpeg_quality))
            write_atomically(self.meta_path, json.dumps(meta, separators=(",", ":")).encode())
        except OSError as exc:  # a full or unmounted media root must not stop the camera's pipeline
            log.warning("live view of %s not written: %s", self.image_path.name, exc)
            return False
        self.writes += 1
        return True

    def close(self) -> None:
        """The camera stopped: its snapshot goes at once (instead of going stale)."""
        for path in (self.image_path, self.meta_path):
            path.unlink(missing_ok=True)


def _fresh(path: Path, now: float | None) -> bool:
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= STALE_AFTER_S


def read_snapshot(media_root: Path | str, camera_id: int, now: float | None = None) -> bytes:
    """The camera's latest snapshot (JPEG bytes); NOT_FOUND when there is none or it is stale."""
    image_path, _ = live_paths(media_root, camera_id)
    if not _fresh(image_path, now):
        raise NotFound(NOT_RUNNING, param="id")
    try:
        return image_path.read_bytes()
    except FileNotFoundError:  # removed between the check and the read: the camera just stopped
        raise NotFound(NOT_RUNNING, param="id") from None


def read_live_faces(media_root: Path | str, camera_id: int, now: float | None = None) -> dict[str, Any]:
    """`{"width", "height", "at", "faces"}` of the camera's latest snapshot; NOT_FOUND as `read_snapshot`."""
    _, meta_path = live_paths(media_root, camera_id)
    if not _fresh(meta_path, now):
        raise NotFound(NOT_RUNNING, param="id")
    try:
        return dict(json.loads(meta_path.read_bytes()))
    except (FileNotFoundError, ValueError):
        raise NotFound(NOT_RUNNING, param="id") from None
