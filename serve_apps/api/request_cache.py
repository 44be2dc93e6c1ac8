"""A short-lived, per-replica memory of answers every request asks the database again: who a token or
session cookie belongs to, and what a role may see (README "Console and sign-in", "Caching").

Each entry lives `ttl_s` seconds (FACEWATCH_AUTH_CACHE_TTL_S, default 1 s; 0 turns caching off), so a
change made elsewhere (another API replica, the CLI, the database itself) is seen here within `ttl_s`.
A write through this replica's API clears the whole cache before its answer is sent, so this replica
never uses an older answer after it has acknowledged the change. A read that began before a clear does
not put its (possibly older) answer back: `generation` tells it that a clear happened meanwhile.
Failed look-ups are never kept (an unknown token costs its query every time and cannot fill memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 10_000  # distinct tokens, sessions and roles seen within one TTL; beyond, start afresh


class TtlCache(Generic[V]):
    """Values by key for `ttl_s` seconds of `clock` (monotonic); thread-safe (sync routes run in threads)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s, self.clock, self.max_entries = ttl_s, clock, max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            with self._lock:
                self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: Hashable, value: V, generation: int) -> None:
        """Keeps `value`, read from the database after `generation` was current, unless a clear came since."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= self.max_entries:
                now = self.clock()
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (self.clock() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1


__all__ = ["MAX_ENTRIES", "TtlCache"]
