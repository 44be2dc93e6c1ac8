"""Events to VMSs: the sender of the video security suite, over the plug-in contract.

Each tick, per active VMS: new events (after the VMS's cursor, in commit order) from cameras set to forward
whose watch list opts in are queued as `sent` messages (one row per event and VMS, so a restart never
queues one twice); due messages are posted to the plug-in, at most `sender_tasks` at once; a failed post is
retried after min_send_timeout_s · 2^(attempts−1), capped at max_send_timeout_s, until max_send_attempts,
then kept as `failed` with its error. A plug-in's 4xx is final at once (retrying the same request cannot
help). Messages older than the VMS's retention days are pruned (0 keeps them).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from actors.vms_cameras import plugin_address, sync_cameras
from actors.vms_client import AsyncPluginClient, PluginError
from facewatch.backoff import backoff_delay
from storage import orm
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork
from storage.vms import encode_event_cursor

log = logging.getLogger("facewatch.vms")
EVENT_TYPE_FACE = "face"
SCAN_BATCH = 500
SEND_BATCH = 100


@dataclass(frozen=True)
class SendOutcome:
    message_id: int
    ok: bool
    error: str = ""
    retryable: bool = False


def vms_event_payload(event: orm.Event, vms_camera_id: str, public_url: str) -> dict[str, Any]:
    """What a VMS receives for one event: the event as webhooks see it, plus the VMS's own camera id."""
    return {"type": EVENT_TYPE_FACE, "vms_camera_id": vms_camera_id, "event": event_to_dict(event, public_url)}


def queue_new_events(db_url: str, vms_id: int, public_url: str, batch: int = SCAN_BATCH) -> int:
    """Queues the VMS's share of the events committed since its cursor; returns how many were queued.

    A VMS registered while events already exist starts at the newest one: history is not replayed into it.
    """
    with UnitOfWork(db_url) as uow:
        plugin = uow.vms.get(vms_id)
        if plugin.event_cursor is None:
            plugin.event_cursor = uow.vms.latest_event_cursor() or encode_event_cursor(datetime.now(UTC), "")
            uow.commit()
            return 0
        events = uow.vms.events_after(plugin.event_cursor, batch)
        if not events:
            return 0
        # An empty allowed_types sends nothing (it is not "all types"): the row's default is ["face"].
        wanted = plugin.sender_enabled and EVENT_TYPE_FACE in (plugin.allowed_types or [])
        cameras = uow.vms.forwarding_cameras(vms_id) if wanted else {}
        lists = {int(i) for i in plugin.forward_watch_list_ids or []}
        queued = 0
        for event in events:
            if event.camera_id in cameras and event.watch_list_id in lists:
                uow.vms.queue_sent(vms_id, event.id, cameras[event.camera_id], EVENT_TYPE_FACE,
                                   vms_event_payload(event, cameras[event.camera_id], public_url))
                queued += 1
        plugin.event_cursor = encode_event_cursor(events[-1].created_at, events[-1].id)
        uow.commit()
        return queued


def retry_delay_s(attempts: int, plugin: orm.VmsPlugin) -> float:
    return backoff_delay(attempts, plugin.min_send_timeout_s, 2.0, plugin.max_send_timeout_s)


def record_outcomes(db_url: str, vms_id: int, outcomes: list[SendOutcome], now: datetime) -> None:
    with UnitOfWork(db_url) as uow:
        plugin = uow.vms.get(vms_id)
        for outcome in outcomes:
            message = uow.session.get(orm.VmsMessage, outcome.message_id)
            if message is None:
                continue
            message.attempts += 1
            if outcome.ok:
                message.status, message.sent_at, message.last_error = "sent", now, ""
                continue
            message.last_error = outcome.error
            if not outcome.retryable or message.attempts >= plugin.max_send_attempts:
                message.status = "failed"
            else:
                message.next_attempt_at = now + timedelta(seconds=retry_delay_s(message.attempts, plugin))
        uow.commit()


async def send_due(db_url: str, vms_id: int, client: httpx.AsyncClient, now: datetime | None = None) -> int:
    """Posts the VMS's due messages (bounded concurrency); returns how many were attempted."""
    now = now or datetime.now(UTC)

    def load() -> tuple[Any, int, list[tuple[int, dict[str, Any]]]]:
        with UnitOfWork(db_url) as uow:
            plugin = uow.vms.get(vms_id)
            due = uow.vms.due_messages(vms_id, now, SEND_BATCH)
            return plugin_address(plugin), max(1, plugin.sender_tasks), [(m.id, m.payload) for m in due]

    address, tasks, due = await asyncio.to_thread(load)
    if not due:
        return 0
    sender = AsyncPluginClient(address, client)
    gate = asyncio.Semaphore(tasks)

    async def send(message_id: int, payload: dict[str, Any]) -> SendOutcome:
        async with gate:
            try:
                await sender.send_events([payload])
                return SendOutcome(message_id, ok=True)
            except PluginError as exc:
                return SendOutcome(message_id, ok=False, error=exc.reason, retryable=exc.retryable)

    outcomes = await asyncio.gather(*(send(mid, payload) for mid, payload in due))
    await asyncio.to_thread(record_outcomes, db_url, vms_id, list(outcomes), now)
    return len(outcomes)


def prune_messages(db_url: str, vms_id: int, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    removed = 0
    with UnitOfWork(db_url) as uow:
        plugin = uow.vms.get(vms_id)
        for direction, days in (("sent", plugin.sent_retention_days), ("received", plugin.received_retention_days)):
            if days > 0:
                removed += uow.vms.prune_messages(vms_id, direction, now - timedelta(days=days))
        uow.commit()
    return removed


class VmsAgentCore:
    """One tick per `poll_s`: camera imports when due, queueing, sending, pruning — for every active VMS."""

    def __init__(self, db_url: str, public_url: str, poll_s: float = 1.0, prune_every_s: float = 600.0) -> None:
        self.db_url, self.public_url, self.poll_s, self.prune_every_s = db_url, public_url, poll_s, prune_every_s
        self._stopped = False
        self._last_prune: datetime | None = None
        self.counters = {"ticks": 0, "imports": 0, "queued": 0, "attempted": 0, "errors": 0}

    def due_for_import(self, plugin: orm.VmsPlugin, now: datetime) -> bool:
        if plugin.sync_interval_s <= 0:
            return plugin.last_sync_at is None
        return plugin.last_sync_at is None or now - plugin.last_sync_at >= timedelta(seconds=plugin.sync_interval_s)

    async def tick(self, client: httpx.AsyncClient) -> None:
        now = datetime.now(UTC)

        def plugins() -> list[tuple[int, bool]]:
            with UnitOfWork(self.db_url) as uow:
                return [(p.id, self.due_for_import(p, now)) for p in uow.vms.active()]

        prune = self._last_prune is None or now - self._last_prune >= timedelta(seconds=self.prune_every_s)
        for vms_id, import_due in await asyncio.to_thread(plugins):
            try:
                if import_due:
                    await asyncio.to_thread(sync_cameras, self.db_url, vms_id, now)
                    self.counters["imports"] += 1
            except PluginError as exc:  # kept on the VMS's row; the sender still runs
                log.warning("VMS %s: camera import failed: %s", vms_id, exc.reason)
                self.counters["errors"] += 1
            try:
                self.counters["queued"] += await asyncio.to_thread(queue_new_events, self.db_url, vms_id,
                                                                   self.public_url)
                self.counters["attempted"] += await send_due(self.db_url, vms_id, client)
                if prune:
                    await asyncio.to_thread(prune_messages, self.db_url, vms_id, now)
            except Exception:  # noqa: BLE001 - a DB outage or a deleted VMS: the next tick tries again
                log.warning("VMS %s: sender tick failed", vms_id, exc_info=True)
                self.counters["errors"] += 1
        if prune:
            self._last_prune = now
        self.counters["ticks"] += 1

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            while not self._stopped:
                try:
                    await self.tick(client)
                except Exception:  # noqa: BLE001 - e.g. the database away: keep going
                    log.warning("VMS agent tick failed", exc_info=True)
                await asyncio.sleep(self.poll_s)

    def stop(self) -> None:
        self._stopped = True

    def stats(self) -> dict[str, int]:
        return dict(self.counters)
