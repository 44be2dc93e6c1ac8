"""The VMS integration over real HTTP on loopback: facewatch's API, the reference plug-in (cluster/vms_plugin.py)
and a generic VMS (a declaration file and an alarm inbox). Camera import and keeping in step, stream URLs
resolved through the plug-in at every open, events to the VMS with the sender's retries and limits, VMS events
in, the archive link, and the plug-in contract (docs/vms-plugin-openapi.yaml) that the reference plug-in keeps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import select

from actors.video_source import SourceOpenError
from actors.vms_cameras import parse_vms_url, resolve_source_url, vms_camera_url
from actors.vms_sender import VmsAgentCore, prune_messages, queue_new_events, send_due
from cluster.vms_plugin import PluginState, create_plugin_app
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, build_api
from tests.helpers import wait_for
from tests.vms_parties import AlarmInbox, ThreadedServer, free_port, write_declaration

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


def forwarding_vms(api: ApiClient, plugin_url: str, **settings) -> tuple[dict, int, int, int]:
    """A registered VMS whose door camera forwards the VIP list's events, the sender's cursor set:
    (vms, VIP list id, door camera id, camera group id)."""
    vip = api.post("/v1/watch-lists", json={"name": "VIP"}).json()
    vms = register(api, plugin_url, forward_watch_list_ids=[vip["id"]], **settings)
    group_id = api.post(f"/v1/vms/{vms['id']}/sync").json()["camera_group_id"]
    door = next(c for c in api.get(f"/v1/vms/{vms['id']}/cameras").json()["results"] if c["vms_camera_id"] == "door-1")
    api.patch(f"/v1/vms/{vms['id']}/cameras/{door['camera_id']}", json={"forward_events": True})
    assert queue_new_events(db_of(api), vms["id"], "") == 0  # the cursor: no history
    return vms, vip["id"], door["camera_id"], group_id


def test_the_sender_sends_only_when_enabled_and_only_allowed_types(api: ApiClient, parties) -> None:
    plugin, _, inbox, _ = parties
    vms, vip, door, group_id = forwarding_vms(api, plugin.url)
    db = db_of(api)
    api.patch(f"/v1/vms/{vms['id']}", json={"sender_enabled": False})
    add_event(db, door, group_id, vip, 1)
    assert queue_new_events(db, vms["id"], "") == 0  # disabled: passed over, not kept for later
    api.patch(f"/v1/vms/{vms['id']}", json={"sender_enabled": True, "allowed_types": []})
    add_event(db, door, group_id, vip, 2)
    assert queue_new_events(db, vms["id"], "") == 0  # no type allowed is no type, not every type
    assert api.patch(f"/v1/vms/{vms['id']}", json={"allowed_types": ["motion"]}).status_code == 422
    api.patch(f"/v1/vms/{vms['id']}", json={"allowed_types": ["face"]})
    wanted = add_event(db, door, group_id, vip, 3)
    assert queue_new_events(db, vms["id"], "") == 1
    assert run_sender(db, vms["id"]) == 1
    assert [a["facewatch_event"]["id"] for a in inbox.alarms] == [wanted]
    assert [m["event_id"] for m in messages(api, vms["id"], direction="sent")] == [wanted]


def test_sender_tasks_bound_the_posts_in_flight(api: ApiClient, parties) -> None:
    plugin, _, inbox, _ = parties
    inbox.delay_s = 0.4  # a slow VMS: posts overlap when the sender lets them
    vms, vip, door, group_id = forwarding_vms(api, plugin.url, sender_tasks=2)
    db = db_of(api)
    for n in range(6):
        add_event(db, door, group_id, vip, n)
    assert queue_new_events(db, vms["id"], "") == 6
    assert run_sender(db, vms["id"]) == 6
    assert inbox.max_in_flight == 2 and len(inbox.alarms) == 6
    api.patch(f"/v1/vms/{vms['id']}", json={"sender_tasks": 4})
    inbox.max_in_flight = 0
    for n in range(6, 14):
        add_event(db, door, group_id, vip, n)
    assert queue_new_events(db, vms["id"], "") == 8
    assert run_sender(db, vms["id"]) == 8
    assert inbox.max_in_flight == 4 and len(inbox.alarms) == 14
    assert {m["status"] for m in messages(api, vms["id"], direction="sent", limit=100)} == {"sent"}


def test_the_response_timeout_bounds_each_post(api: ApiClient, parties) -> None:
    plugin, _, inbox, _ = parties
    inbox.delay_s = 1.0  # the VMS answers after 1 s (the plug-in itself waits up to 2 s)
    vms, vip, door, group_id = forwarding_vms(api, plugin.url, response_timeout_s=0.3, max_send_attempts=5,
                                              min_send_timeout_s=0.0)
    db = db_of(api)
    event = add_event(db, door, group_id, vip, 1)
    queue_new_events(db, vms["id"], "")
    started = time.monotonic()
    assert run_sender(db, vms["id"]) == 1
    assert time.monotonic() - started < 0.9  # gave up at the response timeout, not at the VMS's answer
    [message] = messages(api, vms["id"], direction="sent")
    assert (message["status"], message["attempts"]) == ("pending", 1)
    assert "did not answer within 0.3 s" in message["last_error"]
    api.patch(f"/v1/vms/{vms['id']}", json={"response_timeout_s": 5.0})
    assert run_sender(db, vms["id"]) == 1
    [message] = messages(api, vms["id"], direction="sent")
    assert (message["status"], message["attempts"]) == ("sent", 2)
    assert event in [a["facewatch_event"]["id"] for a in inbox.alarms]


def age_messages(db_url: str, vms_id: int, days: float) -> None:
    with UnitOfWork(db_url) as uow:
        for row in uow.session.scalars(select(orm.VmsMessage).where(orm.VmsMessage.vms_id == vms_id)):
            row.created_at = datetime.now(UTC) - timedelta(days=days)
        uow.commit()


def test_sent_and_received_messages_are_kept_for_their_own_retention_days(api: ApiClient, parties) -> None:
    plugin, _, _, _ = parties
    vms, vip, door, group_id = forwarding_vms(api, plugin.url)
    db = db_of(api)
    add_event(db, door, group_id, vip, 1)
    queue_new_events(db, vms["id"], "")
    run_sender(db, vms["id"])
    add_event(db, door, group_id, vip, 2)
    queue_new_events(db, vms["id"], "")  # queued, not sent yet: pending
    api.client.post(f"/v1/vms/{vms['id']}/events", headers={"Authorization": f"VmsPluginToken {TOKEN}"},
                    json={"events": [{"camera_id": "door-1", "type": "door_forced"}]})
    age_messages(db, vms["id"], days=10)

    def kept() -> list[tuple[str, str]]:
        return sorted((m["direction"], m["status"]) for m in messages(api, vms["id"]))

    everything = [("received", "received"), ("sent", "pending"), ("sent", "sent")]
    assert prune_messages(db, vms["id"]) == 0 and kept() == everything  # 0 days: kept forever
    api.patch(f"/v1/vms/{vms['id']}", json={"sent_retention_days": 30, "received_retention_days": 30})
    assert prune_messages(db, vms["id"]) == 0 and kept() == everything  # younger than 30 days
    api.patch(f"/v1/vms/{vms['id']}", json={"sent_retention_days": 7})
    assert prune_messages(db, vms["id"]) == 1  # the sent one; a pending message waits for its outcome
    assert kept() == [("received", "received"), ("sent", "pending")]
    api.patch(f"/v1/vms/{vms['id']}", json={"received_retention_days": 7, "sent_retention_days": 0})
    assert prune_messages(db, vms["id"]) == 1 and kept() == [("sent", "pending")]


def test_the_vms_agent_keeps_the_cameras_in_step_on_its_schedule(api: ApiClient, parties) -> None:
    plugin, _, _, declaration = parties
    vms = register(api, plugin.url, sync_interval_s=1.0)
    db = db_of(api)
    core = VmsAgentCore(db, "")

    def tick() -> None:
        async def go() -> None:
            async with httpx.AsyncClient() as client:
                await core.tick(client)

        asyncio.run(go())

    tick()  # never imported: due at once
    assert core.counters["imports"] == 1
    group_id = api.get(f"/v1/vms/{vms['id']}").json()["camera_group_id"]
    assert len(api.get(f"/v1/cameras?camera_group_id={group_id}").json()["results"]) == 2
    with UnitOfWork(db) as uow:
        row = uow.vms.get(vms["id"])
        assert not core.due_for_import(row, row.last_sync_at + timedelta(seconds=0.5))
        assert core.due_for_import(row, row.last_sync_at + timedelta(seconds=1.0))
    write_declaration(declaration, [CAMERAS[0]])  # the hall camera leaves the VMS
    time.sleep(1.1)
    tick()  # the next scheduled import: deactivated, not deleted
    assert core.counters["imports"] == 2
    hall = next(c for c in api.get(f"/v1/cameras?camera_group_id={group_id}").json()["results"] if c["name"] == "Hall")
    assert hall["active"] is False
    # On demand only (0): imported once, then never by the agent.
    api.patch(f"/v1/vms/{vms['id']}", json={"sync_interval_s": 0})
    time.sleep(1.1)
    tick()
    assert core.counters["imports"] == 2


def test_deleting_a_vms_deactivates_its_cameras_and_keeps_them(api: ApiClient, parties) -> None:
    plugin, _, _, _ = parties
    vms = register(api, plugin.url)
    group_id = api.post(f"/v1/vms/{vms['id']}/sync").json()["camera_group_id"]
    assert api.delete(f"/v1/vms/{vms['id']}").status_code == 204
    cameras = api.get(f"/v1/cameras?camera_group_id={group_id}").json()["results"]
    assert len(cameras) == 2 and not any(c["active"] for c in cameras)


def test_the_plugin_passes_the_vms_events_on_into_facewatch(api: ApiClient, tmp_path: Path) -> None:
    declaration = write_declaration(tmp_path / "relay.json", CAMERAS)
    with ThreadedServer(api.client.app) as facewatch:  # facewatch on real HTTP
        vms = register(api, "http://127.0.0.1:9")  # the plug-in's own URL does not matter for events in
        relay = PluginState(config_path=declaration, token=TOKEN, facewatch_url=facewatch.url, vms_id=vms["id"])
        unbound = PluginState(config_path=declaration, token=TOKEN)
        with ThreadedServer(create_plugin_app(relay)) as plugin, ThreadedServer(create_plugin_app(unbound)) as alone:
            body = {"events": [{"camera_id": "hall/2", "type": "motion", "at": "2026-12-01T10:00:00Z"}]}
            headers = {"Authorization": f"VmsPluginToken {TOKEN}"}
            answer = httpx.post(f"{plugin.url}/v1/vms-events", json=body, headers=headers)
            assert answer.status_code == 200 and answer.json() == {"accepted": 1}
            assert httpx.post(f"{alone.url}/v1/vms-events", json=body, headers=headers).status_code == 409
            assert httpx.post(f"{plugin.url}/v1/vms-events", json=body).status_code == 401
            api.patch(f"/v1/vms/{vms['id']}", json={"token": "a-different-token"})  # facewatch refuses the plug-in
            assert httpx.post(f"{plugin.url}/v1/vms-events", json=body, headers=headers).status_code == 502
    [received] = messages(api, vms["id"], direction="received")
    assert (received["kind"], received["vms_camera_id"], received["status"]) == ("motion", "hall/2", "received")


def test_the_reference_plugin_runs_as_a_facewatch_sub_command(tmp_path: Path) -> None:
    declaration = write_declaration(tmp_path / "vms.json", CAMERAS)
    port = free_port()
    command = [sys.executable, "-m", "cluster.cli", "vms-plugin", "--config", str(declaration), "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "FACEWATCH_VMS_PLUGIN_TOKEN"}
    env["FACEWATCH_HOME"] = str(tmp_path / "home")
    refused = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--token" in refused.stderr
    process = subprocess.Popen([*command, "--token", TOKEN], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def cameras() -> httpx.Response | None:
            try:
                return httpx.get(f"{url}/v1/cameras", headers={"Authorization": f"VmsPluginToken {TOKEN}"})
            except httpx.TransportError:
                return None

        answer = wait_for(cameras, 60, "the plug-in's port")
        assert answer.status_code == 200
        assert [c["id"] for c in answer.json()["cameras"]] == ["door-1", "hall/2"]
        assert httpx.get(f"{url}/v1/cameras").status_code == 401
    finally:
        process.terminate()
        process.wait(20)
