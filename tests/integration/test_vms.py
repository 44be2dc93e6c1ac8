"""The VMS integration over real HTTP on loopback: facewatch's API, the reference plug-in (cluster/vms_plugin.py)
and a generic VMS (a declaration file and an alarm inbox). Camera import and keeping in step, stream URLs
resolved through the plug-in at every open, events to the VMS with the sender's retries and limits, VMS events
in, the archive link, and the plug-in contract (docs/vms-plugin-openapi.yaml) that the reference plug-in keeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from actors.video_source import SourceOpenError
from actors.vms_cameras import parse_vms_url, resolve_source_url, vms_camera_url
from actors.vms_sender import queue_new_events, send_due
from cluster.vms_plugin import PluginState, create_plugin_app
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, build_api
from tests.vms_parties import AlarmInbox, ThreadedServer, write_declaration

TOKEN = "plugin-secret-1"
CAMERAS = [{"id": "door-1", "name": "Front door", "stream_url": "rtsp://127.0.0.1:8554/door", "status": "online"},
           {"id": "hall/2", "name": "Hall", "stream_url": "rtsp://127.0.0.1:8554/hall", "status": "online"}]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def parties(tmp_path: Path):
    inbox = AlarmInbox()
    inbox.start()
    declaration = write_declaration(tmp_path / "vms.json", CAMERAS, alarm_url=inbox.url)
    state = PluginState(config_path=declaration, token=TOKEN, timeout_s=2.0)
    with ThreadedServer(create_plugin_app(state)) as plugin:
        yield plugin, state, inbox, declaration
    inbox.stop()


def db_of(api: ApiClient) -> str:
    return api.client.app.state.config.database_url


def register(api: ApiClient, plugin_url: str, **extra) -> dict:
    response = api.post("/v1/vms", json={"name": "site VMS", "url": plugin_url, "token": TOKEN, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_vms_camera_urls_round_trip() -> None:
    url = vms_camera_url(7, "hall/2")
    assert url == "vms://7/hall%2F2"
    assert parse_vms_url(url) == (7, "hall/2")
    assert parse_vms_url("rtsp://cam/1") is None
    with pytest.raises(SourceOpenError):
        parse_vms_url("vms://x/1")


@pytest.mark.pg_capable
def test_import_creates_updates_deactivates_and_reactivates_cameras(tmp_path: Path, db_url: str, parties) -> None:
    plugin, _, _, declaration = parties
    api = build_api(tmp_path, db_url)
    vms = register(api, plugin.url, sync_interval_s=0)
    imported = api.post(f"/v1/vms/{vms['id']}/sync").json()
    assert imported["last_sync_error"] == ""
    assert imported["last_sync_report"]["cameras"] == 2 and len(imported["last_sync_report"]["created"]) == 2
    group_id = imported["camera_group_id"]
    cameras = api.get(f"/v1/cameras?camera_group_id={group_id}").json()["results"]
    assert sorted(c["name"] for c in cameras) == ["Front door", "Hall"]
    assert all(c["url"].startswith("vms://") and c["active"] for c in cameras)

    # The VMS renames one camera and drops the other: renamed in place, the other deactivated (not deleted).
    write_declaration(declaration, [{**CAMERAS[0], "name": "Front door (east)"}])
    report = api.post(f"/v1/vms/{vms['id']}/sync").json()["last_sync_report"]
    assert len(report["updated"]) == 1 and len(report["deactivated"]) == 1 and report["created"] == []
    by_name = {c["name"]: c for c in api.get(f"/v1/cameras?camera_group_id={group_id}").json()["results"]}
    assert by_name["Front door (east)"]["active"] is True
    assert by_name["Hall"]["active"] is False
    # It comes back: the same camera (same id), active again.
    write_declaration(declaration, CAMERAS)
    report = api.post(f"/v1/vms/{vms['id']}/sync").json()["last_sync_report"]
    assert report["reactivated"] == [by_name["Hall"]["id"]]
    assert api.get(f"/v1/cameras/{by_name['Hall']['id']}").json()["active"] is True


def test_a_vms_camera_stream_is_resolved_through_the_plugin_at_every_open(api: ApiClient, parties) -> None:
    plugin, state, _, declaration = parties
    vms = register(api, plugin.url)
    api.post(f"/v1/vms/{vms['id']}/sync")
    url = vms_camera_url(vms["id"], "door-1")
    assert resolve_source_url(url, db_of(api)) == "rtsp://127.0.0.1:8554/door"
    # The VMS hands out a new URL (a new session): the next open gets it.
    write_declaration(declaration, [{**CAMERAS[0], "stream_url": "rtsp://127.0.0.1:8554/door?session=2"}])
    assert resolve_source_url(url, db_of(api)) == "rtsp://127.0.0.1:8554/door?session=2"
    assert state.counters["stream_resolutions"] == 2
    assert resolve_source_url("rtsp://plain/1", db_of(api)) == "rtsp://plain/1"
    with pytest.raises(SourceOpenError, match="gave no stream for camera 'gone'"):
        resolve_source_url(vms_camera_url(vms["id"], "gone"), db_of(api))
    api.patch(f"/v1/vms/{vms['id']}", json={"token": "wrong-token-x"})
    with pytest.raises(SourceOpenError, match="401"):
        resolve_source_url(url, db_of(api))


def add_event(db_url: str, camera_id: int, group_id: int, watch_list_id: int | None, n: int) -> str:
    with UnitOfWork(db_url) as uow:
        event = orm.Event(id=f"test-event-{n}", camera_id=camera_id, camera_group_id=group_id,
                          matched=watch_list_id not in (None, orm.UNMATCHED_WATCH_LIST_ID),
                          watch_list_id=watch_list_id, confidence=0.9, timestamp=datetime.now(UTC))
        uow.session.add(event)
        uow.commit()
        return event.id


def messages(api: ApiClient, vms_id: int, **params) -> list[dict]:
    return api.get(f"/v1/vms/{vms_id}/messages", params=params).json()["results"]


def run_sender(db_url: str, vms_id: int, now: datetime | None = None) -> int:
    async def go() -> int:
        async with httpx.AsyncClient() as client:
            return await send_due(db_url, vms_id, client, now)

    return asyncio.run(go())


def test_events_reach_the_vms_only_from_forwarding_cameras_and_opted_in_lists(api: ApiClient, parties) -> None:
    plugin, state, inbox, _ = parties
    vip = api.post("/v1/watch-lists", json={"name": "VIP"}).json()
    other = api.post("/v1/watch-lists", json={"name": "staff"}).json()
    vms = register(api, plugin.url, forward_watch_list_ids=[vip["id"]])
    group_id = api.post(f"/v1/vms/{vms['id']}/sync").json()["camera_group_id"]
    links = api.get(f"/v1/vms/{vms['id']}/cameras").json()["results"]
    door = next(c for c in links if c["vms_camera_id"] == "door-1")
    hall = next(c for c in links if c["vms_camera_id"] == "hall/2")
    assert door["forward_events"] is False  # opt-in per camera
    assert api.patch(f"/v1/vms/{vms['id']}/cameras/{door['camera_id']}", json={"forward_events": True}).json()[
        "forward_events"] is True
    db = db_of(api)
    assert queue_new_events(db, vms["id"], "http://fw.test") == 0  # sets the cursor: no history is replayed
    wanted = add_event(db, door["camera_id"], group_id, vip["id"], 1)
    add_event(db, door["camera_id"], group_id, other["id"], 2)  # list not opted in
    add_event(db, hall["camera_id"], group_id, vip["id"], 3)  # camera not forwarding
    assert queue_new_events(db, vms["id"], "http://fw.test") == 1
    assert queue_new_events(db, vms["id"], "http://fw.test") == 0  # the cursor moved on; nothing queued twice
    assert run_sender(db, vms["id"]) == 1
    assert [a["facewatch_event"]["id"] for a in inbox.alarms] == [wanted]
    assert inbox.alarms[0]["camera_id"] == "door-1"
    assert inbox.alarms[0]["facewatch_event"]["media"]["thumbnail"] is None or \
        inbox.alarms[0]["facewatch_event"]["media"]["thumbnail"].startswith("http://fw.test/")
    sent = messages(api, vms["id"], direction="sent")
    assert [(m["event_id"], m["status"], m["attempts"]) for m in sent] == [(wanted, "sent", 1)]


def test_a_vms_outage_is_retried_within_the_senders_limits(api: ApiClient, parties) -> None:
    plugin, _, inbox, _ = parties
    vip = api.post("/v1/watch-lists", json={"name": "VIP"}).json()
    vms = register(api, plugin.url, forward_watch_list_ids=[vip["id"]], max_send_attempts=3,
                   min_send_timeout_s=10.0, max_send_timeout_s=15.0)
    group_id = api.post(f"/v1/vms/{vms['id']}/sync").json()["camera_group_id"]
    door = next(c for c in api.get(f"/v1/vms/{vms['id']}/cameras").json()["results"] if c["vms_camera_id"] == "door-1")
    api.patch(f"/v1/vms/{vms['id']}/cameras/{door['camera_id']}", json={"forward_events": True})
    db = db_of(api)
    queue_new_events(db, vms["id"], "")
    first = add_event(db, door["camera_id"], group_id, vip["id"], 1)
    queue_new_events(db, vms["id"], "")
    inbox.stop()  # the VMS is away
    t0 = datetime.now(UTC)
    assert run_sender(db, vms["id"], t0) == 1
    [message] = messages(api, vms["id"], direction="sent")
    assert (message["status"], message["attempts"]) == ("pending", 1)
    assert "502" in message["last_error"]
    assert run_sender(db, vms["id"], t0 + timedelta(seconds=5)) == 0  # not before min_send_timeout_s
    assert run_sender(db, vms["id"], t0 + timedelta(seconds=11)) == 1  # second attempt, still away
    inbox.start()  # back
    assert run_sender(db, vms["id"], t0 + timedelta(seconds=11 + 16)) == 1  # back-off capped at 15 s
    [message] = messages(api, vms["id"], direction="sent")
    assert (message["status"], message["attempts"]) == ("sent", 3)
    assert [a["facewatch_event"]["id"] for a in inbox.alarms] == [first]

    # A second event during a longer outage: after max_send_attempts it is kept as failed, with its error.
    second = add_event(db, door["camera_id"], group_id, vip["id"], 2)
    queue_new_events(db, vms["id"], "")
    inbox.stop()
    later = datetime.now(UTC) + timedelta(minutes=5)
    for step in range(4):
        run_sender(db, vms["id"], later + timedelta(seconds=20 * step))
    failed = messages(api, vms["id"], status="failed")
    assert [(m["event_id"], m["attempts"]) for m in failed] == [(second, 3)]
    assert "the VMS did not take the alarm" in failed[0]["last_error"]


def test_vms_events_come_in_with_the_plugin_token_only(api: ApiClient, parties) -> None:
    plugin, _, _, _ = parties
    vms = register(api, plugin.url)
    body = {"events": [{"camera_id": "door-1", "type": "door_forced", "at": "2026-12-01T10:00:00Z",
                        "data": {"zone": 3}}]}
    assert api.client.post(f"/v1/vms/{vms['id']}/events", json=body).status_code == 401
    assert api.client.post(f"/v1/vms/{vms['id']}/events", json=body,
                           headers={"Authorization": "VmsPluginToken wrong-one"}).json()["code"] == "AUTH_FAILED"
    ok = api.client.post(f"/v1/vms/{vms['id']}/events", json=body, headers={"Authorization": f"VmsPluginToken {TOKEN}"})
    assert ok.status_code == 202 and ok.json() == {"accepted": 1}
    [received] = messages(api, vms["id"], direction="received")
    assert received["kind"] == "door_forced" and received["vms_camera_id"] == "door-1"
    assert received["payload"]["data"] == {"zone": 3}
    bad = api.client.post(f"/v1/vms/{vms['id']}/events", json={"events": []},
                          headers={"Authorization": f"VmsPluginToken {TOKEN}"})
    assert bad.status_code == 422


def test_an_event_of_a_vms_camera_links_to_the_vms_archive(api: ApiClient, parties) -> None:
    plugin, _, _, _ = parties
    vms = register(api, plugin.url)
    group_id = api.post(f"/v1/vms/{vms['id']}/sync").json()["camera_group_id"]
    door = next(c for c in api.get(f"/v1/vms/{vms['id']}/cameras").json()["results"] if c["vms_camera_id"] == "door-1")
    event_id = add_event(db_of(api), door["camera_id"], group_id, None, 1)
    link = api.get(f"/v1/events/{event_id}/archive-link", role="viewer").json()
    assert link["url"].startswith("http://vms.test/archive/door-1?at=")
    assert link["vms_camera_id"] == "door-1"
    plain_group = api.post("/v1/camera-groups", json={"name": "plain"}).json()
    camera = api.post("/v1/cameras", json={"name": "c", "camera_group_id": plain_group["id"],
                                          "url": "rtsp://127.0.0.1/x"}).json()
    other = add_event(db_of(api), camera["id"], plain_group["id"], None, 2)
    assert api.get(f"/v1/events/{other}/archive-link").json()["code"] == "NOT_FOUND"


def test_vms_registry_validates_input_and_hides_the_token(api: ApiClient, parties) -> None:
    plugin, _, _, _ = parties
    vms = register(api, plugin.url)
    assert "token" not in vms
    assert api.post("/v1/vms", json={"name": "x", "url": "not a url", "token": TOKEN}).status_code == 422
    assert api.post("/v1/vms", json={"name": "y", "url": plugin.url, "token": TOKEN,
                                     "forward_watch_list_ids": [999]}).json()["code"] == "BAD_PARAM"
    assert api.patch(f"/v1/vms/{vms['id']}", json={"sender_tasks": None}).status_code in (400, 422)
    assert api.get("/v1/vms/1", role="operator").status_code == 403
    assert api.post("/v1/vms", json={"name": "site VMS", "url": plugin.url, "token": TOKEN}).status_code == 409
    assert api.delete(f"/v1/vms/{vms['id']}").status_code == 204
    assert api.get(f"/v1/vms/{vms['id']}").status_code == 404


def test_an_unreachable_plugin_is_reported_not_crashed(api: ApiClient) -> None:
    vms = register(api, "http://127.0.0.1:9")
    answer = api.post(f"/v1/vms/{vms['id']}/sync")
    assert answer.status_code == 503 and "unreachable" in answer.json()["reason"]
    assert "unreachable" in api.get(f"/v1/vms/{vms['id']}").json()["last_sync_error"]


def test_the_reference_plugin_implements_the_published_contract() -> None:
    contract = yaml.safe_load((ROOT / "docs" / "vms-plugin-openapi.yaml").read_text())
    state = PluginState(config_path=Path("/nonexistent"), token=TOKEN)
    served = create_plugin_app(state).openapi()["paths"]
    for path, operations in contract["paths"].items():
        assert path in served, path
        for method in operations:
            if method in ("get", "post", "put", "patch", "delete"):
                assert method in served[path], (method, path)
