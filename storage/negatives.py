"""Operators teach the matcher: "not this person" negatives, and changing an event's match afterwards.

- `POST /v1/events/{id}/reject-match` (operators, admins; audited like every call that changes data)
  stores the matched event's face — its vector of the installation's model and its thumbnail and crop
  keys — as a negative example of the dossier it matched (`reject_match`), and unmatches the event: it
  moves to the Unmatched list, its episode's match is re-derived from the episode's other events, and
  its video's counters follow.
- The rule (actors/track_identity.py): a face (a track: its quality-weighted best frames) closer to
  one of a dossier's negatives than to that dossier's best photo does not match that dossier. It is
  applied when a sighting is matched; events matched before are left as they are.
- Negatives belong to their dossier: deleting or erasing the dossier removes them (the database
  cascades the rows, which hold the vector), and their files once no row refers to them; deleting one
  (`DELETE /v1/dossiers/{id}/negatives/{nid}`) does the same for that one. They are listed and served
  to whoever sees both the dossier and the camera group of the event they came from
  (storage/visibility.py).
- A changed match (`set_event_match`: an operator's reject, or a realtime track's later decision on
  more frames, actors/event_pipeline.py) updates the event row, its episode and its video's counters in
  the caller's transaction; webhooks and the live feed are not sent again (GET the event for its
  current match).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, select

from facewatch.errors import Conflict, NotFound
from facewatch.gallery_schema import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage import orm
from storage.repositories import in_chunks
from storage.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class EventMatch:
    """What an event's match says (None for an unmatched event)."""

    dossier_id: int
    watch_list_id: int
    face_id: int
    confidence: float


# -- negatives ----------------------------------------------------------------------------------------


def reject_match(uow: UnitOfWork, event: orm.Event, model: str, created_by: str) -> orm.DossierNegative:
    """The event's face becomes a negative of its matched dossier and the event is unmatched (the caller
    commits). An unmatched event, or one without a `model` vector, is a CONFLICT and changes nothing."""
    if not event.matched or event.dossier_id is None:
        raise Conflict(f"event {event.id} is not matched to a dossier", param="id")
    vector = uow.vectors.find(EVENTS_GALLERY, event.id, model)
    if vector is None:
        raise Conflict(f"event {event.id} has no {model} vector (recorded before a model change)", param="id")
    negative = orm.DossierNegative(dossier_id=event.dossier_id, event_id=event.id,
                                   camera_group_id=event.camera_group_id, model=model, dim=vector.dim,
                                   vector=vector.vector, thumbnail_key=event.thumbnail_key,
                                   crop_key=event.crop_key, created_by=created_by)
    uow.session.add(negative)
    set_event_match(uow, event, None)
    return negative


def negatives_of(uow: UnitOfWork, dossier_id: int, visible: ColumnElement[bool] | None = None,
                 ) -> list[orm.DossierNegative]:
    """The dossier's negatives, oldest first; `visible`: a caller's scope (storage/visibility.py)."""
    stmt = select(orm.DossierNegative).where(orm.DossierNegative.dossier_id == dossier_id)
    if visible is not None:
        stmt = stmt.where(visible)
    return list(uow.session.scalars(stmt.order_by(orm.DossierNegative.id)))


def negative_of(uow: UnitOfWork, dossier_id: int, negative_id: int,
                visible: ColumnElement[bool] | None = None) -> orm.DossierNegative:
    stmt = select(orm.DossierNegative).where(orm.DossierNegative.id == negative_id,
                                             orm.DossierNegative.dossier_id == dossier_id)
    row = uow.session.scalar(stmt.where(visible) if visible is not None else stmt)
    if row is None:
        raise NotFound(f"negative {negative_id} of dossier {dossier_id} does not exist", param="negative_id")
    return row


def negative_keys(negatives: Iterable[orm.DossierNegative]) -> set[str]:
    return {k for n in negatives for k in (n.thumbnail_key, n.crop_key) if k}


# -- what the matcher reads -------------------------------------------------------------------------------


@dataclass
class CandidateDossier:
    """A dossier a sighting may match: its photos' vectors, its negatives' vectors, its watch lists."""

    dossier_id: int
    face_ids: list[int]
    photos: np.ndarray  # (n, d), rows in the order of face_ids
    negatives: np.ndarray  # (m, d)
    watch_list_ids: set[int]


def candidate_dossiers(uow: UnitOfWork, hit_face_ids: Iterable[int], model: str) -> dict[int, CandidateDossier]:
    """The dossiers of these photos (a search's hits), each with every photo vector of `model`, its
    negatives of `model` and its watch lists."""
    hits = sorted(set(hit_face_ids))
    ids: list[int] = sorted({d for chunk in in_chunks(hits) for d in uow.session.scalars(
        select(orm.DossierFace.dossier_id).where(orm.DossierFace.id.in_(chunk)))})
    faces: dict[int, list[int]] = {i: [] for i in ids}
    lists: dict[int, set[int]] = {i: set() for i in ids}
    negatives: dict[int, list[np.ndarray]] = {i: [] for i in ids}
    for chunk in in_chunks(ids):
        for face_id, dossier_id in uow.session.execute(select(orm.DossierFace.id, orm.DossierFace.dossier_id)
                                                       .where(orm.DossierFace.dossier_id.in_(chunk))):
            faces[dossier_id].append(face_id)
        for dossier_id, wl_id in uow.session.execute(select(orm.dossier_watch_lists).where(
                orm.dossier_watch_lists.c.dossier_id.in_(chunk))):
            lists[dossier_id].add(wl_id)
        for dossier_id, raw in uow.session.execute(
                select(orm.DossierNegative.dossier_id, orm.DossierNegative.vector).where(
                    orm.DossierNegative.dossier_id.in_(chunk), orm.DossierNegative.model == model)):
            negatives[dossier_id].append(np.frombuffer(raw, np.float32))
    vectors = {v.item_id: np.frombuffer(v.vector, np.float32) for v in uow.vectors.by_items(
        DOSSIERS_GALLERY, model, [str(f) for face_ids in faces.values() for f in face_ids])}
    found = {}
    for dossier_id in ids:
        face_ids = [f for f in sorted(faces[dossier_id]) if str(f) in vectors]
        if not face_ids:
            continue  # deleted since the shard was synced, or no photo of this model
        found[dossier_id] = CandidateDossier(
            dossier_id, face_ids, np.stack([vectors[str(f)] for f in face_ids]),
            np.stack(negatives[dossier_id]) if negatives[dossier_id] else np.zeros((0, 0), np.float32),
            lists[dossier_id])
    return found


# -- changing an event's match ------------------------------------------------------------------------------


def match_of(event: orm.Event) -> EventMatch | None:
    if not event.matched or event.dossier_id is None:
        return None
    return EventMatch(event.dossier_id, int(event.watch_list_id or 0), int(event.matched_face_id or 0),
                      float(event.confidence or 0.0))


def set_event_match(uow: UnitOfWork, event: orm.Event, match: EventMatch | None) -> bool:
    """Gives the event this match (or none), with its episode and video counters; returns whether it changed."""
    if match_of(event) == match:
        return False
    was_matched = event.matched
    event.matched = match is not None
    event.dossier_id = match.dossier_id if match else None
    event.watch_list_id = match.watch_list_id if match else orm.UNMATCHED_WATCH_LIST_ID
    event.matched_face_id = match.face_id if match else None
    event.confidence = match.confidence if match else None
    if event.video_id is not None and was_matched != event.matched:
        video = uow.videos.find(event.video_id)
        if video is not None:
            step = 1 if event.matched else -1
            video.matched_count = max(0, video.matched_count + step)
            video.unmatched_count = max(0, video.unmatched_count - step)
    uow.flush()
    if event.episode_id is not None:
        refresh_episode_match(uow, event.episode_id)
    return True


def refresh_episode_match(uow: UnitOfWork, episode_id: int) -> None:
    """The episode's match is its earliest matched event's (none when no event of it is matched)."""
    episode = uow.episodes.find(episode_id)
    if episode is None:
        return
    first = uow.session.scalars(select(orm.Event).where(orm.Event.episode_id == episode_id,
                                                        orm.Event.matched.is_(True))
                                .order_by(orm.Event.timestamp, orm.Event.id).limit(1)).first()
    episode.matched = first is not None
    episode.dossier_id = first.dossier_id if first else None
    episode.watch_list_id = first.watch_list_id if first else None


def track_events(uow: UnitOfWork, prefix: str, before: str) -> list[orm.Event]:
    """The committed events of one track (ids starting with `prefix`, facewatch/sightings.py), but `before`."""
    stmt = select(orm.Event).where(orm.Event.id.startswith(prefix, autoescape=True), orm.Event.id != before)
    return list(uow.session.scalars(stmt.order_by(orm.Event.timestamp, orm.Event.id)))


__all__ = ["CandidateDossier", "EventMatch", "candidate_dossiers", "match_of", "negative_keys", "negative_of",
           "negatives_of", "refresh_episode_match", "reject_match", "set_event_match", "track_events"]
