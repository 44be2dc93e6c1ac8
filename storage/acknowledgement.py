"""Acknowledgement (SPEC §4, as in video security suites).

- An event of a watch list with `require_ack` stays unacknowledged until someone acknowledges it.
  Every other event (the Unmatched list included, unless it requires acknowledgement) is acknowledged
  when it is created, with `acknowledged_by` = `SYSTEM_ACK` ("system"), so "unacknowledged" always
  means "an operator still has to look at this".
- An episode is acknowledged exactly when all its events are. Acknowledging the last unacknowledged
  event of an episode (one by one, by filter or through the episode) acknowledges the episode; an
  event that needs acknowledgement joining the episode makes it unacknowledged again.
- Acknowledging an episode acknowledges its events, present and future: an event joining an episode
  that a person acknowledged arrives acknowledged by that person. An episode the system acknowledged
  (all its events were automatic) passes nothing on.
- The number of unacknowledged events per watch list is `unacknowledged_events` on the watch lists
  of `GET /v1/watch-lists` (counted over the events the caller sees).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, true, update

from storage import orm
from storage.unit_of_work import UnitOfWork

SYSTEM_ACK = "system"
"""`acknowledged_by` of events acknowledged on creation (their watch list does not require acknowledgement)."""

CHUNK = 500  # ids per IN (...) list, well inside every database's bind-parameter limit


def initial_ack(require_ack: bool, episode: orm.Episode, now: datetime) -> tuple[bool, str | None, datetime | None]:
    """(acknowledged, by, at) for a new event of a list with `require_ack`, joining `episode`."""
    if episode.acknowledged and episode.acknowledged_by not in (None, SYSTEM_ACK):
        return True, episode.acknowledged_by, episode.acknowledged_at
    if not require_ack:
        return True, SYSTEM_ACK, now
    return False, None, None


def episode_after_event(episode: orm.Episode, event: orm.Event, first: bool) -> None:
    """Keeps `episode.acknowledged` == "all its events are acknowledged" as `event` joins it."""
    if first:
        episode.acknowledged = bool(event.acknowledged)
        episode.acknowledged_by = event.acknowledged_by if event.acknowledged else None
        episode.acknowledged_at = event.acknowledged_at if event.acknowledged else None
    elif not event.acknowledged:
        episode.acknowledged, episode.acknowledged_by, episode.acknowledged_at = False, None, None


def acknowledge_finished_episodes(uow: UnitOfWork, episode_ids: Iterable[int | None], by: str,
                                  at: datetime) -> int:
    """Marks acknowledged those of `episode_ids` whose events are now all acknowledged; returns how many."""
    ids = sorted({i for i in episode_ids if i is not None})
    done = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        pending = select(orm.Event.episode_id).where(orm.Event.episode_id.in_(chunk),
                                                     orm.Event.acknowledged.is_(False))
        result = uow.session.execute(
            update(orm.Episode)
            .where(orm.Episode.id.in_(chunk), orm.Episode.acknowledged.is_(False), orm.Episode.id.not_in(pending))
            .values(acknowledged=True, acknowledged_by=by, acknowledged_at=at)
            .execution_options(synchronize_session=False)
        )
        done += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return done


def unacknowledged_counts(uow: UnitOfWork, watch_list_ids: Iterable[int],
                          visible: ColumnElement[bool] | None = None) -> dict[int, int]:
    """Unacknowledged events per watch list (0 for lists without any), among events passing `visible`."""
    ids = sorted(set(watch_list_ids))
    counts = dict.fromkeys(ids, 0)
    for start in range(0, len(ids), CHUNK):
        stmt = (select(orm.Event.watch_list_id, func.count())
                .where(orm.Event.watch_list_id.in_(ids[start:start + CHUNK]), orm.Event.acknowledged.is_(False),
                       visible if visible is not None else true())
                .group_by(orm.Event.watch_list_id))
        counts.update({int(w): int(n) for w, n in uow.session.execute(stmt)})
    return counts


__all__ = ["SYSTEM_ACK", "acknowledge_finished_episodes", "episode_after_event", "initial_ack",
           "unacknowledged_counts"]
