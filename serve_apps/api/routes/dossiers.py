"""CRUD /v1/dossiers (filters: watch list, active, name contains)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from facewatch.errors import BadParam
from serve_apps.api.deps import Admin, Media, Operator, Pages, Scope, Uow, Viewer
from serve_apps.api.gallery_sync import sync_dossier_gallery, sync_events_gallery
from serve_apps.api.list_queries import DossierQuery
from serve_apps.api.routes._common import apply_patch, ensure_visible, meta_query
from serve_apps.api.routes.events import visible_event
from serve_apps.api.schemas import DbId, DossierIn, DossierOut, DossierPatch, ErasureOut, Page
from storage import orm
from storage.dossier_vectors import faces_from_events, refresh_dossier_meta
from storage.erasure import delete_unreferenced, erase_person, face_keys, remove_dossier
from storage.negatives import negative_keys, negatives_of
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/dossiers", tags=["dossiers"])


def dossier_out(row: orm.Dossier, scope: VisibilityScope) -> DossierOut:
    """The dossier as the caller sees it: watch lists hidden from the caller's role are left out."""
    data = {c: getattr(row, c) for c in DossierOut.model_fields if c not in ("watch_list_ids", "face_count")}
    return DossierOut(**data, watch_list_ids=scope.visible_list_ids(w.id for w in row.watch_lists),
                      face_count=len(row.faces))


def _watch_lists(uow: UnitOfWork, ids: list[int], scope: VisibilityScope) -> list[orm.WatchList]:
    if orm.UNMATCHED_WATCH_LIST_ID in ids:
        raise BadParam("a dossier cannot be put on the Unmatched list", param="watch_list_ids")
    scope.refuse_hidden(ids, "watch lists", "watch_list_ids")
    return uow.watch_lists.get_many(ids, param="watch_list_ids")


def _visible_dossier(uow: UnitOfWork, dossier_id: int, scope: VisibilityScope) -> orm.Dossier:
    row = uow.dossiers.get(dossier_id)
    return ensure_visible(row, scope.sees_dossier(row), "dossier", dossier_id)


@router.post("", status_code=201, response_model=DossierOut)
def create_dossier(body: DossierIn, uow: Uow, _: Operator, scope: Scope, request: Request) -> DossierOut:
    """With `event_ids`, each event's face (its crop, box, quality and stored vector) becomes a photo
    of the new dossier; an unknown or invisible event is a 400 on `event_ids`, and nothing is created."""
    lists = _watch_lists(uow, body.watch_list_ids, scope)
    uow.links.refuse_edit(body.watch_list_ids, "cannot create the dossier")
    row = orm.Dossier(**body.model_dump(mode="json", exclude={"watch_list_ids", "event_ids"}), watch_lists=lists)
    uow.dossiers.add(row)
    if body.event_ids:
        faces_from_events(uow, row, [visible_event(uow, i, scope, "event_ids") for i in body.event_ids],
                          str(uow.settings.get("embedder")))
    uow.commit()
    if body.event_ids:
        sync_dossier_gallery(request)
    return dossier_out(row, scope)


@router.get("", response_model=Page[DossierOut])
def list_dossiers(request: Request, uow: Uow, _: Viewer, scope: Scope, paging: Pages,
                  query: Annotated[DossierQuery, Query()]) -> Page[DossierOut]:
    filters = {**meta_query(request), **query.model_dump(exclude_none=True)}
    page = uow.dossiers.list_page(filters, paging.limit, paging.cursor, scope)
    return Page(results=[dossier_out(d, scope) for d in page.items], next_cursor=page.next_cursor)


@router.get("/{dossier_id}", response_model=DossierOut)
def get_dossier(dossier_id: DbId, uow: Uow, _: Viewer, scope: Scope) -> DossierOut:
    return dossier_out(_visible_dossier(uow, dossier_id, scope), scope)


@router.patch("/{dossier_id}", response_model=DossierOut)
def update_dossier(dossier_id: DbId, body: DossierPatch, uow: Uow, _: Operator, scope: Scope,
                   request: Request) -> DossierOut:
    row = _visible_dossier(uow, dossier_id, scope)
    uow.links.refuse_edit([w.id for w in row.watch_lists] + (body.watch_list_ids or []), "cannot change the dossier")
    if body.watch_list_ids is not None:
        # Memberships of lists hidden from the caller stay: the caller can neither see nor change them.
        kept = [w for w in row.watch_lists if not scope.sees_list(w.id)]
        row.watch_lists = kept + _watch_lists(uow, body.watch_list_ids, scope)
    changes = apply_patch(row, body, skip=("watch_list_ids",))
    matching_changed = "active" in changes or body.watch_list_ids is not None
    if matching_changed:
        uow.flush()
        refresh_dossier_meta(uow, [row.id])
    uow.commit()
    if matching_changed:
        sync_dossier_gallery(request)
    return dossier_out(row, scope)


@router.delete("/{dossier_id}", status_code=204)
def delete_dossier(dossier_id: DbId, uow: Uow, _: Operator, scope: Scope, request: Request,
                   media: Media) -> Response:
    """Removes the dossier, its photos and negatives, their vectors of every model and their files (not its events:
    `POST /v1/dossiers/{id}/erase` does that)."""
    row = _visible_dossier(uow, dossier_id, scope)
    uow.links.refuse_edit([w.id for w in row.watch_lists], "cannot delete the dossier")
    keys = face_keys(row.faces) | negative_keys(negatives_of(uow, row.id))  # its negatives go with it (cascade)
    remove_dossier(uow, row)
    uow.commit()
    delete_unreferenced(uow, media, keys)
    sync_dossier_gallery(request)
    return Response(status_code=204)


@router.post("/{dossier_id}/erase", response_model=ErasureOut)
def erase_dossier(dossier_id: DbId, uow: Uow, _: Admin, request: Request, media: Media) -> ErasureOut:
    """Erases a person: the dossier, its photos, its negatives and every event matched to it or in its episodes, with
    rows, vectors (both galleries, every model) and media files. Admins only; recorded in the audit log."""
    report = erase_person(uow, media, uow.dossiers.get(dossier_id))
    sync_dossier_gallery(request)
    sync_events_gallery(request)
    return ErasureOut(**report.as_dict())
