"""`GET /v1/events/stream`: the live feed of new events as Server-Sent Events (SPEC §5.3, §6).

One poller per API replica (serve_apps/api/feed_hub.py) looks for new events every 0.5 s, in the
order they were committed (created_at, then id: an event takes its created_at at commit, in commit order,
whatever the number of event pipelines; storage/feed_order.py), and
fans them out to every open stream, which sends each as one SSE message::

    id: <feed position: creation time in µs since the epoch>~<event id>
    event: event
    data: <the event as JSON, the same shape as GET /v1/events/{id}>

It takes the same filters as `GET /v1/events` and the same visibility rules (events of watch lists and
camera groups hidden from the caller's role are never sent). It starts with the events created after
the connection opened, or after `since` (ISO 8601), or after the event named by the standard
`Last-Event-ID` header (what a browser's EventSource sends when it reconnects), so a client that
reconnects misses nothing. A comment line (`: keep-alive`) goes out every 15 s of silence so proxies
keep the connection open; a client that went away is noticed then at the latest. The stream ends when
the client disconnects, or after `max_events` events or `timeout_s` seconds when given (handy for
scripts and long polling).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from serve_apps.api.deps import Caller, Viewer, scope_of
from serve_apps.api.feed_hub import Cursor, FeedHub
from serve_apps.api.routes.events import base_url
from serve_apps.api.schemas import EventFilters, Timestamp
from storage import orm
from storage.event_feed import EventFeed
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork

router = APIRouter(prefix="/events", tags=["events"])
POLL_S = 0.5
KEEPALIVE_S = 15.0
BATCH = 200


def feed_events(uow: UnitOfWork, caller: Caller, filters: dict[str, Any]) -> EventFeed:
    """The events a caller's feed may send: the filters of GET /v1/events and the caller's visibility."""
    # The scope is read at every poll, so hiding a group or list takes effect on open feeds too.
    return EventFeed(uow.session, scope_of(uow, caller), filters)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sse_id(created_at: datetime, event_id: str) -> str:
    """The SSE `id` of an event: its feed position (creation time in µs since the epoch) and its id, so
    a client reconnecting with it resumes at the next newer event even when this one is gone
    (retention, erasure) and its creation time can no longer be looked up."""
    micros = (created_at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)  # exact, no float
    return f"{micros}~{event_id}"


def _parse_sse_id(value: str) -> Cursor | None:
    micros, sep, event_id = value.partition("~")
    if not sep or not micros.isdigit() or len(micros) > 18:
        return None
    return Cursor(_EPOCH + timedelta(microseconds=int(micros)), event_id)


def _start(db_url: str, since: datetime | None, last_event_id: str | None) -> Cursor:
    if last_event_id:
        with UnitOfWork(db_url) as uow:
            event = uow.events.find(last_event_id)  # a plain event id (clients of older versions)
            if event is not None:
                return Cursor(event.created_at, event.id)
        cursor = _parse_sse_id(last_event_id)
        if cursor is not None:
            return cursor
    moment = since or datetime.now(UTC)
    return Cursor(moment if moment.tzinfo else moment.replace(tzinfo=UTC), "")


def _catch_up(db_url: str, caller: Caller, filters: dict[str, Any], after: Cursor, upto: Cursor,
              base: str) -> list[tuple[Cursor, str]]:
    """Up to BATCH events after `after` and not after `upto` (the hub's head when the stream subscribed)."""
    with UnitOfWork(db_url) as uow:
        events = feed_events(uow, caller, filters).between(after, upto, BATCH)
        return [(Cursor(e.created_at, e.id), _message(e, base)) for e in events]


def _message(event: orm.Event, base: str) -> str:
    data = json.dumps(event_to_dict(event, base), default=str, separators=(",", ":"))
    return f"id: {sse_id(event.created_at, event.id)}\nevent: event\ndata: {data}\n\n"


def feed_hub(request: Request) -> FeedHub:
    """This process's hub (one per API replica), made on first use."""
    hub = getattr(request.app.state, "feed_hub", None)
    if hub is None:
        hub = FeedHub(request.app.state.config.database_url, feed_events, _message, poll_s=POLL_S)
        request.app.state.feed_hub = hub
    return hub


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: one per new event"}},
)
async def stream_events(
    request: Request,
    caller: Viewer,
    filters: Annotated[EventFilters, Query()],
    since: Annotated[Timestamp | None, Query(description="start after this moment (default: now)")] = None,
    max_events: Annotated[int | None, Query(ge=1, le=100_000, description="end after this many events")] = None,
    timeout_s: Annotated[float | None, Query(gt=0, le=86_400, description="end after this long")] = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    db_url = request.app.state.config.database_url
    wanted = filters.model_dump(exclude_none=True)
    base = base_url(request)
    cursor = await run_in_threadpool(_start, db_url, since, last_event_id)
    hub = feed_hub(request)

    async def feed() -> AsyncIterator[str]:
        nonlocal cursor
        started = last_sent = time.monotonic()
        sent = 0
        subscriber, head = hub.subscribe(caller, wanted, base)
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                # What happened before the hub's head at subscription, from the database; then the hub's batches.
                batch = (await run_in_threadpool(_catch_up, db_url, caller, wanted, cursor, head, base)
                         if cursor < head else None)
                if not batch:
                    head = cursor  # caught up: from now on only the hub's batches
                    # Sleep until the hub's next batch, the keep-alive or the end: a feed that woke every
                    # poll to ask whether its client had gone cost 100 open consoles 200 wake-ups a second.
                    now = time.monotonic()
                    wait_s = KEEPALIVE_S - (now - last_sent)
                    if timeout_s is not None:
                        wait_s = min(wait_s, timeout_s - (now - started))
                    try:
                        batch = await asyncio.wait_for(subscriber.queue.get(), timeout=max(0.01, wait_s))
                    except TimeoutError:
                        batch = []
                for position, message in batch:
                    if position <= cursor:
                        continue  # already sent (caught up past it)
                    yield message
                    cursor = position
                    sent += 1
                    last_sent = time.monotonic()
                    if max_events is not None and sent >= max_events:
                        return
                if subscriber.cut_off and subscriber.queue.empty():
                    return  # fell too far behind: the client reconnects with Last-Event-ID
                now = time.monotonic()
                if timeout_s is not None and now - started >= timeout_s:
                    return
                if now - last_sent >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last_sent = now
                    # A gone client is noticed here at the latest (writing to it fails sooner or later too).
                    if await request.is_disconnected():
                        return
        finally:
            hub.unsubscribe(subscriber)

    return StreamingResponse(feed(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
