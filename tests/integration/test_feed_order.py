"""Events take their feed position in commit order (storage/feed_order.py), with real concurrent commits.

With several event pipelines, an event whose transaction is slower can commit after one created later.
Before the fix its (created_at, id) position lay behind one the live feed had already sent, and the feed
(and the VMS sender) never sent it. Each database gets the race it really has:

- SQLite: the slow event's row is built (created_at taken) while another transaction holds the write
  lock; it waits for that lock and commits second;
- PostgreSQL: the slow event is flushed, uncommitted, while another one commits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serve_apps.api.feed_hub import Cursor, FeedHub
from serve_apps.api.routes.event_stream import _catch_up, _message, _parse_sse_id, feed_events, sse_id
from storage import orm
from storage.feed_order import next_stamp
from storage.unit_of_work import UnitOfWork
from tests.conftest import fresh_database
from tests.integration.test_feed_hub import ADMIN, drain


def _event(event_id: str) -> orm.Event:
    return orm.Event(id=event_id, bbox=[0, 0, 1, 1])


def _position(url: str, event_id: str) -> Cursor:
    with UnitOfWork(url) as uow:
        e = uow.events.get(event_id)
        return Cursor(e.created_at, e.id)


class SlowCommit:
    """Event `event_id` built first and committed last, in a thread of its own, as a slow pipeline does."""

    def __init__(self, url: str, event_id: str) -> None:
        self.url, self.event_id = url, event_id
        self.flushed, self.go, self.done = threading.Event(), threading.Event(), threading.Event()
        self.sqlite = url.startswith("sqlite")
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with UnitOfWork(self.url) as uow:
            uow.session.add(_event(self.event_id))
            if not self.sqlite:  # PostgreSQL: the row is written, the transaction stays open
                uow.flush()
                self.flushed.set()
                self.go.wait(30)
            uow.commit()  # SQLite: takes created_at, then waits here for the other writer's lock
        self.done.set()

    def start(self) -> None:
        self.thread.start()
        if self.sqlite:
            time.sleep(0.5)  # long enough for its INSERT to be waiting on the lock
        else:
            assert self.flushed.wait(30)

    def finish(self) -> None:
        self.go.set()
        self.thread.join(30)
        assert self.done.is_set()


def race(url: str, slow_id: str, fast_id: str, between: object = None) -> None:
    """`slow_id` is built before `fast_id` and commits after it; `between()` runs once `fast_id` is in."""
    sqlite = url.startswith("sqlite")
    with UnitOfWork(url) as fast:
        if sqlite:  # hold SQLite's write lock, as another pipeline in the middle of its commit does
            fast.session.add(orm.CameraGroup(name=f"lock-{fast_id}"))
            fast.flush()
        slow = SlowCommit(url, slow_id)
        slow.start()
        fast.session.add(_event(fast_id))
        fast.commit()
    if between is not None:
        between()  # type: ignore[operator]
    slow.finish()


@pytest.mark.pg_capable
def test_an_event_committed_last_is_placed_last(db_url: str) -> None:
    race(db_url, "slow", "fast")
    assert _position(db_url, "slow") > _position(db_url, "fast")


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgresql", tmp_path / "unused.db")


@pytest.mark.postgres
def test_the_live_feed_sends_an_event_that_committed_out_of_order(pg_url: str) -> None:
    """The hub has already sent the fast event (its head is past it) when the slow one commits."""
    hub = FeedHub(pg_url, feed_events, _message, poll_s=0.05)

    async def scenario() -> None:
        subscriber, _ = hub.subscribe(ADMIN, {}, "")
        loop = asyncio.get_running_loop()

        def fast_delivered() -> None:
            got = asyncio.run_coroutine_threadsafe(drain(subscriber, 1), loop).result(30)
            assert got == ["fast"]

        await asyncio.to_thread(race, pg_url, "slow", "fast", fast_delivered)
        assert await drain(subscriber, 1, timeout_s=10) == ["slow"]
        await asyncio.sleep(0.3)
        assert subscriber.queue.empty()  # once each
        hub.unsubscribe(subscriber)

    asyncio.run(scenario())
    # A client that saw only the fast event resumes (Last-Event-ID) and gets the slow one, once.
    fast = _position(pg_url, "fast")
    resume_from = _parse_sse_id(sse_id(fast.created_at, fast.event_id))
    assert resume_from is not None
    upto = Cursor(datetime.now(UTC) + timedelta(minutes=1))
    assert [c.event_id for c, _ in _catch_up(pg_url, ADMIN, {}, resume_from, upto, "")] == ["slow"]


def test_an_explicit_created_at_is_kept(sqlite_url: str) -> None:
    """Imports, restores and retention's tests place an event themselves; its position is not moved."""
    then = datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    with UnitOfWork(sqlite_url) as uow:
        uow.session.add(orm.Event(id="old", bbox=[], created_at=then))
        uow.commit()
    assert _position(sqlite_url, "old").created_at == then


def test_the_stamp_is_strictly_after_the_newest_even_when_the_clock_steps_back() -> None:
    t = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert next_stamp(t, None) == t
    assert next_stamp(t, t - timedelta(seconds=1)) == t
    assert next_stamp(t, t) == t + timedelta(microseconds=1)
    assert next_stamp(t - timedelta(seconds=5), t) == t + timedelta(microseconds=1)
