"""Webhook filters, the outbox and the dispatcher against a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from actors.webhook_dispatcher import SIGNATURE_HEADER, WebhookDispatcherCore
from storage import orm
from storage.outbox import enqueue_event, retry_delay_s, webhook_matches
from storage.unit_of_work import UnitOfWork
from tests.helpers import local_ray, wait_for

pytestmark = pytest.mark.pg_capable


def _event(**fields) -> orm.Event:
    base = dict(id="e1", camera_id=None, camera_group_id=None, watch_list_id=None, dossier_id=None,
                matched=False, confidence=None)
    base.update(fields)
    return orm.Event(**base)


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        ({}, _event(), True),
        ({"matched": True}, _event(matched=True), True),
        ({"matched": True}, _event(matched=False), False),
        ({"camera_group_in": [1, 2]}, _event(camera_group_id=2), True),
        ({"camera_group_in": [1, 2]}, _event(camera_group_id=3), False),
        ({"camera_group_in": []}, _event(camera_group_id=3), False),  # an empty list matches nothing
        ({"watch_list_in": [5], "matched": True}, _event(watch_list_id=5, matched=True), True),
        ({"watch_list_in": [5], "matched": True}, _event(watch_list_id=5, matched=False), False),
        ({"dossier_in": [7], "camera_in": [1]}, _event(dossier_id=7, camera_id=2), False),
        ({"confidence_gte": 0.8}, _event(confidence=0.81), True),
        ({"confidence_gte": 0.8}, _event(confidence=0.79), False),
        ({"confidence_gte": 0.8}, _event(confidence=None), False),
    ],
)
def test_filters_or_inside_and_across(filters: dict, event: orm.Event, expected: bool) -> None:
    assert webhook_matches(filters, event) is expected


def test_backoff_doubles_and_caps_at_100s() -> None:
    assert [retry_delay_s(a) for a in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay_s(30) == 100


class Receiver:
    """A real HTTP receiver that fails its first deliveries, hangs once, then accepts."""

    def __init__(self, fail_first: int, hang_on: int | None, hang_s: float = 3.0) -> None:
        self.calls = 0
        self.accepted: list[dict] = []
        self.signatures_ok: list[bool] = []
        self.secret = b"s3cret"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                call = receiver.calls
                if hang_on is not None and call == hang_on:
                    time.sleep(hang_s)
                if call <= fail_first or call == hang_on:
                    self.send_response(500)
                    self.end_headers()
                    return
                expected = "sha256=" + hmac.new(receiver.secret, body, hashlib.sha256).hexdigest()
                receiver.signatures_ok.append(self.headers.get(SIGNATURE_HEADER) == expected)
                receiver.accepted.extend(json.loads(body))
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _make_events(db_url: str, hook_filters: dict, url: str, count: int, batch_size: int = 2) -> list[str]:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        hook = uow.webhooks.add(orm.Webhook(title="t", url=url, filters=hook_filters, batch_size=batch_size,
                                            secret="s3cret", max_attempts=10))
        uow.webhooks.add(orm.Webhook(title="inactive", url=url, active=False))
        ids = []
        for i in range(count):
            event = _event(id=f"ev-{i:03d}", camera_group_id=group.id, matched=i % 2 == 0,
                           timestamp=datetime.now(UTC))
            uow.session.add(event)
            enqueue_event(uow, event)
            ids.append(event.id)
        uow.commit()
        assert hook.id
    return ids


def _pending_rows(db_url: str) -> int:
    with UnitOfWork(db_url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(orm.WebhookOutbox)
                                      .where(orm.WebhookOutbox.status == "pending")) or 0)


def run_until_delivered(core: WebhookDispatcherCore, receiver: Receiver, count: int, timeout_s: float) -> None:
    """Runs the dispatcher's main loop until the receiver has `count` events (or time is up); the loop
    must still be running then."""

    async def drive() -> None:
        runner = asyncio.create_task(core.run())
        deadline = time.monotonic() + timeout_s
        while len(receiver.accepted) < count and time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.1)
        # The receiver has the last event a moment before the dispatcher records it as delivered: stopping
        # in between would leave that row pending (to be sent again, as at-least-once allows).
        while _pending_rows(core.database_url) and time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.1)
        assert not runner.done(), "the dispatcher's main loop ended"
        core.stop()
        await runner

    asyncio.run(drive())


def test_receiver_that_fails_and_hangs_gets_every_event_in_order_signed(db_url: str) -> None:
    with Receiver(fail_first=2, hang_on=3, hang_s=2.0) as receiver:
        ids = _make_events(db_url, {}, receiver.url, count=7, batch_size=2)
        core = WebhookDispatcherCore(db_url, "http://facewatch.example", poll_s=0.1, timeout_s=1.0)
        run_until_delivered(core, receiver, len(ids), timeout_s=60)
    assert [e["id"] for e in receiver.accepted] == ids  # every event, once, in order
    assert all(receiver.signatures_ok)
    assert receiver.accepted[0]["media"]["thumbnail"] is None
    with UnitOfWork(db_url) as uow:
        statuses = uow.session.execute(
            select(orm.WebhookOutbox.status, func.count()).group_by(orm.WebhookOutbox.status)).all()
        assert dict(statuses) == {"delivered": len(ids)}
        attempts = list(uow.session.scalars(select(orm.WebhookDelivery).order_by(orm.WebhookDelivery.id)))
    failures = [a for a in attempts if not a.ok]
    assert len(failures) == 3  # two 500s and one timeout, each recorded
    assert any("Timeout" in a.error for a in failures)
    assert [a.status_code for a in failures[:2]] == [500, 500]


class _OutageCore(WebhookDispatcherCore):
    """The real dispatcher, whose first looks at the webhook table meet a database that is away."""

    outage_calls = 2

    def _active_webhook_ids(self) -> list[int]:
        if self.outage_calls > 0:
            self.outage_calls -= 1
            raise OperationalError("SELECT webhooks.id", {}, Exception("server closed the connection"))
        return super()._active_webhook_ids()


def test_a_database_outage_does_not_end_the_dispatcher(sqlite_url: str) -> None:
    with Receiver(fail_first=0, hang_on=None) as receiver:
        ids = _make_events(sqlite_url, {}, receiver.url, count=3, batch_size=2)
        core = _OutageCore(sqlite_url, "http://facewatch.example", poll_s=0.05, timeout_s=1.0)
        run_until_delivered(core, receiver, len(ids), timeout_s=30)
    assert core.outage_calls == 0
    assert [e["id"] for e in receiver.accepted] == ids


def test_filters_decide_which_events_enter_the_outbox(db_url: str) -> None:
    _make_events(db_url, {"matched": True}, "http://127.0.0.1:9/none", count=6)
    with UnitOfWork(db_url) as uow:
        queued = list(uow.session.scalars(select(orm.WebhookOutbox.event_id).order_by(orm.WebhookOutbox.id)))
    assert queued == ["ev-000", "ev-002", "ev-004"]


def test_gives_up_after_max_attempts(sqlite_url: str) -> None:
    with Receiver(fail_first=1000, hang_on=None) as receiver:
        with UnitOfWork(sqlite_url) as uow:
            hook = uow.webhooks.add(orm.Webhook(title="t", url=receiver.url, max_attempts=2))
            event = _event(id="only")
            uow.session.add(event)
            enqueue_event(uow, event)
            uow.commit()
            hook_id = hook.id
        core = WebhookDispatcherCore(sqlite_url, "", poll_s=0.05, timeout_s=1.0)

        async def drive() -> None:
            async with httpx.AsyncClient() as client:
                for _ in range(2):
                    assert await core.deliver_once(client, hook_id) is True
                    await asyncio.sleep(1.1)  # the first retry waits 1 s
                assert await core.deliver_once(client, hook_id) is False

        asyncio.run(drive())
    with UnitOfWork(sqlite_url) as uow:
        row = uow.session.scalar(select(orm.WebhookOutbox))
        assert (row.status, row.attempts) == ("failed", 2)


def test_deliveries_are_listed_newest_first_for_admins(api) -> None:
    url = str(api.client.app.state.config.database_url)
    with UnitOfWork(url) as uow:
        hook = uow.webhooks.add(orm.Webhook(title="t", url="http://127.0.0.1:9/x"))
        for attempt, ok in ((1, False), (2, False), (3, True)):
            uow.session.add(orm.WebhookDelivery(webhook_id=hook.id, event_ids=["e1", "e2"], attempt=attempt, ok=ok,
                                                status_code=200 if ok else 500, error="" if ok else "HTTP 500"))
        uow.commit()
        hook_id = hook.id
    body = api.get(f"/v1/webhooks/{hook_id}/deliveries", params={"limit": 2}).json()
    assert [d["attempt"] for d in body["results"]] == [3, 2] and body["next_cursor"]
    rest = api.get(f"/v1/webhooks/{hook_id}/deliveries", params={"cursor": body["next_cursor"]}).json()
    assert [d["attempt"] for d in rest["results"]] == [1]
    failed = api.get(f"/v1/webhooks/{hook_id}/deliveries", params={"ok": False}).json()["results"]
    assert {d["error"] for d in failed} == {"HTTP 500"} and failed[0]["event_ids"] == ["e1", "e2"]
    assert api.get(f"/v1/webhooks/{hook_id}/deliveries", role="operator").status_code == 403
    assert api.get("/v1/webhooks/999/deliveries").status_code == 404


def test_a_dispatcher_that_ray_restarts_resumes_delivery_by_itself(sqlite_url: str) -> None:
    import ray

    from actors.webhook_dispatcher import WebhookDispatcher

    with Receiver(fail_first=0, hang_on=None) as receiver, local_ray(1, "test-dispatcher"):
        first = _make_events(sqlite_url, {}, receiver.url, count=1, batch_size=1)
        dispatcher = WebhookDispatcher.remote(sqlite_url, "http://facewatch.example", 0.05, 1.0)
        assert ray.get(dispatcher.start.remote())

        def counted() -> int:  # what this dispatcher instance has delivered (it counts once it recorded it)
            return ray.get(dispatcher.stats.remote())["delivered"]

        wait_for(lambda: counted() == 1 and len(receiver.accepted) == 1, 60, "the first delivery")
        ray.kill(dispatcher, no_restart=False)  # Ray builds it again from its constructor; nobody calls start()
        wait_for(lambda: counted() == 0, 60, "the restarted dispatcher")  # the kill is asynchronous
        with UnitOfWork(sqlite_url) as uow:
            event = _event(id="after-restart", timestamp=datetime.now(UTC))
            uow.session.add(event)
            enqueue_event(uow, event)
            uow.commit()
        wait_for(lambda: counted() == 1 and len(receiver.accepted) == 2, 60, "the delivery after the restart")
        assert [e["id"] for e in receiver.accepted] == [*first, "after-restart"]
        ray.get(dispatcher.stop.remote())
