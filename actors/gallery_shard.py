"""One shard of one gallery for one model, and its Ray actor `GalleryShardActor`.

A gallery is split into N shards by a stable hash of the item id (`shard_of`); each shard runs as R
`GalleryShardActor` replicas. Scores are inner products of unit vectors, i.e. cosine similarity.
This module only wires the parts together, each Ray-free and tested on its own:
- `actors/gallery_config.py`: `ShardConfig`, `shard_of`, `normalise`;
- `actors/gallery_index.py`: `ShardIndex` (FAISS index, `gallery_ids.IdTable`, `gallery_columns.ColumnStore`);
- `actors/rw_lock.py`: searches share the index, writers take it alone;
- `actors/gallery_replay.py`: build from the DB, replay the change log;
- `actors/gallery_snapshot.py`: snapshot files; `actors/gallery_synthetic.py`: benchmark data.
Index choice, filters and their measurements: docs/gallery.md.

Durability: the DB (`FaceVector` + the `GalleryChange` log) is the source of truth. `snapshot()`
writes index, ids, columns and the applied log position to one `.npz` file (tmp file + rename);
a (re)started shard loads it, then replays the log since that position — or, without a snapshot,
builds from the DB rows that hash to it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import ray

from actors.gallery_columns import ColumnStore, ListColumn
from actors.gallery_config import (
    DEFAULT_APPROXIMATE_THRESHOLD,
    DEFAULT_NPROBE_FRACTION,
    Match,
    ShardConfig,
    normalise,
    shard_of,
)
from actors.gallery_ids import IdTable
from actors.gallery_index import ShardIndex, choose_device, faiss_gpus, nlist_for
from actors.gallery_replay import LATE_COMMIT_S, Loaded, load_from_db, replay
from actors.gallery_snapshot import SNAPSHOT_FORMAT, read_snapshot, write_snapshot
from actors.gallery_synthetic import noisy_copies, random_index, synthetic_block
from actors.rw_lock import ReadWriteLock
from actors.search_channel import SearchEndpoint, SearchServer
from facewatch import metrics
from facewatch.gallery_schema import DEFAULT_COLUMNS

log = logging.getLogger(__name__)


class GalleryShard:
    """Shard i of N of one gallery and model; `GalleryShardActor` is the Ray actor of this class."""

    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self._lock = ReadWriteLock()
        self._sync_lock = threading.Lock()  # one log replay at a time, so no change is applied twice
        self._server_lock = threading.Lock()
        self._search_server: SearchServer | None = None
        # A GPU only when FACEWATCH_GALLERY_GPU=auto and Ray granted this actor one (Galleries asks for
        # FACEWATCH_GALLERY_GPU_FRACTION then); every index this shard installs searches there.
        self.device = choose_device(config.gpu, faiss_gpus(), len(ray.get_gpu_ids()) if ray.is_initialized() else 0)
        loaded = self._load_snapshot() or load_from_db(self.config)
        self._index, self.applied_seq, self.source = self._placed(loaded.index), loaded.applied_seq, loaded.source
        self.sync()

    def _placed(self, index: ShardIndex) -> ShardIndex:
        index.place(self.device)
        return index

    # ---- reads and direct writes -------------------------------------------------------------
    def search(
        self, queries: Any, k: int, min_score: float | None = None, filters: Mapping[str, Any] | None = None
    ) -> list[list[Match]]:
        started = time.perf_counter()
        with self._lock.read():
            result = self._index.search(queries, k, min_score, filters)
        metrics.gallery_search(self.config.gallery, self.config.shard, time.perf_counter() - started)
        return result

    def search_endpoint(self) -> SearchEndpoint:
        """Where routers send searches without a Ray task per call (see `actors/search_channel.py`);
        the listening socket opens on the first request, on this node's address."""
        with self._server_lock:
            if self._search_server is None:
                self._search_server = SearchServer(ray.util.get_node_ip_address(), self.search)
            return self._search_server.endpoint

    def add(self, item_ids: Sequence[str], vectors: Any, metas: Sequence[dict[str, Any] | None] | None = None) -> int:
        with self._lock.write():
            added = self._index.add(list(item_ids), vectors, metas)
        self._report_size()
        return added

    def remove(self, item_ids: Sequence[str]) -> int:
        with self._lock.write():
            removed = self._index.remove(list(item_ids))
        self._report_size()
        return removed

    def _report_size(self) -> None:
        metrics.gallery_size(self.config.gallery, self.config.model, self.config.shard, len(self._index))

    def update_meta(self, item_ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> int:
        with self._lock.write():
            return self._index.update_meta(list(item_ids), list(metas))

    def stats(self) -> dict[str, Any]:
        with self._lock.read():
            stats = self._index.stats()
        return {
            "gallery": self.config.gallery,
            "model": self.config.model,
            "shard": self.config.shard,
            "shards": self.config.shards,
            "applied_seq": self.applied_seq,
            "source": self.source,
            "pid": os.getpid(),
            "rss_bytes": _rss_bytes(),
            **stats,
        }

    # ---- the DB as source of truth -----------------------------------------------------------
    def sync(self) -> int:
        """Replay the DB change log since the applied position; returns the new position."""
        if not self.config.db_url:
            return self.applied_seq
        with self._sync_lock:
            self.applied_seq = replay(self.config, self._index, self.applied_seq, self._lock.write)
        self._report_size()
        self._go_approximate_when_grown()
        return self.applied_seq

    def _go_approximate_when_grown(self) -> None:
        """Issue 11: the index type is chosen only when a shard is built, and a gallery that grows by
        itself (the events gallery) was never rebuilt, so it stayed exact whatever its size. Once an
        exact shard holds `approximate_threshold` items (and 10 % more than at the last attempt, so a
        build that stays exact is not retried at every sync), it is rebuilt in a background thread;
        searches use the exact index until the new one is swapped in (`rebuild`)."""
        size = len(self._index)
        if self._index.ivf is not None or size < max(self.config.approximate_threshold,
                                                      1.1 * getattr(self, "_approximate_tried_at", 0)):
            return
        if getattr(self, "_approximating", None) is not None and self._approximating.is_alive():
            return
        self._approximate_tried_at = size
        self._approximating = threading.Thread(target=self.rebuild, name="gallery-shard-ivf", daemon=True)
        self._approximating.start()

    def rebuild(self) -> dict[str, Any]:
        """Build a fresh index from the DB (choosing the index type for today's size) and swap it in."""
        fresh = load_from_db(self.config)
        with self._sync_lock:
            seq = replay(self.config, fresh.index, fresh.applied_seq, nullcontext)  # nobody searches it yet
            with self._lock.write():
                self._index, self.applied_seq, self.source = self._placed(fresh.index), seq, "db"
        self._report_size()
        return self.stats()

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> str | None:
        """Write index, ids, columns and the applied position to one file, atomically."""
        path = self.config.snapshot_path()
        if path is None:
            return None
        with self._lock.read():
            arrays = self._index.to_arrays()
            seq = self.applied_seq
        write_snapshot(path, {"applied_seq": seq, **self._identity()}, arrays)
        return str(path)

    def _identity(self) -> dict[str, Any]:
        c = self.config
        return {"gallery": c.gallery, "model": c.model, "dim": c.dim, "shard": c.shard, "shards": c.shards}

    def _load_snapshot(self) -> Loaded | None:
        path = self.config.snapshot_path()
        found = read_snapshot(path, self._identity()) if path is not None else None
        if found is None:
            return None
        header, arrays = found
        try:
            return Loaded(ShardIndex.from_arrays(self.config, arrays), int(header["applied_seq"]), "snapshot")
        except Exception:  # a torn or foreign file must not keep the shard down: the DB has everything
            log.exception("snapshot %s is unreadable; rebuilding from the DB", path)
            return None

    # ---- benchmark only ----------------------------------------------------------------------
    def add_random(self, seed: int, blocks: Sequence[int], block_size: int, total: int, **shape: Any) -> int:
        """Fill an empty shard with `synthetic_block`s generated here (benchmarks: no DB, no transfer)."""
        index = random_index(self.config, seed, blocks, block_size, total, **shape)
        with self._lock.write():
            self._index, self.source = self._placed(index), "random"
        return len(index)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


# Reads run concurrently with each other and with a log replay's DB reads (max_concurrency);
# a failed call is not retried here: the router fails over to another replica instead.
GalleryShardActor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=8)(GalleryShard)

# Re-exported: other modules and tests import these names from here.
__all__ = [
    "DEFAULT_APPROXIMATE_THRESHOLD",
    "DEFAULT_COLUMNS",
    "DEFAULT_NPROBE_FRACTION",
    "LATE_COMMIT_S",
    "SNAPSHOT_FORMAT",
    "ColumnStore",
    "IdTable",
    "ListColumn",
    "Match",
    "nlist_for",
    "noisy_copies",
    "normalise",
    "GalleryShard",
    "GalleryShardActor",
    "ShardConfig",
    "ShardIndex",
    "shard_of",
    "synthetic_block",
]
