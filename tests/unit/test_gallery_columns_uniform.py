"""`ColumnStore.passes_all`: "every item passes this filter" known without building the mask (the
persons gallery filters every search on `scope`, the same value for every item of a default
installation), and never claimed when an item would fail."""

from __future__ import annotations

import numpy as np
import pytest

from actors.gallery_columns import ColumnStore
from actors.gallery_config import ShardConfig
from actors.gallery_index import ShardIndex

KINDS = {"scope": "scalar", "camera_id": "scalar", "watch_list_ids": "list"}


def _store(values: list[float | None]) -> ColumnStore:
    store = ColumnStore(KINDS)
    store.grow(len(values))
    store.set(np.arange(len(values)), [{} if v is None else {"scope": v} for v in values])
    return store


def test_one_value_held_by_every_item_passes_all() -> None:
    store = _store([0, 0, 0, 0])
    assert store.passes_all({"scope": 0}, live=4)
    assert not store.passes_all({"scope": 1}, live=4)
    assert not store.passes_all({"scope": 0}, live=5)  # a fifth item holds no scope: it fails the filter
    assert not store.passes_all({}, live=4)


def test_an_item_without_the_value_or_with_another_one_is_never_passed() -> None:
    assert not _store([0, 0, None]).passes_all({"scope": 0}, live=3)
    store = _store([0, 0, 0])
    store.set(np.array([1]), [{"scope": 7}])
    assert not store.passes_all({"scope": 0}, live=3)
    assert not store.passes_all({"scope": 7}, live=3)


def test_removed_items_do_not_count_and_a_column_emptied_starts_afresh() -> None:
    store = _store([0, 0, 0])
    store.clear(np.array([2]))
    assert store.passes_all({"scope": 0}, live=2)
    store.clear(np.array([0, 1]))
    store.set(np.array([0]), [{"scope": 4}])
    assert store.passes_all({"scope": 4}, live=1)


def test_other_conditions_and_bad_filters_fall_back_to_the_mask() -> None:
    store = _store([0, 0])
    for filters in ({"scope": [0]}, {"scope": {"gte": 0}}, {"watch_list_ids": [1]}, {"nope": 0}, {"scope": "x"}):
        assert not store.passes_all(filters, live=2)


def test_it_survives_a_snapshot() -> None:
    store = _store([0, 0, 0])
    again = ColumnStore.from_arrays(KINDS, store.to_arrays(3), 3)
    assert again.passes_all({"scope": 0}, live=3)
    assert not ColumnStore.from_arrays(KINDS, _store([0, 1]).to_arrays(2), 2).passes_all({"scope": 0}, live=2)


def test_random_writes_never_make_it_claim_a_failing_item() -> None:
    rng = np.random.default_rng(3)
    store, alive = ColumnStore(KINDS), np.zeros(40, dtype=bool)
    store.grow(40)
    claimed = 0
    for _ in range(3000):
        slots = np.unique(rng.integers(0, 40, rng.integers(1, 4)))
        if rng.random() < 0.3:
            store.clear(slots[alive[slots]])
            alive[slots] = False
        else:
            choice = rng.random()
            value = None if choice < 0.02 else (1 if choice < 0.06 else 0)
            store.set(slots, [{} if value is None else {"scope": value}] * len(slots))
            alive[slots] = True
        truth = bool(alive.any()) and bool(store.mask({"scope": 0}, 40)[alive].all())
        said = store.passes_all({"scope": 0}, int(alive.sum()))
        assert not said or truth
        claimed += said
    assert claimed > 0  # the shortcut is taken, not only refused


def test_a_shard_searches_without_building_the_all_true_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ShardConfig("persons", "m", 8, columns={"scope": "scalar"})
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    shard = ShardIndex.build(config, [str(i) for i in range(50)], vectors, [{"scope": 0}] * 50)
    unfiltered = shard.search(vectors[:3], 5)

    def no_mask(*_args: object) -> np.ndarray:
        raise AssertionError("an all-pass filter built its mask")

    monkeypatch.setattr(shard.columns, "mask", no_mask)
    assert shard.search(vectors[:3], 5, filters={"scope": 0}) == unfiltered
    monkeypatch.undo()
    shard.add(["odd"], vectors[:1], [{"scope": 2}])
    assert all("odd" not in [item for item, _ in hits] for hits in shard.search(vectors[:1], 5, filters={"scope": 0}))
