"""Episodes close by the clock, and the event pipeline holds a bounded number of them.

An episode closes after the idle timeout or the max duration (SPEC §2, §4). The event pipeline checks
both on event timestamps when a new event arrives in the camera group; this module closes the
episodes of groups that went quiet, when no event arrives at all:

- Each open episode remembers `touched`, the wall-clock moment its last event was committed (after a
  restart: the row's `updated_at`). Its source's clock is estimated as
  `last_at + (now - touched)`: event time goes on as wall time does since the last event. So a
  video file whose timestamps lie in the past is not closed at once, and a live camera (event time
  = wall time) closes exactly on the timeout.
- An episode closes when that estimate is past `last_at + idle timeout` or past `started_at + max
  duration`. `closed_at` is its last event's time, as for episodes closed by a later event.
- At most `MAX_OPEN_PER_GROUP` episodes stay open per camera group; beyond that the least recently
  touched close first. Each open episode keeps at most 64 faces, so the pipeline's memory is bounded
  by (camera groups x MAX_OPEN_PER_GROUP x 64) vectors whatever the traffic or the uptime.
- On start the pipeline closes, in SQL, every open episode already stale by this rule and loads only
  the freshest `MAX_OPEN_PER_GROUP` per group.

`EventPipeline` (the actor) runs `close_idle` every `TICK_S` seconds on a background loop. With several
event pipelines each one closes only the episodes of its own camera groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from storage import episode_queries, orm
from storage.unit_of_work import UnitOfWork

MAX_OPEN_PER_GROUP = 256
TICK_S = 5.0
Owns = Callable[[int | None], bool]  # is this camera group one of this event pipeline's? (actors/pipeline_router.py)


class ClockedEpisode(Protocol):
    id: int
    started_at: datetime
    last_at: datetime
    touched: datetime


@dataclass(frozen=True)
class Limits:
    idle: timedelta
    longest: timedelta

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Limits:
        return cls(timedelta(seconds=float(settings["episode_idle_timeout_s"])),
                   timedelta(seconds=float(settings["episode_max_duration_s"])))


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def is_stale(episode: ClockedEpisode, now: datetime, limits: Limits) -> bool:
    """Past its idle timeout or its max duration on the estimated source clock (module docstring)."""
    source_now = utc(episode.last_at) + max(now - utc(episode.touched), timedelta(0))
    return source_now - utc(episode.last_at) > limits.idle or source_now - utc(episode.started_at) > limits.longest


def to_close(open_by_group: dict[int, list[Any]], now: datetime, limits: Limits,
             cap: int = MAX_OPEN_PER_GROUP) -> dict[int, list[Any]]:
    """Per group, the open episodes to close now: the stale ones, then the least recently touched
    beyond `cap`."""
    closing: dict[int, list[Any]] = {}
    for group, episodes in open_by_group.items():
        # By identity: open episodes hold vectors, which do not compare as plain values.
        stale = [e for e in episodes if is_stale(e, now, limits)]
        stale_ids = {id(e) for e in stale}
        fresh = sorted((e for e in episodes if id(e) not in stale_ids), key=lambda e: utc(e.touched), reverse=True)
        stale += fresh[cap:]
        if stale:
            closing[group] = stale
    return closing


def close_rows(uow: UnitOfWork, episodes: Iterable[ClockedEpisode]) -> int:
    """Marks these episodes closed in the DB (closed_at = their last event's time)."""
    count = 0
    for episode in episodes:
        row = uow.episodes.find(episode.id)
        if row is not None and row.open:
            row.open, row.closed_at = False, row.last_at
            count += 1
    return count


def close_stale_at_start(uow: UnitOfWork, now: datetime, limits: Limits, owns: Owns | None = None) -> int:
    """Closes in SQL the open episodes idle by the clock (`updated_at` stands for `touched`), before any
    is loaded; the max duration is checked on the loaded ones by the next `close_idle`. With `owns`
    (several event pipelines) only the episodes of this pipeline's camera groups: another pipeline's
    are in its memory, and its own clock closes them."""
    touched_before = now - limits.idle
    if owns is not None:
        ids = [episode_id for episode_id, group in episode_queries.idle_open(uow, touched_before) if owns(group)]
        return episode_queries.close_ids(uow, ids)
    return episode_queries.close_idle_open(uow, touched_before)


def freshest_open(uow: UnitOfWork, cap: int = MAX_OPEN_PER_GROUP, owns: Owns | None = None) -> list[orm.Episode]:
    """The open episodes to load: per camera group the `cap` most recently touched; the rest are closed.
    With `owns`, only this pipeline's camera groups are looked at."""
    keep: list[orm.Episode] = []
    per_group: dict[int | None, int] = {}
    for episode in episode_queries.open_most_recent_first(uow):
        if owns is not None and not owns(episode.camera_group_id):
            continue
        seen = per_group.get(episode.camera_group_id, 0)
        per_group[episode.camera_group_id] = seen + 1
        if seen < cap:
            keep.append(episode)
        else:
            episode.open, episode.closed_at = False, episode.last_at
    return keep


__all__ = ["MAX_OPEN_PER_GROUP", "TICK_S", "Limits", "close_rows", "close_stale_at_start", "freshest_open",
           "is_stale", "to_close"]
