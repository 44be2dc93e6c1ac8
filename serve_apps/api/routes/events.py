"""Events: list with filters, get, acknowledge by id or by filter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Select, select, update

from facewatch.errors import BadParam, NotFound
from serve_apps.api.deps import Operator, Pages, Scope, Uow, Viewer
from serve_apps.api.routes._common import dialect_of, meta_query
from serve_apps.api.schemas import AckCount, EventAckFilter, EventFilters, EventOut, Page
from storage import orm
from storage.acknowledgement import acknowledge_finished_episodes
from storage.event_queries import filter_events
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/events", tags=["events"])


def event_filters(stmt: Select[Any], f: dict[str, Any], dialect: str = "sqlite") -> Select[Any]:
    return filter_events(stmt, f, dialect)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("", response_model=Page[EventOut])
def list_events(
    request: Request, uow: Uow, _: Viewer, scope: Scope, paging: Pages, filters: Annotated[EventFilters, Query()]
) -> dict[str, Any]:
    wanted = {**filters.model_dump(exclude_none=True), **meta_query(request)}
    stmt = event_filters(uow.events.query().where(scope.events()), wanted, dialect_of(uow))
    page = uow.events.page(stmt, paging.limit, paging.cursor, keys=uow.events.newest_first)
    url = base_url(request)
    return {"results": [event_to_dict(e, url) for e in page.items], "next_cursor": page.next_cursor}


def visible_event(uow: UnitOfWork, event_id: str, scope: VisibilityScope, param: str | None = None) -> orm.Event:
    """The event if the caller's scope sees it; else NOT_FOUND (or BAD_PARAM on `param` for a reference)."""
    stmt = uow.events.query().where(orm.Event.id == event_id, scope.events())
    event = uow.session.scalar(stmt)
    if event is None:
        if param is not None:
            raise BadParam(f"event {event_id} does not exist", param=param)
        raise NotFound(f"event {event_id} does not exist", param="id")
    return event


_visible_event = visible_event


@router.get("/{event_id}", response_model=EventOut)
def get_event(event_id: str, request: Request, uow: Uow, _: Viewer, scope: Scope) -> dict[str, Any]:
    return event_to_dict(_visible_event(uow, event_id, scope), base_url(request))


@router.post("/ack", response_model=AckCount)
def acknowledge_events(body: EventAckFilter, uow: Uow, caller: Operator, scope: Scope) -> AckCount:
    stmt = event_filters(select(orm.Event.id, orm.Event.episode_id).where(scope.events()),
                         body.model_dump(exclude_none=True), dialect_of(uow))
    stmt = stmt.where(orm.Event.acknowledged.is_(False))
    rows = uow.session.execute(stmt).all()
    ids = [event_id for event_id, _ in rows]
    now = datetime.now(UTC)
    for start in range(0, len(ids), 500):
        uow.session.execute(update(orm.Event).where(orm.Event.id.in_(ids[start:start + 500])).values(
            acknowledged=True, acknowledged_by=caller.username, acknowledged_at=now))
    acknowledge_finished_episodes(uow, (episode_id for _, episode_id in rows), caller.username, now)
    uow.commit()
    return AckCount(acknowledged=len(ids))


@router.post("/{event_id}/ack", response_model=EventOut)
def acknowledge_event(event_id: str, request: Request, uow: Uow, caller: Operator, scope: Scope) -> dict[str, Any]:
    event = _visible_event(uow, event_id, scope)
    if not event.acknowledged:
        event.acknowledged, event.acknowledged_by = True, caller.username
        event.acknowledged_at = datetime.now(UTC)
        uow.flush()
        acknowledge_finished_episodes(uow, [event.episode_id], caller.username, event.acknowledged_at)
        uow.commit()
    return event_to_dict(event, base_url(request))
