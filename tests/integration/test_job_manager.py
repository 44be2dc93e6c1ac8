"""JobManager on one local Ray node with real probe job actors (tests/probe_job.py) and SQLite.

Timings are shrunk (lease 3 s, heartbeat 0.3 s) so leases, back-off and re-adoption run in seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import ray

from actors.job_manager import (
    backoff_delay,
    camera_status,
    job_actor_name,
    pending_reason,
    placement_options,
    start_job_manager,
)
from facewatch.errors import Conflict, NotFound
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.helpers import wait_for

PROBE = "tests.probe_job:ProbeJob"
SLOTS = 3
RAY_OPTIONS = {"num_cpus": 2, "resources": {"camera_slots": SLOTS}}
FAST: dict[str, Any] = {
    "lease_ttl_s": 3.0,  # 10 heartbeats of slack: the machine running the tests may be busy
    "heartbeat_s": 0.3,
    "supervisor_period_s": 0.1,
    "starting_window_s": 1.0,
    "placement_wait_s": 1.0,
    "backoff_initial_s": 0.4,
    "backoff_factor": 2.0,
    "backoff_max_s": 1.6,
}
T = TypeVar("T")


# -- pure rules ----------------------------------------------------------------------------------------


def test_backoff_grows_by_factor_and_is_capped() -> None:
    delays = [backoff_delay(n, 1.0, 2.0, 60.0) for n in range(9)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_camera_status_from_heartbeat() -> None:
    assert camera_status("ok", 5.0, 30.0) == "starting"
    assert camera_status("ok", 31.0, 30.0) == "ok"
    assert camera_status("degraded", 1.0, 30.0) == "degraded"
    assert camera_status("failing", 100.0, 30.0) == "failing"


def test_placement_options_follow_the_camera_group_rule() -> None:
    assert placement_options("lobby", {"garage"}) == {
        "label_selector": {"camera-group": "lobby"},
        "fallback_strategy": [{"label_selector": {"camera-group": "!in(garage,lobby)"}}],
    }
    assert placement_options(None, {"lobby", "garage"}) == {"label_selector": {"camera-group": "!in(garage,lobby)"}}
    assert placement_options(None, set()) == {}


def test_pending_reason_names_the_missing_capacity() -> None:
    nodes = [
        {"Alive": True, "Labels": {"camera-group": "lobby"}, "Resources": {"camera_slots": 2.0}},
        {"Alive": True, "Labels": {}, "Resources": {"CPU": 1.0}},
    ]
    assert "all 2 slot(s) on the 1 node(s) camera-group=lobby or unlabelled are taken" in pending_reason("lobby", nodes)
    assert pending_reason(None, nodes).startswith("no live node may run it")


# -- fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture
def namespace(ray_module: None) -> Iterator[str]:
    """A namespace per test, so job-{id} names never meet; every actor in it is killed afterwards."""
    ns = f"jm-test-{uuid.uuid4().hex[:8]}"
    yield ns
    for name in named_actors(ns):
        ray.kill(ray.get_actor(name, namespace=ns))


@pytest.fixture
def manager(sqlite_url: str, namespace: str) -> Any:
    return start_job_manager(sqlite_url, PROBE, namespace=namespace, **FAST)


def named_actors(namespace: str) -> list[str]:
    return sorted(e["name"] for e in ray.util.list_named_actors(all_namespaces=True) if e["namespace"] == namespace)


def add_camera(url: str, group: str = "plain", labels: dict[str, str] | None = None,
               probe: dict[str, Any] | None = None) -> int:
    with UnitOfWork(url) as uow:
        found = uow.camera_groups.by_name(group)
        if found is None:
            found = uow.camera_groups.add(orm.CameraGroup(name=group, labels=labels or {}))
            uow.flush()
        settings = {"probe": probe} if probe else {}
        camera = uow.cameras.add(orm.Camera(name=f"cam-{uuid.uuid4().hex[:6]}", camera_group_id=found.id,
                                            url="rtsp://example.invalid/stream", stream_settings=settings))
        uow.commit()
        return camera.id


def set_active(url: str, camera_id: int, active: bool) -> None:
    with UnitOfWork(url) as uow:
        uow.cameras.get(camera_id).active = active
        uow.commit()


def job_row(url: str, camera_id: int) -> orm.Job:
    with UnitOfWork(url) as uow:
        job = uow.jobs.for_camera(camera_id)
        assert job is not None
        return job


def camera_row(url: str, camera_id: int) -> orm.Camera:
    with UnitOfWork(url) as uow:
        return uow.cameras.get(camera_id)


def running_job(url: str, camera_id: int, attempt: int = 1, timeout: float = 10.0) -> orm.Job:
    """The camera's job once its given attempt has heartbeated (it has a lease node)."""

    def ready() -> orm.Job | None:
        job = job_row(url, camera_id)
        return job if job.state == "running" and job.attempts == attempt and job.lease_node else None

    return wait_for(ready, timeout, f"camera {camera_id} running attempt {attempt}")


def probe_info(namespace: str, job_id: int) -> dict[str, Any]:
    return ray.get(ray.get_actor(job_actor_name(job_id), namespace=namespace).info.remote(), timeout=10)


def actor_gone(namespace: str, job_id: int) -> bool:
    return job_actor_name(job_id) not in named_actors(namespace)


# -- behaviour -----------------------------------------------------------------------------------------


def test_camera_job_runs_and_heartbeats_update_the_camera(sqlite_url: str, namespace: str, manager: Any) -> None:
    fine = add_camera(sqlite_url)
    shaky = add_camera(sqlite_url, probe={"status": "degraded", "error": "dropped 12 frames"})
    ray.get(manager.sync_jobs.remote())

    job = running_job(sqlite_url, fine)
    assert job.lease_node == ray.get_runtime_context().get_node_id()
    assert job.lease_holder == probe_info(namespace, job.id)["holder"]
    assert camera_row(sqlite_url, fine).status == "starting"  # running for less than starting_window_s

    camera = wait_for(lambda: (c := camera_row(sqlite_url, fine)).status == "ok" and c, what="status ok")
    assert camera.stats["node_id"] == job.lease_node and camera.stats["job_starts"] == 1
    assert camera.stats["beats"] >= 2
    later = wait_for(lambda: (c := camera_row(sqlite_url, fine)).stats["beats"] > camera.stats["beats"] and c)
    assert later.stats["beats"] > camera.stats["beats"]

    degraded = wait_for(lambda: (c := camera_row(sqlite_url, shaky)).status == "degraded" and c, what="degraded")
    assert degraded.status_error == "dropped 12 frames"
    assert {j["camera_id"] for j in ray.get(manager.list_jobs.remote())} == {fine, shaky}


def test_disabling_a_camera_kills_its_job_at_once(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url)
    assert ray.get(manager.ensure_camera.remote(camera_id))["desired_state"] == "running"
    job = running_job(sqlite_url, camera_id)

    set_active(sqlite_url, camera_id, False)
    stopped = ray.get(manager.ensure_camera.remote(camera_id))
    assert stopped["desired_state"] == "stopped" and stopped["state"] == "stopped"
    wait_for(lambda: actor_gone(namespace, job.id), timeout_s=1.0, what="the actor killed")
    assert camera_row(sqlite_url, camera_id).status == "disabled"

    set_active(sqlite_url, camera_id, True)
    ray.get(manager.ensure_camera.remote(camera_id))
    running_job(sqlite_url, camera_id, attempt=2)

    ray.get(manager.stop_camera.remote(camera_id))  # the API's "disable": persists active=false
    wait_for(lambda: actor_gone(namespace, job.id), timeout_s=1.0, what="the actor killed")
    assert camera_row(sqlite_url, camera_id).active is False
    with pytest.raises(Conflict):
        ray.get(manager.restart_camera.remote(camera_id))

    set_active(sqlite_url, camera_id, True)
    ray.get(manager.ensure_camera.remote(camera_id))
    running_job(sqlite_url, camera_id, attempt=3)
    with UnitOfWork(sqlite_url) as uow:  # deleting the camera deletes its job row; the actor goes too
        uow.cameras.delete(uow.cameras.get(camera_id))
        uow.commit()
    assert ray.get(manager.ensure_camera.remote(camera_id)) is None
    wait_for(lambda: actor_gone(namespace, job.id), timeout_s=1.0, what="the actor killed")


def test_restart_places_a_new_attempt_with_a_new_holder(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url)
    ray.get(manager.sync_jobs.remote())
    first = running_job(sqlite_url, camera_id)

    restarted = ray.get(manager.restart_camera.remote(camera_id))
    assert restarted["attempts"] == 2 and restarted["lease_holder"] != first.lease_holder
    second = running_job(sqlite_url, camera_id, attempt=2)
    assert probe_info(namespace, second.id)["holder"] == second.lease_holder != first.lease_holder
    assert named_actors(namespace).count(job_actor_name(second.id)) == 1
    with pytest.raises(NotFound):
        ray.get(manager.restart_camera.remote(999))
    with pytest.raises(NotFound):
        ray.get(manager.get_job.remote(999))


def test_a_killed_job_actor_is_placed_again_within_the_lease(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url)
    ray.get(manager.sync_jobs.remote())
    first = running_job(sqlite_url, camera_id)

    ray.kill(ray.get_actor(job_actor_name(first.id), namespace=namespace))
    killed_at = time.monotonic()
    second = running_job(sqlite_url, camera_id, attempt=2, timeout=FAST["lease_ttl_s"] + 5)
    assert time.monotonic() - killed_at < FAST["lease_ttl_s"] + 5
    assert second.lease_holder != first.lease_holder
    assert second.consecutive_failures == 1  # the death counted as a failure (back-off 0.4 s)


def test_a_hung_job_loses_its_lease_and_is_placed_again(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url, probe={"hang_after_s": 0.5})
    ray.get(manager.sync_jobs.remote())
    running_job(sqlite_url, camera_id)

    job = wait_for(lambda: (j := job_row(sqlite_url, camera_id)).attempts >= 2 and j,
                   timeout_s=FAST["lease_ttl_s"] + 5, what="a second attempt")
    assert "lease lapsed" in job.last_error
    assert camera_row(sqlite_url, camera_id).status in ("failing", "starting")


def test_a_job_that_keeps_failing_backs_off_exponentially(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url, probe={"fail_after_s": 0, "error": "cannot open the stream"})
    ray.get(manager.sync_jobs.remote())

    placed: dict[int, float] = {}  # attempt -> when the driver saw it placed
    delays: dict[int, float] = {}  # failures in a row -> back-off the manager chose
    deadline = time.monotonic() + 40
    while len(placed) < 5 and time.monotonic() < deadline:
        job = job_row(sqlite_url, camera_id)
        placed.setdefault(job.attempts, time.monotonic())
        if job.backoff_until and job.state == "pending" and job.consecutive_failures not in delays:
            # Nothing touches the row while it backs off, so updated_at is the moment it failed.
            delays[job.consecutive_failures] = (job.backoff_until - _aware(job.updated_at)).total_seconds()
        time.sleep(0.03)
    assert len(placed) >= 5, f"only {len(placed)} attempts seen"

    for failures, expected in ((1, 0.4), (2, 0.8), (3, 1.6), (4, 1.6)):
        assert delays[failures] == pytest.approx(expected, abs=0.1)
    gaps = [placed[a + 1] - placed[a] for a in range(1, 5)]
    for gap, delay in zip(gaps, (0.4, 0.8, 1.6, 1.6), strict=True):
        assert gap >= delay - 0.1  # never placed before its back-off ended
    assert gaps[2] > gaps[0]
    job = job_row(sqlite_url, camera_id)
    assert job.last_error == "cannot open the stream"
    assert camera_row(sqlite_url, camera_id).status in ("failing", "starting")


def test_a_finished_single_pass_job_is_not_restarted(sqlite_url: str, namespace: str, manager: Any) -> None:
    with UnitOfWork(sqlite_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="offline"))
        uow.flush()
        video = uow.videos.add(orm.Video(name="clip", camera_group_id=group.id, media_key="videos/clip.mp4",
                                         stream_settings={"probe": {"finish_after_s": 2.0, "frames_total": 100}}))
        uow.commit()
        video_id = video.id
    job = ray.get(manager.submit_video.remote(video_id))
    assert job["kind"] == "video" and job["single_pass"] is True

    def video_row() -> orm.Video:
        with UnitOfWork(sqlite_url) as uow:
            return uow.videos.get(video_id)

    running = wait_for(lambda: (v := video_row()).status == "running" and v.frames_done > 0 and v, what="progress")
    assert running.frames_total == 100
    done = wait_for(lambda: (v := video_row()).status == "done" and v, what="video done")
    assert done.frames_done == 100
    wait_for(lambda: actor_gone(namespace, job["id"]), timeout_s=3.0, what="the finished actor killed")

    time.sleep(2 * FAST["lease_ttl_s"])
    final = ray.get(manager.get_job.remote(job["id"]))
    assert final["state"] == "finished" and final["attempts"] == 1
    assert actor_gone(namespace, job["id"])


def test_a_restarted_manager_readopts_running_jobs(sqlite_url: str, namespace: str, manager: Any) -> None:
    keep = add_camera(sqlite_url)
    drop = add_camera(sqlite_url)
    ray.get(manager.sync_jobs.remote())
    kept, dropped = running_job(sqlite_url, keep), running_job(sqlite_url, drop)
    before = probe_info(namespace, kept.id)

    ray.kill(manager)
    set_active(sqlite_url, drop, False)  # changed while no manager runs
    time.sleep(1.0)
    restarted = start_job_manager(sqlite_url, PROBE, namespace=namespace, **FAST)

    # The kept job keeps its holder and attempt; the new manager renews its lease.
    lease_then = _aware(job_row(sqlite_url, keep).lease_expires_at)
    wait_for(lambda: _aware(job_row(sqlite_url, keep).lease_expires_at) > lease_then, what="a renewed lease")
    after = probe_info(namespace, kept.id)
    assert after["holder"] == before["holder"] and after["beats"] > before["beats"]
    time.sleep(FAST["lease_ttl_s"] + 1)  # past a whole lease: still the same actor, no second attempt
    job = job_row(sqlite_url, keep)
    assert (job.state, job.attempts, job.lease_holder) == ("running", 1, before["holder"])
    assert named_actors(namespace) == sorted(["job-manager", job_actor_name(kept.id)])
    assert actor_gone(namespace, dropped.id)
    jobs = {j["camera_id"]: j for j in ray.get(restarted.list_jobs.remote())}
    assert jobs[drop]["state"] == "stopped" and jobs[keep]["state"] == "running"

    # A crash that Ray itself restarts (max_restarts=-1): the supervisor comes back with __init__.
    ray.kill(restarted, no_restart=False)
    time.sleep(FAST["lease_ttl_s"] + 1)
    assert ray.get(restarted.get_job.remote(job.id), timeout=30)["state"] == "running"
    job = job_row(sqlite_url, keep)
    assert (job.state, job.attempts, job.lease_holder) == ("running", 1, before["holder"])
    assert _aware(job.lease_expires_at) > datetime.now(UTC)  # the restarted manager renews it


def test_a_job_actor_that_cannot_start_is_retried(sqlite_url: str, namespace: str, manager: Any) -> None:
    camera_id = add_camera(sqlite_url, probe={"fail_in_init": True})
    ray.get(manager.sync_jobs.remote())

    job = wait_for(lambda: (j := job_row(sqlite_url, camera_id)).attempts >= 2 and j, what="a second attempt")
    assert "RuntimeError: probe told to fail in its constructor" in job.last_error
    camera = camera_row(sqlite_url, camera_id)
    assert camera.status in ("failing", "starting") and camera.stats["job_starts"] >= 2


def test_a_job_without_a_free_slot_stays_pending_until_one_frees(
    sqlite_url: str, namespace: str, manager: Any
) -> None:
    # The local node is unlabelled, so the "dock" group's camera falls back to it.
    cameras = [add_camera(sqlite_url), add_camera(sqlite_url, "dock", {"camera-group": "dock"}), add_camera(sqlite_url)]
    extra = add_camera(sqlite_url)
    ray.get(manager.sync_jobs.remote())
    for camera_id in cameras[:SLOTS]:
        running_job(sqlite_url, camera_id)

    waiting = wait_for(lambda: (j := job_row(sqlite_url, extra)).last_error and j, what="a pending reason")
    assert waiting.state == "pending"
    assert "waiting for a free camera slot" in waiting.last_error
    assert camera_row(sqlite_url, extra).status_error == waiting.last_error

    ray.get(manager.stop_camera.remote(cameras[0]))
    placed = running_job(sqlite_url, extra, timeout=10)
    assert placed.last_error == "" and placed.attempts == 1  # Ray started the queued actor; no re-placement


def _aware(value: datetime | None) -> datetime:
    assert value is not None
    return value
