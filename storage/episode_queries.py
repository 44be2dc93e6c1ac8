"""The episode clock's statements (actors/episode_clock.py decides which episodes close; these close and
read them) and the event pipeline's read of an episode's latest events on start. Nothing here commits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from storage import orm
from storage.repositories import in_chunks
from storage.unit_of_work import UnitOfWork

CLOSE_CHUNK = 500  # ids per bounded IN list when closing episodes by id


def idle_open(uow: UnitOfWork, touched_before: datetime) -> list[tuple[int, int | None]]:
    """(episode id, camera group id) of the open episodes last written before `touched_before`."""
    rows = uow.session.execute(select(orm.Episode.id, orm.Episode.camera_group_id).where(*_idle(touched_before)))
    return [(int(episode_id), group) for episode_id, group in rows]


def close_idle_open(uow: UnitOfWork, touched_before: datetime) -> int:
    """Closes every open episode last written before `touched_before`; returns how many."""
    return _close_where(uow, *_idle(touched_before))


def close_ids(uow: UnitOfWork, episode_ids: Sequence[int]) -> int:
    """Closes these episodes (a bounded IN list at a time); returns how many rows changed."""
    return sum(_close_where(uow, orm.Episode.id.in_(chunk)) for chunk in in_chunks(episode_ids, CLOSE_CHUNK))


def open_most_recent_first(uow: UnitOfWork) -> Iterator[orm.Episode]:
    """The open episodes, most recently written first (ties: the higher id first)."""
    stmt = (select(orm.Episode).where(orm.Episode.open.is_(True))
            .order_by(orm.Episode.updated_at.desc(), orm.Episode.id.desc()))
    return iter(uow.session.scalars(stmt))


def latest_events(uow: UnitOfWork, episode_id: int, limit: int) -> list[orm.Event]:
    """The episode's `limit` latest events by timestamp, newest first."""
    return list(uow.session.scalars(select(orm.Event).where(orm.Event.episode_id == episode_id)
                                    .order_by(orm.Event.timestamp.desc()).limit(limit)))


def _idle(touched_before: datetime) -> tuple[Any, ...]:
    return orm.Episode.open.is_(True), orm.Episode.updated_at < touched_before


def _close_where(uow: UnitOfWork, *where: Any) -> int:
    # closed_at is the episode's last event's time, as for episodes closed by a later event.
    result = uow.session.execute(
        update(orm.Episode).where(*where).values(open=False, closed_at=orm.Episode.last_at)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


__all__ = ["close_idle_open", "close_ids", "idle_open", "latest_events", "open_most_recent_first"]
