"""Linked watch lists: `/v1/watch-lists/{id}/link` on a slave (admins), and what a master serves to its slaves
(the vectors of a dossier face). See serve_apps/api/linked_lists.py for the sync itself."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from facewatch.errors import BadParam, Conflict, NotFound
from serve_apps.api.deps import Admin, Operator, Uow
from serve_apps.api.linked_lists import SYNC_LEASE, MasterClient, MasterError, sync_link
from serve_apps.api.schemas import DbId
from serve_apps.api.vms_schemas import LinkIn, LinkOut
from storage import orm
from storage.unit_of_work import UnitOfWork

router = APIRouter(tags=["linked watch lists"])


def link_out(row: orm.WatchListLink) -> LinkOut:
    data = {c: getattr(row, c) for c in LinkOut.model_fields if c != "sync_time"}
    return LinkOut(**data, sync_time=f"{row.sync_hour:02d}:{row.sync_minute:02d}")


def _link_of(uow: UnitOfWork, watch_list_id: int) -> orm.WatchListLink:
    uow.watch_lists.get(watch_list_id)
    link = uow.links.for_watch_list(watch_list_id)
    if link is None:
        raise NotFound(f"watch list {watch_list_id} is not linked to a master", param="watch_list_id")
    return link


@router.post("/watch-lists/{watch_list_id}/link", status_code=201, response_model=LinkOut)
async def link_watch_list(watch_list_id: DbId, body: LinkIn, uow: Uow, _: Admin) -> LinkOut:
    """Makes this (empty) watch list follow a master installation's list; the first sync runs at once."""
    row = uow.watch_lists.get(watch_list_id)
    if row.builtin:
        raise BadParam("the built-in Unmatched list cannot be linked", param="watch_list_id")
    if uow.links.for_watch_list(watch_list_id) is not None:
        raise Conflict(f"watch list {watch_list_id} is already linked; unlink it first", param="watch_list_id")
    if uow.dossiers.count_on_list(row.id):
        raise Conflict("only an empty watch list can be linked (its dossiers would mix with the master's)",
                       param="watch_list_id")
    master_url = str(body.master_url).rstrip("/")
    async with httpx.AsyncClient() as client:
        try:
            await MasterClient(master_url, body.master_token, client).get(
                f"/v1/watch-lists/{body.master_watch_list_id}")
        except MasterError as exc:
            raise BadParam(f"the master list cannot be read: {exc}", param="master_url") from exc
    hour, minute = (int(v) for v in body.sync_time.split(":"))
    link = uow.links.add(orm.WatchListLink(
        watch_list_id=watch_list_id, master_url=master_url, master_token=body.master_token,
        master_watch_list_id=body.master_watch_list_id, sync_hour=hour, sync_minute=minute,
        next_sync_at=datetime.now(UTC)))  # due now: the first copy does not wait for the night
    uow.commit()
    return link_out(link)


@router.get("/watch-lists/{watch_list_id}/link", response_model=LinkOut)
def get_link(watch_list_id: DbId, uow: Uow, _: Admin) -> LinkOut:
    return link_out(_link_of(uow, watch_list_id))


@router.delete("/watch-lists/{watch_list_id}/link", status_code=204)
def unlink_watch_list(watch_list_id: DbId, uow: Uow, _: Admin) -> Response:
    """Stops following the master; the copies stay and become editable here."""
    uow.links.delete(_link_of(uow, watch_list_id))
    uow.commit()
    return Response(status_code=204)


@router.post("/watch-lists/{watch_list_id}/link/sync", response_model=LinkOut)
async def sync_watch_list_link(watch_list_id: DbId, request: Request, uow: Uow, _: Admin) -> LinkOut:
    """Runs the sync now and answers with its report (`last_sync_report`)."""
    link = _link_of(uow, watch_list_id)
    now = datetime.now(UTC)
    if link.syncing_until is not None and link.syncing_until > now:
        raise Conflict("a sync of this list is running; try again when it has finished", param="watch_list_id")
    link.syncing_until = now + SYNC_LEASE  # held until done (the sync clears it)
    link_id = link.id
    uow.commit()
    config, services = request.app.state.config, getattr(request.app.state, "services", None)
    model = services.embedder if services is not None else str(uow.settings.get("embedder"))
    async with httpx.AsyncClient() as client:
        await sync_link(link_id, config.database_url, request.app.state.media, services, client, model,
                        config.max_upload_bytes)
    uow.session.expire_all()
    return link_out(uow.links.get(link_id))


class FaceVectorOut(BaseModel):
    model: str
    dim: int
    vector: str  # base64 of little-endian float32


class FaceVectorsOut(BaseModel):
    vectors: list[FaceVectorOut]


@router.get("/dossiers/{dossier_id}/faces/{face_id}/vectors", response_model=FaceVectorsOut, tags=["dossiers"])
def dossier_face_vectors(dossier_id: DbId, face_id: DbId, uow: Uow, _: Operator) -> FaceVectorsOut:
    """The stored vectors of a dossier face, one per model (what a linked slave copies)."""
    face = uow.dossier_faces.find(face_id)
    if face is None or face.dossier_id != dossier_id:
        raise NotFound(f"dossier {dossier_id} has no face {face_id}", param="face_id")
    rows = uow.links.dossier_face_vectors(face_id)
    return FaceVectorsOut(vectors=[FaceVectorOut(model=r.model, dim=r.dim, vector=base64.b64encode(r.vector).decode())
                                   for r in rows])
