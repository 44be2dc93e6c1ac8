"""One shard of one gallery for one model: a FAISS index over L2-normalised float32 vectors.

A gallery is split into N shards by a stable hash of the item id (`shard_of`); each shard runs as R
`GalleryShardActor` replicas. Scores are inner products of unit vectors, i.e. cosine similarity.

Index choice (the switch happens when a shard is (re)built, never in place):
- below `approximate_threshold` items per shard (default 200k): exact `IDMap2,Flat` (inner product);
- above it: `IVF{nlist},PQ{dim/4}x4fs` plus `RefineCodes` — an inverted file whose lists hold 4-bit
  product-quantisation codes scanned with SIMD lookup tables ("fast scan", 16 B per 128-d vector),
  which only picks max(4·k, 32) candidates; these are then ordered by the items' 8-bit scalar-
  quantised codes (128 B per 128-d vector, kept by slot). nlist is the power of two nearest
  8·sqrt(n) (at most 8192), nprobe = nlist · `nprobe_fraction` (default 1/12 of the lists scanned).

Why IVF, measured on this project's 2-core machine (random 128-d unit vectors with 10 %
near-duplicates, queries = noisy copies at cosine 0.8, one FAISS thread, recall@1 vs exact):
- 250k vectors: IVF1024-SQ8 nprobe 64/96/128 → recall 0.962/0.976/0.988 at 0.31/0.49/0.56 ms, built
  in 2 s; HNSW32-Flat efSearch 128/256 → 0.992/0.998 at 0.77/1.4 ms but built in 191 s; HNSW32-SQ8
  efSearch 128 → only 0.967 at 0.45 ms, built in 52 s.
- 10^6 vectors in one index: IVF4096-SQ8 nprobe 245 (6 %) → recall 0.990 at 1.8 ms; nprobe 491 →
  0.996 at 3.5 ms.
- 500k vectors (one shard of 10^6 on 2 shards), scanning 3 / 6.25 / 9 % of the lists: IVF2048 →
  recall 0.926 / 0.982 / 0.996 at 0.45 / 0.91 / 1.15 ms; IVF4096 → 0.958 / 0.994 / 1.000 at
  0.49 / 0.88 / 1.27 ms; IVF8192 → 0.992 / 0.996 / 0.998 at 0.70 / 1.17 / 1.54 ms but trains 3×
  longer (61 s vs 20 s). More lists need a smaller share scanned; 8·sqrt(n) lists and 1/12 of them
  probed keep recall@1 ≥ 0.99.
- memory: SQ8 codes are 128 B + an 8 B id per 128-d vector (≈136 B), so 10^7 vectors take ≈1.4 GB;
  HNSW32 adds a 256 B graph per vector to the codes (≈768 B with Flat storage, 7.7 GB at 10^7),
  which cannot meet 4 GiB.
- HNSW cannot remove vectors (FAISS raises), and galleries are mutable (event retention, dossier
  edits); IVF removes in place. HNSW is also known to lose recall under selective filters (the
  graph walk still passes through the excluded nodes), while IVF can simply probe more lists.
Why the 4-bit fast scan in front of the SQ8 codes (same 500k shard, IVF4096, 341 lists probed, on a
machine where the IVF-SQ8 search took 1.65 ms): recall@1 0.993 at 0.62 ms with 4·k candidates,
also 0.993 with 16·k (0.74 ms) — the list choice bounds recall, not the 4-bit codes; 32·x4 and
64·x4 sub-quantisers gave the same recall, 64 was slower. It costs 16 B a vector more than
IVF-SQ8 (152 B + ids at 128-d). FAISS's own `IndexRefine` cannot remove vectors, hence the
re-ranking codes kept here by slot.
See `cluster/bench_gallery.py` for the end-to-end numbers through the router.

Filter columns: per-item values copied from `meta` for the columns in `ShardConfig.columns`
(events: camera_id, camera_group_id, timestamp; dossier faces: dossier_id, watch_list_ids, active).
Scalar columns hold numbers or booleans (stored as float64, missing = NaN, which matches nothing);
list columns hold lists of ints. A filter is a dict, all conditions AND-ed:

    {"camera_id": 3,                          # scalar: equality
     "camera_group_id": [1, 2],               # scalar: in-list (an empty list matches nothing)
     "timestamp": {"gte": t0, "lt": t1},      # scalar: numeric range (gt, gte, lt, lte)
     "watch_list_ids": [4, 7],                # list column: any-of
     "active": True}

Filtering happens inside the FAISS search through an `IDSelectorBitmap` over the shard's dense
slot numbers (the FAISS labels): excluded rows are skipped while scanning, so the best matching rows
are found however many better non-matching rows there are, with no over-fetching. On IVF a filter
that keeps a share s of the rows probes nprobe / s lists (at most all), so a selective filter still
scans about as many matching candidates as an unfiltered search and keeps its recall.

Durability: the DB (`FaceVector` + the `GalleryChange` log) is the source of truth. `snapshot()`
writes index, ids, columns and the applied log position to one `.npz` file (tmp file + rename);
a (re)started shard loads it, then replays the log since that position — or, without a snapshot,
builds from the DB rows that hash to it.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import ray

from actors.search_channel import SearchEndpoint, SearchServer
from facewatch import metrics
from facewatch.errors import BadParam
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 2  # 2: approximate shards are IVF-PQ4 fast scan + SQ8 re-ranking codes (1: IVF-SQ8)
LATE_COMMIT_S = 10.0  # how far back each sync re-reads the change log (see _replay)
DEFAULT_APPROXIMATE_THRESHOLD = 200_000
DEFAULT_NPROBE_FRACTION = 1 / 12  # share of IVF lists a search scans; see the measurements above
DEFAULT_COLUMNS: dict[str, str] = {
    "camera_id": "scalar",
    "camera_group_id": "scalar",
    "timestamp": "scalar",
    "dossier_id": "scalar",
    "watch_list_ids": "list",
    "active": "scalar",
}
# More lists scan fewer codes for the same recall, but k-means training grows with nlist²: 8192
# lists train in about a minute per shard on one core; shards much bigger than 10^6 should be split.
MAX_NLIST = 8192
TRAIN_POINTS_PER_LIST = 40
# The fast scan's 4-bit codes only have to bring the true neighbours into a short candidate list;
# the SQ8 codes then order it. 4·k candidates kept recall@1 where 16·k did (see the docstring).
REFINE_FACTOR = 4
REFINE_MIN_CANDIDATES = 32
RANGE_OPS = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
# IndexIDMap2 keeps an unordered_map label -> position next to its id array; about 40 B a node.
IDMAP2_REV_MAP_BYTES = 40

Match = tuple[str, float]


def shard_of(item_id: str, shards: int) -> int:
    """The shard of an item: a stable hash (blake2b), the same in every process and Python run."""
    digest = hashlib.blake2b(str(item_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass(frozen=True)
class ShardConfig:
    gallery: str
    model: str
    dim: int
    shard: int = 0
    shards: int = 1
    db_url: str | None = None
    snapshot_dir: str | None = None
    columns: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD
    nprobe_fraction: float = DEFAULT_NPROBE_FRACTION
    threads: int = 1

    def snapshot_path(self) -> Path | None:
        if not self.snapshot_dir:
            return None
        name = f"{_safe_name(self.gallery)}.{_safe_name(self.model)}.shard-{self.shard}-of-{self.shards}.npz"
        return Path(self.snapshot_dir) / name


def _safe_name(name: str) -> str:
    # Gallery names come from users: keep them out of path syntax, and a hash keeps them distinct.
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40]
    return f"{slug}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


def normalise(vectors: Any, dim: int) -> np.ndarray:
    """(n, dim) float32 rows scaled to unit length (zero rows stay zero)."""
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise BadParam(f"vectors must have shape (n, {dim}), got {array.shape}", param="vectors")
    if not np.isfinite(array).all():
        raise BadParam("vectors contain NaN or infinite values", param="vectors")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


class IdTable:
    """Item ids <-> dense slots (the FAISS labels), compact enough for millions of items.

    Ids live in one fixed-width bytes array indexed by slot (no Python object per item). Freed slots
    are reused so labels stay dense for the filter bitmaps. Lookups binary-search a sorted copy of
    the ids, plus a dict of ids added since that copy was made; the copy is remade when the dict
    outgrows half of it, which keeps adds amortised O(log n).
    """

    def __init__(self, ids: np.ndarray | None = None, alive: np.ndarray | None = None) -> None:
        self.ids = ids if ids is not None else np.zeros(0, dtype="S1")
        self.alive = alive if alive is not None else np.zeros(len(self.ids), dtype=bool)
        self.size = len(self.ids)  # slots ever handed out; the arrays may be longer
        self._free = np.flatnonzero(~self.alive)[::-1].tolist()
        self._recent: dict[str, int] = {}
        self.reindex()

    def __len__(self) -> int:
        return self.size - len(self._free)

    def find(self, item_ids: Sequence[str]) -> np.ndarray:
        """The slot of each live item, -1 for unknown ones (vectorised: bulk adds look up millions)."""
        keys = np.array([i.encode() for i in item_ids], dtype=bytes)
        slots = self._find_sorted(keys)
        for row, item_id in enumerate(item_ids):
            recent = self._recent.get(item_id)
            if recent is not None:
                slots[row] = recent
        known = np.flatnonzero(slots >= 0)
        stale = ~self.alive[slots[known]] | (self.ids[slots[known]] != keys[known])  # released or reused
        slots[known[stale]] = -1
        return slots

    def _find_sorted(self, keys: np.ndarray) -> np.ndarray:
        slots = np.full(len(keys), -1, dtype=np.int64)
        sorted_ids = self._sorted_ids
        # Longer keys cannot be in the copy, and casting them to its width would truncate them.
        fits = np.flatnonzero(np.char.str_len(keys) <= sorted_ids.dtype.itemsize) if len(keys) else []
        if len(sorted_ids) and len(fits):
            wanted = keys[fits].astype(sorted_ids.dtype)
            pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
            hit = sorted_ids[pos] == wanted
            slots[fits[hit]] = self._sorted_slots[pos[hit]]
        return slots

    def add(self, item_ids: Sequence[str]) -> np.ndarray:
        """New slots for ids that are not in the table yet (the caller checks)."""
        encoded = [i.encode() for i in item_ids]
        self._widen(max((len(e) for e in encoded), default=0))
        slots = self._take_slots(len(encoded))
        self.ids[slots] = encoded
        self.alive[slots] = True
        self._recent.update(zip(item_ids, slots.tolist(), strict=True))
        if len(self._recent) > max(4096, len(self._sorted_ids) // 2):
            self.reindex()
        return slots

    def release(self, slots: np.ndarray) -> None:
        for slot in slots.tolist():
            self._recent.pop(self.ids[slot].decode(), None)
        self.alive[slots] = False
        self.ids[slots] = b""
        self._free.extend(slots.tolist())

    def item_ids(self, slots: np.ndarray) -> list[str]:
        return [i.decode() for i in self.ids[slots]]

    def reindex(self) -> None:
        live = np.flatnonzero(self.alive[: self.size])
        order = np.argsort(self.ids[live], kind="stable")
        self._sorted_slots = live[order]
        self._sorted_ids = self.ids[self._sorted_slots]
        self._recent.clear()

    def nbytes(self) -> int:
        return self.ids.nbytes + self.alive.nbytes + self._sorted_ids.nbytes + self._sorted_slots.nbytes

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Copies, so a snapshot being written is not changed under it by the next sync."""
        return {"ids": self.ids[: self.size].copy(), "alive": self.alive[: self.size].copy()}

    def _widen(self, width: int) -> None:
        if width > self.ids.dtype.itemsize:
            self.ids = self.ids.astype(f"S{width}")

    def _take_slots(self, count: int) -> np.ndarray:
        reused = [self._free.pop() for _ in range(min(count, len(self._free)))]
        start, fresh = self.size, count - len(reused)
        if start + fresh > len(self.ids):
            grow = max(start + fresh - len(self.ids), len(self.ids) // 2, 1024)
            self.ids = np.concatenate([self.ids, np.zeros(grow, dtype=self.ids.dtype)])
            self.alive = np.concatenate([self.alive, np.zeros(grow, dtype=bool)])
        self.size += fresh
        return np.array(reused + list(range(start, start + fresh)), dtype=np.int64)


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
            array[slots] = values

    def clear(self, slots: np.ndarray) -> None:
        for array in self.scalars.values():
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


def nlist_for(count: int) -> int:
    """IVF list count: the power of two nearest 8·sqrt(n), within [16, MAX_NLIST]."""
    exponent = round(math.log2(max(8 * math.sqrt(max(count, 1)), 1)))
    return int(min(max(2**exponent, 16), MAX_NLIST))


def pq_subquantizers(dim: int) -> int:
    """Sub-vectors of the 4-bit PQ: 4 dimensions each where `dim` allows (32 for 128-d, 16 B a code)."""
    return max(m for m in range(1, max(dim // 4, 1) + 1) if dim % m == 0)


class RefineCodes:
    """Every slot's vector as 8-bit scalar-quantised codes, to re-rank the candidates that the coarse
    4-bit PQ fast scan returns: the scan finds the neighbourhood quickly, these codes order it as
    precisely as an SQ8 index would."""

    def __init__(self, quantizer: faiss.ScalarQuantizer, codes: np.ndarray) -> None:
        self.quantizer = quantizer
        self.codes = codes

    @classmethod
    def trained(cls, dim: int, sample: np.ndarray) -> RefineCodes:
        quantizer = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit)
        quantizer.train(sample)
        return cls(quantizer, np.zeros((0, quantizer.code_size), dtype=np.uint8))

    def set(self, slots: np.ndarray, vectors: np.ndarray) -> None:
        needed = int(slots.max()) + 1 if len(slots) else 0
        if needed > len(self.codes):
            extra = max(needed - len(self.codes), len(self.codes) // 2, 1024)
            self.codes = np.concatenate([self.codes, np.zeros((extra, self.codes.shape[1]), dtype=np.uint8)])
        self.codes[slots] = self.quantizer.compute_codes(vectors)

    def rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the best k of its candidate slots (-1 = none) by inner product with the decoded
        codes: (scores, labels) shaped like a FAISS search result."""
        rows, wide = candidates.shape
        decoded = self.quantizer.decode(self.codes[np.maximum(candidates, 0).ravel()]).reshape(rows, wide, -1)
        scores = np.einsum("qwd,qd->qw", decoded, queries)
        scores[candidates < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        labels = np.take_along_axis(candidates, order, axis=1)
        return np.take_along_axis(scores, order, axis=1), labels

    def trim(self, size: int) -> None:
        self.codes = self.codes[:size].copy()

    def to_arrays(self, size: int) -> dict[str, np.ndarray]:
        return {"refine_codes": self.codes[:size], "refine_trained": faiss.vector_to_array(self.quantizer.trained)}

    @classmethod
    def from_arrays(cls, dim: int, arrays: Mapping[str, np.ndarray]) -> RefineCodes:
        quantizer = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit)
        faiss.copy_array_to_vector(np.ascontiguousarray(arrays["refine_trained"], dtype=np.float32), quantizer.trained)
        return cls(quantizer, np.array(arrays["refine_codes"], dtype=np.uint8))


class ShardIndex:
    """The in-memory part of a shard: FAISS index + id table + filter columns (+ the re-ranking
    codes of an approximate index). Not thread-safe."""

    def __init__(
        self, config: ShardConfig, index: faiss.Index, ids: IdTable, columns: ColumnStore,
        refine: RefineCodes | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.ids = ids
        self.columns = columns
        self.refine = refine
        self.ivf = faiss.try_extract_index_ivf(index)
        self.nprobe = max(1, round(self.ivf.nlist * config.nprobe_fraction)) if self.ivf else 0

    @classmethod
    def empty(cls, config: ShardConfig, sample: np.ndarray | None = None, expected: int = 0) -> ShardIndex:
        """A new index sized for `expected` items; an IVF one is trained on `sample` (unit rows)."""
        nlist = nlist_for(expected)
        if expected < config.approximate_threshold or sample is None or len(sample) < nlist:
            index = faiss.index_factory(config.dim, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT)
            return cls(config, index, IdTable(), ColumnStore(config.columns))
        spec = f"IVF{nlist},PQ{pq_subquantizers(config.dim)}x4fs"
        index = faiss.index_factory(config.dim, spec, faiss.METRIC_INNER_PRODUCT)
        faiss.omp_set_num_threads(config.threads)
        rows = np.random.default_rng(0).permutation(len(sample))[: TRAIN_POINTS_PER_LIST * nlist]
        training = sample[np.sort(rows)]
        index.train(training)
        return cls(config, index, IdTable(), ColumnStore(config.columns), RefineCodes.trained(config.dim, training))

    @classmethod
    def build(
        cls, config: ShardConfig, item_ids: Sequence[str], vectors: np.ndarray, metas: Sequence[dict[str, Any] | None]
    ) -> ShardIndex:
        vectors = normalise(vectors, config.dim)
        shard = cls.empty(config, vectors, len(item_ids))
        shard.add(item_ids, vectors, metas)
        shard.compact()
        return shard

    def compact(self) -> None:
        """Re-pack after a bulk build: IVF lists grow by doubling and would keep up to half as slack,
        and the allocator keeps freed build buffers (training sample, batches) unless told."""
        if self.ivf:
            self.index = faiss.deserialize_index(faiss.serialize_index(self.index))
            self.ivf = faiss.try_extract_index_ivf(self.index)
        if self.refine is not None:
            self.refine.trim(self.ids.size)
        _return_freed_memory()

    @property
    def kind(self) -> str:
        return "ivf_pq_sq8" if self.ivf else "flat"

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item_ids: Sequence[str], vectors: Any, metas: Sequence[dict[str, Any] | None] | None = None) -> int:
        """Insert or replace items (an existing id gets the new vector and meta)."""
        if not item_ids:
            return 0
        metas = list(metas) if metas is not None else [None] * len(item_ids)
        vectors = normalise(vectors, self.config.dim)
        if not len(item_ids) == len(vectors) == len(metas):
            raise BadParam("item_ids, vectors and metas differ in length", param="vectors")
        last = {item_id: row for row, item_id in enumerate(item_ids)}  # the last copy of a repeated id wins
        ids, rows = list(last), np.fromiter(last.values(), dtype=np.int64, count=len(last))
        slots = self.ids.find(ids)
        existing = slots >= 0
        if existing.any():
            self.index.remove_ids(faiss.IDSelectorBatch(slots[existing]))
        slots[~existing] = self.ids.add([i for i, e in zip(ids, existing, strict=True) if not e])
        self.columns.grow(self.ids.size)
        faiss.omp_set_num_threads(self.config.threads)
        self.index.add_with_ids(vectors[rows], slots)
        if self.refine is not None:
            self.refine.set(slots, vectors[rows])
        self.columns.set(slots, [metas[r] for r in rows.tolist()])
        return len(ids)

    def remove(self, item_ids: Sequence[str]) -> int:
        slots = self.ids.find(list(set(item_ids)))
        slots = slots[slots >= 0]
        if len(slots):
            self.index.remove_ids(faiss.IDSelectorBatch(slots))
            self.columns.clear(slots)
            self.ids.release(slots)
        return len(slots)

    def update_meta(self, item_ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> int:
        slots = self.ids.find(item_ids)
        found = np.flatnonzero(slots >= 0)
        self.columns.set(slots[found], [metas[row] for row in found.tolist()])
        return len(found)

    def search(
        self, queries: Any, k: int, min_score: float | None = None, filters: Mapping[str, Any] | None = None
    ) -> list[list[Match]]:
        """Per query, up to k (item_id, score) pairs, best first."""
        queries = normalise(queries, self.config.dim)
        if k < 1:
            raise BadParam("k must be at least 1", param="k")
        mask = self.columns.mask(filters, self.ids.size) if filters else None
        if len(self) == 0 or (mask is not None and not mask.any()):
            return [[] for _ in range(len(queries))]
        bitmap = np.packbits(mask, bitorder="little") if mask is not None else None
        share = 1.0 if mask is None else min(1.0, int(mask.sum()) / len(self))
        params = self._search_params(bitmap, share)  # holds a pointer into `bitmap`: keep both alive
        faiss.omp_set_num_threads(self.config.threads)
        if self.refine is None:
            scores, labels = self.index.search(queries, min(k, len(self)), params=params)
        else:
            wide = min(len(self), max(k * REFINE_FACTOR, REFINE_MIN_CANDIDATES))
            _, candidates = self.index.search(queries, wide, params=params)
            scores, labels = self.refine.rerank(queries, candidates, k)
        return [self._matches(s, lab, min_score) for s, lab in zip(scores, labels, strict=True)]

    def _search_params(self, bitmap: np.ndarray | None, share: float) -> faiss.SearchParameters | None:
        """`share` of the rows pass the filter: IVF probes 1/share times more lists to see as many."""
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)) if bitmap is not None else None
        if self.ivf:
            nprobe = min(self.ivf.nlist, math.ceil(self.nprobe / share))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _matches(self, scores: np.ndarray, labels: np.ndarray, min_score: float | None) -> list[Match]:
        keep = labels >= 0
        if min_score is not None:
            keep &= scores >= min_score
        # SQ8 codes can push a cosine a hair past 1; callers compare scores with thresholds in [-1, 1].
        cosines = np.clip(scores[keep], -1.0, 1.0).tolist()
        return list(zip(self.ids.item_ids(labels[keep]), cosines, strict=True))

    def index_bytes(self) -> int:
        """Bytes held by the FAISS index (codes, ids and the coarse quantiser or id map)."""
        n = self.index.ntotal
        if self.ivf:
            refine = self.refine.codes.nbytes if self.refine is not None else 0
            return n * (self.ivf.code_size + 8) + self.ivf.nlist * self.config.dim * 4 + refine
        return n * (self.config.dim * 4 + 8 + IDMAP2_REV_MAP_BYTES)

    def stats(self) -> dict[str, Any]:
        meta_bytes = self.ids.nbytes() + self.columns.nbytes()
        return {
            "count": len(self),
            "index_type": self.kind,
            "nlist": self.ivf.nlist if self.ivf else None,
            "nprobe": self.nprobe or None,
            "index_bytes": self.index_bytes(),
            "meta_bytes": meta_bytes,
            "bytes": self.index_bytes() + meta_bytes,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "index": faiss.serialize_index(self.index),
            **self.ids.to_arrays(),
            **self.columns.to_arrays(self.ids.size),
            **(self.refine.to_arrays(self.ids.size) if self.refine is not None else {}),
        }

    @classmethod
    def from_arrays(cls, config: ShardConfig, arrays: Mapping[str, np.ndarray]) -> ShardIndex:
        ids = IdTable(arrays["ids"], arrays["alive"])
        columns = ColumnStore.from_arrays(config.columns, arrays, ids.size)
        refine = RefineCodes.from_arrays(config.dim, arrays) if "refine_codes" in arrays else None
        return cls(config, faiss.deserialize_index(arrays["index"]), ids, columns, refine)


class _ReadWriteLock:
    """Searches share the index; a writer waits for them to drain and new searches wait for it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writers_waiting = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass
class _Loaded:
    index: ShardIndex
    applied_seq: int
    source: str  # snapshot | db | empty


class GalleryShard:
    """Shard i of N of one gallery and model; `GalleryShardActor` is the Ray actor of this class."""

    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        self._lock = _ReadWriteLock()
        self._sync_lock = threading.Lock()  # one log replay at a time, so no change is applied twice
        self._server_lock = threading.Lock()
        self._search_server: SearchServer | None = None
        loaded = self._load_snapshot() or self._load_db()
        self._index, self.applied_seq, self.source = loaded.index, loaded.applied_seq, loaded.source
        self.sync()

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
            self.applied_seq = self._replay(self._index, self.applied_seq, self._lock.write)
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
        fresh = self._load_db()
        with self._sync_lock:
            seq = self._replay(fresh.index, fresh.applied_seq, nullcontext)  # nobody searches it yet
            with self._lock.write():
                self._index, self.applied_seq, self.source = fresh.index, seq, "db"
        self._report_size()
        return self.stats()

    def _replay(self, index: ShardIndex, seq: int, guard: Callable[[], AbstractContextManager[Any]]) -> int:
        # First the log rows of the last LATE_COMMIT_S at or before `seq`: on PostgreSQL a row can commit
        # after a higher sequence number did, and a shard that passed it would skip it for good.
        # Replaying a change twice is harmless: the item is brought to its current DB row.
        since = datetime.now(UTC) - timedelta(seconds=LATE_COMMIT_S)
        self._apply_page(index, guard, lambda uow: uow.vectors.recent_changes(self.config.gallery, seq, since))
        while True:
            changes = self._apply_page(
                index, guard, lambda uow, after=seq: uow.vectors.changes_since(self.config.gallery, after))
            if not changes:
                return seq
            seq = changes[-1].seq

    def _apply_page(self, index: ShardIndex, guard: Callable[[], AbstractContextManager[Any]],
                    read: Callable[[UnitOfWork], list[Any]]) -> list[Any]:
        """Apply one page of log rows (those of this shard) to `index`; returns the page."""
        with UnitOfWork(self.config.db_url) as uow:
            changes = read(uow)
            ops: dict[str, set[str]] = {}
            for change in changes:
                if shard_of(change.item_id, self.config.shards) == self.config.shard:
                    ops.setdefault(change.item_id, set()).add(change.op)
            rows = {r.item_id: r for r in uow.vectors.by_items(self.config.gallery, self.config.model, list(ops))}
        if ops:
            with guard():
                _apply_changes(index, ops, rows)
        return changes

    def _load_db(self) -> _Loaded:
        if not self.config.db_url:
            return _Loaded(ShardIndex.empty(self.config), 0, "empty")
        item_ids: list[str] = []
        vectors: list[np.ndarray] = []
        metas: list[dict[str, Any]] = []
        with UnitOfWork(self.config.db_url) as uow:
            seq = uow.vectors.last_seq(self.config.gallery)  # read first: later changes get replayed
            for rows in uow.vectors.iter_gallery(self.config.gallery, self.config.model):
                for row in rows:
                    if shard_of(row.item_id, self.config.shards) == self.config.shard and row.dim == self.config.dim:
                        item_ids.append(row.item_id)
                        vectors.append(np.frombuffer(row.vector, dtype=np.float32))
                        metas.append(row.meta)
        matrix = np.vstack(vectors) if vectors else np.zeros((0, self.config.dim), dtype=np.float32)
        return _Loaded(ShardIndex.build(self.config, item_ids, matrix, metas), seq, "db")

    # ---- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> str | None:
        """Write index, ids, columns and the applied position to one file, atomically."""
        path = self.config.snapshot_path()
        if path is None:
            return None
        with self._lock.read():
            arrays = self._index.to_arrays()
            seq = self.applied_seq
        header = {"format": SNAPSHOT_FORMAT, "applied_seq": seq, **self._identity()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{f"h:{k}": np.asarray(v) for k, v in header.items()}, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return str(path)

    def _identity(self) -> dict[str, Any]:
        c = self.config
        return {"gallery": c.gallery, "model": c.model, "dim": c.dim, "shard": c.shard, "shards": c.shards}

    def _load_snapshot(self) -> _Loaded | None:
        path = self.config.snapshot_path()
        if path is None or not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
            header = {k[2:]: arrays.pop(k).item() for k in list(arrays) if k.startswith("h:")}
            if header.get("format") != SNAPSHOT_FORMAT or any(header.get(k) != v for k, v in self._identity().items()):
                log.warning("snapshot %s belongs to another shard layout; rebuilding from the DB", path)
                return None
            return _Loaded(ShardIndex.from_arrays(self.config, arrays), int(header["applied_seq"]), "snapshot")
        except Exception:  # a torn or foreign file must not keep the shard down: the DB has everything
            log.exception("snapshot %s is unreadable; rebuilding from the DB", path)
            return None

    # ---- benchmark only ----------------------------------------------------------------------
    def add_random(self, seed: int, blocks: Sequence[int], block_size: int, total: int, **shape: Any) -> int:
        """Fill an empty shard with `synthetic_block`s generated here (benchmarks: no DB, no transfer)."""
        dim = self.config.dim
        expected = sum(min(block_size, total - b * block_size) for b in blocks)
        wanted = TRAIN_POINTS_PER_LIST * nlist_for(expected)
        pending: list[tuple[list[str], np.ndarray]] = []  # generated before the index exists: the training sample
        for block in blocks:
            if sum(len(v) for _, v in pending) >= wanted:
                break
            pending.append(synthetic_block(seed, block, block_size, total, dim, **shape))
        sample = np.vstack([v for _, v in pending]) if pending else None
        index = ShardIndex.empty(self.config, sample, expected)
        for ids, vectors in pending:
            index.add(ids, vectors)
        generated = len(pending)
        del sample, pending  # before the remaining blocks pile up on top
        for block in blocks[generated:]:
            index.add(*synthetic_block(seed, block, block_size, total, dim, **shape))
        index.compact()
        with self._lock.write():
            self._index, self.source = index, "random"
        return len(index)


def synthetic_block(
    seed: int, block: int, block_size: int, total: int, dim: int, dup_share: float = 0.1, dup_cos: float = 0.8
) -> tuple[list[str], np.ndarray]:
    """Items `v{i}` of block `block`: random unit vectors, `dup_share` of them noisy copies of others
    in the block (a person seen many times) at cosine ≈ `dup_cos`. Deterministic in (seed, block)."""
    start = block * block_size
    count = max(0, min(block_size, total - start))
    rng = np.random.default_rng([seed, block])
    vectors = normalise(rng.standard_normal((count, dim), dtype=np.float32), dim)
    copies = rng.choice(count, int(count * dup_share), replace=False)
    vectors[copies] = noisy_copies(vectors[rng.integers(count, size=len(copies))], dup_cos, rng)
    return [f"v{i}" for i in range(start, start + count)], vectors


def noisy_copies(vectors: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at cosine ≈ `cos` to the given ones (noise is near-orthogonal in high dimension)."""
    noise = normalise(rng.standard_normal(vectors.shape, dtype=np.float32), vectors.shape[1])
    return normalise(vectors + math.sqrt(1 / cos**2 - 1) * noise, vectors.shape[1])


def _apply_changes(index: ShardIndex, ops: Mapping[str, set[str]], rows: Mapping[str, Any]) -> None:
    """Bring the touched items to their current DB state: the log says which, the rows say what."""
    current = {item: row for item, row in rows.items() if row.dim == index.config.dim}
    index.remove([item for item in ops if item not in current])
    present = dict(zip(current, (index.ids.find(list(current)) >= 0).tolist(), strict=True))
    meta_only = {item for item in current if ops[item] == {"meta"} and present[item]}
    index.update_meta(list(meta_only), [current[item].meta for item in meta_only])
    changed = [row for item, row in current.items() if item not in meta_only]
    if changed:
        matrix = np.vstack([np.frombuffer(r.vector, dtype=np.float32) for r in changed])
        index.add([r.item_id for r in changed], matrix, [r.meta for r in changed])


def _return_freed_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


# Reads run concurrently with each other and with a log replay's DB reads (max_concurrency);
# a failed call is not retried here: the router fails over to another replica instead.
GalleryShardActor = ray.remote(max_restarts=-1, max_task_retries=0, max_concurrency=8)(GalleryShard)

__all__ = [
    "DEFAULT_COLUMNS",
    "GalleryShard",
    "GalleryShardActor",
    "ShardConfig",
    "ShardIndex",
    "shard_of",
    "synthetic_block",
]
