"""Backup and restore of an installation: database, media and gallery snapshots (the commands
`facewatch backup DIR` / `facewatch restore DIR` are cluster/backup.py). It lives in storage/ because it
reads and writes every table itself.

A backup folder holds:

    manifest.json            format, facewatch/Alembic versions, row counts, media and snapshot lists
                             (written last: a folder without it is an unfinished backup)
    db/<table>.jsonl.gz      a portable dump of every table (one JSON object per row; bytes as
                             base64, times as ISO 8601 UTC), restorable into SQLite or PostgreSQL
    db/facewatch.sqlite      SQLite installations only: the consistent copy (sqlite3 backup API) the
                             dump was read from; a plain SQLite file for forensics or manual use
    media/aa/bb/<key>        every media file a row references (content addressed, checked on restore)
    galleries/*.npz          the gallery shard snapshots found in FACEWATCH_HOME/galleries

Decisions:
- The portable dump is the format restores read, so a backup of either backend restores into either
  (SQLite → PostgreSQL is the usual move from a laptop trial to a cluster). `pg_dump`/`pg_restore`
  are not used: they only restore into PostgreSQL and need matching client and server versions (for a
  very large PostgreSQL database, a `pg_dump -Fc` of your own next to this backup is faster to take).
- Consistency: the dump is read inside one snapshot (SQLite: the copy made by the backup API;
  PostgreSQL: one REPEATABLE READ read-only transaction). Gallery snapshots are copied BEFORE the
  dump, so every snapshot's log position is at or before the dump's; a restored shard loads its
  snapshot and replays the newer change-log rows, which the dump holds. Media files are copied AFTER
  the dump, the ones its rows reference (a file retention deleted in between is listed in the
  manifest as missing; its event was expired anyway). Unreferenced files are not copied.
- Restore goes into an EMPTY installation: no users, dossiers, events, cameras… in the database (the
  rows the migrations seed do not count), no media files and no gallery snapshots. `force=True`
  (`--force`) wipes the database's rows and the snapshots first (media files are content addressed:
  existing ones are kept, the backup's are added). The database is migrated to the dump's Alembic
  revision, loaded in one transaction, then migrated to the newest revision; PostgreSQL sequences
  are moved past the restored ids.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Connection, DateTime, LargeBinary, Table, create_engine, delete, func, select, text
from sqlalchemy.engine import make_url

from facewatch import __version__
from facewatch.settings import Config
from storage import orm
from storage.db import alembic_config, create_db_engine, engine_for, migrate, upgrade_to
from storage.media import LocalMediaStore
from storage.retention import media_columns

FORMAT = 1
MANIFEST = "manifest.json"
INSERT_CHUNK = 1000
SEEDED_TABLES = {"watch_lists", "runtime_settings"}  # rows the migrations may create
MEDIA_KEY_COLUMNS = {(c.table.name, c.name) for c in media_columns()}


class BackupError(RuntimeError):
    """A backup or restore that cannot go ahead (not empty, unfinished backup, version mismatch)."""


# ---- row encoding ------------------------------------------------------------------------------------

def _kind(column: Any) -> str:
    ctype = column.type
    impl = getattr(ctype, "impl", ctype)
    if isinstance(ctype, LargeBinary) or isinstance(impl, LargeBinary):
        return "bytes"
    if isinstance(impl, DateTime):
        return "datetime"
    if isinstance(ctype, JSON):
        return "json"
    return "plain"


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "datetime":
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return value


def _decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "datetime":
        return datetime.fromisoformat(value)
    return value


def tables() -> list[Table]:
    """Every table of the schema, parents before children."""
    return list(orm.Base.metadata.sorted_tables)


# ---- backup -------------------------------------------------------------------------------------------

def _ensure_empty_dir(path: Path) -> None:
    if path.exists():
        if not path.is_dir():
            raise BackupError(f"{path} exists and is not a folder")
        if any(path.iterdir()):
            raise BackupError(f"{path} is not empty; back up into a new or empty folder")
    path.mkdir(parents=True, exist_ok=True)


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _consistent_connection(database_url: str, workdir: Path) -> Iterator[tuple[Connection, str | None]]:
    """A connection whose reads all see one state of the database, and the native copy (SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        native = workdir / "facewatch.sqlite"
        source = sqlite3.connect(url.database or ":memory:")
        try:
            target = sqlite3.connect(native)
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            target.close()
        finally:
            source.close()
        engine = create_engine(f"sqlite:///{native}")
        try:
            with engine.connect() as connection:
                yield connection, native.name
        finally:
            engine.dispose()
        return
    engine = create_db_engine(database_url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
            with connection.begin():
                connection.execute(text("SET TRANSACTION READ ONLY"))
                yield connection, None
    finally:
        engine.dispose()


def _dump_table(connection: Connection, table: Table, target: Path, keys: set[str]) -> int:
    kinds = {c.name: _kind(c) for c in table.columns}
    key_columns = [c.name for c in table.columns if (table.name, c.name) in MEDIA_KEY_COLUMNS]
    order = list(table.primary_key.columns) or list(table.columns)
    count = 0
    with gzip.open(target, "wt", encoding="utf-8") as out:
        result = connection.execution_options(stream_results=True, yield_per=2000).execute(
            select(table).order_by(*order))
        for row in result.mappings():
            out.write(json.dumps({name: _encode(row[name], kinds[name]) for name in kinds}, separators=(",", ":")))
            out.write("\n")
            keys.update(row[name] for name in key_columns if row[name])
            count += 1
    return count


def backup(config: Config, target: Path | str) -> dict[str, Any]:
    """Back up the installation of `config` into the new or empty folder `target`; returns the manifest."""
    target = Path(target)
    _ensure_empty_dir(target)
    started = datetime.now(UTC)
    # 1. gallery snapshots (before the dump: their log positions must not be ahead of it)
    snapshots = []
    if config.snapshot_dir.is_dir():
        (target / "galleries").mkdir()
        for path in sorted(config.snapshot_dir.glob("*.npz")):
            shutil.copy2(path, target / "galleries" / path.name)
            snapshots.append(path.name)
    # 2. the database
    db_dir = target / "db"
    db_dir.mkdir()
    counts: dict[str, int] = {}
    keys: set[str] = set()
    with _consistent_connection(config.database_url, db_dir) as (connection, native):
        revision = MigrationContext.configure(connection).get_current_revision()
        if revision is None:
            raise BackupError(f"{_redacted(config.database_url)} has no facewatch schema (run `facewatch migrate`)")
        for table in tables():
            counts[table.name] = _dump_table(connection, table, db_dir / f"{table.name}.jsonl.gz", keys)
        settings = {row["key"]: row["value"]
                    for row in connection.execute(select(orm.RuntimeSetting.__table__)).mappings()}
    # 3. media referenced by the dumped rows
    media = LocalMediaStore(config.media_root)
    copied, size, missing = 0, 0, []
    for key in sorted(keys):
        try:
            source = media.path(key)
        except Exception:  # noqa: BLE001 - a malformed key in a row is not a file
            missing.append(key)
            continue
        if not source.is_file():
            missing.append(key)
            continue
        destination = target / "media" / source.relative_to(media.root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied += 1
        size += destination.stat().st_size
    manifest = {
        "format": FORMAT,
        "facewatch_version": __version__,
        "alembic_revision": revision,
        "created_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "source": {"backend": make_url(config.database_url).get_backend_name(),
                   "database": _redacted(config.database_url), "media_root": str(config.media_root)},
        "embedder": settings.get("embedder"),
        "tables": counts,
        "native_db": f"db/{native}" if native else None,
        "media": {"files": copied, "bytes": size, "missing": missing},
        "gallery_snapshots": snapshots,
    }
    _write_json(target / MANIFEST, manifest)
    return manifest


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


# ---- restore ------------------------------------------------------------------------------------------

def read_manifest(source: Path | str) -> dict[str, Any]:
    path = Path(source) / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} holds no {MANIFEST}: not a facewatch backup, or an unfinished one")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not supported (this version reads {FORMAT})")
    return manifest


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def installation_contents(config: Config) -> dict[str, Any]:
    """What would make the installation non-empty: table row counts, media files, snapshots."""
    found: dict[str, Any] = {}
    with engine_for(config.database_url).connect() as connection:
        if _current_revision(connection) is not None:
            for table in tables():
                if table.name in SEEDED_TABLES:
                    continue
                count = int(connection.scalar(select(func.count()).select_from(table)) or 0)
                if count:
                    found[table.name] = count
            custom_lists = connection.scalar(select(func.count()).select_from(orm.WatchList.__table__)
                                             .where(orm.WatchList.builtin.is_(False)))
            if custom_lists:
                found["watch_lists"] = int(custom_lists)
    if config.media_root.is_dir() and any(p.is_file() and not p.name.startswith(".tmp-")
                                          for p in config.media_root.rglob("*")):
        found["media_files"] = True
    if config.snapshot_dir.is_dir() and any(config.snapshot_dir.glob("*.npz")):
        found["gallery_snapshots"] = True
    return found


def _known_revision(revision: str) -> bool:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return scripts.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 - alembic raises several kinds for unknown ids
        return False


def _rows(path: Path, table: Table) -> Iterator[list[dict[str, Any]]]:
    kinds = {c.name: _kind(c) for c in table.columns}
    chunk: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            raw = json.loads(line)
            chunk.append({name: _decode(raw.get(name), kind) for name, kind in kinds.items() if name in raw})
            if len(chunk) >= INSERT_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _reset_sequences(connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return  # SQLite derives the next rowid from the rows (and AUTOINCREMENT tables track inserts)
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].type.python_type is not int:
            continue
        name, column = table.name, pk[0].name
        connection.execute(text(
            f'SELECT setval(pg_get_serial_sequence(:table, :column), GREATEST(MAX("{column}"), 1), '
            f'COALESCE(MAX("{column}"), 0) >= 1) FROM "{name}"'), {"table": name, "column": column})


def _restore_media(source: Path, media_root: Path) -> tuple[int, list[str]]:
    store = LocalMediaStore(media_root)
    restored, corrupt = 0, []
    folder = source / "media"
    if not folder.is_dir():
        return 0, []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.name
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if not key.startswith(digest.hexdigest() + "."):
            corrupt.append(key)
            continue
        destination = store.path(key)
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            tmp = destination.with_name(f".tmp-{key}")
            shutil.copy2(path, tmp)
            os.replace(tmp, destination)
        restored += 1
    return restored, corrupt


def restore(config: Config, source: Path | str, force: bool = False) -> dict[str, Any]:
    """Restore the backup in `source` into the (empty, unless `force`) installation of `config`."""
    source = Path(source)
    manifest = read_manifest(source)
    revision = manifest["alembic_revision"]
    if not _known_revision(revision):
        raise BackupError(f"the backup's schema revision {revision} is unknown to this facewatch version "
                          f"({__version__}); restore it with the version that made it "
                          f"({manifest['facewatch_version']})")
    for table in tables():
        if not (source / "db" / f"{table.name}.jsonl.gz").is_file():
            raise BackupError(f"the backup lacks db/{table.name}.jsonl.gz")
    config.home.mkdir(parents=True, exist_ok=True)
    config.media_root.mkdir(parents=True, exist_ok=True)
    contents = installation_contents(config)
    if contents and not force:
        raise BackupError(f"the installation at {config.home} is not empty ({', '.join(sorted(contents))}); "
                          "restore into a new FACEWATCH_HOME/database, or pass --force to replace its contents")
    with engine_for(config.database_url).connect() as connection:
        current = _current_revision(connection)
    if current is None:
        upgrade_to(config.database_url, revision)
    elif current != revision:
        raise BackupError(f"the database is at schema revision {current}, the backup at {revision}; "
                          "restore into a new, empty database")
    if config.snapshot_dir.is_dir():
        for stale in config.snapshot_dir.glob("*.npz"):
            stale.unlink()  # they describe the data being replaced
    counts: dict[str, int] = {}
    with engine_for(config.database_url).begin() as connection:
        for table in reversed(tables()):
            connection.execute(delete(table))
        for table in tables():
            counts[table.name] = 0
            for chunk in _rows(source / "db" / f"{table.name}.jsonl.gz", table):
                connection.execute(table.insert(), chunk)
                counts[table.name] += len(chunk)
        _reset_sequences(connection)
    mismatched = {name: (counts.get(name), n) for name, n in manifest["tables"].items() if counts.get(name) != n}
    if mismatched:
        raise BackupError(f"restored row counts differ from the manifest: {mismatched}")
    migrate(config.database_url)  # to the newest schema this version knows
    media_restored, corrupt = _restore_media(source, config.media_root)
    snapshots = []
    if (source / "galleries").is_dir():
        config.snapshot_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted((source / "galleries").glob("*.npz")):
            shutil.copy2(path, config.snapshot_dir / path.name)
            snapshots.append(path.name)
    return {"restored_from": str(source), "backup_created_at": manifest["created_at"], "tables": counts,
            "media_files": media_restored, "media_corrupt": corrupt,
            "media_missing_in_backup": manifest["media"]["missing"], "gallery_snapshots": snapshots,
            "replaced_existing": sorted(contents) if contents else []}
