"""The per-replica cache of callers and scopes (serve_apps/api/request_cache.py): expiry, clears, races."""

from __future__ import annotations

from serve_apps.api.request_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_ttl_seconds() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(1.0, clock=clock)
    cache.put("k", "v", cache.generation)
    clock.now += 0.99
    assert cache.get("k") == "v"
    clock.now += 0.02
    assert cache.get("k") is None


def test_a_clear_forgets_everything_and_a_read_begun_before_it_is_not_kept() -> None:
    cache: TtlCache[str] = TtlCache(1.0, clock=Clock())
    cache.put("a", "1", cache.generation)
    begun = cache.generation  # a request starts reading the database ...
    cache.clear()  # ... a write on this replica answers meanwhile ...
    cache.put("b", "old", begun)  # ... and the older answer is not put back
    assert cache.get("a") is None and cache.get("b") is None
    cache.put("b", "new", cache.generation)
    assert cache.get("b") == "new"


def test_ttl_zero_keeps_nothing() -> None:
    cache: TtlCache[str] = TtlCache(0.0, clock=Clock())
    cache.put("k", "v", cache.generation)
    assert cache.get("k") is None


def test_a_full_cache_drops_expired_entries_first_then_starts_afresh() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(1.0, clock=clock, max_entries=3)
    cache.put("old", 0, cache.generation)
    clock.now += 0.6
    cache.put("a", 1, cache.generation)
    cache.put("b", 2, cache.generation)
    clock.now += 0.5  # "old" has expired, "a" and "b" have not
    cache.put("c", 3, cache.generation)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, 3)
    cache.put("d", 4, cache.generation)  # full of live entries: start afresh rather than grow
    assert (cache.get("a"), cache.get("d")) == (None, 4)
