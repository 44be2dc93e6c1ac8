"""Persons in the database: the truth behind the `persons` gallery (docs/persons.md).

A person is a dossier's person (one per dossier, made on its first event) or an anonymous one. An
anonymous person is represented by up to `person_max_faces` representative faces (`PersonFace`),
whose vectors live in the `persons` gallery with metadata `{"person_id", "scope"}`. Dossier persons
have no representative faces: their faces are the dossier's.

Everything here runs inside the caller's unit of work and never commits; callers sync the persons
gallery after their commit. Operators' decisions are rows too: a `PersonExclusion` says two persons
are not one, and neither re-clustering nor a merge of other persons ever joins them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import String, and_, bindparam, case, cast, delete, exists, func, or_, select, update

from facewatch.errors import BadParam, Conflict, NotFound
from facewatch.gallery_schema import PERSONS_GALLERY
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, store_dossier_face_vector
from storage.repositories import in_chunks
from storage.unit_of_work import UnitOfWork

PERSON_STATUSES = ("new", "known", "regular")
INSTALLATION_SCOPE = 0


def scope_of(settings: dict[str, Any], camera_group_id: int | None) -> int:
    """0 for installation-wide persons, else the camera group (setting `person_scope`)."""
    if settings.get("person_scope") == "camera_group" and camera_group_id:
        return int(camera_group_id)
    return INSTALLATION_SCOPE


def face_meta(person: orm.Person) -> dict[str, Any]:
    return {"person_id": int(person.id), "scope": int(person.scope)}


# ---- statistics -----------------------------------------------------------------------------------------
def note_event(person: orm.Person, event: orm.Event) -> None:
    """Fold one new event into the person's statistics (no query: the pipeline's hot path)."""
    person.event_count = (person.event_count or 0) + 1
    ts = event.timestamp
    person.first_seen_at = min(person.first_seen_at, ts) if person.first_seen_at else ts
    person.last_seen_at = max(person.last_seen_at, ts) if person.last_seen_at else ts
    if event.camera_id is not None and event.camera_id not in (person.camera_ids or []):
        person.camera_ids = sorted([*(person.camera_ids or []), event.camera_id])
    if event.camera_group_id is not None and event.camera_group_id not in (person.camera_group_ids or []):
        person.camera_group_ids = sorted([*(person.camera_group_ids or []), event.camera_group_id])
    day = ts.date().isoformat()
    if day not in (person.seen_days or []):
        person.seen_days = sorted([*(person.seen_days or []), day])
        person.days_seen = len(person.seen_days)
    if person.best_event_id is None or event.quality > (person.best_quality or 0.0):
        person.best_event_id, person.best_quality = event.id, float(event.quality)


def recompute(uow: UnitOfWork, person: orm.Person) -> None:
    """Re-derive the statistics from the person's events (after a merge, a removal or retention)."""
    rows = uow.session.execute(
        select(orm.Event.id, orm.Event.timestamp, orm.Event.camera_id, orm.Event.camera_group_id,
               orm.Event.quality).where(orm.Event.person_id == person.id)
    ).all()
    _derive(person, rows)


def _derive(person: orm.Person, rows: Sequence[Any]) -> None:
    person.event_count = len(rows)
    person.first_seen_at = min((r.timestamp for r in rows), default=None)
    person.last_seen_at = max((r.timestamp for r in rows), default=None)
    person.camera_ids = sorted({r.camera_id for r in rows if r.camera_id is not None})
    person.camera_group_ids = sorted({r.camera_group_id for r in rows if r.camera_group_id is not None})
    person.seen_days = sorted({r.timestamp.date().isoformat() for r in rows})
    person.days_seen = len(person.seen_days)
    best = max(rows, key=lambda r: (r.quality, r.id), default=None)
    person.best_event_id = best.id if best else None
    person.best_quality = float(best.quality) if best else 0.0


def status_at(person: orm.Person, at: datetime, created: bool, settings: dict[str, Any],
              count_today: bool = True) -> str:
    """`new` for a person this event created, `regular` when seen on ≥ friend_days distinct days within
    the friend_window_days before `at` (the day of `at` included: the event's own day), `known` otherwise."""
    if created:
        return "new"
    first = (at - timedelta(days=float(settings["friend_window_days"]))).date().isoformat()
    last = at.date().isoformat()
    days = {d for d in (person.seen_days or []) if first <= d <= last} | ({last} if count_today else set())
    return "regular" if len(days) >= int(settings["friend_days"]) else "known"


# ---- making and finding ---------------------------------------------------------------------------------
def person_of_dossier(uow: UnitOfWork, dossier_id: int) -> tuple[orm.Person, bool]:
    """The dossier's person, created on first use; (person, created)."""
    person = uow.session.scalar(select(orm.Person).where(orm.Person.dossier_id == dossier_id))
    if person is not None:
        return person, False
    person = orm.Person(dossier_id=dossier_id, scope=INSTALLATION_SCOPE, dirty=False, camera_ids=[],
                        camera_group_ids=[], seen_days=[])
    uow.session.add(person)
    uow.flush()
    return person, True


def new_person(uow: UnitOfWork, scope: int) -> orm.Person:
    person = orm.Person(scope=scope, camera_ids=[], camera_group_ids=[], seen_days=[], dirty=True)
    uow.session.add(person)
    uow.flush()
    return person


STATISTICS = ("event_count", "first_seen_at", "last_seen_at", "camera_ids", "camera_group_ids", "seen_days",
              "days_seen", "best_event_id", "best_quality")


def start_person(uow: UnitOfWork, scope: int, event: orm.Event, model: str, vector: np.ndarray) -> tuple[int, int]:
    """A new anonymous person founded by `event` (its statistics are this one event's), with the event's
    face as its first representative: (person id, face id). The online path's write for a newcomer, as
    plain inserts with RETURNING: through the ORM it was a flush for the person's id, another for the
    face's, and an UPDATE of the statistics at commit, ~2 ms of Python a face (docs/persons.md)."""
    draft = orm.Person(scope=scope, camera_ids=[], camera_group_ids=[], seen_days=[])  # never added: a calculator
    note_event(draft, event)
    now = orm.utcnow()
    person_id = int(uow.session.connection().execute(_INSERT_PERSON, {
        **{name: getattr(draft, name) for name in STATISTICS}, "scope": scope, "dirty": True,
        "created_at": now, "updated_at": now}).scalar_one())
    return person_id, insert_face(uow, person_id, scope, event.id, event.quality, model, vector)


def insert_face(uow: UnitOfWork, person_id: int, scope: int, event_id: str | None, quality: float, model: str,
                vector: np.ndarray) -> int:
    """A representative face and its gallery vector, written at once (no ORM object): the face id."""
    array = np.ascontiguousarray(vector, dtype=np.float32).ravel()
    face_id = int(uow.session.connection().execute(_INSERT_FACE, {
        "person_id": person_id, "event_id": event_id, "quality": float(quality), "created_at": orm.utcnow()
    }).scalar_one())
    # face ids are never reused (NEVER_REUSE), so the new face has no vector to look up first
    uow.vectors.add_new(PERSONS_GALLERY, str(face_id), model, array.tobytes(), int(array.size),
                        {"person_id": int(person_id), "scope": int(scope)})
    return face_id


def add_face(uow: UnitOfWork, person: orm.Person, event_id: str | None, quality: float, model: str,
             vector: np.ndarray) -> int:
    """A new representative face of `person` (marked dirty for re-clustering): the face id."""
    face_id = insert_face(uow, person.id, person.scope, event_id, quality, model, vector)
    person.dirty = True
    return face_id


def remove_faces(uow: UnitOfWork, faces: Sequence[orm.PersonFace]) -> None:
    remove_face_ids(uow, [f.id for f in faces])


def remove_face_ids(uow: UnitOfWork, face_ids: Sequence[int]) -> None:
    if not face_ids:
        return
    uow.vectors.remove(PERSONS_GALLERY, [str(f) for f in face_ids])
    uow.session.execute(delete(orm.PersonFace).where(orm.PersonFace.id.in_(list(face_ids))))


_FACES, _VECTORS = orm.PersonFace.__table__, orm.FaceVector.__table__
# The online path's statements, built once: building a statement costs about as much Python as
# running it (these run once or twice per unmatched face).
_INSERT_PERSON = orm.Person.__table__.insert().returning(orm.Person.__table__.c.id)
_INSERT_FACE = _FACES.insert().returning(_FACES.c.id)
_REPRESENTATIVES = (
    select(_FACES.c.id, _FACES.c.quality, _VECTORS.c.vector).select_from(_FACES)
    .outerjoin(_VECTORS, and_(_VECTORS.c.gallery == PERSONS_GALLERY, _VECTORS.c.model == bindparam("model"),
                              _VECTORS.c.item_id == cast(_FACES.c.id, String)))
    .where(_FACES.c.person_id == bindparam("person_id")).order_by(_FACES.c.id))
_ANONYMOUS_OWNERS = (
    select(orm.PersonFace.id, orm.Person).join(orm.Person, orm.Person.id == orm.PersonFace.person_id)
    .where(orm.PersonFace.id.in_(bindparam("face_ids", expanding=True)), orm.Person.dossier_id.is_(None)))


def representatives(uow: UnitOfWork, person_id: int, model: str) -> list[tuple[int, float, np.ndarray | None]]:
    """(face id, quality, vector under `model` or None) of a person's representative faces, in id order,
    in one read of plain rows (the online join's read: no ORM objects are built for them)."""
    rows = uow.session.connection().execute(_REPRESENTATIVES, {"person_id": int(person_id), "model": model})
    return [(int(face_id), float(quality), None if blob is None else np.frombuffer(blob, dtype=np.float32))
            for face_id, quality, blob in rows]


def faces_of(uow: UnitOfWork, person_ids: Iterable[int]) -> list[orm.PersonFace]:
    ids = sorted(set(person_ids))
    if not ids:
        return []
    stmt = select(orm.PersonFace).where(orm.PersonFace.person_id.in_(ids)).order_by(orm.PersonFace.id)
    return list(uow.session.scalars(stmt))


def face_vectors(uow: UnitOfWork, model: str, faces: Sequence[orm.PersonFace]) -> dict[int, np.ndarray]:
    rows = uow.vectors.by_items(PERSONS_GALLERY, model, [str(f.id) for f in faces])
    return {int(r.item_id): np.frombuffer(r.vector, dtype=np.float32) for r in rows}


def owners(uow: UnitOfWork, face_ids: Sequence[int]) -> dict[int, int]:
    """person id per representative face id (faces deleted since the shard synced are left out)."""
    if not face_ids:
        return {}
    stmt = select(orm.PersonFace.id, orm.PersonFace.person_id).where(orm.PersonFace.id.in_(list(face_ids)))
    return {face_id: person_id for face_id, person_id in uow.session.execute(stmt)}


def anonymous_owners(uow: UnitOfWork, face_ids: Sequence[int]) -> dict[int, orm.Person]:
    """The anonymous person of each representative face id, persons loaded in the same one query (the
    online decision's only read; faces deleted since the shard synced are left out)."""
    if not face_ids:
        return {}
    rows = uow.session.execute(_ANONYMOUS_OWNERS, {"face_ids": [int(f) for f in face_ids]})
    return {face_id: person for face_id, person in rows}


def excluded_pairs(uow: UnitOfWork, person_ids: Iterable[int] | None = None) -> set[tuple[int, int]]:
    stmt = select(orm.PersonExclusion.person_id, orm.PersonExclusion.other_person_id)
    if person_ids is not None:
        ids = sorted(set(person_ids))
        stmt = stmt.where(or_(orm.PersonExclusion.person_id.in_(ids), orm.PersonExclusion.other_person_id.in_(ids)))
    return {(min(a, b), max(a, b)) for a, b in uow.session.execute(stmt)}


def exclude(uow: UnitOfWork, a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    if (low, high) not in excluded_pairs(uow, [low]):
        uow.session.add(orm.PersonExclusion(person_id=low, other_person_id=high))
        uow.flush()


# ---- operators' corrections and re-clustering -----------------------------------------------------------
def merge(uow: UnitOfWork, keep_id: int, other_id: int, max_faces: int, *, by_operator: bool) -> orm.Person:
    """Fold `other` into `keep`: events, representative faces (best `max_faces` kept), exclusions.

    The kept person is the dossier's if one of them has a dossier (two dossiers' persons are two
    people: 409). An automatic merge (`by_operator=False`) of an excluded pair is refused; an
    operator's merge overrides the exclusion between the two (and removes it).
    """
    if keep_id == other_id:
        raise BadParam("a person cannot be merged with itself", param="other_id")
    keep, other = uow.session.get(orm.Person, keep_id), uow.session.get(orm.Person, other_id)
    if keep is None or other is None:
        raise NotFound(f"person {keep_id if keep is None else other_id} does not exist",
                       param="id" if keep is None else "other_id")
    if keep.dossier_id is not None and other.dossier_id is not None:
        raise Conflict("both persons belong to dossiers; merge the dossiers instead")
    if other.dossier_id is not None:
        keep, other = other, keep
    pair = (min(keep.id, other.id), max(keep.id, other.id))
    if pair in excluded_pairs(uow, [keep.id]):
        if not by_operator:
            raise Conflict(f"an operator said persons {pair[0]} and {pair[1]} are not one")
        uow.session.execute(delete(orm.PersonExclusion).where(
            orm.PersonExclusion.person_id == pair[0], orm.PersonExclusion.other_person_id == pair[1]))
    uow.session.execute(update(orm.Event).where(orm.Event.person_id == other.id).values(person_id=keep.id))
    _move_exclusions(uow, other.id, keep.id)
    moved = faces_of(uow, [other.id])
    if keep.dossier_id is not None:
        remove_faces(uow, moved)  # a dossier's person is represented by the dossier's own faces
    else:
        for face in moved:
            face.person_id = keep.id
        uow.flush()
        faces = sorted(faces_of(uow, [keep.id]), key=lambda f: (-f.quality, f.id))
        remove_faces(uow, faces[max_faces:])
        kept = faces[:max_faces]
        if kept:
            uow.vectors.set_meta(PERSONS_GALLERY, {str(f.id): face_meta(keep) for f in kept})
        keep.dirty = True
    uow.session.delete(other)
    uow.flush()
    recompute(uow, keep)
    return keep


def merge_many(uow: UnitOfWork, merges: Sequence[tuple[int, int]], max_faces: int) -> int:
    """Re-clustering's merges of one chunk, set-based: the same result as `merge(keep, other,
    by_operator=False)` applied to each (keep, other) in turn, in a few statements per chunk.

    `merges` are (keep, other) with `keep` a component's kept person (never itself an `other`);
    every person is anonymous. Events and faces move in one UPDATE per 500 merged persons (a CASE
    from merged to kept id), exclusions are re-pointed, each kept person keeps its best `max_faces`
    faces (their gallery metadata in one bulk update), the merged persons are deleted and the kept
    persons' statistics re-derived from one read of their events. An exclusion inside one component
    is refused (409) before anything changes."""
    target = {other: keep for keep, other in merges}
    if not target:
        return 0
    if len(target) != len(merges) or any(keep == other or keep in target for keep, other in merges):
        raise BadParam("merges must map each merged person to a kept person once", param="merges")
    keeps = sorted(set(target.values()))
    everyone = sorted(set(keeps) | set(target))
    found = {row.id: row for row in uow.session.scalars(select(orm.Person).where(orm.Person.id.in_(everyone)))}
    missing = [x for x in everyone if x not in found]
    if missing:
        raise NotFound(f"person {missing[0]} does not exist", param="id")
    if any(found[x].dossier_id is not None for x in everyone):
        raise Conflict("re-clustering merges anonymous persons only")
    rows = list(uow.session.execute(select(orm.PersonExclusion.id, orm.PersonExclusion.person_id,
                                           orm.PersonExclusion.other_person_id).where(or_(
        orm.PersonExclusion.person_id.in_(sorted(target)), orm.PersonExclusion.other_person_id.in_(sorted(target))))))
    moved = set()
    for _, a, b in rows:
        na, nb = target.get(a, a), target.get(b, b)
        if na == nb:
            raise Conflict(f"an operator said persons {min(a, b)} and {max(a, b)} are not one")
        moved.add((min(na, nb), max(na, nb)))
    for chunk in in_chunks(sorted(target), 500):
        mapping = {other: target[other] for other in chunk}
        for table in (orm.Event, orm.PersonFace):
            uow.session.execute(update(table).where(table.person_id.in_(list(chunk)))
                                .values(person_id=case(mapping, value=table.person_id)),
                                execution_options={"synchronize_session": False})
    if rows:
        uow.session.execute(delete(orm.PersonExclusion).where(orm.PersonExclusion.id.in_([r[0] for r in rows])))
        uow.session.flush()
        moved -= excluded_pairs(uow, {x for pair in moved for x in pair})
        for low, high in sorted(moved):
            uow.session.add(orm.PersonExclusion(person_id=low, other_person_id=high))
    faces = uow.session.execute(select(orm.PersonFace.id, orm.PersonFace.person_id, orm.PersonFace.quality)
                                .where(orm.PersonFace.person_id.in_(keeps))).all()
    per_keep: dict[int, list[tuple[float, int]]] = {}
    for face_id, person_id, quality in faces:
        per_keep.setdefault(person_id, []).append((-quality, face_id))
    dropped, meta = [], {}
    for person_id, items in per_keep.items():
        items.sort()
        dropped += [face_id for _, face_id in items[max_faces:]]
        meta.update({str(face_id): face_meta(found[person_id]) for _, face_id in items[:max_faces]})
    if dropped:
        uow.vectors.remove(PERSONS_GALLERY, [str(f) for f in dropped])
        uow.session.execute(delete(orm.PersonFace).where(orm.PersonFace.id.in_(dropped)))
    uow.vectors.set_meta(PERSONS_GALLERY, meta)
    uow.session.execute(delete(orm.Person).where(orm.Person.id.in_(sorted(target))),
                        execution_options={"synchronize_session": False})
    for other in target:
        uow.session.expunge(found[other])
    for keep in keeps:
        found[keep].dirty = True
    recompute_many(uow, [found[keep] for keep in keeps])
    uow.flush()
    return len(target)


def recompute_many(uow: UnitOfWork, persons: Sequence[orm.Person]) -> None:
    """`recompute` for many persons from one read of their events."""
    rows: dict[int, list[Any]] = {person.id: [] for person in persons}
    for chunk in in_chunks(sorted(rows)):
        for r in uow.session.execute(select(orm.Event.person_id, orm.Event.id, orm.Event.timestamp,
                                            orm.Event.camera_id, orm.Event.camera_group_id, orm.Event.quality)
                                     .where(orm.Event.person_id.in_(list(chunk)))):
            rows[r.person_id].append(r)
    for person in persons:
        _derive(person, rows[person.id])


def _move_exclusions(uow: UnitOfWork, old: int, new: int) -> None:
    rows = list(uow.session.scalars(select(orm.PersonExclusion).where(
        or_(orm.PersonExclusion.person_id == old, orm.PersonExclusion.other_person_id == old))))
    others = {r.other_person_id if r.person_id == old else r.person_id for r in rows}
    for row in rows:
        uow.session.delete(row)
    uow.flush()
    for other in others - {new}:
        exclude(uow, new, other)


def split_off(uow: UnitOfWork, event: orm.Event, model: str) -> orm.Person:
    """"Not this person": the event becomes its own person, which never joins the old one again."""
    if event.person_id is None:
        raise Conflict(f"event {event.id} has no person")
    old = uow.session.get(orm.Person, event.person_id)
    if old is None:
        raise NotFound(f"person {event.person_id} does not exist")
    if old.event_count <= 1 and old.dossier_id is None:
        raise Conflict(f"event {event.id} is the only event of person {old.id}")
    person = new_person(uow, old.scope)
    event.person_id = person.id
    face = uow.session.scalar(select(orm.PersonFace).where(orm.PersonFace.person_id == old.id,
                                                            orm.PersonFace.event_id == event.id))
    if face is not None:
        face.person_id = person.id
        uow.vectors.set_meta(PERSONS_GALLERY, {str(face.id): face_meta(person)})
    else:
        vector = uow.vectors.find(EVENTS_GALLERY, event.id, model)
        if vector is not None:
            add_face(uow, person, event.id, event.quality, model, np.frombuffer(vector.vector, np.float32))
    uow.flush()
    exclude(uow, person.id, old.id)
    recompute(uow, person)
    recompute(uow, old)
    if old.event_count == 0 and old.dossier_id is None:
        erase(uow, [old.id])
    return person


def promote(uow: UnitOfWork, person: orm.Person, name: str, watch_list_ids: Sequence[int],
            event_ids: Sequence[str], model: str, comment: str = "") -> orm.Dossier:
    """A dossier for an anonymous person, its faces taken from chosen events (their crops and vectors)."""
    if person.dossier_id is not None:
        raise Conflict(f"person {person.id} already has dossier {person.dossier_id}")
    if not event_ids:
        raise BadParam("choose at least one event of the person", param="event_ids")
    events = uow.events.get_many(event_ids, "event_ids")
    strangers = [e.id for e in events if e.person_id != person.id]
    if strangers:
        raise BadParam(f"event {strangers[0]} is not an event of person {person.id}", param="event_ids")
    vectors = {v.item_id: v for v in uow.vectors.by_items(EVENTS_GALLERY, model, [e.id for e in events])}
    missing = [e.id for e in events if e.id not in vectors]
    if missing:
        raise BadParam(f"event {missing[0]} has no {model} vector", param="event_ids")
    lists = uow.watch_lists.get_many(watch_list_ids, "watch_list_ids")
    if any(w.builtin for w in lists):
        raise BadParam("a dossier cannot be put on a built-in watch list", param="watch_list_ids")
    dossier = uow.dossiers.add(orm.Dossier(name=name, comment=comment, watch_lists=lists))
    for event in events:
        face = uow.dossier_faces.add(orm.DossierFace(
            dossier_id=dossier.id, source_key=event.frame_key, crop_key=event.crop_key, bbox=event.bbox,
            detection_score=event.detection_score, quality=event.quality, attributes=event.attributes or {}))
        store_dossier_face_vector(uow, face, dossier, model, np.frombuffer(vectors[event.id].vector, np.float32))
    remove_faces(uow, faces_of(uow, [person.id]))
    person.dossier_id, person.dirty = dossier.id, False
    uow.flush()
    return dossier


def erase(uow: UnitOfWork, person_ids: Sequence[int]) -> int:
    """Delete persons and their gallery vectors (their events stay, person-less)."""
    if not person_ids:
        return 0
    remove_faces(uow, faces_of(uow, person_ids))
    uow.session.execute(update(orm.Event).where(orm.Event.person_id.in_(list(person_ids))).values(person_id=None))
    result = uow.session.execute(delete(orm.Person).where(orm.Person.id.in_(list(person_ids))))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def prune_empty(uow: UnitOfWork) -> int:
    """Persons with no events left disappear (after retention or event deletion)."""
    has_events = exists().where(orm.Event.person_id == orm.Person.id)
    ids = list(uow.session.scalars(select(orm.Person.id).where(~has_events)))
    erase(uow, ids)
    return len(ids)


def persons_of_events(uow: UnitOfWork, event_ids: Sequence[str]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(event_ids), 500):
        found.update(uow.session.scalars(select(orm.Event.person_id).where(
            orm.Event.id.in_(list(event_ids[start:start + 500])), orm.Event.person_id.is_not(None))))
    return found


def forget_events(uow: UnitOfWork, event_ids: Sequence[str], person_ids: set[int]) -> int:
    """After these events were deleted (retention, erasure): their representative faces go too (no
    vector outlives its event), the persons' statistics are re-derived, and persons left without
    events are deleted. Returns the persons deleted."""
    for start in range(0, len(event_ids), 500):
        faces = list(uow.session.scalars(select(orm.PersonFace).where(
            orm.PersonFace.event_id.in_(list(event_ids[start:start + 500])))))
        remove_faces(uow, faces)
    refresh_counts(uow, person_ids)
    empty = [x.id for x in uow.session.scalars(select(orm.Person).where(
        orm.Person.id.in_(sorted(person_ids)), orm.Person.event_count == 0))]
    erase(uow, empty)
    return len(empty)


def refresh_counts(uow: UnitOfWork, person_ids: Iterable[int]) -> None:
    for person in uow.session.scalars(select(orm.Person).where(orm.Person.id.in_(sorted(set(person_ids))))):
        recompute(uow, person)


def count_all(uow: UnitOfWork) -> int:
    return int(uow.session.scalar(select(func.count()).select_from(orm.Person)) or 0)


__all__ = ["DOSSIERS_GALLERY", "PERSONS_GALLERY", "PERSON_STATUSES", "add_face", "erase", "exclude", "merge",
           "merge_many", "new_person", "note_event", "person_of_dossier", "promote", "prune_empty", "recompute",
           "recompute_many", "representatives", "scope_of", "split_off", "start_person", "status_at"]
