"""The whole video pipeline, end to end, on real faces — and the job, video and live-feed endpoints.

THE PROOF (a real service on Ray with the API over HTTP; ~30 s on two idle cores, so it runs in the default
suite): Lin-Manuel Miranda and Alex Lacamoire
are enrolled from ../shared/data/faces through the API; short_hamilton_clip.mp4 is uploaded to
`POST /v1/videos` and processed in overall mode by a CameraJob placed by the JobManager. Per the data
README it must yield matched events for Lin-Manuel Miranda only (one or two tracks), none for Alex
Lacamoire, unmatched events for the other faces, and an episode grouping his events; the live feed
sends them as they are created; `facewatch process --json` reports the same actors' results; a camera
is placed, shows its status and node, restarts and stops through the API.

What MTCNN sees that the README's reference pipeline (dlib HOG) did not: the pianist in frames 0–18 is
Alex Lacamoire himself (a 26 px, blurred face: quality 0.45) and frames ~20–45 are a close-up of him in
profile (yaw ≈ 60°, quality 0.61). With the default threshold (`medium`, 0.75) those views match him at
0.83 and 0.81, and a hand-like detection next to Miranda's microphone (frame 123) at 0.78. None of these
is a recognisable view, so the watch list here uses the documented `strict` preset (0.85), as one would
for footage full of small, turned faces: Miranda's frontal close-up matches at ~0.90; the wide shot of
him (~45 px, 0.81) and every other face become unmatched events.

The fast part (no Ray): the endpoints' contracts without a JobManager (503 where they
need it, DB reads otherwise) and the live feed's order, filters, visibility and resume.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, make_config
from tests.helpers import wait_for

# -- helpers ---------------------------------------------------------------------------------------------


def sse_events(text: str) -> list[dict[str, Any]]:
    """The `data:` payloads of a Server-Sent Events body, with their `id:`."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            events.append({"sse_id": fields.get("id"), **json.loads(fields["data"])})
    return events


# -- fast: the API without Ray ------------------------------------------------------------------------------


@pytest.fixture
def rows(api: ApiClient, sqlite_url: str) -> dict[str, int]:
    with UnitOfWork(sqlite_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        secret = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=["viewer", "operator"]))
        camera = uow.cameras.add(orm.Camera(name="door", camera_group=group, status="ok", stats={"fps": 5.0}))
        uow.flush()
        job = uow.jobs.add(orm.Job(kind="camera", camera_id=camera.id, state="running", attempts=2,
                                   lease_holder="job-1:2:x", lease_node="node-a", stats={"frames_decoded": 10}))
        video = uow.videos.add(orm.Video(name="clip.mp4", camera_group_id=group.id, status="done", frames_done=50,
                                         frames_total=100, events_count=3, matched_count=1, unmatched_count=2))
        hidden_video = uow.videos.add(orm.Video(name="hidden.mp4", camera_group_id=secret.id))
        uow.commit()
        return {"group": group.id, "secret": secret.id, "camera": camera.id, "job": job.id, "video": video.id,
                "hidden_video": hidden_video.id}


def test_job_and_video_endpoints_without_a_job_manager(api: ApiClient, rows: dict[str, int]) -> None:
    status = api.get(f"/v1/cameras/{rows['camera']}/status", role="operator")
    assert status.status_code == 200, status.text
    body = status.json()
    assert (body["status"], body["stats"], body["job"]["lease_node"], body["job"]["attempts"]) == (
        "ok", {"fps": 5.0}, "node-a", 2)
    assert api.get(f"/v1/cameras/{rows['camera']}/status", role="viewer").status_code == 403
    assert api.get("/v1/cameras/999/status").json()["code"] == "NOT_FOUND"

    restart = api.post(f"/v1/cameras/{rows['camera']}/restart")
    assert (restart.status_code, restart.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert api.post(f"/v1/cameras/{rows['camera']}/restart", role="operator").status_code == 403
    assert api.post("/v1/cameras/999/restart").status_code == 404

    jobs = api.get("/v1/jobs").json()
    assert [(j["id"], j["lease_holder"], j["lease_node"]) for j in jobs["results"]] == [
        (rows["job"], "job-1:2:x", "node-a")]
    assert api.get(f"/v1/jobs/{rows['job']}").json()["stats"] == {"frames_decoded": 10}
    assert api.get("/v1/jobs?kind=video").json()["results"] == []
    assert api.get("/v1/jobs/999").status_code == 404

    video = api.get(f"/v1/videos/{rows['video']}").json()
    assert video["progress"] == {"frames_done": 50, "frames_total": 100, "fraction": 0.5}
    assert (video["events_count"], video["matched_count"], video["unmatched_count"]) == (3, 1, 2)
    listed = api.get("/v1/videos", role="operator").json()["results"]
    assert [v["id"] for v in listed] == [rows["video"]]  # the hidden group's video is not listed
    assert api.get(f"/v1/videos/{rows['hidden_video']}", role="operator").status_code == 404

    created = api.post("/v1/videos", json={"url": "http://example.com/a.mp4", "camera_group_id": rows["group"]})
    assert (created.status_code, created.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    bad = api.post("/v1/videos", json={"url": "http://example.com/a.mp4", "camera_group_id": "x"})
    assert (bad.status_code, bad.json()["code"]) == (422, "BAD_PARAM")
    assert api.post("/v1/videos", json={"camera_group_id": rows["group"], "extra": 1}).status_code == 422

    assert api.delete(f"/v1/videos/{rows['video']}").status_code == 204  # done: no manager needed
    assert api.get(f"/v1/videos/{rows['video']}").status_code == 404


def _event(uow: UnitOfWork, event_id: str, group: int, created: datetime, **fields: Any) -> None:
    uow.session.add(orm.Event(id=event_id, camera_group_id=group, timestamp=created, created_at=created,
                              bbox=[0, 0, 10, 10], **fields))


def test_live_feed_sends_new_events_in_order_with_filters_visibility_and_resume(
        api: ApiClient, sqlite_url: str, rows: dict[str, int]) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    with UnitOfWork(sqlite_url) as uow:
        _event(uow, "e-old", rows["group"], t0 - timedelta(hours=1))
        _event(uow, "e-2", rows["group"], t0 + timedelta(seconds=2), matched=False, watch_list_id=-1)
        _event(uow, "e-1", rows["group"], t0 + timedelta(seconds=1), matched=False, watch_list_id=-1)
        _event(uow, "e-hidden", rows["secret"], t0 + timedelta(seconds=3))
        _event(uow, "e-3", rows["group"], t0 + timedelta(seconds=4), matched=True)
        uow.commit()
    since = t0.isoformat()
    response = api.get("/v1/events/stream", role="viewer", params={"since": since, "timeout_s": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    got = sse_events(response.text)
    assert [e["id"] for e in got] == ["e-1", "e-2", "e-3"]  # created order; the hidden group's event is not sent
    assert all(e["sse_id"].endswith("~" + e["id"]) for e in got)  # feed position ~ event id
    assert got[0]["media"] == {"thumbnail": None, "crop": None, "frame": None}
    admin = sse_events(api.get("/v1/events/stream", params={"since": since, "max_events": 10, "timeout_s": 1}).text)
    assert [e["id"] for e in admin] == ["e-1", "e-2", "e-hidden", "e-3"]
    only_matched = sse_events(api.get("/v1/events/stream", params={"since": since, "matched": "true",
                                                                    "timeout_s": 1}).text)
    assert [e["id"] for e in only_matched] == ["e-3"]
    first_two = sse_events(api.get("/v1/events/stream", params={"since": since, "max_events": 2}).text)
    assert [e["id"] for e in first_two] == ["e-1", "e-2"]
    resumed = api.get("/v1/events/stream", params={"timeout_s": 1}, headers={"Last-Event-ID": "e-2"})
    assert [e["id"] for e in sse_events(resumed.text)] == ["e-hidden", "e-3"]
    # By default the feed starts now: nothing older is replayed.
    assert sse_events(api.get("/v1/events/stream", params={"timeout_s": 1}).text) == []
    assert api.get("/v1/events/stream", headers={"Authorization": "Token nope"}).status_code == 401
    assert api.get("/v1/events/stream", params={"max_events": 0}).status_code == 422


# -- THE PROOF on a real service ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict[str, Any]]:
    from cluster.http_client import wait_healthy
    from cluster.service import start_service, stop_service

    tmp = tmp_path_factory.mktemp("proof")
    env = {"FACEWATCH_HTTP_PORT": str(_free_port()), "FACEWATCH_ADMIN_TOKEN": "fw_test_proof_token",
           "FACEWATCH_GALLERY_SHARDS": "1"}
    config = make_config(tmp, f"sqlite:///{tmp / 'fw.db'}", **env)
    started = start_service(config, num_cpus=4)
    client = httpx.Client(base_url=started.url, headers={"Authorization": f"Token {config.admin_token}"},
                          timeout=120)
    try:
        wait_healthy(client)
        yield {"client": client, "config": config, "tmp": tmp, "url": started.url,
               "env": {"FACEWATCH_HOME": str(config.home), "FACEWATCH_DATABASE_URL": config.database_url, **env}}
    finally:
        client.close()
        stop_service()


@pytest.fixture(scope="module")
def cast(service: dict[str, Any], faces_dir: Path) -> dict[str, Any]:
    """Lin-Manuel Miranda and Alex Lacamoire enrolled through the API; a camera group for the clip."""
    client: httpx.Client = service["client"]
    watch_list = client.post("/v1/watch-lists", json={"name": "cast", "threshold": 0.85}).json()  # strict
    ids = {}
    for name, photo in (("Lin-Manuel Miranda", "lin-manuel-miranda.png"), ("Alex Lacamoire", "alex-lacamoire.png")):
        dossier = client.post("/v1/dossiers", json={"name": name, "watch_list_ids": [watch_list["id"]]}).json()
        enrolled = client.post(f"/v1/dossiers/{dossier['id']}/faces",
                               files={"photo": (photo, (faces_dir / photo).read_bytes(), "image/png")})
        assert enrolled.status_code == 201, enrolled.text
        ids[name] = dossier["id"]
    group = client.post("/v1/camera-groups", json={"name": "stage"}).json()
    return {"watch_list": watch_list["id"], "lmm": ids["Lin-Manuel Miranda"], "alex": ids["Alex Lacamoire"],
            "group": group["id"]}


class FeedReader:
    """Reads GET /v1/events/stream in a thread, as a live client would."""

    def __init__(self, url: str, token: str, params: dict[str, Any]) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._read, args=(url, token, params), daemon=True)
        self.thread.start()

    def _read(self, url: str, token: str, params: dict[str, Any]) -> None:
        try:
            with httpx.stream("GET", f"{url}/v1/events/stream", params=params, timeout=None,
                              headers={"Authorization": f"Token {token}"}) as response:
                buffer = ""
                for chunk in response.iter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        self.events.extend(sse_events(block + "\n\n"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_the_clip_yields_lin_manuel_miranda_only_with_episodes_and_a_live_feed(
        service: dict[str, Any], cast: dict[str, Any], data_dir: Path) -> None:
    client: httpx.Client = service["client"]
    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    feed = FeedReader(service["url"], service["config"].admin_token,
                      {"camera_group_id": cast["group"], "max_events": 1, "timeout_s": 600})
    settings = {"overall_only": True, "detect_every_n": 3}
    created = client.post("/v1/videos", files={"file": (clip.name, clip.read_bytes(), "video/mp4")},
                          data={"camera_group_id": str(cast["group"]), "stream_settings": json.dumps(settings)})
    assert created.status_code == 201, created.text
    video = created.json()
    assert video["status"] in ("queued", "running") and video["progress"]["frames_total"] == 275
    assert video["media"] and video["job"] is not None and video["stream_settings"]["detect_every_n"] == 3

    progress: list[int] = []

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/v1/videos/{video['id']}").json()
        progress.append(body["progress"]["frames_done"])
        return body if body["status"] in ("done", "failed") else None

    done = wait_for(finished, 900, "the video to be processed", every_s=1.0)
    assert done["status"] == "done", done
    assert done["progress"] == {"frames_done": 275, "frames_total": 275, "fraction": 1.0}
    assert progress == sorted(progress)  # progress only grows
    job = client.get(f"/v1/jobs/{done['job']['id']}").json()
    assert job["state"] == "finished" and job["stats"]["summary"]["frames_done"] == 275

    events = client.get("/v1/events", params={"video_id": video["id"], "limit": 100}).json()["results"]
    matched = [e for e in events if e["matched"]]
    unmatched = [e for e in events if not e["matched"]]
    assert (done["events_count"], done["matched_count"], done["unmatched_count"]) == (
        len(events), len(matched), len(unmatched))
    assert 1 <= len(matched) <= 2, [(e["dossier_id"], e["confidence"], e["video_offset_s"]) for e in events]
    assert {e["dossier_id"] for e in matched} == {cast["lmm"]}  # Lin-Manuel Miranda only
    assert not [e for e in events if e["dossier_id"] == cast["alex"]]  # Alex Lacamoire is not in the clip
    assert all(e["confidence"] >= 0.85 and e["watch_list_id"] == cast["watch_list"] for e in matched)
    assert unmatched and all(e["watch_list_id"] == -1 and e["confidence"] is None for e in unmatched)
    # His events are grouped into one episode, matched to him: with the close-up match goes the wide shot
    # of him singing in the first second (unmatched at the strict threshold, but similar enough).
    episodes = {e["episode_id"] for e in matched}
    assert len(episodes) == 1
    episode = client.get(f"/v1/episodes/{next(iter(episodes))}").json()
    assert episode["dossier_id"] == cast["lmm"] and episode["matched"] and episode["event_count"] >= 2
    his = client.get("/v1/events", params={"episode_id": episode["id"], "limit": 100}).json()["results"]
    assert {e["id"] for e in matched} < {e["id"] for e in his}
    assert any(not e["matched"] and e["video_offset_s"] < 1.0 and e["bbox"][0] > 480 for e in his)
    # Media were written by the job and are served.
    for kind in ("thumbnail", "crop", "frame"):
        media = client.get(matched[0]["media"][kind])
        assert media.status_code == 200 and media.headers["content-type"] == "image/jpeg"

    # The live feed (opened before the upload) sent the first event as it was created.
    feed.thread.join(timeout=60)
    assert feed.error is None and len(feed.events) == 1
    assert feed.events[0]["id"] in {e["id"] for e in events}

    # GET /metrics: the named metrics of SPEC §10 count what this video went through.
    from tests.integration.test_metrics import sample_total

    summary = job["stats"]["summary"]
    wanted = {
        "ray_facewatch_frames_decoded_total": summary["frames_decoded"],
        "ray_facewatch_frames_processed_total": summary["frames_processed"],
        "ray_facewatch_faces_detected_total": summary["faces_detected"],
        "ray_facewatch_faces_posted_total": summary["faces_posted"],
        "ray_facewatch_events_created_total": len(events),
        "ray_facewatch_extraction_batch_size_count": 1,
        "ray_facewatch_gallery_search_latency_seconds_count": 1,
        "ray_facewatch_gallery_size": 2,
    }
    assert all(summary[k] > 0 for k in ("frames_decoded", "frames_processed", "faces_detected", "faces_posted"))

    def exported() -> str | None:
        text = client.get("/metrics").text
        return text if all(sample_total(text, name) >= least for name, least in wanted.items()) else None

    text = wait_for(exported, 90, "the video's metrics at /metrics", every_s=2.0)
    assert sample_total(text, "ray_facewatch_frames_decoded_total", camera_id="none") == summary["frames_decoded"]
    assert sample_total(text, "ray_facewatch_events_created_total", matched="true") == len(matched)


def test_process_command_json_shape(service: dict[str, Any], cast: dict[str, Any], data_dir: Path,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main
    from tests.cluster.test_camera_job import cut_clip

    clip = cut_clip(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path / "lmm.mp4", 90, 180)
    for key, value in service["env"].items():
        monkeypatch.setenv(key, value)
    assert main(["process", str(clip), str(tmp_path / "missing.mp4"), "--camera-group", "batch", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"videos"} and len(out["videos"]) == 2
    good, missing = out["videos"]
    assert good["path"] == str(clip) and good["status"] == "done"
    assert good["frames"] == 90 and good["seconds"] == pytest.approx(3.0, abs=0.1) and good["wall_s"] > 0
    assert good["events"] == good["matched"] + good["unmatched"] >= 1
    assert good["matches"] and {m["dossier"] for m in good["matches"]} == {"Lin-Manuel Miranda"}
    for match in good["matches"]:
        assert set(match) >= {"dossier", "watch_list", "confidence", "timestamp"}
        assert match["watch_list"] == "cast" and 0.85 <= match["confidence"] <= 1 and 0 <= match["timestamp"] <= 3
    assert missing["status"] == "failed" and "not found" in missing["error"]
    groups = service["client"].get("/v1/camera-groups", params={"limit": 100}).json()["results"]
    assert "batch" in {g["name"] for g in groups}  # created because it was missing


def test_camera_is_placed_reports_status_restarts_and_stops(service: dict[str, Any], cast: dict[str, Any],
                                                            data_dir: Path, tmp_path: Path) -> None:
    from tests.cluster.test_camera_job import cut_clip

    client: httpx.Client = service["client"]
    clip = cut_clip(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path / "cam.mp4", 90, 120)
    camera = client.post("/v1/cameras", json={
        "name": "loop", "camera_group_id": cast["group"], "url": f"file://{clip}",
        "stream_settings": {"detect_every_n": 5}}).json()
    status = wait_for(lambda: (s := client.get(f"/v1/cameras/{camera['id']}/status").json())["job"] and
                      s["job"]["state"] == "running" and s["stats"].get("frames_decoded") and s, 120,
                      "the camera's job to run")
    assert status["status"] in ("starting", "ok", "degraded") and status["job"]["lease_node"]
    assert status["stats"]["node_id"] == status["job"]["lease_node"]
    first = status["job"]["attempts"]
    restarted = client.post(f"/v1/cameras/{camera['id']}/restart")
    assert restarted.status_code == 200 and restarted.json()["attempts"] == first + 1
    wait_for(lambda: client.get(f"/v1/jobs/{status['job']['id']}").json()["stats"].get("attempt") == first + 1,
             120, "the new attempt's heartbeat")
    stopped = client.patch(f"/v1/cameras/{camera['id']}", json={"active": False})
    assert stopped.status_code == 200
    wait_for(lambda: client.get(f"/v1/cameras/{camera['id']}/status").json()["job"]["state"] == "stopped", 30,
             "the job to stop")
    assert client.get(f"/v1/cameras/{camera['id']}/status").json()["status"] == "disabled"
    assert client.post(f"/v1/cameras/{camera['id']}/restart").json()["code"] == "CONFLICT"
    assert client.delete(f"/v1/cameras/{camera['id']}").status_code == 204


def test_deactivating_a_camera_group_stops_its_cameras_at_once(service: dict[str, Any], data_dir: Path,
                                                               tmp_path: Path) -> None:
    from tests.cluster.test_camera_job import cut_clip

    client: httpx.Client = service["client"]
    group = client.post("/v1/camera-groups", json={"name": "switchable"}).json()
    clip = cut_clip(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path / "g.mp4", 90, 120)
    camera = client.post("/v1/cameras", json={"name": "g-cam", "camera_group_id": group["id"], "url": f"file://{clip}",
                                              "stream_settings": {"detect_every_n": 5}}).json()
    wait_for(lambda: (client.get(f"/v1/cameras/{camera['id']}/status").json()["job"] or {}).get("state")
             == "running", 120, "the camera's job to run")
    assert client.patch(f"/v1/camera-groups/{group['id']}", json={"active": False}).status_code == 200
    # No waiting: the PATCH itself made the JobManager reconcile.
    assert client.get(f"/v1/cameras/{camera['id']}/status").json()["job"]["state"] == "stopped"
    assert client.patch(f"/v1/camera-groups/{group['id']}", json={"active": True}).status_code == 200
    wait_for(lambda: client.get(f"/v1/cameras/{camera['id']}/status").json()["job"]["state"] == "running", 60,
             "the camera to start again")
    assert client.delete(f"/v1/cameras/{camera['id']}").status_code == 204


def test_deleting_a_running_video_cancels_its_job(service: dict[str, Any], cast: dict[str, Any], data_dir: Path,
                                                  tmp_path: Path) -> None:
    from tests.cluster.test_camera_job import cut_clip

    client: httpx.Client = service["client"]
    clip = cut_clip(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path / "slow.mp4", 0, 90)
    video = client.post("/v1/videos", files={"file": (clip.name, clip.read_bytes(), "video/mp4")},
                        data={"camera_group_id": str(cast["group"]),
                              "stream_settings": json.dumps({"play_speed": 0.5})}).json()  # 6 s of playing
    wait_for(lambda: client.get(f"/v1/videos/{video['id']}").json()["status"] == "running", 120, "the video to run")
    assert client.delete(f"/v1/videos/{video['id']}").status_code == 204
    assert client.get(f"/v1/videos/{video['id']}").status_code == 404
    assert client.get("/v1/jobs", params={"video_id": video["id"]}).json()["results"] == []
    assert client.get(video["media"]).status_code == 404  # the upload is gone too
    name = f"job-{video['job']['id']}"
    import ray

    wait_for(lambda: name not in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}, 30,
             "the job actor to go")


def test_enroll_command_uses_the_running_service(service: dict[str, Any], faces_dir: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    client: httpx.Client = service["client"]
    folder = tmp_path / "people"
    (folder / "obama").mkdir(parents=True)
    (folder / "obama" / "one.jpg").write_bytes((faces_dir / "obama.jpg").read_bytes())
    (folder / "obama" / "two.jpg").write_bytes((faces_dir / "obama2.jpg").read_bytes())
    env = {**os.environ, "FACEWATCH_HOME": str(tmp_path / "cli-home"), "FACEWATCH_URL": service["url"],
           "FACEWATCH_ADMIN_TOKEN": service["config"].admin_token}
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "enroll", str(folder), "--watch-list", "presidents",
                           "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting one" not in done.stderr  # it found the service instead of starting its own
    out = json.loads(done.stdout)
    assert (out["enrolled"], out["failed"]) == (2, 0)
    dossier_id = out["results"][0]["dossier_id"]
    # The running service has the dossier, on the new watch list, and finds it by photo at once.
    dossier = client.get(f"/v1/dossiers/{dossier_id}").json()
    lists = client.get("/v1/watch-lists", params={"limit": 1000}).json()["results"]
    assert dossier["name"] == "obama" and {w["name"] for w in lists if w["id"] in dossier["watch_list_ids"]} == {
        "presidents"}
    assert len(client.get(f"/v1/dossiers/{dossier_id}/faces").json()["results"]) == 2
    found = client.post("/v1/search", data={"target": "dossiers", "limit": "1"},
                        files={"photo": ("q.jpg", (faces_dir / "obama.jpg").read_bytes(), "image/jpeg")})
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["dossier"]["id"] == dossier_id


def test_stop_service_leaves_nothing_running(service: dict[str, Any]) -> None:
    import ray

    from cluster.service import stop_named_actors, stop_service
    from facewatch.names import EVENT_PIPELINE

    def ours() -> set[str]:
        return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "facewatch"}

    assert {"job-manager", EVENT_PIPELINE} <= ours()
    assert stop_named_actors() >= 3  # the manager, the event pipeline, gallery shards (and any job actors)
    wait_for(lambda: not ours(), 30, "every facewatch actor to go")
    stop_service()
    assert not ray.is_initialized()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{service['url']}/health", timeout=5)
