"""CRUD /v1/watch-lists; the built-in Unmatched list can be changed but not deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from facewatch.errors import BadParam, Conflict
from serve_apps.api.deps import Operator, Pages, Uow, Viewer
from serve_apps.api.gallery_sync import sync_dossier_gallery
from serve_apps.api.routes._common import apply_patch, ensure_visible, not_hidden_clause
from serve_apps.api.schemas import DbId, Page, WatchListIn, WatchListOut, WatchListPatch
from storage import orm
from storage.dossier_vectors import dossiers_on_watch_list, refresh_dossier_meta

router = APIRouter(prefix="/watch-lists", tags=["watch lists"])


def watch_list_out(row: orm.WatchList) -> WatchListOut:
    data = {c: getattr(row, c) for c in WatchListOut.model_fields if c != "camera_group_ids"}
    return WatchListOut(**data, camera_group_ids=sorted(g.id for g in row.camera_groups))


@router.post("", status_code=201, response_model=WatchListOut)
def create_watch_list(body: WatchListIn, uow: Uow, _: Operator) -> WatchListOut:
    groups = uow.camera_groups.get_many(body.camera_group_ids, param="camera_group_ids")
    row = orm.WatchList(**body.model_dump(mode="json", exclude={"camera_group_ids"}), camera_groups=groups)
    uow.watch_lists.add(row)
    uow.commit()
    return watch_list_out(row)


@router.get("", response_model=Page[WatchListOut])
def list_watch_lists(
    uow: Uow,
    caller: Viewer,
    paging: Pages,
    active: bool | None = None,
    camera_group_id: DbId | None = None,
    name_contains: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[WatchListOut]:
    stmt = uow.watch_lists.query().where(not_hidden_clause(orm.WatchList.hidden_from_roles, caller))
    if active is not None:
        stmt = stmt.where(orm.WatchList.active.is_(active))
    if camera_group_id is not None:
        stmt = stmt.where(orm.WatchList.camera_groups.any(orm.CameraGroup.id == camera_group_id))
    if name_contains:
        stmt = stmt.where(orm.WatchList.name.icontains(name_contains, autoescape=True))
    page = uow.watch_lists.page(stmt, paging.limit, paging.cursor)
    return Page(results=[watch_list_out(w) for w in page.items], next_cursor=page.next_cursor)


@router.get("/{watch_list_id}", response_model=WatchListOut)
def get_watch_list(watch_list_id: DbId, uow: Uow, caller: Viewer) -> WatchListOut:
    row = ensure_visible(uow.watch_lists.get(watch_list_id), caller, "watch list", watch_list_id)
    return watch_list_out(row)


@router.patch("/{watch_list_id}", response_model=WatchListOut)
def update_watch_list(
    watch_list_id: DbId, body: WatchListPatch, uow: Uow, caller: Operator, request: Request
) -> WatchListOut:
    row = ensure_visible(uow.watch_lists.get(watch_list_id), caller, "watch list", watch_list_id)
    uow.links.refuse_edit([row.id], "cannot change the watch list")
    if row.builtin and body.name is not None and body.name != row.name:
        raise BadParam("the built-in Unmatched list cannot be renamed", param="name")
    if body.camera_group_ids is not None:
        row.camera_groups = uow.camera_groups.get_many(body.camera_group_ids, param="camera_group_ids")
    changes = apply_patch(row, body, skip=("camera_group_ids",))
    if "active" in changes:  # its dossiers' faces gain or lose this list in their metadata
        uow.flush()
        refresh_dossier_meta(uow, dossiers_on_watch_list(uow, row.id))
    uow.commit()
    if "active" in changes:
        sync_dossier_gallery(request)
    return watch_list_out(row)


@router.delete("/{watch_list_id}", status_code=204)
def delete_watch_list(watch_list_id: DbId, uow: Uow, caller: Operator, request: Request) -> Response:
    row = ensure_visible(uow.watch_lists.get(watch_list_id), caller, "watch list", watch_list_id)
    if row.builtin:
        raise Conflict("the built-in Unmatched list cannot be deleted; deactivate it instead", param="id")
    uow.links.refuse_edit([row.id], "cannot delete the watch list")
    members = dossiers_on_watch_list(uow, row.id)
    uow.watch_lists.delete(row)
    refresh_dossier_meta(uow, members)
    uow.commit()
    sync_dossier_gallery(request)
    return Response(status_code=204)
