"""The DB side of a shard: build its index from the `FaceVector` rows, replay the `GalleryChange` log.

The DB is the source of truth; a shard holds what the log says up to its applied position. Pure
functions over a `UnitOfWork` (no Ray), called by `actors/gallery_shard.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from actors.gallery_config import ShardConfig, shard_of
from actors.gallery_index import ShardIndex
from facewatch.gallery_schema import decode_vector
from storage.unit_of_work import UnitOfWork

LATE_COMMIT_S = 10.0  # how far back each sync re-reads the change log (see replay)

Guard = Callable[[], AbstractContextManager[Any]]


@dataclass
class Loaded:
    index: ShardIndex
    applied_seq: int
    source: str  # snapshot | db | empty | random


def load_from_db(config: ShardConfig) -> Loaded:
    """A fresh index of the shard's rows (the index type chosen for their count) and the log position."""
    if not config.db_url:
        return Loaded(ShardIndex.empty(config), 0, "empty")
    item_ids: list[str] = []
    vectors: list[np.ndarray] = []
    metas: list[dict[str, Any]] = []
    with UnitOfWork(config.db_url) as uow:
        seq = uow.vectors.last_seq(config.gallery)  # read first: later changes get replayed
        for rows in uow.vectors.iter_gallery(config.gallery, config.model):
            for row in rows:
                if shard_of(row.item_id, config.shards) == config.shard and row.dim == config.dim:
                    item_ids.append(row.item_id)
                    vectors.append(decode_vector(row.vector))
                    metas.append(row.meta)
    matrix = np.vstack(vectors) if vectors else np.zeros((0, config.dim), dtype=np.float32)
    return Loaded(ShardIndex.build(config, item_ids, matrix, metas), seq, "db")


def replay(config: ShardConfig, index: ShardIndex, seq: int, guard: Guard) -> int:
    """Apply the log after `seq` to `index` (each write under `guard()`); returns the new position."""
    # First the log rows of the last LATE_COMMIT_S at or before `seq`: on PostgreSQL a row can commit
    # after a higher sequence number did, and a shard that passed it would skip it for good.
    # Replaying a change twice is harmless: the item is brought to its current DB row.
    since = datetime.now(UTC) - timedelta(seconds=LATE_COMMIT_S)
    apply_page(config, index, guard, lambda uow: uow.vectors.recent_changes(config.gallery, seq, since))
    while True:
        changes = apply_page(
            config, index, guard, lambda uow, after=seq: uow.vectors.changes_since(config.gallery, after))
        if not changes:
            return seq
        seq = changes[-1].seq


def apply_page(config: ShardConfig, index: ShardIndex, guard: Guard,
               read: Callable[[UnitOfWork], list[Any]]) -> list[Any]:
    """Apply one page of log rows (those of this shard) to `index`; returns the page."""
    with UnitOfWork(config.db_url) as uow:
        changes = read(uow)
        ops: dict[str, set[str]] = {}
        for change in changes:
            if shard_of(change.item_id, config.shards) == config.shard:
                ops.setdefault(change.item_id, set()).add(change.op)
        rows = {r.item_id: r for r in uow.vectors.by_items(config.gallery, config.model, list(ops))}
    if ops:
        with guard():
            apply_changes(index, ops, rows)
    return changes


def apply_changes(index: ShardIndex, ops: Mapping[str, set[str]], rows: Mapping[str, Any]) -> None:
    """Bring the touched items to their current DB state: the log says which, the rows say what."""
    current = {item: row for item, row in rows.items() if row.dim == index.config.dim}
    index.remove([item for item in ops if item not in current])
    present = dict(zip(current, (index.ids.find(list(current)) >= 0).tolist(), strict=True))
    meta_only = {item for item in current if ops[item] == {"meta"} and present[item]}
    index.update_meta(list(meta_only), [current[item].meta for item in meta_only])
    changed = [row for item, row in current.items() if item not in meta_only]
    if changed:
        matrix = np.vstack([decode_vector(r.vector) for r in changed])
        index.add([r.item_id for r in changed], matrix, [r.meta for r in changed])

