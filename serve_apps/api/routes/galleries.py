"""The low-level gallery API (face-server style): named galleries of faces, added and searched by
photo or by vector. The built-in `dossiers` and `events` galleries can be listed and searched here;
they change only through dossiers and events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import Field

from actors.gallery import Hit
from facewatch.errors import BadParam, Conflict, NotFound
from models.calibration import resolve_threshold
from serve_apps.api.deps import Operator, Scope, Uow, Viewer
from serve_apps.api.enrolment import analyze_photo, choose
from serve_apps.api.schemas import GalleryFaceOut, GalleryIn, GalleryOut, GallerySearchOut, Input
from serve_apps.api.services import Services, get_galleries, get_services, read_file_query, read_upload
from serve_apps.api.visible_search import fill_page, keep_hits
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/galleries", tags=["galleries"])
BUILTIN = (DOSSIERS_GALLERY, EVENTS_GALLERY)
BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "photo": {"type": "string", "format": "binary"}, "id": {"type": "string"},
        "limit": {"type": "integer"}, "threshold": {"type": "string"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "vector": {"type": "array", "items": {"type": "number"}}, "id": {"type": "string"},
        "limit": {"type": "integer"}, "threshold": {"type": "string"}, "filters": {"type": "object"}}}},
}}}


class VectorBody(Input):
    id: str | None = Field(None, min_length=1, max_length=100)
    vector: list[float] | None = None
    limit: int = Field(10, ge=1, le=1000)
    threshold: str | float | None = None
    filters: dict[str, Any] | None = Field(None, description="shard filters, e.g. {\"watch_list_ids\": [3]}")


def _gallery(uow: UnitOfWork, name: str) -> orm.Gallery | None:
    """The user gallery row; None for the built-in ones; NOT_FOUND for unknown names."""
    if name in BUILTIN:
        return None
    row = uow.galleries.by_name(name)
    if row is None:
        raise NotFound(f"gallery {name!r} does not exist", param="name")
    return row


@router.get("", response_model=dict[str, list[GalleryOut]])
def list_galleries(request: Request, uow: Uow, _: Viewer) -> dict[str, Any]:
    services = get_services(request)
    rows = [GalleryOut(name=n, model=services.embedder, dim=services.spec.dim, builtin=True, comment="",
                       count=uow.vectors.count(n, services.embedder)) for n in BUILTIN]
    for g in uow.galleries.by_names():
        rows.append(GalleryOut(name=g.name, model=services.embedder, dim=services.spec.dim, builtin=False,
                               comment=g.comment, count=uow.vectors.count(g.name, services.embedder)))
    return {"results": rows}


@router.post("", status_code=201, response_model=GalleryOut)
def create_gallery(body: GalleryIn, request: Request, uow: Uow, _: Operator) -> GalleryOut:
    if body.name in BUILTIN:
        raise Conflict(f"{body.name!r} is a built-in gallery", param="name")
    services = get_services(request)
    if uow.galleries.by_name(body.name) is not None:
        raise Conflict(f"gallery {body.name!r} already exists", param="name")
    row = orm.Gallery(name=body.name, model=services.embedder, dim=services.spec.dim, comment=body.comment)
    uow.galleries.add(row)
    uow.commit()
    return GalleryOut(name=row.name, model=row.model, dim=row.dim, builtin=False, comment=row.comment, count=0)


@router.delete("/{name}", status_code=204)
async def delete_gallery(name: str, request: Request, uow: Uow, _: Operator) -> Response:
    row = _gallery(uow, name)
    if row is None:
        raise Conflict(f"{name!r} is a built-in gallery and cannot be deleted", param="name")
    uow.vectors.remove(name, uow.vectors.item_ids(name))
    uow.galleries.delete(row)
    uow.commit()
    await get_galleries(request).drop_async(name)
    return Response(status_code=204)


async def _vector(request: Request, services: Services, body: VectorBody, photo: Any,
                  dim: int) -> tuple[np.ndarray, list[float] | None]:
    if (photo is None) == (body.vector is None):
        raise BadParam("give exactly one of photo and vector", param="photo")
    if photo is not None:
        limit = request.app.state.config.max_upload_bytes
        _, analyzed = await analyze_photo(services, await read_upload(photo, limit), limit)
        face = choose(analyzed, "biggest", None)[0]
        return (await services.extract(analyzed.chips[[face.index]]))["embeddings"][0], face.bbox
    vector = np.asarray(body.vector, dtype=np.float32)
    if vector.shape != (dim,) or not np.isfinite(vector).all() or not np.linalg.norm(vector) > 0:
        raise BadParam(f"vector must hold {dim} finite numbers, not all zero", param="vector")
    return vector / np.linalg.norm(vector), None


@router.post("/{name}/faces", status_code=201, response_model=GalleryFaceOut, openapi_extra=BODY)
async def add_face(name: str, request: Request, uow: Uow, _: Operator) -> GalleryFaceOut:
    row = _gallery(uow, name)
    if row is None:
        raise Conflict(f"{name!r} is built in: add faces through dossiers", param="name")
    services = get_services(request)
    body, photo = await read_file_query(request, VectorBody)
    # Stored under the active model, whose shards serve every gallery (after `migrate-model` the row
    # still names the model it was created with, and vectors stored under that were never found).
    model, dim = services.embedder, services.spec.dim
    if body.id is not None and uow.vectors.holds(name, body.id):
        raise Conflict(f"face {body.id!r} is already in gallery {name!r}; delete it first to replace it",
                       param="id")
    vector, bbox = await _vector(request, services, body, photo, dim)
    item_id = body.id or uuid.uuid4().hex
    uow.vectors.upsert(name, item_id, model, vector.astype(np.float32).tobytes(), dim, {})
    uow.commit()
    await get_galleries(request).sync_async(name)
    return GalleryFaceOut(id=item_id, gallery=name, bbox=bbox)


@router.delete("/{name}/faces/{item_id}", status_code=204)
async def delete_face(name: str, item_id: str, request: Request, uow: Uow, _: Operator) -> Response:
    row = _gallery(uow, name)
    if row is None:
        raise Conflict(f"{name!r} is built in: remove faces through dossiers or retention", param="name")
    if not uow.vectors.holds(name, item_id):
        raise NotFound(f"face {item_id!r} is not in gallery {name!r}", param="item_id")
    uow.vectors.remove(name, [item_id])
    uow.commit()
    await get_galleries(request).sync_async(name)
    return Response(status_code=204)


@router.post("/{name}/search", response_model=GallerySearchOut, openapi_extra=BODY)
async def search_gallery(name: str, request: Request, uow: Uow, _: Viewer, scope: Scope) -> GallerySearchOut:
    """In the built-in galleries only the events and dossier faces the caller sees are found
    (storage/visibility.py), and hidden ones never shorten the page."""
    services = get_services(request)
    _gallery(uow, name)
    dim = services.spec.dim  # every gallery's shards hold the active model's vectors
    body, photo = await read_file_query(request, VectorBody)
    vector, _bbox = await _vector(request, services, body, photo, dim)
    try:
        threshold = resolve_threshold(body.threshold, 0.0)
    except ValueError as exc:
        raise BadParam(str(exc), param="threshold") from None
    galleries = get_galleries(request)
    router_ = await galleries.router_async(name)
    min_score = services.calibration.cosine(threshold)
    filters = scope.event_shard_filters(body.filters) if name == EVENTS_GALLERY else body.filters
    _, hits = await fill_page(
        lambda k: router_.search_async(vector, k, min_score=min_score, filters=filters), body.limit,
        lambda found: _visible_hits(uow, scope, name, found))
    return GallerySearchOut(results=[
        {"id": h.item_id, "confidence": round(float(services.calibration.confidence(h.score)), 4)}
        for h in hits])


def _visible_hits(uow: UnitOfWork, scope: VisibilityScope, name: str, hits: Sequence[Hit]) -> list[Hit]:
    if name == EVENTS_GALLERY:
        return keep_hits(hits, scope.keep_events(uow.session, [h.item_id for h in hits]))
    if name == DOSSIERS_GALLERY:
        return keep_hits(hits, scope.keep_dossier_faces(uow.session, [int(h.item_id) for h in hits]), int)
    return list(hits)  # a user gallery holds no rows that could be hidden
