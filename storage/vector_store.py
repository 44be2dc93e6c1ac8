"""The vectors of every gallery (the source of truth the shards load) with their change log, and the
user galleries' rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from storage import orm
from storage.repositories import Repository, in_chunks

_INSERT_VECTOR = orm.FaceVector.__table__.insert()  # built once: `add_new` is on the event pipeline's hot path
_INSERT_CHANGE = orm.GalleryChange.__table__.insert()


class GalleryRepository(Repository[orm.Gallery]):
    """User galleries (the built-in `dossiers` and `events` galleries have no row)."""

    model, label = orm.Gallery, "gallery"

    def by_name(self, name: str) -> orm.Gallery | None:
        return self.session.scalar(select(orm.Gallery).where(orm.Gallery.name == name))

    def by_names(self) -> list[orm.Gallery]:
        """Every user gallery, by name."""
        return list(self.session.scalars(select(orm.Gallery).order_by(orm.Gallery.name)))

    def names(self) -> list[str]:
        return [g.name for g in self.by_names()]


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
                meta: dict[str, Any] | None = None) -> None:
        """`upsert` for an item id that cannot have a vector yet (a fresh never-reused row id), written at
        once as two plain inserts: no lookup first and no ORM objects, which on the event pipeline's hot
        path is a query and a flush's worth of Python less per face. The session is not flushed first:
        the log only has to keep one item's changes in order, and a fresh id has no earlier change."""
        connection, now = self.session.connection(), orm.utcnow()
        connection.execute(_INSERT_VECTOR, {
            "gallery": gallery, "item_id": item_id, "model": model, "vector": vector, "dim": dim,
            "meta": meta or {}, "created_at": now})
        connection.execute(_INSERT_CHANGE, {
            "gallery": gallery, "item_id": item_id, "op": "add", "created_at": now})

    def find(self, gallery: str, item_id: str, model: str) -> orm.FaceVector | None:
        stmt = select(orm.FaceVector).where(
            orm.FaceVector.gallery == gallery, orm.FaceVector.item_id == item_id, orm.FaceVector.model == model
        )
        return self.session.scalar(stmt)

    def set_meta(self, gallery: str, meta_by_item: dict[str, dict[str, Any]]) -> None:
        """Replace the metadata of these items (their rows under every model) and log a `meta` change for
        each: one bulk UPDATE by primary key per chunk, without loading the rows (re-clustering moves
        thousands of faces at once). SQLAlchemy's ORM bulk UPDATE by primary key also sets the new value
        on rows already loaded in the session, so a caller reading one back sees it (as `set_meta` did
        when it loaded the rows and assigned each; tests/integration/test_vector_meta.py checks it)."""
        if not meta_by_item:
            return
        items = sorted(meta_by_item)
        self.session.flush()
        for chunk in in_chunks(items):
            ids = self.session.execute(select(orm.FaceVector.id, orm.FaceVector.item_id).where(
                orm.FaceVector.gallery == gallery, orm.FaceVector.item_id.in_(chunk))).all()
            if ids:
                self.session.execute(update(orm.FaceVector), [{"id": i, "meta": meta_by_item[item]} for i, item in ids])
        self.log_many(gallery, items, "meta")

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

    def count(self, gallery: str, model: str) -> int:
        stmt = select(func.count()).select_from(orm.FaceVector).where(orm.FaceVector.gallery == gallery,
                                                                     orm.FaceVector.model == model)
        return int(self.session.scalar(stmt) or 0)

    def holds(self, gallery: str, item_id: str) -> bool:
        """The gallery holds `item_id` (under any model)."""
        stmt = select(orm.FaceVector.id).where(orm.FaceVector.gallery == gallery,
                                               orm.FaceVector.item_id == item_id).limit(1)
        return self.session.scalar(stmt) is not None

    def item_ids(self, gallery: str) -> list[str]:
        """Every item of a gallery (under any model)."""
        return list(self.session.scalars(select(orm.FaceVector.item_id).where(orm.FaceVector.gallery == gallery)))

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
