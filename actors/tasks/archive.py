"""Photos of a task: the entries of an uploaded ZIP, or the files of a folder on the server, and the
extractor pool's analysis of one photo (detect, align, embed, attributes) — shared by evaluate and
estimate."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from actors.tasks.context import CALL_TIMEOUT_S, TaskContext
from facewatch.errors import BadImage, BadParam, TooLarge
from models.images import ImageError, decode_image

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MAX_PHOTOS = 100_000
MAX_PHOTO_BYTES = 20 * 1024 * 1024
MAX_ARCHIVE_EXPANDED = 64 * 1024**3


def _is_photo(name: str) -> bool:
    path = PurePosixPath(name)
    return path.suffix.lower() in PHOTO_SUFFIXES and not any(p.startswith(".") or p == "__MACOSX" for p in path.parts)


def list_photos(ctx: TaskContext, params: dict[str, Any]) -> list[str]:
    """The photo entries (relative paths, sorted); a bad or oversized source is a BAD_PARAM/TOO_LARGE."""
    if params.get("archive_key"):
        path = ctx.media.path(params["archive_key"])
        try:
            with zipfile.ZipFile(path) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir() and _is_photo(i.filename)]
        except (zipfile.BadZipFile, FileNotFoundError) as exc:
            raise BadParam("the uploaded file is not a ZIP archive", param="file") from exc
        if sum(i.file_size for i in infos) > MAX_ARCHIVE_EXPANDED:
            raise TooLarge("the archive expands to more than 64 GiB", param="file")
        names = [i.filename for i in infos]
    else:
        root = Path(str(params["path"]))
        if not root.is_dir():
            raise BadParam("path is not a folder on the server", param="path")
        names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                 and _is_photo(p.relative_to(root).as_posix())]
    if len(names) > MAX_PHOTOS:
        raise TooLarge(f"more than {MAX_PHOTOS} photos", param="file")
    return sorted(names)


def read_photo(ctx: TaskContext, params: dict[str, Any], name: str) -> bytes:
    if params.get("archive_key"):
        with zipfile.ZipFile(ctx.media.path(params["archive_key"])) as archive:
            info = archive.getinfo(name)
            if info.file_size > MAX_PHOTO_BYTES:
                raise TooLarge(f"{name} is larger than {MAX_PHOTO_BYTES} bytes", param=name)
            return archive.read(info)
    path = Path(str(params["path"])) / name
    if path.stat().st_size > MAX_PHOTO_BYTES:
        raise TooLarge(f"{name} is larger than {MAX_PHOTO_BYTES} bytes", param=name)
    return path.read_bytes()


def analyze(ctx: TaskContext, data: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(faces biggest first, extraction of every face: embeddings, attributes, model)."""
    try:
        image = decode_image(data, max_bytes=MAX_PHOTO_BYTES)
    except ImageError as exc:
        raise BadImage(str(exc)) from exc
    extractor = ctx.extractor()
    found = extractor.analyze.remote(image, True).result(timeout_s=CALL_TIMEOUT_S)
    faces = list(found["faces"])
    if not faces:
        return [], {"embeddings": np.zeros((0, 0), np.float32), "attributes": [], "model": ctx.embedder}
    extracted = extractor.extract.remote(found["chips"]).result(timeout_s=CALL_TIMEOUT_S)
    return faces, extracted
