"""Gallery search benchmark: the sharded router against an exact NumPy scan of the same data (SPEC §12).

    python -m cluster.bench_gallery --vectors 1000000 --shards 2 --replicas 1 --dim 128 --json

The gallery holds `vectors` random unit vectors, 10 % of them noisy copies of others (people seen
many times); every shard actor generates its own blocks from the seed (`add_random`), so nothing
crosses the driver or the object store and no DB is involved. Queries are noisy copies (cosine
≈ 0.8) of random gallery items. Measured in one run on the same data:
- single-query latency through the router (p50, p99, sequential qps) and batched throughput;
- recall@1 against exact search (the driver regenerates every block and scans it exactly);
- the NumPy baseline: `X @ q` + argmax over the full float32 matrix, one query at a time, half
  of the runs just before and half just after the router's single queries, so both see the same
  load from other processes (`load_avg_1m` records it). Above `numpy_max_vectors` the matrix is
  not built; the scan of its first `numpy_max_vectors` rows is timed and scaled linearly (a
  memory-bound scan), which the output says in `numpy_method`;
- bytes per vector of the FAISS indexes (and of ids + filter columns), RSS of the shard actors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
import uuid
from typing import Any

import numpy as np
import ray

from actors.gallery import GalleryRouter, create_gallery
from actors.gallery_shard import (
    DEFAULT_APPROXIMATE_THRESHOLD,
    DEFAULT_NPROBE_FRACTION,
    noisy_copies,
    synthetic_block,
)

NUMPY_RUNS = 30
WARMUP_QUERIES = 20
BLAS_SETTLE_S = 1.0


def run(
    vectors: int,
    shards: int,
    replicas: int = 1,
    dim: int = 128,
    queries: int = 1000,
    batch: int = 100,
    approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD,
    nprobe_fraction: float = DEFAULT_NPROBE_FRACTION,
    k: int = 10,
    seed: int = 0,
    query_cos: float = 0.8,
    dup_share: float = 0.1,
    dup_cos: float = 0.8,
    numpy_max_vectors: int = 2_000_000,
) -> dict[str, Any]:
    """Build, measure, tear down; returns the result (see the module docstring)."""
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    shape = {"dup_share": dup_share, "dup_cos": dup_cos}
    block_size = int(min(max(vectors // (shards * 16), 1024), 65536))
    router = create_gallery(
        f"bench-{uuid.uuid4().hex[:8]}",
        "bench",
        dim,
        shards=shards,
        replicas=replicas,
        approximate_threshold=approximate_threshold,
        nprobe_fraction=nprobe_fraction,
        ready_timeout_s=300,
    )
    try:
        build_s = _build(router, seed, vectors, block_size, shape)
        query_matrix = _queries(seed, vectors, block_size, dim, queries, query_cos, shape)
        truth, scanned = _exact(seed, vectors, block_size, dim, query_matrix, numpy_max_vectors, shape)
        load_before = os.getloadavg()[0]
        timed = asyncio.run(_measure(router, query_matrix, k, batch, scanned))
        stats = [replica_stats for shard in router.stats() for replica_stats in shard]
    finally:
        router.kill()
    first_replicas = stats[::replicas]
    p50 = float(np.percentile(timed["latencies"], 50) * 1000)
    numpy_p50 = float(np.median(timed["numpy"]) * 1000) * vectors / len(scanned)
    return {
        "vectors": vectors,
        "shards": shards,
        "replicas": replicas,
        "dim": dim,
        "k": k,
        "queries": queries,
        "batch": batch,
        "p50_ms": round(p50, 3),
        "p99_ms": round(float(np.percentile(timed["latencies"], 99) * 1000), 3),
        "qps": round(len(timed["latencies"]) / float(np.sum(timed["latencies"])), 1),
        "batch_qps": round(timed["batch_qps"], 1),
        "recall_at_1": float(np.mean(np.array(timed["top1"]) == truth)),
        "batch_recall_at_1": float(np.mean(np.array(timed["batch_top1"]) == truth)),
        "bytes_per_vector": round(sum(s["index_bytes"] for s in first_replicas) / vectors, 1),
        "meta_bytes_per_vector": round(sum(s["meta_bytes"] for s in first_replicas) / vectors, 1),
        "rss_bytes_all_replicas": sum(s["rss_bytes"] or 0 for s in stats),
        "build_s": round(build_s, 2),
        "numpy_p50_ms": round(numpy_p50, 3),
        "numpy_method": "full scan" if len(scanned) == vectors else f"scan of {len(scanned)} rows scaled to {vectors}",
        "speedup_vs_numpy": round(numpy_p50 / p50, 2),
        "index_type": ",".join(sorted({s["index_type"] for s in stats})),
        "nlist": first_replicas[0]["nlist"],
        "nprobe": first_replicas[0]["nprobe"],
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before / after the timings
    }


def _build(router: GalleryRouter, seed: int, vectors: int, block_size: int, shape: dict[str, float]) -> float:
    """Every replica of shard s generates blocks s, s+N, s+2N, … and builds its index; seconds taken."""
    blocks = math.ceil(vectors / block_size)
    started = time.perf_counter()
    ray.get(
        [
            handle.add_random.remote(seed, list(range(s, blocks, router.shards)), block_size, vectors, **shape)
            for s, replicas in enumerate(router.handles)
            for handle in replicas
        ]
    )
    return time.perf_counter() - started


def _queries(
    seed: int, vectors: int, block_size: int, dim: int, count: int, cos: float, shape: dict[str, float]
) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    sources = rng.choice(vectors, size=min(count, vectors), replace=False)
    rows = np.zeros((len(sources), dim), dtype=np.float32)
    for block in np.unique(sources // block_size).tolist():
        _, block_vectors = synthetic_block(seed, block, block_size, vectors, dim, **shape)
        here = np.flatnonzero(sources // block_size == block)
        rows[here] = block_vectors[sources[here] - block * block_size]
    return noisy_copies(rows, cos, rng)


def _exact(
    seed: int, vectors: int, block_size: int, dim: int, queries: np.ndarray, numpy_max: int, shape: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-1 ids (block by block), and the first `numpy_max` rows as one matrix to time scans on."""
    best_score = np.full(len(queries), -np.inf, dtype=np.float32)
    best_id = np.zeros(len(queries), dtype=np.int64)
    kept: list[np.ndarray] = []
    for block in range(math.ceil(vectors / block_size)):
        _, block_vectors = synthetic_block(seed, block, block_size, vectors, dim, **shape)
        scores = queries @ block_vectors.T
        top = scores.argmax(axis=1)
        better = scores[np.arange(len(queries)), top] > best_score
        best_score[better] = scores[better, top[better]]
        best_id[better] = block * block_size + top[better]
        if sum(len(v) for v in kept) < numpy_max:
            kept.append(block_vectors)
    return np.array([f"v{i}" for i in best_id]), np.vstack(kept)[:numpy_max]


async def _measure(
    router: GalleryRouter, queries: np.ndarray, k: int, batch: int, scanned: np.ndarray
) -> dict[str, Any]:
    """Single queries through the router between two rounds of NumPy scans (so both see the same
    load from other processes on the machine); then batches."""
    numpy_s = _numpy_scans(scanned, queries[: NUMPY_RUNS // 2])
    for q in queries[:WARMUP_QUERIES]:
        await router.search_async(q, k)
    latencies, top1 = [], []
    for q in queries:
        started = time.perf_counter()
        result = await router.search_async(q, k)
        latencies.append(time.perf_counter() - started)
        top1.append(result.hits[0][0].item_id if result.hits[0] else "")
    numpy_s += _numpy_scans(scanned, queries[NUMPY_RUNS // 2 : NUMPY_RUNS])
    batch_top1: list[str] = []
    started = time.perf_counter()
    for at in range(0, len(queries), batch):
        result = await router.search_async(queries[at : at + batch], k)
        batch_top1.extend(hits[0].item_id if hits else "" for hits in result.hits)
    batch_qps = len(queries) / (time.perf_counter() - started)
    return {"latencies": latencies, "top1": top1, "batch_top1": batch_top1, "batch_qps": batch_qps, "numpy": numpy_s}


def _numpy_scans(matrix: np.ndarray, queries: np.ndarray) -> list[float]:
    """Seconds per exact single-query scan. OpenBLAS threads spin for a while after a call and
    would steal a core from the shards, hence the pause before the router is timed."""
    timings = []
    for q in queries:
        started = time.perf_counter()
        int(np.argmax(matrix @ q))
        timings.append(time.perf_counter() - started)
    time.sleep(BLAS_SETTLE_S)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--approximate-threshold", type=int, default=DEFAULT_APPROXIMATE_THRESHOLD)
    parser.add_argument("--nprobe-fraction", type=float, default=DEFAULT_NPROBE_FRACTION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one compact JSON line (default: indented)")
    args = parser.parse_args(argv)
    result = run(
        args.vectors,
        args.shards,
        args.replicas,
        args.dim,
        queries=args.queries,
        batch=args.batch,
        approximate_threshold=args.approximate_threshold,
        nprobe_fraction=args.nprobe_fraction,
        seed=args.seed,
    )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
