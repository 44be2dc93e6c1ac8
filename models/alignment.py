"""Five-point face alignment: a similarity transform from MTCNN's landmarks to an embedder's chip.

`align_faces(image, landmarks)` fits, for every face at once, the least-squares similarity
transform (rotation, uniform scale, translation: Umeyama's method) that takes MTCNN's five points
(left eye, right eye, nose tip, left and right mouth corner) onto a template, then warps the face
into a size×size chip with bilinear sampling.

Templates
---------
Templates are stored in *unit face coordinates* u, the size- and padding-free space dlib's
`get_face_chip_details` works in: a chip of `size` pixels with `padding` p holds unit coordinate u
at chip pixel index c = (p + u) / (1 + 2p) * (size - 1).

- "dlib" (default size 150, padding 0.25): where dlib's own chips — `get_face_chip_details(shape,
  150, 0.25)` from its 5-point model (eye corners, nose base), what the dlib ResNet was trained on —
  put MTCNN's five points. Measured, not derived: on the 29 faces of the shared photos
  (../shared/data/faces, including knn_examples), dlib's HOG detector + 5-point predictor gave
  dlib's chip, MTCNN (models.detector) ran on the same photo, MTCNN's points were mapped into
  dlib's chip with the exact chip→image mapping read back from dlib, and averaged.
  `benchmarks/measure_alignment_template.py` reproduces the numbers. The same template serves the
  age/gender models' chips (dlib geometry, padding 0.2, 64 and 32 px): measured directly at those
  geometries it agrees with this one to within 0.35 chip pixels.
- "facenet" (default size 160, padding 0): facenet-pytorch's convention is MTCNN's box, margin
  0, resized to 160×160 (`extract_face`). The template is the mean position of MTCNN's points in
  such crops over the same photos (same script). A similarity transform keeps the face's aspect
  ratio and removes roll, where the box crop stretches and does not rotate; `crop_faces`
  reproduces facenet-pytorch's box crop exactly when bit-for-bit parity with it matters.

Sampling matches dlib's `extract_image_chip`: when the chip is more than 2× smaller than the face,
the image is first halved with a 5-tap Gaussian pyramid (cv2.pyrDown, the [1 4 6 4 1] filter dlib's
`pyramid_down<2>` uses) until the remaining scale step is at most 2, then sampled bilinearly;
pixels outside the image are black, as in dlib, including those whose bilinear neighbourhood only
partly lies inside it (at a face cut by the image border; see `_inside_for_bilinear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np


class AlignmentError(ValueError):
    """Bad input to alignment (shapes, dtypes, unknown template)."""


@dataclass(frozen=True)
class Template:
    name: str
    points: np.ndarray  # (5, 2) unit face coordinates, MTCNN landmark order
    size: int  # default chip size
    padding: float  # default padding

    def chip_points(self, size: int | None = None, padding: float | None = None) -> np.ndarray:
        """The five target points in chip pixel coordinates for a size×size chip."""
        size = self.size if size is None else size
        padding = self.padding if padding is None else padding
        return (padding + self.points) / (1.0 + 2.0 * padding) * (size - 1)


# Measured by benchmarks/measure_alignment_template.py on 29 faces (see module docstring). Spread
# (std over faces) is 0.015–0.055 unit: the nose tip's x varies most, with yaw.
DLIB_TEMPLATE: Final = Template(
    name="dlib",
    points=np.array(
        [
            [0.22733, 0.20394],  # left eye (image-left)
            [0.77193, 0.20550],  # right eye
            [0.49665, 0.53651],  # nose tip
            [0.23947, 0.79159],  # mouth left
            [0.75990, 0.78769],  # mouth right
        ],
        dtype=np.float64,
    ),
    size=150,
    padding=0.25,
)

FACENET_TEMPLATE: Final = Template(
    name="facenet",
    points=np.array(
        [
            [0.29573, 0.39452],
            [0.73868, 0.39836],
            [0.51205, 0.59458],
            [0.29896, 0.74579],
            [0.72312, 0.74683],
        ],
        dtype=np.float64,
    ),
    size=160,
    padding=0.0,
)

TEMPLATES: Final = {t.name: t for t in (DLIB_TEMPLATE, FACENET_TEMPLATE)}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise AlignmentError(f"unknown alignment template {name!r}; known: {sorted(TEMPLATES)}") from None


def similarity_transforms(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (Umeyama 1991) taking src[i] onto dst, vectorised.

    src: (N, K, 2) points per face; dst: (K, 2) or (N, K, 2). Returns (N, 2, 3) affine matrices
    M with dst ≈ M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.broadcast_to(np.asarray(dst, dtype=np.float64), src.shape)
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = dst.mean(axis=1, keepdims=True)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum(axis=(1, 2)) / src.shape[1]
    cov = np.einsum("nki,nkj->nij", dst_c, src_c) / src.shape[1]
    u, s, vt = np.linalg.svd(cov)
    # Reflection guard: force det(R) = +1 by flipping the weakest axis when needed.
    sign = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    d = np.stack([np.ones_like(sign), sign], axis=1)
    rotation = np.einsum("nij,nj,njk->nik", u, d, vt)
    scale = (s * d).sum(axis=1) / np.maximum(src_var, 1e-12)
    linear = scale[:, None, None] * rotation
    shift = dst_mean[:, 0, :] - np.einsum("nij,nj->ni", linear, src_mean[:, 0, :])
    return np.concatenate([linear, shift[:, :, None]], axis=2)


def align_faces(
    image: np.ndarray,
    landmarks: np.ndarray,
    *,
    size: int | None = None,
    template: str | Template = "dlib",
    padding: float | None = None,
) -> np.ndarray:
    """Aligned chips (N, size, size, 3) uint8 of the faces with the given (N, 5, 2) landmarks.

    `size` and `padding` default to the template's (dlib: 150 px, 0.25; facenet: 160 px, 0).
    """
    _check_image(image)
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        raise AlignmentError(f"landmarks must be (N, 5, 2), got {np.shape(landmarks)}")
    if not np.isfinite(points).all():
        raise AlignmentError("landmarks contain NaN or infinite values")
    tmpl = get_template(template) if isinstance(template, str) else template
    size = tmpl.size if size is None else int(size)
    if size < 2:
        raise AlignmentError(f"chip size must be >= 2, got {size}")
    transforms = similarity_transforms(points, tmpl.chip_points(size, padding))
    return warp_chips(image, transforms, size)


def warp_chips(image: np.ndarray, transforms: np.ndarray, size: int) -> np.ndarray:
    """Warp the image into one size×size chip per (2, 3) image→chip transform, dlib-style."""
    chips = np.zeros((len(transforms), size, size, 3), np.uint8)
    pyramid = _Pyramid(image)
    for i, matrix in enumerate(transforms):
        level, level_matrix = pyramid.level_for(matrix)
        chips[i] = cv2.warpAffine(
            level,
            level_matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        chips[i][~_inside_for_bilinear(level_matrix, level.shape[0], level.shape[1], size)] = 0
    return chips


def _inside_for_bilinear(matrix: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Chip pixels whose whole 2×2 bilinear neighbourhood lies inside the image.

    dlib's bilinear interpolation gives black as soon as one of the four neighbours is outside the
    image, where OpenCV's constant border blends the last pixel with black: at a face cut by the
    image border that made a one-pixel seam of different values along the cut (up to 230 grey
    levels apart). Blacking out the same pixels as dlib makes the chip equal to
    `dlib.get_face_chip`'s for the same transform (tests/integration/test_alignment_border.py)."""
    inverse = cv2.invertAffineTransform(matrix)
    rows, cols = np.mgrid[0:size, 0:size]
    x = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    y = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    return (x >= 0) & (y >= 0) & (x < width - 1) & (y < height - 1)


class _Pyramid:
    """Gaussian pyramid of one image, built lazily and shared by all faces of the image."""

    def __init__(self, image: np.ndarray) -> None:
        self._levels = [np.ascontiguousarray(image)]

    def level_for(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Image pixels per chip pixel; halve the image while that step is over 2, as dlib does.
        step = 1.0 / np.sqrt(abs(np.linalg.det(matrix[:, :2])))
        level = 0
        while step > 2.0 and min(self._levels[level].shape[:2]) > 3:
            step /= 2.0
            level += 1
            if level == len(self._levels):
                self._levels.append(cv2.pyrDown(self._levels[-1]))
        # cv2.pyrDown's pixel q of level L sits at 2**L * q in the original image.
        factor = float(2**level)
        level_matrix = matrix.copy()
        level_matrix[:, :2] *= factor
        return self._levels[level], level_matrix


def crop_faces(image: np.ndarray, boxes: np.ndarray, *, size: int = 160, margin: int = 0) -> np.ndarray:
    """facenet-pytorch's `extract_face` for every box: box ± margin, resized to size×size (INTER_AREA).

    `margin` is in pixels of the output, as in facenet-pytorch. Returns (N, size, size, 3) uint8.
    """
    _check_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = image.shape[:2]
    chips = np.zeros((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        mx = margin * (x2 - x1) / (size - margin)
        my = margin * (y2 - y1) / (size - margin)
        left, top = int(max(x1 - mx / 2, 0)), int(max(y1 - my / 2, 0))
        right, bottom = int(min(x2 + mx / 2, width)), int(min(y2 + my / 2, height))
        if right > left and bottom > top:
            chips[i] = cv2.resize(image[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
    return chips


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise AlignmentError(
            f"image must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'dtype', None)} "
            f"{getattr(image, 'shape', None)}"
        )
