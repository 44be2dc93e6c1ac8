"""Field types shared by the API schemas and the domain types: ISO timestamps, boxes, the event filters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field


def iso_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00Z") from exc
    if isinstance(value, datetime):
        return value
    raise ValueError("expected an ISO 8601 date-time string")


Timestamp = Annotated[datetime, BeforeValidator(iso_datetime)]
"""A datetime in an input (body or query): an ISO 8601 string, as documented; not an epoch number."""


class SightingRefs(BaseModel):
    """Where and whom a sighting was of: the filters events and episodes share."""

    camera_id: int | None = None
    camera_group_id: int | None = None
    watch_list_id: int | None = None
    dossier_id: int | None = None


class EventFilterFields(SightingRefs):
    """The event list filters, defined once: `GET /v1/events`, the live feed and search
    (`serve_apps.api.schemas.EventFilters`) and the tasks' event selections
    (`facewatch.task_params.EventSelection`) add their own fields to these."""

    episode_id: int | None = None
    video_id: int | None = None
    matched: bool | None = None
    acknowledged: bool | None = None
    timestamp_gte: Timestamp | None = None
    timestamp_lte: Timestamp | None = None
    age_gte: float | None = Field(None, ge=0, le=150)
    age_lte: float | None = Field(None, ge=0, le=150)
    gender: Literal["male", "female"] | None = None
    confidence_gte: float | None = Field(None, ge=0, le=1)


def check_box(value: Sequence[float] | None, name: str) -> Any:
    if value is None:
        return None
    if len(value) != 4 or value[2] <= value[0] or value[3] <= value[1] or min(value) < 0:
        raise ValueError(f"{name} must be [x1, y1, x2, y2] with x2 > x1 >= 0 and y2 > y1 >= 0")
    return value
