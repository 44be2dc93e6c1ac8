"""What a caller sends the extractor pool: face chips, and which of them want attributes.

Every chip is embedded, but only the chips that become sightings need attributes (age, gender): a
camera job's post also sends the chips of its tracks' best frames, whose vectors only serve the
match and whose attributes nobody reads. Attributes of those cost the pool CPU for nothing (four
sample chips for every shot on a CPU node; issue 14 item 7), so a `ChipBatch` says how many of its
chips, from the first, want them. A plain array still means "all of them" (the API's callers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ChipBatch:
    """(N, S, S, 3) uint8 chips; the first `attributes_for` get attributes, all get embeddings."""

    chips: np.ndarray
    attributes_for: int

    def __post_init__(self) -> None:
        if not 0 <= self.attributes_for <= len(self.chips):
            raise ValueError(f"attributes_for must be in [0, {len(self.chips)}], got {self.attributes_for}")

    def __len__(self) -> int:
        return len(self.chips)

    @classmethod
    def of(cls, request: np.ndarray | ChipBatch) -> ChipBatch:
        """A request as a batch: a plain array wants attributes for every chip."""
        if isinstance(request, ChipBatch):
            return request
        chips = np.asarray(request)
        return cls(chips, len(chips))

    def attribute_mask(self) -> np.ndarray:
        """(N,) bool: which chips want attributes."""
        return np.arange(len(self.chips)) < self.attributes_for
