"""The clock that closes episodes of quiet camera groups (actors/episode_clock.py), without Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from actors.episode_clock import Limits, is_stale, to_close

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
LIMITS = Limits(idle=timedelta(seconds=30), longest=timedelta(seconds=300))


@dataclass
class Ep:
    id: int
    started_at: datetime
    last_at: datetime
    touched: datetime
    faces: list[np.ndarray] = field(default_factory=lambda: [np.ones(4, np.float32)])  # like OpenEpisode


def live(id_: int, started_ago_s: float, last_ago_s: float) -> Ep:
    """A live camera's episode: event time is wall time."""
    return Ep(id_, NOW - timedelta(seconds=started_ago_s), NOW - timedelta(seconds=last_ago_s),
              NOW - timedelta(seconds=last_ago_s))


def test_live_episode_closes_on_the_idle_timeout_and_the_max_duration() -> None:
    assert not is_stale(live(1, 10, 29), NOW, LIMITS)
    assert is_stale(live(1, 40, 31), NOW, LIMITS)
    assert not is_stale(live(1, 299, 1), NOW, LIMITS)
    assert is_stale(live(1, 301, 1), NOW, LIMITS)


def test_video_timestamps_in_the_past_do_not_close_an_active_episode() -> None:
    # a video file from last year: its events' timestamps are old, but its last event came 5 s ago
    long_ago = NOW - timedelta(days=365)
    video = Ep(1, long_ago, long_ago + timedelta(seconds=20), NOW - timedelta(seconds=5))
    assert not is_stale(video, NOW, LIMITS)
    assert is_stale(video, NOW + timedelta(seconds=26), LIMITS)  # 31 s quiet
    # 250 s of video so far: the source clock reaches the max duration 51 s after its last event
    longer = Ep(2, long_ago, long_ago + timedelta(seconds=250), NOW)
    assert not is_stale(longer, NOW + timedelta(seconds=29), Limits(timedelta(seconds=60), LIMITS.longest))
    assert is_stale(longer, NOW + timedelta(seconds=51), Limits(timedelta(seconds=60), LIMITS.longest))


def test_to_close_takes_the_stale_and_the_least_recently_touched_beyond_the_cap() -> None:
    groups = {1: [live(i, 20, 20 - i) for i in range(6)] + [live(99, 100, 40)], 2: [live(7, 5, 5)]}
    closing = to_close(groups, NOW, LIMITS, cap=3)
    assert sorted(e.id for e in closing[1]) == [0, 1, 2, 99]  # 99 is idle; 0-2 touched longest ago
    assert 2 not in closing
    assert to_close({1: [live(1, 1, 1)]}, NOW, LIMITS) == {}
