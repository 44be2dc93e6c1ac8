"""The storage layer on SQLite and PostgreSQL (SPEC §9): unit of work, repositories, pagination,
migrations, media store, the gallery change log, runtime settings and UTC timestamps.

Every database test takes `db_url`, so it runs on SQLite always and on PostgreSQL when
FACEWATCH_TEST_PG_URL is set (`make test-pg`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from facewatch.errors import BadParam, Conflict, NotFound
from storage import orm
from storage.db import migrate, translate_db_errors
from storage.media import LocalMediaStore, media_key
from storage.pagination import MAX_LIMIT, SortKey, paginate
from storage.runtime_settings import RUNTIME_SETTING_DEFAULTS
from storage.tokens import ensure_admin, issue_token
from storage.unit_of_work import UnitOfWork

pytestmark = pytest.mark.pg_capable


def _count(url: str, model: type[orm.Base]) -> int:
    with UnitOfWork(url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def _encode_cursor(values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# -- unit of work ----------------------------------------------------------------------------------


def test_migrations_build_exactly_the_schema_of_the_models(db_url: str) -> None:
    """Alembic's own comparison: a model change without its migration (or the reverse) fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.db import engine_for

    with engine_for(db_url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), orm.Base.metadata) == []
        indexes = {row[0] for row in connection.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'events'" if connection.dialect.name == "postgresql"
            else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events'"))}
    assert "ix_events_created_at_id" in indexes


def test_unit_of_work_commits_related_rows_together(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="entrance"))
        camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=group.id, url="rtsp://cam/1"))
        watch_list = uow.watch_lists.add(orm.WatchList(name="vip", camera_groups=[group]))
        uow.dossiers.add(orm.Dossier(name="Ada", watch_lists=[watch_list]))
        uow.jobs.add(orm.Job(kind="camera", camera_id=camera.id))
        # Nothing is visible to another session before the commit.
        with UnitOfWork(db_url) as other:
            assert other.camera_groups.by_name("entrance") is None
        uow.commit()

    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.by_name("entrance")
        assert group is not None and [c.name for c in group.cameras] == ["door"]
        watch_list = uow.watch_lists.by_name("vip")
        assert watch_list is not None and [g.name for g in watch_list.camera_groups] == ["entrance"]
        dossier = uow.dossiers.by_name("Ada")
        assert dossier is not None and [w.name for w in dossier.watch_lists] == ["vip"]
        job = uow.jobs.for_camera(group.cameras[0].id)
        assert job is not None and job.kind == "camera"


def test_unit_of_work_rolls_back_on_exception(db_url: str) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with UnitOfWork(db_url) as uow:
            group = uow.camera_groups.add(orm.CameraGroup(name="half"))
            uow.cameras.add(orm.Camera(name="c", camera_group_id=group.id))
            uow.dossiers.add(orm.Dossier(name="d"))
            uow.vectors.upsert("dossiers", "1", "m", b"\0" * 8, 2)
            uow.audit.record(method="POST", path="/v1/x", status=201)
            uow.flush()  # written to the transaction, not committed
            raise RuntimeError("boom")
    for model in (orm.CameraGroup, orm.Camera, orm.Dossier, orm.FaceVector, orm.GalleryChange, orm.AuditRecord):
        assert _count(db_url, model) == 0, model.__name__


def test_unit_of_work_without_commit_writes_nothing(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.camera_groups.add(orm.CameraGroup(name="forgotten"))
    assert _count(db_url, orm.CameraGroup) == 0


def test_failed_statement_mid_transaction_leaves_nothing_half_written(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.watch_lists.add(orm.WatchList(name="taken"))
        uow.commit()
    with pytest.raises(Conflict):
        with UnitOfWork(db_url) as uow:
            group = uow.camera_groups.add(orm.CameraGroup(name="first part"))
            uow.cameras.add(orm.Camera(name="c", camera_group_id=group.id))
            uow.watch_lists.add(orm.WatchList(name="taken"))  # the second part fails
            uow.commit()
    assert _count(db_url, orm.CameraGroup) == 0
    assert _count(db_url, orm.Camera) == 0
    assert _count(db_url, orm.WatchList) == 2  # Unmatched + "taken"


def test_unit_of_work_is_usable_after_rollback(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.camera_groups.add(orm.CameraGroup(name="g"))
        uow.commit()
        with pytest.raises(Conflict):
            uow.camera_groups.add(orm.CameraGroup(name="g"))
        uow.rollback()
        uow.camera_groups.add(orm.CameraGroup(name="g2"))
        uow.commit()
    with UnitOfWork(db_url) as uow:
        assert sorted(g.name for g in uow.session.scalars(uow.camera_groups.query())) == ["g", "g2"]


# -- repositories ----------------------------------------------------------------------------------


def test_repository_crud(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="lobby", labels={"site": "hq"}))
        group_id = group.id
        assert isinstance(group_id, int) and group_id > 0
        uow.commit()

    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.get(group_id)
        assert (group.name, group.labels, group.active, group.deduplicate) == ("lobby", {"site": "hq"}, True, False)
        assert group.dedup_interval_s == 15.0 and group.threshold is None and group.hidden_from_roles == []
        group.comment, group.threshold = "main lobby", 0.8
        uow.commit()

    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.get(group_id)
        assert (group.comment, group.threshold) == ("main lobby", 0.8)
        assert group.updated_at >= group.created_at
        assert uow.camera_groups.count(uow.camera_groups.query()) == 1
        uow.camera_groups.delete(group)
        uow.commit()

    with UnitOfWork(db_url) as uow:
        assert uow.camera_groups.find(group_id) is None
        with pytest.raises(NotFound) as info:
            uow.camera_groups.get(group_id)
        assert info.value.param == "id" and info.value.status == 404


def test_repository_get_many_keeps_order_and_names_the_missing_id(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        ids = [uow.watch_lists.add(orm.WatchList(name=f"wl{i}")).id for i in range(3)]
        uow.commit()
    with UnitOfWork(db_url) as uow:
        wanted = [ids[2], ids[0], ids[2], ids[1]]
        assert [w.id for w in uow.watch_lists.get_many(wanted, param="watch_list_ids")] == [ids[2], ids[0], ids[1]]
        assert uow.watch_lists.get_many([], param="watch_list_ids") == []
        with pytest.raises(BadParam) as info:
            uow.watch_lists.get_many([ids[0], 987654], param="watch_list_ids")
        assert info.value.param == "watch_list_ids" and "987654" in info.value.reason


def test_repositories_of_every_aggregate(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="g"))
        camera = uow.cameras.add(orm.Camera(name="c", camera_group_id=group.id))
        dossier = uow.dossiers.add(orm.Dossier(name="Grace", external_id="ext-1"))
        face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, bbox=[1, 2, 3, 4], quality=0.9))
        video = uow.videos.add(orm.Video(name="clip.mp4", camera_group_id=group.id))
        uow.jobs.add(orm.Job(kind="video", video_id=video.id, single_pass=True))
        episode = uow.episodes.add(orm.Episode(camera_group_id=group.id, camera_id=camera.id))
        uow.events.add(orm.Event(id="job1-track1", camera_id=camera.id, camera_group_id=group.id,
                                 episode_id=episode.id, bbox=[0, 0, 10, 10], attributes={"age": 30}))
        hook = uow.webhooks.add(orm.Webhook(title="siem", url="http://example.test/hook", filters={"matched": True}))
        uow.webhook_deliveries.add(orm.WebhookDelivery(webhook_id=hook.id, event_ids=["job1-track1"], ok=True))
        user = uow.users.add(orm.User(username="op", role="operator"))
        _, plain = issue_token(uow, user, name="cli")
        uow.commit()
        ids = {"face": face.id, "dossier": dossier.id, "video": video.id, "camera": camera.id}

    with UnitOfWork(db_url) as uow:
        assert [f.id for f in uow.dossier_faces.for_dossier(ids["dossier"])] == [ids["face"]]
        assert uow.dossier_faces.get(ids["face"]).bbox == [1, 2, 3, 4]
        job = uow.jobs.for_video(ids["video"])
        assert job is not None and job.single_pass and job.desired_state == "running" and job.state == "pending"
        assert uow.jobs.for_camera(ids["camera"]) is None
        event = uow.events.get("job1-track1")
        assert event.attributes == {"age": 30} and event.matched is False and event.acknowledged is False
        assert uow.episodes.get(event.episode_id).open is True
        assert uow.webhooks.count(uow.webhooks.query()) == 1
        assert uow.webhook_deliveries.count(uow.webhook_deliveries.query()) == 1
        token = uow.tokens.by_plain_token(plain)
        assert token is not None and token.user.username == "op" and token.prefix == plain[:8]
        assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest() and plain not in token.token_hash
        assert uow.tokens.by_plain_token("fw_not-a-token") is None
        assert uow.users.by_username("op") is not None and uow.users.by_username("nobody") is None
        assert uow.dossiers.by_name("Grace") is not None

        # Deleting a dossier deletes its faces (ON DELETE CASCADE / delete-orphan).
        uow.dossiers.delete(uow.dossiers.get(ids["dossier"]))
        uow.commit()
    assert _count(db_url, orm.DossierFace) == 0


def test_ensure_admin_only_at_first_start(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        plain = ensure_admin(uow, token="fw_known-admin-token")
    assert plain == "fw_known-admin-token"
    with UnitOfWork(db_url) as uow:
        assert ensure_admin(uow) is None
        assert uow.users.count_admins() == 1
        token = uow.tokens.by_plain_token(plain)
        assert token is not None and token.user.role == "admin"


def test_a_short_chosen_token_is_never_kept_readable_whole(db_url: str) -> None:
    """The readable prefix of a token (listed to admins) was its first 8 characters: a chosen admin token
    of 8 characters or fewer was stored, and listed, whole."""
    with UnitOfWork(db_url) as uow:
        ensure_admin(uow, token="letmein1")
        user = uow.users.by_username("admin")
        generated, plain = issue_token(uow, user, name="generated")
        uow.commit()
    with UnitOfWork(db_url) as uow:
        chosen = uow.tokens.by_plain_token("letmein1")
        assert chosen is not None and chosen.prefix == "le"  # a quarter of it
        assert uow.tokens.by_plain_token(plain).prefix == plain[:8] and plain.startswith("fw_")
        for row in uow.session.scalars(select(orm.Token)):  # no column of any token holds the chosen secret
            assert all("letmein1" not in str(getattr(row, c.key)) for c in orm.Token.__table__.columns)


@pytest.mark.parametrize(
    ("make", "again"),
    [
        (lambda: orm.CameraGroup(name="same"), lambda: orm.CameraGroup(name="same")),
        (lambda: orm.WatchList(name="same"), lambda: orm.WatchList(name="same")),
        (lambda: orm.User(username="same", role="viewer"), lambda: orm.User(username="same", role="admin")),
        (lambda: orm.Gallery(name="same", model="m", dim=2), lambda: orm.Gallery(name="same", model="m", dim=3)),
    ],
    ids=["camera_group", "watch_list", "user", "gallery"],
)
def test_unique_names_raise_conflict(db_url: str, make, again) -> None:  # type: ignore[no-untyped-def]
    with UnitOfWork(db_url) as uow:
        uow.session.add(make())
        uow.commit()
    with UnitOfWork(db_url) as uow:
        with pytest.raises(Conflict) as info:
            uow.session.add(again())
            uow.flush()
        assert info.value.status == 409 and "already exists" in info.value.reason
    with UnitOfWork(db_url) as uow:
        model = type(make())
        assert uow.session.scalar(select(func.count()).select_from(model)) == (2 if model is orm.WatchList else 1)


def test_unique_conflict_is_raised_by_commit_too(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.session.add(orm.CameraGroup(name="x"))
        uow.session.add(orm.CameraGroup(name="x"))
        with pytest.raises(Conflict):
            uow.commit()


def test_foreign_key_violation_is_a_conflict(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="in use"))
        uow.cameras.add(orm.Camera(name="c", camera_group_id=group.id))
        uow.commit()
        with pytest.raises(Conflict) as info:
            with translate_db_errors():
                uow.session.execute(text("DELETE FROM camera_groups WHERE id = :id"), {"id": group.id})
        assert "referenced" in info.value.reason
    assert _count(db_url, orm.CameraGroup) == 1


# -- pagination ------------------------------------------------------------------------------------


def _walk(uow: UnitOfWork, stmt, keys, limit: int) -> list:  # type: ignore[no-untyped-def]
    seen, cursor, pages = [], None, 0
    while True:
        page = paginate(uow.session, stmt, keys, limit, cursor)
        seen.extend(page.items)
        pages += 1
        assert pages <= 1000, "pagination does not terminate"
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor


def test_pagination_walks_250_rows_without_duplicates_or_gaps(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.session.add_all([orm.Dossier(name=f"person {i:03d}") for i in range(250)])
        uow.commit()
    with UnitOfWork(db_url) as uow:
        all_ids = sorted(uow.session.scalars(select(orm.Dossier.id)))
        assert len(all_ids) == 250
        for limit in (7, 250, 1000):
            ids = [d.id for d in _walk(uow, uow.dossiers.query(), [SortKey(orm.Dossier.id)], limit)]
            assert ids == all_ids, limit
        newest = [d.id for d in _walk(uow, uow.dossiers.query(), [SortKey(orm.Dossier.id, descending=True)], 7)]
        assert newest == all_ids[::-1]
        # Filters combine with the cursor condition.
        stmt = uow.dossiers.query().where(orm.Dossier.name.contains("1"))
        filtered = [d.name for d in _walk(uow, stmt, [SortKey(orm.Dossier.id)], 7)]
        assert filtered == [f"person {i:03d}" for i in range(250) if "1" in f"{i:03d}"]
        # The repository helper pages by id by default.
        page = uow.dossiers.page(uow.dossiers.query(), 10, None)
        assert [d.id for d in page.items] == all_ids[:10] and page.next_cursor


def test_newest_first_keyset_over_events_with_equal_timestamps(db_url: str) -> None:
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    rng = random.Random(7)
    rows = [(f"ev{i:04d}", base + timedelta(seconds=rng.randrange(25))) for i in range(250)]  # ~10 per second
    rng.shuffle(rows)
    with UnitOfWork(db_url) as uow:
        uow.session.add_all([orm.Event(id=event_id, timestamp=ts) for event_id, ts in rows])
        uow.commit()
    expected = [event_id for event_id, _ in sorted(rows, key=lambda r: (r[1], r[0]), reverse=True)]
    with UnitOfWork(db_url) as uow:
        keys = uow.events.newest_first
        walked = [e.id for e in _walk(uow, uow.events.query(), keys, 7)]
        assert walked == expected
        assert len(set(walked)) == 250

        # Stable under inserts: an event newer than the first page does not shift the rest of the walk,
        # an older one shows up at its place at the end.
        first = paginate(uow.session, uow.events.query(), keys, 7, None)
        uow.session.add(orm.Event(id="newer", timestamp=base + timedelta(hours=1)))
        uow.session.add(orm.Event(id="older", timestamp=base - timedelta(hours=1)))
        uow.flush()
        rest, cursor = [], first.next_cursor
        while cursor:
            page = paginate(uow.session, uow.events.query(), keys, 7, cursor)
            rest.extend(e.id for e in page.items)
            cursor = page.next_cursor
        assert [e.id for e in first.items] + rest == expected + ["older"]


def test_a_page_after_a_cursor_range_scans_the_first_keys_index(sqlite_url: str) -> None:
    """Deep pages cost what the first does: SQLite searches the timestamp index from the cursor on
    (under the keyset OR alone it scanned the index from its first row and filtered)."""
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    with UnitOfWork(sqlite_url) as uow:
        uow.session.add_all([orm.Event(id=f"ev{i:04d}", timestamp=base + timedelta(seconds=i)) for i in range(120)])
        uow.commit()
    statements: list[tuple[str, tuple[Any, ...]]] = []
    with UnitOfWork(sqlite_url) as uow:
        first = paginate(uow.session, uow.events.query(), uow.events.newest_first, 50, None)
        engine = uow.session.get_bind()

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", capture)
        try:
            second = paginate(uow.session, uow.events.query(), uow.events.newest_first, 50, first.next_cursor)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        assert [e.id for e in second.items] == [f"ev{i:04d}" for i in range(69, 19, -1)]
        statement, parameters = statements[-1]
        plan = [row[-1] for row in uow.session.connection().exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters)]
    assert "SEARCH events USING INDEX ix_events_timestamp (timestamp<?)" in plan, plan


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!!",
        _encode_cursor({"id": 1}),  # not a list
        _encode_cursor([1, 2]),  # wrong number of keys
        _encode_cursor(["abc"]),  # a string for an integer key
        _encode_cursor([{"a": 1}]),  # not a scalar
        _encode_cursor([2**70]),  # beyond 64 bits
        _encode_cursor([True]),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),  # not UTF-8 / JSON
    ],
)
def test_bad_cursor_is_bad_param(db_url: str, cursor: str) -> None:
    with UnitOfWork(db_url) as uow:
        with pytest.raises(BadParam) as info:
            paginate(uow.session, uow.dossiers.query(), [SortKey(orm.Dossier.id)], 10, cursor)
        assert info.value.param == "cursor"


@pytest.mark.parametrize("values", [["yesterday", "ev1"], [12, "ev1"], ["2024-05-01T12:00:00+00:00", 5]])
def test_bad_cursor_on_a_timestamp_keyset_is_bad_param(db_url: str, values: list) -> None:
    with UnitOfWork(db_url) as uow:
        with pytest.raises(BadParam):
            paginate(uow.session, uow.events.query(), uow.events.newest_first, 10, _encode_cursor(values))


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_limit_out_of_range_is_bad_param(db_url: str, limit: int) -> None:
    with UnitOfWork(db_url) as uow:
        with pytest.raises(BadParam) as info:
            paginate(uow.session, uow.dossiers.query(), [SortKey(orm.Dossier.id)], limit, None)
        assert info.value.param == "limit"


# -- migrations and the built-in Unmatched list -----------------------------------------------------


def test_unmatched_list_exists_with_id_minus_one_and_new_lists_get_positive_ids(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        unmatched = uow.watch_lists.unmatched()
        assert unmatched.id == orm.UNMATCHED_WATCH_LIST_ID == -1
        assert unmatched.name == "Unmatched" and unmatched.builtin is True
        assert unmatched.created_at.tzinfo is not None
        ids = [uow.watch_lists.add(orm.WatchList(name=f"list {i}")).id for i in range(3)]
        uow.commit()
    assert all(i > 0 for i in ids) and ids == sorted(ids) and len(set(ids)) == 3
    with UnitOfWork(db_url) as uow:
        assert all(not w.builtin for w in uow.watch_lists.get_many(ids, param="ids"))


def test_migrate_twice_is_idempotent(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.camera_groups.add(orm.CameraGroup(name="kept"))
        uow.commit()
    migrate(db_url)
    migrate(db_url)
    with UnitOfWork(db_url) as uow:
        assert uow.camera_groups.by_name("kept") is not None
        assert uow.session.scalar(select(func.count()).select_from(orm.WatchList)) == 1
        assert uow.watch_lists.unmatched().id == -1
        versions = list(uow.session.scalars(text("SELECT version_num FROM alembic_version")))
    assert len(versions) == 1


# -- media store -----------------------------------------------------------------------------------


def test_media_store_put_get_and_dedupe(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    data = b"\xff\xd8\xff fake jpeg bytes"
    key = store.put(data, "JPG")
    assert key == f"{hashlib.sha256(data).hexdigest()}.jpg" == media_key(data, ".jpg")
    assert store.get(key) == data and store.exists(key)
    assert store.path(key).is_relative_to(tmp_path / "media")
    assert store.put(data, "jpg") == key  # same content, same key, one file
    assert store.put(data, "png") != key
    files = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert len(files) == 2 and not any(p.name.startswith(".tmp-") for p in files)
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(NotFound):
        store.get(key)
    store.delete(key)  # deleting twice is fine


def test_media_store_put_file_streams_large_files(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    source = tmp_path / "video.mp4"
    source.write_bytes(b"0123456789" * 300_000)
    key = store.put_file(source, "mp4")
    assert key == media_key(source.read_bytes(), "mp4") and store.get(key) == source.read_bytes()
    assert store.put_file(source, "mp4") == key


@pytest.mark.parametrize(
    "key", ["../x", "../../etc/passwd", "/etc/passwd", "a/../../b", "..", "", "x" * 64 + ".jpg/../../y", "%2e%2e/x"]
)
def test_media_store_refuses_keys_that_are_not_content_addresses(tmp_path: Path, key: str) -> None:
    (tmp_path / "x").write_bytes(b"secret")
    store = LocalMediaStore(tmp_path / "media")
    with pytest.raises(NotFound):
        store.get(key)
    with pytest.raises(NotFound):
        store.path(key)
    assert store.exists(key) is False
    store.delete(key)
    assert (tmp_path / "x").read_bytes() == b"secret"


@pytest.mark.parametrize("extension", ["", "../jpg", "j/pg", "toolongext", "jp g"])
def test_media_store_refuses_bad_extensions(tmp_path: Path, extension: str) -> None:
    with pytest.raises(BadParam):
        LocalMediaStore(tmp_path).put(b"data", extension)


# -- vectors and the gallery change log -------------------------------------------------------------


def test_vector_repository_appends_every_change_to_the_log_in_order(db_url: str) -> None:
    vec = bytes(range(16))
    with UnitOfWork(db_url) as uow:
        assert uow.vectors.last_seq("dossiers") == 0
        uow.vectors.upsert("dossiers", "a", "m1", vec, 4, meta={"dossier_id": 1})
        uow.vectors.upsert("dossiers", "b", "m1", vec, 4)
        uow.vectors.upsert("events", "e1", "m1", vec, 4)
        uow.commit()
    with UnitOfWork(db_url) as uow:
        uow.vectors.upsert("dossiers", "a", "m1", vec[::-1], 4, meta={"dossier_id": 2})  # an update
        uow.vectors.set_meta("dossiers", {"a": {"active": False}, "b": {"active": True}})
        assert uow.vectors.remove("dossiers", ["b", "missing"]) == 1
        assert uow.vectors.remove("dossiers", []) == 0
        uow.commit()

    with UnitOfWork(db_url) as uow:
        changes = uow.vectors.changes_since("dossiers", 0)
        assert [(c.op, c.item_id) for c in changes] == [
            ("add", "a"), ("add", "b"), ("add", "a"), ("meta", "a"), ("meta", "b"),
            ("remove", "b"), ("remove", "missing"),
        ]
        seqs = [c.seq for c in changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert uow.vectors.last_seq("dossiers") == seqs[-1]
        assert [(c.op, c.item_id) for c in uow.vectors.changes_since("dossiers", seqs[2])] == [
            ("meta", "a"), ("meta", "b"), ("remove", "b"), ("remove", "missing"),
        ]
        assert [(c.op, c.item_id) for c in uow.vectors.changes_since("events", 0)] == [("add", "e1")]
        assert len(uow.vectors.changes_since("dossiers", 0, limit=2)) == 2

        row = uow.vectors.find("dossiers", "a", "m1")
        assert row is not None and row.vector == vec[::-1] and row.meta == {"active": False} and row.dim == 4
        assert uow.vectors.find("dossiers", "b", "m1") is None
        assert [r.item_id for r in uow.vectors.by_items("dossiers", "m1", ["a", "b"])] == ["a"]
        assert uow.vectors.by_items("dossiers", "m1", []) == []
        assert _count(db_url, orm.FaceVector) == 2  # a (dossiers) + e1 (events)


def test_vector_repository_iterates_a_gallery_in_batches(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        for i in range(12):
            uow.vectors.upsert("g", f"item{i}", "m1", bytes([i]) * 8, 2)
        uow.vectors.upsert("g", "other-model", "m2", b"\0" * 8, 2)
        uow.commit()
    with UnitOfWork(db_url) as uow:
        batches = list(uow.vectors.iter_gallery("g", "m1", batch=5))
    assert [len(b) for b in batches] == [5, 5, 2]
    assert [r.item_id for b in batches for r in b] == [f"item{i}" for i in range(12)]


def test_same_item_in_two_models_is_two_vectors(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        uow.vectors.upsert("dossiers", "a", "m1", b"\0" * 8, 2)
        uow.vectors.upsert("dossiers", "a", "m2", b"\1" * 12, 3)
        uow.commit()
    assert _count(db_url, orm.FaceVector) == 2


# -- runtime settings ------------------------------------------------------------------------------


def test_runtime_settings_defaults_update_and_unknown_keys(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        values = uow.settings.all()
    assert values == RUNTIME_SETTING_DEFAULTS
    # SPEC §2 defaults.
    assert values["default_threshold"] == 0.75 and values["episode_threshold"] == 0.70
    assert values["episode_lookback_s"] == 60 and values["episode_idle_timeout_s"] == 30
    assert values["episode_max_duration_s"] == 300 and values["ignore_unmatched"] is False
    assert values["retention_days_matched"] == 30 and values["retention_days_unmatched"] == 30

    with UnitOfWork(db_url) as uow:
        updated = uow.settings.update({"default_threshold": 0.6, "ignore_unmatched": True})
        assert updated["default_threshold"] == 0.6 and updated["ignore_unmatched"] is True
        uow.commit()
    with UnitOfWork(db_url) as uow:
        uow.settings.update({"default_threshold": 0.65})
        uow.commit()
    with UnitOfWork(db_url) as uow:
        assert uow.settings.get("default_threshold") == 0.65 and uow.settings.get("ignore_unmatched") is True
        assert uow.settings.get("episode_threshold") == 0.70

    with UnitOfWork(db_url) as uow:
        with pytest.raises(BadParam) as info:
            uow.settings.update({"episode_threshold": 0.5, "no_such_setting": 1})
        assert info.value.param == "no_such_setting"
    with UnitOfWork(db_url) as uow:
        assert uow.settings.get("episode_threshold") == 0.70  # nothing half-written
        assert "no_such_setting" not in uow.settings.all()


# -- timestamps ------------------------------------------------------------------------------------


def test_timestamps_come_back_timezone_aware_utc(db_url: str) -> None:
    plus_two = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 5, 1, 8, 0, 0)
    before = datetime.now(UTC)
    with UnitOfWork(db_url) as uow:
        uow.events.add(orm.Event(id="aware", timestamp=plus_two))
        uow.events.add(orm.Event(id="naive", timestamp=naive))
        group = uow.camera_groups.add(orm.CameraGroup(name="g"))
        uow.commit()
        group_id = group.id
    with UnitOfWork(db_url) as uow:
        aware = uow.events.get("aware")
        assert aware.timestamp == plus_two and aware.timestamp.utcoffset() == timedelta(0)
        assert aware.timestamp.hour == 12 and aware.timestamp.microsecond == 123456
        stored_naive = uow.events.get("naive").timestamp
        assert stored_naive == naive.replace(tzinfo=UTC) and stored_naive.utcoffset() == timedelta(0)
        group = uow.camera_groups.get(group_id)
        for value in (group.created_at, group.updated_at, aware.created_at):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
            assert before - timedelta(seconds=5) <= value <= datetime.now(UTC) + timedelta(seconds=5)
        # Comparisons in SQL use the same instant whatever the offset the caller used.
        since = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
        assert list(uow.session.scalars(select(orm.Event.id).where(orm.Event.timestamp >= since))) == ["aware"]
