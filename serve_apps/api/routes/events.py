"""Events: list with filters, get, acknowledge by id or by filter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from facewatch.errors import BadParam, NotFound
from serve_apps.api.deps import Operator, Pages, Scope, Uow, Viewer
from serve_apps.api.routes._common import meta_query
from serve_apps.api.schemas import AckCount, EventAckFilter, EventFilters, EventOut, Page
from storage import orm
from storage.acknowledgement import acknowledge_finished_episodes
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/events", tags=["events"])


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("", response_model=Page[EventOut])
def list_events(
    request: Request, uow: Uow, _: Viewer, scope: Scope, paging: Pages, filters: Annotated[EventFilters, Query()]
) -> dict[str, Any]:
    wanted = {**filters.model_dump(exclude_none=True), **meta_query(request)}
    page = uow.events.list_views(wanted, paging.limit, paging.cursor, scope)
    url = base_url(request)
    return {"results": [event_to_dict(e, url) for e in page.items], "next_cursor": page.next_cursor}


def visible_event(uow: UnitOfWork, event_id: str, scope: VisibilityScope, param: str | None = None) -> orm.Event:
    """The event if the caller's scope sees it; else NOT_FOUND (or BAD_PARAM on `param` for a reference)."""
    event = uow.events.visible(event_id, scope)
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
    now = datetime.now(UTC)
    rows = uow.events.acknowledge_matching(scope, body.model_dump(exclude_none=True), caller.username, now)
    acknowledge_finished_episodes(uow, (episode_id for _, episode_id in rows), caller.username, now)
    uow.commit()
    return AckCount(acknowledged=len(rows))


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
