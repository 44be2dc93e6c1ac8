"""Estimate: a ZIP (or server folder) of photos → per photo its faces, boxes, quality, attributes
(and embeddings when `with_embeddings`) as JSON lines, one line per photo:

    {"file": "a/b.jpg", "faces": [{"bbox", "score", "quality", "landmarks", "age", "gender",
     "attributes", "embedding"?}], "error": null}
    {"file": "bad.jpg", "faces": [], "error": {"code": "BAD_IMAGE", "reason": "…"}}

Parts: `part_size` photos each, written to `part-<seq>.jsonl`; the result is their concatenation in
order (`estimate-<id>.jsonl`).
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from actors.tasks.archive import analyze, list_photos, read_photo
from actors.tasks.context import Finished, TaskContext, atomic_write
from facewatch.errors import FacewatchError
from facewatch.task_params import EstimateParams, parse
from facewatch.tasks import chunks


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = parse(EstimateParams, params)
    return [{"files": chunk} for chunk in chunks(list_photos(ctx, params), p.part_size)]


def describe_photo(ctx: TaskContext, params: dict[str, Any], name: str, with_embeddings: bool) -> dict[str, Any]:
    try:
        faces, extracted = analyze(ctx, read_photo(ctx, params, name))
    except FacewatchError as exc:
        return {"file": name, "faces": [], "error": {"code": exc.code, "reason": exc.reason}}
    out = []
    for face, vector, attributes in zip(faces, extracted["embeddings"], extracted["attributes"], strict=True):
        gender = attributes.get("gender")
        item = {"bbox": face["bbox"], "score": face["score"], "quality": face["quality"],
                "landmarks": face["landmarks"], "age": attributes.get("age"),
                "gender": gender.get("value") if isinstance(gender, dict) else gender, "attributes": attributes}
        if with_embeddings:
            item["embedding"] = [round(float(v), 6) for v in vector]
            item["model"] = extracted["model"]
        out.append(item)
    return {"file": name, "faces": out, "error": None}


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    p = parse(EstimateParams, params)
    lines = [describe_photo(ctx, params, name, p.with_embeddings) for name in spec["files"]]
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    atomic_write(ctx.task_dir(task_id) / f"part-{seq}.jsonl", lambda h: h.write(body))
    return {"photos": len(lines), "faces": sum(len(line["faces"]) for line in lines),
            "photo_errors": sum(1 for line in lines if line["error"])}


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    folder = ctx.task_dir(task_id)
    name = f"estimate-{task_id}.jsonl"

    def write(handle: Any) -> None:
        for seq in range(len(results)):
            with open(folder / f"part-{seq}.jsonl", "rb") as part:
                shutil.copyfileobj(part, handle)

    size = atomic_write(folder / name, write)
    totals = {k: sum(int(r.get(k, 0)) for r in results) for k in ("photos", "faces", "photo_errors")}
    return Finished(summary={**totals, "bytes": size}, result_name=name)
