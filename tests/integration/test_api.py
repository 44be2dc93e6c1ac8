"""The CRUD HTTP API (SPEC §5.1–§5.3, §11) on SQLite: contracts, filters, pagination, the role
matrix, authentication, per-object visibility, bad input (nothing half-written), audit, request ids.

Most tests take the per-test `api` fixture (a fresh installation each). The large parametrised
role and bad-input tables share one module-scoped installation (`shared`) to stay fast; every case
there creates the objects it touches under names of its own, so cases do not depend on each other.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from storage import orm
from storage.db import engine_for, migrate
from storage.tokens import issue_token
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, build_api

ROLES = ("admin", "operator", "viewer")
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def db_url(api: ApiClient) -> str:
    return str(api.client.app.state.config.database_url)


def assert_error(response: Any, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    """SPEC §5.1: the status, the typed code, a reason, never a stack trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body.get("reason"), str) and body["reason"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    if param is not None:
        assert body.get("param") == param, body
    return body


WATCHED_TABLES = (
    "camera_groups", "cameras", "watch_lists", "watch_list_camera_groups", "dossiers", "dossier_watch_lists",
    "dossier_faces", "webhooks", "users", "tokens", "runtime_settings", "jobs",
)


# Written by every authenticated call, refused ones too (like the audit log): not a change the call made.
USAGE_COLUMNS = {"tokens": {"last_used_at"}}


def snapshot(api: ApiClient) -> dict[str, list[str]]:
    """Every row of every table the API writes (the audit log aside, which records every call)."""
    with engine_for(db_url(api)).connect() as connection:
        return {
            table: sorted(repr(tuple(v for k, v in row._mapping.items() if k not in USAGE_COLUMNS.get(table, ())))
                          for row in connection.execute(text(f"SELECT * FROM {table}")))
            for table in WATCHED_TABLES
        }


def audit_rows(api: ApiClient) -> list[orm.AuditRecord]:
    with UnitOfWork(db_url(api)) as uow:
        return list(uow.session.scalars(select(orm.AuditRecord).order_by(orm.AuditRecord.id)))


def seed(api: ApiClient) -> dict[str, Any]:
    """A set of objects with names of their own: groups (one with a camera), lists, a dossier, a webhook,
    a spare user with a token, and a second token for each of the three role users."""
    tag = unique("seed")
    with UnitOfWork(db_url(api)) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name=f"{tag} group"))
        spare_group = uow.camera_groups.add(orm.CameraGroup(name=f"{tag} spare group"))
        camera = uow.cameras.add(orm.Camera(name=f"{tag} camera", camera_group_id=group.id, url="rtsp://10.0.0.1/s"))
        watch_list = uow.watch_lists.add(orm.WatchList(name=f"{tag} list", camera_groups=[group]))
        dossier = uow.dossiers.add(orm.Dossier(name=f"{tag} dossier", watch_lists=[watch_list]))
        webhook = uow.webhooks.add(orm.Webhook(title=f"{tag} hook", url="http://127.0.0.1:9/hook"))
        spare_user = uow.users.add(orm.User(username=f"{tag}-user", role="viewer"))
        spare_token, _ = issue_token(uow, spare_user, name="spare")
        own = {}
        for role, username in (("admin", "admin"), ("operator", "operator1"), ("viewer", "viewer1")):
            user = uow.users.by_username(username)
            assert user is not None
            own[role] = issue_token(uow, user, name="second")[0].id
        uow.commit()
        return {
            "tag": tag, "group": group.id, "spare_group": spare_group.id, "camera": camera.id,
            "watch_list": watch_list.id, "dossier": dossier.id, "webhook": webhook.id,
            "spare_user": spare_user.id, "spare_token": spare_token.id, "own_token": own,
        }


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> ApiClient:
    """One installation for the big parametrised tables (see the module docstring)."""
    tmp: Path = tmp_path_factory.mktemp("api-shared")
    url = f"sqlite:///{tmp / 'facewatch.db'}"
    migrate(url)
    return build_api(tmp, url)


# -- CRUD contracts --------------------------------------------------------------------------------

CreateBody = Callable[[dict[str, Any]], dict[str, Any]]

# resource, body to create (given the seed), a change, the field naming the object in lists
CRUD: list[tuple[str, CreateBody, dict[str, Any]]] = [
    ("camera-groups",
     lambda s: {"name": unique("group"), "labels": {"site": "hq"}, "deduplicate": True, "threshold": 0.8},
     {"comment": "patched", "dedup_interval_s": 30.0}),
    ("cameras",
     lambda s: {"name": unique("cam"), "camera_group_id": s["group"], "url": "rtsp://10.0.0.2/live",
                "stream_settings": {"roi": [0, 0, 640, 480], "detect_every_n": 2}},
     {"comment": "patched", "threshold": 0.6}),
    ("watch-lists",
     lambda s: {"name": unique("list"), "color": "#00ff00", "camera_group_ids": [s["group"]], "require_ack": True},
     {"comment": "patched", "camera_group_ids": []}),
    ("dossiers",
     lambda s: {"name": unique("person"), "external_id": "x-1", "watch_list_ids": [s["watch_list"]]},
     {"comment": "patched", "active": False}),
    ("webhooks",
     lambda s: {"title": unique("hook"), "url": "https://example.com/hook", "filters": {"matched": True},
                "secret": "s3cret"},
     {"title": "patched", "batch_size": 5}),
    ("users",
     lambda s: {"username": unique("user"), "role": "operator", "comment": "new"},
     {"comment": "patched", "role": "viewer"}),
]


@pytest.mark.parametrize(("resource", "make_body", "change"), CRUD, ids=[c[0] for c in CRUD])
def test_crud_contract(api: ApiClient, resource: str, make_body: CreateBody, change: dict[str, Any]) -> None:
    body = make_body(seed(api))
    created = api.post(f"/v1/{resource}", json=body)
    assert created.status_code == 201, created.text
    obj = created.json()
    assert isinstance(obj["id"], int) and obj["id"] > 0
    for field, value in body.items():
        if field == "secret":
            assert obj["has_secret"] is True and "secret" not in obj
        elif field == "stream_settings":
            assert all(obj[field][k] == v for k, v in value.items())
        elif field == "url" and resource == "webhooks":
            assert obj[field].rstrip("/") == value.rstrip("/")
        else:
            assert obj[field] == value, field
    for stamp in ("created_at", "updated_at"):
        parsed = datetime.fromisoformat(obj[stamp])
        assert parsed.utcoffset() == timedelta(0)

    path = f"/v1/{resource}/{obj['id']}"
    assert api.get(path).json() == obj
    listed = api.get(f"/v1/{resource}", params={"limit": 1000}).json()
    assert obj["id"] in [o["id"] for o in listed["results"]] and listed["next_cursor"] is None

    patched = api.patch(path, json=change)
    assert patched.status_code == 200, patched.text
    after = patched.json()
    for field, value in change.items():
        assert after[field] == value, field
    untouched = set(obj) - set(change) - {"updated_at"}
    assert {k: after[k] for k in untouched} == {k: obj[k] for k in untouched}
    assert api.get(path).json() == after

    deleted = api.delete(path)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.get(path), 404, "NOT_FOUND")
    assert_error(api.patch(path, json=change), 404, "NOT_FOUND")
    assert_error(api.delete(path), 404, "NOT_FOUND")


def test_settings_read_and_update(api: ApiClient) -> None:
    defaults = api.get("/v1/settings", role="viewer").json()
    assert defaults["default_threshold"] == 0.75 and defaults["episode_threshold"] == 0.70
    changed = api.patch("/v1/settings", json={"default_threshold": 0.6, "ignore_unmatched": True})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {**defaults, "default_threshold": 0.6, "ignore_unmatched": True}
    assert api.get("/v1/settings", role="operator").json() == changed.json()
    assert api.patch("/v1/settings", json={}).json() == changed.json()  # an empty patch changes nothing


def test_tokens_create_use_and_delete(api: ApiClient) -> None:
    created = api.post("/v1/tokens", role="viewer", json={"name": "laptop", "expires_in_s": 3600})
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["token"].startswith(token["prefix"]) and token["name"] == "laptop"
    expires = datetime.fromisoformat(token["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    headers = {"Authorization": f"Token {token['token']}"}
    assert api.client.get("/v1/dossiers", headers=headers).status_code == 200

    with UnitOfWork(db_url(api)) as uow:
        viewer = uow.users.by_username("viewer1")
        assert viewer is not None and token["user_id"] == viewer.id

    assert api.delete(f"/v1/tokens/{token['id']}", role="viewer").status_code == 204
    assert_error(api.client.get("/v1/dossiers", headers=headers), 401, "AUTH_FAILED")
    assert_error(api.delete(f"/v1/tokens/{token['id']}", role="viewer"), 404, "NOT_FOUND")


def test_admin_creates_tokens_for_other_users(api: ApiClient) -> None:
    s = seed(api)
    created = api.post("/v1/tokens", json={"user_id": s["spare_user"], "name": "for someone"})
    assert created.status_code == 201 and created.json()["user_id"] == s["spare_user"]
    headers = {"Authorization": f"Token {created.json()['token']}"}
    assert api.client.get("/v1/watch-lists", headers=headers).status_code == 200


def test_token_list_shows_owner_and_use_never_the_secret(api_any_db: ApiClient) -> None:
    api = api_any_db
    mine = api.post("/v1/tokens", role="operator", json={"name": "ci script"}).json()
    theirs = api.post("/v1/tokens", role="viewer", json={"name": "laptop"}).json()
    before_use = {t["id"]: t for t in api.get("/v1/tokens", role="operator").json()["results"]}
    assert before_use[mine["id"]]["last_used_at"] is None
    assert api.client.get("/v1/dossiers", headers={"Authorization": f"Token {mine['token']}"}).status_code == 200

    # Admins see everyone's (or one user's); others only their own, whatever user_id they ask for.
    every = {t["id"]: t for t in api.get("/v1/tokens", params={"limit": 500}).json()["results"]}
    assert {mine["id"], theirs["id"]} <= set(every)
    assert {t["username"] for t in every.values()} == {"admin", "operator1", "viewer1"}
    listed = api.get("/v1/tokens", role="operator", params={"user_id": theirs["user_id"]}).json()["results"]
    assert {t["id"] for t in listed} == {mine["id"]} | {t["id"] for t in every.values() if t["username"] == "operator1"}
    assert all(t["username"] == "operator1" for t in listed)
    only_viewer = api.get("/v1/tokens", params={"user_id": theirs["user_id"]}).json()["results"]
    assert {t["username"] for t in only_viewer} == {"viewer1"} and theirs["id"] in {t["id"] for t in only_viewer}

    row = every[mine["id"]]
    assert row["name"] == "ci script" and row["prefix"] == mine["token"][:8] and row["user_id"] == mine["user_id"]
    assert datetime.now(UTC) - datetime.fromisoformat(row["last_used_at"]) < timedelta(minutes=1)
    assert datetime.fromisoformat(row["created_at"]) <= datetime.fromisoformat(row["last_used_at"])
    page_text = api.get("/v1/tokens").text
    assert "token_hash" not in page_text and mine["token"] not in page_text and theirs["token"] not in page_text
    assert_error(api.client.get("/v1/tokens"), 401, "AUTH_FAILED")


# -- list filters ----------------------------------------------------------------------------------


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json()["results"]]


def test_camera_group_and_camera_filters(api: ApiClient) -> None:
    north = api.post("/v1/camera-groups", json={"name": "north gate"}).json()["id"]
    south = api.post("/v1/camera-groups", json={"name": "south 100%_gate", "active": False}).json()["id"]
    cams = {
        name: api.post("/v1/cameras", json={"name": name, "camera_group_id": group, "active": active}).json()["id"]
        for name, group, active in (("n1", north, True), ("n2", north, False), ("s1", south, True))
    }
    assert _ids(api.get("/v1/camera-groups", params={"active": True})) == [north]
    assert _ids(api.get("/v1/camera-groups", params={"active": False})) == [south]
    assert _ids(api.get("/v1/camera-groups", params={"name_contains": "gate"})) == [north, south]
    assert _ids(api.get("/v1/camera-groups", params={"name_contains": "100%_"})) == [south]  # no LIKE wildcards
    assert _ids(api.get("/v1/camera-groups", params={"name_contains": "%"})) == [south]

    assert _ids(api.get("/v1/cameras", params={"camera_group_id": north})) == [cams["n1"], cams["n2"]]
    assert _ids(api.get("/v1/cameras", params={"active": False})) == [cams["n2"]]
    assert _ids(api.get("/v1/cameras", params={"status": "disabled"})) == [cams["n2"]]
    assert _ids(api.get("/v1/cameras", params={"status": "starting"})) == [cams["n1"], cams["s1"]]
    assert _ids(api.get("/v1/cameras", params={"name_contains": "s"})) == [cams["s1"]]
    assert _ids(api.get("/v1/cameras", params={"camera_group_id": north, "active": True})) == [cams["n1"]]
    assert _ids(api.get("/v1/cameras", params={"camera_group_id": 999})) == []
    assert_error(api.get("/v1/cameras", params={"status": "sleeping"}), 422, "BAD_PARAM", "status")


def test_watch_list_and_dossier_filters(api: ApiClient) -> None:
    group = api.post("/v1/camera-groups", json={"name": "g"}).json()["id"]
    vip = api.post("/v1/watch-lists", json={"name": "vip", "camera_group_ids": [group]}).json()["id"]
    banned = api.post("/v1/watch-lists", json={"name": "banned", "active": False}).json()["id"]
    assert _ids(api.get("/v1/watch-lists", params={"active": False})) == [banned]
    assert _ids(api.get("/v1/watch-lists", params={"camera_group_id": group})) == [vip]
    assert _ids(api.get("/v1/watch-lists", params={"name_contains": "match"})) == [orm.UNMATCHED_WATCH_LIST_ID]
    assert set(_ids(api.get("/v1/watch-lists", params={"active": True}))) == {orm.UNMATCHED_WATCH_LIST_ID, vip}

    ada = api.post("/v1/dossiers", json={"name": "Ada Lovelace", "watch_list_ids": [vip]}).json()["id"]
    bob = api.post("/v1/dossiers", json={"name": "Bob", "watch_list_ids": [vip, banned], "active": False,
                                         "external_id": "E-2"}).json()["id"]
    eve = api.post("/v1/dossiers", json={"name": "Eve", "external_id": "E-3"}).json()["id"]
    assert _ids(api.get("/v1/dossiers", params={"watch_list_id": vip})) == [ada, bob]
    assert _ids(api.get("/v1/dossiers", params={"watch_list_id": banned})) == [bob]
    assert _ids(api.get("/v1/dossiers", params={"active": True})) == [ada, eve]
    assert _ids(api.get("/v1/dossiers", params={"name_contains": "love"})) == [ada]  # case-insensitive
    assert _ids(api.get("/v1/dossiers", params={"external_id": "E-3"})) == [eve]
    assert _ids(api.get("/v1/dossiers", params={"watch_list_id": vip, "active": False})) == [bob]
    assert _ids(api.get("/v1/dossiers", params={"watch_list_id": 12345})) == []


def test_webhook_and_user_filters(api: ApiClient) -> None:
    on = api.post("/v1/webhooks", json={"title": "on", "url": "http://example.com/a"}).json()["id"]
    off = api.post("/v1/webhooks", json={"title": "off", "url": "http://example.com/b", "active": False}).json()["id"]
    assert _ids(api.get("/v1/webhooks", params={"active": True})) == [on]
    assert _ids(api.get("/v1/webhooks", params={"active": False})) == [off]

    gone = api.post("/v1/users", json={"username": "gone", "role": "viewer", "active": False}).json()["id"]
    usernames = {u["id"]: u["username"] for u in api.get("/v1/users").json()["results"]}
    by_name = {v: k for k, v in usernames.items()}
    assert _ids(api.get("/v1/users", params={"role": "viewer"})) == [by_name["viewer1"], gone]
    assert _ids(api.get("/v1/users", params={"role": "admin"})) == [by_name["admin"]]
    assert _ids(api.get("/v1/users", params={"active": False})) == [gone]
    assert _ids(api.get("/v1/users", params={"username_contains": "oper"})) == [by_name["operator1"]]
    assert_error(api.get("/v1/users", params={"role": "root"}), 422, "BAD_PARAM", "role")


# -- pagination ------------------------------------------------------------------------------------


def test_pagination_walks_250_dossiers(api: ApiClient) -> None:
    with UnitOfWork(db_url(api)) as uow:
        uow.session.add_all([orm.Dossier(name=f"person {i:03d}") for i in range(250)])
        uow.commit()
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        response = api.get("/v1/dossiers", role="viewer", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(d["id"] for d in page["results"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["results"]) == 7 and pages < 100
    assert pages == 36  # 35 full pages and one of 5
    assert len(seen) == len(set(seen)) == 250
    assert seen == sorted(seen)
    with UnitOfWork(db_url(api)) as uow:
        assert seen == sorted(uow.session.scalars(select(orm.Dossier.id)))
    # The default page has 20, the largest 1000.
    assert len(api.get("/v1/dossiers").json()["results"]) == 20
    assert len(api.get("/v1/dossiers", params={"limit": 1000}).json()["results"]) == 250


@pytest.mark.parametrize("limit", ["0", "1001", "-5", "ten"])
def test_bad_limit_is_422(api: ApiClient, limit: str) -> None:
    assert_error(api.get("/v1/dossiers", params={"limit": limit}), 422, "BAD_PARAM", "limit")


def _cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["garbage!!", _cursor([]), _cursor({"id": 1}), _cursor(["abc"]), _cursor([1, 2]), _cursor([10**22]),
     _cursor([None]), _cursor([[1]])],
)
def test_bad_cursor_is_400(api: ApiClient, cursor: str) -> None:
    assert_error(api.get("/v1/dossiers", params={"cursor": cursor}), 400, "BAD_PARAM", "cursor")


# -- role matrix -----------------------------------------------------------------------------------

OK_ALL = {"admin": True, "operator": True, "viewer": True}
ADMIN_ONLY = {"admin": True, "operator": False, "viewer": False}
ADMIN_OPERATOR = {"admin": True, "operator": True, "viewer": False}

# method, path (formatted with the seed; {own_token} is the caller's own second token), body, success status,
# who may: True = the success status, False = 403 FORBIDDEN (or the status given instead).
MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], Any] | None, int, dict[str, bool | int]]] = [
    # camera groups and cameras: written by admins only
    ("POST", "/v1/camera-groups", lambda s: {"name": unique("g")}, 201, ADMIN_ONLY),
    ("PATCH", "/v1/camera-groups/{group}", lambda s: {"comment": "x"}, 200, ADMIN_ONLY),
    ("DELETE", "/v1/camera-groups/{spare_group}", None, 204, ADMIN_ONLY),
    ("POST", "/v1/cameras", lambda s: {"name": "c", "camera_group_id": s["group"]}, 201, ADMIN_ONLY),
    ("PATCH", "/v1/cameras/{camera}", lambda s: {"active": False}, 200, ADMIN_ONLY),
    ("DELETE", "/v1/cameras/{camera}", None, 204, ADMIN_ONLY),
    # watch lists and dossiers: admins and operators
    ("POST", "/v1/watch-lists", lambda s: {"name": unique("wl")}, 201, ADMIN_OPERATOR),
    ("PATCH", "/v1/watch-lists/{watch_list}", lambda s: {"color": "#123456"}, 200, ADMIN_OPERATOR),
    ("DELETE", "/v1/watch-lists/{watch_list}", None, 204, ADMIN_OPERATOR),
    ("POST", "/v1/dossiers", lambda s: {"name": "d", "watch_list_ids": [s["watch_list"]]}, 201, ADMIN_OPERATOR),
    ("PATCH", "/v1/dossiers/{dossier}", lambda s: {"watch_list_ids": []}, 200, ADMIN_OPERATOR),
    ("DELETE", "/v1/dossiers/{dossier}", None, 204, ADMIN_OPERATOR),
    # webhooks, users and settings: admins only
    ("POST", "/v1/webhooks", lambda s: {"title": "t", "url": "http://example.com/h"}, 201, ADMIN_ONLY),
    ("PATCH", "/v1/webhooks/{webhook}", lambda s: {"active": False}, 200, ADMIN_ONLY),
    ("DELETE", "/v1/webhooks/{webhook}", None, 204, ADMIN_ONLY),
    ("POST", "/v1/users", lambda s: {"username": unique("u"), "role": "viewer"}, 201, ADMIN_ONLY),
    ("PATCH", "/v1/users/{spare_user}", lambda s: {"role": "operator"}, 200, ADMIN_ONLY),
    ("DELETE", "/v1/users/{spare_user}", None, 204, ADMIN_ONLY),
    ("PATCH", "/v1/settings", lambda s: {"episode_lookback_s": 61.0}, 200, ADMIN_ONLY),
    # tokens: anyone for themselves, only admins for others; someone else's token is invisible (404)
    ("POST", "/v1/tokens", lambda s: {"name": "mine"}, 201, OK_ALL),
    ("POST", "/v1/tokens", lambda s: {"user_id": s["spare_user"]}, 201, ADMIN_ONLY),
    ("DELETE", "/v1/tokens/{own_token}", None, 204, OK_ALL),
    ("DELETE", "/v1/tokens/{spare_token}", None, 204, {"admin": True, "operator": 404, "viewer": 404}),
]


def _mutation_id(case: tuple[Any, ...]) -> str:
    method, path, body, _, _ = case
    suffix = " for another user" if body is not None and "user_id" in body.__code__.co_consts else ""
    return f"{method} {path}{suffix}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "make_body", "success", "allowed"), MUTATIONS,
                         ids=[_mutation_id(c) for c in MUTATIONS])
def test_role_matrix_for_mutations(
    shared: ApiClient, role: str, method: str, path: str, make_body: Callable[[dict[str, Any]], Any] | None,
    success: int, allowed: dict[str, bool | int],
) -> None:
    s = seed(shared)
    url = path.format(**{**s, "own_token": s["own_token"][role]})
    kwargs = {"json": make_body(s)} if make_body else {}
    before = snapshot(shared)
    response = shared.request(method, url, role, **kwargs)
    expected = allowed[role]
    if expected is True:
        assert response.status_code == success, response.text
        assert snapshot(shared) != before
    else:
        status = 403 if expected is False else expected
        assert_error(response, status, "FORBIDDEN" if status == 403 else "NOT_FOUND")
        assert snapshot(shared) == before


# path (formatted with the seed) and who may read it
READS: list[tuple[str, dict[str, bool]]] = [
    ("/v1/camera-groups", ADMIN_OPERATOR),
    ("/v1/camera-groups/{group}", ADMIN_OPERATOR),
    ("/v1/cameras", ADMIN_OPERATOR),
    ("/v1/cameras/{camera}", ADMIN_OPERATOR),
    ("/v1/watch-lists", OK_ALL),
    ("/v1/watch-lists/{watch_list}", OK_ALL),
    ("/v1/dossiers", OK_ALL),
    ("/v1/dossiers/{dossier}", OK_ALL),
    ("/v1/settings", OK_ALL),
    ("/v1/webhooks", ADMIN_ONLY),
    ("/v1/webhooks/{webhook}", ADMIN_ONLY),
    ("/v1/users", ADMIN_ONLY),
    ("/v1/users/{spare_user}", ADMIN_ONLY),
]


@pytest.fixture(scope="module")
def shared_seed(shared: ApiClient) -> dict[str, Any]:
    return seed(shared)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("path", "allowed"), READS, ids=[r[0] for r in READS])
def test_role_matrix_for_reads(
    shared: ApiClient, shared_seed: dict[str, Any], role: str, path: str, allowed: dict[str, bool]
) -> None:
    response = shared.get(path.format(**shared_seed), role=role)
    if allowed[role]:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 403, "FORBIDDEN")


# -- authentication --------------------------------------------------------------------------------


def _expired_token(api: ApiClient) -> str:
    with UnitOfWork(db_url(api)) as uow:
        user = uow.users.by_username("operator1")
        assert user is not None
        _, plain = issue_token(uow, user, expires_at=datetime.now(UTC) - timedelta(seconds=1))
        uow.commit()
    return plain


def _deactivated_users_token(api: ApiClient) -> str:
    with UnitOfWork(db_url(api)) as uow:
        user = uow.users.add(orm.User(username="leaver", role="operator", active=False))
        _, plain = issue_token(uow, user)
        uow.commit()
    return plain


AUTH_CASES: list[tuple[str, Callable[[ApiClient], dict[str, str]]]] = [
    ("no header", lambda api: {}),
    ("empty token", lambda api: {"Authorization": "Token "}),
    ("wrong token", lambda api: {"Authorization": "Token fw_wrong"}),
    ("wrong scheme", lambda api: {"Authorization": f"Bearer {api.tokens['admin']}"}),
    ("bare token", lambda api: {"Authorization": api.tokens["admin"]}),
    ("expired token", lambda api: {"Authorization": f"Token {_expired_token(api)}"}),
    ("deactivated user", lambda api: {"Authorization": f"Token {_deactivated_users_token(api)}"}),
]


@pytest.mark.parametrize(("case", "headers"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
def test_401_auth_failed(api: ApiClient, case: str, headers: Callable[[ApiClient], dict[str, str]]) -> None:
    sent = headers(api)
    for method, path in (("GET", "/v1/dossiers"), ("GET", "/v1/settings"), ("POST", "/v1/dossiers"),
                         ("DELETE", "/v1/users/1"), ("POST", "/v1/tokens")):
        before = snapshot(api)
        response = api.client.request(method, path, headers=sent, json={"name": "x"} if method == "POST" else None)
        assert_error(response, 401, "AUTH_FAILED")
        assert snapshot(api) == before


def test_user_deactivated_after_token_issue_loses_access(api: ApiClient) -> None:
    operator = api.get("/v1/users", params={"username_contains": "operator1"}).json()["results"][0]
    assert api.get("/v1/dossiers", role="operator").status_code == 200
    assert api.patch(f"/v1/users/{operator['id']}", json={"active": False}).status_code == 200
    assert_error(api.get("/v1/dossiers", role="operator"), 401, "AUTH_FAILED")


def test_health_and_docs_need_no_token(api: ApiClient) -> None:
    health = api.client.get("/health")
    assert health.status_code in (200, 503) and health.json()["components"]["database"]["ok"] is True
    assert api.client.get("/openapi.json").status_code == 200
    assert api.client.get("/docs").status_code == 200


# -- per-object visibility -------------------------------------------------------------------------


def test_hidden_watch_list_is_invisible_to_the_viewer_only(api: ApiClient) -> None:
    hidden = api.post("/v1/watch-lists", json={"name": "covert", "hidden_from_roles": ["viewer"]}).json()["id"]
    shown = api.post("/v1/watch-lists", json={"name": "public"}).json()["id"]
    assert hidden in _ids(api.get("/v1/watch-lists"))
    assert {hidden, shown} <= set(_ids(api.get("/v1/watch-lists", role="operator")))
    assert api.get(f"/v1/watch-lists/{hidden}", role="admin").status_code == 200
    assert api.get(f"/v1/watch-lists/{hidden}", role="operator").status_code == 200

    viewer_ids = _ids(api.get("/v1/watch-lists", role="viewer"))
    assert hidden not in viewer_ids and shown in viewer_ids
    assert_error(api.get(f"/v1/watch-lists/{hidden}", role="viewer"), 404, "NOT_FOUND")
    assert _ids(api.get("/v1/watch-lists", role="viewer", params={"name_contains": "covert"})) == []


def test_hidden_from_operator_also_blocks_operator_writes(api: ApiClient) -> None:
    hidden = api.post("/v1/watch-lists", json={"name": "admins only", "hidden_from_roles": ["operator"]}).json()["id"]
    before = snapshot(api)
    assert_error(api.patch(f"/v1/watch-lists/{hidden}", role="operator", json={"comment": "x"}), 404, "NOT_FOUND")
    assert_error(api.delete(f"/v1/watch-lists/{hidden}", role="operator"), 404, "NOT_FOUND")
    assert snapshot(api) == before
    assert api.get(f"/v1/watch-lists/{hidden}", role="viewer").status_code == 200


def test_hidden_camera_group_hides_it_and_its_cameras(api: ApiClient) -> None:
    group = api.post("/v1/camera-groups", json={"name": "vault", "hidden_from_roles": ["operator"]}).json()["id"]
    camera = api.post("/v1/cameras", json={"name": "vault cam", "camera_group_id": group}).json()["id"]
    assert group not in _ids(api.get("/v1/camera-groups", role="operator"))
    assert camera not in _ids(api.get("/v1/cameras", role="operator"))
    assert_error(api.get(f"/v1/camera-groups/{group}", role="operator"), 404, "NOT_FOUND")
    assert_error(api.get(f"/v1/cameras/{camera}", role="operator"), 404, "NOT_FOUND")
    assert group in _ids(api.get("/v1/camera-groups"))
    assert api.get(f"/v1/cameras/{camera}").status_code == 200


# -- bad input (SPEC §11): typed errors, nothing written ----------------------------------------------

S = dict[str, Any]
# name, method, path (formatted with the seed), request kwargs (given the seed), status, code, param
BAD_INPUT: list[tuple[str, str, str, Callable[[S], dict[str, Any]], int, str, str | None]] = [
    # malformed JSON
    ("malformed json", "POST", "/v1/dossiers",
     lambda s: {"content": b'{"name": "x",', "headers": {"Content-Type": "application/json"}}, 400, "BAD_PARAM", None),
    ("json not an object", "POST", "/v1/camera-groups", lambda s: {"json": ["name"]}, 422, "BAD_PARAM", None),
    ("not json at all", "PATCH", "/v1/settings",
     lambda s: {"content": b"default_threshold=0.5", "headers": {"Content-Type": "application/json"}},
     400, "BAD_PARAM", None),
    # wrong types
    ("name is a number", "POST", "/v1/dossiers", lambda s: {"json": {"name": 5}}, 422, "BAD_PARAM", "name"),
    ("active is a string", "POST", "/v1/camera-groups", lambda s: {"json": {"name": "g", "active": "yes"}},
     422, "BAD_PARAM", "active"),
    ("active is 0", "PATCH", "/v1/dossiers/{dossier}", lambda s: {"json": {"active": 0}}, 422, "BAD_PARAM", "active"),
    ("threshold is a bool", "POST", "/v1/watch-lists", lambda s: {"json": {"name": "w", "threshold": False}},
     422, "BAD_PARAM", "threshold"),
    ("ids are strings", "POST", "/v1/watch-lists", lambda s: {"json": {"name": "w", "camera_group_ids": "1"}},
     422, "BAD_PARAM", "camera_group_ids"),
    ("id is a string", "POST", "/v1/cameras", lambda s: {"json": {"name": "c", "camera_group_id": str(s["group"])}},
     422, "BAD_PARAM", "camera_group_id"),
    ("labels not strings", "POST", "/v1/camera-groups", lambda s: {"json": {"name": "g", "labels": {"a": 1}}},
     422, "BAD_PARAM", "labels.a"),
    ("role unknown", "POST", "/v1/users", lambda s: {"json": {"username": "u", "role": "root"}},
     422, "BAD_PARAM", "role"),
    ("settings wrong type", "PATCH", "/v1/settings", lambda s: {"json": {"retention_days_matched": "30"}},
     422, "BAD_PARAM", "retention_days_matched"),
    ("path id not a number", "GET", "/v1/dossiers/abc", lambda s: {}, 422, "BAD_PARAM", "dossier_id"),
    ("path id beyond 64 bits", "GET", "/v1/dossiers/99999999999999999999999", lambda s: {}, 422, "BAD_PARAM",
     "dossier_id"),
    ("filter id beyond 64 bits", "GET", "/v1/cameras?camera_group_id=99999999999999999999999", lambda s: {},
     422, "BAD_PARAM", "camera_group_id"),
    ("reference beyond 64 bits", "POST", "/v1/dossiers", lambda s: {"json": {"name": "d", "watch_list_ids": [2**64]}},
     422, "BAD_PARAM", "watch_list_ids.0"),
    # unknown fields
    ("unknown field", "POST", "/v1/watch-lists", lambda s: {"json": {"name": "w", "colour": "#ffffff"}},
     422, "BAD_PARAM", "colour"),
    ("unknown field in patch", "PATCH", "/v1/camera-groups/{group}", lambda s: {"json": {"nmae": "typo"}},
     422, "BAD_PARAM", "nmae"),
    ("unknown setting", "PATCH", "/v1/settings", lambda s: {"json": {"embedder": "other"}}, 422, "BAD_PARAM",
     "embedder"),
    ("unknown stream setting", "PATCH", "/v1/cameras/{camera}",
     lambda s: {"json": {"stream_settings": {"fps": 5}}}, 422, "BAD_PARAM", "stream_settings.fps"),
    # missing required fields
    ("missing camera group", "POST", "/v1/cameras", lambda s: {"json": {"name": "c"}}, 422, "BAD_PARAM",
     "camera_group_id"),
    ("missing name", "POST", "/v1/dossiers", lambda s: {"json": {"comment": "no name"}}, 422, "BAD_PARAM", "name"),
    ("missing url", "POST", "/v1/webhooks", lambda s: {"json": {"title": "t"}}, 422, "BAD_PARAM", "url"),
    ("missing role", "POST", "/v1/users", lambda s: {"json": {"username": "u"}}, 422, "BAD_PARAM", "role"),
    ("missing body", "POST", "/v1/camera-groups", lambda s: {}, 422, "BAD_PARAM", None),
    ("blank name", "POST", "/v1/camera-groups", lambda s: {"json": {"name": "   "}}, 422, "BAD_PARAM", None),
    ("empty name", "PATCH", "/v1/dossiers/{dossier}", lambda s: {"json": {"name": ""}}, 422, "BAD_PARAM", "name"),
    # references to objects that do not exist
    ("unknown camera group", "POST", "/v1/cameras", lambda s: {"json": {"name": "c", "camera_group_id": 98765}},
     400, "BAD_PARAM", "camera_group_id"),
    ("unknown camera group in patch", "PATCH", "/v1/cameras/{camera}", lambda s: {"json": {"camera_group_id": 98765}},
     400, "BAD_PARAM", "camera_group_id"),
    ("unknown watch list", "POST", "/v1/dossiers",
     lambda s: {"json": {"name": "d", "watch_list_ids": [s["watch_list"], 98765]}}, 400, "BAD_PARAM",
     "watch_list_ids"),
    ("unknown watch list in patch", "PATCH", "/v1/dossiers/{dossier}", lambda s: {"json": {"watch_list_ids": [98765]}},
     400, "BAD_PARAM", "watch_list_ids"),
    ("unknown camera groups", "POST", "/v1/watch-lists",
     lambda s: {"json": {"name": "w", "camera_group_ids": [s["group"], 98765]}}, 400, "BAD_PARAM", "camera_group_ids"),
    ("unknown camera groups in patch", "PATCH", "/v1/watch-lists/{watch_list}",
     lambda s: {"json": {"camera_group_ids": [98765]}}, 400, "BAD_PARAM", "camera_group_ids"),
    ("token for unknown user", "POST", "/v1/tokens", lambda s: {"json": {"user_id": 98765}}, 400, "BAD_PARAM",
     "user_id"),
    # unknown object ids
    ("get unknown dossier", "GET", "/v1/dossiers/98765", lambda s: {}, 404, "NOT_FOUND", "id"),
    ("patch unknown camera", "PATCH", "/v1/cameras/98765", lambda s: {"json": {"comment": "x"}}, 404, "NOT_FOUND",
     "id"),
    ("delete unknown webhook", "DELETE", "/v1/webhooks/98765", lambda s: {}, 404, "NOT_FOUND", "id"),
    ("delete unknown user", "DELETE", "/v1/users/98765", lambda s: {}, 404, "NOT_FOUND", "id"),
    ("delete unknown token", "DELETE", "/v1/tokens/98765", lambda s: {}, 404, "NOT_FOUND", "id"),
    ("unknown route", "GET", "/v1/nothing-here", lambda s: {}, 404, "NOT_FOUND", None),
    # duplicate unique names
    ("duplicate camera group", "POST", "/v1/camera-groups", lambda s: {"json": {"name": f"{s['tag']} group"}},
     409, "CONFLICT", None),
    ("duplicate watch list", "POST", "/v1/watch-lists", lambda s: {"json": {"name": f"{s['tag']} list"}},
     409, "CONFLICT", None),
    ("duplicate Unmatched name", "POST", "/v1/watch-lists", lambda s: {"json": {"name": "Unmatched"}},
     409, "CONFLICT", None),
    ("rename to a taken name", "PATCH", "/v1/camera-groups/{spare_group}",
     lambda s: {"json": {"name": f"{s['tag']} group"}}, 409, "CONFLICT", None),
    ("duplicate username", "POST", "/v1/users", lambda s: {"json": {"username": "viewer1", "role": "viewer"}},
     409, "CONFLICT", None),
    # built-in objects and the last admin
    ("delete Unmatched", "DELETE", "/v1/watch-lists/-1", lambda s: {}, 409, "CONFLICT", "id"),
    ("rename Unmatched", "PATCH", "/v1/watch-lists/-1", lambda s: {"json": {"name": "Other", "comment": "x"}},
     400, "BAD_PARAM", "name"),
    ("delete group with cameras", "DELETE", "/v1/camera-groups/{group}", lambda s: {}, 409, "CONFLICT", "id"),
    ("dossier on Unmatched", "POST", "/v1/dossiers", lambda s: {"json": {"name": "d", "watch_list_ids": [-1]}},
     400, "BAD_PARAM", "watch_list_ids"),
    ("dossier moved to Unmatched", "PATCH", "/v1/dossiers/{dossier}",
     lambda s: {"json": {"watch_list_ids": [s["watch_list"], -1]}}, 400, "BAD_PARAM", "watch_list_ids"),
    # invalid thresholds
    ("group threshold -0.1", "POST", "/v1/camera-groups", lambda s: {"json": {"name": "g", "threshold": -0.1}},
     422, "BAD_PARAM", "threshold"),
    ("group threshold 1.5", "PATCH", "/v1/camera-groups/{group}", lambda s: {"json": {"threshold": 1.5}},
     422, "BAD_PARAM", "threshold"),
    ("camera threshold 1.5", "POST", "/v1/cameras",
     lambda s: {"json": {"name": "c", "camera_group_id": s["group"], "threshold": 1.5}}, 422, "BAD_PARAM", "threshold"),
    ("watch list threshold -0.1", "PATCH", "/v1/watch-lists/{watch_list}", lambda s: {"json": {"threshold": -0.1}},
     422, "BAD_PARAM", "threshold"),
    ("default threshold 1.5", "PATCH", "/v1/settings", lambda s: {"json": {"default_threshold": 1.5}},
     422, "BAD_PARAM", "default_threshold"),
    ("episode threshold -0.1", "PATCH", "/v1/settings", lambda s: {"json": {"episode_threshold": -0.1}},
     422, "BAD_PARAM", "episode_threshold"),
    ("webhook confidence 1.5", "POST", "/v1/webhooks",
     lambda s: {"json": {"title": "t", "url": "http://e.com/h", "filters": {"confidence_gte": 1.5}}},
     422, "BAD_PARAM", "filters.confidence_gte"),
    # stream URLs and regions
    ("ftp stream url", "POST", "/v1/cameras",
     lambda s: {"json": {"name": "c", "camera_group_id": s["group"], "url": "ftp://cam/1"}}, 422, "BAD_PARAM", "url"),
    ("stream url without scheme", "PATCH", "/v1/cameras/{camera}", lambda s: {"json": {"url": "10.0.0.1:554/live"}},
     422, "BAD_PARAM", "url"),
    ("javascript stream url", "PATCH", "/v1/cameras/{camera}", lambda s: {"json": {"url": "javascript:alert(1)"}},
     422, "BAD_PARAM", "url"),
    ("inverted roi", "PATCH", "/v1/cameras/{camera}", lambda s: {"json": {"stream_settings": {"roi": [10, 10, 5, 5]}}},
     422, "BAD_PARAM", "stream_settings.roi"),
    ("short roi", "POST", "/v1/cameras",
     lambda s: {"json": {"name": "c", "camera_group_id": s["group"], "stream_settings": {"roi": [1, 2, 3]}}},
     422, "BAD_PARAM", "stream_settings.roi"),
    ("negative rot", "PATCH", "/v1/cameras/{camera}",
     lambda s: {"json": {"stream_settings": {"rot": [-1, 0, 5, 5]}}}, 422, "BAD_PARAM", "stream_settings.rot"),
    ("face sizes inverted", "PATCH", "/v1/cameras/{camera}",
     lambda s: {"json": {"stream_settings": {"min_face_size": 200, "max_face_size": 100}}}, 422, "BAD_PARAM", None),
    ("webhook url not http", "POST", "/v1/webhooks", lambda s: {"json": {"title": "t", "url": "ftp://e.com/h"}},
     422, "BAD_PARAM", "url"),
    ("bad colour", "POST", "/v1/watch-lists", lambda s: {"json": {"name": "w", "color": "red"}}, 422, "BAD_PARAM",
     "color"),
    ("bad username", "POST", "/v1/users", lambda s: {"json": {"username": "a b", "role": "viewer"}}, 422,
     "BAD_PARAM", "username"),
    ("token lifetime too short", "POST", "/v1/tokens", lambda s: {"json": {"expires_in_s": 1}}, 422, "BAD_PARAM",
     "expires_in_s"),
]


@pytest.mark.parametrize(("name", "method", "path", "make_kwargs", "status", "code", "param"), BAD_INPUT,
                         ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_and_nothing_is_written(
    shared: ApiClient, name: str, method: str, path: str, make_kwargs: Callable[[S], dict[str, Any]],
    status: int, code: str, param: str | None,
) -> None:
    s = seed(shared)
    before = snapshot(shared)
    response = shared.request(method, path.format(**s), "admin", **make_kwargs(s))
    assert_error(response, status, code, param)
    assert snapshot(shared) == before


def test_last_admin_cannot_be_deleted_demoted_or_deactivated(api: ApiClient) -> None:
    admin_id = api.get("/v1/users", params={"role": "admin"}).json()["results"][0]["id"]
    before = snapshot(api)
    assert_error(api.delete(f"/v1/users/{admin_id}"), 409, "CONFLICT", "id")
    assert_error(api.patch(f"/v1/users/{admin_id}", json={"role": "operator"}), 409, "CONFLICT", "id")
    assert_error(api.patch(f"/v1/users/{admin_id}", json={"active": False}), 409, "CONFLICT", "id")
    assert snapshot(api) == before
    # With a second admin, the first one may go.
    second = api.post("/v1/users", json={"username": "admin2", "role": "admin"}).json()["id"]
    token = api.post("/v1/tokens", json={"user_id": second}).json()["token"]
    assert api.patch(f"/v1/users/{admin_id}", json={"role": "viewer"}).status_code == 200
    as_second = {"Authorization": f"Token {token}"}
    response = api.client.delete(f"/v1/users/{second}", headers=as_second)
    assert_error(response, 409, "CONFLICT", "id")  # now the last one
    assert_error(api.client.patch(f"/v1/users/{second}", headers=as_second, json={"active": False}), 409, "CONFLICT")
    assert api.client.delete(f"/v1/users/{admin_id}", headers=as_second).status_code == 204


def test_unmatched_list_can_be_deactivated_but_keeps_its_name(api: ApiClient) -> None:
    changed = api.patch("/v1/watch-lists/-1", role="operator", json={"active": False, "name": "Unmatched"})
    assert changed.status_code == 200 and changed.json()["active"] is False and changed.json()["builtin"] is True
    assert_error(api.delete("/v1/watch-lists/-1", role="operator"), 409, "CONFLICT")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversize_body_is_413(shared: ApiClient, chunked: bool) -> None:
    limit = max(shared.client.app.state.config.max_upload_bytes + 65536, 1024 * 1024)
    payload = json.dumps({"name": "x", "comment": "a" * (limit + 10)}).encode()
    before = snapshot(shared)
    if chunked:
        content: Any = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
        response = shared.post("/v1/dossiers", content=content, headers={"Content-Type": "application/json"})
    else:
        response = shared.post("/v1/dossiers", content=payload, headers={"Content-Type": "application/json"})
    body = assert_error(response, 413, "TOO_LARGE")
    assert "FACEWATCH_MAX_UPLOAD_BYTES" not in body["reason"]  # a JSON body, not a file: the setting is no help
    assert snapshot(shared) == before
    # Refused before authentication, so no user; still traced and audited like every mutating call.
    request_id = response.headers["X-Request-ID"]
    audited = [r for r in audit_rows(shared) if r.request_id == request_id]
    assert [(r.method, r.path, r.status, r.user_id) for r in audited] == [("POST", "/v1/dossiers", 413, None)]


def test_a_form_upload_over_the_limit_names_the_setting(tmp_path: Path, sqlite_url: str) -> None:
    """A photo over FACEWATCH_MAX_UPLOAD_BYTES is refused with a reason that names the setting, whether
    the route refuses it (over the setting) or the body limit does (over the setting + 64 KiB, or 1 MiB)."""
    from fastapi.testclient import TestClient

    from serve_apps.api.app import create_app
    from serve_apps.api.services import Services
    from tests.conftest import make_config, role_tokens

    config = make_config(tmp_path, sqlite_url, FACEWATCH_MAX_UPLOAD_BYTES="2000")
    # Services without a running extractor: the size is refused before any model is asked.
    app = create_app(config, Services("dlib_resnet_v1"))
    api = ApiClient(TestClient(app, raise_server_exceptions=False), role_tokens(sqlite_url))
    dossier = api.post("/v1/dossiers", json={"name": "too large"}).json()
    path = f"/v1/dossiers/{dossier['id']}/faces"
    before = snapshot(api)
    for size in (3000, 2 * 1024 * 1024):  # the route's refusal, then the body limit's
        response = api.post(path, role="operator", files={"photo": ("big.jpg", b"\xff" * size, "image/jpeg")})
        reason = assert_error(response, 413, "TOO_LARGE")["reason"]
        assert "FACEWATCH_MAX_UPLOAD_BYTES" in reason and "2000 bytes" in reason, (size, reason)
    assert snapshot(api) == before


def test_viewer_write_is_403_and_writes_nothing(api: ApiClient) -> None:
    s = seed(api)
    before = snapshot(api)
    for method, path, body in (("POST", "/v1/dossiers", {"name": "x"}), ("PATCH", f"/v1/dossiers/{s['dossier']}",
                               {"name": "y"}), ("DELETE", f"/v1/watch-lists/{s['watch_list']}", None)):
        assert_error(api.request(method, path, "viewer", json=body), 403, "FORBIDDEN")
    assert snapshot(api) == before


def test_errors_never_carry_a_stack_trace_even_for_internal_errors(api: ApiClient) -> None:
    @api.client.app.get("/v1/_boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    response = api.get("/v1/_boom")
    body = assert_error(response, 500, "INTERNAL")
    assert "secret internal detail" not in response.text and "RuntimeError" not in body["reason"]


# -- audit and request ids -------------------------------------------------------------------------


def test_mutating_calls_are_audited(api: ApiClient) -> None:
    assert audit_rows(api) == []
    created = api.post("/v1/camera-groups", json={"name": "audited"}, headers={"X-Request-ID": "req-create-1"})
    assert created.status_code == 201
    denied = api.delete(f"/v1/camera-groups/{created.json()['id']}", role="viewer", headers={"X-Request-ID": "req-2"})
    assert denied.status_code == 403
    anonymous = api.client.post("/v1/dossiers", json={"name": "x"})
    assert anonymous.status_code == 401
    api.get("/v1/camera-groups")  # reads are not audited

    rows = audit_rows(api)
    assert [(r.method, r.path, r.status) for r in rows] == [
        ("POST", "/v1/camera-groups", 201),
        ("DELETE", f"/v1/camera-groups/{created.json()['id']}", 403),
        ("POST", "/v1/dossiers", 401),
    ]
    with UnitOfWork(db_url(api)) as uow:
        admin = uow.users.by_username("admin")
        viewer = uow.users.by_username("viewer1")
        assert admin is not None and viewer is not None
        assert (rows[0].user_id, rows[0].username, rows[0].request_id) == (admin.id, "admin", "req-create-1")
        assert (rows[1].user_id, rows[1].username, rows[1].request_id) == (viewer.id, "viewer1", "req-2")
    assert rows[2].user_id is None and rows[2].username == "" and re.fullmatch(r"[0-9a-f]{32}", rows[2].request_id)
    assert all(r.created_at.utcoffset() == timedelta(0) for r in rows)


def test_request_id_is_echoed_or_generated(api: ApiClient) -> None:
    echoed = api.get("/v1/settings", headers={"X-Request-ID": "trace-abc-123"})
    assert echoed.headers["X-Request-ID"] == "trace-abc-123"
    generated = api.get("/v1/settings")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])
    assert api.get("/v1/settings").headers["X-Request-ID"] != generated.headers["X-Request-ID"]
    failed = api.client.get("/v1/settings", headers={"X-Request-ID": "trace-401"})
    assert failed.status_code == 401 and failed.headers["X-Request-ID"] == "trace-401"
