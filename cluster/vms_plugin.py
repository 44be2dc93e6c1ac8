"""The reference VMS plug-in: the plug-in contract (docs/vms-plugin-openapi.yaml) for a generic VMS.

The generic VMS is what most small installations have: cameras with RTSP streams, a way to raise an alarm
over HTTP, and an archive that plays a camera at a moment. It is declared in a JSON file (re-read at every
call, so a camera removed from the file is gone from the VMS):

    {"cameras": [{"id": "door-1", "name": "Front door", "stream_url": "rtsp://10.0.0.5/door", "status": "online"}],
     "alarm_url": "http://vms.local/alarms",                    # where the VMS takes alarms (optional)
     "archive_url": "http://vms.local/archive/{camera_id}?at={at}"}

Run it with `facewatch vms-plugin --config vms.json --token SECRET [--port 18333]`. facewatch's events arrive
at POST /v1/events and are raised as alarms at `alarm_url` (the VMS away → 502, so facewatch retries within
its sender's limits). With `--facewatch-url` and `--vms-id`, events the VMS posts to this plug-in's
POST /v1/vms-events are passed on into facewatch. docs/vms.md says how to write a plug-in for another VMS.
"""

from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, Field

from actors.vms_client import AUTH_SCHEME

DEFAULT_PORT = 18333


@dataclass
class PluginState:
    """What the plug-in knows: its VMS's declaration file, its secret, and counters for the curious."""

    config_path: Path
    token: str
    facewatch_url: str = ""
    vms_id: int | None = None
    timeout_s: float = 10.0
    counters: dict[str, int] = field(default_factory=lambda: {"stream_resolutions": 0, "events_received": 0,
                                                              "alarms_raised": 0, "alarm_failures": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def vms(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text())
        except (OSError, ValueError) as exc:
            raise HTTPException(503, f"the VMS declaration cannot be read: {type(exc).__name__}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("cameras", []), list):
            raise HTTPException(503, "the VMS declaration has no camera list")
        return data

    def camera(self, camera_id: str) -> dict[str, Any]:
        for camera in self.vms().get("cameras", []):
            if str(camera.get("id")) == camera_id:
                return camera
        raise HTTPException(404, f"the VMS has no camera '{camera_id}'")

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1


class CameraOut(BaseModel):
    id: str
    name: str
    status: str = ""
    stream_url: str | None = None


class CamerasOut(BaseModel):
    cameras: list[CameraOut]


class UrlOut(BaseModel):
    url: str
    expires_at: datetime | None = None


class EventsIn(BaseModel):
    events: list[dict[str, Any]] = Field(min_length=1)


class AcceptedOut(BaseModel):
    accepted: int


def create_plugin_app(state: PluginState) -> FastAPI:
    app = FastAPI(title="facewatch reference VMS plug-in (generic VMS)", version="1")
    app.state.plugin = state

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != AUTH_SCHEME or not hmac.compare_digest(token.strip().encode(), state.token.encode()):
            raise HTTPException(401, f"send 'Authorization: {AUTH_SCHEME} <token>'")

    auth = [Depends(authorised)]

    @app.get("/v1/info", dependencies=auth)
    def info() -> dict[str, str]:
        return {"name": str(state.vms().get("name", "generic VMS")), "vendor": "generic", "version": "1"}

    @app.get("/v1/cameras", response_model=CamerasOut, dependencies=auth)
    def list_cameras() -> CamerasOut:
        cameras = [CameraOut(id=str(c["id"]), name=str(c.get("name") or c["id"]), status=str(c.get("status", "")),
                             stream_url=None) for c in state.vms().get("cameras", []) if c.get("id")]
        return CamerasOut(cameras=cameras)

    @app.post("/v1/cameras/{camera_id}/stream", response_model=UrlOut, dependencies=auth)
    def resolve_stream(camera_id: str) -> UrlOut:
        camera = state.camera(camera_id)
        if not camera.get("stream_url"):
            raise HTTPException(409, f"camera '{camera_id}' has no stream")
        state.count("stream_resolutions")
        return UrlOut(url=str(camera["stream_url"]))

    @app.get("/v1/cameras/{camera_id}/archive", response_model=UrlOut, dependencies=auth)
    def archive_link(camera_id: str, at: Annotated[datetime, Query()]) -> UrlOut:
        state.camera(camera_id)
        template = state.vms().get("archive_url")
        if not template:
            raise HTTPException(404, "the VMS has no archive")
        return UrlOut(url=str(template).format(camera_id=quote(camera_id, safe=""), at=quote(at.isoformat(), safe="")))

    @app.post("/v1/events", response_model=AcceptedOut, dependencies=auth)
    def receive_events(body: EventsIn) -> AcceptedOut:
        """facewatch's events, raised as alarms in the VMS; the VMS away is a 502 (facewatch retries)."""
        for _ in body.events:
            state.count("events_received")
        alarm_url = state.vms().get("alarm_url")
        if alarm_url:
            alarms = [_alarm(e) for e in body.events]
            try:
                response = httpx.post(str(alarm_url), json={"alarms": alarms}, timeout=state.timeout_s)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                state.count("alarm_failures")
                raise HTTPException(502, f"the VMS did not take the alarm: {type(exc).__name__}") from exc
            for _ in alarms:
                state.count("alarms_raised")
        return AcceptedOut(accepted=len(body.events))

    @app.post("/v1/vms-events", response_model=AcceptedOut, dependencies=auth)
    def vms_events(body: EventsIn) -> AcceptedOut:
        """The VMS's own events, passed on into facewatch (when the plug-in knows where facewatch is)."""
        if not state.facewatch_url or state.vms_id is None:
            raise HTTPException(409, "this plug-in was started without --facewatch-url and --vms-id")
        url = f"{state.facewatch_url.rstrip('/')}/v1/vms/{state.vms_id}/events"
        try:
            response = httpx.post(url, json={"events": body.events}, timeout=state.timeout_s,
                                  headers={"Authorization": f"{AUTH_SCHEME} {state.token}"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"facewatch did not take the events: {type(exc).__name__}") from exc
        return AcceptedOut(accepted=len(body.events))

    @app.get("/stats")
    def stats() -> dict[str, int]:
        with state.lock:
            return dict(state.counters)

    return app


def _alarm(payload: dict[str, Any]) -> dict[str, Any]:
    """An alarm in the VMS's terms: its camera, the moment, a text an operator reads, the facewatch event."""
    event = payload.get("event") or {}
    who = f"dossier {event.get('dossier_id')}" if event.get("matched") else "an unknown face"
    return {"camera_id": payload.get("vms_camera_id"), "at": event.get("timestamp"),
            "text": f"facewatch: {who} (confidence {event.get('confidence')})", "facewatch_event": event}


def run_plugin(config_path: Path, token: str, host: str, port: int, facewatch_url: str = "",
               vms_id: int | None = None) -> None:
    import uvicorn

    state = PluginState(config_path=config_path, token=token, facewatch_url=facewatch_url, vms_id=vms_id)
    state.vms()  # a missing or broken declaration fails at start, not at the first call
    print(f"facewatch VMS plug-in (generic VMS from {config_path}) at http://{host}:{port}", flush=True)
    uvicorn.run(create_plugin_app(state), host=host, port=port, log_level="warning")
