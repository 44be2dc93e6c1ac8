"""Face quality score in [0, 1] (higher is better), and a by-name registry for pluggable models.

The score ranks shots of the same face (best shot per track) and filters unusable ones
(`min_quality`). It combines four factors, each in [0, 1], as a weighted geometric mean, so one
bad factor (a blurred or profile face) pulls the score down whatever the others say:

    quality = confidence^0.15 · size^0.25 · sharpness^0.35 · pose^0.25

- confidence = clip((score − 0.7) / 0.3, 0, 1): MTCNN's final probability rescaled from its own
  last-stage threshold (0.7) upwards; real faces score 0.95–1.0.
- size = sqrt(min(1, face_px / 100)): face size (longer box side, pixels); 25 px → 0.5, 50 px →
  0.71, 100 px and more → 1 (the embedders' chips are 150–160 px with the face ~100 px across).
- sharpness = v / (v + 100), v = variance of the 4-neighbour Laplacian of the grey, aligned
  64×64 face crop (dlib template, no padding: eyebrows to chin). Crops are aligned, so v measures
  detail per face, not per frame: v is 250–1700 on sharp photos, 5–130 after a Gaussian blur of
  σ = 2–4 px, and 5–1000 on faces in the 640×360 test clip (small faces are up-sampled into the
  crop and come out soft, which is what we want: they carry less identity information).
- pose = max(0, cos yaw)² · max(0, cos roll)^½, with yaw and roll estimated from the landmarks
  (`estimate_pose`); yaw 30° → 0.75, 45° → 0.5, 60° → 0.25. Roll is mostly undone by alignment,
  so it weighs less.

Typical values (shared photos and test clip): sharp photos of 75–600 px faces 0.82–0.98 (0.69
for a face turned ~55°); obama.jpg 0.95, the same photo blurred with σ = 3 px 0.79; in the
640×360 clip, ~110 px faces 0.75–0.89, 30–40 px background faces 0.35–0.45, half-profile blurred
faces 0.28–0.5. A `min_quality` around 0.5 drops what is not worth matching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import numpy as np

from .alignment import align_faces
from .types import LEFT_EYE, NOSE, RIGHT_EYE, Detections

CONFIDENCE_FLOOR: Final = 0.7
FULL_SIZE_PX: Final = 100.0
SHARPNESS_HALF: Final = 100.0
SHARPNESS_CHIP: Final = 64
# Nose-tip depth in front of the eyes, in half inter-ocular distances (anthropometric average),
# used to turn the nose's sideways offset into a yaw angle.
NOSE_DEPTH: Final = 0.7
WEIGHTS: Final = {"confidence": 0.15, "size": 0.25, "sharpness": 0.35, "pose": 0.25}


# ---------------------------------------------------------------------- factors


def estimate_pose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and roll in degrees from (N, 5, 2) MTCNN landmarks (vectorised).

    Roll is the angle of the eye line. Yaw comes from how far the nose tip sits from the eyes'
    midpoint along the eye line (so pitch does not leak in), relative to half the inter-ocular
    distance: offset = (nose depth / half_iod) · tan(yaw). Positive yaw = nose towards image-right.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    eye_vec = pts[:, RIGHT_EYE] - pts[:, LEFT_EYE]
    roll = np.arctan2(eye_vec[:, 1], eye_vec[:, 0])
    half_iod = np.maximum(np.linalg.norm(eye_vec, axis=1) / 2.0, 1e-6)
    eye_mid = (pts[:, LEFT_EYE] + pts[:, RIGHT_EYE]) / 2.0
    axis = np.stack([np.cos(roll), np.sin(roll)], axis=1)  # unit vector along the eye line
    offset = ((pts[:, NOSE] - eye_mid) * axis).sum(axis=1) / half_iod
    yaw = np.arctan(offset / NOSE_DEPTH)
    return np.degrees(yaw), np.degrees(roll)


def sharpness(chips: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of each (N, H, W, 3) uint8 chip, in grey levels²."""
    chips = np.asarray(chips)
    if len(chips) == 0:
        return np.zeros(0, np.float64)
    gray = chips.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1] + gray[:, 1:-1, :-2] + gray[:, 1:-1, 2:] - 4.0 * gray[:, 1:-1, 1:-1]
    return lap.reshape(len(gray), -1).var(axis=1).astype(np.float64)


@dataclass(frozen=True)
class QualityComponents:
    """Each factor of the quality score (arrays of shape (N,), all in [0, 1] except the raw ones)."""

    confidence: np.ndarray
    size: np.ndarray
    sharpness: np.ndarray
    pose: np.ndarray
    laplacian_variance: np.ndarray  # raw
    yaw: np.ndarray  # degrees
    roll: np.ndarray  # degrees

    @property
    def score(self) -> np.ndarray:
        log_q = sum(weight * np.log(np.maximum(getattr(self, name), 1e-9)) for name, weight in WEIGHTS.items())
        return np.clip(np.exp(log_q), 0.0, 1.0)


def quality_components(
    scores: np.ndarray, sizes: np.ndarray, landmarks: np.ndarray, chips: np.ndarray
) -> QualityComponents:
    """All factors, vectorised. `chips` are the aligned sharpness crops (see `sharpness_chips`)."""
    scores = np.asarray(scores, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64)
    variance = sharpness(chips)
    yaw, roll = estimate_pose(landmarks)
    return QualityComponents(
        confidence=np.clip((scores - CONFIDENCE_FLOOR) / (1.0 - CONFIDENCE_FLOOR), 0.0, 1.0),
        size=np.sqrt(np.clip(sizes / FULL_SIZE_PX, 0.0, 1.0)),
        sharpness=variance / (variance + SHARPNESS_HALF),
        pose=np.maximum(np.cos(np.radians(yaw)), 0.0) ** 2 * np.maximum(np.cos(np.radians(roll)), 0.0) ** 0.5,
        laplacian_variance=variance,
        yaw=yaw,
        roll=roll,
    )


def sharpness_chips(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The crops sharpness is measured on: 64×64, dlib template, no padding (inner face)."""
    return align_faces(image, landmarks, size=SHARPNESS_CHIP, template="dlib", padding=0.0)


def face_quality(image: np.ndarray, detections: Detections) -> np.ndarray:
    """Quality in [0, 1] of every detected face of one frame, (N,) float64."""
    if len(detections) == 0:
        return np.zeros(0, np.float64)
    chips = sharpness_chips(image, detections.landmarks)
    return quality_components(detections.scores, detections.sizes, detections.landmarks, chips).score


# ---------------------------------------------------------------------- registry

M = TypeVar("M")


class UnknownModelError(KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:  # KeyError quotes its message; a plain sentence reads better
        return str(self.args[0])


class ModelRegistry(Generic[M]):
    """Models that plug in by name: `register(name, factory)`, `get(name)` (built once, then cached).

    Factories run lazily, so registering a model costs nothing until it is first used (the ONNX or
    torch weights load then).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[[], M]] = {}
        self._instances: dict[str, M] = {}

    def register(self, name: str, factory: Callable[[], M], *, replace: bool = False) -> None:
        if name in self._factories and not replace:
            raise ValueError(f"{self.kind} model {name!r} is already registered")
        self._factories[name] = factory
        self._instances.pop(name, None)

    def get(self, name: str) -> M:
        if name not in self._instances:
            try:
                factory = self._factories[name]
            except KeyError:
                raise UnknownModelError(
                    f"unknown {self.kind} model {name!r}; available: {sorted(self._factories)}"
                ) from None
            self._instances[name] = factory()
        return self._instances[name]

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


class QualityModel(Protocol):
    """A face quality estimator: (N,) scores in [0, 1], higher is better."""

    name: str

    def score(self, image: np.ndarray, detections: Detections) -> np.ndarray: ...


class LandmarkQuality:
    """The default quality model: the formula of this module."""

    name = "default"

    def score(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        return face_quality(image, detections)


QUALITY_MODELS: ModelRegistry[QualityModel] = ModelRegistry("quality")
QUALITY_MODELS.register("default", LandmarkQuality)


def get_quality_model(name: str = "default") -> QualityModel:
    return QUALITY_MODELS.get(name)
