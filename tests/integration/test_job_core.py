"""The job manager's core without Ray: row transitions (actors/job_state.py) and the reconciler
(actors/job_reconciler.py) driven through an in-memory `JobActors` port, on SQLite.

The port stands in for Ray's side only (actors that start, answer, die); the rows, rules and
decisions are the real ones. Ray itself is covered by tests/integration/test_job_manager.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import job_state
from actors.job_reconciler import NameTaken, Placed, Reconciler
from actors.job_rules import Timing, job_actor_name
from facewatch.states import CameraStatus, JobState, VideoStatus
from storage import orm
from storage.db import migrate
from storage.unit_of_work import UnitOfWork

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Ref:
    done: bool = False
    error: str | None = None


@dataclass
class FakeActor:
    name: str
    spec: dict[str, Any]
    options: dict[str, Any]
    ready: Ref = field(default_factory=Ref)
    run: Ref = field(default_factory=Ref)
    alive: bool = True


class MemoryActors:
    """Named actors in a dict; a test decides when they start, end or die."""

    def __init__(self) -> None:
        self.actors: dict[str, FakeActor] = {}
        self.placed: list[FakeActor] = []
        self.fail_next: Exception | None = None

    def place(self, options: dict[str, Any], spec: dict[str, Any]) -> Placed:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if options["name"] in self.actors:
            raise NameTaken(options["name"])
        actor = self.actors[options["name"]] = FakeActor(options["name"], spec, options)
        self.placed.append(actor)
        return Placed(actor, actor.ready, actor.run)

    def outcome(self, ref: Ref) -> tuple[bool, str | None]:
        return ref.done, ref.error

    def find(self, name: str) -> FakeActor | None:
        return self.actors.get(name)

    def kill(self, handle: FakeActor) -> None:
        handle.alive = False
        self.actors.pop(handle.name, None)

    def job_actor_names(self) -> list[str]:
        return list(self.actors)

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Labels": {}, "Resources": {"camera_slots": 1.0}}]


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/jobs.db"
    migrate(url)
    return url


def add_camera(url: str, active: bool = True) -> int:
    with UnitOfWork(url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name=f"g{next(_names)}", labels={}))
        uow.flush()
        camera = uow.cameras.add(orm.Camera(name=f"c{next(_names)}", camera_group_id=group.id, active=active,
                                            url="rtsp://example.invalid/s", stream_settings={"fps": 5}))
        uow.commit()
        return camera.id


_names = itertools.count()


def rows(url: str) -> tuple[orm.Job, orm.Camera]:
    with UnitOfWork(url) as uow:
        job = uow.jobs.all()[0]
        return job, uow.cameras.get(job.camera_id)


def reconciler(url: str) -> tuple[Reconciler, MemoryActors]:
    actors = MemoryActors()
    timing = Timing(backoff_initial_s=0.0, backoff_max_s=0.0, placement_wait_s=0.0)
    return Reconciler(url, actors, "ns", timing, spec_defaults={"extra": 1}), actors


def running(url: str) -> tuple[Reconciler, MemoryActors]:
    """A reconciler whose one camera job's actor has started."""
    add_camera(url)
    core, actors = reconciler(url)
    core.reconcile()
    actors.placed[0].ready.done = True
    core.reconcile()
    return core, actors


def test_a_camera_gets_a_job_whose_actor_is_placed_with_its_spec(db: str) -> None:
    camera_id = add_camera(db)
    core, actors = reconciler(db)
    core.reconcile()
    job, camera = rows(db)
    assert job.state == JobState.PENDING and job.attempts == 1 and job.lease_holder
    assert camera.status == CameraStatus.STARTING
    [actor] = actors.placed
    assert actor.name == job_actor_name(job.id) and actor.options["resources"] == {"camera_slots": 1}
    assert actor.spec["camera_id"] == camera_id and actor.spec["stream_settings"] == {"fps": 5}
    assert actor.spec["extra"] == 1 and actor.spec["holder"] == job.lease_holder
    actor.ready.done = True
    core.reconcile()
    assert rows(db)[0].state == JobState.RUNNING


def test_an_actor_that_cannot_start_is_failed_and_placed_again(db: str) -> None:
    add_camera(db)
    core, actors = reconciler(db)
    core.reconcile()
    actors.placed[0].ready.done, actors.placed[0].ready.error = True, "ImportError: no module"
    core.reconcile()  # fails it (back-off 0) ...
    job, camera = rows(db)
    assert job.consecutive_failures == 1 and "could not start" in job.last_error
    assert camera.status == CameraStatus.FAILING and not actors.placed[0].alive
    core.reconcile()  # ... and places a second attempt
    assert len(actors.placed) == 2 and rows(db)[0].attempts == 2


def test_a_taken_name_waits_and_a_placement_error_fails(db: str) -> None:
    add_camera(db)
    core, actors = reconciler(db)
    actors.fail_next = NameTaken("job-1")
    core.reconcile()
    job, _ = rows(db)
    assert job.attempts == 0 and "still shutting down" in job.last_error and job.consecutive_failures == 0
    actors.fail_next = RuntimeError("no such class")
    core.reconcile()
    assert "cannot place the job: no such class" in rows(db)[0].last_error


def test_a_disabled_camera_stops_its_actor(db: str) -> None:
    camera_id = add_camera(db)
    core, actors = reconciler(db)
    core.reconcile()
    with UnitOfWork(db) as uow:
        uow.cameras.get(camera_id).active = False
        uow.commit()
    core.reconcile()
    job, camera = rows(db)
    assert job.state == JobState.STOPPED and camera.status == CameraStatus.DISABLED
    assert not actors.placed[0].alive and core.live == {}


def test_a_new_manager_adopts_running_actors_and_kills_orphans(db: str) -> None:
    first, actors = running(db)
    orphan = actors.place({"name": "job-999"}, {})
    second = Reconciler(db, actors, "ns", first.timing)  # the manager restarted: same Ray, fresh memory
    second.reconcile()
    assert not orphan.handle.alive and actors.placed[0].alive
    job, _ = rows(db)
    assert job.id in second.live and job.attempts == 1 and job.state == JobState.RUNNING


def test_a_lapsed_lease_fails_the_job(db: str) -> None:
    core, _ = running(db)
    with UnitOfWork(db) as uow:
        uow.jobs.all()[0].lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        uow.commit()
    core.reconcile()
    assert rows(db)[0].last_error.startswith("lease lapsed")


def test_failures_back_off_and_a_video_gives_up() -> None:
    job = orm.Job(kind="video", single_pass=True, consecutive_failures=0, attempts=1, stats={})

    class NoRows:
        cameras = videos = type("R", (), {"find": staticmethod(lambda _id: None)})

    timing = Timing(backoff_initial_s=1.0, backoff_factor=2.0, backoff_max_s=3.0)
    delays = [job_state.record_failure(NoRows(), job, NOW, "boom", timing, 4) for _ in range(4)]  # type: ignore[arg-type]
    assert delays == [1.0, 2.0, 3.0, 3.0]
    assert job.state == JobState.FAILED and job.backoff_until == NOW + timedelta(seconds=3)
    job_state.reset(job, JobState.PENDING)
    assert job.consecutive_failures == 0 and job.backoff_until is None and job.last_error == ""


def test_renew_forgives_a_job_that_ran_long_enough() -> None:
    timing = Timing(healthy_after_s=60.0)
    job = orm.Job(kind="camera", consecutive_failures=3, attempts=4,
                  stats={"started_at": (NOW - timedelta(seconds=61)).isoformat(), "placed_at": "p"})
    job_state.renew(job, NOW, {"node_id": "n1", "frames": 5}, "ok", "", timing)
    assert job.consecutive_failures == 0 and job.state == JobState.RUNNING and job.lease_node == "n1"
    assert job.lease_expires_at == NOW + timedelta(seconds=timing.lease_ttl_s)
    assert job.stats["frames"] == 5 and job.stats["placed_at"] == "p"


def test_a_finished_video_publishes_its_summary(db: str) -> None:
    with UnitOfWork(db) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="videos", labels={}))
        uow.flush()
        video = uow.videos.add(orm.Video(name="v", camera_group_id=group.id, status=VideoStatus.RUNNING))
        uow.flush()
        job = uow.jobs.add(orm.Job(kind="video", video_id=video.id, single_pass=True, stats={}))
        job_state.publish_finished(uow, job, {"frames_done": 9, "events_count": 2, "duration_s": 1.5})
        assert (video.status, video.frames_done, video.events_count, video.duration_s) == ("done", 9, 2, 1.5)
        assert job.stats["summary"]["frames_done"] == 9
