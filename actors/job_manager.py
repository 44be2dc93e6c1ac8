"""The JobManager: one detached actor on the head node that runs every camera and video job.

Parts: `actors/job_rules.py` (pure rules: placement, back-off, statuses, specs),
`actors/job_state.py` (how rows change), `actors/job_reconciler.py` (the supervision loop, with
Ray behind a port); this module is the actor: the API, the calls from job actors and Ray itself.

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
`tests.probe_job:ProbeJob` in tests):
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

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle
from ray.exceptions import RayError

from actors import job_state
from actors.job_reconciler import JobActors, Live, NameTaken, Placed, Reconciler
from actors.job_rules import (
    DEFAULT_JOB_FACTORY,
    ERROR_CHARS,
    GROUP_LABEL,
    HEAD_RESOURCE,
    JOB_PREFIX,
    SLOT_RESOURCE,
    Timing,
    backoff_delay,
    camera_status,
    group_value,
    job_actor_name,
    job_dict,
    load_actor_class,
    node_may_run,
    pending_reason,
    placement_options,
    short_error,
    utcnow,
)
from facewatch.errors import Conflict, NotFound
from facewatch.names import JOB_MANAGER as MANAGER_NAME
from facewatch.names import NAMESPACE
from facewatch.states import DONE_STATES, DesiredState, JobKind, JobState, VideoStatus
from storage import orm
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.job_manager")


class RayJobActors(JobActors):
    """The reconciler's port to Ray: job actors of `job_factory`, named in `namespace`."""

    def __init__(self, job_factory: str, manager_name: str, namespace: str) -> None:
        self.job_factory, self.manager_name, self.namespace = job_factory, manager_name, namespace
        self._job_class: ActorClass | None = None

    def place(self, options: dict[str, Any], spec: dict[str, Any]) -> Placed:
        if self._job_class is None:
            self._job_class = load_actor_class(self.job_factory)
        try:
            handle = self._job_class.options(**options).remote(spec, self.manager_name, self.namespace)
        except ValueError:
            if self.find(options["name"]) is not None:
                raise NameTaken(options["name"]) from None
            raise
        # __ray_ready__ is queued before run(), so it answers as soon as the actor is constructed.
        return Placed(handle, handle.__ray_ready__.remote(), handle.run.remote())

    def outcome(self, ref: ray.ObjectRef) -> tuple[bool, str | None]:
        ready, _ = ray.wait([ref], timeout=0)
        if not ready:
            return False, None
        try:
            ray.get(ref)
        except RayError as exc:
            return True, short_error(exc)
        return True, None

    def find(self, name: str) -> ActorHandle | None:
        return _find_actor(name, self.namespace)

    def kill(self, handle: ActorHandle) -> None:
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # already dead: nothing to do
            log.debug("kill of a job actor failed", exc_info=True)

    def job_actor_names(self) -> list[str]:
        return [
            entry.get("name", "") for entry in ray.util.list_named_actors(all_namespaces=True)
            if entry.get("namespace") == self.namespace
        ]

    def nodes(self) -> list[dict[str, Any]]:
        return ray.nodes()


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
        timing = Timing(
            lease_ttl_s=lease_ttl_s, heartbeat_s=heartbeat_s, backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s, backoff_factor=backoff_factor, healthy_after_s=healthy_after_s,
            supervisor_period_s=supervisor_period_s, starting_window_s=starting_window_s,
            placement_wait_s=placement_wait_s,
        )
        self.core = Reconciler(
            db_url, RayJobActors(job_factory, name, namespace), namespace, timing,
            max_video_failures=max_video_failures, job_num_cpus=job_num_cpus, spec_defaults=dict(spec_defaults or {}),
        )
        self._lock = threading.RLock()
        threading.Thread(target=self._supervise_forever, name="job-supervisor", daemon=True).start()

    # -- API ---------------------------------------------------------------------------------------

    def ready(self) -> bool:
        return True

    def sync_jobs(self) -> list[dict[str, Any]]:
        """Brings the job table in line with cameras and videos and acts on it now; returns all jobs."""
        with self._lock:
            self.core.reconcile()
            return self._list()

    def ensure_camera(self, camera_id: int) -> dict[str, Any] | None:
        """Call after a camera was created, changed, enabled, disabled or deleted: acts at once.

        Returns the camera's job, or None when the camera no longer exists (its job actor is killed)."""
        with self._lock:
            self.core.reconcile()
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_camera(camera_id)
            if job is None:
                self.core.kill_camera_actor(camera_id)
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
            self.core.kill_camera_actor(camera_id)
            return self.ensure_camera(camera_id)

    def restart_camera(self, camera_id: int) -> dict[str, Any]:
        """Kills the camera's job actor and places a new one now (new attempt), clearing any back-off."""
        with self._lock:
            self.core.reconcile()
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_camera(camera_id)
                if job is None:
                    raise NotFound(f"camera {camera_id} does not exist", param="camera_id")
                if job.desired_state != DesiredState.RUNNING:
                    raise Conflict(f"camera {camera_id} is disabled; enable it to start it", param="camera_id")
                self.core.kill_job_actor(job.id)
                job_state.reset(job, JobState.PENDING)
                uow.commit()
            self.core.reconcile()
            return self._job_of(camera_id=camera_id)

    def submit_video(self, video_id: int) -> dict[str, Any]:
        """Starts processing a video (again, from the start, if it had finished, failed or was cancelled)."""
        with self._lock:
            with UnitOfWork(self.db_url) as uow:
                video = uow.videos.find(video_id)
                if video is None:
                    raise NotFound(f"video {video_id} does not exist", param="video_id")
                job = uow.jobs.for_video(video_id)
                fresh_start = job is None or job.desired_state != DesiredState.RUNNING or job.state in DONE_STATES
                if job is None:
                    job = uow.jobs.add(orm.Job(kind=JobKind.VIDEO, video_id=video_id, single_pass=True))
                if fresh_start:
                    self.core.kill_job_actor(job.id)
                    job.desired_state = DesiredState.RUNNING
                    job_state.reset(job, JobState.PENDING)
                    video.status, video.error, video.frames_done = VideoStatus.QUEUED, "", 0
                uow.commit()
            self.core.reconcile()
            return self._job_of(video_id=video_id)

    def cancel_video(self, video_id: int) -> dict[str, Any]:
        """Stops a video's job at once; the video is marked cancelled unless it had already finished."""
        with self._lock:
            with UnitOfWork(self.db_url) as uow:
                job = uow.jobs.for_video(video_id)
                if job is None:
                    raise NotFound(f"video {video_id} has no job", param="video_id")
                self.core.kill_job_actor(job.id)
                job.desired_state = DesiredState.STOPPED
                if job.state not in DONE_STATES:
                    job_state.reset(job, JobState.STOPPED)
                    video = uow.videos.find(video_id)
                    if video is not None and video.status not in (VideoStatus.DONE, VideoStatus.FAILED):
                        video.status = VideoStatus.CANCELLED
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
            if not job_state.holds(job, holder):
                self.core.stop_stale(job_id)
                return False
            assert job is not None  # _holds checked it
            now = utcnow()
            live = self.core.live.get(job_id) or self.core.adopt_caller(job)
            if live is not None:
                self.core.mark_up(job, live)
            job_state.renew(job, now, stats, status, error, self.core.timing)
            job_state.publish_heartbeat(uow, job, now, stats, status, error, self.core.timing)
            uow.commit()
            self.core.count_camera_metrics(job, holder, stats)
            return True

    def finished(self, job_id: int, holder: str, summary: dict[str, Any]) -> bool:
        """The job's source ended. Single-pass jobs are done for good; camera jobs are placed again."""
        with self._lock, UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if not job_state.holds(job, holder):
                return False
            assert job is not None
            self.core.retire(job_id)
            if not job.single_pass:
                self.core.fail(uow, job, utcnow(), "the stream ended")
            else:
                job_state.reset(job, JobState.FINISHED)
                job_state.publish_finished(uow, job, summary)
            uow.commit()
            self.core.count_camera_metrics(job, holder, summary)
            self.core.camera_metrics.pop(holder, None)
            return True

    def failed(self, job_id: int, holder: str, error: str) -> bool:
        """The job gave up; it is placed again after its back-off."""
        with self._lock, UnitOfWork(self.db_url) as uow:
            job = uow.jobs.find(job_id)
            if not job_state.holds(job, holder):
                return False
            assert job is not None
            self.core.retire(job_id)
            self.core.fail(uow, job, utcnow(), error[:ERROR_CHARS] or "the job failed")
            uow.commit()
            return True

    # -- the supervisor -----------------------------------------------------------------------------

    def _supervise_forever(self) -> None:
        while True:
            time.sleep(self.core.timing.supervisor_period_s)
            try:
                with self._lock:
                    self.core.reconcile()
            except Exception:  # a DB hiccup must not end supervision; the next tick tries again
                log.exception("job supervisor pass failed")

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
            return [job_dict(j) for j in uow.jobs.all()]


# -- Ray helpers ---------------------------------------------------------------------------------------


def _find_actor(name: str, namespace: str) -> ActorHandle | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


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


# Re-exported: the API, the CLI and the tests import these names from here.
__all__ = [
    "DEFAULT_JOB_FACTORY", "DONE_STATES", "ERROR_CHARS", "GROUP_LABEL", "HEAD_RESOURCE", "JOB_PREFIX", "MANAGER_NAME",
    "NAMESPACE", "SLOT_RESOURCE", "JobManager", "Live", "RayJobActors", "Reconciler", "Timing", "backoff_delay",
    "camera_status", "get_job_manager", "group_value", "job_actor_name", "job_dict", "node_may_run",
    "pending_reason", "placement_options", "short_error", "start_job_manager", "utcnow",
]
