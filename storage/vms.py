"""Repositories of the VMS integration and of linked watch lists (every query they need, by intent)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, or_, select, update

from facewatch.errors import Conflict
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY
from storage.repositories import Repository

EVENT_CURSOR_SEPARATOR = "|"


def encode_event_cursor(created_at: datetime, event_id: str) -> str:
    return f"{created_at.isoformat()}{EVENT_CURSOR_SEPARATOR}{event_id}"


def decode_event_cursor(cursor: str) -> tuple[datetime, str]:
    moment, _, event_id = cursor.partition(EVENT_CURSOR_SEPARATOR)
    return datetime.fromisoformat(moment), event_id


class VmsRepository(Repository[orm.VmsPlugin]):
    model = orm.VmsPlugin
    label = "VMS"

    def by_name(self, name: str) -> orm.VmsPlugin | None:
        return self.session.scalar(select(orm.VmsPlugin).where(orm.VmsPlugin.name == name))

    def active(self) -> list[orm.VmsPlugin]:
        return list(self.session.scalars(select(orm.VmsPlugin).where(orm.VmsPlugin.active.is_(True))
                                         .order_by(orm.VmsPlugin.id)))

    # -- cameras ------------------------------------------------------------------------------------

    def cameras_of(self, vms_id: int) -> list[orm.VmsCamera]:
        return list(self.session.scalars(select(orm.VmsCamera).where(orm.VmsCamera.vms_id == vms_id)
                                         .order_by(orm.VmsCamera.id)))

    def cameras_query(self, vms_id: int) -> Select[Any]:
        return select(orm.VmsCamera).where(orm.VmsCamera.vms_id == vms_id)

    def camera_link(self, camera_id: int) -> orm.VmsCamera | None:
        return self.session.scalar(select(orm.VmsCamera).where(orm.VmsCamera.camera_id == camera_id))

    def add_camera_link(self, link: orm.VmsCamera) -> orm.VmsCamera:
        self.session.add(link)
        self.session.flush()
        return link

    def forwarding_cameras(self, vms_id: int) -> dict[int, str]:
        """camera id -> VMS camera id, for the cameras of this VMS whose events go back to it."""
        rows = self.session.execute(select(orm.VmsCamera.camera_id, orm.VmsCamera.vms_camera_id).where(
            orm.VmsCamera.vms_id == vms_id, orm.VmsCamera.forward_events.is_(True)))
        return {int(camera_id): str(vms_camera_id) for camera_id, vms_camera_id in rows}

    # -- events to send -------------------------------------------------------------------------------

    def events_after(self, cursor: str | None, limit: int) -> list[orm.Event]:
        """Events committed after `cursor` in (created_at, id) order (the live feed's order)."""
        stmt = select(orm.Event)
        if cursor:
            moment, event_id = decode_event_cursor(cursor)
            stmt = stmt.where(or_(orm.Event.created_at > moment,
                                  and_(orm.Event.created_at == moment, orm.Event.id > event_id)))
        return list(self.session.scalars(stmt.order_by(orm.Event.created_at, orm.Event.id).limit(limit)))

    def latest_event_cursor(self) -> str | None:
        event = self.session.scalar(select(orm.Event).order_by(orm.Event.created_at.desc(), orm.Event.id.desc())
                                    .limit(1))
        return encode_event_cursor(event.created_at, event.id) if event is not None else None

    # -- messages -------------------------------------------------------------------------------------

    def queue_sent(self, vms_id: int, event_id: str, vms_camera_id: str, kind: str, payload: dict) -> None:
        exists = self.session.scalar(select(orm.VmsMessage.id).where(
            orm.VmsMessage.vms_id == vms_id, orm.VmsMessage.direction == "sent", orm.VmsMessage.event_id == event_id))
        if exists is None:
            self.session.add(orm.VmsMessage(vms_id=vms_id, direction="sent", event_id=event_id,
                                            vms_camera_id=vms_camera_id, kind=kind, payload=payload))

    def record_received(self, vms_id: int, vms_camera_id: str | None, kind: str, payload: dict) -> orm.VmsMessage:
        row = orm.VmsMessage(vms_id=vms_id, direction="received", vms_camera_id=vms_camera_id, kind=kind,
                             payload=payload, status="received")
        self.session.add(row)
        self.session.flush()
        return row

    def due_messages(self, vms_id: int, now: datetime, limit: int) -> list[orm.VmsMessage]:
        return list(self.session.scalars(select(orm.VmsMessage).where(
            orm.VmsMessage.vms_id == vms_id, orm.VmsMessage.direction == "sent", orm.VmsMessage.status == "pending",
            orm.VmsMessage.next_attempt_at <= now).order_by(orm.VmsMessage.id).limit(limit)))

    def messages_query(self, vms_id: int, direction: str | None, status: str | None) -> Select[Any]:
        stmt = select(orm.VmsMessage).where(orm.VmsMessage.vms_id == vms_id)
        if direction is not None:
            stmt = stmt.where(orm.VmsMessage.direction == direction)
        if status is not None:
            stmt = stmt.where(orm.VmsMessage.status == status)
        return stmt

    def prune_messages(self, vms_id: int, direction: str, older_than: datetime) -> int:
        """Removes finished messages older than `older_than` (pending ones stay until sent or failed)."""
        result = self.session.execute(delete(orm.VmsMessage).where(
            orm.VmsMessage.vms_id == vms_id, orm.VmsMessage.direction == direction,
            orm.VmsMessage.status != "pending", orm.VmsMessage.created_at < older_than))
        return int(result.rowcount or 0)


class LinkRepository(Repository[orm.WatchListLink]):
    model = orm.WatchListLink
    label = "watch-list link"

    def for_watch_list(self, watch_list_id: int) -> orm.WatchListLink | None:
        return self.session.scalar(select(orm.WatchListLink).where(orm.WatchListLink.watch_list_id == watch_list_id))

    def linked_watch_list_ids(self, among: Sequence[int]) -> set[int]:
        if not among:
            return set()
        rows = self.session.scalars(select(orm.WatchListLink.watch_list_id).where(
            orm.WatchListLink.watch_list_id.in_(list(among))))
        return {int(r) for r in rows}

    def refuse_edit(self, watch_list_ids: Sequence[int], what: str) -> None:
        """Linked lists are read-only on the slave: a CONFLICT names the list and where to edit it."""
        linked = sorted(self.linked_watch_list_ids(watch_list_ids))
        if linked:
            raise Conflict(f"{what}: watch list {linked[0]} is linked to a master installation and read-only here; "
                           "edit it on the master, or unlink it first", param="watch_list_ids")

    def claim_due(self, now: datetime, lease: timedelta) -> list[int]:
        """Link ids whose sync is due, claimed for `lease` (a compare-and-set, so one API replica runs each)."""
        due = list(self.session.scalars(select(orm.WatchListLink.id).where(
            orm.WatchListLink.next_sync_at <= now,
            or_(orm.WatchListLink.syncing_until.is_(None), orm.WatchListLink.syncing_until < now))))
        claimed = []
        for link_id in due:
            result = self.session.execute(update(orm.WatchListLink).where(
                orm.WatchListLink.id == link_id,
                or_(orm.WatchListLink.syncing_until.is_(None), orm.WatchListLink.syncing_until < now),
            ).values(syncing_until=now + lease))
            if result.rowcount:
                claimed.append(int(link_id))
        return claimed

    def dossier_face_vectors(self, face_id: int) -> list[orm.FaceVector]:
        """Every model's vector of one dossier face (what a linked slave copies, for its own model)."""
        return list(self.session.scalars(select(orm.FaceVector).where(
            orm.FaceVector.gallery == DOSSIERS_GALLERY, orm.FaceVector.item_id == str(face_id))))

    def copies(self, link_id: int) -> dict[int, orm.LinkedDossier]:
        rows = self.session.scalars(select(orm.LinkedDossier).where(orm.LinkedDossier.link_id == link_id))
        return {int(r.master_dossier_id): r for r in rows}

    def add_copy(self, row: orm.LinkedDossier) -> orm.LinkedDossier:
        self.session.add(row)
        self.session.flush()
        return row
