"""The task supervisor: one detached actor that runs every task's parts as Ray tasks over the cluster.

Like the JobManager it keeps nothing that matters in memory: each pass reads the active tasks from
the DB (`storage.tasks`), plans a pending task (its parts are written with the move to `running`),
launches every open part that is not in flight (up to `max_parallel`), and, once no part of a task is
open, launches the merge (`finish`) that writes the result files and the final status. A supervisor
that restarts — or a fresh one after the API process or its node went away — finds `running` parts
with no live Ray task of its own and launches them again; a part's result commits once (keyed by the
part's id, `storage.tasks.commit_part`), so a part that ran twice is counted once.

Part workers are plain Ray tasks (`num_cpus` each, `max_retries`): when a node dies, Ray re-runs its
parts elsewhere; when Ray gives up, the supervisor requeues the part until it has been tried
`part_attempts` times, then marks it failed (`LOST`). An error raised by the kind's own code (bad
input, a photo that is not an image) fails only that part, with its code and message.

Cancelling or deleting a task (the API writes the row) makes the next pass cancel its Ray tasks.
Status changes are told to the task's `notify_url` (POST, JSON: id, kind, status, parts, error,
summary) in order, each retried `notify_attempts` times with back-off, then dropped; and to webhooks
subscribed to `task_status` (through the outbox, written with the change).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import ray
from ray.actor import ActorHandle

from actors.tasks import KINDS
from actors.tasks.context import TaskContext
from facewatch import tasks as rules
from facewatch.errors import FacewatchError
from facewatch.settings import Config
from storage import orm
from storage import tasks as store
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.tasks")

SUPERVISOR_NAME = "task-supervisor"
NAMESPACE = "facewatch"


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise FacewatchError(f"unknown task kind {kind!r}")
    return importlib.import_module(KINDS[kind])


def _error_fields(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, FacewatchError):
        return exc.code, exc.reason
    return "INTERNAL", f"{type(exc).__name__}: {exc}"[:2000]


def execute_part(ctx: TaskContext, part_id: int) -> str:
    """Runs one part and commits its result (or its error); 'done' | 'failed' | 'skipped'."""
    with UnitOfWork(ctx.db_url) as uow:
        part = uow.session.get(orm.TaskPart, part_id)
        task = uow.session.get(orm.Task, part.task_id) if part is not None else None
        if part is None or task is None or task.status != rules.RUNNING or part.status == rules.DONE:
            return "skipped"
        kind, params, spec, seq, task_id = task.kind, dict(task.params), dict(part.spec), part.seq, task.id
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    try:
        result = kind_module(kind).run_part(ctx, task_id, part_id, seq, params, spec)
    except Exception as exc:  # noqa: BLE001 - the part's failure is recorded with its code, the task goes on
        code, reason = _error_fields(exc)
        log.info("task %s part %s failed: %s %s", task_id, seq, code, reason)
        with UnitOfWork(ctx.db_url) as uow:
            store.fail_part(uow.session, part_id, code, reason)
            uow.commit()
        return "failed"
    with UnitOfWork(ctx.db_url) as uow:
        store.commit_part(uow.session, part_id, result, node)
        uow.commit()
    return "done"


def execute_finish(ctx: TaskContext, task_id: int) -> str:
    """Merges the parts' results into the task's result and its final status."""
    with UnitOfWork(ctx.db_url) as uow:
        task = uow.session.get(orm.Task, task_id)
        if task is None or task.status != rules.RUNNING:
            return "skipped"
        parts = store.all_parts(uow.session, task_id)
        progress = rules.progress(p.status for p in parts)
        kind, params = task.kind, dict(task.params)
        results = [dict(p.result) for p in parts if p.status == rules.DONE]
    final = rules.outcome(progress)
    if final is None:
        return "skipped"
    summary: dict[str, Any] = {}
    error = ""
    result_name = ""
    size = 0
    if final == rules.DONE:
        try:
            finished = kind_module(kind).finish(ctx, task_id, params, results)
            summary, result_name = finished.summary, finished.result_name
            summary = {**summary, "files": finished.files} if finished.files else summary
            if result_name:
                size = (ctx.task_dir(task_id) / result_name).stat().st_size
        except Exception as exc:  # noqa: BLE001 - the task fails with the merge's error
            final, error = rules.FAILED, ": ".join(_error_fields(exc))
    else:
        error = "every part failed"
    with UnitOfWork(ctx.db_url) as uow:
        task = uow.session.get(orm.Task, task_id)
        if task is None or task.status != rules.RUNNING:
            return "skipped"
        store.refresh_counts(uow.session, task)
        task.summary, task.result_name, task.result_size = summary, result_name, size
        store.set_status(uow.session, task, final, error=error)
        uow.commit()
    return final


@dataclass
class _Flight:
    task_id: int
    part_id: int | None  # None: the task's finish
    ref: ray.ObjectRef


@dataclass
class SupervisorTuning:
    poll_s: float = 0.5
    max_parallel: int = 4
    part_cpus: float = 1.0
    part_resources: dict[str, float] | None = None  # e.g. {"task_slots": 1}: parts only on nodes that have it
    part_retries: int = 3  # Ray's own retries of a part whose worker or node died
    part_attempts: int = 3  # launches of one part by the supervisor before it is marked LOST
    notify_attempts: int = 5
    notify_timeout_s: float = 5.0


@dataclass
class _Notify:
    failures: int = 0
    next_at: float = 0.0


class TaskSupervisorCore:
    def __init__(self, config: Config, embedder: str, tuning: SupervisorTuning | None = None) -> None:
        self.ctx = TaskContext(config, embedder)
        self.tuning = tuning or SupervisorTuning()
        self.flights: dict[bytes, _Flight] = {}
        self.notify_state: dict[int, _Notify] = {}
        self.passes = 0
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()
        self._lock = threading.Lock()
        self._part = ray.remote(execute_part).options(
            num_cpus=self.tuning.part_cpus, resources=self.tuning.part_resources or {},
            max_retries=self.tuning.part_retries, retry_exceptions=False)
        self._finish = ray.remote(execute_finish).options(
            num_cpus=0, max_retries=self.tuning.part_retries, retry_exceptions=False)

    # -- one pass -------------------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            self._collect()
            with UnitOfWork(self.ctx.db_url) as uow:
                active = {t.id: (t.status, t.kind, dict(t.params)) for t in store.active_tasks(uow.session)}
            self._cancel_gone(set(active))
            for task_id, (status, kind, params) in active.items():
                try:
                    if status == rules.PENDING:
                        self._plan(task_id, kind, params)
                    else:
                        self._advance(task_id)
                except Exception:  # noqa: BLE001 - one task's trouble (DB hiccup) must not stop the others
                    log.exception("task %s: pass failed", task_id)
            self.passes += 1
        self._notify()

    def _plan(self, task_id: int, kind: str, params: dict[str, Any]) -> None:
        try:
            specs = kind_module(kind).plan(self.ctx, task_id, params)
        except Exception as exc:  # noqa: BLE001 - a plan that cannot be made fails the task with the reason
            code, reason = _error_fields(exc)
            with UnitOfWork(self.ctx.db_url) as uow:
                task = uow.session.get(orm.Task, task_id)
                if task is not None and task.status == rules.PENDING:
                    store.set_status(uow.session, task, rules.FAILED, error=f"{code}: {reason}")
                    uow.commit()
            return
        with UnitOfWork(self.ctx.db_url) as uow:
            task = uow.session.get(orm.Task, task_id)
            if task is None or task.status != rules.PENDING:
                return
            store.add_parts(uow.session, task, specs)
            store.set_status(uow.session, task, rules.RUNNING)
            uow.commit()

    def _in_flight(self, task_id: int) -> tuple[set[int], bool]:
        parts = {f.part_id for f in self.flights.values() if f.task_id == task_id and f.part_id is not None}
        finishing = any(f.task_id == task_id and f.part_id is None for f in self.flights.values())
        return parts, finishing

    def _advance(self, task_id: int) -> None:
        flying, finishing = self._in_flight(task_id)
        if finishing:
            return
        with UnitOfWork(self.ctx.db_url) as uow:
            task = uow.session.get(orm.Task, task_id)
            if task is None or task.status != rules.RUNNING:
                return
            progress = store.refresh_counts(uow.session, task)
            for part in store.open_parts(uow.session, task_id):
                if part.id in flying:
                    continue
                if len(self.flights) >= self.tuning.max_parallel:
                    break
                if part.status == rules.RUNNING and not rules.should_retry_part(part.attempts,
                                                                                self.tuning.part_attempts):
                    store.fail_part(uow.session, part.id, "LOST", f"the part's worker was lost {part.attempts} times")
                    continue
                store.mark_part_running(uow.session, part.id)
                uow.commit()  # the attempt is counted before the part can run
                ref = self._part.remote(self.ctx, part.id)
                self.flights[ref.binary()] = _Flight(task_id, part.id, ref)
            uow.commit()
        if rules.outcome(progress) is not None and not flying and not self._in_flight(task_id)[0]:
            ref = self._finish.remote(self.ctx, task_id)
            self.flights[ref.binary()] = _Flight(task_id, None, ref)

    def _collect(self) -> None:
        if not self.flights:
            return
        refs = [f.ref for f in self.flights.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            flight = self.flights.pop(ref.binary())
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the worker (or its node) was lost beyond Ray's retries
                log.warning("task %s part %s: worker lost: %s", flight.task_id, flight.part_id, type(exc).__name__)
                if flight.part_id is not None:
                    with UnitOfWork(self.ctx.db_url) as uow:
                        store.requeue_part(uow.session, flight.part_id)
                        uow.commit()

    def _cancel_gone(self, active: set[int]) -> None:
        for key, flight in list(self.flights.items()):
            if flight.task_id not in active:
                ray.cancel(flight.ref, force=False)
                self.flights.pop(key, None)

    # -- notifications ------------------------------------------------------------------------------
    def _notify(self) -> None:
        with UnitOfWork(self.ctx.db_url) as uow:
            pending = [(t.id, t.notify_url, t.notify_pending[0]) for t in store.with_pending_notifications(uow.session)]
        now = time.monotonic()
        for task_id, url, view in pending:
            state = self.notify_state.setdefault(task_id, _Notify())
            if state.next_at > now:
                continue
            ok = self._post(url, view)
            if not ok:
                state.failures += 1
                state.next_at = now + min(30.0, 2.0 ** (state.failures - 1))
                if state.failures < self.tuning.notify_attempts:
                    continue
                log.warning("task %s: notification of %s dropped after %d attempts", task_id, view.get("status"),
                            state.failures)
            self.notify_state.pop(task_id, None)
            with UnitOfWork(self.ctx.db_url) as uow:
                store.drop_notification(uow.session, task_id, view)
                uow.commit()

    def _post(self, url: str, view: dict[str, Any]) -> bool:
        try:
            response = httpx.post(url, json=view, timeout=self.tuning.notify_timeout_s,
                                  headers={"User-Agent": "facewatch-tasks"})
            return response.is_success
        except httpx.HTTPError:
            return False

    # -- the loop -----------------------------------------------------------------------------------
    def run_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - e.g. the DB restarting: try again next pass
                log.exception("task supervisor pass failed")
            self.wake_event.wait(self.tuning.poll_s)
            self.wake_event.clear()

    def stats(self) -> dict[str, Any]:
        return {"passes": self.passes, "in_flight": len(self.flights)}


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4)
class TaskSupervisor:
    """The Ray actor around `TaskSupervisorCore`; its loop starts in the constructor (so a restarted
    supervisor resumes by itself)."""

    def __init__(self, config: Config, embedder: str, tuning: SupervisorTuning | None = None) -> None:
        self.core = TaskSupervisorCore(config, embedder, tuning)
        self.thread = threading.Thread(target=self.core.run_forever, name="task-supervisor", daemon=True)
        self.thread.start()

    def wake(self) -> bool:
        self.core.wake_event.set()
        return True

    def stats(self) -> dict[str, Any]:
        return self.core.stats()

    def stop(self) -> None:
        self.core.stop_event.set()


def start_task_supervisor(config: Config, embedder: str, tuning: SupervisorTuning | None = None,
                          namespace: str = NAMESPACE, ready_timeout_s: float = 120.0) -> ActorHandle:
    handle = TaskSupervisor.options(name=SUPERVISOR_NAME, namespace=namespace, get_if_exists=True,
                                    lifetime="detached").remote(config, embedder, tuning)
    ray.get(handle.stats.remote(), timeout=ready_timeout_s)
    return handle


def wake_supervisor(namespace: str = NAMESPACE) -> None:
    """Best effort: the supervisor looks at the tasks now instead of at its next pass."""
    if not ray.is_initialized():
        return
    try:
        ray.get_actor(SUPERVISOR_NAME, namespace=namespace).wake.remote()
    except Exception:  # noqa: BLE001 - not running: its next start picks the task up
        log.debug("no task supervisor to wake")


__all__ = ["SUPERVISOR_NAME", "SupervisorTuning", "TaskSupervisor", "TaskSupervisorCore", "execute_finish",
           "execute_part", "start_task_supervisor", "wake_supervisor"]
