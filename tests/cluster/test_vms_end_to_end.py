"""End to end with three parties over real HTTP: facewatch (the whole service on Ray), the reference VMS
plug-in, and a generic VMS — a live RTSP camera (GStreamer) and an alarm interface that is away at first.

The VMS's camera is imported, its stream URL is resolved through the plug-in when the job opens it, the clip
of Lin-Manuel Miranda is processed live, the matched event reaches the VMS as an alarm once the VMS is back
(the outage retried within the sender's limits), and the event links into the VMS archive. Slow (~2–4 min).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.vms_plugin import PluginState, create_plugin_app
from tests.conftest import make_config
from tests.helpers import wait_for
from tests.rtsp_server import RtspCamera, gstreamer_missing
from tests.vms_parties import AlarmInbox, ThreadedServer, free_port, write_declaration

pytestmark = [pytest.mark.slow]
TOKEN = "plugin-secret-e2e"


def test_a_vms_camera_is_imported_processed_and_its_match_reaches_the_vms(tmp_path: Path, data_dir: Path,
                                                                          faces_dir: Path) -> None:
    missing = gstreamer_missing()
    if missing:
        pytest.skip(missing)
    from cluster.service import start_service, stop_service

    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'fw.db'}", FACEWATCH_HTTP_PORT=str(free_port()),
                         FACEWATCH_ADMIN_TOKEN="fw_e2e_admin_token")
    inbox = AlarmInbox()  # the VMS's alarm interface: away until the first attempt has failed
    with RtspCamera(clip) as camera:
        declaration = write_declaration(tmp_path / "vms.json", [
            {"id": "stage", "name": "Stage", "stream_url": camera.url, "status": "online"}], alarm_url=inbox.url)
        state = PluginState(config_path=declaration, token=TOKEN)
        with ThreadedServer(create_plugin_app(state)) as plugin:
            started = start_service(config, num_cpus=4)
            try:
                run(started.url, config.admin_token, plugin.url, state, inbox, faces_dir)
            finally:
                stop_service()
                inbox.stop()


def run(url: str, admin_token: str, plugin_url: str, state: PluginState, inbox: AlarmInbox, faces_dir: Path) -> None:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Token {admin_token}"}, timeout=60)

    def call(method: str, path: str, expect: int, **kwargs: Any) -> Any:
        answer = client.request(method, path, **kwargs)
        assert answer.status_code == expect, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    cast = call("POST", "/v1/watch-lists", 201, json={"name": "cast"})
    miranda = call("POST", "/v1/dossiers", 201, json={"name": "Lin-Manuel Miranda", "watch_list_ids": [cast["id"]]})
    photo = faces_dir / "lin-manuel-miranda.png"
    call("POST", f"/v1/dossiers/{miranda['id']}/faces", 201, files={"photo": (photo.name, photo.read_bytes())})

    vms = call("POST", "/v1/vms", 201, json={
        "name": "site VMS", "url": plugin_url, "token": TOKEN, "forward_watch_list_ids": [cast["id"]],
        "max_send_attempts": 20, "min_send_timeout_s": 0.5, "max_send_timeout_s": 2.0, "sync_interval_s": 0})
    # The VMS agent imports on its first tick (sync_interval_s 0: once, then on demand).
    links = wait_for(lambda: call("GET", f"/v1/vms/{vms['id']}/cameras", 200)["results"], 60, "the camera import")
    [stage] = links
    assert stage["vms_camera_id"] == "stage"
    call("PATCH", f"/v1/vms/{vms['id']}/cameras/{stage['camera_id']}", 200, json={"forward_events": True})
    camera = call("GET", f"/v1/cameras/{stage['camera_id']}", 200)
    assert camera["url"] == f"vms://{vms['id']}/stage" and camera["name"] == "Stage"

    # The job opened the stream through the plug-in, and the live clip yields Miranda's match.
    wait_for(lambda: state.counters["stream_resolutions"] >= 1, 120, "the stream URL resolution")
    event = wait_for(lambda: next(iter(call("GET", f"/v1/events?camera_id={stage['camera_id']}&matched=true", 200)
                                       ["results"]), None), 240, "a matched event from the live VMS camera")
    assert event["dossier_id"] == miranda["id"]

    # The VMS is away: the sender keeps trying within its limits...
    failed = wait_for(lambda: [m for m in call("GET", f"/v1/vms/{vms['id']}/messages?direction=sent", 200)["results"]
                               if m["attempts"] >= 1 and m["status"] == "pending"], 120, "a failed first attempt")
    assert "the VMS did not take the alarm" in failed[0]["last_error"]
    assert inbox.alarms == []
    inbox.start()  # ...and delivers once it is back.
    alarms = wait_for(lambda: [a for a in inbox.alarms if a["facewatch_event"]["dossier_id"] == miranda["id"]], 60,
                      "the alarm in the VMS")
    assert alarms[0]["camera_id"] == "stage"
    assert alarms[0]["facewatch_event"]["media"]["thumbnail"].startswith(url)
    sent = wait_for(lambda: [m for m in call("GET", f"/v1/vms/{vms['id']}/messages?status=sent", 200)["results"]
                             if m["event_id"] == alarms[0]["facewatch_event"]["id"]], 30, "the sent message")
    assert sent[0]["attempts"] >= 2
    # No event of another watch list or camera went to the VMS.
    assert all(a["facewatch_event"]["watch_list_id"] == cast["id"] for a in inbox.alarms)

    link = call("GET", f"/v1/events/{alarms[0]['facewatch_event']['id']}/archive-link", 200)
    assert link["url"].startswith("http://vms.test/archive/stage?at=")
