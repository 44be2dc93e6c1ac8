"""Shared fixtures: the real-data folder, temporary installations (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    configured = os.environ.get("FACEWATCH_TEST_DATA")
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real photos and video (../shared/data or FACEWATCH_TEST_DATA); skips when absent."""
    path = _data_dir()
    if not (path / "faces").is_dir():
        pytest.skip(f"real test data not found at {path} (set FACEWATCH_TEST_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def faces_dir(data_dir: Path) -> Path:
    return data_dir / "faces"


# -- installations -----------------------------------------------------------------------------------

PG_URL_ENV = "FACEWATCH_TEST_PG_URL"


def _create_pg_database(base_url: str) -> tuple[str, str]:
    """A fresh database on the test server, named by us (so we only ever drop our own)."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"facewatch_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(make_url(base_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)), name


def _drop_pg_database(base_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from storage.db import engine_for

    engine_for.cache_clear()
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fresh_database(kind: str, sqlite_path: Path, migrated: bool = True) -> Iterator[str]:
    """A generator for fixtures: the URL of a fresh database of `kind` ("sqlite": a file at
    `sqlite_path`; "postgresql": one made for the test and dropped after it, or the test is skipped
    without FACEWATCH_TEST_PG_URL), migrated unless `migrated` is False."""
    from storage.db import migrate

    if kind == "sqlite":
        url = f"sqlite:///{sqlite_path}"
        if migrated:
            migrate(url)
        yield url
        return
    base = os.environ.get(PG_URL_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_URL_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    url, name = _create_pg_database(base)
    try:
        if migrated:
            migrate(url)
        yield url
    finally:
        _drop_pg_database(base, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A migrated, empty database: SQLite always, PostgreSQL when FACEWATCH_TEST_PG_URL is set."""
    yield from fresh_database(request.param, tmp_path / "facewatch.db")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from storage.db import migrate

    url = f"sqlite:///{tmp_path / 'facewatch.db'}"
    migrate(url)
    return url


def make_config(tmp_path: Path, db_url: str, **extra: str):
    from facewatch.settings import load_config

    env = {"FACEWATCH_HOME": str(tmp_path / "home"), "FACEWATCH_DATABASE_URL": db_url, **extra}
    return load_config(env)


class ApiClient:
    """A TestClient plus the tokens of one admin, one operator and one viewer."""

    def __init__(self, client, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Token {self.tokens[role]}"}

    def request(self, method: str, path: str, role: str = "admin", **kwargs):
        headers = {**self.as_(role), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, role: str = "admin", **kw):
        return self.request("GET", path, role, **kw)

    def post(self, path: str, role: str = "admin", **kw):
        return self.request("POST", path, role, **kw)

    def patch(self, path: str, role: str = "admin", **kw):
        return self.request("PATCH", path, role, **kw)

    def delete(self, path: str, role: str = "admin", **kw):
        return self.request("DELETE", path, role, **kw)


def role_tokens(db_url: str, suffix: str = "1") -> dict[str, str]:
    """An API token per role on a fresh installation: the first admin's, and those of users named
    `operator<suffix>` and `viewer<suffix>`."""
    from storage import orm
    from storage.tokens import ensure_admin, issue_token
    from storage.unit_of_work import UnitOfWork

    with UnitOfWork(db_url) as uow:
        tokens = {"admin": ensure_admin(uow)}
        for role in ("operator", "viewer"):
            user = uow.users.add(orm.User(username=f"{role}{suffix}", role=role))
            tokens[role] = issue_token(uow, user)[1]
        uow.commit()
    return tokens  # type: ignore[return-value]


def build_api(tmp_path: Path, db_url: str) -> ApiClient:
    from fastapi.testclient import TestClient

    from serve_apps.api.app import create_app

    config = make_config(tmp_path, db_url)
    return ApiClient(TestClient(create_app(config), raise_server_exceptions=False), role_tokens(db_url))


@pytest.fixture
def api(tmp_path: Path, sqlite_url: str) -> ApiClient:
    """The API app on a fresh SQLite installation (fast; the full matrix runs here)."""
    return build_api(tmp_path, sqlite_url)


@pytest.fixture
def api_any_db(tmp_path: Path, db_url: str) -> ApiClient:
    """The API app on SQLite and, when configured, on PostgreSQL."""
    return build_api(tmp_path, db_url)


# -- one local Ray per test module -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_module(request: pytest.FixtureRequest):
    """The one local-Ray fixture: a Ray for the whole test module, started with the module's
    `RAY_OPTIONS` (num_cpus, namespace, resources; see tests/helpers.py `local_ray`)."""
    from tests.helpers import local_ray

    with local_ray(**getattr(request.module, "RAY_OPTIONS", {})):
        yield


# -- multi-node Ray on this machine ----------------------------------------------------------------


def local_cluster(head_cpus: int):
    """A real multi-node Ray cluster on this machine (ray.cluster_utils.Cluster), head only; tests add nodes.
    A generator for fixtures: yields the cluster, then disconnects and shuts every node down."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


# -- leaving the test process ------------------------------------------------------------------------

_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leaves with pytest's exit status without running the interpreter's finalisation.

    The suite starts and stops Ray many times in this one process; background threads that Ray Serve
    handles and Ray's own client leave behind can touch a core worker that `ray.shutdown()` has freed,
    and the interpreter's teardown then ends in a segmentation fault after every test has passed (a known
    Ray limitation, ray-project/ray#31145). By now pytest has printed its summary and written its reports,
    so nothing is lost by exiting directly; Ray is shut down first so that no local cluster outlives us.
    FACEWATCH_TEST_CLEAN_EXIT=1 keeps the normal interpreter exit (to look at the crash itself).
    """
    if _exit_status is None or os.environ.get("FACEWATCH_TEST_CLEAN_EXIT") == "1":
        return
    import sys

    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status)
