"""Galleries as sharded, replicated Ray actors, and the router that reads and writes them.

A gallery for one model is N shards × R replicas of `GalleryShardActor`, named actors in the
`facewatch` namespace called `gallery:{gallery}:{model}:{shard}of{shards}:{replica}` (the shard
count is part of the name, so a gallery re-created with another N never picks up actors that hold a
different split). `create_gallery` makes (or finds) them, `get_gallery` finds existing ones.

`GalleryRouter` is a plain, picklable object holding the actor handles, usable in the API process
and in other actors:
- writes go to the DB first; the writer then calls `sync_async()`, which makes every replica replay
  the change log and returns once they have, so the next search sees the change (no polling).
  `add/remove/update_meta` write straight into every replica of the owning shard, for galleries
  without a DB (benchmarks);
- a search fans out to one replica of every shard in parallel (rotating the starting replica) over
  the replicas' search channels (TCP, `actors/search_channel.py`: a Ray task per search costs more
  than the search itself), fails over to the next replica of a shard on a dead, restarting or
  timed-out one (and tries that one last for a few seconds), and merges the per-shard top-k by
  score, ties by item id, so results do not depend on N. A shard with no live replica makes the
  search fail with SERVICE_UNAVAILABLE, or, with `partial=True`, leaves it out and names it in
  `missing_shards`.
Every method has an `*_async` form for event loops (the API) and a blocking form for scripts.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from actors.gallery_shard import (
    DEFAULT_APPROXIMATE_THRESHOLD,
    DEFAULT_COLUMNS,
    DEFAULT_NPROBE_FRACTION,
    GalleryShardActor,
    Match,
    ShardConfig,
    shard_of,
)
from actors.search_channel import ChannelBroken, SearchChannel
from facewatch.errors import BadParam, FacewatchError, NotFound, ServiceUnavailable
from facewatch.names import NAMESPACE

# RayActorError covers ActorDiedError and ActorUnavailableError (a replica that is restarting).
FAILOVER_ERRORS = (RayActorError, GetTimeoutError, TimeoutError)
INLINE_QUERY_BYTES = 64 * 1024  # bigger query batches sent through Ray go via the object store
DOWN_COOLDOWN_S = 5.0
CHANNEL_RETRY_S = 30.0

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float


@dataclass
class SearchResult:
    hits: list[list[Hit]]  # per query, best first
    missing_shards: list[int] = field(default_factory=list)


def actor_name(gallery: str, model: str, shard: int, shards: int, replica: int) -> str:
    return f"gallery:{gallery}:{model}:{shard}of{shards}:{replica}"


def create_gallery(
    gallery: str,
    model: str,
    dim: int,
    *,
    shards: int = 1,
    replicas: int = 1,
    db_url: str | None = None,
    snapshot_dir: str | None = None,
    columns: Mapping[str, str] | None = None,
    approximate_threshold: int = DEFAULT_APPROXIMATE_THRESHOLD,
    nprobe_fraction: float = DEFAULT_NPROBE_FRACTION,
    threads: int = 1,
    detached: bool = False,
    namespace: str = NAMESPACE,
    actor_options: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
    ready_timeout_s: float | None = 600.0,
    gpu: str = "off",
) -> GalleryRouter:
    """Create the gallery's actors, or find them when they exist (their config is then kept).

    Waits until every replica has loaded (snapshot + DB) unless `ready_timeout_s` is None.
    """
    if shards < 1 or replicas < 1:
        raise BadParam("a gallery needs at least one shard and one replica", param="shards")
    handles = []
    for shard in range(shards):
        config = ShardConfig(
            gallery=gallery,
            model=model,
            dim=dim,
            shard=shard,
            shards=shards,
            db_url=db_url,
            snapshot_dir=snapshot_dir,
            columns=dict(columns if columns is not None else DEFAULT_COLUMNS),
            approximate_threshold=approximate_threshold,
            nprobe_fraction=nprobe_fraction,
            threads=threads,
            gpu=gpu,
        )
        options = {
            "namespace": namespace,
            "get_if_exists": True,
            "lifetime": "detached" if detached else None,
            **(actor_options or {}),
        }
        handles.append(
            [
                GalleryShardActor.options(name=actor_name(gallery, model, shard, shards, r), **options).remote(config)
                for r in range(replicas)
            ]
        )
    router = GalleryRouter(gallery, model, dim, handles, timeout_s=timeout_s)
    if ready_timeout_s is not None:
        router.wait_ready(ready_timeout_s)
    return router


def get_gallery(
    gallery: str,
    model: str,
    dim: int,
    *,
    shards: int,
    replicas: int,
    namespace: str = NAMESPACE,
    timeout_s: float = 30.0,
) -> GalleryRouter:
    """A router over existing actors; NOT_FOUND when the gallery's actors were never created."""
    try:
        handles = [
            [ray.get_actor(actor_name(gallery, model, s, shards, r), namespace=namespace) for r in range(replicas)]
            for s in range(shards)
        ]
    except ValueError as exc:
        raise NotFound(f"gallery {gallery!r} ({model}, {shards} shards) has no running actors") from exc
    return GalleryRouter(gallery, model, dim, handles, timeout_s=timeout_s)


class GalleryRouter:
    def __init__(
        self, gallery: str, model: str, dim: int, handles: Sequence[Sequence[ActorHandle]], timeout_s: float = 30.0
    ) -> None:
        self.gallery, self.model, self.dim = gallery, model, dim
        self.handles = [list(replicas) for replicas in handles]
        self.timeout_s = timeout_s
        self._turn = 0
        self._down_until: dict[tuple[int, int], float] = {}
        self._channels: dict[tuple[int, int], SearchChannel] = {}
        self._bypass_until: dict[tuple[int, int], float] = {}  # replicas whose port cannot be reached

    @property
    def shards(self) -> int:
        return len(self.handles)

    def shard_of(self, item_id: str) -> int:
        return shard_of(item_id, self.shards)

    # ---- search ------------------------------------------------------------------------------
    async def search_async(
        self,
        queries: Any,
        k: int = 10,
        *,
        min_score: float | None = None,
        filters: Mapping[str, Any] | None = None,
        partial: bool = False,
    ) -> SearchResult:
        """Top-k per query over all shards; see the module docstring for fail-over and `partial`."""
        matrix = self._queries(queries)
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise BadParam("k must be a positive integer", param="k")
        k = int(k)
        self._turn += 1
        answers = await asyncio.gather(
            *(self._search_shard(s, matrix, k, min_score, filters) for s in range(self.shards))
        )
        missing = [s for s, answer in enumerate(answers) if answer is None]
        if missing and not partial:
            raise ServiceUnavailable(
                f"gallery {self.gallery!r}: no live replica for shard(s) {missing}", missing_shards=missing
            )
        return SearchResult(merge_hits([a for a in answers if a is not None], len(matrix), k), missing)

    def search(self, queries: Any, k: int = 10, **kwargs: Any) -> SearchResult:
        return _blocking(self._search_closing_channels(queries, k, **kwargs))

    def _queries(self, queries: Any) -> np.ndarray:
        try:
            matrix = np.asarray(queries, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise BadParam("queries must be numeric vectors", param="queries") from exc
        matrix = matrix[None, :] if matrix.ndim == 1 else matrix
        if matrix.ndim != 2 or matrix.shape[1] != self.dim or len(matrix) == 0:
            raise BadParam(f"queries must have shape (n, {self.dim}), got {matrix.shape}", param="queries")
        if not np.isfinite(matrix).all():
            raise BadParam("queries contain NaN or infinite values", param="queries")
        return np.ascontiguousarray(matrix)

    async def _search_shard(self, shard: int, *args: Any) -> list[list[Match]] | None:
        for replica in self._replica_order(shard):
            try:
                answer = await self._search_replica(shard, replica, *args)
            except FAILOVER_ERRORS:
                self._down_until[(shard, replica)] = time.monotonic() + DOWN_COOLDOWN_S
                continue
            self._down_until.pop((shard, replica), None)
            return answer
        return None

    async def _search_replica(
        self, shard: int, replica: int, matrix: np.ndarray, k: int, min_score: float | None,
        filters: Mapping[str, Any] | None,
    ) -> list[list[Match]]:
        """Over the replica's search channel. When the channel breaks, Ray tells a dead replica
        (RayActorError: fail over) from a restarted one (a new endpoint: search there) from one whose
        port cannot be reached (the same endpoint: search through Ray for CHANNEL_RETRY_S)."""
        key, handle = (shard, replica), self.handles[shard][replica]
        limit = None if math.isinf(self.timeout_s) else self.timeout_s
        if self._bypass_until.get(key, 0.0) <= time.monotonic():
            channel = self._channels.get(key)
            if channel is None:
                channel = self._channels[key] = SearchChannel(await self._call(handle, "search_endpoint"))
            for _ in range(2):
                try:
                    return await channel.search(matrix, k, min_score, filters, limit)
                except ChannelBroken:
                    self._channels.pop(key, None)
                    channel.close()
                fresh = await self._call(handle, "search_endpoint")
                if fresh == channel.endpoint:
                    break
                channel = self._channels[key] = SearchChannel(fresh)
            self._bypass_until[key] = time.monotonic() + CHANNEL_RETRY_S
        payload = ray.put(matrix) if matrix.nbytes > INLINE_QUERY_BYTES else matrix
        return await self._call(handle, "search", payload, k, min_score, filters)

    async def _search_closing_channels(self, queries: Any, k: int, **kwargs: Any) -> SearchResult:
        """A search, then the connections it opened closed: they belong to a loop about to end."""
        try:
            return await self.search_async(queries, k, **kwargs)
        finally:
            for channel in self._channels.values():
                channel.close()

    def __getstate__(self) -> dict[str, Any]:
        # Open connections stay in this process; a copy (perhaps on another node) asks the replicas
        # for their endpoints again.
        return {**self.__dict__, "_channels": {}, "_bypass_until": {}}

    def _replica_order(self, shard: int) -> list[int]:
        """Rotate the first replica per call (spreads load); replicas that just failed go last."""
        count = len(self.handles[shard])
        rotation = [(self._turn + shard + i) % count for i in range(count)]
        now = time.monotonic()
        return sorted(rotation, key=lambda r: self._down_until.get((shard, r), 0.0) > now)

    # ---- writes ------------------------------------------------------------------------------
    async def sync_async(self) -> list[int]:
        """Every replica replays the DB change log; returns the shards no replica could sync
        (they have no live replica: searches fail on them anyway, and they replay when back)."""
        answers = await self._on_every_replica("sync")
        return [s for s, results in enumerate(answers) if all(r is None for r in results)]

    def sync(self) -> list[int]:
        return _blocking(self.sync_async())

    async def add_async(
        self, item_ids: Sequence[str], vectors: Any, metas: Sequence[dict[str, Any] | None] | None = None
    ) -> int:
        """Write vectors straight into the shards (no DB: a restarted replica will not have them)."""
        if not item_ids:
            return 0
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(item_ids), -1)
        metas = list(metas) if metas is not None else [None] * len(item_ids)
        return await self._write(
            item_ids, lambda rows: ("add", [item_ids[r] for r in rows], matrix[rows], [metas[r] for r in rows])
        )

    def add(self, item_ids: Sequence[str], vectors: Any, metas: Sequence[dict[str, Any] | None] | None = None) -> int:
        return _blocking(self.add_async(item_ids, vectors, metas))

    async def remove_async(self, item_ids: Sequence[str]) -> int:
        return await self._write(item_ids, lambda rows: ("remove", [item_ids[r] for r in rows]))

    def remove(self, item_ids: Sequence[str]) -> int:
        return _blocking(self.remove_async(item_ids))

    async def update_meta_async(self, item_ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> int:
        return await self._write(
            item_ids, lambda rows: ("update_meta", [item_ids[r] for r in rows], [metas[r] for r in rows])
        )

    def update_meta(self, item_ids: Sequence[str], metas: Sequence[dict[str, Any] | None]) -> int:
        return _blocking(self.update_meta_async(item_ids, metas))

    async def _write(self, item_ids: Sequence[str], call: Callable[[list[int]], tuple[Any, ...]]) -> int:
        """Send `call(rows)` (method name + args for the given rows) to every replica of each owning
        shard; the count is what the first live replica of each shard reports."""
        by_shard: dict[int, list[int]] = {}
        for row, item_id in enumerate(item_ids):
            by_shard.setdefault(self.shard_of(item_id), []).append(row)
        shards = list(by_shard)
        answers = await asyncio.gather(*(self._on_replicas(s, *call(by_shard[s])) for s in shards))
        missing = [s for s, results in zip(shards, answers, strict=True) if all(r is None for r in results)]
        if missing:
            raise ServiceUnavailable(
                f"gallery {self.gallery!r}: no live replica for shard(s) {missing}", missing_shards=missing
            )
        return sum(next(r for r in results if r is not None) for results in answers)

    # ---- operations --------------------------------------------------------------------------
    async def stats_async(self) -> list[list[dict[str, Any] | None]]:
        """Per shard, per replica: the replica's stats, or None when it does not answer."""
        return await self._on_every_replica("stats")

    def stats(self) -> list[list[dict[str, Any] | None]]:
        return _blocking(self.stats_async())

    async def snapshot_async(self) -> list[list[str | None]]:
        return await self._on_every_replica("snapshot")

    def snapshot(self) -> list[list[str | None]]:
        return _blocking(self.snapshot_async())

    async def rebuild_async(self) -> list[list[dict[str, Any] | None]]:
        """Rebuild every replica from the DB, e.g. to move a grown shard from exact to IVF-SQ8."""
        return await self._on_every_replica("rebuild", timeout_s=math.inf)

    def rebuild(self) -> list[list[dict[str, Any] | None]]:
        return _blocking(self.rebuild_async())

    async def wait_ready_async(self, timeout_s: float = 600.0) -> None:
        """Wait for every replica to finish loading; SERVICE_UNAVAILABLE for those that do not."""
        answers = await self._on_every_replica("stats", timeout_s=timeout_s)
        down = [(s, r) for s, results in enumerate(answers) for r, stats in enumerate(results) if stats is None]
        if down:
            raise ServiceUnavailable(f"gallery {self.gallery!r}: replicas (shard, replica) {down} are not ready")

    def wait_ready(self, timeout_s: float = 600.0) -> None:
        _blocking(self.wait_ready_async(timeout_s))

    def kill(self) -> None:
        """Stop every replica for good (tests, benchmarks, deleting a gallery)."""
        for replicas in self.handles:
            for handle in replicas:
                ray.kill(handle, no_restart=True)

    # ---- plumbing ----------------------------------------------------------------------------
    async def _on_every_replica(self, method: str, *args: Any, timeout_s: float | None = None) -> list[list[Any]]:
        return await asyncio.gather(
            *(self._on_replicas(s, method, *args, timeout_s=timeout_s) for s in range(self.shards))
        )

    async def _on_replicas(self, shard: int, method: str, *args: Any, timeout_s: float | None = None) -> list[Any]:
        """`method` on every replica of `shard`; None for a replica that is down or times out."""

        async def one(handle: ActorHandle) -> Any:
            try:
                return await self._call(handle, method, *args, timeout_s=timeout_s)
            except FAILOVER_ERRORS:
                return None

        return list(await asyncio.gather(*(one(h) for h in self.handles[shard])))

    async def _call(self, handle: ActorHandle, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """One actor call within `timeout_s` (None: the router's timeout; inf: none). Errors raised by
        the shard itself (bad filters, bad vectors) come back as their own type, not Ray's wrapper."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), None if math.isinf(limit) else limit)
        except RayTaskError as exc:
            if isinstance(exc.cause, FacewatchError):
                raise exc.cause from None
            raise


def merge_hits(answers: Sequence[list[list[Match]]], queries: int, k: int) -> list[list[Hit]]:
    """Per query, the best k of all shards' answers: by score, then item id (deterministic)."""
    merged = []
    for q in range(queries):
        pool = sorted((match for answer in answers for match in answer[q]), key=lambda m: (-m[1], m[0]))
        merged.append([Hit(item_id, score) for item_id, score in pool[:k]])
    return merged


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run an *_async method from plain code; inside an event loop, call the async form instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError("a blocking GalleryRouter method was called inside an event loop; use its *_async form")


__all__ = [
    "NAMESPACE",
    "GalleryRouter",
    "Hit",
    "SearchResult",
    "actor_name",
    "create_gallery",
    "get_gallery",
    "merge_hits",
    "shard_of",
]
