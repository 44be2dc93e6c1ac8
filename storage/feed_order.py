"""Events take their feed position at commit, in commit order (the live feed and the VMS sender rely on it).

The live feed (serve_apps/api/feed_hub.py) and the VMS sender (actors/vms_sender.py) follow events by a
cursor in (created_at, id) order and never look back behind it. That is exact only if an event becomes
visible after every event placed before it. With several event pipelines it was not: `created_at` was
taken when the row was built, so a transaction that took its time before commit could land an event
just behind a position a reader had already passed, and that reader never sent it.

So a new event's `created_at` is re-stamped at the very end of its transaction, under a lock held until
the commit:

- SQLite: the database's one write lock, which the transaction already holds once its rows are flushed
  (and a writer always reads the newest committed state);
- PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`), released only after the
  commit is visible; READ COMMITTED (the default) lets the next holder's read see it.

Under that lock the stamp is `max(now, newest other event + 1 µs)`: strictly after every committed
event, so commit order and feed order are the same, even when the clock steps back. Every event of one
transaction gets the same stamp (they become visible together; the id orders them).

The serialised part is only the stamp and the commit itself, not the pipelines' work. An event written
with an explicit `created_at` (imports, restores, tests of retention) keeps it and is not re-stamped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from storage import orm

_PENDING = "facewatch_feed_stamp"
# Any fixed bigint: the one advisory lock key of "an event transaction is committing".
_PG_LOCK_KEY = 0x66_77_66_65_65_64  # "fwfeed"
_TICK = timedelta(microseconds=1)


def next_stamp(now: datetime, newest: datetime | None) -> datetime:
    """The feed position's time for a commit at `now` when the newest committed event has `newest`."""
    return now if newest is None or now > newest else newest + _TICK


@event.listens_for(Session, "before_flush")
def _note_new_events(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.new:
        if isinstance(obj, orm.Event) and obj.created_at is None:  # None: the column default would apply
            session.info.setdefault(_PENDING, []).append(obj)


@event.listens_for(Session, "before_commit")
def _stamp_at_commit(session: Session) -> None:
    if not session.info.get(_PENDING) and not any(isinstance(o, orm.Event) for o in session.new):
        return
    session.flush()  # every row written: on SQLite the write lock is now held until the commit
    events = [e for e in session.info.pop(_PENDING, []) if inspect(e).persistent]
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    own = [e.id for e in events]
    newest = session.scalar(select(orm.Event.created_at).where(orm.Event.id.not_in(own))
                            .order_by(orm.Event.created_at.desc(), orm.Event.id.desc()).limit(1))
    stamp = next_stamp(orm.utcnow(), newest)
    for e in events:
        e.created_at = stamp  # written by the commit's own flush, still under the lock


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, _previous: Any) -> None:
    session.info.pop(_PENDING, None)
