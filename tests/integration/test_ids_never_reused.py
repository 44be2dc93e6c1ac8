"""No id that other rows, vectors, files or event ids refer to is ever reused (issue 11, item 1).

SQLite without AUTOINCREMENT gives a new row the largest id plus one, so deleting the newest video and
uploading it again gave the new job the deleted job's id, and the new video's events (id = job id +
track id) were dropped as retries of the old ones. Checked on the schema, on a database migrated from
0002 with rows in it, and on the event pipeline itself; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Integer, func, select, text

from storage import orm
from storage.db import engine_for, upgrade_to
from storage.unit_of_work import UnitOfWork
from tests.helpers import local_ray

INTEGER_ID_TABLES = sorted(
    t.name for t in orm.Base.metadata.sorted_tables
    if len(t.primary_key.columns) == 1 and isinstance(next(iter(t.primary_key.columns)).type, Integer)
)


def test_every_table_with_an_integer_id_never_reuses_ids() -> None:
    """A table added later without `NEVER_REUSE` fails here (and needs it in its migration too)."""
    assert len(INTEGER_ID_TABLES) >= 17
    missing = [name for name in INTEGER_ID_TABLES
               if not orm.Base.metadata.tables[name].dialect_kwargs.get("sqlite_autoincrement")]
    assert missing == []


def _sqlite_autoincrement_tables(url: str) -> set[str]:
    with engine_for(url).connect() as connection:
        rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        return {name for name, sql in rows if "AUTOINCREMENT" in (sql or "").upper()}


def _new_ids_after_deleting_the_newest(url: str) -> dict[str, tuple[int, int]]:
    """Per kind of object: (id of the deleted newest row, id of the next one created)."""
    seen: dict[str, tuple[int, int]] = {}

    def twice(kind: str, make) -> None:  # type: ignore[no-untyped-def]
        with UnitOfWork(url) as uow:
            row = make(uow)
            uow.session.add(row)
            uow.commit()
            first = row.id if hasattr(row, "id") else row.seq
            uow.session.delete(row)
            uow.commit()
            again = make(uow)
            uow.session.add(again)
            uow.commit()
            seen[kind] = (first, again.id if hasattr(again, "id") else again.seq)

    with UnitOfWork(url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="fixed"))
        user = uow.users.add(orm.User(username="fixed", role="viewer"))
        dossier = uow.dossiers.add(orm.Dossier(name="fixed"))
        webhook = uow.webhooks.add(orm.Webhook(title="fixed", url="http://127.0.0.1:9/"))
        uow.commit()
        group_id, user_id, dossier_id, webhook_id = group.id, user.id, dossier.id, webhook.id
    names = iter(range(100))
    twice("camera_groups", lambda uow: orm.CameraGroup(name=f"g{next(names)}"))
    twice("cameras", lambda uow: orm.Camera(name="c", camera_group_id=group_id))
    twice("videos", lambda uow: orm.Video(name="v", camera_group_id=group_id))
    twice("jobs", lambda uow: orm.Job(kind="camera"))
    twice("dossiers", lambda uow: orm.Dossier(name="d"))
    twice("dossier_faces", lambda uow: orm.DossierFace(dossier_id=dossier_id))
    twice("users", lambda uow: orm.User(username=f"u{next(names)}", role="viewer"))
    twice("tokens", lambda uow: orm.Token(user_id=user_id, token_hash=f"h{next(names)}", prefix="p"))
    twice("webhooks", lambda uow: orm.Webhook(title="w", url="http://127.0.0.1:9/"))
    twice("webhook_deliveries", lambda uow: orm.WebhookDelivery(webhook_id=webhook_id))
    twice("watch_lists", lambda uow: orm.WatchList(name=f"l{next(names)}"))
    twice("episodes", lambda uow: orm.Episode())
    twice("gallery_changes", lambda uow: orm.GalleryChange(gallery="g", item_id="1", op="add"))
    twice("audit_log", lambda uow: orm.AuditRecord(method="GET", path="/", status=200))
    return seen


@pytest.mark.pg_capable
def test_deleting_the_newest_row_never_frees_its_id(db_url: str) -> None:
    seen = _new_ids_after_deleting_the_newest(db_url)
    reused = {kind: ids for kind, ids in seen.items() if ids[1] <= ids[0]}
    assert reused == {}
    if db_url.startswith("sqlite"):
        assert set(INTEGER_ID_TABLES) <= _sqlite_autoincrement_tables(db_url)


class _OldSchemaRows:
    """Inserts rows into the tables as the database has them (reflected), filling required columns."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import MetaData

        self.engine = engine_for(url)
        self.meta = MetaData()
        self.meta.reflect(self.engine)

    def add(self, table: str, **values: object) -> int:
        from datetime import UTC, datetime

        from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, Numeric

        t = self.meta.tables[table]
        for column in t.columns:
            if column.name in values or column.nullable or column.primary_key:
                continue
            kind = column.type
            values[column.name] = (datetime.now(UTC) if isinstance(kind, DateTime) else False
                                   if isinstance(kind, Boolean) else 0 if isinstance(kind, Integer | Float | Numeric)
                                   else {} if isinstance(kind, JSON) else "")
        with self.engine.begin() as connection:
            return int(connection.execute(t.insert().values(**values)).inserted_primary_key[0])


def test_upgrading_an_existing_sqlite_installation_keeps_every_row(tmp_path: Path) -> None:
    """0002 → head rebuilds the tables; children of rebuilt tables (jobs of cameras, faces of dossiers,
    tokens of users: ON DELETE CASCADE) must survive, and ids must not be reused afterwards."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_to(url, "0002")
    assert _sqlite_autoincrement_tables(url) == {"watch_lists"}
    # Rows written the way an installation at 0002 had them: through that schema (reflected), not today's models.
    old_rows = _OldSchemaRows(url)
    group = old_rows.add("camera_groups", name="lobby", labels={"site": "hq"})
    camera = old_rows.add("cameras", name="door", camera_group_id=group)
    old_rows.add("jobs", kind="camera", camera_id=camera)
    dossier = old_rows.add("dossiers", name="Ada")
    old_rows.add("dossier_faces", dossier_id=dossier, bbox=[1, 2, 3, 4])
    user = old_rows.add("users", username="u", role="admin")
    old_rows.add("tokens", user_id=user, token_hash="x", prefix="p")
    tables = sorted(old_rows.meta.tables)  # the tables of 0002: their rows must all survive

    def counts() -> dict[str, int]:
        with engine_for(url).connect() as connection:
            return {name: connection.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one() for name in tables}

    before = counts()
    upgrade_to(url, "head")
    assert counts() == before
    assert set(INTEGER_ID_TABLES) <= _sqlite_autoincrement_tables(url)
    with engine_for(url).connect() as connection:
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1  # switched back on
        assert connection.execute(text("PRAGMA foreign_key_check")).fetchall() == []
    with UnitOfWork(url) as uow:
        assert uow.session.scalars(select(orm.CameraGroup)).one().labels == {"site": "hq"}
        assert uow.session.scalars(select(orm.DossierFace)).one().bbox == [1, 2, 3, 4]
    seen = _new_ids_after_deleting_the_newest(url)
    assert {kind: ids for kind, ids in seen.items() if ids[1] <= ids[0]} == {}


# -- the reported case: delete a processed video, upload it again ----------------------------------


@pytest.fixture(scope="module")
def ray_local():
    with local_ray(2, "test-ids"):
        yield


def _video_with_job(url: str, group_id: int) -> tuple[int, int]:
    """What `POST /v1/videos` and the JobManager's `submit_video` write."""
    with UnitOfWork(url) as uow:
        video = uow.videos.add(orm.Video(name="clip.mp4", camera_group_id=group_id))
        job = uow.jobs.add(orm.Job(kind="video", video_id=video.id, single_pass=True))
        uow.commit()
        return video.id, job.id


def _delete_video(url: str, video_id: int) -> None:
    """What `DELETE /v1/videos/{id}` does once the job is stopped: the job row and the video go."""
    with UnitOfWork(url) as uow:
        job = uow.jobs.for_video(video_id)
        if job is not None:
            uow.session.delete(job)
        uow.session.delete(uow.videos.get(video_id))
        uow.commit()


@pytest.mark.pg_capable
def test_a_video_uploaded_again_after_deleting_it_gets_its_events(db_url: str, tmp_path: Path, ray_local) -> None:
    from actors.event_pipeline import EventPipelineCore
    from actors.galleries import Galleries
    from facewatch.sightings import FaceSighting, event_id_for
    from models.calibration import Calibration

    galleries = Galleries(db_url=db_url, snapshot_dir=str(tmp_path / "snap"), model="m", dim=8, shards=1,
                          replicas=1)
    core = EventPipelineCore(db_url, galleries, Calibration(strict_cosine=0.9, medium_cosine=0.8, low_cosine=0.7))
    with UnitOfWork(db_url) as uow:
        group_id = uow.camera_groups.add(orm.CameraGroup(name="lobby")).id
        uow.commit()
    vector = np.ones(8, dtype=np.float32) / np.sqrt(8)

    def process(video_id: int, job_id: int) -> list[str | None]:
        sightings = [
            FaceSighting(event_id=event_id_for(job_id, 0, track, 0), job_id=job_id, camera_group_id=group_id,
                         video_id=video_id, timestamp=orm.utcnow(), bbox=[0, 0, 10, 10], detection_score=0.9,
                         quality=0.5, embedding=vector, model="m", track_id=track)
            for track in (1, 2)
        ]
        return asyncio.run(core.post(sightings))

    first_video, first_job = _video_with_job(db_url, group_id)
    first = process(first_video, first_job)
    _delete_video(db_url, first_video)
    second_video, second_job = _video_with_job(db_url, group_id)
    second = process(second_video, second_job)
    assert second_job != first_job
    assert None not in first + second and not set(first) & set(second)
    with UnitOfWork(db_url) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.Event)) == 4
        assert uow.session.scalar(select(func.count()).select_from(orm.Event).where(
            orm.Event.video_id == second_video)) == 2
