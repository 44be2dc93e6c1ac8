"""Selecting the objects a task (or `facewatch migrate-model`) works on: events, dossiers, dossier faces, by
the list filters or a batch at a time in id order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, String, cast, delete, exists, func, select
from sqlalchemy.orm import Session

from facewatch.gallery_schema import DOSSIERS_GALLERY, PERSONS_GALLERY
from storage import orm
from storage.event_queries import filter_events, hide
from storage.meta_filters import apply_meta


def dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def event_ids(session: Session, filters: Mapping[str, Any], hidden_lists: Sequence[int] = (),
              hidden_groups: Sequence[int] = ()) -> list[str]:
    """Ids of the events matching `filters`, newest first (a snapshot: events recorded later are not in it)."""
    stmt = hide(filter_events(select(orm.Event.id), filters, dialect(session)), list(hidden_lists), list(hidden_groups))
    return list(session.scalars(stmt.order_by(orm.Event.timestamp.desc(), orm.Event.id.desc())))


def filter_dossiers(stmt: Select[Any], f: Mapping[str, Any], dialect_name: str) -> Select[Any]:
    d = orm.Dossier
    if f.get("watch_list_id") is not None:
        stmt = stmt.where(d.watch_lists.any(orm.WatchList.id == f["watch_list_id"]))
    if f.get("dossier_ids") is not None:
        stmt = stmt.where(d.id.in_(list(f["dossier_ids"])))
    if f.get("active") is not None:
        stmt = stmt.where(d.active.is_(bool(f["active"])))
    if f.get("name_contains"):
        stmt = stmt.where(d.name.icontains(str(f["name_contains"]), autoescape=True))
    if f.get("created_gte") is not None:
        stmt = stmt.where(d.created_at >= f["created_gte"])
    if f.get("created_lte") is not None:
        stmt = stmt.where(d.created_at <= f["created_lte"])
    return apply_meta(stmt, d, f, dialect_name)


def dossier_ids(session: Session, filters: Mapping[str, Any]) -> list[int]:
    return list(session.scalars(filter_dossiers(select(orm.Dossier.id), filters, dialect(session))
                                .order_by(orm.Dossier.id)))


def dossier_face_ids(session: Session, filters: Mapping[str, Any]) -> list[int]:
    """Faces of the dossiers matching `filters`; `meta.*` / `external_id` apply to the faces themselves,
    `created_*` to the faces' creation time."""
    f = orm.DossierFace
    face_filters = {k: v for k, v in filters.items() if k.startswith("meta") or k == "external_id"}
    owner_filters = {k: v for k, v in filters.items()
                     if k not in face_filters and k not in ("created_gte", "created_lte")}
    stmt = select(f.id).where(f.dossier_id.in_(filter_dossiers(select(orm.Dossier.id), owner_filters,
                                                               dialect(session))))
    if filters.get("created_gte") is not None:
        stmt = stmt.where(f.created_at >= filters["created_gte"])
    if filters.get("created_lte") is not None:
        stmt = stmt.where(f.created_at <= filters["created_lte"])
    stmt = apply_meta(stmt, f, face_filters, dialect(session))
    return list(session.scalars(stmt.order_by(f.id)))


def events_by_ids(session: Session, ids: Sequence[str]) -> list[orm.Event]:
    """The events with these ids, in the order given (missing ones left out)."""
    found = {e.id: e for e in session.scalars(select(orm.Event).where(orm.Event.id.in_(list(ids))))}
    return [found[i] for i in ids if i in found]


def dossiers_by_ids(session: Session, ids: Sequence[int]) -> list[orm.Dossier]:
    found = {d.id: d for d in session.scalars(select(orm.Dossier).where(orm.Dossier.id.in_(list(ids))))}
    return [found[i] for i in ids if i in found]


def vectors_of(session: Session, gallery: str, model: str, item_ids: Sequence[str]) -> dict[str, bytes]:
    rows = session.execute(select(orm.FaceVector.item_id, orm.FaceVector.vector).where(
        orm.FaceVector.gallery == gallery, orm.FaceVector.model == model,
        orm.FaceVector.item_id.in_(list(item_ids))))
    return {r.item_id: r.vector for r in rows}


def unused_model_vector_ids(session: Session, active_model: str, limit: int | None = None) -> list[int]:
    """Vector rows of models other than the active one (left behind by a model migration)."""
    stmt = select(orm.FaceVector.id).where(orm.FaceVector.model != active_model).order_by(orm.FaceVector.id)
    return list(session.scalars(stmt.limit(limit) if limit else stmt))


def matching_event_ids(session: Session, ids: Sequence[str], filters: Mapping[str, Any],
                       hidden_lists: Sequence[int] = (), hidden_groups: Sequence[int] = ()) -> set[str]:
    """Those of the event `ids` that match `filters` and are on no hidden list or group."""
    stmt = filter_events(select(orm.Event.id).where(orm.Event.id.in_(list(ids))), filters, dialect(session))
    return set(session.scalars(hide(stmt, list(hidden_lists), list(hidden_groups))))


def dossiers_of_faces(session: Session, face_ids: Sequence[int]) -> dict[int, int]:
    """The dossier of each of these dossier faces that still exists, by face id."""
    rows = session.execute(select(orm.DossierFace.id, orm.DossierFace.dossier_id)
                           .where(orm.DossierFace.id.in_(list(face_ids))))
    return {int(face_id): int(dossier_id) for face_id, dossier_id in rows}


def dossier_faces_by_ids(session: Session, ids: Sequence[int]) -> list[orm.DossierFace]:
    return list(session.scalars(select(orm.DossierFace).where(orm.DossierFace.id.in_(list(ids)))))


def delete_vector_rows(session: Session, row_ids: Sequence[int]) -> int:
    """Deletes vector rows by row id (vectors of models no shard serves, so no gallery change is logged)."""
    result = session.execute(delete(orm.FaceVector).where(orm.FaceVector.id.in_(list(row_ids))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def vector_models(session: Session, gallery: str, item_ids: Sequence[str]) -> dict[str, list[str]]:
    """The models each item of a gallery has a vector for, oldest vector first."""
    rows = session.execute(select(orm.FaceVector.item_id, orm.FaceVector.model).where(
        orm.FaceVector.gallery == gallery, orm.FaceVector.item_id.in_(list(item_ids))).order_by(orm.FaceVector.id))
    models: dict[str, list[str]] = {}
    for item_id, model in rows:
        models.setdefault(item_id, []).append(model)
    return models


def dossier_faces_after(session: Session, after: int, limit: int) -> list[orm.DossierFace]:
    """The next `limit` dossier faces after id `after`, by id."""
    stmt = select(orm.DossierFace).where(orm.DossierFace.id > after).order_by(orm.DossierFace.id).limit(limit)
    return list(session.scalars(stmt))


def events_after(session: Session, after: str, limit: int) -> list[orm.Event]:
    """The next `limit` events after id `after`, by id."""
    return list(session.scalars(select(orm.Event).where(orm.Event.id > after).order_by(orm.Event.id).limit(limit)))


def count_without_vector(session: Session, gallery: str, model: str) -> int:
    """Items of a built-in gallery (dossier faces for "dossiers", persons' representative faces for
    "persons", events for "events") with no vector for
    `model`."""
    table, column = {DOSSIERS_GALLERY: (orm.DossierFace, cast(orm.DossierFace.id, String)),
                     PERSONS_GALLERY: (orm.PersonFace, cast(orm.PersonFace.id, String))}.get(
                         gallery, (orm.Event, orm.Event.id))
    has_vector = exists().where(orm.FaceVector.gallery == gallery, orm.FaceVector.model == model,
                                orm.FaceVector.item_id == column)
    return int(session.scalar(select(func.count()).select_from(table).where(~has_vector)) or 0)


def person_faces_after(session: Session, after: int, batch: int) -> list[orm.PersonFace]:
    """Persons' representative faces with ids above `after`, in id order, `batch` at most."""
    return list(session.scalars(select(orm.PersonFace).where(orm.PersonFace.id > after)
                                .order_by(orm.PersonFace.id).limit(batch)))


def persons_by_ids(session: Session, person_ids: set[int]) -> dict[int, orm.Person]:
    """The persons with these ids, by id."""
    return {x.id: x for x in session.scalars(select(orm.Person).where(orm.Person.id.in_(person_ids)))}
