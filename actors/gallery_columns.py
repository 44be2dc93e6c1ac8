"""Filter columns of one shard: per-slot values copied from item metadata, and the filter masks.

Scalar columns hold numbers or booleans (stored as float64, missing = NaN, which matches nothing);
list columns hold lists of ints. A filter is a dict, all conditions AND-ed:

    {"camera_id": 3,                          # scalar: equality
     "camera_group_id": [1, 2],               # scalar: in-list (an empty list matches nothing)
     "timestamp": {"gte": t0, "lt": t1},      # scalar: numeric range (gt, gte, lt, lte)
     "watch_list_ids": [4, 7],                # list column: any-of
     "active": True}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facewatch.errors import BadParam

RANGE_OPS = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}


class ListColumn:
    """A list-of-ints column as an inverted index (value -> slots), for any-of filters."""

    def __init__(self) -> None:
        self.by_value: dict[int, set[int]] = {}
        self.by_slot: dict[int, tuple[int, ...]] = {}

    def set(self, slot: int, values: Any) -> None:
        self.clear(slot)
        clean = tuple(sorted({int(v) for v in values})) if isinstance(values, list | tuple) else ()
        if clean:
            self.by_slot[slot] = clean
            for value in clean:
                self.by_value.setdefault(value, set()).add(slot)

    def clear(self, slot: int) -> None:
        for value in self.by_slot.pop(slot, ()):
            members = self.by_value[value]
            members.discard(slot)
            if not members:
                del self.by_value[value]

    def any_of(self, values: Sequence[int], size: int) -> np.ndarray:
        mask = np.zeros(size, dtype=bool)
        for value in values:
            members = self.by_value.get(int(value))
            if members:
                mask[np.fromiter(members, dtype=np.int64, count=len(members))] = True
        return mask

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(slot, value) for slot, values in self.by_slot.items() for value in values]
        array = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return array[:, 0], array[:, 1]

    @classmethod
    def from_arrays(cls, slots: np.ndarray, values: np.ndarray) -> ListColumn:
        column = cls()
        grouped: dict[int, list[int]] = {}
        for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
            grouped.setdefault(slot, []).append(value)
        for slot, items in grouped.items():
            column.set(slot, items)
        return column


class ColumnStore:
    """Filter columns by slot: scalars as float64 arrays, lists as inverted indexes.

    A scalar column gets its array when the first value arrives, so a gallery whose items carry no
    such value (benchmarks, user galleries) pays nothing for it.
    """

    def __init__(self, kinds: Mapping[str, str]) -> None:
        unknown = {k for k in kinds.values() if k not in ("scalar", "list")}
        if unknown:
            raise ValueError(f"column kinds must be 'scalar' or 'list', got {sorted(unknown)}")
        self.kinds = dict(kinds)
        self.scalars: dict[str, np.ndarray] = {}
        self.lists = {n: ListColumn() for n, k in kinds.items() if k == "list"}
        self._length = 0  # allocated length of every scalar array
        # Per scalar column: how many slots hold a value, and the one value they all hold (None once two
        # differ; it stays None). `passes_all` answers "does every item pass?" from these without a scan:
        # the persons gallery filters every search on `scope`, which is 0 for every item of a default
        # installation, and building that all-true mask cost ~0.3 ms a search at 500k items a shard.
        self._held: dict[str, int] = {}
        self._uniform: dict[str, float | None] = {}

    def grow(self, size: int) -> None:
        """Room for slots below `size` (grown by half at a time, so many small adds stay cheap)."""
        if size > self._length:
            extra = max(size - self._length, self._length // 2, 1024)
            for name, array in self.scalars.items():
                self.scalars[name] = np.concatenate([array, np.full(extra, np.nan)])
            self._length += extra

    def set(self, slots: np.ndarray, metas: Sequence[Mapping[str, Any] | None]) -> None:
        metas = [meta or {} for meta in metas]
        for name, kind in self.kinds.items():
            if kind == "list":
                for slot, meta in zip(slots.tolist(), metas, strict=True):
                    self.lists[name].set(slot, meta.get(name))
                continue
            values = np.array([_scalar_value(meta.get(name)) for meta in metas])
            if name not in self.scalars and np.isnan(values).all():
                continue
            array = self.scalars.setdefault(name, np.full(self._length, np.nan))
            self._assign(name, array, slots, values)

    def _assign(self, name: str, array: np.ndarray, slots: np.ndarray, values: np.ndarray) -> None:
        unique = np.unique(slots)
        before = int(np.count_nonzero(~np.isnan(array[unique])))
        others = self._held.get(name, 0) - before  # held slots left as they are: all hold `_uniform`, if set
        array[slots] = values
        after = array[unique]
        present = np.unique(after[~np.isnan(after)])
        self._held[name] = others + len(after) - int(np.count_nonzero(np.isnan(after)))
        if others == 0:
            self._uniform[name] = float(present[0]) if len(present) == 1 else None
        elif len(present) > 1 or (len(present) == 1 and present[0] != self._uniform.get(name)):
            self._uniform[name] = None

    def passes_all(self, filters: Mapping[str, Any], live: int) -> bool:
        """True when every one of the `live` items passes `filters` for sure: each condition is an
        equality on a scalar column whose values are all that value and held by every live item (slots
        of removed items hold none). False means "build the mask" (including for bad filters, which
        `mask` then rejects)."""
        for name, condition in filters.items():
            if self.kinds.get(name) != "scalar" or isinstance(condition, Mapping | list | tuple):
                return False
            number = _scalar_value(condition)
            if math.isnan(number) or self._held.get(name, 0) != live or self._uniform.get(name) != number:
                return False
        return bool(filters)

    def clear(self, slots: np.ndarray) -> None:
        for name, array in self.scalars.items():
            unique = np.unique(slots)
            self._held[name] = self._held.get(name, 0) - int(np.count_nonzero(~np.isnan(array[unique])))
            array[slots] = np.nan
        for column in self.lists.values():
            for slot in slots.tolist():
                column.clear(slot)

    def mask(self, filters: Mapping[str, Any], size: int) -> np.ndarray:
        """Slots below `size` that pass every filter (AND); BAD_PARAM for unknown columns or bad values."""
        mask = np.ones(size, dtype=bool)
        for name, condition in filters.items():
            kind = self.kinds.get(name)
            if kind == "scalar":
                values = self.scalars[name][:size] if name in self.scalars else np.full(size, np.nan)
                mask &= _scalar_mask(values, name, condition)
            elif kind == "list":
                values = condition if isinstance(condition, list | tuple) else [condition]
                mask &= self.lists[name].any_of(_ints(values, name), size)
            else:
                raise BadParam(f"unknown filter {name!r}; known: {sorted(self.kinds)}", param=f"filters.{name}")
        return mask

    def nbytes(self) -> int:
        # Python sets cost about 60 B per member; an estimate is enough for stats.
        members = sum(len(c.by_slot) for c in self.lists.values())
        return sum(a.nbytes for a in self.scalars.values()) + 60 * members

    def to_arrays(self, size: int) -> dict[str, np.ndarray]:
        arrays = {f"scalar:{n}": a[:size].copy() for n, a in self.scalars.items()}
        for name, column in self.lists.items():
            arrays[f"list_slots:{name}"], arrays[f"list_values:{name}"] = column.to_arrays()
        return arrays

    @classmethod
    def from_arrays(cls, kinds: Mapping[str, str], arrays: Mapping[str, np.ndarray], size: int) -> ColumnStore:
        store = cls(kinds)
        store.grow(size)
        for name, kind in kinds.items():
            if kind == "scalar" and f"scalar:{name}" in arrays:
                store.scalars[name] = np.full(store._length, np.nan)
                store.scalars[name][:size] = arrays[f"scalar:{name}"]
                held = store.scalars[name][~np.isnan(store.scalars[name])]
                distinct = np.unique(held)
                store._held[name] = len(held)
                store._uniform[name] = float(distinct[0]) if len(distinct) == 1 else None
            elif kind == "list" and f"list_slots:{name}" in arrays:
                store.lists[name] = ListColumn.from_arrays(arrays[f"list_slots:{name}"], arrays[f"list_values:{name}"])
        return store


def _scalar_value(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    return math.nan


def _scalar_mask(array: np.ndarray, name: str, condition: Any) -> np.ndarray:
    if isinstance(condition, Mapping):
        bad = set(condition) - set(RANGE_OPS)
        if bad or not condition:
            raise BadParam(f"range filter on {name!r} takes gt, gte, lt, lte", param=f"filters.{name}")
        mask = np.ones(len(array), dtype=bool)
        for op, bound in condition.items():
            mask &= RANGE_OPS[op](array, _number(bound, name))
        return mask
    if isinstance(condition, list | tuple):
        return np.isin(array, [_number(v, name) for v in condition])
    return array == _number(condition, name)


def _number(value: Any, name: str) -> float:
    number = _scalar_value(value)
    if math.isnan(number):
        raise BadParam(f"filter {name!r} needs numbers or booleans, got {value!r}", param=f"filters.{name}")
    return number


def _ints(values: Sequence[Any], name: str) -> list[int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise BadParam(f"filter {name!r} needs integers", param=f"filters.{name}")
    return [int(v) for v in values]
