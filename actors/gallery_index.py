"""The in-memory index of one shard: FAISS index + id table + filter columns (+ re-ranking codes).

Pure (no Ray, no DB): `actors/gallery_shard.py` wraps it with a lock, the DB log replay and
snapshots. Why these index types and parameters: docs/gallery.md.

GPU (FACEWATCH_GALLERY_GPU=auto, docs/gallery.md "GPU nodes"): `choose_device` picks the GPU only when
the setting asks, faiss was built with GPUs (the `faiss-gpu-cu12` wheel of the `gpu` extra) and Ray gave
the shard a GPU. The CPU index stays the truth (writes, snapshots, filters' fallback); an exact shard
then searches a `GpuMirror` of its flat vectors, rebuilt after writes. FAISS's GPU code has no 4-bit
fast-scan PQ, so an approximate (IVF-PQ fast-scan) shard keeps searching on the CPU.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from actors.gallery_columns import ColumnStore
from actors.gallery_config import Match, ShardConfig, normalise
from actors.gallery_ids import IdTable
from facewatch.errors import BadParam

# More lists scan fewer codes for the same recall, but k-means training grows with nlist²: 8192
# lists train in about a minute per shard on one core; shards much bigger than 10^6 should be split.
MAX_NLIST = 8192
TRAIN_POINTS_PER_LIST = 40
# The fast scan's 4-bit codes only have to bring the true neighbours into a short candidate list;
# the SQ8 codes then order it. 4·k candidates kept recall@1 where 16·k did (see docs/gallery.md).
REFINE_FACTOR = 4
REFINE_MIN_CANDIDATES = 32
# IndexIDMap2 keeps an unordered_map label -> position next to its id array; about 40 B a node.
IDMAP2_REV_MAP_BYTES = 40
GPU_MAX_K = 2048  # FAISS GPU searches return at most this many neighbours per query


def faiss_gpus() -> int:
    """GPUs this faiss build can use (0 with faiss-cpu, which has no get_num_gpus at all)."""
    count = getattr(faiss, "get_num_gpus", None)
    return int(count()) if count is not None else 0


def choose_device(mode: str, faiss_gpu_count: int, granted_gpus: int) -> str:
    """"gpu" when the setting asks (auto), faiss can use a GPU and Ray granted this process one; else "cpu".
    Taking a GPU Ray did not grant would share it unplanned with whoever Ray gave it to."""
    if mode not in ("auto", "off"):
        raise ValueError(f"gallery GPU mode must be auto or off, not {mode!r}")
    return "gpu" if mode == "auto" and faiss_gpu_count > 0 and granted_gpus > 0 else "cpu"


def flat_to_gpu(index: faiss.Index) -> faiss.Index:
    """A copy of a flat CPU index on GPU 0 (the one Ray granted: it sets CUDA_VISIBLE_DEVICES)."""
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


class GpuMirror:
    """A copy of an exact (IDMap2,Flat) index's vectors on another device, searched without FAISS
    search parameters (GPU indexes take no id selector): a filtered search asks for more neighbours
    and keeps those the filter passes; when fewer than k are left and the shard has more, the caller
    searches on the CPU instead, so answers equal the CPU index's."""

    def __init__(self, to_device: Callable[[faiss.Index], faiss.Index] = flat_to_gpu) -> None:
        self.to_device = to_device
        self._lock = threading.Lock()
        self._copy: tuple[faiss.Index, np.ndarray] | None = None  # (device index, position -> slot)

    def invalidate(self) -> None:
        self._copy = None

    def _current(self, index: faiss.Index) -> tuple[faiss.Index, np.ndarray]:
        copy = self._copy
        if copy is None:
            with self._lock:  # concurrent searches (read lock) build it once
                if self._copy is None:
                    idmap = faiss.downcast_index(index)
                    self._copy = (self.to_device(faiss.downcast_index(idmap.index)),
                                  faiss.vector_to_array(idmap.id_map).astype(np.int64))
                copy = self._copy
        return copy

    def search(self, index: faiss.Index, queries: np.ndarray, k: int, mask: np.ndarray | None,
               share: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(scores, slot labels) of the best k, or None when the GPU answer may miss filtered neighbours."""
        device_index, slots = self._current(index)
        total = device_index.ntotal
        wide = min(total, k if mask is None else math.ceil(2 * k / max(share, 1e-9)) + k)
        if wide > GPU_MAX_K:
            return None
        scores, positions = device_index.search(queries, wide)
        labels = np.where(positions >= 0, slots[np.maximum(positions, 0)], -1)
        if mask is None:
            return scores, labels
        passing = (labels >= 0) & mask[np.maximum(labels, 0)]
        if wide < total and (passing.sum(axis=1) < k).any():
            return None
        order = np.argsort(~passing, axis=1, kind="stable")[:, :k]  # passing rows first, score order kept
        scores, labels = np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1)
        kept = np.take_along_axis(passing, order, 1)
        return np.where(kept, scores, -np.inf).astype(np.float32), np.where(kept, labels, -1)


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
        self.gpu: GpuMirror | None = None

    def place(self, device: str, to_device: Callable[[faiss.Index], faiss.Index] = flat_to_gpu) -> str:
        """Search on `device` ("gpu" or "cpu", see `choose_device`); returns where searches run now."""
        self.gpu = GpuMirror(to_device) if device == "gpu" and self.refine is None and not self.ivf else None
        return self.device

    @property
    def device(self) -> str:
        return "gpu" if self.gpu is not None else "cpu"

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
        if self.gpu is not None:
            self.gpu.invalidate()
        return len(ids)

    def remove(self, item_ids: Sequence[str]) -> int:
        slots = self.ids.find(list(set(item_ids)))
        slots = slots[slots >= 0]
        if len(slots):
            self.index.remove_ids(faiss.IDSelectorBatch(slots))
            self.columns.clear(slots)
            self.ids.release(slots)
            if self.gpu is not None:
                self.gpu.invalidate()
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
        if filters and self.columns.passes_all(filters, len(self)):
            # Every item passes (the persons gallery's one installation-wide scope), known without
            # building the mask; a selector would only make FAISS test each candidate against a bitmap
            # that lets all of them through.
            filters = None
        mask = self.columns.mask(filters, self.ids.size) if filters else None
        if len(self) == 0 or (mask is not None and not mask.any()):
            return [[] for _ in range(len(queries))]
        if mask is not None and mask.all():
            mask = None  # the same, found by the mask
        share = 1.0 if mask is None else min(1.0, int(mask.sum()) / len(self))
        found = self.gpu.search(self.index, queries, min(k, len(self)), mask, share) if self.gpu else None
        if found is not None:
            return [self._matches(s, lab, min_score) for s, lab in zip(*found, strict=True)]
        bitmap = np.packbits(mask, bitorder="little") if mask is not None else None
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
            "device": self.device,
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


def _return_freed_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass
