"""Repositories: one per aggregate, each a thin layer over a shared Session.

Repositories never commit; the unit of work (`storage.unit_of_work`) does, so a caller can write
related rows (an event, its outbox rows, its vector) in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.orm import Session

from facewatch.errors import BadParam, NotFound
from storage import orm
from storage.db import translate_db_errors
from storage.pagination import Page, SortKey, paginate

IN_LIST_CHUNK = 1000
"""Ids per `IN (...)` list: one bind parameter each, and SQLite allows 32766 per statement, PostgreSQL
65535, so a big watch list or gallery is read and written a chunk at a time."""

C = TypeVar("C")


def in_chunks(items: Sequence[C], size: int = IN_LIST_CHUNK) -> Iterable[Sequence[C]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

T = TypeVar("T", bound=orm.Base)


class Repository(Generic[T]):
    model: type[T]
    label: str = "object"

    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, id_: Any) -> T | None:
        return self.session.get(self.model, id_)

    def get(self, id_: Any) -> T:
        obj = self.find(id_)
        if obj is None:
            raise NotFound(f"{self.label} {id_} does not exist", param="id")
        return obj

    def get_many(self, ids: Iterable[Any], param: str) -> list[T]:
        """Rows for every id, in the order given; a missing one is a BAD_PARAM on `param`."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        pk = self.model.__mapper__.primary_key[0]
        found = {getattr(o, pk.key): o for o in self.session.scalars(select(self.model).where(pk.in_(wanted)))}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise BadParam(f"{self.label} {missing[0]} does not exist", param=param)
        return [found[i] for i in wanted]

    def add(self, obj: T) -> T:
        self.session.add(obj)
        with translate_db_errors():
            self.session.flush()
        return obj

    def delete(self, obj: T) -> None:
        self.session.delete(obj)
        with translate_db_errors():
            self.session.flush()

    def query(self) -> Select[Any]:
        return select(self.model)

    def page(self, stmt: Select[Any], limit: int, cursor: str | None, keys: list[SortKey] | None = None) -> Page[T]:
        keys = keys or [SortKey(self.model.id)]  # type: ignore[attr-defined]
        return paginate(self.session, stmt, keys, limit, cursor)

    def count(self, stmt: Select[Any]) -> int:
        return int(self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    def all(self) -> list[T]:
        """Every row, by id (for small tables: cameras, groups, jobs)."""
        return list(self.session.scalars(select(self.model).order_by(self.model.id)))  # type: ignore[attr-defined]


class CameraGroupRepository(Repository[orm.CameraGroup]):
    model, label = orm.CameraGroup, "camera group"

    def by_name(self, name: str) -> orm.CameraGroup | None:
        return self.session.scalar(select(orm.CameraGroup).where(orm.CameraGroup.name == name))


class CameraRepository(Repository[orm.Camera]):
    model, label = orm.Camera, "camera"


class WatchListRepository(Repository[orm.WatchList]):
    model, label = orm.WatchList, "watch list"

    def by_name(self, name: str) -> orm.WatchList | None:
        return self.session.scalar(select(orm.WatchList).where(orm.WatchList.name == name))

    def unmatched(self) -> orm.WatchList:
        return self.get(orm.UNMATCHED_WATCH_LIST_ID)


class DossierRepository(Repository[orm.Dossier]):
    model, label = orm.Dossier, "dossier"

    def by_name(self, name: str) -> orm.Dossier | None:
        return self.session.scalar(select(orm.Dossier).where(orm.Dossier.name == name).order_by(orm.Dossier.id))


class DossierFaceRepository(Repository[orm.DossierFace]):
    model, label = orm.DossierFace, "dossier face"

    def for_dossier(self, dossier_id: int) -> list[orm.DossierFace]:
        stmt = select(orm.DossierFace).where(orm.DossierFace.dossier_id == dossier_id).order_by(orm.DossierFace.id)
        return list(self.session.scalars(stmt))


class EventRepository(Repository[orm.Event]):
    model, label = orm.Event, "event"
    newest_first = [SortKey(orm.Event.timestamp, descending=True), SortKey(orm.Event.id, descending=True)]

    def matched_counts(self, *, video_id: int | None = None, job_id: int | None = None) -> dict[str, int]:
        """Events of one video (or, without a video, of one job): total, matched and unmatched."""
        column, value = (orm.Event.video_id, video_id) if video_id is not None else (orm.Event.job_id, job_id)
        rows = self.session.execute(
            select(orm.Event.matched, func.count()).where(column == value).group_by(orm.Event.matched)).all()
        by_matched = {bool(m): int(n) for m, n in rows}
        matched, unmatched = by_matched.get(True, 0), by_matched.get(False, 0)
        return {"events_count": matched + unmatched, "matched_count": matched, "unmatched_count": unmatched}


class EpisodeRepository(Repository[orm.Episode]):
    model, label = orm.Episode, "episode"
    newest_first = [SortKey(orm.Episode.last_at, descending=True), SortKey(orm.Episode.id, descending=True)]


class VideoRepository(Repository[orm.Video]):
    model, label = orm.Video, "video"

    def queued_or_in(self, ids: Iterable[int]) -> list[orm.Video]:
        """The videos waiting for a job, and those with the given ids (the job manager's working set)."""
        stmt = select(orm.Video).where(orm.Video.id.in_(set(ids)) | (orm.Video.status == "queued"))
        return list(self.session.scalars(stmt))


class JobRepository(Repository[orm.Job]):
    model, label = orm.Job, "job"

    def for_camera(self, camera_id: int) -> orm.Job | None:
        return self.session.scalar(select(orm.Job).where(orm.Job.camera_id == camera_id))

    def for_video(self, video_id: int) -> orm.Job | None:
        return self.session.scalar(select(orm.Job).where(orm.Job.video_id == video_id))

    def not_in_states(self, states: Iterable[str]) -> list[orm.Job]:
        """Jobs that still need supervision (finished/failed single-pass jobs do not), by id."""
        stmt = select(orm.Job).where(orm.Job.state.not_in([str(s) for s in states])).order_by(orm.Job.id)
        return list(self.session.scalars(stmt))


class WebhookRepository(Repository[orm.Webhook]):
    model, label = orm.Webhook, "webhook"


class WebhookDeliveryRepository(Repository[orm.WebhookDelivery]):
    model, label = orm.WebhookDelivery, "webhook delivery"


class UserRepository(Repository[orm.User]):
    model, label = orm.User, "user"

    def by_username(self, username: str) -> orm.User | None:
        return self.session.scalar(select(orm.User).where(orm.User.username == username))

    def count_admins(self) -> int:
        stmt = select(orm.User).where(orm.User.role == "admin", orm.User.active.is_(True))
        return self.count(stmt)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRepository(Repository[orm.Token]):
    model, label = orm.Token, "token"

    def by_plain_token(self, token: str) -> orm.Token | None:
        return self.session.scalar(select(orm.Token).where(orm.Token.token_hash == hash_token(token)))


RUNTIME_SETTING_DEFAULTS: dict[str, Any] = {
    "default_threshold": 0.75,
    "episode_threshold": 0.70,
    "episode_lookback_s": 60.0,
    "episode_idle_timeout_s": 30.0,
    "episode_max_duration_s": 300.0,
    "ignore_unmatched": False,
    "retention_days_matched": 30,
    "retention_days_unmatched": 30,
    # Tables that would otherwise only grow (storage.retention.prune_logs); 0 keeps every row.
    "retention_days_audit_log": 365,
    "retention_days_webhook_deliveries": 30,
    "retention_days_gallery_changes": 30,
    "min_dossier_photo_quality": 0.3,
    "embedder": "dlib_resnet_v1",
    # Persons (docs/persons.md).
    "person_threshold": 0.78,
    "person_min_quality": 0.5,
    "person_max_faces": 8,
    "person_scope": "installation",
    "person_merge_threshold": 0.80,
    "friend_days": 3,
    "friend_window_days": 30,
}


class SettingsRepository:
    """Runtime settings: stored values over the documented defaults."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> dict[str, Any]:
        values = dict(RUNTIME_SETTING_DEFAULTS)
        for row in self.session.scalars(select(orm.RuntimeSetting)):
            if row.key in values:
                values[row.key] = row.value
        return values

    def get(self, key: str) -> Any:
        return self.all()[key]

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key not in RUNTIME_SETTING_DEFAULTS:
                raise BadParam(f"unknown setting {key!r}", param=key)
            row = self.session.get(orm.RuntimeSetting, key)
            if row is None:
                self.session.add(orm.RuntimeSetting(key=key, value=value))
            else:
                row.value = value
        self.session.flush()
        return self.all()


class AuditRepository(Repository[orm.AuditRecord]):
    model, label = orm.AuditRecord, "audit record"

    def record(self, **fields: Any) -> orm.AuditRecord:
        return self.add(orm.AuditRecord(**fields))


class VectorRepository:
    """Vectors of every gallery (the source of truth) and the change log shards replay."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def upsert(self, gallery: str, item_id: str, model: str, vector: bytes, dim: int,
               meta: dict[str, Any] | None = None) -> orm.FaceVector:
        row = self.find(gallery, item_id, model)
        if row is None:
            row = orm.FaceVector(gallery=gallery, item_id=item_id, model=model, vector=vector, dim=dim,
                                 meta=meta or {})
            self.session.add(row)
        else:
            row.vector, row.dim, row.meta = vector, dim, meta or {}
        self.log(gallery, item_id, "add")
        return row

    def add_new(self, gallery: str, item_id: str, model: str, vector: bytes, dim: int,
                meta: dict[str, Any] | None = None) -> orm.FaceVector:
        """`upsert` for an item id that cannot have a vector yet (a fresh never-reused row id): no lookup
        first, which on the event pipeline's hot path is one query and one autoflush less per face."""
        row = orm.FaceVector(gallery=gallery, item_id=item_id, model=model, vector=vector, dim=dim, meta=meta or {})
        self.session.add(row)
        self.log(gallery, item_id, "add")
        return row

    def find(self, gallery: str, item_id: str, model: str) -> orm.FaceVector | None:
        stmt = select(orm.FaceVector).where(
            orm.FaceVector.gallery == gallery, orm.FaceVector.item_id == item_id, orm.FaceVector.model == model
        )
        return self.session.scalar(stmt)

    def set_meta(self, gallery: str, item_ids: Sequence[str], meta_by_item: dict[str, dict[str, Any]]) -> None:
        for chunk in in_chunks(item_ids):
            rows = self.session.scalars(
                select(orm.FaceVector).where(orm.FaceVector.gallery == gallery, orm.FaceVector.item_id.in_(chunk))
            )
            for row in rows:
                row.meta = meta_by_item[row.item_id]
        self.log_many(gallery, item_ids, "meta")

    def remove(self, gallery: str, item_ids: Sequence[str]) -> int:
        if not item_ids:
            return 0
        removed = 0
        for chunk in in_chunks(item_ids):
            result = self.session.execute(
                delete(orm.FaceVector).where(orm.FaceVector.gallery == gallery, orm.FaceVector.item_id.in_(chunk))
            )
            removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        self.log_many(gallery, item_ids, "remove")
        return removed

    def log(self, gallery: str, item_id: str, op: str) -> None:
        self.session.add(orm.GalleryChange(gallery=gallery, item_id=item_id, op=op))

    def log_many(self, gallery: str, item_ids: Sequence[str], op: str) -> None:
        """`log` for many items as one bulk insert (a big watch list changes tens of thousands at once);
        the session's pending changes are flushed first, so the log keeps their order."""
        if item_ids:
            self.session.flush()
            now = orm.utcnow()
            self.session.execute(insert(orm.GalleryChange), [
                {"gallery": gallery, "item_id": item_id, "op": op, "created_at": now} for item_id in item_ids])

    def changes_since(self, gallery: str, seq: int, limit: int = 10_000) -> list[orm.GalleryChange]:
        stmt = (
            select(orm.GalleryChange)
            .where(orm.GalleryChange.gallery == gallery, orm.GalleryChange.seq > seq)
            .order_by(orm.GalleryChange.seq)
            .limit(limit)
        )
        return list(self.session.scalars(stmt))

    def recent_changes(self, gallery: str, upto_seq: int, since: datetime) -> list[orm.GalleryChange]:
        """Log rows at or before `upto_seq` written since `since`.

        On PostgreSQL two transactions can commit their sequence numbers out of order, so a reader that
        has passed seq 11 may see seq 10 appear later; re-reading the recent rows catches it.
        """
        stmt = (
            select(orm.GalleryChange)
            .where(orm.GalleryChange.gallery == gallery, orm.GalleryChange.seq <= upto_seq,
                   orm.GalleryChange.created_at >= since)
            .order_by(orm.GalleryChange.seq)
        )
        return list(self.session.scalars(stmt))

    def last_seq(self, gallery: str) -> int:
        stmt = select(func.max(orm.GalleryChange.seq)).where(orm.GalleryChange.gallery == gallery)
        return int(self.session.scalar(stmt) or 0)

    def iter_gallery(self, gallery: str, model: str, batch: int = 5000) -> Iterable[list[orm.FaceVector]]:
        """All vectors of a gallery for one model, in id order, a batch at a time."""
        after = 0
        while True:
            stmt = (
                select(orm.FaceVector)
                .where(orm.FaceVector.gallery == gallery, orm.FaceVector.model == model, orm.FaceVector.id > after)
                .order_by(orm.FaceVector.id)
                .limit(batch)
            )
            rows = list(self.session.scalars(stmt))
            if not rows:
                return
            yield rows
            after = rows[-1].id

    def by_items(self, gallery: str, model: str, item_ids: Sequence[str]) -> list[orm.FaceVector]:
        if not item_ids:
            return []
        stmt = select(orm.FaceVector).where(
            orm.FaceVector.gallery == gallery, orm.FaceVector.model == model, orm.FaceVector.item_id.in_(item_ids)
        )
        return list(self.session.scalars(stmt))

