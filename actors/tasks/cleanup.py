"""Clean-up by filter: delete events (rows, media, vectors), dossier faces, or vectors of unused models.

Parts: the matching ids (taken when the task starts), `part_size` at a time. Each part deletes its ids
and commits its result in the SAME transaction, so a part that runs twice (a lost worker) counts its
deletions once and deletes nothing else: the second run finds the part done and does nothing.
Events go with everything `storage.retention.delete_events` removes (outbox rows, events-gallery
vectors, media no other row uses, emptied episodes); dossier faces with their vectors and crops/photos
no other row uses; `vectors` removes every vector row of a model other than the active `embedder` (refused while a
`reextract` task is under way: the vectors it is building are of a model not yet in use).
The galleries are synced when the task finishes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.tasks.context import Finished, TaskContext
from facewatch.errors import Conflict
from facewatch.task_params import CleanupParams, dossier_filter_values, event_filter_values, parse
from facewatch.tasks import DONE, chunks
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, remove_dossier_face_vectors
from storage.retention import CleanupReport, delete_events, referenced_keys
from storage.selections import (
    delete_vector_rows,
    dossier_face_ids,
    dossier_faces_by_ids,
    event_ids,
    unused_model_vector_ids,
)
from storage.tasks import commit_part, other_active_of_kind
from storage.unit_of_work import UnitOfWork


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = parse(CleanupParams, params)
    with UnitOfWork(ctx.db_url) as uow:
        if p.target == "events":
            ids: list[Any] = event_ids(uow.session, event_filter_values(p.filters))
        elif p.target == "dossier_faces":
            ids = dossier_face_ids(uow.session, dossier_filter_values(p.filters))
        else:
            running = other_active_of_kind(uow.session, "reextract", task_id)
            if running:  # its target model's new vectors are "not in use" until it switches
                raise Conflict(f"re-extraction task {running[0]} is under way: its new vectors would be "
                               "deleted; clean up vectors once it is done", param="target")
            ids = unused_model_vector_ids(uow.session, str(uow.settings.get("embedder")))
    return [{"ids": chunk} for chunk in chunks(ids, p.part_size)]


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    p = parse(CleanupParams, params)
    with UnitOfWork(ctx.db_url) as uow:
        part = uow.session.get(orm.TaskPart, part_id)
        if part is None or part.status == DONE:
            return dict(part.result) if part is not None else {}
        if p.target == "events":
            report = CleanupReport()
            delete_events(uow, ctx.media, list(spec["ids"]), report)
            result = {"events_deleted": report.events_deleted, "vectors_deleted": report.vectors_deleted,
                      "media_deleted": report.media_deleted, "episodes_deleted": report.episodes_deleted}
        elif p.target == "dossier_faces":
            result = _delete_dossier_faces(uow, ctx, [int(i) for i in spec["ids"]])
        else:
            result = {"vectors_deleted": delete_vector_rows(uow.session, [int(i) for i in spec["ids"]])}
        commit_part(uow.session, part_id, result)
        uow.commit()
    return result


def _delete_dossier_faces(uow: UnitOfWork, ctx: TaskContext, ids: list[int]) -> dict[str, Any]:
    rows = dossier_faces_by_ids(uow.session, ids)
    keys = {k for r in rows for k in (r.source_key, r.crop_key) if k}
    remove_dossier_face_vectors(uow, [r.id for r in rows])
    for row in rows:
        uow.session.delete(row)
    uow.flush()
    shared = referenced_keys(uow, keys)
    media = ctx.media
    deleted = 0
    for key in sorted(keys - shared):
        if media.exists(key):
            media.delete(key)
            deleted += 1
    return {"dossier_faces_deleted": len(rows), "media_deleted": deleted}


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    totals: dict[str, int] = {}
    for result in results:
        for name, value in result.items():
            totals[name] = totals.get(name, 0) + int(value)
    _sync(ctx)
    return Finished(summary={"target": params.get("target"), **totals})


def _sync(ctx: TaskContext) -> None:
    """The running gallery shards drop what was deleted (they also replay the log when they restart)."""
    galleries = ctx.galleries()

    async def sync() -> None:
        for name in (EVENTS_GALLERY, DOSSIERS_GALLERY):
            await galleries.sync_async(name)

    asyncio.run(sync())
