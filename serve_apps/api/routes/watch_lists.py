"""CRUD /v1/watch-lists; the built-in Unmatched list can be changed but not deleted."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from facewatch.errors import BadParam, Conflict
from serve_apps.api.deps import Operator, Pages, Scope, Uow, Viewer
from serve_apps.api.gallery_sync import sync_dossier_gallery
from serve_apps.api.list_queries import WatchListQuery
from serve_apps.api.routes._common import apply_patch, ensure_visible
from serve_apps.api.schemas import DbId, Page, WatchListIn, WatchListOut, WatchListPatch
from storage import orm
from storage.acknowledgement import unacknowledged_counts
from storage.dossier_vectors import dossiers_on_watch_list, refresh_dossier_meta
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/watch-lists", tags=["watch lists"])


def watch_list_out(row: orm.WatchList, unacknowledged: int = 0,
                   scope: VisibilityScope | None = None) -> WatchListOut:
    """The list as the caller sees it: camera groups hidden from the caller's role are left out."""
    data = {c: getattr(row, c) for c in WatchListOut.model_fields if c not in ("camera_group_ids",
                                                                               "unacknowledged_events")}
    return WatchListOut(**data, camera_group_ids=sorted(g.id for g in row.camera_groups
                                                             if scope is None or scope.sees_group(g.id)),
                        unacknowledged_events=unacknowledged)


def watch_lists_out(uow: UnitOfWork, rows: list[orm.WatchList], scope: VisibilityScope) -> list[WatchListOut]:
    counts = unacknowledged_counts(uow, [w.id for w in rows], scope.events())
    return [watch_list_out(w, counts.get(w.id, 0), scope) for w in rows]


def _visible_list(uow: UnitOfWork, scope: VisibilityScope, watch_list_id: int) -> orm.WatchList:
    return ensure_visible(uow.watch_lists.get(watch_list_id), scope.sees_list(watch_list_id), "watch list",
                          watch_list_id)


@router.post("", status_code=201, response_model=WatchListOut)
def create_watch_list(body: WatchListIn, uow: Uow, _: Operator, scope: Scope) -> WatchListOut:
    scope.refuse_hidden(body.camera_group_ids, "camera groups", "camera_group_ids")
    groups = uow.camera_groups.get_many(body.camera_group_ids, param="camera_group_ids")
    row = orm.WatchList(**body.model_dump(mode="json", exclude={"camera_group_ids"}), camera_groups=groups)
    uow.watch_lists.add(row)
    uow.commit()
    return watch_lists_out(uow, [row], scope)[0]


@router.get("", response_model=Page[WatchListOut])
def list_watch_lists(uow: Uow, _: Viewer, scope: Scope, paging: Pages,
                     query: Annotated[WatchListQuery, Query()]) -> Page[WatchListOut]:
    filters = query.model_dump(exclude_none=True)
    page = uow.watch_lists.list_page(filters, paging.limit, paging.cursor, scope)
    return Page(results=watch_lists_out(uow, page.items, scope), next_cursor=page.next_cursor)


@router.get("/{watch_list_id}", response_model=WatchListOut)
def get_watch_list(watch_list_id: DbId, uow: Uow, _: Viewer, scope: Scope) -> WatchListOut:
    return watch_lists_out(uow, [_visible_list(uow, scope, watch_list_id)], scope)[0]


@router.patch("/{watch_list_id}", response_model=WatchListOut)
def update_watch_list(
    watch_list_id: DbId, body: WatchListPatch, uow: Uow, _: Operator, scope: Scope, request: Request
) -> WatchListOut:
    row = _visible_list(uow, scope, watch_list_id)
    uow.links.refuse_edit([row.id], "cannot change the watch list")
    if row.builtin and body.name is not None and body.name != row.name:
        raise BadParam("the built-in Unmatched list cannot be renamed", param="name")
    if body.camera_group_ids is not None:
        scope.refuse_hidden(body.camera_group_ids, "camera groups", "camera_group_ids")
        kept = [g for g in row.camera_groups if not scope.sees_group(g.id)]  # the caller cannot see or change them
        row.camera_groups = kept + uow.camera_groups.get_many(body.camera_group_ids, param="camera_group_ids")
    changes = apply_patch(row, body, skip=("camera_group_ids",))
    if "active" in changes:  # its dossiers' faces gain or lose this list in their metadata
        uow.flush()
        refresh_dossier_meta(uow, dossiers_on_watch_list(uow, row.id))
    uow.commit()
    if "active" in changes:
        sync_dossier_gallery(request)
    return watch_lists_out(uow, [row], scope)[0]


@router.delete("/{watch_list_id}", status_code=204)
def delete_watch_list(watch_list_id: DbId, uow: Uow, _: Operator, scope: Scope, request: Request) -> Response:
    row = _visible_list(uow, scope, watch_list_id)
    if row.builtin:
        raise Conflict("the built-in Unmatched list cannot be deleted; deactivate it instead", param="id")
    uow.links.refuse_edit([row.id], "cannot delete the watch list")
    members = dossiers_on_watch_list(uow, row.id)
    uow.watch_lists.delete(row)
    refresh_dossier_meta(uow, members)
    uow.commit()
    sync_dossier_gallery(request)
    return Response(status_code=204)
