"""/v1/tasks and the integrator's API on real models, real actors and the shared photos.

One installation for the module: Ray (4 CPUs), the extractor pool, the galleries, the event pipeline,
the webhook dispatcher and the task supervisor, the API app in-process. Events come from still photos
posted to `POST /v1/events` (the same pipeline as a camera), so every task kind runs on real events.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import zipfile
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from fastapi.testclient import TestClient
from PIL import Image
from ray import serve
from sqlalchemy import func, select

from actors.task_supervisor import SUPERVISOR_NAME, SupervisorTuning, start_task_supervisor
from cluster.service import open_galleries, start_event_pipelines, start_webhook_dispatcher
from facewatch.settings import load_config
from serve_apps.api.app import create_app
from serve_apps.api.services import Services
from serve_apps.extractor import EXTRACTOR_APP, build_extractor_application
from storage import orm
from storage.db import migrate
from storage.dossier_vectors import EVENTS_GALLERY
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, role_tokens
from tests.helpers import local_ray, wait_for

EMBEDDER = "dlib_resnet_v1"


class Receiver:
    """A real HTTP receiver: every JSON body POSTed to it, by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.bodies.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def items(self, path: str) -> list:
        out = []
        for p, body in list(self.bodies):
            if p == path:
                out.extend(body if isinstance(body, list) else [body])
        return out


# A task's effects (notifications, webhooks) take a while on a loaded machine.
settle = partial(wait_for, timeout_s=120.0, every_s=0.3)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path):
    tmp = tmp_path_factory.mktemp("tasks")
    url = f"sqlite:///{tmp / 'fw.db'}"
    migrate(url)
    config = load_config({"FACEWATCH_HOME": str(tmp / "home"), "FACEWATCH_DATABASE_URL": url,
                          "FACEWATCH_PUBLIC_URL": "http://testserver"})
    with local_ray(4, "test-tasks"):
        serve.run(build_extractor_application(config, EMBEDDER), name=EXTRACTOR_APP, route_prefix=None)
        galleries = open_galleries(config, EMBEDDER)
        start_event_pipelines(config, EMBEDDER)
        start_webhook_dispatcher(config)
        start_task_supervisor(config, EMBEDDER, SupervisorTuning(poll_s=0.3, max_parallel=2, part_cpus=0.5))
        tokens = role_tokens(url, suffix="")
        client = TestClient(create_app(config, Services(EMBEDDER, galleries)), raise_server_exceptions=False)
        api = ApiClient(client, tokens)
        receiver = Receiver()
        group = api.post("/v1/camera-groups", json={"name": "lobby"}).json()
        camera = api.post("/v1/cameras", json={"name": "door", "camera_group_id": group["id"],
                                               "meta": {"floor": 3}, "external_id": "door-1"}).json()
        vip = api.post("/v1/watch-lists", json={"name": "VIP", "camera_group_ids": [group["id"]]}).json()
        hook = api.post("/v1/webhooks", json={"title": "all", "url": f"{receiver.url}/hook",
                                              "event_types": ["event", "task_status", "camera_status"]}).json()
        people = {}
        for name, file in (("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")):
            office = "president" if "Obama" in name else "vp"
            dossier = api.post("/v1/dossiers", json={"name": name, "watch_list_ids": [vip["id"]],
                                                     "meta": {"office": office}}).json()
            enrolled = api.post(f"/v1/dossiers/{dossier['id']}/faces", files=photo(faces_dir / file))
            assert enrolled.status_code == 201, enrolled.text
            people[name] = dossier["id"]
        yield SimpleNamespace(api=api, url=url, config=config, group=group, camera=camera, vip=vip, hook=hook,
                              people=people, receiver=receiver, faces=faces_dir, events={})
        receiver.server.shutdown()
        serve.shutdown()


def photo(path: Path, field: str = "photo") -> dict:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def post_event(system, path: Path, **form) -> dict:
    where = {} if "camera_group_id" in form else {"camera_id": str(system.camera["id"])}
    data = {**where, **{k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in form.items()}}
    response = system.api.post("/v1/events", files=photo(path), data=data, role="operator")
    assert response.status_code == 201, response.text
    return response.json()


def run_task(system, kind: str, params: dict, role: str = "admin", timeout_s: float = 300.0, **extra) -> dict:
    response = system.api.post("/v1/tasks", json={"kind": kind, "params": params, **extra}, role=role)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["status"] == "pending"
    return wait_task(system, task["id"], role, timeout_s)


def wait_task(system, task_id: int, role: str = "admin", timeout_s: float = 300.0) -> dict:
    def final():
        body = system.api.get(f"/v1/tasks/{task_id}", role=role).json()
        return body if body["status"] in ("done", "failed", "cancelled") else None

    return wait_for(final, timeout_s)


# -- events from still photos ------------------------------------------------------------------------


def test_an_event_from_a_still_photo_is_matched_in_the_live_feed_and_reaches_the_webhook(system) -> None:
    since = datetime.now(UTC).isoformat()
    body = post_event(system, system.faces / "obama2.jpg", meta={"badge": 42, "floor": 3}, external_id="gate-7")
    assert body["dropped"] == 0 and len(body["events"]) == 1
    event = body["events"][0]
    assert event["matched"] is True and event["dossier_id"] == system.people["Barack Obama"]
    assert event["camera_id"] == system.camera["id"] and event["meta"] == {"badge": 42, "floor": 3}
    assert event["external_id"] == "gate-7" and event["media"]["crop"] and event["media"]["frame"]
    system.events["obama2"] = event["id"]
    feed = system.api.get("/v1/events/stream", role="viewer",
                          params={"since": since, "max_events": 1, "timeout_s": 20})
    assert feed.status_code == 200, feed.text
    lines = [json.loads(line[5:]) for line in feed.text.splitlines() if line.startswith("data:")]
    assert [e["id"] for e in lines] == [event["id"]] and lines[0]["matched"] is True
    delivered = settle(lambda: [e for e in system.receiver.items("/hook") if e.get("id") == event["id"]])
    assert delivered[0]["dossier_id"] == system.people["Barack Obama"]


def test_more_events_for_the_tasks(system) -> None:
    """Obama (two more photos), Biden, both in one photo (face_select=all), and people in no dossier."""
    faces = system.faces
    system.events["obama_720"] = post_event(system, faces / "obama-720p.jpg", meta={"badge": 7})["events"][0]["id"]
    system.events["obama_kn"] = post_event(system, faces / "knn_examples/train/obama/obama.jpg",
                                           meta={"floor": 5})["events"][0]["id"]
    system.events["biden"] = post_event(system, faces / "biden.jpg", meta={"floor": 1})["events"][0]["id"]
    both = post_event(system, faces / "two_people.jpg", face_select="all", meta={"tag": "junk"})
    assert len(both["events"]) == 2
    assert {e["dossier_id"] for e in both["events"]} == set(system.people.values())
    system.events["both"] = [e["id"] for e in both["events"]]
    strangers = post_event(system, faces / "knn_examples/train/kit_harington/john1.jpeg", meta={"tag": "junk"})
    assert strangers["events"][0]["matched"] is False
    system.events["stranger"] = strangers["events"][0]["id"]
    listed = system.api.get("/v1/events?meta.floor__gte=3&limit=100").json()["results"]
    assert {e["id"] for e in listed} == {system.events["obama2"], system.events["obama_kn"]}
    assert [e["id"] for e in system.api.get("/v1/events?meta.badge=42").json()["results"]] == [system.events["obama2"]]
    assert [e["id"] for e in system.api.get("/v1/events?external_id=gate-7").json()["results"]] == \
        [system.events["obama2"]]
    assert system.api.get("/v1/events?meta.floor__gte=high").status_code == 400


def test_metadata_on_cameras_and_dossiers(system) -> None:
    api = system.api
    assert [c["id"] for c in api.get("/v1/cameras?meta.floor=3").json()["results"]] == [system.camera["id"]]
    assert api.get("/v1/cameras?meta.floor__gt=3").json()["results"] == []
    assert [d["name"] for d in api.get("/v1/dossiers?meta.office=vp").json()["results"]] == ["Joe Biden"]
    too_big = api.post("/v1/dossiers", json={"name": "x", "meta": {"blob": "x" * 5000}})
    assert too_big.status_code in (400, 422) and too_big.json()["param"] in ("meta", None)
    patched = api.patch(f"/v1/cameras/{system.camera['id']}", json={"meta": {"floor": 4}}).json()
    assert patched["meta"] == {"floor": 4}
    api.patch(f"/v1/cameras/{system.camera['id']}", json={"meta": {"floor": 3}})


def test_a_dossier_from_events_takes_their_crops_and_matches(system) -> None:
    api = system.api
    body = api.post("/v1/dossiers", json={"name": "Obama from events", "event_ids": [system.events["obama_720"]]},
                    role="operator")
    assert body.status_code == 201, body.text
    dossier = body.json()
    assert dossier["face_count"] == 1
    faces = api.get(f"/v1/dossiers/{dossier['id']}/faces").json()["results"]
    assert faces[0]["crop"] and faces[0]["meta"] == {"from_event": system.events["obama_720"]}
    found = api.post("/v1/search", files=photo(system.faces / "obama.jpg"),
                     data={"target": "dossiers", "include_inactive": "true", "limit": "10"}).json()["results"]
    assert dossier["id"] in [r["dossier"]["id"] for r in found]
    assert api.post("/v1/dossiers", json={"name": "y", "event_ids": ["nope"]}).status_code == 400
    api.delete(f"/v1/dossiers/{dossier['id']}")


# -- batch detection -----------------------------------------------------------------------------------


def test_batch_detect_with_a_corrupt_photo_answers_each_photo(system) -> None:
    files = [("photos", ("obama.jpg", (system.faces / "obama.jpg").read_bytes(), "image/jpeg")),
             ("photos", ("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg")),
             ("photos", ("two.jpg", (system.faces / "two_people.jpg").read_bytes(), "image/jpeg"))]
    response = system.api.post("/v1/detect", files=files, role="viewer")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["file"] for r in results] == ["obama.jpg", "broken.jpg", "two.jpg"]
    assert len(results[0]["faces"]) == 1 and results[0]["error"] is None
    assert results[1]["faces"] == [] and results[1]["error"]["code"] == "BAD_IMAGE"
    assert len(results[2]["faces"]) == 2
    single = system.api.post("/v1/detect", files=photo(system.faces / "obama.jpg"), role="viewer").json()
    assert len(single["faces"]) == 1  # the one-photo form is unchanged


def test_detect_on_an_aligned_crop_embeds_it_like_the_pipeline(system) -> None:
    event = system.api.get(f"/v1/events/{system.events['obama2']}").json()
    crop_key = event["media"]["crop"].rsplit("/", 1)[1]
    crop = LocalMediaStore(system.config.media_root).get(crop_key)
    body = system.api.post("/v1/detect", files={"photo": ("crop.jpg", crop, "image/jpeg")},
                           data={"aligned": "true", "with_embeddings": "true"}).json()
    assert len(body["faces"]) == 1
    import numpy as np

    with UnitOfWork(system.url) as uow:
        stored = np.frombuffer(uow.vectors.find(EVENTS_GALLERY, system.events["obama2"], EMBEDDER).vector, np.float32)
    assert float(np.dot(stored, np.asarray(body["faces"][0]["embedding"], np.float32))) > 0.97


# -- task kinds ------------------------------------------------------------------------------------------


def test_export_round_trips_the_filtered_events_and_their_media(system) -> None:
    obama = system.people["Barack Obama"]
    expected = {e["id"] for e in system.api.get(f"/v1/events?dossier_id={obama}&limit=100").json()["results"]}
    assert len(expected) >= 4
    task = run_task(system, "export", {"target": "events", "filters": {"dossier_id": obama}, "part_size": 2},
                    role="operator")
    assert task["status"] == "done", task
    assert task["parts_total"] == (len(expected) + 1) // 2 and task["parts_done"] == task["parts_total"]
    response = system.api.get(f"/v1/tasks/{task['id']}/result", role="operator")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    rows = list(csv.DictReader(io.StringIO(archive.read("events.csv").decode())))
    assert [r["id"] for r in rows] and {r["id"] for r in rows} == expected and len(rows) == len(expected)
    names = set(archive.namelist())
    store = LocalMediaStore(system.config.media_root)
    for row in rows:
        for column in ("thumbnail", "crop", "frame"):
            assert row[column] in names
            assert archive.read(row[column]) == store.get(row[column].split("/", 1)[1])
    assert task["summary"]["rows"] == len(expected)
    # A meta filter, and a size cap that leaves the media out but keeps the CSV whole.
    capped = run_task(system, "export", {"filters": {"meta.floor__gte": 3}, "max_bytes": 2048})
    archive = zipfile.ZipFile(io.BytesIO(system.api.get(f"/v1/tasks/{capped['id']}/result").content))
    ids = {r["id"] for r in csv.DictReader(io.StringIO(archive.read("events.csv").decode()))}
    assert ids == {system.events["obama2"], system.events["obama_kn"]}
    assert capped["summary"]["media_left_out"] > 0


def test_export_of_dossiers(system) -> None:
    task = run_task(system, "export", {"target": "dossiers", "filters": {"watch_list_id": system.vip["id"]}})
    archive = zipfile.ZipFile(io.BytesIO(system.api.get(f"/v1/tasks/{task['id']}/result").content))
    rows = list(csv.DictReader(io.StringIO(archive.read("dossiers.csv").decode())))
    assert sorted(r["name"] for r in rows) == ["Barack Obama", "Joe Biden"]
    for row in rows:
        for name in json.loads(row["photos"]):
            assert name in archive.namelist()


def test_cross_match_finds_obamas_events_from_his_dossier(system) -> None:
    obama, biden = system.people["Barack Obama"], system.people["Joe Biden"]
    task = run_task(system, "cross_match", {
        "reference": {"target": "dossiers", "dossier_ids": [obama, biden]},
        "candidates": {"target": "events", "filters": {"camera_group_id": system.group["id"]}},
        "limit": 10, "threshold": "medium"}, role="operator")
    assert task["status"] == "done", task
    result = system.api.get(f"/v1/tasks/{task['id']}/result", role="operator").json()
    by_face = {}
    with UnitOfWork(system.url) as uow:
        owners = dict(uow.session.execute(select(orm.DossierFace.id, orm.DossierFace.dossier_id)).all())
    for match in result:
        by_face[owners[match["reference_id"]]] = {c["candidate_id"] for c in match["candidates"]}
        assert all(c["confidence"] >= 0.75 for c in match["candidates"])
    obama_events = {system.events[k] for k in ("obama2", "obama_720", "obama_kn")}
    assert obama_events <= by_face[obama]
    assert system.events["biden"] not in by_face[obama] and system.events["stranger"] not in by_face[obama]
    assert system.events["biden"] in by_face[biden]
    # Events against the watch list: the stranger has no candidate and is left out.
    task = run_task(system, "cross_match", {
        "reference": {"target": "events", "filters": {"camera_id": system.camera["id"]}},
        "candidates": {"target": "dossiers", "watch_list_id": system.vip["id"]}, "limit": 1})
    result = system.api.get(f"/v1/tasks/{task['id']}/result").json()
    refs = {m["reference_id"]: m["candidates"][0]["dossier_id"] for m in result}
    assert refs[system.events["biden"]] == biden and refs[system.events["obama2"]] == obama
    assert system.events["stranger"] not in refs


def _zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_evaluate_reproduces_the_calibration_documents_rates(system) -> None:
    from benchmarks.calibrate_embedders import labelled_photos

    entries = [(f"{who}/{path.parent.name}-{path.name}", path.read_bytes())
               for path, who in labelled_photos(system.faces)]
    response = system.api.post("/v1/tasks", data={"kind": "evaluate", "params": json.dumps({"part_size": 8})},
                               files={"file": ("set.zip", _zip_of(entries), "application/zip")}, role="operator")
    assert response.status_code == 201, response.text
    task = wait_task(system, response.json()["id"], "operator")
    assert task["status"] == "done", task
    s = task["summary"]
    # docs/calibration.md: 22 faces of 6 people, 55 same-person and 176 different-person pairs.
    assert (s["faces"], s["people"], s["genuine_pairs"], s["impostor_pairs"]) == (22, 6, 55, 176)
    presets = s["presets"]
    assert (presets["strict"]["false_matches"], presets["strict"]["false_non_matches"]) == (0, 2)
    assert (presets["medium"]["false_matches"], presets["medium"]["false_non_matches"]) == (0, 0)
    assert (presets["low"]["false_matches"], presets["low"]["false_non_matches"]) == (10, 0)
    assert presets["none"]["fmr"] == 1.0
    assert s["auc"] == pytest.approx(1.0) and s["eer"] == 0.0
    assert s["identification"]["top1"] == 1.0
    report = system.api.get(f"/v1/tasks/{task['id']}/result", role="operator").json()
    assert report["roc"]["points"] and report["presets"]["low"]["fmr"] == pytest.approx(10 / 176, abs=1e-6)
    plot = system.api.get(f"/v1/tasks/{task['id']}/result?file=roc.png", role="operator")
    assert plot.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(plot.content)).size == (480, 480)


def test_estimate_describes_every_photo_as_json_lines(system) -> None:
    entries = [("a/obama.jpg", (system.faces / "obama.jpg").read_bytes()),
               ("b/two.jpg", (system.faces / "two_people.jpg").read_bytes()),
               ("c/broken.png", b"\x89PNG not a png")]
    response = system.api.post("/v1/tasks", data={"kind": "estimate",
                                                  "params": json.dumps({"with_embeddings": True, "part_size": 2})},
                               files={"file": ("photos.zip", _zip_of(entries), "application/zip")})
    task = wait_task(system, response.json()["id"])
    assert task["status"] == "done" and task["parts_total"] == 2, task
    lines = [json.loads(line) for line in system.api.get(f"/v1/tasks/{task['id']}/result").text.splitlines()]
    by_file = {line["file"]: line for line in lines}
    assert set(by_file) == {"a/obama.jpg", "b/two.jpg", "c/broken.png"}
    assert len(by_file["a/obama.jpg"]["faces"]) == 1 and len(by_file["b/two.jpg"]["faces"]) == 2
    face = by_file["a/obama.jpg"]["faces"][0]
    assert len(face["embedding"]) == 128 and 0 <= face["quality"] <= 1 and face["gender"] in ("male", "female")
    assert by_file["c/broken.png"]["error"]["code"] == "BAD_IMAGE"


def _counts(url: str) -> tuple[int, int]:
    with UnitOfWork(url) as uow:
        return (int(uow.session.scalar(select(func.count()).select_from(orm.Event)) or 0),
                int(uow.session.scalar(select(func.count()).select_from(orm.FaceVector)
                                       .where(orm.FaceVector.gallery == EVENTS_GALLERY)) or 0))


def test_cleanup_by_filter_removes_rows_files_and_vectors_and_nothing_else(system) -> None:
    junk = [*system.events["both"], system.events["stranger"]]
    with UnitOfWork(system.url) as uow:
        keys = {e.id: (e.thumbnail_key, e.crop_key, e.frame_key) for e in uow.session.scalars(select(orm.Event))}
    store = LocalMediaStore(system.config.media_root)
    kept_keys = {k for i, ks in keys.items() if i not in junk for k in ks}
    junk_only = {k for i in junk for k in keys[i]} - kept_keys
    assert junk_only and all(store.exists(k) for k in junk_only)
    events_before, vectors_before = _counts(system.url)
    denied = system.api.post("/v1/tasks", json={"kind": "cleanup", "params": {"target": "events",
                                                                              "filters": {"meta.tag": "junk"}}},
                             role="operator")
    assert denied.status_code == 403
    assert system.api.post("/v1/tasks", json={"kind": "cleanup", "params": {"target": "events"}}).status_code == 400
    task = run_task(system, "cleanup", {"target": "events", "filters": {"meta.tag": "junk"}, "part_size": 2})
    assert task["status"] == "done" and task["summary"]["events_deleted"] == len(junk), task
    events_after, vectors_after = _counts(system.url)
    assert (events_before - events_after, vectors_before - vectors_after) == (len(junk), len(junk))
    for event_id in junk:
        assert system.api.get(f"/v1/events/{event_id}").status_code == 404
    assert not any(store.exists(k) for k in junk_only)
    assert all(store.exists(k) for k in kept_keys)  # files other events use stay
    found = system.api.post("/v1/search", files=photo(system.faces / "two_people.jpg"),
                            data={"target": "events", "threshold": "none", "limit": "50"}).json()["results"]
    assert not {r["event"]["id"] for r in found} & set(junk)


def test_a_failing_part_is_reported_with_its_id_and_code(system) -> None:
    task = run_task(system, "reextract", {"model": "no-such-model"})
    assert task["status"] == "failed" and task["parts_failed"] == 1
    (error,) = task["errors"]
    assert error["code"] == "BAD_PARAM" and "no-such-model" in error["error"] and error["part_id"] > 0


def test_task_lifecycle_cancel_delete_list_and_notifications(system) -> None:
    api = system.api
    assert api.post("/v1/tasks", json={"kind": "nope"}).status_code in (400, 422)
    assert api.post("/v1/tasks", json={"kind": "export", "params": {"target": "faces"}}).status_code == 400
    assert api.post("/v1/tasks", json={"kind": "export", "params": {}}, role="viewer").status_code == 403
    task = api.post("/v1/tasks", json={"kind": "export", "params": {},
                                       "notify_url": f"{system.receiver.url}/notify"}).json()
    done = wait_task(system, task["id"])
    assert done["status"] == "done"
    told = settle(lambda: [b["status"] for b in system.receiver.items("/notify") if b["id"] == task["id"]]
                    if len([b for b in system.receiver.items("/notify") if b["id"] == task["id"]]) >= 3 else None)
    assert told == ["pending", "running", "done"]
    hooked = settle(lambda: [b["status"] for b in system.receiver.items("/hook")
                               if b.get("type") == "task_status" and b["id"] == task["id"]] or None)
    assert hooked[-1] in ("running", "done")
    assert api.post(f"/v1/tasks/{task['id']}/cancel").status_code == 409  # already done
    listed = api.get("/v1/tasks?kind=export&status=done&limit=2").json()
    assert len(listed["results"]) == 2 and listed["next_cursor"]
    assert all(t["kind"] == "export" for t in listed["results"])
    assert api.get(f"/v1/tasks/{task['id']}", role="operator").status_code == 404  # not the operator's task
    assert api.delete(f"/v1/tasks/{task['id']}").status_code == 204
    assert api.get(f"/v1/tasks/{task['id']}").status_code == 404
    assert not (system.config.home / "task_results" / str(task["id"])).exists()
    # Cancelling a task before it is done; its result is refused.
    pending = api.post("/v1/tasks", json={"kind": "export", "params": {"part_size": 1}}).json()
    cancelled = api.post(f"/v1/tasks/{pending['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert api.get(f"/v1/tasks/{pending['id']}/result").status_code == 409


def test_a_task_survives_its_supervisor_being_killed(system) -> None:
    task = system.api.post("/v1/tasks", json={"kind": "export", "params": {"part_size": 1}}).json()
    handle = ray.get_actor(SUPERVISOR_NAME, namespace="facewatch")
    settle(lambda: system.api.get(f"/v1/tasks/{task['id']}").json()["parts_done"] >= 1, every_s=0.1)
    ray.kill(handle, no_restart=False)  # Ray restarts it; the new one resumes from the DB
    done = wait_task(system, task["id"])
    assert done["status"] == "done" and done["parts_done"] == done["parts_total"] == done["summary"]["rows"]
    archive = zipfile.ZipFile(io.BytesIO(system.api.get(f"/v1/tasks/{task['id']}/result").content))
    ids = [r["id"] for r in csv.DictReader(io.StringIO(archive.read("events.csv").decode()))]
    assert len(ids) == len(set(ids)) == done["parts_total"]


def test_camera_status_changes_reach_subscribed_webhooks(system) -> None:
    with UnitOfWork(system.url) as uow:
        camera = uow.cameras.get(system.camera["id"])
        old = camera.status
        camera.status, camera.status_error = "failing", "rtsp: connection refused"
        uow.commit()
    notice = settle(lambda: [b for b in system.receiver.items("/hook") if b.get("type") == "camera_status"])
    assert notice[0]["old_status"] == old and notice[0]["status"] == "failing"
    assert notice[0]["error"] == "rtsp: connection refused" and notice[0]["camera_id"] == system.camera["id"]


def test_identify_and_verify_every_face_of_a_photo_and_raw_vectors(system) -> None:
    api, faces = system.api, system.faces
    body = api.post("/v1/search", files=photo(faces / "two_people.jpg"),
                    data={"target": "dossiers", "face_select": "all", "limit": "1"}).json()
    assert len(body["faces"]) == 2
    found = {f["results"][0]["dossier"]["id"] for f in body["faces"] if f["results"]}
    assert found == set(system.people.values())
    assert body["results"] == body["faces"][0]["results"]  # `results` stays the biggest face's
    vector = api.post("/v1/detect", files=photo(faces / "biden.jpg"), data={"with_embeddings": "true"}).json()[
        "faces"][0]["embedding"]
    by_vector = api.post("/v1/search", json={"vector": vector, "target": "dossiers", "limit": 1}).json()["results"]
    assert by_vector[0]["dossier"]["id"] == system.people["Joe Biden"]
    assert api.post("/v1/search", json={"vector": [0.1, 0.2], "target": "dossiers"}).status_code == 400
    pairs = api.post("/v1/verify", files={**photo(faces / "two_people.jpg", "photo1"),
                                          **photo(faces / "biden.jpg", "photo2")},
                     data={"face_select": "all"}).json()
    assert len(pairs["pairs"]) == 2 and pairs["verified"] is True
    assert pairs["pairs"][0]["verified"] is True and pairs["pairs"][1]["verified"] is False
    raw = api.post("/v1/verify", files=photo(faces / "biden.jpg", "photo1"),
                   data={"vector2": json.dumps(vector)}).json()
    assert raw["confidence"] > 0.99 and "pairs" not in raw


# -- metadata on dossier faces, clean-up of dossier faces and of unused models' vectors, server folders --


def test_dossier_faces_carry_meta_and_their_list_filters_on_it(system) -> None:
    api, obama = system.api, system.people["Barack Obama"]
    enrolled = api.post(f"/v1/dossiers/{obama}/faces", files=photo(system.faces / "obama-720p.jpg"),
                        data={"meta": json.dumps({"year": 2019, "source": "scan"}), "external_id": "scan-1"})
    assert enrolled.status_code == 201, enrolled.text
    face = enrolled.json()
    assert face["meta"] == {"year": 2019, "source": "scan"} and face["external_id"] == "scan-1"

    def listed(**params) -> list[int]:
        response = api.get(f"/v1/dossiers/{obama}/faces", params=params)
        assert response.status_code == 200, response.text
        return [f["id"] for f in response.json()["results"]]

    everything = listed()
    assert face["id"] in everything and len(everything) >= 2
    assert listed(**{"meta.year__gte": 2019}) == [face["id"]]
    assert listed(**{"meta.year__lt": 2019}) == []
    assert listed(**{"meta.source": "scan"}) == [face["id"]] == listed(external_id="scan-1")
    assert api.get(f"/v1/dossiers/{obama}/faces", params={"meta.year__gte": "soon"}).status_code == 400
    patched = api.patch(f"/v1/dossiers/{obama}/faces/{face['id']}", json={"meta": {"year": 2015},
                                                                         "external_id": None})
    assert patched.status_code == 200, patched.text
    assert patched.json()["meta"] == {"year": 2015} and patched.json()["external_id"] is None
    assert listed(**{"meta.year__gte": 2019}) == [] and listed(**{"meta.year__lte": 2015}) == [face["id"]]
    assert api.patch(f"/v1/dossiers/{obama}/faces/{face['id']}", json={"meta": None}).status_code == 422
    too_big = api.post(f"/v1/dossiers/{obama}/faces", files=photo(system.faces / "obama.jpg"),
                       data={"meta": json.dumps({"blob": "x" * 5000})})
    assert too_big.status_code == 400 and too_big.json()["param"] == "meta"
    assert api.post(f"/v1/dossiers/{obama}/faces", files=photo(system.faces / "obama.jpg"),
                    data={"meta": "[1, 2]"}).status_code == 400
    assert listed() == everything  # the refused photos stored nothing
    # Dossier lists take ranges too; a value that is not a number is never in one.
    assert api.get("/v1/dossiers", params={"meta.office__gte": 0}).json()["results"] == []
    api.delete(f"/v1/dossiers/{obama}/faces/{face['id']}")


def _vector_count(url: str, gallery: str, model: str | None = None) -> int:
    with UnitOfWork(url) as uow:
        stmt = select(func.count()).select_from(orm.FaceVector).where(orm.FaceVector.gallery == gallery)
        if model is not None:
            stmt = stmt.where(orm.FaceVector.model == model)
        return int(uow.session.scalar(stmt) or 0)


def test_cleanup_of_dossier_faces_by_filter_removes_their_vectors_and_files_and_nothing_else(system) -> None:
    from storage.dossier_vectors import DOSSIERS_GALLERY

    api, biden = system.api, system.people["Joe Biden"]
    old = api.post(f"/v1/dossiers/{biden}/faces", files=photo(system.faces / "knn_examples/train/biden/biden2.jpg"),
                   data={"meta": json.dumps({"batch": "2009"})})
    assert old.status_code == 201, old.text
    old = old.json()
    with UnitOfWork(system.url) as uow:
        rows = {f.id: (f.source_key, f.crop_key) for f in uow.session.scalars(select(orm.DossierFace))}
    kept = {k for i, keys in rows.items() if i != old["id"] for k in keys}
    gone = set(rows[old["id"]]) - kept
    store = LocalMediaStore(system.config.media_root)
    assert gone and all(store.exists(k) for k in gone)
    faces_before = api.get(f"/v1/dossiers/{biden}").json()["face_count"]
    vectors_before = _vector_count(system.url, DOSSIERS_GALLERY)
    task = run_task(system, "cleanup", {"target": "dossier_faces", "filters": {"meta.batch": "2009"}})
    assert task["status"] == "done", task
    assert (task["summary"]["dossier_faces_deleted"], task["summary"]["media_deleted"]) == (1, len(gone))
    assert api.get(f"/v1/dossiers/{biden}").json()["face_count"] == faces_before - 1
    assert api.get(f"/v1/dossiers/{biden}/faces/{old['id']}").status_code == 404
    assert _vector_count(system.url, DOSSIERS_GALLERY) == vectors_before - 1
    assert not any(store.exists(k) for k in gone) and all(store.exists(k) for k in kept)
    found = api.post("/v1/search", files=photo(system.faces / "knn_examples/train/biden/biden2.jpg"),
                     data={"target": "dossiers", "threshold": "none", "limit": "50"}).json()["results"]
    assert found and old["id"] not in {r.get("face_id") for r in found}
    assert found[0]["dossier"]["id"] == biden  # his other photos still match


def test_cleanup_of_vectors_removes_only_models_no_longer_in_use(system) -> None:
    import numpy as np

    with UnitOfWork(system.url) as uow:
        face_id = uow.session.scalar(select(orm.DossierFace.id).order_by(orm.DossierFace.id).limit(1))
        stale = np.ones(512, np.float32) / np.sqrt(512)
        for gallery, item in (("dossiers", str(face_id)), (EVENTS_GALLERY, system.events["obama2"])):
            uow.session.add(orm.FaceVector(gallery=gallery, item_id=item, model="facenet_vggface2", dim=512,
                                           vector=stale.tobytes()))
        uow.commit()
    active = {g: _vector_count(system.url, g, EMBEDDER) for g in ("dossiers", EVENTS_GALLERY)}
    assert system.api.post("/v1/tasks", json={"kind": "cleanup", "params": {
        "target": "vectors", "filters": {"camera_id": 1}}}).status_code == 400
    task = run_task(system, "cleanup", {"target": "vectors"})
    assert task["status"] == "done" and task["summary"]["vectors_deleted"] == 2, task
    assert {g: _vector_count(system.url, g, EMBEDDER) for g in active} == active
    assert _vector_count(system.url, "dossiers", "facenet_vggface2") == 0
    assert _vector_count(system.url, EVENTS_GALLERY, "facenet_vggface2") == 0
    found = system.api.post("/v1/search", files=photo(system.faces / "obama.jpg"),
                            data={"target": "dossiers", "limit": "1"}).json()["results"]
    assert found[0]["dossier"]["id"] == system.people["Barack Obama"]


def test_estimate_reads_a_folder_on_the_server(system, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "door").mkdir(parents=True)
    (folder / "obama.jpg").write_bytes((system.faces / "obama.jpg").read_bytes())
    (folder / "door" / "two.jpg").write_bytes((system.faces / "two_people.jpg").read_bytes())
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".hidden.jpg").write_bytes(b"left out")
    denied = system.api.post("/v1/tasks", json={"kind": "estimate", "params": {"path": str(folder)}},
                             role="operator")
    assert denied.status_code == 403
    task = run_task(system, "estimate", {"path": str(folder), "part_size": 1})
    assert task["status"] == "done" and task["parts_total"] == 2, task
    assert (task["summary"]["photos"], task["summary"]["faces"], task["summary"]["photo_errors"]) == (2, 3, 0)
    lines = [json.loads(line) for line in system.api.get(f"/v1/tasks/{task['id']}/result").text.splitlines()]
    assert [line["file"] for line in lines] == ["door/two.jpg", "obama.jpg"]
    assert "embedding" not in lines[1]["faces"][0] and lines[1]["faces"][0]["bbox"]
    missing = run_task(system, "estimate", {"path": str(tmp_path / "nowhere")})
    assert missing["status"] == "failed" and "BAD_PARAM" in missing["error"]


def test_an_event_from_a_still_photo_at_a_camera_group(system) -> None:
    body = post_event(system, system.faces / "biden.jpg", camera_group_id=system.group["id"])
    event = body["events"][0]
    assert event["camera_id"] is None and event["camera_group_id"] == system.group["id"]
    assert event["matched"] is True and event["dossier_id"] == system.people["Joe Biden"]
    both = system.api.post("/v1/events", files=photo(system.faces / "biden.jpg"),
                           data={"camera_id": str(system.camera["id"]), "camera_group_id": str(system.group["id"])},
                           role="operator")
    assert both.status_code == 400 and both.json()["param"] == "camera_id"


def test_an_unknown_filter_name_is_refused_not_ignored(system) -> None:
    """A typo must not widen a selection: a clean-up of {"camra_id": …} would otherwise delete every event."""
    before = _counts(system.url)
    for kind, params in (("cleanup", {"target": "events", "filters": {"camra_id": system.camera["id"]}}),
                         ("cleanup", {"target": "dossier_faces", "filters": {"nme": "x"}}),
                         ("export", {"filters": {"floor": 3}})):
        answer = system.api.post("/v1/tasks", json={"kind": kind, "params": params})
        assert answer.status_code == 400, answer.text
        assert "unknown filter" in answer.json()["reason"]
    assert _counts(system.url) == before


def test_cross_match_of_a_persons_events(system) -> None:
    person = system.api.get(f"/v1/events/{system.events['obama2']}").json()["person_id"]
    assert person is not None
    task = run_task(system, "cross_match", {
        "reference": {"target": "events", "filters": {"person_id": person}},
        "candidates": {"target": "dossiers", "watch_list_id": system.vip["id"]}, "limit": 1})
    assert task["status"] == "done", task
    result = system.api.get(f"/v1/tasks/{task['id']}/result").json()
    persons_events = {e["id"] for e in system.api.get("/v1/events", params={"person_id": person,
                                                                             "limit": 100}).json()["results"]}
    assert {m["reference_id"] for m in result} == persons_events and system.events["obama2"] in persons_events
    assert {m["candidates"][0]["dossier_id"] for m in result} == {system.people["Barack Obama"]}
