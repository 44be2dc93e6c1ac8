"""The live feed's fan-out: one database poller per API replica, however many clients listen.

With one poll per connected client, 100 open consoles meant 200 queries a second against the events
table before anyone paged; here one task per process looks for new events every `poll_s` (one cheap
query on the (created_at, id) index). When there are some, each distinct subscription (the same
caller, filters and base URL; 100 tabs of one user are one) selects its share among just those ids
with the feed's own filter and visibility query, renders the SSE messages once, and every subscriber
of it gets them on its queue.

A subscriber catches up by itself from where it starts (now, `since`, or `Last-Event-ID`) up to the
hub's head at the moment it subscribed; everything after that head arrives from the hub. Subscribing,
advancing the head and taking the list of subscribers to serve happen on the event loop between two
awaits, so no event falls between the two. Each subscriber keeps its own cursor and drops anything
not after it, so nothing is sent twice. A subscriber that falls `QUEUE_LIMIT` batches behind is cut
off; its EventSource reconnects with Last-Event-ID and catches up from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from storage import orm
from storage.event_feed import EventFeed, FeedPosition, positions_after
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.feed")
QUEUE_LIMIT = 200
HEAD_BATCH = 1000

Key = tuple[Any, ...]
# (uow, caller, filters) -> the caller's feed (filters and visibility applied; storage/event_feed.py)
Selector = Callable[[UnitOfWork, Any, dict[str, Any]], EventFeed]
# (event, base url) -> the SSE message
Render = Callable[[orm.Event, str], str]


Cursor = FeedPosition
"""A place in the feed's order: (created_at, id)."""


@dataclass
class Subscriber:
    key: Key
    queue: asyncio.Queue[list[tuple[Cursor, str]]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    cut_off: bool = False


@dataclass
class _Subscription:
    caller: Any
    filters: dict[str, Any]
    base: str
    subscribers: set[int] = field(default_factory=set)


class FeedHub:
    """One per process (see the module doc); `subscribe` / `unsubscribe` on the event loop."""

    def __init__(self, db_url: str, selector: Selector, render: Render, poll_s: float = 0.5) -> None:
        self.db_url, self.selector, self.render, self.poll_s = db_url, selector, render, poll_s
        self._subscriptions: dict[Key, _Subscription] = {}
        self._subscribers: dict[int, Subscriber] = {}
        self._head: Cursor | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.polls = 0

    def subscribe(self, caller: Any, filters: dict[str, Any], base: str) -> tuple[Subscriber, Cursor]:
        """Registers a subscriber; returns it and the head: events after the head will come on its queue."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests start several): nothing of the old one survives
            self._subscriptions, self._subscribers, self._task, self._loop = {}, {}, None, loop
        if self._task is None or self._task.done():
            # Nobody listened until now: start from now (subscribers catch up by themselves).
            self._head = Cursor(datetime.now(UTC))
            self._task = loop.create_task(self._run())
        key = (caller, tuple(sorted((k, repr(v)) for k, v in filters.items())), base)
        subscription = self._subscriptions.setdefault(key, _Subscription(caller, dict(filters), base))
        subscriber = Subscriber(key)
        subscription.subscribers.add(id(subscriber))
        self._subscribers[id(subscriber)] = subscriber
        assert self._head is not None
        return subscriber, self._head

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.pop(id(subscriber), None)
        subscription = self._subscriptions.get(subscriber.key)
        if subscription is not None:
            subscription.subscribers.discard(id(subscriber))
            if not subscription.subscribers:
                del self._subscriptions[subscriber.key]

    async def _run(self) -> None:
        while self._subscriptions:
            try:
                await self._poll()
            except Exception:  # a database hiccup: the next poll tries again; subscribers stay
                log.warning("live feed poll failed", exc_info=True)
            await asyncio.sleep(self.poll_s)

    async def _poll(self) -> None:
        assert self._head is not None
        fresh = await run_in_threadpool(self._new_since, self._head)
        self.polls += 1
        if not fresh:
            return
        # Same loop step as the head moves: whoever subscribes from now on catches up to the new head itself.
        self._head = fresh[-1]
        serve = [(s, [self._subscribers[i] for i in s.subscribers]) for s in self._subscriptions.values()]
        ids = [c.event_id for c in fresh]
        messages = await run_in_threadpool(self._select, [s for s, _ in serve], ids)
        for (_, subscribers), batch in zip(serve, messages, strict=True):
            if not batch:
                continue
            for subscriber in subscribers:
                try:
                    subscriber.queue.put_nowait(batch)
                except asyncio.QueueFull:
                    subscriber.cut_off = True
                    self.unsubscribe(subscriber)

    def _new_since(self, head: Cursor) -> list[Cursor]:
        with UnitOfWork(self.db_url) as uow:
            return positions_after(uow.session, head, HEAD_BATCH)

    def _select(self, subscriptions: list[_Subscription], ids: list[str]) -> list[list[tuple[Cursor, str]]]:
        with UnitOfWork(self.db_url) as uow:
            out = []
            for s in subscriptions:
                events = self.selector(uow, s.caller, s.filters).among(ids)
                out.append([(Cursor(e.created_at, e.id), self.render(e, s.base)) for e in events])
            return out
