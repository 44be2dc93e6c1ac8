"""Events: list with filters, get, acknowledge by id or by filter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Select, or_, select, update

from facewatch.errors import NotFound
from serve_apps.api.deps import Caller, Operator, Pages, Uow, Viewer
from serve_apps.api.routes._common import visible
from serve_apps.api.schemas import AckCount, EventAckFilter, EventFilters, EventOut, Page
from storage import orm
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork

router = APIRouter(prefix="/events", tags=["events"])


def hidden_ids(uow: UnitOfWork, caller: Caller) -> tuple[list[int], list[int]]:
    """Watch lists and camera groups hidden from the caller's role (their events are hidden too)."""
    if caller.role == "admin":
        return [], []
    lists = [w.id for w in uow.session.scalars(select(orm.WatchList)) if not visible(w, caller)]
    groups = [g.id for g in uow.session.scalars(select(orm.CameraGroup)) if not visible(g, caller)]
    return lists, groups


def visible_events(stmt: Select[Any], uow: UnitOfWork, caller: Caller) -> Select[Any]:
    lists, groups = hidden_ids(uow, caller)
    if lists:
        stmt = stmt.where(or_(orm.Event.watch_list_id.is_(None), orm.Event.watch_list_id.not_in(lists)))
    if groups:
        stmt = stmt.where(or_(orm.Event.camera_group_id.is_(None), orm.Event.camera_group_id.not_in(groups)))
    return stmt


def event_filters(stmt: Select[Any], f: dict[str, Any]) -> Select[Any]:
    equal = ("camera_id", "camera_group_id", "watch_list_id", "dossier_id", "episode_id", "video_id", "gender",
             "person_id", "person_status")
    for name in equal:
        if f.get(name) is not None:
            stmt = stmt.where(getattr(orm.Event, name) == f[name])
    for name in ("matched", "acknowledged"):
        if f.get(name) is not None:
            stmt = stmt.where(getattr(orm.Event, name).is_(f[name]))
    bounds = {"timestamp_gte": (orm.Event.timestamp, ">="), "timestamp_lte": (orm.Event.timestamp, "<="),
              "age_gte": (orm.Event.age, ">="), "age_lte": (orm.Event.age, "<="),
              "confidence_gte": (orm.Event.confidence, ">=")}
    for name, (column, op) in bounds.items():
        if f.get(name) is not None:
            stmt = stmt.where(column >= f[name] if op == ">=" else column <= f[name])
    return stmt


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("", response_model=Page[EventOut])
def list_events(
    request: Request, uow: Uow, caller: Viewer, paging: Pages, filters: Annotated[EventFilters, Query()]
) -> dict[str, Any]:
    stmt = event_filters(visible_events(uow.events.query(), uow, caller), filters.model_dump(exclude_none=True))
    page = uow.events.page(stmt, paging.limit, paging.cursor, keys=uow.events.newest_first)
    url = base_url(request)
    return {"results": [event_to_dict(e, url) for e in page.items], "next_cursor": page.next_cursor}


def _visible_event(uow: UnitOfWork, event_id: str, caller: Caller) -> orm.Event:
    stmt = visible_events(uow.events.query().where(orm.Event.id == event_id), uow, caller)
    event = uow.session.scalar(stmt)
    if event is None:
        raise NotFound(f"event {event_id} does not exist", param="id")
    return event


@router.get("/{event_id}", response_model=EventOut)
def get_event(event_id: str, request: Request, uow: Uow, caller: Viewer) -> dict[str, Any]:
    return event_to_dict(_visible_event(uow, event_id, caller), base_url(request))


@router.post("/ack", response_model=AckCount)
def acknowledge_events(body: EventAckFilter, uow: Uow, caller: Operator) -> AckCount:
    stmt = event_filters(visible_events(select(orm.Event.id), uow, caller), body.model_dump(exclude_none=True))
    stmt = stmt.where(orm.Event.acknowledged.is_(False))
    ids = list(uow.session.scalars(stmt))
    now = datetime.now(UTC)
    for start in range(0, len(ids), 500):
        uow.session.execute(update(orm.Event).where(orm.Event.id.in_(ids[start:start + 500])).values(
            acknowledged=True, acknowledged_by=caller.username, acknowledged_at=now))
    uow.commit()
    return AckCount(acknowledged=len(ids))


@router.post("/{event_id}/ack", response_model=EventOut)
def acknowledge_event(event_id: str, request: Request, uow: Uow, caller: Operator) -> dict[str, Any]:
    event = _visible_event(uow, event_id, caller)
    if not event.acknowledged:
        event.acknowledged, event.acknowledged_by = True, caller.username
        event.acknowledged_at = datetime.now(UTC)
        uow.commit()
    return event_to_dict(event, base_url(request))
