"""Schemas of the VMS registry (`/v1/vms`) and of linked watch lists (`/v1/watch-lists/{id}/link`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field

from serve_apps.api.schemas import DbId, Input, Output, Timestamp

EventType = Literal["face"]


class VmsSenderSettings(Input):
    """The event sender's settings (the video security suite's EVENT_SENDER block)."""

    sender_enabled: bool = True
    allowed_types: list[EventType] = Field(default_factory=lambda: ["face"])
    sender_tasks: int = Field(1, ge=1, le=32, description="events posted at once")
    max_send_attempts: int = Field(1, ge=1, le=100)
    min_send_timeout_s: float = Field(0.1, ge=0.0, le=3600.0, description="first retry after this many seconds")
    max_send_timeout_s: float = Field(100.0, ge=0.0, le=86400.0, description="retries back off up to this")
    response_timeout_s: float = Field(10.0, gt=0.0, le=300.0)
    forward_watch_list_ids: list[DbId] = Field(default_factory=list,
                                               description="watch lists whose events go to this VMS (opt-in)")
    sent_retention_days: int = Field(0, ge=0, le=36500, description="0 keeps sent messages forever")
    received_retention_days: int = Field(0, ge=0, le=36500, description="0 keeps received messages forever")


class VmsIn(VmsSenderSettings):
    name: str = Field(min_length=1, max_length=200)
    url: AnyHttpUrl = Field(description="the plug-in's base URL")
    token: str = Field(min_length=8, max_length=200, description="shared secret of the VmsPluginToken scheme")
    active: bool = True
    camera_group_id: DbId | None = Field(None, description="imported cameras go here (default: a new group)")
    sync_interval_s: float = Field(300.0, ge=0.0, le=86400.0, description="camera import period; 0 = on demand")


class VmsPatch(Input):
    """Fields sent are changed; null is refused for every field (none of them can be empty)."""

    name: str | None = Field(None, min_length=1, max_length=200)
    url: AnyHttpUrl | None = None
    token: str | None = Field(None, min_length=8, max_length=200)
    active: bool | None = None
    sync_interval_s: float | None = Field(None, ge=0.0, le=86400.0)
    sender_enabled: bool | None = None
    allowed_types: list[EventType] | None = None
    sender_tasks: int | None = Field(None, ge=1, le=32)
    max_send_attempts: int | None = Field(None, ge=1, le=100)
    min_send_timeout_s: float | None = Field(None, ge=0.0, le=3600.0)
    max_send_timeout_s: float | None = Field(None, ge=0.0, le=86400.0)
    response_timeout_s: float | None = Field(None, gt=0.0, le=300.0)
    forward_watch_list_ids: list[DbId] | None = None
    sent_retention_days: int | None = Field(None, ge=0, le=36500)
    received_retention_days: int | None = Field(None, ge=0, le=36500)


class VmsOut(Output):
    id: int
    name: str
    url: str
    active: bool
    camera_group_id: int | None
    sync_interval_s: float
    sender_enabled: bool
    allowed_types: list[str]
    sender_tasks: int
    max_send_attempts: int
    min_send_timeout_s: float
    max_send_timeout_s: float
    response_timeout_s: float
    forward_watch_list_ids: list[int]
    sent_retention_days: int
    received_retention_days: int
    last_sync_at: datetime | None
    last_sync_error: str
    last_sync_report: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class VmsCameraOut(Output):
    camera_id: int
    vms_camera_id: str
    forward_events: bool
    present: bool
    vms_status: str
    last_seen_at: datetime


class VmsCameraPatch(Input):
    forward_events: bool


class VmsMessageOut(Output):
    id: int
    direction: str
    event_id: str | None
    vms_camera_id: str | None
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None


class VmsEventIn(Input):
    """One event a VMS sends into facewatch (an alarm, a door opening, a motion start...)."""

    camera_id: str | None = Field(None, min_length=1, max_length=200, description="the VMS's camera id")
    type: str = Field(min_length=1, max_length=50)
    at: Timestamp | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class VmsEventsIn(Input):
    events: list[VmsEventIn] = Field(min_length=1, max_length=1000)


class VmsEventsAccepted(Output):
    accepted: int


class ArchiveLinkOut(Output):
    url: str
    vms_id: int
    vms_camera_id: str
    at: datetime


class LinkIn(Input):
    master_url: AnyHttpUrl = Field(description="the master installation's base URL")
    master_token: str = Field(min_length=8, max_length=200, description="an API token of the master")
    master_watch_list_id: DbId
    sync_time: str = Field("03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="daily, HH:MM UTC")


class LinkOut(Output):
    id: int
    watch_list_id: int
    master_url: str
    master_watch_list_id: int
    sync_time: str
    next_sync_at: datetime | None
    last_sync_at: datetime | None
    last_sync_status: str
    last_sync_error: str
    last_sync_report: dict[str, Any]
