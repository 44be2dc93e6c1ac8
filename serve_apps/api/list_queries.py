"""The query parameters of the plain list endpoints (`GET /v1/cameras`, `/v1/camera-groups`,
`/v1/watch-lists`, `/v1/dossiers`, `/v1/episodes`, `/v1/users`), one model each, taken as
`Annotated[XQuery, Query()]`. The storage side (`Repository.list_filters`) says how each narrows its
table; a route passes `model_dump(exclude_none=True)` (plus `meta.*` parameters where they apply)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from facewatch.fields import SightingRefs
from facewatch.states import CameraStatus
from serve_apps.api.schemas import DbId, Role


class _ActiveByName(BaseModel):
    active: bool | None = None
    name_contains: str | None = Field(None, max_length=200)


class CameraGroupQuery(_ActiveByName):
    """Query parameters of `GET /v1/camera-groups`: exactly the shared active / name filters."""


class CameraQuery(_ActiveByName):
    camera_group_id: DbId | None = None
    status: CameraStatus | None = None


class WatchListQuery(_ActiveByName):
    camera_group_id: DbId | None = None


class DossierQuery(BaseModel):
    watch_list_id: DbId | None = None
    active: bool | None = None
    name_contains: str | None = Field(None, max_length=300)
    external_id: str | None = Field(None, max_length=200)


class EpisodeQuery(SightingRefs):
    matched: bool | None = None
    open: bool | None = None
    acknowledged: bool | None = None


class UserQuery(BaseModel):
    role: Role | None = None
    active: bool | None = None
    username_contains: str | None = Field(None, max_length=150)
