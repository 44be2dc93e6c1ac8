"""POST /v1/search: find dossiers or events by photo, event id or dossier face id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import Field, field_validator

from actors.gallery import Hit
from facewatch.errors import BadParam
from models.calibration import resolve_threshold
from serve_apps.api.deps import Uow, Viewer, scope_of
from serve_apps.api.enrolment import analyze_photo, choose, dossier_face_vector
from serve_apps.api.schemas import Input, SearchOut
from serve_apps.api.services import Services, get_galleries, get_services, read_file_query, read_upload
from serve_apps.api.visible_search import fill_page, keep_hits
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(tags=["search"])
FORM_CONTENT = {"type": "object", "properties": {
    "photo": {"type": "string", "format": "binary"},
    "event_id": {"type": "string"}, "dossier_face_id": {"type": "integer"},
    "target": {"type": "string", "enum": ["dossiers", "events"]},
    "threshold": {"type": "string", "description": "a number in [0, 1] or strict/medium/low/none"},
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "camera_id": {"type": "integer"}, "camera_group_id": {"type": "integer"},
    "timestamp_gte": {"type": "string", "format": "date-time"},
    "timestamp_lte": {"type": "string", "format": "date-time"},
    "sort": {"type": "string", "enum": ["confidence", "time"]}, "partial": {"type": "boolean"},
    "watch_list_id": {"type": "integer", "description": "dossiers on this (active) watch list only"},
    "include_inactive": {"type": "boolean", "description": "dossiers: also inactive dossiers and lists"},
    "face_select": {"type": "string", "enum": ["biggest", "all"], "description": "all: every face of the photo"},
    "vector": {"type": "array", "items": {"type": "number"}, "description": "a raw vector of the active model"},
}}


class SearchQuery(Input):
    event_id: str | None = Field(None, max_length=64)
    dossier_face_id: int | None = None
    target: Literal["dossiers", "events"] = "dossiers"
    threshold: str | float | None = None
    limit: int = Field(20, ge=1, le=1000)
    camera_id: int | None = None
    camera_group_id: int | None = None
    timestamp_gte: datetime | None = None
    timestamp_lte: datetime | None = None
    sort: Literal["confidence", "time"] = "confidence"
    partial: bool = False
    watch_list_id: int | None = None
    include_inactive: bool = False
    face_select: Literal["biggest", "all"] = "biggest"
    vector: list[float] | None = Field(None, max_length=4096, description="a raw vector of the active model")

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: str | float | None) -> float | None:
        return None if value is None else resolve_threshold(value)


async def query_vectors(request: Request, uow: UnitOfWork, services: Services, query: SearchQuery,
                         photo: Any, scope: VisibilityScope) -> tuple[np.ndarray, list[Any]]:
    """The query vectors (one, or every face of the photo with face_select=all) and their faces. Queries
    without `vector` / `face_select` (the persons search) get the biggest face of a photo."""
    vector_given = getattr(query, "vector", None)
    face_select = getattr(query, "face_select", "biggest")
    given = [photo is not None, query.event_id is not None, query.dossier_face_id is not None,
             vector_given is not None]
    if sum(given) != 1:
        raise BadParam("give exactly one of photo, event_id, dossier_face_id and vector", param="photo")
    if photo is not None:
        limit = request.app.state.config.max_upload_bytes
        data = await read_upload(photo, limit)
        _, analyzed = await analyze_photo(services, data, limit)
        faces = choose(analyzed, face_select, None)
        return (await services.extract(analyzed.chips[[f.index for f in faces]]))["embeddings"], faces
    if vector_given is not None:
        return raw_vector(vector_given, services.spec.dim, "vector")[None], []
    if query.dossier_face_id is not None:
        if not scope.keep_dossier_faces(uow.session, [query.dossier_face_id]):
            raise BadParam(f"dossier face {query.dossier_face_id} does not exist", param="dossier_face_id")
        return dossier_face_vector(uow, query.dossier_face_id, services.embedder, "dossier_face_id")[None], []
    row = uow.vectors.find(EVENTS_GALLERY, query.event_id or "", services.embedder)
    if row is None or not scope.keep_events(uow.session, [query.event_id or ""]):
        raise BadParam(f"event {query.event_id} does not exist (or has no {services.embedder} vector)",
                       param="event_id")
    return np.frombuffer(row.vector, dtype=np.float32)[None], []


def raw_vector(values: list[float], dim: int, param: str) -> np.ndarray:
    """A client's vector of the active model, unit length (the galleries hold unit vectors)."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dim,) or not np.isfinite(vector).all() or not np.linalg.norm(vector) > 0:
        raise BadParam(f"{param} must be {dim} finite numbers of the active model, not all zero", param=param)
    return vector / np.linalg.norm(vector)


def _dossier_filters(query: SearchQuery) -> dict[str, Any] | None:
    """By default only faces that can match: active dossiers on at least one active watch list."""
    filters: dict[str, Any] = {}
    if not query.include_inactive:
        filters["active"] = True
    if query.watch_list_id is not None:
        filters["watch_list_ids"] = [query.watch_list_id]
    return filters or None


def _event_filters(query: SearchQuery) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    if query.camera_id is not None:
        filters["camera_id"] = query.camera_id
    if query.camera_group_id is not None:
        filters["camera_group_id"] = query.camera_group_id
    window = {}
    if query.timestamp_gte is not None:
        window["gte"] = query.timestamp_gte.timestamp()
    if query.timestamp_lte is not None:
        window["lte"] = query.timestamp_lte.timestamp()
    if window:
        filters["timestamp"] = window
    return filters


@router.post("/search", response_model=SearchOut, openapi_extra={"requestBody": {"content": {
    "multipart/form-data": {"schema": FORM_CONTENT},
    "application/json": {"schema": FORM_CONTENT},
}, "required": True}})
async def search(request: Request, uow: Uow, caller: Viewer) -> dict[str, Any]:
    """Only what the caller sees is searched (storage/visibility.py); hidden hits never shorten a page.
    With face_select=all every face of the photo is searched (`faces`, one result list each)."""
    query, photo = await read_file_query(request, SearchQuery, json_fields=("vector",))
    services = get_services(request)
    scope = scope_of(uow, caller)
    vectors, faces = await query_vectors(request, uow, services, query, photo, scope)
    threshold = query.threshold if query.threshold is not None else float(uow.settings.get("default_threshold"))
    min_score = services.calibration.cosine(threshold)
    galleries = get_galleries(request)
    if query.target == "dossiers":
        router_ = await galleries.router_async(DOSSIERS_GALLERY)
        filters = _dossier_filters(query)

        def dossiers(hits: Sequence[Hit]) -> list[dict[str, Any]]:
            visible = scope.keep_dossier_faces(uow.session, [int(h.item_id) for h in hits])
            return _group_dossiers(uow, services, keep_hits(hits, visible, int), query.limit)

        # Several faces per dossier: fetch more than `limit` hits so grouping still fills the page.
        per_face = []
        for vector in np.asarray(vectors, dtype=np.float32):
            result, results = await fill_page(
                lambda k, v=vector: router_.search_async(v, k, min_score=min_score, filters=filters,
                                                         partial=query.partial),
                query.limit, dossiers, first_k=min(query.limit * 5, 5000))
            per_face.append(results)
    else:
        router_ = await galleries.router_async(EVENTS_GALLERY)
        filters = scope.event_shard_filters(_event_filters(query))

        def events(hits: Sequence[Hit]) -> list[tuple[Hit, orm.Event]]:
            return _visible_events(uow, scope, hits)

        per_face = []
        for vector in np.asarray(vectors, dtype=np.float32):
            result, found = await fill_page(
                lambda k, v=vector: router_.search_async(v, k, min_score=min_score, filters=filters,
                                                         partial=query.partial),
                query.limit, events)
            per_face.append(_event_results(request, services, found, query.sort))
    body: dict[str, Any] = {"results": per_face[0]}
    if query.face_select == "all" and faces:
        body["faces"] = [{"bbox": f.bbox, "quality": f.quality, "results": r}
                         for f, r in zip(faces, per_face, strict=True)]
    if result.missing_shards:
        body["missing_shards"] = result.missing_shards
    return body


def _group_dossiers(uow: UnitOfWork, services: Services, hits: list[Any], limit: int) -> list[dict[str, Any]]:
    face_ids = [int(h.item_id) for h in hits]
    owner = uow.dossier_faces.owners(face_ids)
    results, seen = [], set()
    for hit in hits:  # best first, so the first face of a dossier is its best
        face_id = int(hit.item_id)
        if face_id not in owner or owner[face_id][0] in seen:
            continue
        dossier_id, name = owner[face_id]
        seen.add(dossier_id)
        results.append({"confidence": round(float(services.calibration.confidence(hit.score)), 4),
                        "dossier": {"id": dossier_id, "name": name}, "face_id": face_id})
        if len(results) >= limit:
            break
    return results


def _visible_events(uow: UnitOfWork, scope: VisibilityScope, hits: Sequence[Hit]) -> list[tuple[Hit, orm.Event]]:
    """The hits whose event the caller sees (and that still exists), best first, with their rows."""
    rows = uow.events.visible_among((h.item_id for h in hits), scope)
    return [(h, rows[h.item_id]) for h in hits if h.item_id in rows]


def _event_results(request: Request, services: Services, found: list[tuple[Hit, orm.Event]],
                   sort: str) -> list[dict[str, Any]]:
    base = str(request.base_url).rstrip("/")
    results = [{"confidence": round(float(services.calibration.confidence(h.score)), 4),
                "event": event_to_dict(event, base)} for h, event in found]
    if sort == "time":
        results.sort(key=lambda r: r["event"]["timestamp"], reverse=True)
    return results
