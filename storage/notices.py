"""Webhook notices beyond face events: camera status changes and task status changes.

A webhook hears what its `event_types` name: `event` (faces; the default), `camera_status`,
`task_status`. A notice is a `WebhookNotice` row plus one outbox row per subscribed webhook, named
`notice:<id>` in `WebhookOutbox.event_id`, written in the same transaction as the change itself, so
notices are delivered by the same durable, ordered, retried dispatcher as events.

Camera status changes are caught where every writer of `Camera.status` already goes through: the
session's flush (`before_flush` below), so the JobManager (or anything else) needs no extra call.
Every change of the value is a notice: ok → failing (with the error), failing → starting → ok, …
`camera_in` / `camera_group_in` filters of the webhook apply to camera notices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from storage import orm

EVENT, CAMERA_STATUS, TASK_STATUS = "event", "camera_status", "task_status"
EVENT_TYPES = (EVENT, CAMERA_STATUS, TASK_STATUS)
NOTICE_PREFIX = "notice:"


def subscribed(hook: orm.Webhook, kind: str) -> bool:
    return kind in (hook.event_types if hook.event_types is not None else [EVENT])


def _camera_filters_pass(filters: dict[str, Any], payload: dict[str, Any]) -> bool:
    for name, key in (("camera_in", "camera_id"), ("camera_group_in", "camera_group_id")):
        wanted = filters.get(name)
        if wanted is not None and payload.get(key) not in wanted:
            return False
    return True


def enqueue_notice(session: Session, kind: str, payload: dict[str, Any]) -> int:
    """A notice and its outbox rows (in the caller's transaction); returns how many webhooks get it."""
    hooks = _subscribers(session, kind, payload)
    if not hooks:
        return 0
    notice = orm.WebhookNotice(kind=kind, payload={"type": kind, **payload})
    session.add(notice)
    session.flush([notice])
    for hook_id in hooks:
        session.add(orm.WebhookOutbox(webhook_id=hook_id, event_id=f"{NOTICE_PREFIX}{notice.id}"))
    return len(hooks)


def _subscribers(session: Session, kind: str, payload: dict[str, Any]) -> list[int]:
    return [h.id for h in session.scalars(select(orm.Webhook).where(orm.Webhook.active.is_(True)))
            if subscribed(h, kind) and (kind != CAMERA_STATUS or _camera_filters_pass(h.filters or {}, payload))]


def notice_id(outbox_event_id: str) -> int | None:
    if outbox_event_id.startswith(NOTICE_PREFIX):
        try:
            return int(outbox_event_id[len(NOTICE_PREFIX):])
        except ValueError:
            return None
    return None


def notice_payloads(session: Session, outbox_event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The bodies of the notices named by these outbox ids (`notice:<id>` → payload)."""
    ids = {i: n for i in outbox_event_ids if (n := notice_id(i)) is not None}
    if not ids:
        return {}
    rows = {r.id: r for r in session.scalars(select(orm.WebhookNotice).where(orm.WebhookNotice.id.in_(ids.values())))}
    return {i: rows[n].payload for i, n in ids.items() if n in rows}


@event.listens_for(Session, "before_flush")
def _camera_status_changes(session: Session, _context: Any, _instances: Any) -> None:
    changes = []
    for obj in list(session.dirty):
        if not isinstance(obj, orm.Camera):
            continue
        history = inspect(obj).attrs.status.history
        if not history.has_changes() or not history.deleted:
            continue
        old, new = history.deleted[0], obj.status
        if old != new:
            changes.append({"camera_id": obj.id, "camera_group_id": obj.camera_group_id, "name": obj.name,
                            "old_status": old, "status": new, "error": obj.status_error or "",
                            "at": datetime.now(UTC).isoformat()})
    for payload in changes:
        _add_notice_in_flush(session, CAMERA_STATUS, payload)


def _add_notice_in_flush(session: Session, kind: str, payload: dict[str, Any]) -> None:
    """Inside before_flush the notice's id is not known yet: its outbox rows are linked after the flush."""
    hooks = _subscribers(session, kind, payload)
    if not hooks:
        return
    notice = orm.WebhookNotice(kind=kind, payload={"type": kind, **payload})
    session.add(notice)
    session.info.setdefault("facewatch_notice_hooks", []).append((notice, hooks))


@event.listens_for(Session, "after_flush_postexec")
def _link_notice_outbox(session: Session, _context: Any) -> None:
    pending = session.info.pop("facewatch_notice_hooks", None)
    if not pending:
        return
    for notice, hook_ids in pending:
        for hook_id in hook_ids:
            session.add(orm.WebhookOutbox(webhook_id=hook_id, event_id=f"{NOTICE_PREFIX}{notice.id}"))
    # These outbox rows are written by the next flush (the commit flushes again until clean).
