"""The facewatch side of the VMS plug-in contract (docs/vms-plugin-openapi.yaml): HTTP calls to a plug-in.

A plug-in is a small service that speaks to one video management system; facewatch only speaks this
contract, so a new VMS needs a new plug-in and no change here. Every call carries
`Authorization: VmsPluginToken <token>`. Failures are `PluginError`s that say what went wrong in words;
`retryable` tells the sender whether another attempt may succeed (the VMS or plug-in away, 5xx, timeouts)
or not (4xx: the plug-in refused the request as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

AUTH_SCHEME = "VmsPluginToken"


class PluginError(Exception):
    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class PluginCamera:
    """A camera as the VMS lists it."""

    id: str
    name: str
    status: str = ""
    stream_url: str | None = None


@dataclass(frozen=True)
class PluginAddress:
    url: str
    token: str
    timeout_s: float = 10.0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"{AUTH_SCHEME} {self.token}"}

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path


def _check(response: httpx.Response, what: str) -> Any:
    if response.status_code >= 400:
        detail = response.text[:200].strip()
        raise PluginError(f"{what}: the plug-in answered {response.status_code} {detail}".rstrip(),
                          retryable=response.status_code >= 500 or response.status_code == 429)
    try:
        return response.json()
    except ValueError:
        raise PluginError(f"{what}: the plug-in's answer is not JSON", retryable=False) from None


def _transport_failure(what: str, exc: httpx.HTTPError, timeout_s: float) -> PluginError:
    """No usable answer at the transport level: the plug-in timed out or could not be reached (both retried)."""
    if isinstance(exc, httpx.TimeoutException):  # the response timeout (response_timeout_s) ran out
        return PluginError(f"{what}: the plug-in did not answer within {timeout_s:g} s ({type(exc).__name__})",
                           retryable=True)
    return PluginError(f"{what}: the plug-in is unreachable ({type(exc).__name__})", retryable=True)


def _cameras(body: Any) -> list[PluginCamera]:
    items = body.get("cameras") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise PluginError("list cameras: the answer has no 'cameras' list", retryable=False)
    cameras = []
    for item in items:
        if not isinstance(item, dict) or not str(item.get("id") or "").strip():
            raise PluginError("list cameras: a camera without an id", retryable=False)
        cameras.append(PluginCamera(id=str(item["id"]), name=str(item.get("name") or item["id"]),
                                    status=str(item.get("status") or ""), stream_url=item.get("stream_url")))
    return cameras


def _stream_url(body: Any) -> str:
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        raise PluginError("resolve stream: the answer has no 'url'", retryable=False)
    return url


class PluginClient:
    """Blocking calls (the camera job resolves its stream URL from its own thread)."""

    def __init__(self, address: PluginAddress) -> None:
        self.address = address

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            with httpx.Client(timeout=self.address.timeout_s, headers=self.address.headers) as client:
                return _check(client.request(method, self.address.endpoint(path), **kwargs), what)
        except httpx.HTTPError as exc:
            raise _transport_failure(what, exc, self.address.timeout_s) from exc

    def list_cameras(self) -> list[PluginCamera]:
        return _cameras(self._request("GET", "/v1/cameras", "list cameras"))

    def resolve_stream(self, vms_camera_id: str) -> str:
        return _stream_url(self._request("POST", f"/v1/cameras/{_quote(vms_camera_id)}/stream", "resolve stream"))

    def archive_link(self, vms_camera_id: str, at: datetime) -> str:
        body = self._request("GET", f"/v1/cameras/{_quote(vms_camera_id)}/archive", "archive link",
                             params={"at": at.isoformat()})
        return _stream_url(body)


class AsyncPluginClient:
    """Non-blocking calls for the event sender (one shared connection pool)."""

    def __init__(self, address: PluginAddress, client: httpx.AsyncClient) -> None:
        self.address = address
        self.client = client

    async def send_events(self, events: list[dict[str, Any]]) -> None:
        what = "send events"
        try:
            response = await self.client.post(self.address.endpoint("/v1/events"), json={"events": events},
                                              headers=self.address.headers, timeout=self.address.timeout_s)
        except httpx.HTTPError as exc:
            raise _transport_failure(what, exc, self.address.timeout_s) from exc
        _check(response, what)


def _quote(value: str) -> str:
    return quote(value, safe="")
