"""CRUD /v1/cameras (filters: group, active, status)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from serve_apps.api.deps import Admin, Operator, Pages, Scope, Uow
from serve_apps.api.jobs_client import notify_camera_changed
from serve_apps.api.list_queries import CameraQuery
from serve_apps.api.routes._common import apply_patch, ensure_visible, meta_query, page_out
from serve_apps.api.routes.videos import Unprocessable
from serve_apps.api.schemas import CameraIn, CameraOut, CameraPatch, DbId, Page, StreamSettings
from storage import orm
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/cameras", tags=["cameras"])


def _group_for(uow: UnitOfWork, group_id: int) -> orm.CameraGroup:
    return uow.camera_groups.get_many([group_id], param="camera_group_id")[0]


def _visible_camera(uow: UnitOfWork, camera_id: int, scope: VisibilityScope) -> orm.Camera:
    camera = uow.cameras.get(camera_id)
    return ensure_visible(camera, scope.sees_group(camera.camera_group_id), "camera", camera_id)


@router.post("", status_code=201, response_model=CameraOut)
def create_camera(body: CameraIn, uow: Uow, _: Admin) -> orm.Camera:
    _group_for(uow, body.camera_group_id)
    fields = body.model_dump(mode="json")
    camera = uow.cameras.add(orm.Camera(**fields, status="starting" if body.active else "disabled"))
    uow.commit()
    notify_camera_changed(camera.id)  # the JobManager starts, re-reads or stops its job now
    return camera


@router.get("", response_model=Page[CameraOut])
def list_cameras(request: Request, uow: Uow, _: Operator, scope: Scope, paging: Pages,
                 query: Annotated[CameraQuery, Query()]) -> Page[CameraOut]:
    filters = {**meta_query(request), **query.model_dump(exclude_none=True)}
    page = uow.cameras.list_page(filters, paging.limit, paging.cursor, scope)
    return page_out(page, CameraOut)


@router.get("/{camera_id}", response_model=CameraOut)
def get_camera(camera_id: DbId, uow: Uow, _: Operator, scope: Scope) -> orm.Camera:
    return _visible_camera(uow, camera_id, scope)


@router.patch("/{camera_id}", response_model=CameraOut)
def update_camera(camera_id: DbId, body: CameraPatch, uow: Uow, _: Admin) -> orm.Camera:
    camera = uow.cameras.get(camera_id)
    if body.camera_group_id is not None:
        _group_for(uow, body.camera_group_id)
    if body.stream_settings is not None:
        camera.stream_settings = merged_stream_settings(camera.stream_settings, body.stream_settings)
    changes = apply_patch(camera, body, skip=("stream_settings",))
    if "active" in changes:
        camera.status = "starting" if camera.active else "disabled"
    uow.commit()
    notify_camera_changed(camera.id)  # the JobManager starts, re-reads or stops its job now
    return camera


def merged_stream_settings(stored: dict[str, Any] | None, sent: StreamSettings) -> dict[str, Any]:
    """A PATCH changes only the stream settings keys it sends; the result is checked as a whole (e.g.
    `max_face_size` sent alone must still be >= the stored `min_face_size`)."""
    merged = {**(stored or {}), **sent.model_dump(mode="json", exclude_unset=True)}
    try:
        return StreamSettings.model_validate(merged).model_dump(mode="json")
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(["stream_settings", *(str(p) for p in first.get("loc", ()))])
        raise Unprocessable(f"{param}: {first['msg']}", param=param) from None


@router.delete("/{camera_id}", status_code=204)
def delete_camera(camera_id: DbId, uow: Uow, _: Admin) -> Response:
    uow.cameras.delete(uow.cameras.get(camera_id))
    uow.commit()
    notify_camera_changed(camera_id)  # the JobManager starts, re-reads or stops its job now
    return Response(status_code=204)
