"""Synthetic galleries for benchmarks and tests: random unit vectors with near-duplicates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from actors.gallery_config import ShardConfig, normalise
from actors.gallery_index import TRAIN_POINTS_PER_LIST, ShardIndex, nlist_for


def random_index(config: ShardConfig, seed: int, blocks: Sequence[int], block_size: int, total: int,
                 **shape: Any) -> ShardIndex:
    """An index of the given `synthetic_block`s, trained on the first of them (no DB, no transfer)."""
    dim = config.dim
    expected = sum(min(block_size, total - b * block_size) for b in blocks)
    wanted = TRAIN_POINTS_PER_LIST * nlist_for(expected)
    pending: list[tuple[list[str], np.ndarray]] = []  # generated before the index exists: the training sample
    for block in blocks:
        if sum(len(v) for _, v in pending) >= wanted:
            break
        pending.append(synthetic_block(seed, block, block_size, total, dim, **shape))
    sample = np.vstack([v for _, v in pending]) if pending else None
    index = ShardIndex.empty(config, sample, expected)
    for ids, vectors in pending:
        index.add(ids, vectors)
    generated = len(pending)
    del sample, pending  # before the remaining blocks pile up on top
    for block in blocks[generated:]:
        index.add(*synthetic_block(seed, block, block_size, total, dim, **shape))
    index.compact()
    return index


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
