"""The Ray-free parts of a gallery shard: schema, snapshot files, the lock, replay, synthetic data."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from actors.gallery_config import ShardConfig, normalise
from actors.gallery_index import ShardIndex
from actors.gallery_replay import apply_changes, load_from_db, replay
from actors.gallery_snapshot import SNAPSHOT_FORMAT, read_snapshot, write_snapshot
from actors.gallery_synthetic import random_index, synthetic_block
from actors.rw_lock import ReadWriteLock
from facewatch.gallery_schema import DEFAULT_COLUMNS, decode_vector, dossier_meta, encode_vector, event_meta
from storage.db import migrate
from storage.unit_of_work import UnitOfWork

DIM = 8


def unit(count: int, seed: int) -> np.ndarray:
    return normalise(np.random.default_rng(seed).standard_normal((count, DIM), dtype=np.float32), DIM)


def test_vectors_round_trip_through_their_db_encoding() -> None:
    vector = np.arange(6, dtype=np.float64).reshape(2, 3)
    raw = encode_vector(vector)
    assert len(raw) == 24
    assert decode_vector(raw).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_metadata_helpers_fill_the_default_columns() -> None:
    from datetime import UTC, datetime

    meta = {**event_meta(3, 4, datetime(2026, 1, 1, tzinfo=UTC)), **dossier_meta(9, [5, 2, 5], 1)}
    assert set(meta) == set(DEFAULT_COLUMNS)
    assert meta["watch_list_ids"] == [2, 5, 5] and meta["active"] is True


def test_a_snapshot_is_read_back_only_by_the_same_layout(tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    identity = {"gallery": "g", "model": "m", "dim": DIM, "shard": 0, "shards": 2}
    write_snapshot(path, {"applied_seq": 7, **identity}, {"ids": np.array([b"a", b"b"])})
    header, arrays = read_snapshot(path, identity) or ({}, {})
    assert header["applied_seq"] == 7 and header["format"] == SNAPSHOT_FORMAT
    assert arrays["ids"].tolist() == [b"a", b"b"]
    assert read_snapshot(path, {**identity, "shards": 3}) is None
    assert read_snapshot(tmp_path / "missing.npz", identity) is None
    path.write_bytes(b"torn")
    assert read_snapshot(path, identity) is None
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no tmp files left behind


def test_a_writer_waits_for_readers_and_new_readers_wait_for_it() -> None:
    lock, order = ReadWriteLock(), []
    reading = threading.Event()

    def reader() -> None:
        with lock.read():
            reading.set()
            time.sleep(0.2)
            order.append("read-1")

    def writer() -> None:
        reading.wait()
        with lock.write():
            order.append("write")

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    reading.wait()
    time.sleep(0.05)  # the writer is queued now: a new reader must come after it
    with lock.read():
        order.append("read-2")
    for t in threads:
        t.join()
    assert order == ["read-1", "write", "read-2"]


def test_apply_changes_brings_items_to_their_rows() -> None:
    config = ShardConfig("g", "m", DIM)
    vectors = unit(4, 1)
    index = ShardIndex.build(config, ["a", "b", "c"], vectors[:3], [{"camera_id": 1}] * 3)
    row = SimpleNamespace
    rows = {
        "a": row(item_id="a", dim=DIM, vector=encode_vector(vectors[0]), meta={"camera_id": 2}),  # meta only
        "d": row(item_id="d", dim=DIM, vector=encode_vector(vectors[3]), meta={}),  # new
        "c": row(item_id="c", dim=DIM + 1, vector=b"", meta={}),  # another dimension: not this index's
    }
    apply_changes(index, {"a": {"meta"}, "b": {"delete"}, "c": {"upsert"}, "d": {"upsert"}}, rows)
    assert len(index) == 2
    assert [m[0] for m in index.search(vectors[3], 1)[0]] == ["d"]
    assert [m[0] for m in index.search(vectors[0], 1, filters={"camera_id": 2})[0]] == ["a"]


def test_a_shard_loads_its_rows_and_replays_the_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    migrate(url)
    vectors = unit(40, 2)
    with UnitOfWork(url) as uow:
        for i in range(30):
            uow.vectors.upsert("g", f"i{i}", "m", encode_vector(vectors[i]), DIM, {})
        uow.commit()
    configs = [ShardConfig("g", "m", DIM, shard=s, shards=2, db_url=url) for s in range(2)]
    loaded = [load_from_db(c) for c in configs]
    assert sum(len(x.index) for x in loaded) == 30 and all(x.source == "db" for x in loaded)
    with UnitOfWork(url) as uow:
        for i in range(30, 40):
            uow.vectors.upsert("g", f"i{i}", "m", encode_vector(vectors[i]), DIM, {})
        uow.vectors.remove("g", ["i0", "i1"])
        uow.commit()
    seqs = [replay(c, x.index, x.applied_seq, threading.Lock) for c, x in zip(configs, loaded, strict=True)]
    assert all(s > x.applied_seq for s, x in zip(seqs, loaded, strict=True))
    assert sum(len(x.index) for x in loaded) == 38


@pytest.mark.parametrize("threshold", [10_000, 1_000])
def test_random_index_holds_the_synthetic_blocks(threshold: int) -> None:
    config = ShardConfig("bench", "m", 16, approximate_threshold=threshold)
    index = random_index(config, 0, [0, 1, 2], 1000, 2500)
    assert len(index) == 2500 and index.kind == ("flat" if threshold > 2500 else "ivf_pq_sq8")
    ids, vectors = synthetic_block(0, 1, 1000, 2500, 16)
    assert ids[0] == "v1000" and vectors.shape == (1000, 16)
    hits = index.search(vectors[:20], 1)
    assert sum(h[0][0] == i for h, i in zip(hits, ids[:20], strict=True)) >= 18
