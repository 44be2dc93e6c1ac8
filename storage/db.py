"""Engines, sessions and schema migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from facewatch.errors import Conflict, ServiceUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Foreign keys are off by default in SQLite; WAL lets API readers run while a writer commits.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their folder created and safe concurrency pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One shared engine per URL and process (actors and API replicas each get their own)."""
    return create_db_engine(url)


def session_factory(url: str) -> sessionmaker[Session]:
    return _factory_for(engine_for(url))


@lru_cache(maxsize=8)
def _factory_for(engine: Engine) -> sessionmaker[Session]:
    # One per engine: every sessionmaker makes a Session subclass of its own, and SQLAlchemy then copies
    # each session event listener onto it, ~0.4 ms of Python per unit of work (most of a one-query read).
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent)."""
    upgrade_to(url, "head")


def upgrade_to(url: str, revision: str) -> None:
    """Run the migrations up to `revision` in one transaction.

    On SQLite foreign keys are off meanwhile: a migration that rebuilds a table (Alembic batch mode)
    drops the old one, and with foreign keys on SQLite would first delete its rows, cascading to their
    children. The pragma only changes outside a transaction; every reference is checked before commit.
    """
    engine = engine_for(url)
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                cfg = alembic_config(url)
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration would leave broken references: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turns integrity and connectivity errors into typed API errors (409 / 503)."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(_integrity_reason(exc)) from exc
    except OperationalError as exc:
        if _is_sqlite_schema_error(exc):
            raise
        raise ServiceUnavailable("the database is unavailable, try again") from exc


def _integrity_reason(exc: IntegrityError) -> str:
    text = str(exc.orig).lower()
    if "unique" in text or "duplicate" in text:
        return "an object with the same unique value already exists"
    if "foreign key" in text:
        return "the object is still referenced by other objects"
    return "the change conflicts with existing data"


def _is_sqlite_schema_error(exc: OperationalError) -> bool:
    return "no such table" in str(exc.orig).lower() or "no such column" in str(exc.orig).lower()


def ping(url: str) -> None:
    """One trivial round trip to the database (the health check); raises when it is unreachable."""
    with engine_for(url).connect() as connection:
        connection.execute(text("SELECT 1"))
