"""How job rows change: pure functions over the `jobs`, `cameras` and `videos` rows (no Ray).

The reconciler (`actors/job_reconciler.py`) and the actor's heartbeat calls apply these; each takes
the rows and `now`, so they are tested with plain ORM objects (tests/integration/test_job_core.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from actors.job_rules import Timing, backoff_delay, camera_status, group_value, seconds_since, utcnow
from facewatch.states import DONE_STATES, CameraStatus, DesiredState, JobKind, JobState, VideoStatus
from storage import orm
from storage.unit_of_work import UnitOfWork

SUMMARY_COUNTS = ("frames_done", "frames_total", "events_count", "matched_count", "unmatched_count")


@dataclass
class Rows:
    """The rows one reconcile pass works on, loaded once; `nodes` lists Ray's live nodes (on demand)."""

    uow: UnitOfWork
    now: datetime
    jobs: list[orm.Job]
    cameras: dict[int, orm.Camera]
    groups: dict[int, orm.CameraGroup]
    videos: dict[int, orm.Video]
    nodes_of: Callable[[], list[dict[str, Any]]] = list
    nodes: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, uow: UnitOfWork, nodes_of: Callable[[], list[dict[str, Any]]] = list) -> Rows:
        # Finished and failed single-pass jobs need no supervision; skipping them keeps a tick cheap.
        jobs = uow.jobs.not_in_states(DONE_STATES)
        videos = uow.videos.queued_or_in(j.video_id for j in jobs if j.video_id is not None)
        return cls(
            uow=uow, now=utcnow(), jobs=jobs,
            cameras={c.id: c for c in uow.cameras.all()},
            groups={g.id: g for g in uow.camera_groups.all()},
            videos={v.id: v for v in videos},
            nodes_of=nodes_of,
        )

    def source(self, job: orm.Job) -> orm.Camera | orm.Video | None:
        if job.kind == JobKind.CAMERA:
            return self.cameras.get(job.camera_id) if job.camera_id is not None else None
        return self.videos.get(job.video_id) if job.video_id is not None else None

    def group_of(self, job: orm.Job) -> str | None:
        source = self.source(job)
        group = self.groups.get(source.camera_group_id) if source is not None else None
        return group_value(group.labels) if group is not None else None

    def live_nodes(self) -> list[dict[str, Any]]:
        if self.nodes is None:
            self.nodes = [n for n in self.nodes_of() if n.get("Alive")]
        return self.nodes

    def groups_in_use(self) -> set[str]:
        values = {group_value(n.get("Labels")) for n in self.live_nodes()}
        values |= {group_value(g.labels) for g in self.groups.values()}
        return {v for v in values if v}


def camera_desired_state(camera: orm.Camera, group: orm.CameraGroup | None) -> DesiredState:
    """A camera's job runs while the camera and its group are active."""
    active = camera.active and (group is None or group.active)
    return DesiredState.RUNNING if active else DesiredState.STOPPED


def reset(job: orm.Job, state: str) -> None:
    """A fresh start (or stop): no lease, no back-off."""
    job.state = state
    job.lease_holder, job.lease_node, job.lease_expires_at = None, None, None
    job.consecutive_failures, job.backoff_until = 0, None
    if state != JobState.FINISHED:
        job.last_error = ""


def holds(job: orm.Job | None, holder: str) -> bool:
    """Whether `holder` holds the job's lease (a stale holder must stop)."""
    return (
        job is not None
        and job.lease_holder == holder
        and job.desired_state == DesiredState.RUNNING
        and job.state not in DONE_STATES
    )


def record_failure(uow: UnitOfWork, job: orm.Job, now: datetime, error: str, timing: Timing,
                   max_video_failures: int) -> float:
    """One more failure in a row: back off (single-pass jobs give up eventually); returns the delay."""
    job.consecutive_failures += 1
    delay = backoff_delay(job.consecutive_failures, timing.backoff_initial_s, timing.backoff_factor,
                          timing.backoff_max_s)
    job.backoff_until = now + timedelta(seconds=delay)
    job.lease_holder, job.lease_node, job.lease_expires_at = None, None, None
    job.state, job.last_error = JobState.PENDING, error
    gave_up = job.single_pass and job.consecutive_failures >= max_video_failures
    if gave_up:
        job.state = JobState.FAILED
    if job.camera_id is not None and (camera := uow.cameras.find(job.camera_id)) is not None:
        camera.status, camera.status_error = CameraStatus.FAILING, error
    if job.video_id is not None and (video := uow.videos.find(job.video_id)) is not None:
        video.error = error
        video.status = VideoStatus.FAILED if gave_up else VideoStatus.QUEUED
    return delay


def mark_up(job: orm.Job, waiting_reason: str) -> None:
    """The actor runs on a node: the job is running; a "waiting for a node" error is cleared."""
    if job.state != JobState.RUNNING:
        job.state = JobState.RUNNING
        if waiting_reason and job.last_error == waiting_reason:
            job.last_error = ""


def renew(job: orm.Job, now: datetime, stats: dict[str, Any], status: str, error: str, timing: Timing) -> None:
    """A heartbeat from the lease holder: a new lease, its stats; forgiven after a healthy while."""
    previous = job.stats or {}
    started_at = previous.get("started_at") or now.isoformat()
    if job.consecutive_failures and seconds_since(started_at, now) >= timing.healthy_after_s:
        job.consecutive_failures, job.backoff_until = 0, None  # healthy for a while: forgive
    job.state = JobState.RUNNING
    job.lease_expires_at = now + timedelta(seconds=timing.lease_ttl_s)
    job.lease_node = stats.get("node_id") or job.lease_node
    job.stats = {
        **stats, "status": status, "error": error, "attempt": job.attempts,
        "placed_at": previous.get("placed_at"), "started_at": started_at,
    }


def publish_heartbeat(uow: UnitOfWork, job: orm.Job, now: datetime, stats: dict[str, Any], status: str, error: str,
                      timing: Timing) -> None:
    """The heartbeat's news on the camera or video row."""
    if job.camera_id is not None and (camera := uow.cameras.find(job.camera_id)) is not None:
        running_for = seconds_since(job.stats.get("started_at"), now)
        camera.status = camera_status(status, running_for, timing.starting_window_s)
        camera.status_error = error
        camera.stats = {**stats, "job_starts": job.attempts, "node_id": job.lease_node}
    if job.video_id is not None and (video := uow.videos.find(job.video_id)) is not None:
        video.status = VideoStatus.RUNNING
        video.frames_done = int(stats.get("frames_done", video.frames_done) or 0)
        video.frames_total = int(stats.get("frames_total", video.frames_total) or 0)


def publish_finished(uow: UnitOfWork, job: orm.Job, summary: Mapping[str, Any]) -> None:
    """A single-pass job's summary on the job and its video."""
    job.stats = {**(job.stats or {}), "summary": dict(summary)}
    video = uow.videos.find(job.video_id) if job.video_id is not None else None
    if video is None:
        return
    video.status, video.error = VideoStatus.DONE, ""
    for key in SUMMARY_COUNTS:
        if key in summary:
            setattr(video, key, int(summary[key]))
    if "duration_s" in summary:
        video.duration_s = float(summary["duration_s"])
