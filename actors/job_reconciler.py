"""The job manager's supervision loop, without Ray: it keeps every job row's actor placed, checked
or stopped. Ray is reached only through a `JobActors` port (the real one is `RayJobActors` in
`actors/job_manager.py`), so the loop is tested with an in-memory port (tests/integration/test_job_core.py).

The reconciler is not thread-safe: the actor serialises every call with one lock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from actors import job_state
from actors.job_rules import (
    JOB_PREFIX,
    Timing,
    actor_options,
    job_actor_name,
    job_spec,
    pending_reason,
    short_error,
    utcnow,
)
from actors.job_state import Rows
from facewatch import metrics
from facewatch.states import CameraStatus, DesiredState, JobKind, JobState, VideoStatus
from storage import orm
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.job_manager")


class NameTaken(Exception):
    """The job's actor name is still held by its previous actor (shutting down)."""


@dataclass
class Placed:
    handle: Any
    ready_ref: Any  # answers once the actor is constructed
    run_ref: Any  # answers when run() returns


class JobActors(Protocol):
    """What the reconciler needs from Ray."""

    def place(self, options: dict[str, Any], spec: dict[str, Any]) -> Placed:
        """Start a job actor with these options; NameTaken when the name is still in use."""
        ...

    def outcome(self, ref: Any) -> tuple[bool, str | None]:
        """(done, error) of a call, without waiting."""
        ...

    def find(self, name: str) -> Any | None: ...

    def kill(self, handle: Any) -> None: ...

    def job_actor_names(self) -> list[str]:
        """The names of the named actors in the manager's namespace."""
        ...

    def nodes(self) -> list[dict[str, Any]]:
        """`ray.nodes()`."""
        ...


@dataclass
class Live:
    """The one actor of a job this manager knows of (the DB has the lease; this has the handle)."""

    holder: str
    handle: Any
    camera_id: int | None = None
    # Both refs are None for an adopted actor: its run() was called by an earlier manager.
    ready_ref: Any | None = None
    run_ref: Any | None = None
    placed_at: datetime = field(default_factory=utcnow)
    waiting_reason: str = ""
    retiring: bool = False  # reported finished/failed: killed on the next tick, once its call returned


@dataclass
class Reconciler:
    db_url: str
    actors: JobActors
    namespace: str
    timing: Timing = field(default_factory=Timing)
    max_video_failures: int = 5
    job_num_cpus: float = 0.0  # camera_slots is the capacity; reserving CPUs too would count it twice
    spec_defaults: Mapping[str, Any] = field(default_factory=dict)
    live: dict[int, Live] = field(default_factory=dict)
    camera_metrics: dict[str, metrics.CameraMetrics] = field(default_factory=dict)  # per lease holder
    booted: bool = False

    def reconcile(self) -> None:
        """One pass: job rows follow cameras/videos; every job gets placed, checked or stopped."""
        self.kill_retiring()
        with UnitOfWork(self.db_url) as uow:
            rows = Rows.load(uow, self.actors.nodes)
            self.sync_rows(rows)
            if not self.booted:
                self.kill_orphans(rows)
                self.booted = True
            for job in rows.jobs:
                self.supervise(rows, job)
            uow.commit()
            wanted = {j.id for j in rows.jobs}
        for job_id in [j for j in self.live if j not in wanted]:
            self.kill_job_actor(job_id)  # its row is gone (camera deleted) or finished

    def sync_rows(self, rows: Rows) -> None:
        """One job row per camera (desired state from camera + group) and per queued video."""
        by_camera = {j.camera_id: j for j in rows.jobs if j.camera_id is not None}
        for camera in rows.cameras.values():
            desired = job_state.camera_desired_state(camera, rows.groups.get(camera.camera_group_id))
            job = by_camera.get(camera.id)
            if job is None:
                job = self._new_job(rows, kind=JobKind.CAMERA, camera_id=camera.id, single_pass=False,
                                    desired_state=desired)
            elif job.desired_state != desired:
                job.desired_state = desired
                job_state.reset(job, JobState.PENDING if desired == DesiredState.RUNNING else JobState.STOPPED)
            if desired == DesiredState.STOPPED and camera.status != CameraStatus.DISABLED:
                camera.status, camera.status_error = CameraStatus.DISABLED, ""
        by_video = {j.video_id for j in rows.jobs if j.video_id is not None}
        for video in rows.videos.values():
            if video.status == VideoStatus.QUEUED and video.id not in by_video:
                self._new_job(rows, kind=JobKind.VIDEO, video_id=video.id, single_pass=True,
                              desired_state=DesiredState.RUNNING)
        rows.uow.flush()

    def _new_job(self, rows: Rows, **fields: Any) -> orm.Job:
        job = rows.uow.jobs.add(orm.Job(attempts=0, consecutive_failures=0, stats={}, last_error="", **fields))
        job_state.reset(job, JobState.PENDING if job.desired_state == DesiredState.RUNNING else JobState.STOPPED)
        rows.jobs.append(job)
        return job

    def supervise(self, rows: Rows, job: orm.Job) -> None:
        if job.desired_state != DesiredState.RUNNING:
            # Only on the change: a stopped job's actor was killed then (or by the start-up orphan scan).
            if job.state != JobState.STOPPED or job.id in self.live:
                self.kill_job_actor(job.id)
                job_state.reset(job, JobState.STOPPED)
            return
        live = self.live.get(job.id)
        if live is None and job.lease_holder:
            live = self.adopt(rows, job)
        if live is not None and live.retiring:
            return  # killed at the start of the next pass, then placed again after its back-off
        if live is None:
            if job.state == JobState.PENDING and not (job.backoff_until and job.backoff_until > rows.now):
                self.place(rows, job)
            return
        self.check(rows, job, live)

    def check(self, rows: Rows, job: orm.Job, live: Live) -> None:
        """A placed job: started yet? run() ended? lease lapsed?"""
        if live.ready_ref is not None:
            done, error = self.actors.outcome(live.ready_ref)
            if error is not None:
                self.fail(rows.uow, job, rows.now, f"the job actor could not start: {error}")
                return
            if not done:
                self._note_waiting(rows, job, live)
                return
            self.mark_up(job, live)
            job.lease_expires_at = rows.now + timedelta(seconds=self.timing.lease_ttl_s)
        if live.run_ref is not None:
            done, error = self.actors.outcome(live.run_ref)
            if done:  # run() ended without finished()/failed() (those retire the actor first)
                self.fail(rows.uow, job, rows.now, error or "run() returned without reporting an outcome")
                return
        if job.lease_expires_at is not None and job.lease_expires_at < rows.now:
            error = f"lease lapsed: no heartbeat for {self.timing.lease_ttl_s:g} s (job hung, or its actor/node died)"
            self.fail(rows.uow, job, rows.now, error)

    def _note_waiting(self, rows: Rows, job: orm.Job, live: Live) -> None:
        """Ray has not started the actor: say why (written once, not every pass)."""
        waited = (rows.now - live.placed_at).total_seconds()
        if live.waiting_reason or waited < self.timing.placement_wait_s:
            return
        live.waiting_reason = pending_reason(rows.group_of(job), rows.live_nodes())
        job.last_error = live.waiting_reason
        source = rows.source(job)
        if isinstance(source, orm.Camera):
            source.status, source.status_error = CameraStatus.STARTING, live.waiting_reason

    @staticmethod
    def mark_up(job: orm.Job, live: Live) -> None:
        """The actor runs on a node: the lease clock starts (its first heartbeat renews it)."""
        live.ready_ref = None
        job_state.mark_up(job, live.waiting_reason)

    # -- placing, failing, stopping ----------------------------------------------------------------

    def place(self, rows: Rows, job: orm.Job) -> None:
        source = rows.source(job)
        if source is None:
            return  # the camera/video row vanished in this pass; the job row goes with it
        holder = f"{job_actor_name(job.id)}:{job.attempts + 1}:{uuid.uuid4().hex[:8]}"
        spec = job_spec(job, source, holder, self.timing, self.spec_defaults)
        try:
            options = actor_options(job.id, self.namespace, self.job_num_cpus, rows.group_of(job),
                                    rows.groups_in_use(),
                                    num_gpus=float(self.spec_defaults.get("gpu_fraction") or 0.0))
            placed = self.actors.place(options, spec)
        except NameTaken:
            job.last_error = "the previous actor of this job is still shutting down"
            return  # tried again on the next pass
        except Exception as exc:  # e.g. the job factory does not import: retry with back-off
            self.fail(rows.uow, job, rows.now, f"cannot place the job: {short_error(exc)}")
            return
        job.attempts += 1
        if job.attempts > 1:
            metrics.job_restarted(job.kind)
        job.lease_holder, job.lease_node, job.lease_expires_at = holder, None, None
        job.state = JobState.PENDING  # last_error keeps the previous failure: it is the *last* error
        job.stats = {"attempt": job.attempts, "placed_at": rows.now.isoformat()}
        self.live[job.id] = Live(holder=holder, handle=placed.handle, camera_id=job.camera_id,
                                 ready_ref=placed.ready_ref, run_ref=placed.run_ref, placed_at=rows.now)
        if isinstance(source, orm.Camera):
            source.status, source.status_error = CameraStatus.STARTING, ""
            source.stats = {**(source.stats or {}), "job_starts": job.attempts, "node_id": None}

    def fail(self, uow: UnitOfWork, job: orm.Job, now: datetime, error: str) -> None:
        """One more failure in a row: its actor goes; placed again after the back-off."""
        live = self.live.get(job.id)
        if live is None or not live.retiring:
            self.kill_job_actor(job.id)
        metrics.job_failed(job.kind)
        delay = job_state.record_failure(uow, job, now, error, self.timing, self.max_video_failures)
        log.warning("job %s failed (%d in a row, retry in %.1f s): %s", job.id, job.consecutive_failures, delay, error)

    def retire(self, job_id: int) -> None:
        live = self.live.get(job_id)
        if live is not None:
            live.retiring = True

    def kill_retiring(self) -> None:
        for job_id in [j for j, live in self.live.items() if live.retiring]:
            self.kill_job_actor(job_id)

    def kill_job_actor(self, job_id: int) -> None:
        """Kills the job's actor now, whether this manager placed it or an earlier one did."""
        live = self.live.pop(job_id, None)
        if live is not None:
            self.camera_metrics.pop(live.holder, None)
        handle = live.handle if live is not None else self.actors.find(job_actor_name(job_id))
        if handle is not None:
            self.actors.kill(handle)

    def kill_camera_actor(self, camera_id: int) -> None:
        for job_id in [j for j, live in self.live.items() if live.camera_id == camera_id]:
            self.kill_job_actor(job_id)

    def kill_orphans(self, rows: Rows) -> None:
        """At start: kill job actors no row wants (e.g. a camera disabled while the manager was down)."""
        wanted = {j.id for j in rows.jobs if j.desired_state == DesiredState.RUNNING and j.lease_holder}
        for name in self.actors.job_actor_names():
            suffix = name[len(JOB_PREFIX):] if name.startswith(JOB_PREFIX) else ""
            if suffix.isdigit() and int(suffix) not in wanted:
                log.info("killing orphan job actor %s", name)
                self.kill_job_actor(int(suffix))

    # -- adopting actors after a manager restart ---------------------------------------------------

    def adopt(self, rows: Rows, job: orm.Job) -> Live | None:
        """A row with a holder but no actor known here: the manager restarted. Adopt the actor by name."""
        handle = self.actors.find(job_actor_name(job.id))
        if handle is not None and job.state == JobState.RUNNING:
            # It could not renew while no manager answered: give it a full lease from now.
            job.lease_expires_at = max(
                job.lease_expires_at or rows.now, rows.now + timedelta(seconds=self.timing.lease_ttl_s)
            )
            live = self.live[job.id] = Live(holder=job.lease_holder or "", handle=handle, camera_id=job.camera_id)
            log.info("re-adopted job actor %s", job_actor_name(job.id))
            return live
        if handle is not None:
            self.actors.kill(handle)  # it never got going (its run() call died with the old manager): place afresh
        if job.state == JobState.RUNNING:
            self.fail(rows.uow, job, rows.now, "the job actor was gone when the manager restarted")
        else:
            job.lease_holder, job.lease_expires_at = None, None
        return None

    def adopt_caller(self, job: orm.Job) -> Live | None:
        """A heartbeat from the lease holder before this manager's first pass adopted it."""
        handle = self.actors.find(job_actor_name(job.id))
        if handle is None:
            return None
        live = self.live[job.id] = Live(holder=job.lease_holder or "", handle=handle, camera_id=job.camera_id)
        return live

    def stop_stale(self, job_id: int) -> None:
        """A heartbeat from a holder that lost its lease. Its actor goes, unless it is the current one."""
        # Actor names are unique, so with no current actor known the caller is the only job-{id}.
        # With one known, the caller is an older actor that is already dying; killing by name would
        # hit the current one.
        if job_id not in self.live:
            handle = self.actors.find(job_actor_name(job_id))
            if handle is not None:
                self.actors.kill(handle)

    def count_camera_metrics(self, job: orm.Job, holder: str, counters: Mapping[str, Any]) -> None:
        """Adds what a job attempt's counters grew by to the camera metrics. Recorded here, in the long-lived
        manager, because a job actor is killed as soon as it finishes, before its own metrics are exported."""
        reporter = self.camera_metrics.get(holder)
        if reporter is None:
            reporter = self.camera_metrics[holder] = metrics.CameraMetrics(job.camera_id)
        reporter.report(counters)
