"""Cameras from a VMS: importing keeps a camera group and its cameras in step with the VMS's camera list,
and a VMS camera's stream URL is asked of its plug-in every time its source is opened.

A VMS camera's `url` is `vms://<vms id>/<VMS camera id>`: the row says where the stream comes from, not
what the stream URL was once (VMS stream URLs often carry a session and expire). Cameras gone from the VMS
are deactivated, never deleted (their events keep their camera); a camera that comes back is active again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from actors.video_source import SourceOpenError
from actors.vms_client import PluginAddress, PluginCamera, PluginClient, PluginError
from storage import orm
from storage.unit_of_work import UnitOfWork

VMS_URL_SCHEME = "vms://"


def vms_camera_url(vms_id: int, vms_camera_id: str) -> str:
    return f"{VMS_URL_SCHEME}{vms_id}/{quote(vms_camera_id, safe='')}"


def parse_vms_url(url: str) -> tuple[int, str] | None:
    """(vms id, VMS camera id) of a `vms://` camera URL; None for any other URL."""
    if not url.startswith(VMS_URL_SCHEME):
        return None
    vms_id, _, camera = url[len(VMS_URL_SCHEME):].partition("/")
    if not vms_id.isdigit() or not camera:
        raise SourceOpenError(f"'{url}' is not a VMS camera URL (vms://<vms id>/<camera id>)", param="url")
    return int(vms_id), unquote(camera)


def plugin_address(plugin: orm.VmsPlugin) -> PluginAddress:
    return PluginAddress(url=plugin.url, token=plugin.token, timeout_s=plugin.response_timeout_s)


def resolve_source_url(url: str, db_url: str) -> str:
    """The URL to open for a camera: its own, or for a VMS camera the one its plug-in gives now."""
    parsed = parse_vms_url(url)
    if parsed is None:
        return url
    vms_id, vms_camera_id = parsed
    with UnitOfWork(db_url) as uow:
        plugin = uow.vms.find(vms_id)
        if plugin is None or not plugin.active:
            raise SourceOpenError(f"VMS {vms_id} is not registered or not active", param="url")
        address, name = plugin_address(plugin), plugin.name
    try:
        return PluginClient(address).resolve_stream(vms_camera_id)
    except PluginError as exc:
        raise SourceOpenError(f"VMS '{name}' gave no stream for camera '{vms_camera_id}': {exc.reason}",
                              param="url") from exc


@dataclass
class ImportReport:
    cameras: int = 0
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    deactivated: list[int] = field(default_factory=list)
    reactivated: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"cameras": self.cameras, "created": self.created, "updated": self.updated,
                "deactivated": self.deactivated, "reactivated": self.reactivated}


def _group_for(uow: UnitOfWork, plugin: orm.VmsPlugin) -> orm.CameraGroup:
    group = uow.camera_groups.find(plugin.camera_group_id) if plugin.camera_group_id is not None else None
    if group is None:
        name = f"vms: {plugin.name}"
        group = uow.camera_groups.by_name(name) or uow.camera_groups.add(
            orm.CameraGroup(name=name, comment="imported from a VMS"))
        plugin.camera_group_id = group.id
    return group


def import_cameras(uow: UnitOfWork, plugin: orm.VmsPlugin, listed: list[PluginCamera],
                   now: datetime | None = None) -> ImportReport:
    """Brings the plug-in's camera group in step with `listed` (not committed: the caller commits)."""
    now = now or datetime.now(UTC)
    group = _group_for(uow, plugin)
    links = {link.vms_camera_id: link for link in uow.vms.cameras_of(plugin.id)}
    report = ImportReport(cameras=len(listed))
    for item in listed:
        link = links.pop(item.id, None)
        if link is None:
            camera = uow.cameras.add(orm.Camera(name=item.name[:200], camera_group_id=group.id,
                                                url=vms_camera_url(plugin.id, item.id),
                                                comment=f"VMS camera {item.id}"))
            uow.vms.add_camera_link(orm.VmsCamera(vms_id=plugin.id, vms_camera_id=item.id, camera_id=camera.id,
                                                  vms_status=item.status, last_seen_at=now))
            report.created.append(camera.id)
            continue
        camera = uow.cameras.get(link.camera_id)
        if camera.name != item.name[:200]:
            camera.name = item.name[:200]
            report.updated.append(camera.id)
        if not link.present:
            link.present, camera.active = True, True
            report.reactivated.append(camera.id)
        link.vms_status, link.last_seen_at = item.status, now
    for link in links.values():  # gone from the VMS
        if link.present:
            link.present = False
            uow.cameras.get(link.camera_id).active = False
            report.deactivated.append(link.camera_id)
    return report


def sync_cameras(db_url: str, vms_id: int, now: datetime | None = None) -> ImportReport:
    """Asks the plug-in for its cameras and imports them; the outcome is kept on the plug-in's row."""
    now = now or datetime.now(UTC)
    with UnitOfWork(db_url) as uow:
        address = plugin_address(uow.vms.get(vms_id))
    try:
        listed = PluginClient(address).list_cameras()
    except PluginError as exc:
        with UnitOfWork(db_url) as uow:
            plugin = uow.vms.get(vms_id)
            plugin.last_sync_at, plugin.last_sync_error = now, exc.reason
            uow.commit()
        raise
    with UnitOfWork(db_url) as uow:
        plugin = uow.vms.get(vms_id)
        report = import_cameras(uow, plugin, listed, now)
        plugin.last_sync_at, plugin.last_sync_error, plugin.last_sync_report = now, "", report.as_dict()
        uow.commit()
    return report
