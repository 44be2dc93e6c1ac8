"""Request and response bodies of `/v1/persons` (kept apart from schemas.py: a feature of its own)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from serve_apps.api.schemas import EventOut, Input, Timestamp


class PersonFilters(BaseModel):
    """Query parameters of `GET /v1/persons`."""

    first_seen_gte: Timestamp | None = None
    first_seen_lte: Timestamp | None = None
    last_seen_gte: Timestamp | None = None
    last_seen_lte: Timestamp | None = None
    camera_group_id: int | None = None
    camera_id: int | None = None
    min_events: int | None = Field(None, ge=0)
    min_days: int | None = Field(None, ge=0, description="seen on at least this many distinct days")
    anonymous: bool | None = Field(None, description="true: persons without a dossier; false: dossiers' persons")
    regular: bool | None = Field(None, description="regulars (friend_days within friend_window_days) only, or none")


class PersonOut(BaseModel):
    id: int
    anonymous: bool
    dossier_id: int | None
    dossier_name: str | None
    scope: int = Field(description="0: installation-wide; else the camera group the person belongs to")
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    event_count: int
    camera_ids: list[int]
    camera_group_ids: list[int]
    days_seen: int
    regular: bool = Field(description="seen on friend_days distinct days within the last friend_window_days")
    best_event: EventOut | None
    face_count: int
    created_at: datetime


class PersonEventFilters(BaseModel):
    timestamp_gte: Timestamp | None = None
    timestamp_lte: Timestamp | None = None
    camera_id: int | None = None


class PersonMergeIn(Input):
    other_id: int = Field(description="this person is folded into the one in the path (or the dossier's one)")


class PersonPromoteIn(Input):
    name: str = Field(min_length=1, max_length=300)
    watch_list_ids: list[int] = Field(min_length=1, max_length=100)
    event_ids: list[str] = Field(min_length=1, max_length=20, description="events of this person whose crops "
                                                                         "become the dossier's faces")
    comment: str = Field("", max_length=10_000)


class PersonPromoteOut(BaseModel):
    dossier_id: int
    person: PersonOut


class PersonSearchQuery(Input):
    event_id: str | None = Field(None, max_length=64)
    dossier_face_id: int | None = None
    threshold: str | float | None = None
    limit: int = Field(20, ge=1, le=1000)


class PersonHit(BaseModel):
    confidence: float
    person: PersonOut


class PersonSearchOut(BaseModel):
    results: list[PersonHit]
    missing_shards: list[int] | None = None


class ClusteringRunOut(BaseModel):
    id: int | None = None
    status: Literal["running", "done", "failed", "none"] = "none"
    full: bool = False
    total: int = 0
    done: int = 0
    merges: int = 0
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
