"""Task kinds (`/v1/tasks`): each module plans parts, runs one part, and merges the parts' results.

A kind is a module (or object) with three functions, looked up by `KINDS` below:
- `plan(ctx, task_id, params) -> list[dict]`: the part specs (small JSON), computed once;
- `run_part(ctx, task_id, part_id, seq, params, spec) -> dict`: one part's result (small JSON). It may
  write a file named after its part under `ctx.task_dir(task_id)` (rewritten whole by a re-run, so a
  re-run never duplicates anything) and it may commit its own result in its own transaction
  (`storage.tasks.commit_part`) when its work and its result must commit together;
- `finish(ctx, task_id, params, results) -> Finished`: merges the parts' results (in part order) into
  the task's result files.
"""

from __future__ import annotations

KINDS = {
    "export": "actors.tasks.export",
    "cross_match": "actors.tasks.cross_match",
    "cleanup": "actors.tasks.cleanup",
    "evaluate": "actors.tasks.evaluate",
    "estimate": "actors.tasks.estimate",
    # Re-extraction is `facewatch migrate-model`, whose logic lives in the cluster layer.
    "reextract": "cluster.task_reextract",
}
