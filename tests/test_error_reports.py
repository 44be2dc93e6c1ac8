"""Errors describe the input, never the server (issue 11, items 3 and 4).

Bad input is a 4xx with its own code, not an outage: a photo too small to show a face is BAD_IMAGE,
and a typed error raised inside an extractor replica crosses Ray back to the API with its own code
(only a failing pool is 503). Error texts about uploaded files never name the server's disk.
The extractor pool on real Ray is exercised in tests/test_service_health.py.
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
