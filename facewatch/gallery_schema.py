"""The gallery "schema", defined once: system gallery names, filter columns, item metadata, vectors.

A gallery item is (item_id, model, vector, meta). The vector is stored in the DB (`FaceVector.vector`)
as raw little-endian float32 bytes; the shards copy the meta keys named in the gallery's columns into
filter columns (see `actors/gallery_columns.py` for the filter syntax). Column kinds: "scalar" (a
number or boolean) or "list" (a list of ints, filtered any-of).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import numpy as np

ColumnKind = Literal["scalar", "list"]
COLUMN_KINDS: tuple[str, ...] = ("scalar", "list")

DOSSIERS_GALLERY = "dossiers"  # faces of watch-list dossiers: what a sighting is matched against
EVENTS_GALLERY = "events"  # every event's face: what a "search the past" request scans
PERSONS_GALLERY = "persons"  # representative faces of persons: what an unmatched face is assigned by

DOSSIER_COLUMNS: dict[str, str] = {"dossier_id": "scalar", "watch_list_ids": "list", "active": "scalar"}
EVENT_COLUMNS: dict[str, str] = {"camera_id": "scalar", "camera_group_id": "scalar", "timestamp": "scalar"}
PERSON_COLUMNS: dict[str, str] = {"person_id": "scalar", "scope": "scalar"}
SYSTEM_GALLERY_COLUMNS: dict[str, dict[str, str]] = {DOSSIERS_GALLERY: DOSSIER_COLUMNS, EVENTS_GALLERY: EVENT_COLUMNS,
                                                     PERSONS_GALLERY: PERSON_COLUMNS}
# A gallery created without columns (user galleries, benchmarks) gets all of them: unused ones cost nothing.
DEFAULT_COLUMNS: dict[str, str] = {**EVENT_COLUMNS, **DOSSIER_COLUMNS}


def encode_vector(vector: Any) -> bytes:
    """The DB form of an embedding: its values as float32 bytes, flattened."""
    return np.ascontiguousarray(vector, dtype=np.float32).ravel().tobytes()


def decode_vector(raw: bytes) -> np.ndarray:
    """The embedding stored by `encode_vector` (a read-only float32 view of the bytes)."""
    return np.frombuffer(raw, dtype=np.float32)


def event_meta(camera_id: int | None, camera_group_id: int | None, timestamp: datetime) -> dict[str, Any]:
    """What the events gallery filters on (EVENT_COLUMNS); the timestamp as epoch seconds."""
    return {"camera_id": camera_id, "camera_group_id": camera_group_id, "timestamp": timestamp.timestamp()}


def dossier_meta(dossier_id: int, active_watch_list_ids: list[int], active: bool) -> dict[str, Any]:
    """What the dossiers gallery filters on (DOSSIER_COLUMNS): only ACTIVE watch lists are listed."""
    return {"dossier_id": dossier_id, "watch_list_ids": sorted(active_watch_list_ids), "active": bool(active)}
