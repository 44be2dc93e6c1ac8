"""Cross-matching: every face of one set against another set → top-k candidates above a threshold.

Sets: `{"target": "dossiers", "watch_list_id": …}` (or `"dossier_ids": […]`; every face of those
dossiers) or `{"target": "events", "filters": {…event list filters…}}`. References are the faces of
`reference`, `part_size` at a time; each reference's stored vector (active model) is searched in the
candidates' gallery (`dossiers` or `events`) with the filters the gallery knows (watch list, dossier,
camera, camera group, time range); other event filters are applied to the hits afterwards (the search
then asks for more hits so that `limit` survive). References with no candidate at or above the
threshold are left out, as on the reference platform. Result: JSON
`[{"reference_type", "reference_id", "candidates": [{"candidate_type", "candidate_id", "confidence",
"dossier_id"?}]}]`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np

from actors.tasks.context import Finished, TaskContext, atomic_write
from facewatch.task_params import CrossMatchParams, CrossMatchSide, event_filter_values, parse
from facewatch.tasks import chunks
from models.calibration import resolve_threshold
from models.embedders import embedder_spec
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.selections import dossier_face_ids, dossiers_of_faces, event_ids, matching_event_ids, vectors_of
from storage.unit_of_work import UnitOfWork

GALLERY_EVENT_FILTERS = ("camera_id", "camera_group_id", "timestamp_gte", "timestamp_lte")
MAX_HITS = 1000


def _side_items(uow: UnitOfWork, side: CrossMatchSide, params: dict[str, Any]) -> list[str]:
    if side.target == "events":
        return event_ids(uow.session, event_filter_values(side.filters), params.get("_hidden_watch_lists", ()),
                         params.get("_hidden_camera_groups", ()))
    filters: dict[str, Any] = {}
    if side.watch_list_id is not None:
        filters["watch_list_id"] = side.watch_list_id
    if side.dossier_ids is not None:
        filters["dossier_ids"] = side.dossier_ids
    return [str(i) for i in dossier_face_ids(uow.session, filters)]


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = parse(CrossMatchParams, params)
    with UnitOfWork(ctx.db_url) as uow:
        items = _side_items(uow, p.reference, params)
    return [{"items": chunk} for chunk in chunks(items, p.part_size)]


def _gallery_filters(side: CrossMatchSide) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filters the gallery applies, event filters left for the DB)."""
    if side.target == "dossiers":
        if side.dossier_ids is not None:
            return {"dossier_id": list(side.dossier_ids)}, {}
        return ({"watch_list_ids": [side.watch_list_id]} if side.watch_list_id is not None else {}), {}
    f = event_filter_values(side.filters)
    gallery: dict[str, Any] = {}
    for name in ("camera_id", "camera_group_id"):
        if f.get(name) is not None:
            gallery[name] = f.pop(name)
    span = {}
    for name, op in (("timestamp_gte", "gte"), ("timestamp_lte", "lte")):
        if f.get(name) is not None:
            span[op] = f.pop(name).timestamp()
    if span:
        gallery["timestamp"] = span
    return gallery, {k: v for k, v in f.items() if v is not None}


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    p = parse(CrossMatchParams, params)
    spec_model = embedder_spec(ctx.embedder)
    cut = resolve_threshold(p.threshold)
    ref_gallery = EVENTS_GALLERY if p.reference.target == "events" else DOSSIERS_GALLERY
    cand_gallery = EVENTS_GALLERY if p.candidates.target == "events" else DOSSIERS_GALLERY
    gallery_filters, db_filters = _gallery_filters(p.candidates)
    with UnitOfWork(ctx.db_url) as uow:
        vectors = vectors_of(uow.session, ref_gallery, spec_model.name, spec["items"])
    items = [i for i in spec["items"] if i in vectors]
    missing = [i for i in spec["items"] if i not in vectors]
    matches: list[dict[str, Any]] = []
    if items:
        queries = np.stack([np.frombuffer(vectors[i], np.float32) for i in items])
        k = min(MAX_HITS, p.limit * (5 if db_filters else 1) + 1)
        hits = _search(ctx, cand_gallery, queries, k, spec_model.calibration.cosine(cut), gallery_filters)
        allowed = _allowed_events(ctx, db_filters, hits, params) if cand_gallery == EVENTS_GALLERY else None
        owners = _face_owners(ctx, hits) if cand_gallery == DOSSIERS_GALLERY else {}
        for item, row in zip(items, hits, strict=True):
            candidates = []
            for hit in row:
                if (hit.item_id == item and ref_gallery == cand_gallery) or \
                        (allowed is not None and hit.item_id not in allowed):
                    continue
                confidence = round(float(spec_model.calibration.confidence(hit.score)), 4)
                if confidence < cut:
                    continue
                candidate: dict[str, Any] = {"candidate_type": _kind(cand_gallery), "candidate_id": _id(
                    cand_gallery, hit.item_id), "confidence": confidence}
                if cand_gallery == DOSSIERS_GALLERY:
                    candidate["dossier_id"] = owners.get(hit.item_id)
                candidates.append(candidate)
                if len(candidates) == p.limit:
                    break
            if candidates:
                matches.append({"reference_type": _kind(ref_gallery), "reference_id": _id(ref_gallery, item),
                                "candidates": candidates})
    atomic_write(ctx.task_dir(task_id) / f"part-{seq}.json",
                 lambda h: h.write(json.dumps(matches, separators=(",", ":")).encode()))
    return {"references": len(spec["items"]), "matched": len(matches), "without_vector": missing[:100]}


def _kind(gallery: str) -> str:
    return "event" if gallery == EVENTS_GALLERY else "dossier_face"


def _id(gallery: str, item_id: str) -> Any:
    return item_id if gallery == EVENTS_GALLERY else int(item_id)


def _search(ctx: TaskContext, gallery: str, queries: np.ndarray, k: int, min_score: float,
            filters: dict[str, Any]) -> list[list[Any]]:
    galleries = ctx.galleries()

    async def search() -> list[list[Any]]:
        router = await galleries.router_async(gallery)
        result = await router.search_async(queries, k, min_score=min_score, filters=filters or None)
        return result.hits

    return asyncio.run(search())


def _allowed_events(ctx: TaskContext, db_filters: dict[str, Any], hits: list[list[Any]],
                    params: dict[str, Any]) -> set[str] | None:
    ids = sorted({h.item_id for row in hits for h in row})
    if not ids:
        return set()
    with UnitOfWork(ctx.db_url) as uow:
        return matching_event_ids(uow.session, ids, db_filters, list(params.get("_hidden_watch_lists", ())),
                                  list(params.get("_hidden_camera_groups", ())))


def _face_owners(ctx: TaskContext, hits: list[list[Any]]) -> dict[str, int]:
    ids = sorted({int(h.item_id) for row in hits for h in row})
    with UnitOfWork(ctx.db_url) as uow:
        return {str(face_id): dossier_id for face_id, dossier_id in dossiers_of_faces(uow.session, ids).items()}


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    folder = ctx.task_dir(task_id)
    name = f"cross-match-{task_id}.json"

    def write(handle: Any) -> None:
        handle.write(b"[")
        first = True
        for seq in range(len(results)):
            for match in json.loads((folder / f"part-{seq}.json").read_bytes()):
                handle.write((b"" if first else b",") + json.dumps(match, separators=(",", ":")).encode())
                first = False
        handle.write(b"]")

    size = atomic_write(folder / name, write)
    return Finished(summary={"references": sum(r["references"] for r in results),
                             "references_matched": sum(r["matched"] for r in results), "bytes": size},
                    result_name=name)
