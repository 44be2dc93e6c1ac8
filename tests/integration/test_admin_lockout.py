"""Nobody is locked out (issue 11, item 5): the API refuses to delete the last token any active admin
has; `facewatch admin-token` makes a new admin token with the installation's own database; the local
CLI (`facewatch enroll`) gets its token the same way, run after run, without FACEWATCH_ADMIN_TOKEN."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from cluster.cli import main
from cluster.enroll import _run_token
from storage import orm
from storage.repositories import hash_token
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, build_api, make_config
from tests.integration.test_api import assert_error


def _token_ids(api: ApiClient, role: str = "admin") -> list[int]:
    with UnitOfWork(str(api.client.app.state.config.database_url)) as uow:
        user = uow.users.by_username({"admin": "admin", "operator": "operator1", "viewer": "viewer1"}[role])
        assert user is not None
        return [t.id for t in uow.session.scalars(select(orm.Token).where(orm.Token.user_id == user.id))]


@pytest.mark.pg_capable
def test_the_last_admin_token_cannot_be_deleted(api_any_db: ApiClient) -> None:
    api = api_any_db
    [only] = _token_ids(api)
    body = assert_error(api.delete(f"/v1/tokens/{only}"), 409, "CONFLICT", param="id")
    assert "facewatch admin-token" in body["reason"]
    assert api.get("/v1/users").status_code == 200  # still usable
    # Other users' tokens go as before, and with a second admin token the first one may go.
    [viewer_token] = _token_ids(api, "viewer")
    assert api.delete(f"/v1/tokens/{viewer_token}").status_code == 204
    second = api.post("/v1/tokens", json={"name": "spare"}).json()
    assert api.delete(f"/v1/tokens/{only}").status_code == 204
    api.tokens["admin"] = second["token"]
    assert_error(api.delete(f"/v1/tokens/{second['id']}"), 409, "CONFLICT")


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> dict:
    monkeypatch.setenv("FACEWATCH_HOME", str(home))
    monkeypatch.delenv("FACEWATCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("FACEWATCH_ADMIN_TOKEN", raising=False)
    capsys.readouterr()
    assert main(["admin-token", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_admin_token_command_lets_the_operator_back_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    first = _cli(monkeypatch, capsys, home)
    url = str(make_config(tmp_path, "sqlite:///" + str(home / "facewatch.db")).database_url)
    api = build_api(tmp_path / "other", url)  # the API on that same installation
    headers = {"Authorization": f"Token {first['token']}"}
    assert api.client.get("/v1/users", headers=headers).status_code == 200

    # Locked out: every admin token gone (here straight in the database, as a fuzzer or mistake might).
    with UnitOfWork(url) as uow:
        for token in uow.session.scalars(select(orm.Token)):
            uow.session.delete(token)
        uow.commit()
    # Deleted behind the API's back: its kept caller is forgotten within FACEWATCH_AUTH_CACHE_TTL_S.
    time.sleep(make_config(tmp_path, url).auth_cache_ttl_s + 0.1)
    assert api.client.get("/v1/users", headers=headers).status_code == 401
    again = _cli(monkeypatch, capsys, home)
    assert again["username"] == first["username"] and again["token"] != first["token"]
    assert api.client.get("/v1/users", headers={"Authorization": f"Token {again['token']}"}).status_code == 200

    named = _cli(monkeypatch, capsys, home, "--user", "night-shift")
    assert named["username"] == "night-shift"
    users = api.client.get("/v1/users", headers={"Authorization": f"Token {named['token']}"}).json()["results"]
    assert {u["username"]: u["role"] for u in users}["night-shift"] == "admin"

    monkeypatch.setenv("FACEWATCH_HOME", str(home))
    assert main(["admin-token", "--user", "operator1"]) == 2  # not an admin: refused, nothing promoted


def test_admin_token_command_creates_an_admin_when_none_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    _cli(monkeypatch, capsys, home)
    url = "sqlite:///" + str(home / "facewatch.db")
    with UnitOfWork(url) as uow:
        for user in uow.session.scalars(select(orm.User)):
            user.active = False
        uow.commit()
    made = _cli(monkeypatch, capsys, home)
    assert made["username"] == "admin-2"
    with UnitOfWork(url) as uow:
        row = uow.session.scalar(select(orm.Token).where(orm.Token.token_hash == hash_token(made["token"])))
        assert row is not None and row.user.role == "admin" and row.user.active


def test_the_local_cli_gets_a_token_of_its_own_run_after_run(tmp_path: Path) -> None:
    """What `facewatch enroll` uses without --token: a token in the installation's own DB, gone after."""
    config = make_config(tmp_path, f"sqlite:///{tmp_path / 'facewatch.db'}")
    seen = []
    for _ in range(2):
        with _run_token(config, None) as token:
            with UnitOfWork(config.database_url) as uow:
                row = uow.session.scalar(select(orm.Token).where(orm.Token.token_hash == hash_token(token)))
                assert row is not None and row.user.role == "admin" and row.expires_at is not None
            seen.append(token)
        with UnitOfWork(config.database_url) as uow:
            assert uow.session.scalar(select(orm.Token).where(orm.Token.token_hash == hash_token(token))) is None
    assert seen[0] != seen[1]
    with _run_token(config, "fw_given") as token:
        assert token == "fw_given"
