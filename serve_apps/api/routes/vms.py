"""`/v1/vms`: the registry of VMS plug-ins (admins), their cameras and messages, VMS events coming in
(authenticated by the plug-in's own `VmsPluginToken`), and an event's link into its VMS's archive."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.concurrency import run_in_threadpool

from actors.vms_cameras import plugin_address, sync_cameras
from actors.vms_client import AUTH_SCHEME, PluginClient, PluginError
from facewatch.errors import AuthFailed, BadParam, NotFound, ServiceUnavailable
from facewatch.settings import Config
from serve_apps.api.deps import Admin, Pages, Scope, Uow, Viewer, get_config
from serve_apps.api.routes._common import page_out
from serve_apps.api.routes.events import _visible_event
from serve_apps.api.schemas import DbId, Page
from serve_apps.api.vms_schemas import (
    ArchiveLinkOut,
    VmsCameraOut,
    VmsCameraPatch,
    VmsEventsAccepted,
    VmsEventsIn,
    VmsIn,
    VmsMessageOut,
    VmsOut,
    VmsPatch,
)
from storage import orm
from storage.pagination import SortKey
from storage.unit_of_work import UnitOfWork

router = APIRouter(tags=["vms"])


def _check_lists(uow: UnitOfWork, ids: list[int]) -> None:
    uow.watch_lists.get_many(ids, param="forward_watch_list_ids")


@router.post("/vms", status_code=201, response_model=VmsOut)
def register_vms(body: VmsIn, uow: Uow, _: Admin) -> orm.VmsPlugin:
    fields = body.model_dump(mode="json")
    _check_lists(uow, body.forward_watch_list_ids)
    if body.camera_group_id is not None:
        uow.camera_groups.get_many([body.camera_group_id], param="camera_group_id")
    row = uow.vms.add(orm.VmsPlugin(**fields))
    uow.commit()
    return row


@router.get("/vms", response_model=Page[VmsOut])
def list_vms(uow: Uow, _: Admin, paging: Pages) -> Page[VmsOut]:
    page = uow.vms.list_page({}, paging.limit, paging.cursor)
    return page_out(page, VmsOut)


@router.get("/vms/{vms_id}", response_model=VmsOut)
def get_vms(vms_id: DbId, uow: Uow, _: Admin) -> orm.VmsPlugin:
    return uow.vms.get(vms_id)


@router.patch("/vms/{vms_id}", response_model=VmsOut)
def update_vms(vms_id: DbId, body: VmsPatch, uow: Uow, _: Admin) -> orm.VmsPlugin:
    row = uow.vms.get(vms_id)
    changes = body.model_dump(mode="json", exclude_unset=True)
    nulls = [name for name, value in changes.items() if value is None]
    if nulls:
        raise BadParam(f"{nulls[0]} cannot be null", param=nulls[0])
    if "forward_watch_list_ids" in changes:
        _check_lists(uow, changes["forward_watch_list_ids"])
    for name, value in changes.items():
        setattr(row, name, value)
    uow.commit()
    return row


@router.delete("/vms/{vms_id}", status_code=204)
def delete_vms(vms_id: DbId, uow: Uow, _: Admin) -> Response:
    """Unregisters the VMS; its imported cameras stay (deactivated) with their events."""
    row = uow.vms.get(vms_id)
    for link in uow.vms.cameras_of(vms_id):
        uow.cameras.get(link.camera_id).active = False
    uow.vms.delete(row)
    uow.commit()
    return Response(status_code=204)


@router.post("/vms/{vms_id}/sync", response_model=VmsOut)
async def import_vms_cameras(vms_id: DbId, uow: Uow, config: Annotated[Config, Depends(get_config)],
                             _: Admin) -> orm.VmsPlugin:
    """Imports the VMS's cameras now (the VMS agent also does it every `sync_interval_s`)."""
    uow.vms.get(vms_id)
    uow.rollback()  # ends this read transaction: on SQLite it would hold off the import's writes
    try:
        await run_in_threadpool(sync_cameras, config.database_url, vms_id)
    except PluginError as exc:
        raise ServiceUnavailable(f"the VMS plug-in failed: {exc.reason}") from exc
    uow.session.expire_all()
    return uow.vms.get(vms_id)


@router.get("/vms/{vms_id}/cameras", response_model=Page[VmsCameraOut])
def list_vms_cameras(vms_id: DbId, uow: Uow, _: Admin, paging: Pages) -> Page[VmsCameraOut]:
    uow.vms.get(vms_id)
    page = uow.vms.page(uow.vms.cameras_query(vms_id), paging.limit, paging.cursor, keys=[SortKey(orm.VmsCamera.id)])
    return page_out(page, VmsCameraOut)


@router.patch("/vms/{vms_id}/cameras/{camera_id}", response_model=VmsCameraOut)
def set_vms_camera(vms_id: DbId, camera_id: DbId, body: VmsCameraPatch, uow: Uow, _: Admin) -> orm.VmsCamera:
    """Whether this camera's events are sent to its VMS (off by default)."""
    link = uow.vms.camera_link(camera_id)
    if link is None or link.vms_id != vms_id:
        raise NotFound(f"camera {camera_id} is not a camera of VMS {vms_id}", param="camera_id")
    link.forward_events = body.forward_events
    uow.commit()
    return link


@router.get("/vms/{vms_id}/messages", response_model=Page[VmsMessageOut])
def list_vms_messages(
    vms_id: DbId, uow: Uow, _: Admin, paging: Pages,
    direction: Annotated[str | None, Query(pattern="^(sent|received)$")] = None,
    status: Annotated[str | None, Query(pattern="^(pending|sent|failed|received)$")] = None,
) -> Page[VmsMessageOut]:
    """Events sent to and received from the VMS, newest first, with their delivery state."""
    uow.vms.get(vms_id)
    page = uow.vms.page(uow.vms.messages_query(vms_id, direction, status), paging.limit, paging.cursor,
                        keys=[SortKey(orm.VmsMessage.id, descending=True)])
    return page_out(page, VmsMessageOut)


def _plugin_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme != AUTH_SCHEME or not token.strip():
        raise AuthFailed(f"send 'Authorization: {AUTH_SCHEME} <token>'")
    return token.strip()


@router.post("/vms/{vms_id}/events", status_code=202, response_model=VmsEventsAccepted)
def receive_vms_events(
    vms_id: DbId, body: VmsEventsIn, uow: Uow,
    authorization: Annotated[str | None, Header(description=f"{AUTH_SCHEME} <the plug-in's token>")] = None,
) -> VmsEventsAccepted:
    """A plug-in posts its VMS's events here; they are kept (see `/messages`) for the VMS's retention."""
    token = _plugin_token(authorization)
    plugin = uow.vms.find(vms_id)
    if plugin is None or not hmac.compare_digest(plugin.token.encode(), token.encode()):
        raise AuthFailed("the VMS plug-in token is wrong")
    for item in body.events:
        uow.vms.record_received(vms_id, item.camera_id, item.type, item.model_dump(mode="json"))
    uow.commit()
    return VmsEventsAccepted(accepted=len(body.events))


@router.get("/events/{event_id}/archive-link", response_model=ArchiveLinkOut, tags=["events"])
async def event_archive_link(event_id: str, uow: Uow, _: Viewer, scope: Scope) -> ArchiveLinkOut:
    """Where the VMS's archive plays this event's camera at the event's moment (VMS cameras only)."""
    event = _visible_event(uow, event_id, scope)
    link = uow.vms.camera_link(event.camera_id) if event.camera_id is not None else None
    if link is None:
        raise NotFound(f"event {event_id} was not seen by a VMS camera", param="event_id")
    plugin = uow.vms.get(link.vms_id)
    address, vms_camera_id, at = plugin_address(plugin), link.vms_camera_id, event.timestamp
    try:
        url = await run_in_threadpool(PluginClient(address).archive_link, vms_camera_id, at)
    except PluginError as exc:
        raise ServiceUnavailable(f"the VMS plug-in failed: {exc.reason}") from exc
    return ArchiveLinkOut(url=url, vms_id=plugin.id, vms_camera_id=vms_camera_id, at=at)
