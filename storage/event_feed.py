"""The live feed's reads: events in the feed's order (created_at, then id), the SQL behind
serve_apps/api/feed_hub.py and routes/event_stream.py.

A `FeedPosition` is a place in that order. `EventFeed` is one caller's feed: the list filters of
`GET /v1/events` and the caller's visibility scope (storage/visibility.py), read a batch at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from storage import orm
from storage.event_queries import filter_events
from storage.visibility import VisibilityScope


@dataclass(frozen=True, order=True)
class FeedPosition:
    """A place in the feed's order: (created_at, id); an empty id is before every event of that moment."""

    created_at: datetime
    event_id: str = ""

    def after_clause(self) -> ColumnElement[bool]:
        return or_(orm.Event.created_at > self.created_at,
                   and_(orm.Event.created_at == self.created_at, orm.Event.id > self.event_id))


def positions_after(session: Session, head: FeedPosition, limit: int) -> list[FeedPosition]:
    """The positions of up to `limit` events committed after `head`, oldest first (any caller's)."""
    stmt = (select(orm.Event.created_at, orm.Event.id).where(head.after_clause())
            .order_by(orm.Event.created_at, orm.Event.id).limit(limit))
    return [FeedPosition(created_at, event_id) for created_at, event_id in session.execute(stmt)]


@dataclass(frozen=True)
class EventFeed:
    """The events one caller's feed may send: its filters and its visibility scope."""

    session: Session
    scope: VisibilityScope
    filters: Mapping[str, Any]

    def _select(self) -> Select[Any]:
        dialect = self.session.get_bind().dialect.name
        stmt = filter_events(select(orm.Event).where(self.scope.events()), self.filters, dialect)
        return stmt.order_by(orm.Event.created_at, orm.Event.id)

    def between(self, after: FeedPosition, upto: FeedPosition, limit: int) -> list[orm.Event]:
        """Up to `limit` events after `after` and not after `upto`, oldest first."""
        stmt = self._select().where(after.after_clause(), ~upto.after_clause()).limit(limit)
        return list(self.session.scalars(stmt))

    def among(self, event_ids: Sequence[str]) -> list[orm.Event]:
        """Those of `event_ids` this feed sends, oldest first."""
        return list(self.session.scalars(self._select().where(orm.Event.id.in_(list(event_ids)))))
