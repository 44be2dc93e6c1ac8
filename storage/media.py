"""Media store: content-addressed files (thumbnails, crops, frames, photos, uploaded videos).

`MediaStore` is the small interface an S3 backend can implement; `LocalMediaStore` keeps files
under a root folder (a local disk or a shared filesystem mounted on every node).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol

from facewatch.errors import BadParam, NotFound

_KEY = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,5}$")


class MediaStore(Protocol):
    def put(self, data: bytes, extension: str) -> str: ...
    def get(self, key: str) -> bytes: ...
    def path(self, key: str) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


def media_key(data: bytes, extension: str) -> str:
    """The content address of `data`: its SHA-256 plus the extension (`jpg`, `png`, `mp4`, ...)."""
    ext = extension.lower().lstrip(".")
    if not re.fullmatch(r"[a-z0-9]{1,5}", ext):
        raise BadParam(f"bad media extension {extension!r}", param="extension")
    return f"{hashlib.sha256(data).hexdigest()}.{ext}"


def write_atomically(target: Path, data: bytes) -> None:
    """Write then rename, so a reader never sees a half-written file and a crash leaves no debris."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalMediaStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            # Keys come from URLs too: refuse anything that is not a content address (no traversal).
            raise NotFound(f"media {key!r} does not exist", param="key")
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes, extension: str) -> str:
        key = media_key(data, extension)
        target = self.path(key)
        if target.exists():
            return key
        write_atomically(target, data)
        return key

    def put_file(self, source: Path, extension: str) -> str:
        """Store a (possibly large) file by streaming it, e.g. an uploaded video."""
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        key = f"{digest.hexdigest()}.{extension.lower().lstrip('.')}"
        target = self.path(key)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tmp-{key}")
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
            os.replace(tmp, target)
        return key

    def get(self, key: str) -> bytes:
        target = self.path(key)
        if not target.exists():
            raise NotFound(f"media {key!r} does not exist", param="key")
        return target.read_bytes()

    def exists(self, key: str) -> bool:
        return bool(key) and _KEY.match(key) is not None and self.path(key).exists()

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.path(key).unlink(missing_ok=True)


def open_media_store(root: Path | str) -> LocalMediaStore:
    return LocalMediaStore(root)
