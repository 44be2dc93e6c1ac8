"""Who sees what: the one place per-object visibility (SPEC §5.2) is decided.

Watch lists and camera groups carry `hidden_from_roles`. A `VisibilityScope` is built once per
request (or per live-feed poll) from the caller's role: the ids of the camera groups and watch lists
hidden from that role. Every read path asks the scope, never the rows' `hidden_from_roles` itself:

- camera groups, watch lists: hidden when the role is named on the row itself;
- cameras, videos: hidden with their camera group; jobs with their camera or video;
- events: hidden when their camera group or their watch list is hidden (unmatched events are on the
  built-in Unmatched list, so hiding that list hides them);
- episodes: hidden when their camera group or their watch list is hidden (an unmatched episode counts
  as being on the Unmatched list); acknowledging one acknowledges only the events the caller sees;
- persons: visible when at least one of their events is;
- dossiers (and their photos): visible when they are on no watch list or on at least one visible
  list; the hidden lists never appear in the dossier's `watch_list_ids` for that role. A person on a
  covert list and an ordinary one is seen by everyone who sees the ordinary one, as its events are;
- a dossier's negatives ("not this person", storage/negatives.py): visible with their dossier, unless
  the camera group of the event they came from is hidden;
- media files (`/v1/media/{key}`): visible when at least one visible event, dossier photo or video
  refers to the key, or a visible negative (several rows may share one content-addressed file, e.g. a
  frame with two faces).
  A file no row refers to is visible to admins only.

Admins see everything. The scope gives SQLAlchemy where-clauses for the storage queries, predicates
for rows already in memory, the shard filters for the built-in galleries and "keep" functions that
drop hidden hits after a gallery search (the API over-fetches until a page is full, so pages are
never short because of hidden hits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from facewatch.errors import BadParam
from storage import orm

ADMIN = "admin"


def _hidden_from(column: Any, role: str) -> ColumnElement[bool]:
    """The JSON list of hidden roles names `role`. Role names are fixed words, so matching the quoted
    name in the JSON text is exact and portable across SQLite and PostgreSQL."""
    return cast(column, String).contains(f'"{role}"')


def _not_in(column: Any, ids: frozenset[int]) -> ColumnElement[bool]:
    if not ids:
        return true()
    # NULL (the group or list was deleted) is not hidden: nothing is left to hide it by.
    return or_(column.is_(None), column.not_in(sorted(ids)))


@dataclass(frozen=True)
class VisibilityScope:
    role: str
    hidden_group_ids: frozenset[int] = field(default_factory=frozenset)
    hidden_list_ids: frozenset[int] = field(default_factory=frozenset)
    visible_group_ids: frozenset[int] | None = None
    """All camera groups the role sees; None when none is hidden (then it need not be known)."""

    # ---- building ------------------------------------------------------------------------------
    @classmethod
    def unrestricted(cls) -> VisibilityScope:
        return cls(ADMIN)

    @classmethod
    def for_role(cls, session: Session, role: str) -> VisibilityScope:
        if role == ADMIN:
            return cls.unrestricted()
        groups = dict(session.execute(select(orm.CameraGroup.id, _hidden_from(orm.CameraGroup.hidden_from_roles,
                                                                               role))).tuples().all())
        lists = session.scalars(select(orm.WatchList.id).where(_hidden_from(orm.WatchList.hidden_from_roles, role)))
        hidden_groups = frozenset(g for g, hidden in groups.items() if hidden)
        visible = frozenset(g for g, hidden in groups.items() if not hidden) if hidden_groups else None
        return cls(role, hidden_groups, frozenset(lists), visible)

    @property
    def sees_everything(self) -> bool:
        return not self.hidden_group_ids and not self.hidden_list_ids

    # ---- predicates on ids and rows ---------------------------------------------------------------
    def sees_group(self, group_id: int | None) -> bool:
        return group_id is None or group_id not in self.hidden_group_ids

    def sees_list(self, watch_list_id: int | None) -> bool:
        return watch_list_id is None or watch_list_id not in self.hidden_list_ids

    def sees_event(self, event: orm.Event) -> bool:
        return self.sees_group(event.camera_group_id) and self.sees_list(event.watch_list_id)

    def sees_dossier(self, dossier: orm.Dossier) -> bool:
        return not dossier.watch_lists or any(self.sees_list(w.id) for w in dossier.watch_lists)

    def refuse_hidden(self, ids: Iterable[int], kind: str, param: str) -> None:
        """BAD_PARAM when a write names camera groups (`kind` "camera groups") or watch lists hidden from
        the role: to it they do not exist."""
        hidden = self.hidden_group_ids if kind == "camera groups" else self.hidden_list_ids
        named = sorted(set(ids) & hidden)
        if named:
            raise BadParam(f"{kind} {named} do not exist", param=param)

    def visible_list_ids(self, ids: Iterable[int]) -> list[int]:
        """`ids` without the hidden watch lists (e.g. a dossier's `watch_list_ids` as this role sees them)."""
        return sorted(i for i in ids if self.sees_list(i))

    # ---- SQL where-clauses ------------------------------------------------------------------------
    def camera_groups(self) -> ColumnElement[bool]:
        return _not_in(orm.CameraGroup.id, self.hidden_group_ids)

    def watch_lists(self) -> ColumnElement[bool]:
        return _not_in(orm.WatchList.id, self.hidden_list_ids)

    def cameras(self) -> ColumnElement[bool]:
        return _not_in(orm.Camera.camera_group_id, self.hidden_group_ids)

    def videos(self) -> ColumnElement[bool]:
        return _not_in(orm.Video.camera_group_id, self.hidden_group_ids)

    def jobs(self) -> ColumnElement[bool]:
        """A job is hidden with its camera or its video."""
        if self.sees_everything:
            return true()
        hidden_cameras = select(orm.Camera.id).where(~self.cameras())
        hidden_videos = select(orm.Video.id).where(~self.videos())
        return and_(or_(orm.Job.camera_id.is_(None), orm.Job.camera_id.not_in(hidden_cameras)),
                    or_(orm.Job.video_id.is_(None), orm.Job.video_id.not_in(hidden_videos)))

    def events(self) -> ColumnElement[bool]:
        return and_(_not_in(orm.Event.camera_group_id, self.hidden_group_ids),
                    _not_in(orm.Event.watch_list_id, self.hidden_list_ids))

    def episodes(self) -> ColumnElement[bool]:
        if self.sees_everything:
            return true()
        effective_list = func.coalesce(orm.Episode.watch_list_id, orm.UNMATCHED_WATCH_LIST_ID)
        return and_(_not_in(orm.Episode.camera_group_id, self.hidden_group_ids),
                    _not_in(effective_list, self.hidden_list_ids))

    def persons(self) -> ColumnElement[bool]:
        """A person is visible when at least one of its events is (the events' rules)."""
        return exists().where(orm.Event.person_id == orm.Person.id, self.events())

    def dossiers(self) -> ColumnElement[bool]:
        if not self.hidden_list_ids:
            return true()
        return or_(~orm.Dossier.watch_lists.any(), orm.Dossier.watch_lists.any(self.watch_lists()))

    def dossier_faces(self) -> ColumnElement[bool]:
        if not self.hidden_list_ids:
            return true()
        return orm.DossierFace.dossier.has(self.dossiers())

    def negatives(self) -> ColumnElement[bool]:
        """A dossier's negative (storage/negatives.py): its dossier and its event's camera group are visible."""
        if self.sees_everything:
            return true()
        return and_(orm.DossierNegative.dossier_id.in_(select(orm.Dossier.id).where(self.dossiers())),
                    _not_in(orm.DossierNegative.camera_group_id, self.hidden_group_ids))

    def media(self, key: str) -> ColumnElement[bool]:
        """Some visible row refers to media `key` (admins: any file)."""
        if self.role == ADMIN:
            return true()
        if not key:
            return false()
        event = select(orm.Event.id).where(
            or_(orm.Event.thumbnail_key == key, orm.Event.crop_key == key, orm.Event.frame_key == key), self.events())
        face = select(orm.DossierFace.id).where(
            or_(orm.DossierFace.source_key == key, orm.DossierFace.crop_key == key), self.dossier_faces())
        video = select(orm.Video.id).where(orm.Video.media_key == key, self.videos())
        negative = select(orm.DossierNegative.id).where(
            or_(orm.DossierNegative.thumbnail_key == key, orm.DossierNegative.crop_key == key), self.negatives())
        return or_(exists(event), exists(face), exists(video), exists(negative))

    def sees_media(self, session: Session, key: str) -> bool:
        return self.role == ADMIN or bool(session.scalar(select(self.media(key))))

    # ---- galleries --------------------------------------------------------------------------------
    def event_shard_filters(self, filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Shard filters for the events gallery that keep only events of visible camera groups (exact,
        inside the shards). Watch-list visibility is not a shard column: `keep_events` applies it."""
        merged = dict(filters or {})
        if self.visible_group_ids is None:
            return merged or None
        wanted = merged.get("camera_group_id")
        allowed = sorted(self.visible_group_ids)
        if wanted is None:
            merged["camera_group_id"] = allowed
        elif isinstance(wanted, Mapping):  # a range: the visible groups inside it
            merged["camera_group_id"] = [g for g in allowed if _in_range(g, wanted)]
        else:
            asked = wanted if isinstance(wanted, list | tuple) else [wanted]
            merged["camera_group_id"] = [g for g in asked if g in self.visible_group_ids]
        return merged

    def keep_events(self, session: Session, ids: Iterable[str]) -> set[str]:
        """The event ids (gallery hits) this scope sees; ids whose row is gone are dropped too."""
        return _existing(session, orm.Event.id, ids, self.events())

    def keep_dossier_faces(self, session: Session, face_ids: Iterable[int]) -> set[int]:
        """The dossier face ids (gallery hits) this scope sees; faces deleted meanwhile are dropped too."""
        return _existing(session, orm.DossierFace.id, face_ids, self.dossier_faces())


def _existing(session: Session, column: Any, ids: Iterable[Any], visible: ColumnElement[bool]) -> set[Any]:
    wanted = list(dict.fromkeys(ids))
    kept: set[Any] = set()
    for start in range(0, len(wanted), 500):  # well inside every database's bind-parameter limit
        kept.update(session.scalars(select(column).where(column.in_(wanted[start:start + 500]), visible)))
    return kept


def _in_range(value: float, bounds: Mapping[str, Any]) -> bool:
    checks = {"gt": lambda b: value > b, "gte": lambda b: value >= b, "lt": lambda b: value < b,
              "lte": lambda b: value <= b}
    for op, bound in bounds.items():
        if op not in checks or isinstance(bound, bool) or not isinstance(bound, int | float):
            raise BadParam("range filter on 'camera_group_id' takes gt, gte, lt, lte with numbers",
                           param="filters.camera_group_id")
    return all(checks[op](bound) for op, bound in bounds.items())


__all__ = ["VisibilityScope"]
