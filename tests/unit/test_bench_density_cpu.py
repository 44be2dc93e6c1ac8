"""The density benchmark's CPU split by process kind (benchmarks/bench_density.py)."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.bench_density import KINDS, cpu_by_kind, cpu_snapshot, process_kind


def test_process_kinds_by_command_line() -> None:
    assert process_kind("ray::CameraJob.run") == "camera_job"
    assert process_kind("ray::ServeReplica:facewatch-extractor:facewatch-extractor") == "extractor"
    assert process_kind("ray::EventPipeline.post") == "event_pipeline"
    assert process_kind("ray::GalleryShard") == "gallery_shards"
    assert process_kind("ray::ServeController.listen_for_change") == "serve_controller_proxy"
    assert process_kind("ray::ProxyActor") == "serve_controller_proxy"
    assert process_kind("/x/ray/core/src/ray/raylet/raylet --node_ip_address=127.0.0.1") == "ray_system"
    assert process_kind("/x/ray/core/src/ray/gcs/gcs_server --port 6379") == "ray_system"
    assert process_kind("python /x/ray/dashboard/agent.py --node-ip-address=127.0.0.1") == "ray_system"
    assert process_kind("python /x/ray/_private/log_monitor.py --logs-dir=/tmp") == "ray_system"
    assert process_kind("/usr/bin/python3 tests/rtsp_server.py clip.mp4 8554 copy") == "rtsp_server"
    assert process_kind("ray::TaskSupervisor.run") == "background_actors"
    assert process_kind("ray::IDLE") == "idle_workers"
    assert process_kind("/usr/bin/ffmpeg -i x") == "other"


def test_cpu_of_child_processes_is_split_by_kind() -> None:
    """A child that burns CPU under a camera job's name counts as camera_job; a sleeping one adds nothing."""
    # The busy child burns 0.6 CPU s once told to (a line on its stdin), after the first snapshot.
    burn = "import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.6\n" \
           "while time.process_time() < end: pass\ntime.sleep(30)"
    busy = subprocess.Popen([sys.executable, "-c", burn, "ray::CameraJob.run"], stdin=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "ray::GalleryShard"])
    try:
        time.sleep(0.5)  # both started
        before, started = cpu_snapshot(), time.monotonic()
        assert busy.stdin is not None
        busy.stdin.write("go\n")
        busy.stdin.flush()
        deadline = started + 20
        while time.monotonic() < deadline:
            after = cpu_snapshot()
            if sum(cpu - before.get(key, (kind, 0.0))[1] for key, (kind, cpu) in after.items()
                   if kind == "camera_job") >= 0.55:
                break
            time.sleep(0.1)
        wall = time.monotonic() - started
        split = cpu_by_kind(before, after, wall)
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    assert set(split) == set(KINDS)
    assert split["camera_job"] * wall >= 0.5
    assert split["gallery_shards"] * wall < 0.05
