"""Bad and unusual image uploads (SPEC §5.1, §11): every case gets a typed ImageError or a clean RGB8 array."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from models.images import ImageError, decode_image, encode_jpeg, encode_png


def _gradient(width: int = 64, height: int = 48) -> np.ndarray:
    """A smooth RGB test picture (no face needed for decoding tests)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2).astype(np.uint8)


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_header_only(width: int, height: int, *, idat: bytes = b"") -> bytes:
    """A PNG whose header claims width×height, with (almost) no pixel data: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    body = _png_chunk(b"IHDR", ihdr)
    if idat:
        body += _png_chunk(b"IDAT", idat)
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


def _expect(code: str, data: bytes, **limits: int) -> ImageError:
    with pytest.raises(ImageError) as caught:
        decode_image(data, **limits)
    assert caught.value.code == code, caught.value
    assert str(caught.value)  # a message a user can read
    return caught.value


# ---------------------------------------------------------------------- accepted inputs


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_supported_formats_decode_to_rgb8(fmt: str) -> None:
    rgb = _gradient()
    out = decode_image(_save(Image.fromarray(rgb), fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = _gradient()
    out = decode_image(_save(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 6


def test_16bit_grayscale_png_is_rescaled_not_clipped() -> None:
    gray16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    out = decode_image(_save(Image.fromarray(gray16), "PNG"))
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    expected = np.rint(gray16 / 257.0)
    assert np.abs(out[:, :, 0].astype(int) - expected).max() <= 1
    assert out.min() == 0 and out.max() == 255 and (out < 255).mean() > 0.9  # clipping would saturate


def test_16bit_color_png_becomes_rgb8() -> None:
    rgb = _gradient()
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert ok
    out = decode_image(encoded.tobytes())
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).max() <= 1


def test_rgba_png_is_composited_on_white() -> None:
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (200, 10, 10, 255)  # opaque red half
    rgba[:, 15:] = (0, 0, 0, 0)  # fully transparent half
    out = decode_image(_save(Image.fromarray(rgba), "PNG"))
    assert out.shape == (20, 30, 3)
    assert (out[:, :15] == (200, 10, 10)).all()
    assert (out[:, 15:] == 255).all()


def test_grayscale_and_palette_and_bilevel_become_rgb() -> None:
    base = Image.fromarray(_gradient())
    for mode in ("L", "LA", "P", "1"):
        out = decode_image(_save(base.convert(mode), "PNG"))
        assert out.shape == (48, 64, 3) and out.dtype == np.uint8, mode
        if mode in ("L", "LA", "1"):
            assert (out[:, :, 0] == out[:, :, 1]).all() and (out[:, :, 1] == out[:, :, 2]).all()
    gray_jpeg = decode_image(_save(base.convert("L"), "JPEG"))
    assert gray_jpeg.shape == (48, 64, 3)


def test_exif_orientation_is_applied(faces_dir: Path) -> None:
    from models.detector import FaceDetector

    upright = Image.open(faces_dir / "obama.jpg").convert("RGB")
    # Store the photo lying on its side, with EXIF Orientation 6 ("rotate 90° clockwise to view").
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(stored, "JPEG", quality=92, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape[:2] == (upright.height, upright.width)
    faces = FaceDetector(min_face_size=80).detect(out)
    assert len(faces) == 1
    eyes_y = faces.landmarks[0, :2, 1].mean()
    mouth_y = faces.landmarks[0, 3:, 1].mean()
    assert eyes_y < faces.landmarks[0, 2, 1] < mouth_y  # eyes above nose above mouth: upright
    assert faces.landmarks[0, 0, 0] < faces.landmarks[0, 1, 0]


def test_broken_exif_does_not_reject_the_photo() -> None:
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    out = decode_image(_save(Image.fromarray(_gradient()), "JPEG", exif=exif.tobytes()))
    assert out.shape == (48, 64, 3)


# ---------------------------------------------------------------------- rejected inputs


def test_zero_bytes() -> None:
    _expect("BAD_IMAGE", b"")


def test_text_file() -> None:
    _expect("BAD_IMAGE", b"name,age\nalice,42\n" * 20)


def test_truncated_jpeg() -> None:
    data = _save(Image.fromarray(_gradient(320, 240)), "JPEG", quality=90)
    for cut in (10, len(data) // 4, len(data) // 2, len(data) - 200):
        _expect("BAD_IMAGE", data[:cut])


def test_truncated_and_corrupt_png() -> None:
    data = _save(Image.fromarray(_gradient(320, 240)), "PNG")
    _expect("BAD_IMAGE", data[: len(data) // 2])
    corrupt = bytearray(data)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 64] = bytes(64)  # zlib stream broken (and CRC mismatch)
    _expect("BAD_IMAGE", bytes(corrupt))


def test_unsupported_formats_are_rejected() -> None:
    image = Image.fromarray(_gradient())
    for fmt in ("GIF", "TIFF", "PPM"):
        error = _expect("BAD_IMAGE", _save(image, fmt))
        assert "JPEG" in str(error)


def test_side_over_6000_px_is_too_large() -> None:
    data = _save(Image.new("RGB", (6001, 8)), "PNG")
    error = _expect("TOO_LARGE", data)
    assert "6001" in str(error)
    assert decode_image(_save(Image.new("RGB", (6000, 8)), "PNG")).shape == (8, 6000, 3)


def test_decompression_bomb_header_is_rejected_before_decoding() -> None:
    # ~30 GB of pixels claimed by a 60-byte file: must fail fast on the header.
    _expect("TOO_LARGE", _png_header_only(100_000, 100_000))
    # Within Pillow's own hard limit but beyond ours.
    _expect("TOO_LARGE", _png_header_only(5_000, 9_000))
    # A header within the limits but no real pixel data: corrupt, not a crash or a grey image.
    _expect("BAD_IMAGE", _png_header_only(4_000, 4_000, idat=zlib.compress(b"\x00" * 100)))


def test_pillow_bomb_guard_still_applies_with_relaxed_limits() -> None:
    # Even if a caller raises our limits, Pillow's bomb warning/error is turned into TOO_LARGE.
    _expect("TOO_LARGE", _png_header_only(20_000, 20_000), max_side=10**6, max_pixels=10**12)
    _expect("TOO_LARGE", _png_header_only(10_000, 10_000), max_side=10**6, max_pixels=10**12)


def test_oversize_bytes() -> None:
    data = _save(Image.fromarray(_gradient()), "PNG")
    error = _expect("TOO_LARGE", data, max_bytes=len(data) - 1)
    assert str(len(data)) in str(error)
    _expect("TOO_LARGE", b"\xff\xd8\xff" + bytes(10 * 1024 * 1024))  # default limit: 10 MiB


def test_image_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_image(b"\x00")


# ---------------------------------------------------------------------- encoding


def test_encode_roundtrip() -> None:
    rgb = _gradient()
    assert (decode_image(encode_png(rgb)) == rgb).all()
    jpeg = encode_jpeg(rgb, quality=95)
    assert jpeg[:2] == b"\xff\xd8"
    assert np.abs(decode_image(jpeg).astype(int) - rgb).mean() < 3
    with pytest.raises(ValueError):
        encode_jpeg(rgb, quality=0)
    with pytest.raises(ValueError):
        encode_png(rgb[:, :, 0])
