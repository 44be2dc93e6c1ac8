"""Face endpoints: detect, verify, enrol photos into dossiers, bulk enrolment."""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from facewatch.errors import BadImage, BadParam, Forbidden, NoFace, NotFound, TooLarge
from facewatch.meta import check_meta
from models.calibration import resolve_threshold
from serve_apps.api.deps import Media, Operator, Scope, Uow, Viewer
from serve_apps.api.enrolment import (
    PHOTO_EXTENSIONS,
    analyze_photo,
    choose,
    dossier_face_vector,
    enrol_photo,
    failure,
    photo_extension,
    sync_dossiers,
)
from serve_apps.api.routes._common import apply_patch, ensure_visible, meta_query
from serve_apps.api.routes.search import raw_vector
from serve_apps.api.schemas import (
    BulkEnrolOut,
    DetectOut,
    DossierFaceOut,
    DossierFacePatch,
    EnrolOut,
    Page,
    VerifyOut,
)
from serve_apps.api.services import Services, decode_photo, get_services, read_upload
from storage import orm
from storage.erasure import delete_unreferenced, face_keys, remove_dossier_faces
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(tags=["faces"])
Svc = Annotated[Services, Depends(get_services)]
FaceSelectForm = Annotated[str, Form(pattern="^(biggest|all|reject)$")]
BulkFaceSelectForm = Annotated[str, Form(
    pattern="^(biggest|reject)$",
    description="each photo is one person: `all` is refused, since the faces of a group photo would all "
                "go into that one person's dossier (enrol group photos one by one with face_select=all)")]
MAX_BULK_FILES = 1000
MAX_ZIP_BYTES = 512 * 1024 * 1024


def _limit(request: Request) -> int:
    return request.app.state.config.max_upload_bytes


def _bbox(value: str | None) -> list[float] | None:
    if value in (None, ""):
        return None
    try:
        box = [float(v) for v in json.loads(value if value.strip().startswith("[") else f"[{value}]")]
    except (ValueError, TypeError):
        raise BadParam("bbox must be [x1, y1, x2, y2]", param="bbox") from None
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise BadParam("bbox must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1", param="bbox")
    return box


MAX_BATCH_PHOTOS = 32


@router.post("/detect", response_model=DetectOut, response_model_exclude_unset=True)
async def detect(
    request: Request, services: Svc, caller: Viewer,
    photo: Annotated[UploadFile | None, File(description="one photo (answer: faces)")] = None,
    photos: Annotated[list[UploadFile] | None, File(description="several photos (answer: results per photo)")] = None,
    with_embeddings: Annotated[bool, Form()] = False,
    aligned: Annotated[bool, Form(description="the photos are already aligned face crops: no detection")] = False,
) -> dict[str, Any]:
    """Faces of one photo, or of up to 32 photos in one call: each photo gets its own result, and a photo
    that cannot be read is a typed error in its result while the others are answered (HTTP 200)."""
    if with_embeddings and caller.role == "viewer":
        raise Forbidden("embeddings are returned to admins and operators only", param="with_embeddings")
    if (photo is None) == (not photos):
        raise BadParam("send either photo (one file) or photos (one or more files)", param="photo")
    if photo is not None:
        data = await read_upload(photo, _limit(request))
        return {"faces": await _detect_one(services, data, _limit(request), with_embeddings, aligned)}
    assert photos is not None
    if len(photos) > MAX_BATCH_PHOTOS:
        raise TooLarge(f"at most {MAX_BATCH_PHOTOS} photos per call", param="photos")
    results = []
    for upload in photos:
        name = upload.filename or "photo"
        try:
            data = await read_upload(upload, _limit(request), "photos")
            faces = await _detect_one(services, data, _limit(request), with_embeddings, aligned)
            results.append({"file": name, "faces": faces, "error": None})
        except (BadImage, TooLarge, NoFace) as exc:
            results.append({"file": name, "faces": [], "error": {"code": exc.code, "reason": exc.reason}})
    return {"results": results}


async def _detect_one(services: Services, data: bytes, limit: int, with_embeddings: bool,
                      aligned: bool) -> list[dict[str, Any]]:
    if aligned:
        chip, box = aligned_chip(decode_photo(data, limit), services.spec.chip_size)
        found = [{"bbox": box, "score": 1.0, "quality": None, "landmarks": []}]
        chips = chip[None]
    else:
        _, analyzed = await analyze_photo(services, data, limit)
        found = [{"bbox": f.bbox, "score": f.score, "quality": f.quality, "landmarks": f.landmarks}
                 for f in analyzed.faces]
        chips = analyzed.chips
    extracted = await services.extract(chips) if found else {"embeddings": [], "attributes": []}
    faces = []
    for face, vector, attributes in zip(found, extracted["embeddings"], extracted["attributes"], strict=True):
        item = {**face, "age": attributes.get("age"), "gender": attributes.get("gender"), "attributes": attributes}
        if with_embeddings:
            item["embedding"] = [round(float(v), 6) for v in vector]
            item["model"] = services.embedder
        faces.append(item)
    return faces


def aligned_chip(image: np.ndarray, size: int) -> tuple[np.ndarray, list[float]]:
    """An already-aligned face crop resized to the embedder's chip (its whole area is the face)."""
    from PIL import Image

    height, width = image.shape[:2]
    chip = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return chip, [0.0, 0.0, float(width), float(height)]


async def _vectors_of_photo(services: Services, upload: UploadFile, limit: int, param: str,
                            face_select: str) -> tuple[np.ndarray, list[list[float]]]:
    data = await read_upload(upload, limit, param)
    _, analyzed = await analyze_photo(services, data, limit, param)
    faces = choose(analyzed, "all" if face_select == "all" else "biggest", None, param)
    vectors = (await services.extract(analyzed.chips[[f.index for f in faces]]))["embeddings"]
    return np.asarray(vectors, np.float32), [f.bbox for f in faces]


@router.post("/verify", response_model=VerifyOut, response_model_exclude_none=True)
async def verify(
    request: Request, services: Svc, uow: Uow, _: Viewer, scope: Scope,
    photo1: Annotated[UploadFile | None, File()] = None, photo2: Annotated[UploadFile | None, File()] = None,
    face1: Annotated[int | None, Form()] = None, face2: Annotated[int | None, Form()] = None,
    vector1: Annotated[str | None, Form(description="JSON list: a raw vector of the active model")] = None,
    vector2: Annotated[str | None, Form(description="JSON list: a raw vector of the active model")] = None,
    threshold: Annotated[str | None, Form(description="a number in [0, 1] or strict/medium/low/none")] = None,
    face_select: Annotated[str, Form(pattern="^(biggest|all)$",
                                     description="all: compare every face of photo1 with every face of photo2")]
    = "biggest",
) -> VerifyOut:
    """1:1 verification; with face_select=all every pair of faces is compared (`pairs`, best first) and
    the answer's confidence is the best pair's."""
    sides = []
    for n, (upload, face_id, raw) in enumerate(((photo1, face1, vector1), (photo2, face2, vector2)), start=1):
        if sum(v is not None for v in (upload, face_id, raw)) != 1:
            raise BadParam(f"give exactly one of photo{n}, face{n} and vector{n}", param=f"photo{n}")
        if upload is not None:
            sides.append(await _vectors_of_photo(services, upload, _limit(request), f"photo{n}", face_select))
        elif raw is not None:
            sides.append((raw_vector(_json_list(raw, f"vector{n}"), services.spec.dim, f"vector{n}")[None], [[]]))
        else:
            if not scope.keep_dossier_faces(uow.session, [face_id]):  # hidden looks absent
                raise BadParam(f"dossier face {face_id} does not exist", param=f"face{n}")
            sides.append((dossier_face_vector(uow, face_id, services.embedder, f"face{n}")[None], [[]]))
    try:
        cut = resolve_threshold(threshold, float(uow.settings.get("default_threshold")))
    except ValueError as exc:
        raise BadParam(str(exc), param="threshold") from None
    (a, boxes_a), (b, boxes_b) = sides
    confidences = np.asarray(services.calibration.confidence(a @ b.T), dtype=np.float64)
    pairs = sorted(({"face1": boxes_a[i] or None, "face2": boxes_b[j] or None,
                     "confidence": round(float(confidences[i, j]), 4), "verified": bool(confidences[i, j] >= cut)}
                    for i in range(len(a)) for j in range(len(b))), key=lambda p: -p["confidence"])
    best = pairs[0]["confidence"]
    return VerifyOut(confidence=best, verified=best >= cut, threshold=cut,
                     pairs=pairs if face_select == "all" else None)


def _json_list(text: str, param: str) -> list[float]:
    try:
        values = json.loads(text)
    except ValueError:
        raise BadParam(f"{param} must be a JSON list of numbers", param=param) from None
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               for v in values):
        raise BadParam(f"{param} must be a JSON list of numbers", param=param)
    return values


def _visible_dossier(uow: UnitOfWork, dossier_id: int, scope: VisibilityScope) -> orm.Dossier:
    dossier = uow.dossiers.get(dossier_id)
    return ensure_visible(dossier, scope.sees_dossier(dossier), "dossier", dossier_id)


def face_out(row: orm.DossierFace, base_url: str) -> DossierFaceOut:
    return DossierFaceOut(
        id=row.id, dossier_id=row.dossier_id, bbox=row.bbox, quality=row.quality,
        detection_score=row.detection_score, landmarks=row.landmarks, attributes=row.attributes,
        photo=f"{base_url}/v1/media/{row.source_key}" if row.source_key else None,
        crop=f"{base_url}/v1/media/{row.crop_key}" if row.crop_key else None, created_at=row.created_at,
        meta=row.meta or {}, external_id=row.external_id,
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/dossiers/{dossier_id}/faces", status_code=201, response_model=EnrolOut)
async def enrol_dossier_face(
    dossier_id: int, request: Request, services: Svc, uow: Uow, media: Media, _: Operator, scope: Scope,
    photo: Annotated[UploadFile, File()], face_select: FaceSelectForm = "biggest",
    bbox: Annotated[str | None, Form(description="[x1, y1, x2, y2]; wins over face_select")] = None,
    meta: Annotated[str | None, Form(description="JSON object, at most 4 KB; every face stored carries it")] = None,
    external_id: Annotated[str | None, Form(max_length=200)] = None,
) -> EnrolOut:
    dossier = _visible_dossier(uow, dossier_id, scope)
    uow.links.refuse_edit([w.id for w in dossier.watch_lists], "cannot add the photo")
    metadata = _meta_form(meta)
    data = await read_upload(photo, _limit(request))
    rows = await enrol_photo(uow, media, services, dossier, data, limit=_limit(request),
                             face_select=face_select, bbox=_bbox(bbox), extension=photo_extension(photo.filename),
                             meta=metadata, external_id=external_id)
    uow.commit()
    await sync_dossiers(services.galleries)
    faces = [face_out(r, _base(request)) for r in rows]
    return EnrolOut(**faces[0].model_dump(), faces=faces)


def _meta_form(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        raise BadParam("meta must be a JSON object", param="meta") from None
    return check_meta(value)


@router.get("/dossiers/{dossier_id}/faces", response_model=Page[DossierFaceOut])
def list_dossier_faces(dossier_id: int, request: Request, uow: Uow, _: Viewer,
                       scope: Scope) -> Page[DossierFaceOut]:
    """Oldest first; `meta.<key>=<v>`, `meta.<key>__gte|gt|lte|lt=<n>` and `external_id` narrow the list."""
    _visible_dossier(uow, dossier_id, scope)
    rows = uow.dossier_faces.for_dossier(dossier_id, meta_query(request))
    return Page(results=[face_out(r, _base(request)) for r in rows], next_cursor=None)


def _face_of(uow: UnitOfWork, dossier_id: int, face_id: int, scope: VisibilityScope) -> orm.DossierFace:
    _visible_dossier(uow, dossier_id, scope)
    row = uow.dossier_faces.find(face_id)
    if row is None or row.dossier_id != dossier_id:
        raise NotFound(f"dossier face {face_id} does not exist", param="face_id")
    return row


@router.get("/dossiers/{dossier_id}/faces/{face_id}", response_model=DossierFaceOut)
def get_dossier_face(dossier_id: int, face_id: int, request: Request, uow: Uow, _: Viewer,
                     scope: Scope) -> DossierFaceOut:
    return face_out(_face_of(uow, dossier_id, face_id, scope), _base(request))


@router.patch("/dossiers/{dossier_id}/faces/{face_id}", response_model=DossierFaceOut)
def patch_dossier_face(dossier_id: int, face_id: int, patch: DossierFacePatch, request: Request, uow: Uow,
                       _: Operator, scope: Scope) -> DossierFaceOut:
    """Sets the face's `meta` (replaced whole) and `external_id` (null clears it)."""
    row = _face_of(uow, dossier_id, face_id, scope)
    uow.links.refuse_edit([w.id for w in row.dossier.watch_lists], "cannot edit the photo")
    apply_patch(row, patch)
    uow.commit()
    return face_out(row, _base(request))


@router.delete("/dossiers/{dossier_id}/faces/{face_id}", status_code=204)
async def delete_dossier_face(dossier_id: int, face_id: int, request: Request, uow: Uow, media: Media,
                              _: Operator, scope: Scope) -> Response:
    """Removes the photo, its vectors of every model and its files (unless another row shares them)."""
    row = _face_of(uow, dossier_id, face_id, scope)
    uow.links.refuse_edit([w.id for w in row.dossier.watch_lists], "cannot delete the photo")
    keys = face_keys([row])
    remove_dossier_faces(uow, [row])
    uow.commit()
    delete_unreferenced(uow, media, keys)
    services = getattr(request.app.state, "services", None)
    await sync_dossiers(services.galleries if services else None)
    return Response(status_code=204)


def _bulk_items(uploads: list[UploadFile], datas: list[bytes]) -> dict[str, list[tuple[str, bytes]]]:
    """Photos per dossier name: a file's stem, or the sub-folder holding several photos of one person."""
    people: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for upload, data in zip(uploads, datas, strict=True):
        name = upload.filename or "photo"
        if name.lower().endswith(".zip"):
            for entry, content in _zip_entries(data, name):
                path = PurePosixPath(entry)
                person = path.parent.name if len(path.parts) > 1 else path.stem
                people[person].append((entry, content))
        else:
            people[PurePosixPath(name).stem].append((name, data))
    if not people:
        raise BadParam("no photos were sent", param="files")
    return people


def _zip_entries(data: bytes, name: str) -> list[tuple[str, bytes]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist()
                 if not i.is_dir() and PurePosixPath(i.filename).suffix.lower() in PHOTO_EXTENSIONS
                 and not PurePosixPath(i.filename).name.startswith(".")]
        if len(infos) > MAX_BULK_FILES:
            raise TooLarge(f"{name} holds more than {MAX_BULK_FILES} photos", param="files")
        if sum(i.file_size for i in infos) > MAX_ZIP_BYTES:  # a zip bomb stops here, before inflating
            raise TooLarge(f"{name} expands to more than {MAX_ZIP_BYTES} bytes", param="files")
        return [(i.filename, archive.read(i)) for i in infos]
    except zipfile.BadZipFile as exc:
        raise BadParam(f"{name} is not a valid zip file", param="files") from exc


@router.post("/dossiers/bulk", response_model=BulkEnrolOut)
async def bulk_enrol(
    request: Request, services: Svc, uow: Uow, media: Media, caller: Operator, scope: Scope,
    files: Annotated[list[UploadFile], File(description="photos, or zip files of photos / sub-folders")],
    watch_list_ids: Annotated[str, Form(description="comma-separated watch list ids")] = "",
    face_select: BulkFaceSelectForm = "biggest",
) -> BulkEnrolOut:
    try:
        list_ids = [int(v) for v in watch_list_ids.replace("[", "").replace("]", "").split(",") if v.strip()]
    except ValueError:
        raise BadParam("watch_list_ids must be comma-separated integers", param="watch_list_ids") from None
    scope.refuse_hidden(list_ids, "watch lists", "watch_list_ids")
    lists = uow.watch_lists.get_many(list_ids, param="watch_list_ids")
    if any(w.builtin for w in lists):
        raise BadParam("a dossier cannot be put on the Unmatched list", param="watch_list_ids")
    uow.links.refuse_edit(list_ids, "cannot enrol into the list")
    if len(files) > MAX_BULK_FILES:
        raise TooLarge(f"at most {MAX_BULK_FILES} files per request", param="files")
    datas = []
    for f in files:  # a zip has its own fixed limit; a photo the upload setting's
        is_zip = (f.filename or "").lower().endswith(".zip")
        datas.append(await (read_upload(f, MAX_ZIP_BYTES, "files", setting=None) if is_zip
                            else read_upload(f, _limit(request), "files")))
    results = []
    for person, photos in _bulk_items(files, datas).items():
        results.extend(await _enrol_person(request, services, media, person, photos, lists, face_select))
    await sync_dossiers(services.galleries)
    enrolled = sum(1 for r in results if r["status"] == "ok")
    return BulkEnrolOut(enrolled=enrolled, failed=len(results) - enrolled, results=results)


async def _enrol_person(request: Request, services: Services, media: Any, person: str,
                        photos: list[tuple[str, bytes]], lists: list[orm.WatchList],
                        face_select: str) -> list[dict[str, Any]]:
    """One dossier per person, committed only if at least one of its photos enrolled."""
    results: list[dict[str, Any]] = []
    with UnitOfWork(request.app.state.config.database_url) as uow:
        dossier = uow.dossiers.add(orm.Dossier(name=person, watch_lists=[uow.watch_lists.get(w.id) for w in lists]))
        for file_name, data in photos:
            try:
                await enrol_photo(uow, media, services, dossier, data, limit=_limit(request),
                                  face_select=face_select,  # type: ignore[arg-type]  # the form checked it
                                  extension=photo_extension(file_name))
                uow.flush()
                results.append({"file": file_name, "dossier": person, "status": "ok", "error": None})
            except Exception as exc:  # noqa: BLE001 - per-file result; failure() re-raises non-input errors
                results.append({"file": file_name, "dossier": person, "status": "failed", **failure(exc)})
        if any(r["status"] == "ok" for r in results):
            uow.commit()
            for r in results:
                r["dossier_id"] = dossier.id if r["status"] == "ok" else None
        else:
            for r in results:
                r["dossier_id"] = None
    return results



