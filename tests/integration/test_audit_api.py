"""GET /v1/audit: every mutating call is recorded (user, method, path, status, request id); admins
read the log newest first with filters and cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ApiClient

pytestmark = pytest.mark.pg_capable


def _calls(api: ApiClient) -> dict[str, str]:
    """A few mutating calls by different users and with different outcomes; their request ids."""
    ids = {}
    r = api.post("/v1/camera-groups", json={"name": "lobby"}, headers={"X-Request-ID": "req-group"})
    assert r.status_code == 201
    ids["group"] = r.headers["X-Request-ID"]
    r = api.post("/v1/dossiers", "operator", json={"name": "ann"}, headers={"X-Request-ID": "req-dossier"})
    assert r.status_code == 201
    r = api.post("/v1/camera-groups", "viewer", json={"name": "x"}, headers={"X-Request-ID": "req-denied"})
    assert r.status_code == 403
    r = api.client.post("/v1/dossiers", json={"name": "nobody"}, headers={"X-Request-ID": "req-anon"})
    assert r.status_code == 401
    r = api.patch("/v1/settings", json={"default_threshold": 0.8}, headers={"X-Request-ID": "req-settings"})
    assert r.status_code == 200
    assert api.get("/v1/camera-groups").status_code == 200  # reads are not audited
    return ids


def test_every_mutating_call_is_listed_newest_first(api_any_db: ApiClient) -> None:
    api = api_any_db
    _calls(api)
    r = api.get("/v1/audit")
    assert r.status_code == 200
    rows = r.json()["results"]
    assert [(x["method"], x["path"], x["status"], x["username"], x["request_id"]) for x in rows] == [
        ("PATCH", "/v1/settings", 200, "admin", "req-settings"),
        ("POST", "/v1/dossiers", 401, "", "req-anon"),
        ("POST", "/v1/camera-groups", 403, "viewer1", "req-denied"),
        ("POST", "/v1/dossiers", 201, "operator1", "req-dossier"),
        ("POST", "/v1/camera-groups", 201, "admin", "req-group"),
    ]
    assert rows[0]["user_id"] is not None and rows[1]["user_id"] is None
    times = [datetime.fromisoformat(x["created_at"]) for x in rows]
    assert times == sorted(times, reverse=True)


def test_filters(api_any_db: ApiClient) -> None:
    api = api_any_db
    _calls(api)

    def paths(**params) -> list[tuple[str, int]]:
        r = api.get("/v1/audit", params=params)
        assert r.status_code == 200, r.text
        return [(x["path"], x["status"]) for x in r.json()["results"]]

    assert paths(username="operator1") == [("/v1/dossiers", 201)]
    operator_id = api.get("/v1/users", params={"limit": 100}).json()["results"]
    operator_id = next(u["id"] for u in operator_id if u["username"] == "operator1")
    assert paths(user_id=operator_id) == [("/v1/dossiers", 201)]
    assert paths(method="PATCH") == [("/v1/settings", 200)]
    assert paths(path_prefix="/v1/camera") == [("/v1/camera-groups", 403), ("/v1/camera-groups", 201)]
    assert paths(path_prefix="/v1/camera_") == []  # "_" is literal, not a wildcard
    assert paths(status=401) == [("/v1/dossiers", 401)]
    assert paths(status_gte=400) == [("/v1/dossiers", 401), ("/v1/camera-groups", 403)]
    assert paths(status_lte=299, method="POST") == [("/v1/dossiers", 201), ("/v1/camera-groups", 201)]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert paths(created_gte=future) == []
    assert len(paths(created_gte=past, created_lte=future)) == 5
    assert api.get("/v1/audit", params={"status": 42}).status_code == 422
    assert api.get("/v1/audit", params={"method": "GET"}).status_code == 422
    assert api.get("/v1/audit", params={"created_gte": "yesterday"}).status_code == 422


def test_cursor_pages_walk_everything_once(api_any_db: ApiClient) -> None:
    api = api_any_db
    _calls(api)
    for i in range(6):
        assert api.post("/v1/watch-lists", json={"name": f"list {i}"}).status_code == 201
    everything = [x["id"] for x in api.get("/v1/audit", params={"limit": 100}).json()["results"]]
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/audit", params=params).json()
        seen += [x["id"] for x in page["results"]]
        # New records while paging are newer than the cursor: they do not shift later pages.
        api.post("/v1/watch-lists", json={"name": f"while paging {len(seen)}"})
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == everything
    assert api.get("/v1/audit", params={"cursor": "garbage"}).status_code == 400


def test_admins_only(api_any_db: ApiClient) -> None:
    api = api_any_db
    assert api.get("/v1/audit", "operator").status_code == 403
    assert api.get("/v1/audit", "viewer").status_code == 403
    assert api.client.get("/v1/audit").status_code == 401
