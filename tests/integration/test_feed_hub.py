"""The live feed's fan-out (serve_apps/api/feed_hub.py) on a real SQLite database: one poll per process,
one select per distinct subscription, every subscriber gets every new event once, in order; a late
subscriber catches up itself; one that falls behind is cut off. The HTTP side (filters, visibility,
since / Last-Event-ID) is tested in tests/cluster/test_video_pipeline.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select

from serve_apps.api import feed_hub
from serve_apps.api.deps import Caller
from serve_apps.api.feed_hub import Cursor, FeedHub
from serve_apps.api.routes.event_stream import _message, feed_events
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

ADMIN = Caller(user_id=1, username="admin", role="admin", token_id=1)


def add_event(url: str, event_id: str, matched: bool = False) -> None:
    with UnitOfWork(url) as uow:
        uow.session.add(orm.Event(id=event_id, bbox=[0, 0, 1, 1], matched=matched))
        uow.commit()


def counting_selector(calls: list[dict[str, Any]]):
    def select(uow: UnitOfWork, caller: Caller, filters: dict[str, Any]) -> Select[Any]:
        calls.append(filters)
        return feed_events(uow, caller, filters)

    return select


async def drain(subscriber: feed_hub.Subscriber, want: int, timeout_s: float = 20.0) -> list[str]:
    got: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < want:
        left = deadline - asyncio.get_running_loop().time()
        batch = await asyncio.wait_for(subscriber.queue.get(), timeout=max(left, 0.01))
        # An SSE id is "<feed position>~<event id>" (routes/event_stream.sse_id): keep the event id.
        got.extend(message.split("\n", 1)[0].removeprefix("id: ").split("~", 1)[-1] for _, message in batch)
    return got


def test_one_poller_fans_out_to_every_subscriber(sqlite_url: str) -> None:
    calls: list[dict[str, Any]] = []
    hub = FeedHub(sqlite_url, counting_selector(calls), _message, poll_s=0.1)

    async def scenario() -> None:
        subscribers = [hub.subscribe(ADMIN, {}, "http://x")[0] for _ in range(50)]
        matched_only, head = hub.subscribe(ADMIN, {"matched": True}, "http://x")
        assert head <= Cursor(datetime.now(UTC))
        for n in range(3):
            await asyncio.to_thread(add_event, sqlite_url, f"e{n}", n == 1)
        received = await asyncio.gather(*(drain(s, 3) for s in subscribers))
        assert all(r == ["e0", "e1", "e2"] for r in received)
        assert await drain(matched_only, 1) == ["e1"]
        # Two distinct subscriptions: at most two selects per batch of new events, not one per subscriber.
        batches_with_events = len(calls) // 2
        assert len(calls) == 2 * batches_with_events and batches_with_events <= 3
        polls = hub.polls
        await asyncio.sleep(0.5)
        assert hub.polls - polls <= 6  # one poller, whatever the number of subscribers
        for s in (*subscribers, matched_only):
            hub.unsubscribe(s)
        await asyncio.sleep(0.3)
        assert hub._task is not None and hub._task.done()  # nobody listens: the poller stops

    asyncio.run(scenario())


def test_a_subscriber_falling_behind_is_cut_off(sqlite_url: str, monkeypatch: Any) -> None:
    monkeypatch.setattr(feed_hub, "QUEUE_LIMIT", 2)
    hub = FeedHub(sqlite_url, feed_events, _message, poll_s=0.05)

    async def scenario() -> None:
        slow, _ = hub.subscribe(ADMIN, {}, "")
        for n in range(4):
            await asyncio.to_thread(add_event, sqlite_url, f"s{n}")
            await asyncio.sleep(0.3)  # one batch per event
        assert slow.cut_off and slow.queue.full()
        hub.unsubscribe(slow)

    asyncio.run(scenario())


def test_the_head_moves_only_with_committed_events(sqlite_url: str) -> None:
    hub = FeedHub(sqlite_url, feed_events, _message, poll_s=0.05)

    async def scenario() -> None:
        subscriber, head = hub.subscribe(ADMIN, {}, "")
        await asyncio.sleep(0.2)
        _, same = hub.subscribe(ADMIN, {}, "")
        assert same == head  # no events: the head stays where it started
        await asyncio.to_thread(add_event, sqlite_url, "h1")
        await drain(subscriber, 1)
        _, moved = hub.subscribe(ADMIN, {}, "")
        assert moved.event_id == "h1" and moved.created_at > head.created_at - timedelta(seconds=1)

    asyncio.run(scenario())


def test_open_streams_hold_no_database_connection(api: ApiClient) -> None:
    """20 open feeds on one process (more than the pool's 15 connections) and nothing left checked out."""
    from contextlib import ExitStack

    from storage.db import engine_for

    engine = engine_for(str(api.client.app.state.config.database_url))
    with ExitStack() as stack:
        for _ in range(20):
            response = stack.enter_context(api.client.stream("GET", "/v1/events/stream", headers=api.as_("viewer"),
                                                             params={"timeout_s": 3}))
            assert response.status_code == 200
        assert engine.pool.checkedout() <= 2  # the hub's poll may be holding one right now
