"""Repositories: one per aggregate, each a thin layer over a shared Session.

Repositories never commit; the unit of work (`storage.unit_of_work`) does, so a caller can write
related rows (an event, its outbox rows, its vector) in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, select, true, update
from sqlalchemy.orm import Session, joinedload

from facewatch.errors import BadParam, NotFound
from storage import orm
from storage.db import translate_db_errors
from storage.event_queries import filter_events
from storage.event_views import VIEW_COLUMNS, EventView
from storage.list_filters import ListFilters
from storage.meta_filters import apply_meta
from storage.pagination import Page, SortKey, paginate
from storage.visibility import VisibilityScope

TOKEN_TOUCH_EVERY = timedelta(seconds=60)
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
    list_filters = ListFilters()
    """The query parameters of the resource's list endpoint (`list_page`)."""
    list_order: list[SortKey] | None = None
    """The list's order; None: by id."""

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
        """Every row, as a select to narrow: for storage/ and tests only (tests/integration/test_sql_in_storage.py keeps
        it out of the other packages; they call an intent-named method instead)."""
        return select(self.model)

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        """The rows `scope` sees (storage/visibility.py decides); rows without visibility rules: all."""
        return true()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        """Filters beyond `list_filters` (a subclass's hook)."""
        return stmt

    def list_page(self, filters: dict[str, Any], limit: int, cursor: str | None,
                  scope: VisibilityScope | None = None, columns: Sequence[Any] = ()) -> Page[Any]:
        """One page of the list endpoint: the rows the scope sees (without one: every row) that match the
        filters, in `list_order`; entities, or with `columns` Row tuples of those columns."""
        stmt = select(*columns) if columns else select(self.model)
        if scope is not None:
            stmt = stmt.where(self.visible_clause(scope))
        stmt = self.narrow(self.list_filters.apply(stmt, self.model, filters), filters, scope)
        return self.page(stmt, limit, cursor, keys=self.list_order, rows=bool(columns))

    def page(self, stmt: Select[Any], limit: int, cursor: str | None, keys: list[SortKey] | None = None,
             rows: bool = False) -> Page[Any]:
        keys = keys or [SortKey(self.model.id)]  # type: ignore[attr-defined]
        return paginate(self.session, stmt, keys, limit, cursor, rows)

    def count(self, stmt: Select[Any]) -> int:
        return int(self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    def all(self) -> list[T]:
        """Every row, by id (for small tables: cameras, groups, jobs)."""
        return list(self.session.scalars(select(self.model).order_by(self.model.id)))  # type: ignore[attr-defined]


class CameraGroupRepository(Repository[orm.CameraGroup]):
    model, label = orm.CameraGroup, "camera group"
    list_filters = ListFilters(flags=("active",), contains={"name_contains": "name"})

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.camera_groups()

    def by_name(self, name: str) -> orm.CameraGroup | None:
        return self.session.scalar(select(orm.CameraGroup).where(orm.CameraGroup.name == name))


class CameraRepository(Repository[orm.Camera]):
    model, label = orm.Camera, "camera"
    list_filters = ListFilters(equal=("camera_group_id", "status"), flags=("active",),
                               contains={"name_contains": "name"})

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.cameras()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        return apply_meta(stmt, orm.Camera, filters, self.session.get_bind().dialect.name)


class WatchListRepository(Repository[orm.WatchList]):
    model, label = orm.WatchList, "watch list"
    list_filters = ListFilters(flags=("active",), contains={"name_contains": "name"})

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.watch_lists()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        if filters.get("camera_group_id") is not None:
            stmt = stmt.where(orm.WatchList.camera_groups.any(orm.CameraGroup.id == filters["camera_group_id"]))
        return stmt

    def by_name(self, name: str) -> orm.WatchList | None:
        return self.session.scalar(select(orm.WatchList).where(orm.WatchList.name == name))

    def existing_names(self, names: Iterable[str]) -> set[str]:
        """Those of `names` that name a watch list."""
        return set(self.session.scalars(select(orm.WatchList.name).where(orm.WatchList.name.in_(list(names)))))

    def unmatched(self) -> orm.WatchList:
        return self.get(orm.UNMATCHED_WATCH_LIST_ID)

    def camera_group_links(self) -> list[tuple[int, int]]:
        """Every (watch list id, camera group id) a watch list names (a list naming none is absent)."""
        return [(int(wl), int(group)) for wl, group in self.session.execute(select(orm.watch_list_camera_groups))]


class DossierRepository(Repository[orm.Dossier]):
    model, label = orm.Dossier, "dossier"

    def by_name(self, name: str) -> orm.Dossier | None:
        return self.session.scalar(select(orm.Dossier).where(orm.Dossier.name == name).order_by(orm.Dossier.id))

    def count_on_list(self, watch_list_id: int) -> int:
        """Dossiers on the watch list."""
        return self.count(select(orm.Dossier).where(orm.Dossier.watch_lists.any(orm.WatchList.id == watch_list_id)))

    list_filters = ListFilters(flags=("active",), contains={"name_contains": "name"})

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.dossiers()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        """On a watch list (only a visible one: a hidden list has no members the caller may learn of), and
        the `meta.*` / `external_id` filters."""
        if filters.get("watch_list_id") is not None:
            visible = scope.watch_lists() if scope is not None else true()
            stmt = stmt.where(orm.Dossier.watch_lists.any(and_(orm.WatchList.id == filters["watch_list_id"], visible)))
        return apply_meta(stmt, orm.Dossier, filters, self.session.get_bind().dialect.name)


class DossierFaceRepository(Repository[orm.DossierFace]):
    model, label = orm.DossierFace, "dossier face"

    def owners(self, face_ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        """(dossier id, dossier name) of each face that still exists, by face id."""
        stmt = (select(orm.DossierFace.id, orm.Dossier.id, orm.Dossier.name)
                .join(orm.Dossier, orm.Dossier.id == orm.DossierFace.dossier_id)
                .where(orm.DossierFace.id.in_(list(face_ids))))
        return {face_id: (dossier_id, name) for face_id, dossier_id, name in self.session.execute(stmt)}

    def for_dossier(self, dossier_id: int, filters: dict[str, Any] | None = None) -> list[orm.DossierFace]:
        """The dossier's faces, oldest first, narrowed by `meta.<key>[__op]` / `external_id` filters."""
        stmt = select(orm.DossierFace).where(orm.DossierFace.dossier_id == dossier_id).order_by(orm.DossierFace.id)
        stmt = apply_meta(stmt, orm.DossierFace, filters or {}, self.session.get_bind().dialect.name)
        return list(self.session.scalars(stmt))


class EventRepository(Repository[orm.Event]):
    model, label = orm.Event, "event"
    newest_first = [SortKey(orm.Event.timestamp, descending=True), SortKey(orm.Event.id, descending=True)]
    list_order = newest_first

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.events()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        """The list filters of `GET /v1/events` (storage/event_queries.py), meta and external_id included."""
        return filter_events(stmt, filters, self._dialect())

    def list_views(self, filters: dict[str, Any], limit: int, cursor: str | None,
                   scope: VisibilityScope) -> Page[EventView]:
        """`list_page` for `event_to_dict`: the columns it reads as plain rows, no ORM objects built (a page
        of 50 spent about half of its storage time building and tracking Event objects)."""
        return self.list_page(filters, limit, cursor, scope, columns=VIEW_COLUMNS)

    def matched_counts(self, *, video_id: int | None = None, job_id: int | None = None) -> dict[str, int]:
        """Events of one video (or, without a video, of one job): total, matched and unmatched."""
        column, value = (orm.Event.video_id, video_id) if video_id is not None else (orm.Event.job_id, job_id)
        rows = self.session.execute(
            select(orm.Event.matched, func.count()).where(column == value).group_by(orm.Event.matched)).all()
        by_matched = {bool(m): int(n) for m, n in rows}
        matched, unmatched = by_matched.get(True, 0), by_matched.get(False, 0)
        return {"events_count": matched + unmatched, "matched_count": matched, "unmatched_count": unmatched}

    def matches_of_video(self, video_id: int) -> list[tuple[orm.Event, str, str]]:
        """The matched events of a video with their dossier's and watch list's names, in video order."""
        stmt = (select(orm.Event, orm.Dossier.name, orm.WatchList.name)
                .join(orm.Dossier, orm.Dossier.id == orm.Event.dossier_id)
                .join(orm.WatchList, orm.WatchList.id == orm.Event.watch_list_id)
                .where(orm.Event.video_id == video_id, orm.Event.matched.is_(True))
                .order_by(orm.Event.video_offset_s, orm.Event.id))
        return [(event, dossier, watch_list) for event, dossier, watch_list in self.session.execute(stmt)]

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def visible(self, event_id: str, scope: VisibilityScope) -> orm.Event | None:
        """The event, when the scope sees it (a hidden one looks absent)."""
        return self.session.scalar(select(orm.Event).where(orm.Event.id == event_id, scope.events()))

    def by_ids(self, event_ids: Iterable[str]) -> dict[str, orm.Event]:
        """Those of `event_ids` that exist, by id (every caller's: no visibility)."""
        return self.visible_among(event_ids, VisibilityScope.unrestricted())

    def visible_among(self, event_ids: Iterable[str], scope: VisibilityScope) -> dict[str, orm.Event]:
        """Those of `event_ids` the scope sees (and that still exist), by id, a chunk at a time."""
        found: dict[str, orm.Event] = {}
        for chunk in in_chunks(list(dict.fromkeys(event_ids)), 500):
            stmt = select(orm.Event).where(orm.Event.id.in_(chunk), scope.events())
            found.update((event.id, event) for event in self.session.scalars(stmt))
        return found

    def acknowledge_matching(self, scope: VisibilityScope, filters: dict[str, Any], by: str,
                             now: datetime) -> list[tuple[str, str | None]]:
        """Acknowledges the unacknowledged events the scope sees that match the filters; returns their
        (id, episode id) pairs (the caller acknowledges the episodes they finish)."""
        stmt = filter_events(select(orm.Event.id, orm.Event.episode_id).where(scope.events()), filters,
                             self._dialect()).where(orm.Event.acknowledged.is_(False))
        rows = [(event_id, episode_id) for event_id, episode_id in self.session.execute(stmt)]
        ids = [event_id for event_id, _ in rows]
        for chunk in in_chunks(ids, 500):
            self.session.execute(update(orm.Event).where(orm.Event.id.in_(chunk)).values(
                acknowledged=True, acknowledged_by=by, acknowledged_at=now))
        return rows


class EpisodeRepository(Repository[orm.Episode]):
    model, label = orm.Episode, "episode"
    newest_first = [SortKey(orm.Episode.last_at, descending=True), SortKey(orm.Episode.id, descending=True)]
    list_order = newest_first
    list_filters = ListFilters(equal=("camera_group_id", "camera_id", "dossier_id", "watch_list_id"),
                               flags=("matched", "open", "acknowledged"))

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.episodes()

    def visible(self, episode_id: int, scope: VisibilityScope) -> orm.Episode | None:
        return self.session.scalar(select(orm.Episode).where(orm.Episode.id == episode_id, scope.episodes()))

    def acknowledge_events(self, episode_id: int, scope: VisibilityScope, by: str, now: datetime) -> None:
        """Acknowledges the episode's unacknowledged events that the scope sees (never hidden ones)."""
        self.session.execute(
            update(orm.Event)
            .where(orm.Event.episode_id == episode_id, orm.Event.acknowledged.is_(False), scope.events())
            .values(acknowledged=True, acknowledged_by=by, acknowledged_at=now))


class VideoRepository(Repository[orm.Video]):
    model, label = orm.Video, "video"
    list_filters = ListFilters(equal=("status", "camera_group_id"))

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.videos()

    def media_in_use(self, key: str) -> bool:
        """Some video still refers to the (content-addressed) media file `key`."""
        return self.session.scalar(select(orm.Video.id).where(orm.Video.media_key == key).limit(1)) is not None

    def queued_or_in(self, ids: Iterable[int]) -> list[orm.Video]:
        """The videos waiting for a job, and those with the given ids (the job manager's working set)."""
        stmt = select(orm.Video).where(orm.Video.id.in_(set(ids)) | (orm.Video.status == "queued"))
        return list(self.session.scalars(stmt))


class JobRepository(Repository[orm.Job]):
    model, label = orm.Job, "job"
    list_filters = ListFilters(equal=("kind", "state", "camera_id", "video_id"))

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.jobs()

    def for_camera(self, camera_id: int) -> orm.Job | None:
        return self.session.scalar(select(orm.Job).where(orm.Job.camera_id == camera_id))

    def for_video(self, video_id: int) -> orm.Job | None:
        return self.session.scalar(select(orm.Job).where(orm.Job.video_id == video_id))

    def count_leased(self, now: datetime) -> int:
        """Jobs whose lease is still live (some job manager owns them)."""
        return self.count(select(orm.Job).where(orm.Job.lease_holder.is_not(None), orm.Job.lease_expires_at > now))

    def not_in_states(self, states: Iterable[str]) -> list[orm.Job]:
        """Jobs that still need supervision (finished/failed single-pass jobs do not), by id."""
        stmt = select(orm.Job).where(orm.Job.state.not_in([str(s) for s in states])).order_by(orm.Job.id)
        return list(self.session.scalars(stmt))


class WebhookRepository(Repository[orm.Webhook]):
    model, label = orm.Webhook, "webhook"
    list_filters = ListFilters(flags=("active",))

    def active_ids(self) -> list[int]:
        return list(self.session.scalars(select(orm.Webhook.id).where(orm.Webhook.active.is_(True))))


class WebhookDeliveryRepository(Repository[orm.WebhookDelivery]):
    model, label = orm.WebhookDelivery, "webhook delivery"
    list_filters = ListFilters(equal=("webhook_id",), flags=("ok",))
    list_order = [SortKey(orm.WebhookDelivery.id, descending=True)]


class UserRepository(Repository[orm.User]):
    model, label = orm.User, "user"
    list_filters = ListFilters(equal=("role",), flags=("active",), contains={"username_contains": "username"})

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

    def listing(self, user_id: int | None) -> Select[Any]:
        """Tokens with their owner loaded: every user's (`user_id` None, for admins) or one user's."""
        stmt = select(orm.Token).options(joinedload(orm.Token.user))
        return stmt if user_id is None else stmt.where(orm.Token.user_id == user_id)

    def touch(self, row: orm.Token, now: datetime) -> bool:
        """Records that the token was used; True when that changed the row (then commit). At most once a
        minute per token, so a script's every request does not also become a write."""
        if row.last_used_at is not None and now - row.last_used_at < TOKEN_TOUCH_EVERY:
            return False
        # Only last_used_at: updated_at says when the token itself was changed, not when it was used.
        self.session.execute(update(orm.Token).where(orm.Token.id == row.id)
                             .values(last_used_at=now, updated_at=orm.Token.updated_at))
        return True


class AuditRepository(Repository[orm.AuditRecord]):
    model, label = orm.AuditRecord, "audit record"
    list_filters = ListFilters(equal=("user_id", "username", "method", "status"), prefix={"path_prefix": "path"},
                               at_least={"status_gte": "status", "created_gte": "created_at"},
                               at_most={"status_lte": "status", "created_lte": "created_at"})
    list_order = [SortKey(orm.AuditRecord.created_at, descending=True), SortKey(orm.AuditRecord.id, descending=True)]

    def record(self, **fields: Any) -> orm.AuditRecord:
        return self.add(orm.AuditRecord(**fields))
