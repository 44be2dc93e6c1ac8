"""Enrolling photos into dossiers: analyse, choose the face, gate on quality, store, index.

One photo's rows (dossier face, its vector and change-log rows) and media commit together; the
watch-list gallery is synced after the commit, so the next search or match sees the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from actors.galleries import Galleries
from facewatch.errors import BadImage, BadParam, FacewatchError, LowQuality
from models.face_analysis import FaceInPhoto, FaceSelect, select_faces
from models.images import encode_png, image_extension
from serve_apps.api.services import Services, decode_photo, translate_face_errors
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

MIN_ENROL_FACE_PX = 30
PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass
class AnalyzedPhoto:
    faces: list[FaceInPhoto]
    chips: np.ndarray


async def analyze_photo(services: Services, data: bytes, limit: int, param: str = "photo") -> tuple[np.ndarray,
                                                                                                    AnalyzedPhoto]:
    image = decode_photo(data, limit, param)
    result = await services.analyze(image)
    faces = [FaceInPhoto(**f) for f in result["faces"]]
    return image, AnalyzedPhoto(faces, result["chips"])


def choose(photo: AnalyzedPhoto, face_select: FaceSelect, bbox: list[float] | None,
           param: str = "photo") -> list[FaceInPhoto]:
    try:
        return select_faces(photo.faces, face_select, bbox)
    except ValueError as exc:
        raise translate_face_errors(exc, param) from exc


def gate(face: FaceInPhoto, min_quality: float) -> None:
    if face.size < MIN_ENROL_FACE_PX:
        raise LowQuality(f"the face is {face.size:.0f} px; enrolment needs at least {MIN_ENROL_FACE_PX} px",
                         param="photo")
    if face.quality < min_quality:
        raise LowQuality(f"face quality {face.quality:.2f} is below the minimum {min_quality:.2f} "
                         "(blurred, turned away or too small)", param="photo")


async def enrol_photo(
    uow: UnitOfWork, media: LocalMediaStore, services: Services, dossier: orm.Dossier, data: bytes, *,
    limit: int, face_select: FaceSelect = "biggest", bbox: list[float] | None = None, extension: str = "jpg",
    meta: dict[str, Any] | None = None, external_id: str | None = None,
) -> list[orm.DossierFace]:
    """Adds the chosen face(s) of one photo to `dossier` (not committed: the caller commits); every face
    stored carries `meta` and `external_id`."""
    _, photo = await analyze_photo(services, data, limit)
    chosen = choose(photo, face_select, bbox)
    min_quality = float(uow.settings.get("min_dossier_photo_quality"))
    for face in chosen:
        gate(face, min_quality)
    chips = photo.chips[[f.index for f in chosen]]
    extracted = await services.extract(chips)
    # The stored photo's extension comes from its content; `extension` (from the client's file name) only
    # when the header names no format we know.
    fallback = extension if extension in {"jpg", "jpeg", "png", "webp", "bmp"} else "jpg"
    source_key = media.put(data, image_extension(data, fallback))
    rows = []
    for face, chip, vector, attributes in zip(chosen, chips, extracted["embeddings"], extracted["attributes"],
                                              strict=True):
        row = orm.DossierFace(
            dossier_id=dossier.id, source_key=source_key, crop_key=media.put(encode_png(chip), "png"),
            bbox=face.bbox, landmarks=face.landmarks, detection_score=face.score, quality=face.quality,
            attributes=attributes, meta=dict(meta or {}), external_id=external_id or None,
        )
        uow.dossier_faces.add(row)
        store_dossier_face_vector(uow, row, dossier, extracted["model"], vector)
        rows.append(row)
    return rows


def dossier_face_vector(uow: UnitOfWork, face_id: int, model: str, param: str) -> np.ndarray:
    """The stored vector of a dossier face for `model` (BAD_PARAM on `param` when there is none)."""
    row = uow.vectors.find(DOSSIERS_GALLERY, str(face_id), model)
    if row is None:
        raise BadParam(f"dossier face {face_id} does not exist (or has no {model} vector)", param=param)
    return np.frombuffer(row.vector, dtype=np.float32)


def photo_extension(filename: str | None) -> str:
    suffix = PurePosixPath(filename or "").suffix.lower()
    return suffix.lstrip(".") if suffix in PHOTO_EXTENSIONS else "jpg"


async def sync_dossiers(galleries: Galleries | None) -> None:
    if galleries is not None:
        await galleries.sync_async(DOSSIERS_GALLERY)


def failure(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, FacewatchError):
        return {"error": exc.code, "reason": exc.reason}
    if isinstance(exc, ValueError):
        return {"error": BadImage.code, "reason": str(exc)}
    raise exc
