"""Errors describe the input, never the server (issue 11, items 3 and 4).

Bad input is a 4xx with its own code, not an outage: a photo too small to show a face is BAD_IMAGE,
and a typed error raised inside an extractor replica crosses Ray back to the API with its own code
(only a failing pool is 503). Error texts about uploaded files never name the server's disk.
The extractor pool on real Ray is exercised in tests/integration/test_service_health.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from ray.exceptions import RayTaskError

from actors.video_source import SourceOpenError, VideoSource
from facewatch.errors import BadImage, ServiceUnavailable
from serve_apps.api.routes.videos import Unprocessable, _store_upload
from serve_apps.api.services import decode_photo, pool_error
from storage.media import LocalMediaStore


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (11, 40), (40, 11)])
def test_a_photo_too_small_for_a_face_is_bad_image(size: tuple[int, int]) -> None:
    with pytest.raises(BadImage) as caught:
        decode_photo(_png(*size), 1 << 20)
    assert caught.value.status == 422 and caught.value.param == "photo"
    assert decode_photo(_png(12, 12), 1 << 20).shape == (12, 12, 3)


def _wrapped(cause: Exception) -> Exception:
    """An exception as Ray hands back one raised in a replica."""
    try:
        raise cause
    except Exception as exc:  # noqa: BLE001
        return RayTaskError("FaceExtractor.analyze", "Traceback ...", exc).as_instanceof_cause()


def test_a_typed_error_from_a_replica_keeps_its_code() -> None:
    reason = "the photo cannot be analysed: a frame must be at least 12x12"
    error = pool_error(_wrapped(BadImage(reason)))
    assert type(error) is BadImage and error.status == 422
    assert error.to_dict() == {"code": "BAD_IMAGE", "reason": reason}


def test_anything_else_from_the_pool_is_503() -> None:
    for failure in (_wrapped(RuntimeError("CUDA out of memory")), ConnectionError("replica died")):
        error = pool_error(failure)
        assert type(error) is ServiceUnavailable and error.status == 503


def test_an_unreadable_upload_names_no_server_path(tmp_path: Path) -> None:
    media = LocalMediaStore(tmp_path / "media")
    with pytest.raises(Unprocessable) as caught:
        _store_upload(media, io.BytesIO(b"\x00\x01 not a video " * 500), "clip.mp4")
    reason = caught.value.reason
    assert "not a readable video" in reason
    assert str(tmp_path) not in reason and ".incoming" not in reason and "/" not in reason, reason
    assert list((tmp_path / "media" / ".incoming").iterdir()) == []


def test_a_server_side_file_is_called_by_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "media" / "ab" / "abcdef.mp4"
    with pytest.raises(SourceOpenError) as caught:
        VideoSource(str(missing), live=False, name="the uploaded video")
    assert caught.value.reason == "video file not found: the uploaded video"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"garbage" * 1000)
    with pytest.raises(SourceOpenError) as caught:
        VideoSource(str(garbage), live=False, name="the uploaded video")
    assert str(tmp_path) not in caught.value.reason and caught.value.reason.startswith("cannot open the uploaded video")


# -- stored media are named by their content (issue 11, item 13) -------------------------------------


def test_a_photo_is_stored_with_the_extension_of_its_format() -> None:
    from models.images import image_extension

    assert image_extension(_png(20, 20), "jpg") == "png"  # whatever the client called it
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buffer, format="JPEG")
    assert image_extension(buffer.getvalue(), "png") == "jpg"
    assert image_extension(b"not an image", "png") == "png"


def test_an_uploaded_video_is_stored_with_the_extension_of_its_container(tmp_path: Path, data_dir: Path) -> None:
    media = LocalMediaStore(tmp_path / "media")
    clip = (data_dir / "video" / "short_hamilton_clip.mp4").read_bytes()
    for name, expected in (("clip.avi", "mp4"), ("clip", "mp4"), ("holiday.mov", "mov"), (None, "mp4")):
        key, frames, _ = _store_upload(media, io.BytesIO(clip), name)
        assert key.endswith("." + expected) and frames > 0, (name, key)


def test_bulk_enrolment_refuses_face_select_all(tmp_path: Path, sqlite_url: str) -> None:
    """Each bulk photo is one person: `all` would put a group photo's faces into one dossier, and was
    silently taken as `biggest`. It is refused (422) and documented in the OpenAPI schema."""
    from serve_apps.api.services import Services
    from tests.conftest import build_api
    from tests.integration.test_api import assert_error

    api = build_api(tmp_path, sqlite_url)
    api.client.app.state.services = Services("dlib_resnet_v1")
    answer = api.post("/v1/dossiers/bulk", files={"files": ("a.png", _png(40, 40), "image/png")},
                      data={"face_select": "all"})
    assert_error(answer, 422, "BAD_PARAM", param="face_select")
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    bulk = next(v for k, v in schema.items() if k.startswith("Body_bulk_enrol"))
    assert "all" not in bulk["properties"]["face_select"]["pattern"]
