"""Item ids <-> dense slots of one shard (the FAISS labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
