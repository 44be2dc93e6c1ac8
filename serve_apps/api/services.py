"""What face endpoints need beyond the DB: the extractor pool and the galleries.

`Services` is attached to the app by the Serve deployment (and by tests); without it the face
endpoints answer 503 SERVICE_UNAVAILABLE instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from fastapi import Request, UploadFile
from pydantic import BaseModel, ValidationError

from actors.galleries import Galleries
from facewatch.errors import BadImage, BadParam, FacewatchError, NoFace, ServiceUnavailable, TooLarge, TooManyFaces
from facewatch.settings import variable
from models.calibration import Calibration
from models.embedders import EmbedderSpec, embedder_spec
from models.face_analysis import NoFaceError, TooManyFacesError
from models.images import ImageError, decode_image

M = TypeVar("M", bound=BaseModel)


@dataclass
class Services:
    embedder: str
    galleries: Galleries | None = None
    extractor_app: str = "facewatch-extractor"
    extractor_deployment: str = "facewatch-extractor"
    _handle: Any = field(default=None, repr=False)

    @property
    def spec(self) -> EmbedderSpec:
        return embedder_spec(self.embedder)

    @property
    def calibration(self) -> Calibration:
        return self.spec.calibration

    def extractor(self) -> Any:
        if self._handle is None:
            from ray import serve

            try:
                self._handle = serve.get_deployment_handle(self.extractor_deployment, app_name=self.extractor_app)
            except Exception as exc:  # noqa: BLE001 - any lookup failure means the pool is not up
                raise ServiceUnavailable("the extractor pool is not running") from exc
        return self._handle

    async def analyze(self, image: np.ndarray) -> dict[str, Any]:
        return await self._call("analyze", image, True)

    async def extract(self, chips: np.ndarray) -> dict[str, Any]:
        return await self._call("extract", chips)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.extractor(), method).remote(*args)
        except Exception as exc:  # noqa: BLE001 - a dead or unreachable replica is a 503, not a 500
            raise pool_error(exc) from exc


def pool_error(exc: Exception) -> FacewatchError:
    """What an exception from an extractor replica means to the client.

    Ray hands a replica's exception back wrapped (a RayTaskError whose `cause` is the original). A typed
    error the replica raised (BAD_IMAGE for a photo the models cannot take) is the client's and keeps its
    code and status; anything else means the pool itself failed (503).
    """
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, FacewatchError):
        return FacewatchError.from_dict(cause.to_dict())
    return ServiceUnavailable(f"the extractor pool failed: {type(cause).__name__}")


def get_services(request: Request) -> Services:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("face services are not configured in this process")
    return services


def get_galleries(request: Request) -> Galleries:
    galleries = get_services(request).galleries
    if galleries is None:
        raise ServiceUnavailable("galleries are not configured in this process")
    return galleries


UPLOAD_LIMIT_SETTING = variable("max_upload_bytes")


async def read_upload(upload: UploadFile, limit: int, param: str = "photo",
                      setting: str | None = UPLOAD_LIMIT_SETTING) -> bytes:
    """The bytes of an uploaded file, refusing more than `limit` without reading it all. `setting`: the
    variable that sets `limit` (None for a fixed limit), named in the refusal so that whoever reads it
    knows what to raise."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        where = f", the limit set by {setting}" if setting else ""
        raise TooLarge(f"{param} is larger than {limit} bytes{where}", param=param)
    return data


MIN_PHOTO_SIDE = 12
"""The detector's smallest window (models/detector.py): a smaller photo cannot show a face."""


def decode_photo(data: bytes, limit: int, param: str = "photo") -> np.ndarray:
    try:
        image = decode_image(data, max_bytes=limit)
    except ImageError as exc:
        error = TooLarge if exc.code == "TOO_LARGE" else BadImage
        raise error(str(exc), param=param) from exc
    height, width = image.shape[:2]
    if min(height, width) < MIN_PHOTO_SIDE:
        raise BadImage(f"the image is {width}x{height} pixels; a face needs at least "
                       f"{MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE}", param=param)
    return image


def translate_face_errors(exc: Exception, param: str = "photo") -> FacewatchError:
    if isinstance(exc, TooManyFacesError):
        return TooManyFaces(str(exc), param=param, boxes=exc.boxes)
    if isinstance(exc, NoFaceError):
        return NoFace(str(exc), param=param)
    raise exc


async def read_file_query(
    request: Request, model: type[M], *, file_field: str = "photo", json_fields: tuple[str, ...] = (),
    error: type[FacewatchError] = BadParam,
) -> tuple[M, UploadFile | None]:
    """A query given as JSON, or as a multipart/urlencoded form that may carry a file in `file_field`.

    JSON is validated as strictly as every other body; form fields arrive as text, so they are converted
    ("5" → 5, "true" → True), empty ones are dropped, and `json_fields` hold JSON text. A validation
    failure raises `error` naming the field.
    """
    is_json = request.headers.get("content-type", "").startswith("application/json")
    upload = None
    try:
        if is_json:
            raw = await request.json()
            if not isinstance(raw, dict):
                raise BadParam("the body must be a JSON object")
        else:
            form = await request.form()
            found = form.get(file_field)
            if isinstance(found, str):
                raise BadParam(f"{file_field} must be a file", param=file_field)
            upload = found
            raw = {k: v for k, v in form.items() if k != file_field and isinstance(v, str) and v != ""}
            for name in json_fields:
                if name in raw:
                    try:
                        raw[name] = json.loads(raw[name])
                    except ValueError:
                        raise BadParam(f"{name} must be JSON", param=name) from None
    except ValueError as exc:
        raise BadParam("the body is not valid JSON or form data") from exc
    try:
        return model.model_validate(raw, strict=None if is_json else False), upload
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise error(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
