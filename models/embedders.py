"""Face embedders by name: their chip geometry, their calibration, and how to build them.

Every stored vector records the embedder's `name` (its model id), so switching models is a
migration (re-embed from the saved crops), never a silent mix of incompatible vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from models.calibration import Calibration
from models.facenet import FACENET_CALIBRATION


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, chips: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    dim: int
    chip_size: int
    template: str  # alignment template (models.alignment)
    padding: float | None  # None: the template's own padding
    calibration: Calibration
    factory: Callable[..., Embedder]


def _dlib(**kwargs: Any) -> Embedder:
    from models.dlib_resnet import DlibResNetEmbedder

    return DlibResNetEmbedder(**kwargs)


def _facenet(**kwargs: Any) -> Embedder:
    from models.facenet import FaceNetEmbedder

    return FaceNetEmbedder(**kwargs)


# dlib's published operating point is a Euclidean distance of 0.6 between its raw descriptors, which
# are not unit length (norms 1.32–1.53, median 1.405 on the shared photos). For two descriptors of
# the median norm n, distance d and cosine c are tied by c = 1 − d²/(2n²); the anchors are the
# cosines for d = 0.5 / 0.6 / 0.7, measured by benchmarks/calibrate_embedders.py (docs/calibration.md).
DLIB_CALIBRATION = Calibration(strict_cosine=0.9367, medium_cosine=0.9088, low_cosine=0.8759)


EMBEDDERS: dict[str, EmbedderSpec] = {
    "dlib_resnet_v1": EmbedderSpec("dlib_resnet_v1", 128, 150, "dlib", 0.25, DLIB_CALIBRATION, _dlib),
    "facenet_vggface2": EmbedderSpec("facenet_vggface2", 512, 160, "facenet", None, FACENET_CALIBRATION, _facenet),
}
DEFAULT_EMBEDDER = "dlib_resnet_v1"


def embedder_spec(name: str) -> EmbedderSpec:
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise KeyError(f"unknown embedder {name!r}; known: {', '.join(sorted(EMBEDDERS))}") from None


def load_embedder(name: str = DEFAULT_EMBEDDER, **kwargs: Any) -> Embedder:
    return embedder_spec(name).factory(**kwargs)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
