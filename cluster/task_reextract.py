"""Re-extract: `facewatch migrate-model --to MODEL` as a task (`{"kind": "reextract", "params":
{"model": …}}`). One part runs the resumable migration (`cluster.migrate_model`); a part that runs
again after a lost worker resumes it (items that already have a target vector are skipped), so
nothing is embedded twice. The summary is the migration's report."""

from __future__ import annotations

from typing import Any

from actors.tasks.context import Finished, TaskContext
from cluster.migrate_model import MigrationError, migrate_model
from facewatch.errors import BadParam
from facewatch.task_params import ReextractParams, parse


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    parse(ReextractParams, params)
    return [{"model": params["model"]}]


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    p = parse(ReextractParams, params)
    try:
        return migrate_model(ctx.config, p.model, batch=p.batch, switch=p.switch)
    except MigrationError as exc:
        raise BadParam(str(exc), param="model") from exc


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    report = dict(results[0]) if results else {}
    report["failed"] = report.get("failed", [])[:100]
    return Finished(summary=report)
