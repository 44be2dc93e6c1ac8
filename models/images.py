"""Safe decoding of uploaded photos into RGB arrays, and JPEG/PNG encoding.

`decode_image` is the one entry point for untrusted image bytes (API uploads, bulk enrolment,
URL fetches). It enforces SPEC §5.1/§11:

- formats: JPEG (including MPO, what many phone cameras write), PNG, WebP and BMP only;
- size: at most `max_bytes` of input, at most `max_side` pixels on the longest side and
  `max_pixels` in total. Dimensions are read from the header *before* any pixel is decoded, so a
  decompression bomb (a tiny file claiming huge dimensions) costs nothing; Pillow's own bomb
  warning is turned into an error as a second line of defence;
- content: zero bytes, non-images, truncated and corrupt files are rejected (Pillow's
  `LOAD_TRUNCATED_IMAGES` is never enabled, so a truncated file fails instead of decoding grey);
- normalisation: EXIF orientation is applied; CMYK, 16-bit, grayscale, palette and images with
  alpha (composited on white) all come out as H×W×3 uint8 RGB.

Every failure is an `ImageError` (a `ValueError`) with `code` "BAD_IMAGE" or "TOO_LARGE" and a
message fit to show to the user; no other exception escapes for bad input.
"""

from __future__ import annotations

import io
import warnings
from typing import Final, Literal

import numpy as np
from PIL import Image, ImageOps

MAX_BYTES: Final = 10 * 1024 * 1024
MAX_SIDE: Final = 6000
MAX_PIXELS: Final = MAX_SIDE * MAX_SIDE

# Pillow openers we try, and the formats they may report. The JPEG opener reports "MPO" for a JPEG
# with extra frames, as many phone cameras write.
_OPENERS: Final = ["JPEG", "PNG", "WEBP", "BMP"]
_ALLOWED_FORMATS: Final = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP"})
_SIXTEEN_BIT_MODES: Final = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_WHITE: Final = (255, 255, 255)

ImageErrorCode = Literal["BAD_IMAGE", "TOO_LARGE"]

# Register every Pillow plugin now: Image.open(formats=[...]) only preloads a few, and would raise
# KeyError for "WEBP" on a fresh interpreter.
Image.init()


class ImageError(ValueError):
    """An upload that is not an acceptable image; `code` is the API error code."""

    def __init__(self, code: ImageErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ImageErrorCode = code
        self.message = message


def decode_image(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Decode untrusted image bytes into an upright (H, W, 3) uint8 RGB array.

    Raises `ImageError` ("TOO_LARGE" for size limits, "BAD_IMAGE" for anything else).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError("BAD_IMAGE", f"image data must be bytes, not {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise ImageError("BAD_IMAGE", "the image is empty (0 bytes)")
    if size > max_bytes:
        raise ImageError("TOO_LARGE", f"the image is {size} bytes; the limit is {max_bytes} bytes")
    with warnings.catch_warnings():
        # Pillow warns (not raises) between MAX_IMAGE_PIXELS and twice that; treat it as a bomb.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(bytes(data))
        try:
            _check_header(image, max_side=max_side, max_pixels=max_pixels)
            if image.format == "PNG":
                _verify_png(bytes(data))
            _load(image)
            image = _apply_exif_orientation(image)
            rgb = _to_rgb8(image)
        finally:
            image.close()
    return np.ascontiguousarray(rgb)


def _open(data: bytes) -> Image.Image:
    """Parse the header only (Pillow opens lazily); no pixel data is decoded here."""
    try:
        return Image.open(io.BytesIO(data), formats=_OPENERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("TOO_LARGE", f"the image dimensions are too large: {error}") from error
    except Image.UnidentifiedImageError as error:
        raise ImageError("BAD_IMAGE", "not a supported image (JPEG, PNG, WebP or BMP expected)") from error
    except Exception as error:  # Pillow raises many types for garbage headers
        raise ImageError("BAD_IMAGE", f"the image header is corrupt: {error}") from error


def _check_header(image: Image.Image, *, max_side: int, max_pixels: int) -> None:
    if image.format not in _ALLOWED_FORMATS:
        raise ImageError("BAD_IMAGE", f"unsupported image format {image.format}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError("BAD_IMAGE", f"the image has no pixels ({width}x{height})")
    if max(width, height) > max_side:
        raise ImageError("TOO_LARGE", f"the image is {width}x{height} pixels; the longest side may be {max_side}")
    if width * height > max_pixels:
        raise ImageError("TOO_LARGE", f"the image is {width}x{height} pixels; at most {max_pixels} pixels are allowed")


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC: Pillow's decoder does not, and a damaged zlib stream can still
    inflate into a silently corrupted picture."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            probe.verify()
    except Exception as error:
        raise ImageError("BAD_IMAGE", f"the PNG file is corrupt: {error}") from error


def _load(image: Image.Image) -> None:
    """Decode the pixels; truncated or corrupt data raises instead of yielding partial images."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError("TOO_LARGE", f"the image dimensions are too large: {error}") from error
    except MemoryError as error:
        raise ImageError("TOO_LARGE", "the image is too large to decode") from error
    except Exception as error:  # OSError, SyntaxError, zlib/struct errors, ...
        raise ImageError("BAD_IMAGE", f"the image is truncated or corrupt: {error}") from error


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:
        # A broken EXIF block should not reject an otherwise valid photo: keep it as stored.
        return image


def _to_rgb8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in _SIXTEEN_BIT_MODES:
        # convert("RGB") would clip 16-bit values at 255 (an all-white face); rescale instead.
        values = np.asarray(image).astype(np.float32)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        return _composite_on_white(image)
    # CMYK (Pillow undoes Adobe's inverted CMYK itself), L, 1, YCbCr, LAB, HSV, ...
    try:
        return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise ImageError("BAD_IMAGE", f"cannot convert image mode {mode} to RGB: {error}") from error


def _composite_on_white(image: Image.Image) -> np.ndarray:
    # Transparent regions become white (like a browser shows them), not black, so a cut-out face
    # photo keeps a plain background.
    background = Image.new("RGBA", image.size, _WHITE + (255,))
    return np.asarray(Image.alpha_composite(background, image).convert("RGB"))


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as JPEG bytes."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = io.BytesIO()
    _as_pil(rgb).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as PNG bytes (lossless; for normalised crops)."""
    buffer = io.BytesIO()
    # Level 1: crops are small, and encode speed matters more than a few bytes.
    _as_pil(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _as_pil(rgb: np.ndarray) -> Image.Image:
    array = np.asarray(rgb)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {array.dtype} {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array))


_FORMAT_EXTENSIONS: Final = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}


def image_extension(data: bytes, default: str = "jpg") -> str:
    """The file extension of the image's actual format, read from its header (a client's file name may
    say otherwise, and the stored file's extension decides the content type it is served with)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _FORMAT_EXTENSIONS.get(image.format or "", default)
    except Exception:  # noqa: BLE001 - not an image we know: the caller's default
        return default
