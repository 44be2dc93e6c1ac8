"""What a gallery shard is: its configuration, the item -> shard hash and vector normalisation.

Shared by the shard actors, the router (`actors/gallery.py`) and the benchmarks; no FAISS, no Ray.
See docs/gallery.md for the index choice and its measurements.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facewatch.errors import BadParam
from facewatch.gallery_schema import DEFAULT_COLUMNS

DEFAULT_APPROXIMATE_THRESHOLD = 200_000
DEFAULT_NPROBE_FRACTION = 1 / 12  # share of IVF lists a search scans; see docs/gallery.md

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
    gpu: str = "off"  # FACEWATCH_GALLERY_GPU: "auto" searches on a GPU when Ray gave the shard one (gallery_index.py)

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

