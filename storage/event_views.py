"""The event as clients see it: one dict shape for the API, the live feed and webhooks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from storage import orm

MEDIA_KINDS = ("thumbnail", "crop", "frame")
# An Event, or a Row of VIEW_COLUMNS (EventRepository.list_views): both read the same by attribute name.
EventView = orm.Event | Row[Any]
# The columns event_to_dict reads: every column but `updated_at` and `gender` (read from `attributes`).
VIEW_COLUMNS = tuple(getattr(orm.Event, c.key) for c in orm.Event.__mapper__.column_attrs
                     if c.key not in ("updated_at", "gender"))


def media_url(base_url: str, key: str) -> str | None:
    return f"{base_url.rstrip('/')}/v1/media/{key}" if key else None


def event_to_dict(event: EventView, base_url: str = "") -> dict[str, Any]:
    """The public form of an event; media are URLs under `base_url` (absolute for webhooks)."""
    gender = event.attributes.get("gender") if event.attributes else None
    return {
        "id": event.id,
        "camera_id": event.camera_id,
        "camera_group_id": event.camera_group_id,
        "video_id": event.video_id,
        "job_id": event.job_id,
        "track_id": event.track_id,
        "timestamp": event.timestamp.isoformat(),
        "video_offset_s": event.video_offset_s,
        "bbox": event.bbox,
        "detection_score": event.detection_score,
        "quality": event.quality,
        "age": event.age,
        "gender": gender,
        "attributes": event.attributes,
        "matched": event.matched,
        "dossier_id": event.dossier_id,
        "watch_list_id": event.watch_list_id,
        "matched_face_id": event.matched_face_id,
        "confidence": event.confidence,
        "episode_id": event.episode_id,
        "acknowledged": event.acknowledged,
        "acknowledged_by": event.acknowledged_by,
        "acknowledged_at": event.acknowledged_at.isoformat() if event.acknowledged_at else None,
        "media": {
            "thumbnail": media_url(base_url, event.thumbnail_key),
            "crop": media_url(base_url, event.crop_key),
            "frame": media_url(base_url, event.frame_key),
        },
        "meta": event.meta or {},
        "external_id": event.external_id,
        "created_at": event.created_at.isoformat() if event.created_at else None,
        "person_id": event.person_id,
        "person_status": event.person_status,
    }
