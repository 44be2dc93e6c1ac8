"""The JobManager: one detached actor on the head node that runs every camera and video job.

It owns the `jobs` table (SPEC §1.2, §2): one row per camera (desired `running` while the camera and
its group are active, `stopped` otherwise) and one per submitted video (`single_pass`). For every row
that should run it places one job actor, holds a lease on it (TTL 10 s, renewed by the job's
heartbeat every 4 s) and places it again when the lease lapses or the actor dies, with exponential
back-off (1 s → 60 s, factor 2) for jobs that keep failing. Everything it knows is in the DB, so a
manager that is restarted reloads the table and re-adopts the job actors that are still alive.

Job states: `pending` (wants to run: waiting for back-off, for Ray to find a node, or for its actor
to start; `last_error` says why), `running` (its actor is up and holds the lease), `finished` (a
single-pass job completed), `failed` (a single-pass job failed `max_video_failures` times in a row),
`stopped` (desired state `stopped`: its actor was killed).

Placement (SPEC §1.2). Nodes advertise the custom resource `camera_slots` (capacity) and optionally
the node label `camera-group=<name>` (`ray start --labels camera-group=lobby`). Every job actor asks
for `{"camera_slots": 1}`, so no node runs more jobs than it has slots. The rule uses Ray's own
label scheduling (`label_selector` + `fallback_strategy` actor options, both in Ray 2.60):
- a camera whose group has labels `{"camera-group": "lobby"}` gets `label_selector={"camera-group":
  "lobby"}` and falls back to nodes without any camera-group label;
- a camera of an unlabelled group runs only on nodes without a camera-group label. Decision: it never
  borrows a labelled node, even when nothing else is free — a labelled node is reserved for its
  group (usually because only it can reach those cameras), so such a job stays pending instead.
Ray 2.60 selectors have no "label absent" operator; "!in(<every camera-group value in use>)" is
used instead (a node without the key satisfies `!in`). The values are those on live nodes plus those
of the DB's camera groups, taken when the job is placed. Ray itself queues a job actor that no node
can take yet and starts it once a slot frees up; until then the job is `pending` with the reason in
`last_error`. A running job is never moved; `restart_camera` re-places it.

Job actor contract (`job_factory`: `actors.camera_job:CameraJob` in production, the test probe
`actors.probe_job:ProbeJob` in tests):
- a Ray actor class importable as "module:Class" (a plain class is wrapped with `ray.remote`),
  constructed as `Class(job_spec: dict, manager_name: str, namespace: str)`. The manager sets the
  options: name `job-{job_id}` in `namespace`, detached lifetime, `max_restarts=0` (the manager
  restarts jobs, Ray must not), `resources={"camera_slots": 1}`, `num_cpus=job_num_cpus` and the
  placement above.
- job_spec keys: job_id, attempt, holder (this attempt's lease holder id), kind ("camera" | "video"),
  url (source URL, "" for an uploaded video), media_key (the uploaded video file in the media store,
  else ""), camera_id, camera_group_id, video_id, stream_settings (dict), single_pass (bool),
  heartbeat_s, lease_ttl_s, plus every key of the manager's `spec_defaults`.
- `run()` is called once by the manager, fire-and-forget, and returns when the job ends. A second call
  while it runs must return at once without starting a second pipeline.
- every `heartbeat_s` (first one as soon as run() starts) the job calls
  `manager.heartbeat(job_id, holder, stats, status, error) -> bool`. `stats` (a small JSON dict)
  includes "node_id" (`ray.get_runtime_context().get_node_id()`) and, for videos, "frames_done" and
  "frames_total"; `status` is the job's own view, "ok" | "degraded" (posting errors, dropped frames)
  | "failing" (cannot open the stream); `error` the last error text or "". An answer of False means
  the lease is not this holder's any more: stop at once and return from run().
- at its end the job calls `manager.finished(job_id, holder, summary)` (the source ended; summary may
  hold frames_done, frames_total, duration_s, events_count, matched_count, unmatched_count) or
  `manager.failed(job_id, holder, error)`, waits for the answer (ray.get) and returns from run().
  The manager then kills the actor. A camera job (not single-pass) that finishes is re-placed like a
  failed one (a live stream should not end).
- the job finds the manager with `ray.get_actor(manager_name, namespace=namespace)` and looks it up
  again when a call fails in any way (manager restarting, DB briefly down: treat it as no answer); it
  keeps working meanwhile. A restarted
  manager gives every job actor it re-adopts a fresh lease.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle
from ray.exceptions import RayError, RayTaskError
from sqlalchemy import select

from facewatch import metrics
from facewatch.errors import Conflict, NotFound
from storage import orm
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.job_manager")

NAMESPACE = "facewatch"
MANAGER_NAME = "job-manager"
DEFAULT_JOB_FACTORY = "actors.camera_job:CameraJob"
GROUP_LABEL = "camera-group"
SLOT_RESOURCE = "camera_slots"
HEAD_RESOURCE = "node:__internal_head__"
JOB_PREFIX = "job-"
DONE_STATES = ("finished", "failed")
ERROR_CHARS = 500
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


# -- pure rules (unit-testable without Ray) ------------------------------------------------------------


def job_actor_name(job_id: int) -> str:
    return f"{JOB_PREFIX}{job_id}"


def backoff_delay(failures: int, initial_s: float, factor: float, max_s: float) -> float:
    """Seconds to wait before the next attempt after `failures` failures in a row (0 → none)."""
    if failures <= 0:
        return 0.0
    return min(max_s, initial_s * factor ** (failures - 1))


def camera_status(job_status: str, running_for_s: float, starting_window_s: float) -> str:
    """The Camera row's status from a heartbeat (SPEC §2); `disabled` is set when the job stops."""
    # The job's own bad news outranks "starting": an operator should see a broken stream at once.
    if job_status in ("failing", "degraded"):
        return job_status
    return "starting" if running_for_s < starting_window_s else "ok"


def group_value(labels: Mapping[str, Any] | None) -> str | None:
    """The camera-group value of a group's (or node's) labels; None when unlabelled."""
    value = (labels or {}).get(GROUP_LABEL)
    return str(value) if value not in (None, "") else None


def node_may_run(node_group: str | None, job_group: str | None) -> bool:
    """The placement rule: the job's own group's nodes, or nodes without a camera-group label."""
    return node_group is None or (job_group is not None and node_group == job_group)


def placement_options(job_group: str | None, groups_in_use: Iterable[str]) -> dict[str, Any]:
    """Ray `label_selector` (+ `fallback_strategy`) options that implement `node_may_run`."""
    labelled = sorted({*groups_in_use, *([job_group] if job_group else [])})
    # No spaces after the commas: Ray 2.60 keeps them as part of the values, so "!in(a, b)" would
    # not exclude b.
    unlabelled = {GROUP_LABEL: f"!in({','.join(labelled)})"} if labelled else {}
    if job_group:
        return {"label_selector": {GROUP_LABEL: job_group}, "fallback_strategy": [{"label_selector": unlabelled}]}
    return {"label_selector": unlabelled} if unlabelled else {}


def pending_reason(job_group: str | None, nodes: Iterable[Mapping[str, Any]]) -> str:
    """Why Ray has not started a job actor yet, in words, from `ray.nodes()`."""
    where = f"{GROUP_LABEL}={job_group} or unlabelled" if job_group else f"without a {GROUP_LABEL} label"
    usable = [
        n for n in nodes
        if n.get("Alive") and n.get("Resources", {}).get(SLOT_RESOURCE, 0) >= 1
        and node_may_run(group_value(n.get("Labels")), job_group)
    ]
    if not usable:
        return f"no live node may run it: needs a node ({where}) with {SLOT_RESOURCE}"
    slots = int(sum(n["Resources"][SLOT_RESOURCE] for n in usable))
    return f"waiting for a free camera slot: all {slots} slot(s) on the {len(usable)} node(s) {where} are taken"


def short_error(exc: BaseException) -> str:
    """One readable line for last_error / status_error (Ray errors carry whole tracebacks)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    lines = [line.strip() for line in ANSI_CODES.sub("", str(cause)).splitlines() if line.strip()]
    if not lines:
        return type(cause).__name__
    text = lines[0]
    if len(lines) > 1 and EXCEPTION_LINE.match(lines[-1]):
        # "The actor died because of an error raised in its creation task, <where>\n<traceback>\nX: why"
        text = f"{text.split(',')[0]}: {lines[-1]}"
    return text[:ERROR_CHARS]


def load_actor_class(path: str) -> ActorClass:
    """The Ray actor class named "module:Class" (imported lazily: the job module may be heavy)."""
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls if isinstance(cls, ActorClass) else ray.remote(cls)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _seconds_since(iso: str | None, now: datetime) -> float:
    return (now - datetime.fromisoformat(iso)).total_seconds() if iso else 0.0


# -- in-memory state -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    lease_ttl_s: float = 10.0
    heartbeat_s: float = 4.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_factor: float = 2.0
    healthy_after_s: float = 60.0  # a job that ran this long is healthy again: its back-off resets
    supervisor_period_s: float = 1.0
    starting_window_s: float = 30.0
    placement_wait_s: float = 3.0  # after this, a job actor Ray has not started gets a pending reason


@dataclass
class _Live:
    """The one actor of a job this manager knows of (the DB has the lease; this has the handle)."""

    holder: str
    handle: ActorHandle
    camera_id: int | None = None
    # Both refs are None for an adopted actor: its run() was called by an earlier manager.
    ready_ref: ray.ObjectRef | None = None
    run_ref: ray.ObjectRef | None = None
    placed_at: datetime = field(default_factory=utcnow)
    waiting_reason: str = ""
    retiring: bool = False  # reported finished/failed: killed on the next tick, once its call returned


@dataclass
class _Rows:
    """The rows one reconcile pass works on, loaded once."""

    uow: UnitOfWork
    now: datetime
    jobs: list[orm.Job]
    cameras: dict[int, orm.Camera]
    groups: dict[int, orm.CameraGroup]
    videos: dict[int, orm.Video]
    nodes: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, uow: UnitOfWork) -> _Rows:
        s = uow.session
        # Finished and failed single-pass jobs need no supervision; skipping them keeps a tick cheap.
        jobs = list(s.scalars(select(orm.Job).where(orm.Job.state.not_in(DONE_STATES)).order_by(orm.Job.id)))
        video_ids = {j.video_id for j in jobs if j.video_id is not None}
        videos = s.scalars(select(orm.Video).where((orm.Video.id.in_(video_ids)) | (orm.Video.status == "queued")))
        return cls(
            uow=uow,
            now=utcnow(),
            jobs=jobs,
            cameras={c.id: c for c in s.scalars(select(orm.Camera))},
            groups={g.id: g for g in s.scalars(select(orm.CameraGroup))},
            videos={v.id: v for v in videos},
        )

    def source(self, job: orm.Job) -> orm.Camera | orm.Video | None:
        if job.kind == "camera":
            return self.cameras.get(job.camera_id) if job.camera_id is not None else None
        return self.videos.get(job.video_id) if job.video_id is not None else None

    def group_of(self, job: orm.Job) -> str | None:
        source = self.source(job)
        group = self.groups.get(source.camera_group_id) if source is not None else None
        return group_value(group.labels) if group is not None else None

    def live_nodes(self) -> list[dict[str, Any]]:
        if self.nodes is None:
            self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        return self.nodes

    def groups_in_use(self) -> set[str]:
        values = {group_value(n.get("Labels")) for n in self.live_nodes()}
        values |= {group_value(g.labels) for g in self.groups.values()}
        return {v for v in values if v}


def job_dict(job: orm.Job) -> dict[str, Any]:
    """A job row as plain data for the API."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": job.id, "kind": job.kind, "camera_id": job.camera_id, "video_id": job.video_id,
        "single_pass": job.single_pass, "desired_state": job.desired_state, "state": job.state,
        "actor_name": job_actor_name(job.id), "lease_holder": job.lease_holder, "lease_node": job.lease_node,
        "lease_expires_at": iso(job.lease_expires_at), "attempts": job.attempts,
        "consecutive_failures": job.consecutive_failures, "backoff_until": iso(job.backoff_until),
        "last_error": job.last_error, "stats": dict(job.stats or {}),
        "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
    }


# -- the actor -----------------------------------------------------------------------------------------


# Threaded, not async: the supervisor is a plain thread started in __init__, so it also runs after Ray
# restarts the actor; one lock serialises it with the API and heartbeat calls.
@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=32)
class JobManager:
    def __init__(
        self,
        db_url: str,
        job_factory: str = DEFAULT_JOB_FACTORY,
        *,
        name: str = MANAGER_NAME,
        namespace: str = NAMESPACE,
        lease_ttl_s: float = 10.0,
        heartbeat_s: float = 4.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        backoff_factor: float = 2.0,
        healthy_after_s: float = 60.0,
        supervisor_period_s: float = 1.0,
        starting_window_s: float = 30.0,
        placement_wait_s: float = 3.0,
        max_video_failures: int = 5,
        job_num_cpus: float = 0.0,
        spec_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.db_url = db_url
        self.job_factory = job_factory
        self.name, self.namespace = name, namespace
        self.timing = Timing(
            lease_ttl_s=lease_ttl_s, heartbeat_s=heartbeat_s, backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s, backoff_factor=backoff_factor, healthy_after_s=healthy_after_s,
            supervisor_period_s=supervisor_period_s, starting_window_s=starting_window_s,
            placement_wait_s=placement_wait_s,
        )
        self.max_video_failures = max_video_failures
        # camera_slots is the capacity; reserving CPUs too would count the same limit twice.
        self.job_num_cpus = job_num_cpus
        self.spec_defaults = dict(spec_defaults or {})
        self._lock = threading.RLock()
        self._live: dict[int, _Live] = {}
        self._camera_metrics: dict[str, metrics.CameraMetrics] = {}  # per lease holder (one job attempt)
        self._job_class: ActorClass | None = None
        self._booted = False
        threading.Thread(target=self._supervise_forever, name="job-supervisor", daemon=True).start()

    # -- API ---------------------------------------------------------------------------------------

    def ready(self) -> bool:
        return True

    def sync_jobs(self) -> list[dict[str, Any]]:
        """Brings the job table in line with cameras and videos and acts on it now; returns all jobs."""
        with self._lock:
            self._reconcile()
            return self._list()

    def ensure_camera(self, camera_id: int) -> dict[str, Any] | None:
        """Call after a camera was created, changed, enabled, disabled or deleted: acts at once.

        Returns the camera's job, or None when the camera no longer exists (its job actor is killed)."""
        with self._lock:
            self._reconcile()
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_camera(camera_id)
            if job is None:
                self._kill_camera_actor(camera_id)
                return None
            return job_dict(job)

    def stop_camera(self, camera_id: int) -> dict[str, Any] | None:
        """Disables the camera (active=false, so it stays stopped) and kills its job actor at once."""
        with self._lock:
            with UnitOfWork(self.db_url) as uow:
                camera = uow.cameras.find(camera_id)
                if camera is not None:
                    camera.active = False
                    uow.commit()
            self._kill_camera_actor(camera_id)
            return self.ensure_camera(camera_id)

    def restart_camera(self, camera_id: int) -> dict[str, Any]:
        """Kills the camera's job actor and places a new one now (new attempt), clearing any back-off."""
        with self._lock:
            self._reconcile()
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_camera(camera_id)
                if job is None:
                    raise NotFound(f"camera {camera_id} does not exist", param="camera_id")
                if job.desired_state != "running":
                    raise Conflict(f"camera {camera_id} is disabled; enable it to start it", param="camera_id")
                self._kill_job_actor(job.id)
                self._reset(job, "pending")
                uow.commit()
            self._reconcile()
            return self._job_of(camera_id=camera_id)

    def submit_video(self, video_id: int) -> dict[str, Any]:
        """Starts processing a video (again, from the start, if it had finished, failed or was cancelled)."""
        with self._lock:
            with UnitOfWork(self.db_url) as uow:
                video = uow.videos.find(video_id)
                if video is None:
                    raise NotFound(f"video {video_id} does not exist", param="video_id")
                job = uow.jobs.for_video(video_id)
                fresh_start = job is None or job.desired_state != "running" or job.state in DONE_STATES
                if job is None:
                    job = uow.jobs.add(orm.Job(kind="video", video_id=video_id, single_pass=True))
                if fresh_start:
                    self._kill_job_actor(job.id)
                    job.desired_state = "running"
                    self._reset(job, "pending")
                    video.status, video.error, video.frames_done = "queued", "", 0
                uow.commit()
            self._reconcile()
            return self._job_of(video_id=video_id)

    def cancel_video(self, video_id: int) -> dict[str, Any]:
        """Stops a video's job at once; the video is marked cancelled unless it had already finished."""
        with self._lock:
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_video(video_id)
                if job is None:
                    raise NotFound(f"video {video_id} has no job", param="video_id")
                self._kill_job_actor(job.id)
                job.desired_state = "stopped"
                if job.state not in DONE_STATES:
                    self._reset(job, "stopped")
                    video = uow.videos.find(video_id)
                    if video is not None and video.status not in ("done", "failed"):
                        video.status = "cancelled"
                uow.commit()
                return job_dict(job)

    def list_jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._list()

    def get_job(self, job_id: int) -> dict[str, Any]:
        with UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist", param="job_id")
            return job_dict(job)

    # -- calls from job actors ----------------------------------------------------------------------

    def heartbeat(self, job_id: int, holder: str, stats: dict[str, Any], status: str, error: str) -> bool:
        """Renews the holder's lease and publishes its stats; False tells the job to stop."""
        with self._lock, UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if not self._holds(job, holder):
                self._stop_stale(job_id)
                return False
            assert job is not None  # _holds checked it
            now = utcnow()
            live = self._live.get(job_id) or self._adopt_caller(job)
            if live is not None:
                self._mark_up(job, live)
            self._renew(job, now, stats, status, error)
            self._publish_heartbeat(uow, job, now, stats, status, error)
            uow.commit()
            self._count_camera_metrics(job, holder, stats)
            return True

    def finished(self, job_id: int, holder: str, summary: dict[str, Any]) -> bool:
        """The job's source ended. Single-pass jobs are done for good; camera jobs are placed again."""
        with self._lock, UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if not self._holds(job, holder):
                return False
            assert job is not None
            self._retire(job_id)
            if not job.single_pass:
                self._fail(uow, job, utcnow(), "the stream ended")
            else:
                self._reset(job, "finished")
                self._publish_finished(uow, job, summary)
            uow.commit()
            self._count_camera_metrics(job, holder, summary)
            self._camera_metrics.pop(holder, None)
            return True

    def failed(self, job_id: int, holder: str, error: str) -> bool:
        """The job gave up; it is placed again after its back-off."""
        with self._lock, UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if not self._holds(job, holder):
                return False
            assert job is not None
            self._retire(job_id)
            self._fail(uow, job, utcnow(), error[:ERROR_CHARS] or "the job failed")
            uow.commit()
            return True

    # -- the supervisor -----------------------------------------------------------------------------

    def _supervise_forever(self) -> None:
        while True:
            time.sleep(self.timing.supervisor_period_s)
            try:
                with self._lock:
                    self._reconcile()
            except Exception:  # a DB hiccup must not end supervision; the next tick tries again
                log.exception("job supervisor pass failed")

    def _reconcile(self) -> None:
        """One pass: job rows follow cameras/videos; every job gets placed, checked or stopped."""
        self._kill_retiring()
        with UnitOfWork(self.db_url) as uow:
            rows = _Rows.load(uow)
            self._sync_rows(rows)
            if not self._booted:
                self._kill_orphans(rows)
                self._booted = True
            for job in rows.jobs:
                self._supervise(rows, job)
            uow.commit()
            wanted = {j.id for j in rows.jobs}
        for job_id in [j for j in self._live if j not in wanted]:
            self._kill_job_actor(job_id)  # its row is gone (camera deleted) or finished

    def _sync_rows(self, rows: _Rows) -> None:
        """One job row per camera (desired state from camera + group) and per queued video."""
        by_camera = {j.camera_id: j for j in rows.jobs if j.camera_id is not None}
        for camera in rows.cameras.values():
            group = rows.groups.get(camera.camera_group_id)
            desired = "running" if camera.active and (group is None or group.active) else "stopped"
            job = by_camera.get(camera.id)
            if job is None:
                job = self._new_job(rows, kind="camera", camera_id=camera.id, single_pass=False, desired_state=desired)
            elif job.desired_state != desired:
                job.desired_state = desired
                self._reset(job, "pending" if desired == "running" else "stopped")
            if desired == "stopped" and camera.status != "disabled":
                camera.status, camera.status_error = "disabled", ""
        by_video = {j.video_id for j in rows.jobs if j.video_id is not None}
        for video in rows.videos.values():
            if video.status == "queued" and video.id not in by_video:
                self._new_job(rows, kind="video", video_id=video.id, single_pass=True, desired_state="running")
        rows.uow.flush()

    def _new_job(self, rows: _Rows, **fields: Any) -> orm.Job:
        job = rows.uow.jobs.add(orm.Job(attempts=0, consecutive_failures=0, stats={}, last_error="", **fields))
        self._reset(job, "pending" if job.desired_state == "running" else "stopped")
        rows.jobs.append(job)
        return job

    def _supervise(self, rows: _Rows, job: orm.Job) -> None:
        if job.desired_state != "running":
            # Only on the change: a stopped job's actor was killed then (or by the start-up orphan scan).
            if job.state != "stopped" or job.id in self._live:
                self._kill_job_actor(job.id)
                self._reset(job, "stopped")
            return
        live = self._live.get(job.id)
        if live is None and job.lease_holder:
            live = self._adopt(rows, job)
        if live is not None and live.retiring:
            return  # killed at the start of the next pass, then placed again after its back-off
        if live is None:
            if job.state == "pending" and not (job.backoff_until and job.backoff_until > rows.now):
                self._place(rows, job)
            return
        self._check(rows, job, live)

    def _check(self, rows: _Rows, job: orm.Job, live: _Live) -> None:
        """A placed job: started yet? run() ended? lease lapsed?"""
        if live.ready_ref is not None:
            done, error = _outcome(live.ready_ref)
            if error is not None:
                self._fail(rows.uow, job, rows.now, f"the job actor could not start: {error}")
                return
            if not done:
                self._note_waiting(rows, job, live)
                return
            self._mark_up(job, live)
            job.lease_expires_at = rows.now + timedelta(seconds=self.timing.lease_ttl_s)
        if live.run_ref is not None:
            done, error = _outcome(live.run_ref)
            if done:  # run() ended without finished()/failed() (those retire the actor first)
                self._fail(rows.uow, job, rows.now, error or "run() returned without reporting an outcome")
                return
        if job.lease_expires_at is not None and job.lease_expires_at < rows.now:
            error = f"lease lapsed: no heartbeat for {self.timing.lease_ttl_s:g} s (job hung, or its actor/node died)"
            self._fail(rows.uow, job, rows.now, error)

    def _note_waiting(self, rows: _Rows, job: orm.Job, live: _Live) -> None:
        """Ray has not started the actor: say why (written once, not every pass)."""
        waited = (rows.now - live.placed_at).total_seconds()
        if live.waiting_reason or waited < self.timing.placement_wait_s:
            return
        live.waiting_reason = pending_reason(rows.group_of(job), rows.live_nodes())
        job.last_error = live.waiting_reason
        source = rows.source(job)
        if isinstance(source, orm.Camera):
            source.status, source.status_error = "starting", live.waiting_reason

    def _mark_up(self, job: orm.Job, live: _Live) -> None:
        """The actor runs on a node: the lease clock starts (its first heartbeat renews it)."""
        live.ready_ref = None
        if job.state != "running":
            job.state = "running"
            if live.waiting_reason and job.last_error == live.waiting_reason:
                job.last_error = ""

    # -- placing, failing, stopping ----------------------------------------------------------------

    def _place(self, rows: _Rows, job: orm.Job) -> None:
        source = rows.source(job)
        if source is None:
            return  # the camera/video row vanished in this pass; the job row goes with it
        holder = f"{job_actor_name(job.id)}:{job.attempts + 1}:{uuid.uuid4().hex[:8]}"
        spec = self._job_spec(job, source, holder)
        try:
            options = self._actor_options(job.id, rows.group_of(job), rows.groups_in_use())
            handle = self._job_actor_class().options(**options).remote(spec, self.name, self.namespace)
        except ValueError as exc:
            if _name_taken(job.id, self.namespace):
                job.last_error = "the previous actor of this job is still shutting down"
                return  # tried again on the next pass
            self._fail(rows.uow, job, rows.now, f"cannot place the job: {short_error(exc)}")
            return
        except Exception as exc:  # e.g. the job factory does not import: retry with back-off
            self._fail(rows.uow, job, rows.now, f"cannot place the job: {short_error(exc)}")
            return
        job.attempts += 1
        if job.attempts > 1:
            metrics.job_restarted(job.kind)
        job.lease_holder, job.lease_node, job.lease_expires_at = holder, None, None
        job.state = "pending"  # last_error keeps the previous failure: it is the *last* error
        job.stats = {"attempt": job.attempts, "placed_at": rows.now.isoformat()}
        # __ray_ready__ is queued before run(), so it answers as soon as the actor is constructed.
        self._live[job.id] = _Live(
            holder=holder,
            handle=handle,
            camera_id=job.camera_id,
            ready_ref=handle.__ray_ready__.remote(),
            run_ref=handle.run.remote(),
            placed_at=rows.now,
        )
        if isinstance(source, orm.Camera):
            source.status, source.status_error = "starting", ""
            source.stats = {**(source.stats or {}), "job_starts": job.attempts, "node_id": None}

    def _job_spec(self, job: orm.Job, source: orm.Camera | orm.Video, holder: str) -> dict[str, Any]:
        is_video = isinstance(source, orm.Video)
        return {
            **self.spec_defaults,
            "job_id": job.id,
            "attempt": job.attempts + 1,
            "holder": holder,
            "kind": job.kind,
            "url": source.source_url if is_video else source.url,
            "media_key": source.media_key if is_video else "",
            "camera_id": source.camera_id if is_video else source.id,
            "camera_group_id": source.camera_group_id,
            "video_id": source.id if is_video else None,
            "stream_settings": dict(source.stream_settings or {}),
            "single_pass": job.single_pass,
            "heartbeat_s": self.timing.heartbeat_s,
            "lease_ttl_s": self.timing.lease_ttl_s,
        }

    def _actor_options(self, job_id: int, job_group: str | None, groups_in_use: set[str]) -> dict[str, Any]:
        return {
            "name": job_actor_name(job_id),
            "namespace": self.namespace,
            "lifetime": "detached",  # survives a manager restart, which re-adopts it by name
            "max_restarts": 0,  # the manager re-places jobs (new holder); a Ray restart would skip run()
            "num_cpus": self.job_num_cpus,
            # A camera job gets a GPU share only when configured (FACEWATCH_CAMERA_GPU_FRACTION).
            "num_gpus": float(self.spec_defaults.get("gpu_fraction") or 0.0),
            "resources": {SLOT_RESOURCE: 1},
            **placement_options(job_group, groups_in_use),
        }

    def _job_actor_class(self) -> ActorClass:
        if self._job_class is None:
            self._job_class = load_actor_class(self.job_factory)
        return self._job_class

    def _fail(self, uow: UnitOfWork, job: orm.Job, now: datetime, error: str) -> None:
        """One more failure in a row: back off, then place again (single-pass jobs give up eventually)."""
        live = self._live.get(job.id)
        if live is None or not live.retiring:
            self._kill_job_actor(job.id)
        job.consecutive_failures += 1
        metrics.job_failed(job.kind)
        delay = backoff_delay(
            job.consecutive_failures, self.timing.backoff_initial_s, self.timing.backoff_factor,
            self.timing.backoff_max_s,
        )
        job.backoff_until = now + timedelta(seconds=delay)
        job.lease_holder, job.lease_node, job.lease_expires_at = None, None, None
        job.state, job.last_error = "pending", error
        gave_up = job.single_pass and job.consecutive_failures >= self.max_video_failures
        if gave_up:
            job.state = "failed"
        log.warning("job %s failed (%d in a row, retry in %.1f s): %s", job.id, job.consecutive_failures, delay, error)
        if job.camera_id is not None and (camera := uow.cameras.find(job.camera_id)) is not None:
            camera.status, camera.status_error = "failing", error
        if job.video_id is not None and (video := uow.videos.find(job.video_id)) is not None:
            video.error = error
            video.status = "failed" if gave_up else "queued"

    @staticmethod
    def _reset(job: orm.Job, state: str) -> None:
        """A fresh start (or stop): no lease, no back-off."""
        job.state = state
        job.lease_holder, job.lease_node, job.lease_expires_at = None, None, None
        job.consecutive_failures, job.backoff_until = 0, None
        if state != "finished":
            job.last_error = ""

    def _count_camera_metrics(self, job: orm.Job, holder: str, counters: Mapping[str, Any]) -> None:
        """Adds what a job attempt's counters grew by to the camera metrics. Recorded here, in the long-lived
        manager, because a job actor is killed as soon as it finishes, before its own metrics are exported."""
        reporter = self._camera_metrics.get(holder)
        if reporter is None:
            reporter = self._camera_metrics[holder] = metrics.CameraMetrics(job.camera_id)
        reporter.report(counters)

    def _retire(self, job_id: int) -> None:
        live = self._live.get(job_id)
        if live is not None:
            live.retiring = True

    def _kill_retiring(self) -> None:
        for job_id in [j for j, live in self._live.items() if live.retiring]:
            self._kill_job_actor(job_id)

    def _kill_job_actor(self, job_id: int) -> None:
        """Kills the job's actor now, whether this manager placed it or an earlier one did."""
        live = self._live.pop(job_id, None)
        if live is not None:
            self._camera_metrics.pop(live.holder, None)
        handle = live.handle if live is not None else _find_actor(job_actor_name(job_id), self.namespace)
        if handle is not None:
            _kill(handle)

    def _kill_camera_actor(self, camera_id: int) -> None:
        for job_id in [j for j, live in self._live.items() if live.camera_id == camera_id]:
            self._kill_job_actor(job_id)

    def _kill_orphans(self, rows: _Rows) -> None:
        """At start: kill job actors no row wants (e.g. a camera disabled while the manager was down)."""
        wanted = {j.id for j in rows.jobs if j.desired_state == "running" and j.lease_holder}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            name = entry.get("name", "")
            if entry.get("namespace") != self.namespace or not name.startswith(JOB_PREFIX):
                continue
            suffix = name[len(JOB_PREFIX):]
            if suffix.isdigit() and int(suffix) not in wanted:
                log.info("killing orphan job actor %s", name)
                self._kill_job_actor(int(suffix))

    # -- adopting actors after a manager restart ---------------------------------------------------

    def _adopt(self, rows: _Rows, job: orm.Job) -> _Live | None:
        """A row with a holder but no actor known here: the manager restarted. Adopt the actor by name."""
        handle = _find_actor(job_actor_name(job.id), self.namespace)
        if handle is not None and job.state == "running":
            # It could not renew while no manager answered: give it a full lease from now.
            job.lease_expires_at = max(
                job.lease_expires_at or rows.now, rows.now + timedelta(seconds=self.timing.lease_ttl_s)
            )
            live = _Live(holder=job.lease_holder or "", handle=handle, camera_id=job.camera_id)
            self._live[job.id] = live
            log.info("re-adopted job actor %s", job_actor_name(job.id))
            return live
        if handle is not None:
            _kill(handle)  # it never got going (its run() call died with the old manager): place afresh
        if job.state == "running":
            self._fail(rows.uow, job, rows.now, "the job actor was gone when the manager restarted")
        else:
            job.lease_holder, job.lease_expires_at = None, None
        return None

    def _adopt_caller(self, job: orm.Job) -> _Live | None:
        """A heartbeat from the lease holder before this manager's first pass adopted it."""
        handle = _find_actor(job_actor_name(job.id), self.namespace)
        if handle is None:
            return None
        live = _Live(holder=job.lease_holder or "", handle=handle, camera_id=job.camera_id)
        self._live[job.id] = live
        return live

    def _holds(self, job: orm.Job | None, holder: str) -> bool:
        return (
            job is not None
            and job.lease_holder == holder
            and job.desired_state == "running"
            and job.state not in DONE_STATES
        )

    def _stop_stale(self, job_id: int) -> None:
        """A heartbeat from a holder that lost its lease. Its actor goes, unless it is the current one."""
        # Actor names are unique, so with no current actor known the caller is the only job-{id}.
        # With one known, the caller is an older actor that is already dying; killing by name would
        # hit the current one.
        if job_id not in self._live:
            handle = _find_actor(job_actor_name(job_id), self.namespace)
            if handle is not None:
                _kill(handle)

    # -- heartbeats into rows ----------------------------------------------------------------------

    def _renew(self, job: orm.Job, now: datetime, stats: dict[str, Any], status: str, error: str) -> None:
        previous = job.stats or {}
        started_at = previous.get("started_at") or now.isoformat()
        if job.consecutive_failures and _seconds_since(started_at, now) >= self.timing.healthy_after_s:
            job.consecutive_failures, job.backoff_until = 0, None  # healthy for a while: forgive
        job.state = "running"
        job.lease_expires_at = now + timedelta(seconds=self.timing.lease_ttl_s)
        job.lease_node = stats.get("node_id") or job.lease_node
        job.stats = {
            **stats, "status": status, "error": error, "attempt": job.attempts,
            "placed_at": previous.get("placed_at"), "started_at": started_at,
        }

    def _publish_heartbeat(
        self, uow: UnitOfWork, job: orm.Job, now: datetime, stats: dict[str, Any], status: str, error: str
    ) -> None:
        if job.camera_id is not None and (camera := uow.cameras.find(job.camera_id)) is not None:
            running_for = _seconds_since(job.stats.get("started_at"), now)
            camera.status = camera_status(status, running_for, self.timing.starting_window_s)
            camera.status_error = error
            camera.stats = {**stats, "job_starts": job.attempts, "node_id": job.lease_node}
        if job.video_id is not None and (video := uow.videos.find(job.video_id)) is not None:
            video.status = "running"
            video.frames_done = int(stats.get("frames_done", video.frames_done) or 0)
            video.frames_total = int(stats.get("frames_total", video.frames_total) or 0)

    def _publish_finished(self, uow: UnitOfWork, job: orm.Job, summary: dict[str, Any]) -> None:
        job.stats = {**(job.stats or {}), "summary": summary}
        video = uow.videos.find(job.video_id) if job.video_id is not None else None
        if video is None:
            return
        video.status, video.error = "done", ""
        for key in ("frames_done", "frames_total", "events_count", "matched_count", "unmatched_count"):
            if key in summary:
                setattr(video, key, int(summary[key]))
        if "duration_s" in summary:
            video.duration_s = float(summary["duration_s"])

    def _job_of(self, *, camera_id: int | None = None, video_id: int | None = None) -> dict[str, Any]:
        with UnitOfWork(self.db_url) as uow:
            if camera_id is not None:
                job = uow.jobs.for_camera(camera_id)
            else:
                job = uow.jobs.for_video(video_id) if video_id is not None else None
            if job is None:
                raise NotFound("no job for that camera or video")
            return job_dict(job)

    def _list(self) -> list[dict[str, Any]]:
        with UnitOfWork(self.db_url) as uow:
            return [job_dict(j) for j in uow.session.scalars(select(orm.Job).order_by(orm.Job.id))]


# -- Ray helpers ---------------------------------------------------------------------------------------


def _outcome(ref: ray.ObjectRef) -> tuple[bool, str | None]:
    """(done, error) of a task without waiting for it."""
    ready, _ = ray.wait([ref], timeout=0)
    if not ready:
        return False, None
    try:
        ray.get(ref)
    except RayError as exc:
        return True, short_error(exc)
    return True, None


def _find_actor(name: str, namespace: str) -> ActorHandle | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


def _name_taken(job_id: int, namespace: str) -> bool:
    return _find_actor(job_actor_name(job_id), namespace) is not None


def _kill(handle: ActorHandle) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # already dead: nothing to do
        log.debug("kill of a job actor failed", exc_info=True)


def start_job_manager(
    db_url: str,
    job_factory: str = DEFAULT_JOB_FACTORY,
    *,
    name: str = MANAGER_NAME,
    namespace: str = NAMESPACE,
    ready_timeout_s: float = 60.0,
    **settings: Any,
) -> ActorHandle:
    """Starts the detached manager on the head node, or returns the running one (its settings are kept)."""
    handle = JobManager.options(
        name=name,
        namespace=namespace,
        get_if_exists=True,
        lifetime="detached",
        resources={HEAD_RESOURCE: 0.001},  # only the head node has it: the manager lives there
    ).remote(db_url, job_factory, name=name, namespace=namespace, **settings)
    ray.get(handle.ready.remote(), timeout=ready_timeout_s)
    return handle


def get_job_manager(name: str = MANAGER_NAME, namespace: str = NAMESPACE) -> ActorHandle:
    """The running manager; NOT_FOUND when it was never started."""
    handle = _find_actor(name, namespace)
    if handle is None:
        raise NotFound("the job manager is not running")
    return handle
