"""Alignment at the image border: our chip equals dlib's own `get_face_chip` for the same transform.

A shared photo is cut through the face (left and top), dlib's HOG detector and 5-point model give
dlib's chip, and the exact image→chip transform dlib used is read back from dlib (ramp images, as
benchmarks/measure_alignment_template.py does); `models.alignment.warp_chips` then warps the same
cut photo with that transform. The chips must embed alike (dlib ResNet, cosine ≥ 0.99) and agree
pixel for pixel up to rounding.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models.alignment import warp_chips
from models.dlib_resnet import DlibResNetEmbedder

dlib = pytest.importorskip("dlib")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face_recognition_models (dlib's landmark model) is not installed", allow_module_level=True)

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from measure_alignment_template import chip_to_image_affine, load_rgb, shape_predictor_path  # noqa: E402


@pytest.fixture(scope="module")
def embedder() -> DlibResNetEmbedder:
    return DlibResNetEmbedder(device="cpu")


@pytest.fixture(scope="module")
def dlib_models() -> tuple[object, object]:
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(shape_predictor_path()))


def cut_through_face(image: np.ndarray, face: object, side: str, fraction: float) -> tuple[np.ndarray, object]:
    """The photo with `fraction` of the face cut away on `side`, and the face rectangle in it."""
    if side == "left":
        x0 = int(face.left() + fraction * face.width())
        return (np.ascontiguousarray(image[:, x0:]),
                dlib.rectangle(face.left() - x0, face.top(), face.right() - x0, face.bottom()))
    y0 = int(face.top() + fraction * face.height())
    return (np.ascontiguousarray(image[y0:]),
            dlib.rectangle(face.left(), face.top() - y0, face.right(), face.bottom() - y0))


@pytest.mark.parametrize(("side", "fraction"), [("left", 0.35), ("left", 0.5), ("top", 0.35)])
def test_chip_of_a_face_cut_by_the_border_matches_dlib(faces_dir: Path, embedder: DlibResNetEmbedder,
                                                       dlib_models: tuple[object, object], side: str,
                                                       fraction: float) -> None:
    detector, predictor = dlib_models
    photo = load_rgb(faces_dir / "obama.jpg")
    image, rect = cut_through_face(photo, detector(photo, 1)[0], side, fraction)
    shape = predictor(image, rect)
    theirs = dlib.get_face_chip(image, shape, 150, 0.25)
    chip_to_image = chip_to_image_affine(dlib.get_face_chip_details(shape, 150, 0.25), *image.shape[:2])
    image_to_chip = np.linalg.inv(np.vstack([chip_to_image, [0, 0, 1]]))[:2]
    ours = warp_chips(image, image_to_chip[None], 150)[0]

    black_theirs, black_ours = theirs.sum(axis=2) == 0, ours.sum(axis=2) == 0
    assert black_theirs.mean() > 0.1  # the cut really reaches into the chip
    assert np.array_equal(black_theirs, black_ours)  # the same pixels fall outside the image
    assert np.abs(theirs.astype(int) - ours).max() <= 2
    vectors = embedder.embed_normalized(np.stack([theirs, ours]))
    assert float(vectors[0] @ vectors[1]) >= 0.99
