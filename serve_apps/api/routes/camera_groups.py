"""CRUD /v1/camera-groups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from facewatch.errors import Conflict
from serve_apps.api.deps import Admin, Operator, Pages, Scope, Uow
from serve_apps.api.jobs_client import notify_cameras_changed
from serve_apps.api.list_queries import CameraGroupQuery
from serve_apps.api.routes._common import apply_patch, ensure_visible, page_out
from serve_apps.api.schemas import CameraGroupIn, CameraGroupOut, CameraGroupPatch, DbId, Page
from storage import orm

router = APIRouter(prefix="/camera-groups", tags=["camera groups"])


@router.post("", status_code=201, response_model=CameraGroupOut)
def create_camera_group(body: CameraGroupIn, uow: Uow, _: Admin) -> orm.CameraGroup:
    group = uow.camera_groups.add(orm.CameraGroup(**body.model_dump(mode="json")))
    uow.commit()
    return group


@router.get("", response_model=Page[CameraGroupOut])
def list_camera_groups(uow: Uow, _: Operator, scope: Scope, paging: Pages,
                       query: Annotated[CameraGroupQuery, Query()]) -> Page[CameraGroupOut]:
    filters = query.model_dump(exclude_none=True)
    page = uow.camera_groups.list_page(filters, paging.limit, paging.cursor, scope)
    return page_out(page, CameraGroupOut)


@router.get("/{group_id}", response_model=CameraGroupOut)
def get_camera_group(group_id: DbId, uow: Uow, _: Operator, scope: Scope) -> orm.CameraGroup:
    return ensure_visible(uow.camera_groups.get(group_id), scope.sees_group(group_id), "camera group", group_id)


@router.patch("/{group_id}", response_model=CameraGroupOut)
def update_camera_group(group_id: DbId, body: CameraGroupPatch, uow: Uow, _: Admin) -> orm.CameraGroup:
    group = uow.camera_groups.get(group_id)
    changes = apply_patch(group, body)
    uow.commit()
    if "active" in changes or "labels" in changes:  # cameras of the group start or stop at once
        notify_cameras_changed()
    return group


@router.delete("/{group_id}", status_code=204)
def delete_camera_group(group_id: DbId, uow: Uow, _: Admin) -> Response:
    group = uow.camera_groups.get(group_id)
    if group.cameras:
        raise Conflict("the camera group still has cameras; delete or move them first", param="id")
    uow.camera_groups.delete(group)
    uow.commit()
    return Response(status_code=204)
