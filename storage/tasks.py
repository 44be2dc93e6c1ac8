"""Tasks and their parts in the database (SQL only here; the rules are in `facewatch.tasks`).

Everything a task is lives in `tasks` / `task_parts`, so a supervisor that restarts (or runs on
another node) resumes from the rows alone. A part's result is committed by `commit_part` with
`WHERE status <> 'done'`: whichever run of a part commits first wins and a second run of the same
part (a retried Ray task after a node died, a part re-launched by a restarted supervisor) changes
nothing — no part is ever counted twice in the task's result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, func, select, update
from sqlalchemy.orm import Session

from facewatch import tasks as rules
from facewatch.errors import Conflict
from storage import orm
from storage.notices import TASK_STATUS, enqueue_notice
from storage.pagination import Page, SortKey, paginate


def now() -> datetime:
    return datetime.now(UTC)


def task_dict(task: orm.Task) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    return {"id": task.id, "kind": task.kind, "status": task.status, "params": task.params,
            "notify_url": task.notify_url or None, "created_by": task.created_by,
            "parts_total": task.parts_total, "parts_done": task.parts_done, "parts_failed": task.parts_failed,
            "summary": task.summary or {}, "error": task.error, "result_name": task.result_name or None,
            "result_size": task.result_size, "created_at": iso(task.created_at), "updated_at": iso(task.updated_at),
            "started_at": iso(task.started_at), "finished_at": iso(task.finished_at)}


def part_errors(session: Session, task_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = session.scalars(select(orm.TaskPart).where(orm.TaskPart.task_id == task_id,
                                                      orm.TaskPart.status == rules.FAILED)
                           .order_by(orm.TaskPart.seq).limit(limit))
    return [{"part_id": p.id, "seq": p.seq, "code": p.error_code or "INTERNAL", "error": p.error,
             "attempts": p.attempts, "at": p.updated_at.isoformat() if p.updated_at else None} for p in rows]


def create_task(session: Session, kind: str, params: dict[str, Any], notify_url: str, created_by: str) -> orm.Task:
    task = orm.Task(kind=kind, params=params, notify_url=notify_url, created_by=created_by, status=rules.PENDING)
    session.add(task)
    session.flush()
    _notice(session, task)
    return task


def set_status(session: Session, task: orm.Task, status: str, *, error: str = "") -> None:
    """Moves `task` to `status` (checked by the state machine) and tells `task_status` webhooks."""
    try:
        rules.check_move(task.status, status)
    except rules.TransitionError as exc:
        raise Conflict(str(exc), param="status") from None
    task.status = status
    if status == rules.RUNNING and task.started_at is None:
        task.started_at = now()
    if status in rules.FINAL:
        task.finished_at = now()
    if error:
        task.error = error[:4000]
    session.flush()
    _notice(session, task)


def _notice(session: Session, task: orm.Task) -> None:
    view = rules.task_view(task_dict(task))
    enqueue_notice(session, TASK_STATUS, view)
    if task.notify_url:
        task.notify_pending = [*(task.notify_pending or []), view]  # a new list: JSON columns track assignment


def add_parts(session: Session, task: orm.Task, specs: list[dict[str, Any]]) -> None:
    """The task's parts (once: planning a task that already has parts adds none)."""
    if session.scalar(select(func.count()).where(orm.TaskPart.task_id == task.id)):
        return
    for seq, spec in enumerate(specs):
        session.add(orm.TaskPart(task_id=task.id, seq=seq, spec=spec))
    task.parts_total = len(specs)
    session.flush()


def open_parts(session: Session, task_id: int) -> list[orm.TaskPart]:
    stmt = select(orm.TaskPart).where(orm.TaskPart.task_id == task_id,
                                      orm.TaskPart.status.in_(rules.ACTIVE)).order_by(orm.TaskPart.seq)
    return list(session.scalars(stmt))


def all_parts(session: Session, task_id: int) -> list[orm.TaskPart]:
    return list(session.scalars(select(orm.TaskPart).where(orm.TaskPart.task_id == task_id)
                                .order_by(orm.TaskPart.seq)))


def mark_part_running(session: Session, part_id: int) -> int:
    """Counts an attempt; returns the attempt number (0 when the part is no longer open)."""
    part = session.get(orm.TaskPart, part_id)
    if part is None or part.status not in rules.ACTIVE:
        return 0
    part.status, part.attempts = rules.RUNNING, part.attempts + 1
    session.flush()
    return part.attempts


def commit_part(session: Session, part_id: int, result: dict[str, Any], node_id: str = "") -> bool:
    """Records a part's result once; False when another run of it already committed (nothing changes)."""
    changed = session.execute(
        update(orm.TaskPart).where(orm.TaskPart.id == part_id, orm.TaskPart.status != rules.DONE)
        .values(status=rules.DONE, result=result, node_id=node_id[:100], error="", error_code="",
                updated_at=now()))
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def fail_part(session: Session, part_id: int, code: str, error: str) -> bool:
    changed = session.execute(
        update(orm.TaskPart).where(orm.TaskPart.id == part_id, orm.TaskPart.status.in_(rules.ACTIVE))
        .values(status=rules.FAILED, error_code=code[:40], error=error[:4000], updated_at=now()))
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def requeue_part(session: Session, part_id: int) -> None:
    session.execute(update(orm.TaskPart).where(orm.TaskPart.id == part_id, orm.TaskPart.status == rules.RUNNING)
                    .values(status=rules.PENDING, updated_at=now()))


def refresh_counts(session: Session, task: orm.Task) -> rules.Progress:
    statuses = session.scalars(select(orm.TaskPart.status).where(orm.TaskPart.task_id == task.id))
    p = rules.progress(statuses)
    task.parts_total, task.parts_done, task.parts_failed = p.total, p.done, p.failed
    return p


def active_tasks(session: Session) -> list[orm.Task]:
    return list(session.scalars(select(orm.Task).where(orm.Task.status.in_(rules.ACTIVE)).order_by(orm.Task.id)))


def other_active_of_kind(session: Session, kind: str, task_id: int) -> list[int]:
    """Ids of the pending or running tasks of `kind` other than `task_id`."""
    stmt = select(orm.Task.id).where(orm.Task.kind == kind, orm.Task.status.in_(rules.ACTIVE),
                                     orm.Task.id != task_id).order_by(orm.Task.id)
    return list(session.scalars(stmt))


def with_pending_notifications(session: Session) -> list[orm.Task]:
    """Tasks with a notification URL and status changes not told yet."""
    stmt = select(orm.Task).where(orm.Task.notify_url != "").order_by(orm.Task.id.desc()).limit(500)
    return [t for t in session.scalars(stmt) if t.notify_pending]


def drop_notification(session: Session, task_id: int, view: dict[str, Any]) -> None:
    """The first pending notification was told (or given up on): remove it."""
    task = session.get(orm.Task, task_id)
    if task is not None and task.notify_pending and task.notify_pending[0] == view:
        task.notify_pending = list(task.notify_pending[1:])


def archive_unused(session: Session, key: str) -> bool:
    """No task names this uploaded archive (content addressed: two tasks may share one file)."""
    return session.scalar(select(orm.Task.id).where(cast(orm.Task.params, String).contains(key)).limit(1)) is None


def page_of_tasks(session: Session, created_by: str | None, status: str | None, kind: str | None, limit: int,
                  cursor: str | None) -> Page[orm.Task]:
    """One page of tasks, newest first: those of `created_by` (None: everyone's) with the status and kind."""
    stmt = select(orm.Task)
    if created_by is not None:
        stmt = stmt.where(orm.Task.created_by == created_by)
    if status is not None:
        stmt = stmt.where(orm.Task.status == status)
    if kind is not None:
        stmt = stmt.where(orm.Task.kind == kind)
    return paginate(session, stmt, [SortKey(orm.Task.id, descending=True)], limit, cursor)
