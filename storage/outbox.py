"""The durable webhook outbox: which webhooks an event goes to, written in the event's transaction.

Filters (SPEC §6): values inside one filter are OR-ed, filters are AND-ed; `{}` matches every event;
an empty list matches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from facewatch.backoff import backoff_delay
from storage import orm
from storage.unit_of_work import UnitOfWork

BACKOFF_CAP_S = 100.0

_LIST_FILTERS = {
    "camera_group_in": "camera_group_id",
    "camera_in": "camera_id",
    "watch_list_in": "watch_list_id",
    "dossier_in": "dossier_id",
    "person_in": "person_id",
    "person_status_in": "person_status",  # new | known | regular (docs/persons.md)
}


def webhook_matches(filters: Mapping[str, Any], event: orm.Event) -> bool:
    for name, attribute in _LIST_FILTERS.items():
        wanted = filters.get(name)
        if wanted is not None and getattr(event, attribute) not in wanted:
            return False
    matched = filters.get("matched")
    if matched is not None and bool(event.matched) != bool(matched):
        return False
    floor = filters.get("confidence_gte")
    if floor is not None and (event.confidence is None or event.confidence < floor):
        return False
    return True


def enqueue_event(uow: UnitOfWork, event: orm.Event) -> int:
    """Adds outbox rows for every active webhook whose filters pass; call before the event commits."""
    hooks = uow.session.scalars(select(orm.Webhook).where(orm.Webhook.active.is_(True)))
    count = 0
    for hook in hooks:
        if "event" in (hook.event_types if hook.event_types is not None else ["event"]) and \
                webhook_matches(hook.filters or {}, event):
            uow.session.add(orm.WebhookOutbox(webhook_id=hook.id, event_id=event.id))
            count += 1
    return count


def retry_delay_s(attempts: int) -> float:
    """Exponential back-off after `attempts` failed tries: 1, 2, 4, … capped at 100 s."""
    return backoff_delay(max(1, attempts), 1.0, 2.0, BACKOFF_CAP_S)


def pending_batch(uow: UnitOfWork, webhook_id: int, size: int) -> list[orm.WebhookOutbox]:
    """The head of a webhook's queue, in order; empty while the head waits for its retry time.

    Only the head is ever retried, so a receiver gets the events of one webhook in order.
    """
    stmt = (
        select(orm.WebhookOutbox)
        .where(orm.WebhookOutbox.webhook_id == webhook_id, orm.WebhookOutbox.status == "pending")
        .order_by(orm.WebhookOutbox.id)
        .limit(size)
    )
    rows = list(uow.session.scalars(stmt))
    if rows and rows[0].next_attempt_at > datetime.now(UTC):
        return []
    return rows


def record_attempt(
    uow: UnitOfWork, hook: orm.Webhook, rows: list[orm.WebhookOutbox], ok: bool,
    status_code: int | None, error: str, duration_ms: float,
) -> None:
    now = datetime.now(UTC)
    attempt = max(r.attempts for r in rows) + 1
    uow.session.add(orm.WebhookDelivery(
        webhook_id=hook.id, event_ids=[r.event_id for r in rows], attempt=attempt, ok=ok,
        status_code=status_code, error=error[:2000], duration_ms=duration_ms,
    ))
    ids = [r.id for r in rows]
    if ok:
        values: dict[str, Any] = {"status": "delivered", "delivered_at": now, "attempts": attempt, "last_error": ""}
    elif attempt >= hook.max_attempts:
        values = {"status": "failed", "attempts": attempt, "last_error": error[:2000]}
    else:
        values = {"attempts": attempt, "last_error": error[:2000],
                  "next_attempt_at": now + timedelta(seconds=retry_delay_s(attempt))}
    uow.session.execute(update(orm.WebhookOutbox).where(orm.WebhookOutbox.id.in_(ids)).values(**values))


def outbox_rows(uow: UnitOfWork, outbox_ids: list[int]) -> list[orm.WebhookOutbox]:
    return list(uow.session.scalars(select(orm.WebhookOutbox).where(orm.WebhookOutbox.id.in_(outbox_ids))))
