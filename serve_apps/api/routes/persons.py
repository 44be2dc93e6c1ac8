"""Persons: lasting identities of every face, strangers included (docs/persons.md).

Viewers read; operators correct (merge, "not this person", promote to a dossier); admins start a
re-clustering pass. A person is visible to a role when at least one of its events is.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Select, func, select

from actors.person_clustering import PersonClustering, run_report
from facewatch.errors import NotFound
from models.calibration import resolve_threshold
from serve_apps.api.deps import Admin, Caller, Operator, Pages, Uow, Viewer, scope_of
from serve_apps.api.person_schemas import (
    ClusteringRunOut,
    PersonEventFilters,
    PersonFilters,
    PersonMergeIn,
    PersonOut,
    PersonPromoteIn,
    PersonPromoteOut,
    PersonSearchOut,
    PersonSearchQuery,
)
from serve_apps.api.routes.events import base_url
from serve_apps.api.routes.search import query_vectors
from serve_apps.api.schemas import EventOut, Page
from serve_apps.api.services import get_galleries, get_services, read_file_query
from storage import orm
from storage import persons as p
from storage.dossier_vectors import DOSSIERS_GALLERY
from storage.event_views import event_to_dict
from storage.pagination import SortKey
from storage.person_queries import filter_persons
from storage.repositories import Repository
from storage.selections import dialect
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.api.persons")
router = APIRouter(prefix="/persons", tags=["persons"])
NEWEST_FIRST = [SortKey(orm.Person.last_seen_at, descending=True), SortKey(orm.Person.id, descending=True)]
_clustering_tasks: set[asyncio.Task[Any]] = set()


class PersonRepository(Repository[orm.Person]):
    model, label = orm.Person, "person"


def hidden_ids(uow: UnitOfWork, caller: Caller) -> tuple[list[int], list[int]]:
    """The watch lists and camera groups the caller's scope hides (storage/visibility.py decides)."""
    scope = scope_of(uow, caller)
    return sorted(scope.hidden_list_ids), sorted(scope.hidden_group_ids)


def visible_events(stmt: Select[Any], uow: UnitOfWork, caller: Caller) -> Select[Any]:
    return stmt.where(scope_of(uow, caller).events())


def visible_persons(uow: UnitOfWork, caller: Caller) -> Select[Any]:
    lists, groups = hidden_ids(uow, caller)
    return select(orm.Person).where(p.visible_person_clause(lists, groups))


def _visible_person(uow: UnitOfWork, person_id: int, caller: Caller, param: str = "id") -> orm.Person:
    person = uow.session.scalar(visible_persons(uow, caller).where(orm.Person.id == person_id))
    if person is None:
        raise NotFound(f"person {person_id} does not exist", param=param)
    return person


def persons_out(uow: UnitOfWork, caller: Caller, persons: list[orm.Person], url: str) -> list[dict[str, Any]]:
    """The public form of persons, with what they need read in one query each (not one per person)."""
    settings = uow.settings.all()
    best_ids = [x.best_event_id for x in persons if x.best_event_id]
    best = {e.id: e for e in uow.session.scalars(
        visible_events(select(orm.Event).where(orm.Event.id.in_(best_ids)), uow, caller))} if best_ids else {}
    dossier_ids = [x.dossier_id for x in persons if x.dossier_id is not None]
    names = dict(uow.session.execute(select(orm.Dossier.id, orm.Dossier.name).where(
        orm.Dossier.id.in_(dossier_ids))).all()) if dossier_ids else {}
    faces = dict(uow.session.execute(select(orm.PersonFace.person_id, func.count()).where(
        orm.PersonFace.person_id.in_([x.id for x in persons])).group_by(orm.PersonFace.person_id)).all())
    now = datetime.now(UTC)
    out = []
    for x in persons:
        event = best.get(x.best_event_id or "")
        out.append({
            "id": x.id, "anonymous": x.dossier_id is None, "dossier_id": x.dossier_id,
            "dossier_name": names.get(x.dossier_id), "scope": x.scope, "first_seen_at": x.first_seen_at,
            "last_seen_at": x.last_seen_at, "event_count": x.event_count, "camera_ids": x.camera_ids or [],
            "camera_group_ids": x.camera_group_ids or [], "days_seen": x.days_seen,
            "regular": bool(x.seen_days) and p.status_at(x, now, False, settings, count_today=False) == "regular",
            "best_event": event_to_dict(event, url) if event is not None else None,
            "face_count": int(faces.get(x.id, 0)), "created_at": x.created_at,
        })
    return out


async def _sync(request: Request, *names: str) -> None:
    """Best effort: without galleries in this process the shards catch up from the DB on their next sync."""
    try:
        galleries = get_galleries(request)
    except Exception:  # noqa: BLE001 - no services here (tests, a bare API): nothing to sync now
        return
    for name in names:
        await galleries.sync_async(name)


# ---- reads ---------------------------------------------------------------------------------------------
@router.get("", response_model=Page[PersonOut])
def list_persons(request: Request, uow: Uow, caller: Viewer, paging: Pages,
                 filters: Annotated[PersonFilters, Query()]) -> dict[str, Any]:
    stmt = filter_persons(visible_persons(uow, caller), filters.model_dump(), dialect(uow.session),
                          uow.settings.all(), datetime.now(UTC))
    page = PersonRepository(uow.session).page(stmt, paging.limit, paging.cursor, keys=NEWEST_FIRST)
    return {"results": persons_out(uow, caller, page.items, base_url(request)), "next_cursor": page.next_cursor}


@router.get("/clustering", response_model=ClusteringRunOut)
def clustering_status(uow: Uow, caller: Operator) -> dict[str, Any]:
    run = uow.session.scalar(select(orm.PersonClusteringRun).order_by(orm.PersonClusteringRun.id.desc()))
    return run_report(run) or {"status": "none"}


@router.post("/clustering", response_model=ClusteringRunOut, status_code=202)
async def start_clustering(request: Request, uow: Uow, caller: Admin,
                           full: Annotated[bool, Query(description="every anonymous person, not only changed ones")]
                           = False) -> Any:
    """Start (or resume) a re-clustering pass in the background; poll `GET /v1/persons/clustering`."""
    services = get_services(request)
    clustering = PersonClustering(request.app.state.config.database_url, get_galleries(request), services.calibration)
    task = asyncio.create_task(clustering.run_async(full=full))
    _clustering_tasks.add(task)
    task.add_done_callback(_clustering_tasks.discard)
    await asyncio.sleep(0.05)  # let the pass open (or resume) its run row
    run = uow.session.scalar(select(orm.PersonClusteringRun).order_by(orm.PersonClusteringRun.id.desc()))
    return JSONResponse(ClusteringRunOut(**(run_report(run) or {"status": "running"})).model_dump(mode="json"),
                        status_code=202)


@router.get("/{person_id}", response_model=PersonOut)
def get_person(person_id: int, request: Request, uow: Uow, caller: Viewer) -> dict[str, Any]:
    return persons_out(uow, caller, [_visible_person(uow, person_id, caller)], base_url(request))[0]


@router.get("/{person_id}/events", response_model=Page[EventOut])
def person_events(person_id: int, request: Request, uow: Uow, caller: Viewer, paging: Pages,
                  filters: Annotated[PersonEventFilters, Query()]) -> dict[str, Any]:
    """The person's history across cameras, newest first."""
    _visible_person(uow, person_id, caller)
    stmt = visible_events(uow.events.query().where(orm.Event.person_id == person_id), uow, caller)
    if filters.timestamp_gte is not None:
        stmt = stmt.where(orm.Event.timestamp >= filters.timestamp_gte)
    if filters.timestamp_lte is not None:
        stmt = stmt.where(orm.Event.timestamp <= filters.timestamp_lte)
    if filters.camera_id is not None:
        stmt = stmt.where(orm.Event.camera_id == filters.camera_id)
    page = uow.events.page(stmt, paging.limit, paging.cursor, keys=uow.events.newest_first)
    url = base_url(request)
    return {"results": [event_to_dict(e, url) for e in page.items], "next_cursor": page.next_cursor}


# ---- corrections -------------------------------------------------------------------------------------
@router.post("/{person_id}/merge", response_model=PersonOut)
async def merge_persons(person_id: int, body: PersonMergeIn, request: Request, uow: Uow,
                        caller: Operator) -> dict[str, Any]:
    """Fold `other_id` into this person (a dossier's person is always the one kept)."""
    _visible_person(uow, person_id, caller)
    _visible_person(uow, body.other_id, caller, param="other_id")
    kept = p.merge(uow, person_id, body.other_id, int(uow.settings.get("person_max_faces")), by_operator=True)
    uow.commit()
    await _sync(request, p.PERSONS_GALLERY)
    return persons_out(uow, caller, [kept], base_url(request))[0]


@router.delete("/{person_id}/events/{event_id}", response_model=PersonOut)
async def remove_event(person_id: int, event_id: str, request: Request, uow: Uow, caller: Operator) -> dict[str, Any]:
    """"Not this person": the event becomes a person of its own that never joins this one again."""
    _visible_person(uow, person_id, caller)
    event = uow.session.scalar(visible_events(uow.events.query().where(
        orm.Event.id == event_id, orm.Event.person_id == person_id), uow, caller))
    if event is None:
        raise NotFound(f"event {event_id} is not an event of person {person_id}", param="event_id")
    person = p.split_off(uow, event, str(uow.settings.get("embedder")))
    uow.commit()
    await _sync(request, p.PERSONS_GALLERY)
    return persons_out(uow, caller, [person], base_url(request))[0]


@router.post("/{person_id}/promote", response_model=PersonPromoteOut, status_code=201)
async def promote_person(person_id: int, body: PersonPromoteIn, request: Request, uow: Uow,
                         caller: Operator) -> dict[str, Any]:
    """A dossier on watch lists for this person, its faces from the chosen events' crops and vectors."""
    person = _visible_person(uow, person_id, caller)
    dossier = p.promote(uow, person, body.name, body.watch_list_ids, body.event_ids,
                        str(uow.settings.get("embedder")), body.comment)
    uow.commit()
    await _sync(request, DOSSIERS_GALLERY, p.PERSONS_GALLERY)
    return {"dossier_id": dossier.id, "person": persons_out(uow, caller, [person], base_url(request))[0]}


# ---- search by photo -------------------------------------------------------------------------------------
@router.post("/search", response_model=PersonSearchOut, openapi_extra={"requestBody": {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "photo": {"type": "string", "format": "binary"}, "event_id": {"type": "string"},
        "dossier_face_id": {"type": "integer"},
        "threshold": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "event_id": {"type": "string"}, "dossier_face_id": {"type": "integer"}, "threshold": {"type": "string"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}}},
}, "required": True}})
async def search_persons(request: Request, uow: Uow, caller: Viewer) -> dict[str, Any]:
    """Anonymous persons whose representative faces resemble a photo's biggest face (or an event's, or a
    dossier face's): exactly one of `photo`, `event_id`, `dossier_face_id`."""
    query, photo = await read_file_query(request, PersonSearchQuery)
    services = get_services(request)
    vectors, _ = await query_vectors(request, uow, services, query, photo, scope_of(uow, caller))  # type: ignore[arg-type]
    vector = vectors[0]
    threshold = resolve_threshold(query.threshold) if query.threshold is not None else float(
        uow.settings.get("person_threshold"))
    router_ = await get_galleries(request).router_async(p.PERSONS_GALLERY)
    result = await router_.search_async(vector, min(query.limit * 8, 5000),
                                        min_score=services.calibration.cosine(threshold), partial=True)
    owner = p.owners(uow, [int(h.item_id) for h in result.hits[0]])
    best: dict[int, float] = {}
    for hit in result.hits[0]:  # best first: a person's first hit is its best face
        person_id = owner.get(int(hit.item_id))
        if person_id is not None and person_id not in best:
            best[person_id] = float(services.calibration.confidence(hit.score))
    visible = {x.id: x for x in uow.session.scalars(visible_persons(uow, caller).where(orm.Person.id.in_(list(best))))}
    ranked = [pid for pid in best if pid in visible][:query.limit]
    bodies = {b["id"]: b for b in persons_out(uow, caller, [visible[pid] for pid in ranked], base_url(request))}
    body: dict[str, Any] = {"results": [{"confidence": round(best[pid], 4), "person": bodies[pid]} for pid in ranked]}
    if result.missing_shards:
        body["missing_shards"] = result.missing_shards
    return body
