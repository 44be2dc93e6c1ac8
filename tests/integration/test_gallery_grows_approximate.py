"""A gallery that grows by itself (the events gallery) switches to its approximate index once a shard
passes `approximate_threshold` (issue 11, item 13): the index type used to be chosen only when a shard
was built, so a shard that started small stayed exact for ever."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from actors.gallery_shard import GalleryShard, ShardConfig
from storage.db import migrate
from storage.unit_of_work import UnitOfWork


def _add(url: str, start: int, count: int, dim: int) -> None:
    vectors = np.random.default_rng(start).standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with UnitOfWork(url) as uow:
        for n, vector in enumerate(vectors, start):
            uow.vectors.upsert("events", f"e{n}", "m", vector.tobytes(), dim)
        uow.commit()


def test_a_growing_shard_switches_to_its_approximate_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fw.db'}"
    migrate(url)
    dim = 16
    _add(url, 0, 100, dim)
    shard = GalleryShard(ShardConfig(gallery="events", model="m", dim=dim, db_url=url, approximate_threshold=2000))
    assert shard.stats()["index_type"] == "flat"
    _add(url, 100, 2100, dim)
    shard.sync()  # the events pipeline syncs after every batch of events
    deadline = time.monotonic() + 120
    while shard.stats()["index_type"] == "flat" and time.monotonic() < deadline:
        time.sleep(0.2)
    stats = shard.stats()
    assert stats["index_type"] != "flat" and stats["count"] == 2200, stats
    _add(url, 5000, 10, dim)  # still follows the log after the swap
    shard.sync()
    assert shard.stats()["count"] == 2210
