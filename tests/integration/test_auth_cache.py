"""The API replica's short-lived memory of callers and scopes (FACEWATCH_AUTH_CACHE_TTL_S,
serve_apps/api/request_cache.py): a write through the API takes effect at once; a change behind the
API's back (another replica, the CLI, the database) within the TTL; an expiry always at once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from serve_apps.api.app import create_app
from storage import orm
from storage.repositories import hash_token
from storage.tokens import issue_token
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, make_config, role_tokens


def _api(tmp_path: Path, db_url: str, ttl_s: float, suffix: str = "1") -> ApiClient:
    config = make_config(tmp_path, db_url, FACEWATCH_AUTH_CACHE_TTL_S=str(ttl_s))
    return ApiClient(TestClient(create_app(config), raise_server_exceptions=False), role_tokens(db_url, suffix))


def _token_id(db_url: str, plain: str) -> int:
    with UnitOfWork(db_url) as uow:
        token = uow.tokens.by_plain_token(plain)
        assert token is not None
        return token.id


def _user_id(api: ApiClient, username: str) -> int:
    users = api.get("/v1/users", params={"limit": 100}).json()["results"]
    return next(u["id"] for u in users if u["username"] == username)


def test_a_change_behind_the_apis_back_is_seen_within_the_ttl(tmp_path: Path, sqlite_url: str) -> None:
    ttl = 2.0
    api = _api(tmp_path, sqlite_url, ttl)
    group = api.post("/v1/camera-groups", json={"name": "lobby"}).json()
    assert api.get("/v1/camera-groups", "operator").status_code == 200  # caller and scope now kept
    started = time.monotonic()
    # What another replica or the database itself does: the replica's cache hears nothing of it.
    with UnitOfWork(sqlite_url) as uow:
        uow.session.execute(update(orm.CameraGroup).where(orm.CameraGroup.id == group["id"])
                            .values(hidden_from_roles=["operator"]))
        uow.session.execute(delete(orm.Token).where(orm.Token.token_hash == hash_token(api.tokens["operator"])))
        uow.commit()
    kept = api.get("/v1/camera-groups", "operator")
    if time.monotonic() - started < ttl:  # (a machine too slow to ask again within the TTL proves nothing here)
        assert kept.status_code == 200 and [g["name"] for g in kept.json()["results"]] == ["lobby"]
    time.sleep(max(0.0, started + ttl + 0.1 - time.monotonic()))
    assert api.get("/v1/camera-groups", "operator").json()["code"] == "AUTH_FAILED"


def test_a_hidden_group_leaves_a_kept_scope_after_the_ttl(tmp_path: Path, sqlite_url: str) -> None:
    ttl = 2.0
    api = _api(tmp_path, sqlite_url, ttl)
    group = api.post("/v1/camera-groups", json={"name": "vault"}).json()
    assert [g["name"] for g in api.get("/v1/camera-groups", "operator").json()["results"]] == ["vault"]
    with UnitOfWork(sqlite_url) as uow:
        uow.session.execute(update(orm.CameraGroup).where(orm.CameraGroup.id == group["id"])
                            .values(hidden_from_roles=["operator"]))
        uow.commit()
    time.sleep(ttl + 0.1)
    assert api.get("/v1/camera-groups", "operator").json()["results"] == []


def test_writes_through_the_api_take_effect_at_once(tmp_path: Path, sqlite_url: str) -> None:
    api = _api(tmp_path, sqlite_url, 60.0)  # nothing expires from the cache during this test
    group = api.post("/v1/camera-groups", json={"name": "dock"}).json()
    for role in ("operator", "viewer"):
        assert api.get("/v1/auth/me", role).status_code == 200
    assert [g["name"] for g in api.get("/v1/camera-groups", "operator").json()["results"]] == ["dock"]

    # Hiding a group from a role: that role's kept scope goes.
    assert api.patch(f"/v1/camera-groups/{group['id']}", json={"hidden_from_roles": ["operator"]}).status_code == 200
    assert api.get("/v1/camera-groups", "operator").json()["results"] == []
    # A role change: the operator's kept caller goes (demoted, it may no longer list camera groups).
    operator_id = _user_id(api, "operator1")
    assert api.patch(f"/v1/users/{operator_id}", json={"role": "viewer"}).status_code == 200
    assert api.get("/v1/camera-groups", "operator").json()["code"] == "FORBIDDEN"
    # A revoked token and a deactivated user: refused on the next request.
    viewer_token = _token_id(sqlite_url, api.tokens["viewer"])
    assert api.delete(f"/v1/tokens/{viewer_token}").status_code == 204
    assert api.get("/v1/auth/me", "viewer").json()["code"] == "AUTH_FAILED"
    assert api.patch(f"/v1/users/{operator_id}", json={"active": False}).status_code == 200
    assert api.get("/v1/auth/me", "operator").json()["code"] == "AUTH_FAILED"


def test_a_kept_token_is_refused_once_it_expires(tmp_path: Path, sqlite_url: str) -> None:
    api = _api(tmp_path, sqlite_url, 60.0)
    with UnitOfWork(sqlite_url) as uow:
        user = uow.users.by_username("viewer1")
        assert user is not None
        expires = datetime.now(UTC) + timedelta(seconds=1.5)
        _, plain = issue_token(uow, user, expires_at=expires)
        uow.commit()
    headers = {"Authorization": f"Token {plain}"}
    assert api.client.get("/v1/auth/me", headers=headers).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    assert api.client.get("/v1/auth/me", headers=headers).json()["code"] == "AUTH_FAILED"


def test_the_cache_spares_the_database_its_auth_and_scope_queries(tmp_path: Path, sqlite_url: str) -> None:
    from sqlalchemy import event

    from storage.db import engine_for

    statements: list[str] = []
    engine = engine_for(sqlite_url)

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for n, ttl in enumerate((0.0, 60.0)):
            api = _api(tmp_path / str(n), sqlite_url, ttl, suffix=str(n))
            api.get("/v1/events", "viewer")
            statements.clear()
            api.get("/v1/events", "viewer")
            counts.append(len(statements))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    uncached, cached = counts
    # Without the cache: the token (with its user) and the role's hidden groups and lists are asked again.
    assert cached <= uncached - 3, (uncached, cached)
