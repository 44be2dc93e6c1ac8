"""Gallery searches whose pages are full although some hits are hidden from the caller.

A gallery shard knows only its filter columns; whether a hit is visible to the caller (its watch list,
a dossier's lists) is decided by `storage.visibility.VisibilityScope` over the rows. Restrictions the
shards can apply exactly (the events gallery's camera groups) go into the shard filters; the rest is
applied to the hits, and the search is repeated with a larger k (x4 each time, at most `MAX_K`)
until the page is full or the gallery has no more matches. So a page is short only when there are
not enough visible matches, never because hidden ones took the top places.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from actors.gallery import Hit, SearchResult

T = TypeVar("T")
MAX_K = 10_000
"""The most hits fetched for one page; a scope hiding more than that above the threshold gets a short page."""


async def fill_page(search: Callable[[int], Awaitable[SearchResult]], limit: int,
                    choose: Callable[[Sequence[Hit]], list[T]], first_k: int | None = None,
                    max_k: int = MAX_K) -> tuple[SearchResult, list[T]]:
    """Runs `search(k)` with a growing k until `choose(hits)` (the visible results, best first) holds
    `limit` results, or the gallery answered fewer than k hits (there are no more), or k reached `max_k`."""
    k = min(max(first_k or limit, limit), max_k)
    while True:
        result = await search(k)
        hits = result.hits[0]
        chosen = choose(hits)
        if len(chosen) >= limit or len(hits) < k or k >= max_k:
            return result, chosen[:limit]
        k = min(k * 4, max_k)


def keep_hits(hits: Sequence[Hit], visible: set[Any], key: Callable[[str], Any] = str) -> list[Hit]:
    """The hits whose item (as `key(item_id)`) is in `visible`, in their order."""
    return [h for h in hits if key(h.item_id) in visible]


__all__ = ["MAX_K", "fill_page", "keep_hits"]
