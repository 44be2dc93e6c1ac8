"""Console sign-in over real HTTP (TestClient): passwords (argon2id), sessions in the database with
HttpOnly SameSite cookies, expiry, sign-out, CSRF on cookie-authenticated writes, deactivated users,
the failed sign-in throttle (per user name and per client), the audit trail, password changes and the
first admin's password. SQLite always; PostgreSQL too with FACEWATCH_TEST_PG_URL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from storage import orm, passwords
from storage.db import engine_for
from storage.passwords import hash_password
from storage.sign_in import ensure_admin_password
from storage.tokens import ensure_admin
from storage.unit_of_work import UnitOfWork
from tests.conftest import make_config

pytestmark = pytest.mark.pg_capable


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id, with small parameters: the default profile (64 MiB, 3 passes) costs 0.5-2 s per
    hash on this machine, and these tests hash some forty times. The defaults are checked on their own."""
    from argon2 import PasswordHasher

    from storage import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))

ADMIN_PASSWORD = "admin-secret-1"
OPERATOR_PASSWORD = "operator-secret-1"


class Install:
    """An installation with an admin (token + password) and an operator (password), and a client factory."""

    def __init__(self, tmp_path: Path, db_url: str, **env: str) -> None:
        from serve_apps.api.app import create_app

        self.db_url = db_url
        self.config = make_config(tmp_path, db_url, **env)
        with UnitOfWork(db_url) as uow:
            self.admin_token = str(ensure_admin(uow))
            ensure_admin_password(uow, ADMIN_PASSWORD, generate=False)
            operator = uow.users.add(orm.User(username="op", role="operator",
                                              password_hash=hash_password(OPERATOR_PASSWORD)))
            uow.commit()
            self.operator_id = operator.id
        self.app = create_app(self.config)

    def client(self, peer: str = "testclient") -> TestClient:
        return TestClient(self.app, raise_server_exceptions=False, client=(peer, 50000))

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.admin_token}"}


def login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/v1/auth/login", json={"username": username, "password": password})


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies["fw_csrf"]}


def set_cookies(response: Any) -> dict[str, SimpleCookie]:
    found = {}
    for header in response.headers.get_list("set-cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        found.update({name: cookie for name in cookie})
    return found


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["reason"]
    return str(body["code"])


@pytest.fixture
def install(tmp_path: Path, db_url: str) -> Install:
    return Install(tmp_path, db_url, FACEWATCH_LOGIN_MAX_FAILURES="3", FACEWATCH_LOGIN_MAX_FAILURES_PER_CLIENT="5",
                   FACEWATCH_LOGIN_FAILURE_WINDOW_S="60", FACEWATCH_SESSION_TTL_S="3600")


def test_sign_in_sets_http_only_same_site_cookies_and_the_api_accepts_them(install: Install) -> None:
    client = install.client()
    response = login(client, "admin", ADMIN_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"]["username"] == "admin" and body["user"]["role"] == "admin"
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)

    cookies = set_cookies(response)
    session, token = cookies["fw_session"]["fw_session"], cookies["fw_csrf"]["fw_csrf"]
    assert session["httponly"] and session["samesite"] == "strict" and session["path"] == "/"
    assert session["max-age"] == "3600" and not session["secure"]
    assert not token["httponly"] and token["samesite"] == "strict" and token["path"] == "/"
    assert token.value == body["csrf_token"]

    # Only the session id's hash is stored.
    with engine_for(install.db_url).connect() as connection:
        stored = connection.execute(text("SELECT session_hash, csrf_token, revoked FROM sessions")).all()
    assert len(stored) == 1 and session.value not in stored[0][0] and stored[0][1] == body["csrf_token"]

    assert client.get("/v1/auth/me").json() == body
    assert client.get("/v1/camera-groups").status_code == 200
    assert client.get("/v1/users").status_code == 200  # the admin's role comes with the session

    # Without the cookie the same client is a stranger.
    client.cookies.clear()
    assert error_code(client.get("/v1/auth/me"), 401) == "AUTH_FAILED"
    assert error_code(client.get("/v1/camera-groups"), 401) == "AUTH_FAILED"


def test_cookie_writes_need_the_csrf_token(install: Install) -> None:
    client = install.client()
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        response = client.post("/v1/dossiers", json={"name": "lobby"}, headers=headers)
        assert error_code(response, 403) == "FORBIDDEN"
    assert client.get("/v1/dossiers").json()["results"] == []  # nothing was written

    created = client.post("/v1/dossiers", json={"name": "lobby"}, headers=csrf(client))
    assert created.status_code == 201, created.text
    # An API token needs no CSRF token (another site cannot make a browser send the header), even beside a cookie.
    assert client.post("/v1/camera-groups", json={"name": "hall"}, headers=install.admin()).status_code == 201
    # The operator's role applies: user administration stays closed.
    assert error_code(client.get("/v1/users"), 403) == "FORBIDDEN"


def test_wrong_password_unknown_user_and_user_without_password_are_refused(install: Install) -> None:
    with UnitOfWork(install.db_url) as uow:
        uow.users.add(orm.User(username="tokens-only", role="viewer"))
        uow.commit()
    for peer, (username, password) in enumerate((("admin", "wrong-password"), ("nobody", ADMIN_PASSWORD),
                                                 ("tokens-only", ""), ("admin", ""))):
        client = install.client(f"10.0.0.{peer}")
        response = login(client, username, password)
        assert error_code(response, 401) == "AUTH_FAILED"
        assert "fw_session" not in set_cookies(response)
    bad = install.client().post("/v1/auth/login", json={"username": "admin"})
    assert error_code(bad, 422) == "BAD_PARAM"


def test_deactivated_user_cannot_sign_in_and_their_session_stops(install: Install) -> None:
    client = install.client()
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    assert client.get("/v1/camera-groups").status_code == 200
    admin = install.client("10.0.0.9")
    assert admin.patch(f"/v1/users/{install.operator_id}", json={"active": False},
                       headers=install.admin()).status_code == 200
    assert error_code(client.get("/v1/camera-groups"), 401) == "AUTH_FAILED"
    refused = login(install.client("10.0.0.8"), "op", OPERATOR_PASSWORD)
    assert error_code(refused, 401) == "AUTH_FAILED" and "deactivated" in refused.json()["reason"]
    with UnitOfWork(install.db_url) as uow:
        assert all(s.revoked for s in uow.session.scalars(select(orm.UserSession)))

    # Reactivated, the user signs in again, but the old session stays ended.
    assert admin.patch(f"/v1/users/{install.operator_id}", json={"active": True},
                       headers=install.admin()).status_code == 200
    assert error_code(client.get("/v1/camera-groups"), 401) == "AUTH_FAILED"
    assert login(install.client("10.0.0.7"), "op", OPERATOR_PASSWORD).status_code == 200


def test_sign_out_revokes_the_session_and_clears_the_cookies(install: Install) -> None:
    client = install.client()
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    cookie = client.cookies["fw_session"]
    assert error_code(client.post("/v1/auth/logout"), 403) == "FORBIDDEN"  # CSRF applies to sign-out too
    response = client.post("/v1/auth/logout", headers=csrf(client))
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert cleared["fw_session"]["fw_session"]["max-age"] == "0" and cleared["fw_csrf"]["fw_csrf"]["max-age"] == "0"
    assert "fw_session" not in client.cookies

    stolen = install.client()
    stolen.cookies.set("fw_session", cookie)
    assert error_code(stolen.get("/v1/auth/me"), 401) == "AUTH_FAILED"
    # Signing out again (or without a session) is harmless.
    assert stolen.post("/v1/auth/logout").status_code == 204


def test_an_expired_session_is_refused(install: Install) -> None:
    client = install.client()
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    with UnitOfWork(install.db_url) as uow:
        for row in uow.session.scalars(select(orm.UserSession)):
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        uow.commit()
    # An edit behind the API's back (no replica is told) shows within FACEWATCH_AUTH_CACHE_TTL_S (1 s);
    # a session's own expiry is checked on every request (test_the_session_ttl_setting_sets_expiry).
    time.sleep(install.config.auth_cache_ttl_s + 0.1)
    assert error_code(client.get("/v1/camera-groups"), 401) == "AUTH_FAILED"


def test_the_session_ttl_setting_sets_expiry(tmp_path: Path, db_url: str) -> None:
    install = Install(tmp_path, db_url, FACEWATCH_SESSION_TTL_S="3")
    client = install.client()
    before = datetime.now(UTC)
    response = login(client, "op", OPERATOR_PASSWORD)
    after = datetime.now(UTC)
    assert set_cookies(response)["fw_session"]["fw_session"]["max-age"] == "3"
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert before + timedelta(seconds=3) <= expires <= after + timedelta(seconds=3)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    # (the browser drops the cookie at Max-Age; the server refuses it anyway)
    client.cookies.set("fw_session", set_cookies(response)["fw_session"]["fw_session"].value)
    assert error_code(client.get("/v1/auth/me"), 401) == "AUTH_FAILED"


def age_failures(install: Install, seconds: float) -> None:
    """Moves every recorded failure `seconds` into the past (instead of waiting out the window)."""
    with UnitOfWork(install.db_url) as uow:
        for row in uow.session.scalars(select(orm.LoginFailure)):
            row.created_at -= timedelta(seconds=seconds)
        uow.commit()


def test_failed_sign_ins_are_throttled_per_user_name(install: Install) -> None:
    for attempt in range(3):
        assert login(install.client(f"10.1.0.{attempt}"), "op", "wrong-password").status_code == 401
    # The limit (3 in 60 s) is reached: refused before the password is checked, even the right one.
    refused = login(install.client("10.1.0.99"), "op", OPERATOR_PASSWORD)
    assert error_code(refused, 429) == "TOO_MANY_REQUESTS"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["retry_after_s"] == int(refused.headers["Retry-After"])
    # Other users are not affected.
    assert login(install.client("10.1.0.98"), "admin", ADMIN_PASSWORD).status_code == 200
    # Once the oldest failure leaves the window, one more attempt is allowed.
    with UnitOfWork(install.db_url) as uow:
        rows = list(uow.session.scalars(select(orm.LoginFailure).order_by(orm.LoginFailure.id)))
        for row, age in zip(rows, (61, 30, 20), strict=True):
            row.created_at = datetime.now(UTC) - timedelta(seconds=age)
        uow.commit()
    assert login(install.client("10.1.0.97"), "op", "wrong-password").status_code == 401
    assert error_code(login(install.client("10.1.0.96"), "op", OPERATOR_PASSWORD), 429) == "TOO_MANY_REQUESTS"
    age_failures(install, 61)
    assert login(install.client("10.1.0.95"), "op", OPERATOR_PASSWORD).status_code == 200


def test_failed_sign_ins_are_throttled_per_client_address(install: Install) -> None:
    attacker = install.client("192.0.2.1")
    for n in range(5):
        assert login(attacker, f"guess{n}", "wrong-password").status_code == 401
    refused = login(attacker, "admin", ADMIN_PASSWORD)
    assert error_code(refused, 429) == "TOO_MANY_REQUESTS" and int(refused.headers["Retry-After"]) >= 1
    assert login(install.client("192.0.2.2"), "admin", ADMIN_PASSWORD).status_code == 200


def test_sign_in_sign_out_and_failures_are_audited(install: Install) -> None:
    client = install.client()
    assert login(client, "op", "wrong-password").status_code == 401
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    assert client.post("/v1/auth/logout", headers=csrf(client)).status_code == 204
    for _ in range(4):  # the success forgot the first failure: three more, then the throttle
        login(client, "op", "wrong-password")
    audit = install.client().get("/v1/audit", params={"path_prefix": "/v1/auth/", "limit": 100},
                                 headers=install.admin()).json()["results"]
    seen = [(row["path"], row["status"], row["username"], row["user_id"]) for row in reversed(audit)]
    assert seen == [
        ("/v1/auth/login", 401, "op", None),
        ("/v1/auth/login", 200, "op", install.operator_id),
        ("/v1/auth/logout", 204, "op", install.operator_id),
        ("/v1/auth/login", 401, "op", None),
        ("/v1/auth/login", 401, "op", None),
        ("/v1/auth/login", 401, "op", None),
        ("/v1/auth/login", 429, "op", None),
    ], seen


def test_passwords_set_by_admins_and_changed_by_their_owners(install: Install) -> None:
    admin = install.client()
    created = admin.post("/v1/users", json={"username": "vic", "role": "viewer", "password": "viewer-secret"},
                         headers=install.admin())
    assert created.status_code == 201, created.text
    assert created.json()["has_password"] is True and "password" not in created.json()
    plain = admin.post("/v1/users", json={"username": "tok", "role": "viewer"}, headers=install.admin()).json()
    assert plain["has_password"] is False
    listed = {u["username"]: u["has_password"] for u in
              admin.get("/v1/users", headers=install.admin()).json()["results"]}
    assert listed == {"admin": True, "op": True, "vic": True, "tok": False}
    short = admin.post("/v1/users", json={"username": "x", "role": "viewer", "password": "short"},
                       headers=install.admin())
    assert error_code(short, 422) == "BAD_PARAM" and short.json()["param"] == "password"

    viewer_id = created.json()["id"]
    viewer = install.client("10.2.0.1")
    assert login(viewer, "vic", "viewer-secret").status_code == 200
    own = f"/v1/users/{viewer_id}/password"
    # Own change: current password needed and checked; short ones refused; others' passwords off limits.
    assert error_code(viewer.put(own, json={"password": "new-viewer-secret"}, headers=csrf(viewer)), 403) == "FORBIDDEN"
    assert error_code(viewer.put(own, json={"password": "new-viewer-secret", "current_password": "nope-nope"},
                                 headers=csrf(viewer)), 403) == "FORBIDDEN"
    assert error_code(viewer.put(own, json={"password": "1234567", "current_password": "viewer-secret"},
                                 headers=csrf(viewer)), 422) == "BAD_PARAM"
    assert error_code(viewer.put(f"/v1/users/{install.operator_id}/password", json={"password": "taken-over!"},
                                 headers=csrf(viewer)), 403) == "FORBIDDEN"
    changed = viewer.put(own, json={"password": "new-viewer-secret", "current_password": "viewer-secret"},
                         headers=csrf(viewer))
    assert changed.status_code == 204, changed.text
    assert viewer.get("/v1/auth/me").status_code == 200  # one's own session survives one's own change
    assert login(install.client("10.2.0.2"), "vic", "viewer-secret").status_code == 401
    second = install.client("10.2.0.3")
    assert login(second, "vic", "new-viewer-secret").status_code == 200

    # An admin reset (no current password) ends every session of that user.
    reset = admin.put(own, json={"password": "reset-by-admin"}, headers=install.admin())
    assert reset.status_code == 204
    assert error_code(viewer.get("/v1/auth/me"), 401) == "AUTH_FAILED"
    assert error_code(second.get("/v1/auth/me"), 401) == "AUTH_FAILED"
    assert login(install.client("10.2.0.4"), "vic", "reset-by-admin").status_code == 200
    assert error_code(admin.put("/v1/users/999999/password", json={"password": "whatever-1"},
                                headers=install.admin()), 404) == "NOT_FOUND"
    with engine_for(install.db_url).connect() as connection:
        hashes = [row[0] for row in connection.execute(text("SELECT password_hash FROM users WHERE username='vic'"))]
    assert hashes[0].startswith("$argon2id$") and "reset-by-admin" not in hashes[0]


def test_the_live_feed_accepts_the_session_cookie(install: Install) -> None:
    client = install.client()
    assert login(client, "op", OPERATOR_PASSWORD).status_code == 200
    with client.stream("GET", "/v1/events/stream", params={"timeout_s": 0.5}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert ": connected" in "".join(response.iter_text())


def test_first_admin_password_from_the_environment_or_generated_once(tmp_path: Path, db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        ensure_admin(uow)
        with pytest.raises(ValueError, match="at least 8"):
            ensure_admin_password(uow, "short", generate=False)
        assert ensure_admin_password(uow, None, generate=False) is None  # not first start, nothing given
        generated = ensure_admin_password(uow, None, generate=True)
        assert generated and len(generated) >= 12
        # Never replaced from the environment once set.
        assert ensure_admin_password(uow, "from-the-environment", generate=True) is None
    from serve_apps.api.app import create_app

    client = TestClient(create_app(make_config(tmp_path, db_url)), raise_server_exceptions=False)
    assert login(client, "admin", str(generated)).status_code == 200


def test_prepare_installation_reports_the_first_admin_password_once(tmp_path: Path) -> None:
    from cluster.service import prepare_installation

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    config = make_config(tmp_path, url, FACEWATCH_ADMIN_PASSWORD="chosen-password")
    first = prepare_installation(config)
    assert first.admin_token and first.admin_password is None  # chosen, so not printed
    assert prepare_installation(config).admin_token is None
    with UnitOfWork(url) as uow:
        admin = uow.users.by_username("admin")
        assert admin is not None and admin.has_password
    generated = prepare_installation(make_config(tmp_path / "other", f"sqlite:///{tmp_path / 'other.db'}"))
    assert generated.admin_password and generated.admin_token


def test_the_default_kdf_is_memory_hard_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    from argon2 import PasswordHasher

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher())  # the production parameters
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(stored, "correct horse battery")
    assert not passwords.verify_password(stored, "correct horse battery ")
    assert not passwords.verify_password(None, "anything") and not passwords.verify_password("garbage", "x")
    # A hash made with weaker parameters verifies, and is flagged for re-hashing at the next sign-in.
    assert passwords.needs_rehash(PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("x"))


def test_demo_keep_running_says_where_the_console_is_and_how_to_sign_in() -> None:
    from cluster.demo import keep_running_message

    message = keep_running_message("http://127.0.0.1:8000", "demo-pass-123", "fw_demo_token")
    assert "http://127.0.0.1:8000/" in message and "admin" in message and "demo-pass-123" in message
    assert "Ctrl+C" in message
