"""Shard snapshots: index, ids, columns and the applied log position in one `.npz` file.

Written atomically (tmp file + fsync + rename). A snapshot that belongs to another layout (format,
gallery, model, dim, shard count) or cannot be read is ignored: the DB has everything.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("actors.gallery_shard")

SNAPSHOT_FORMAT = 2  # 2: approximate shards are IVF-PQ4 fast scan + SQ8 re-ranking codes (1: IVF-SQ8)


def write_snapshot(path: Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """`header` (small scalars, stored as `h:<key>` arrays, plus the format) and `arrays` to `path`."""
    header = {"format": SNAPSHOT_FORMAT, **header}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{f"h:{k}": np.asarray(v) for k, v in header.items()}, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_snapshot(path: Path, identity: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(header, arrays) of the snapshot at `path` if it exists, has this format and matches `identity`."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception:  # a torn or foreign file must not keep the shard down: the DB has everything
        log.exception("snapshot %s is unreadable; rebuilding from the DB", path)
        return None
    header = {k[2:]: arrays.pop(k).item() for k in list(arrays) if k.startswith("h:")}
    if header.get("format") != SNAPSHOT_FORMAT or any(header.get(k) != v for k, v in identity.items()):
        log.warning("snapshot %s belongs to another shard layout; rebuilding from the DB", path)
        return None
    return header, arrays
