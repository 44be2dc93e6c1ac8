"""The API through a real Ray Serve deployment: start, health, create, list, auth failure."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from cluster.service import start_service, stop_service
from facewatch.names import API_APP, API_DEPLOYMENT
from tests.conftest import make_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("serve")
    config = make_config(tmp, f"sqlite:///{tmp / 'fw.db'}", FACEWATCH_HTTP_PORT=str(_free_port()),
                         FACEWATCH_ADMIN_TOKEN="fw_test_admin_token", FACEWATCH_API_REPLICAS="2")
    started = start_service(config, num_cpus=2)
    yield started, config
    stop_service()


def _wait_ok(url: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200 or time.monotonic() > deadline:
                return response
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_serve_smoke_path(service: tuple) -> None:
    started, config = service
    health = _wait_ok(started.url)
    assert health.status_code == 200
    assert health.json()["components"]["database"]["ok"] is True
    assert health.json()["components"]["ray"]["ok"] is True

    auth = {"Authorization": f"Token {config.admin_token}"}
    created = httpx.post(f"{started.url}/v1/camera-groups", json={"name": "gate"}, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{started.url}/v1/camera-groups", headers=auth, timeout=10).json()
    assert [g["name"] for g in listed["results"]] == ["gate"]
    assert listed["next_cursor"] is None

    denied = httpx.get(f"{started.url}/v1/camera-groups", timeout=10)
    assert denied.status_code == 401
    assert denied.json()["code"] == "AUTH_FAILED"
    wrong = httpx.get(f"{started.url}/v1/camera-groups", headers={"Authorization": "Token nope"}, timeout=10)
    assert wrong.status_code == 401

    schema = httpx.get(f"{started.url}/openapi.json", timeout=10).json()
    assert "/v1/dossiers" in schema["paths"]
    assert httpx.get(f"{started.url}/docs", timeout=10).status_code == 200


def test_the_api_runs_in_as_many_serve_replicas_as_configured(service: tuple) -> None:
    from ray import serve

    started, _ = service
    _wait_ok(started.url)
    deadline = time.monotonic() + 60
    while True:  # serve.run(blocking=False): the second replica may still be starting
        states = serve.status().applications[API_APP].deployments[API_DEPLOYMENT].replica_states
        if states.get("RUNNING") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert states == {"RUNNING": 2}


def test_requests_spread_over_the_replicas_while_a_live_feed_is_open(service: tuple) -> None:
    """Serve's default router would send every request to the replica without the open feed (fewer
    ongoing requests); the API's round-robin router spreads them (serve_apps/api_deployment.py)."""
    started, config = service
    _wait_ok(started.url)
    auth = {"Authorization": f"Token {config.admin_token}"}
    with httpx.stream("GET", f"{started.url}/v1/events/stream", headers=auth, timeout=30) as feed:
        assert feed.status_code == 200
        answered = [httpx.get(f"{started.url}/health", timeout=10).json()["components"]["api_replica"]["replica"]
                    for _ in range(8)]
    assert len(set(answered)) == 2, answered


def _listener_names(port: int) -> set[str]:
    import psutil

    names = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            names.add(psutil.Process(conn.pid).name())
    return names


def test_http_is_served_by_haproxy_not_serves_python_proxy(service: tuple) -> None:
    """The default ingress (cluster/ingress.py): HAProxy, not Serve's Python proxy, holds FACEWATCH_HTTP_PORT."""
    started, config = service
    _wait_ok(started.url)
    assert _listener_names(config.http_port) == {"haproxy"}
