"""Export: events or dossiers matching the list filters → one ZIP with a CSV and the media.

Parts: the matching ids (taken when the task starts) in parts of `part_size`; each part writes its CSV
rows to `part-<seq>.csv` in the task's folder. `finish` streams the ZIP to a file (never in memory):
`events.csv` (or `dossiers.csv`) — the header, then every part's rows in order — and each media file
once under `media/<key>`. Media stop being added when the archive would pass `max_bytes`; the CSV is
always complete and the summary says how many media were left out.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from typing import Any

from actors.tasks.context import Finished, TaskContext, atomic_write
from facewatch.task_params import ExportParams, dossier_filter_values, event_filter_values, parse
from storage import orm
from storage.selections import dossier_ids, dossiers_by_ids, event_ids, events_by_ids
from storage.unit_of_work import UnitOfWork

EVENT_COLUMNS = ["id", "timestamp", "camera_id", "camera_group_id", "video_id", "matched", "dossier_id",
                 "watch_list_id", "confidence", "quality", "age", "gender", "episode_id", "acknowledged",
                 "bbox", "external_id", "meta", "thumbnail", "crop", "frame"]
DOSSIER_COLUMNS = ["id", "name", "comment", "external_id", "active", "watch_list_ids", "meta", "face_ids",
                   "photos"]


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = parse(ExportParams, params)
    with UnitOfWork(ctx.db_url) as uow:
        if p.target == "events":
            ids: list[Any] = event_ids(uow.session, event_filter_values(p.filters),
                                       params.get("_hidden_watch_lists", ()), params.get("_hidden_camera_groups", ()))
        else:
            ids = dossier_ids(uow.session, dossier_filter_values(p.filters))
    from facewatch.tasks import chunks

    return [{"ids": chunk} for chunk in chunks(ids, p.part_size)]


def _media_name(key: str) -> str:
    return f"media/{key}" if key else ""


def _event_row(e: orm.Event) -> list[Any]:
    return [e.id, e.timestamp.isoformat(), e.camera_id, e.camera_group_id, e.video_id, e.matched, e.dossier_id,
            e.watch_list_id, e.confidence, e.quality, e.age, e.gender, e.episode_id, e.acknowledged,
            json.dumps(e.bbox), e.external_id or "", json.dumps(e.meta or {}, ensure_ascii=False),
            _media_name(e.thumbnail_key), _media_name(e.crop_key), _media_name(e.frame_key)]


def _dossier_row(d: orm.Dossier) -> tuple[list[Any], list[str]]:
    keys = [f.source_key for f in d.faces if f.source_key]
    return ([d.id, d.name, d.comment, d.external_id or "", d.active, json.dumps(sorted(w.id for w in d.watch_lists)),
             json.dumps(d.meta or {}, ensure_ascii=False), json.dumps([f.id for f in d.faces]),
             json.dumps([_media_name(k) for k in dict.fromkeys(keys)])], keys)


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    p = parse(ExportParams, params)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    media: list[str] = []
    with UnitOfWork(ctx.db_url) as uow:
        if p.target == "events":
            rows = events_by_ids(uow.session, spec["ids"])
            for e in rows:
                writer.writerow(_event_row(e))
                media += [k for k in (e.thumbnail_key, e.crop_key, e.frame_key) if k]
        else:
            rows = dossiers_by_ids(uow.session, spec["ids"])
            for d in rows:
                row, keys = _dossier_row(d)
                writer.writerow(row)
                media += keys
    data = buffer.getvalue().encode()
    atomic_write(ctx.task_dir(task_id) / f"part-{seq}.csv", lambda h: h.write(data))
    return {"rows": len(rows), "media": list(dict.fromkeys(media)) if p.include_media else []}


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    p = parse(ExportParams, params)
    folder = ctx.task_dir(task_id)
    name = f"export-{task_id}.zip"
    store = ctx.media
    added: set[str] = set()
    skipped = missing = 0

    def write(handle: Any) -> None:
        nonlocal skipped, missing
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            with archive.open(f"{p.target}.csv", "w") as out:
                header = io.StringIO()
                csv.writer(header).writerow(EVENT_COLUMNS if p.target == "events" else DOSSIER_COLUMNS)
                out.write(header.getvalue().encode())
                for seq in range(len(results)):
                    with open(folder / f"part-{seq}.csv", "rb") as part:
                        shutil.copyfileobj(part, out)
            for result in results:
                for key in result.get("media", []):
                    if key in added:
                        continue
                    if not store.exists(key):
                        missing += 1
                        continue
                    size = store.path(key).stat().st_size
                    if handle.tell() + size > p.max_bytes:
                        skipped += 1
                        continue
                    # Media are JPEG/PNG already: stored, not deflated again.
                    archive.write(store.path(key), f"media/{key}", compress_type=zipfile.ZIP_STORED)
                    added.add(key)

    # The part files stay until the task is deleted: a finish that runs again (its supervisor restarted
    # before the outcome was committed) rebuilds the same archive from them.
    size = atomic_write(folder / name, write)
    rows = sum(int(r.get("rows", 0)) for r in results)
    return Finished(summary={"rows": rows, "media_files": len(added), "media_left_out": skipped,
                             "media_missing": missing, "bytes": size, "target": p.target},
                    result_name=name)
