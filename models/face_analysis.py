"""Photo analysis for the API: detect, score, choose faces, cut each embedder's chip.

Plain NumPy/PyTorch; the extractor deployment runs it next to the embedder so the API process
never loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.alignment import align_faces
from models.detector import FaceDetector
from models.quality import face_quality
from models.types import Detections

FaceSelect = Literal["biggest", "all", "reject"]


class NoFaceError(ValueError):
    """No face found (or none inside the requested box)."""


class TooManyFacesError(ValueError):
    """Several faces with face_select=reject; `boxes` lists them."""

    def __init__(self, message: str, boxes: list[list[float]]) -> None:
        super().__init__(message)
        self.boxes = boxes


@dataclass
class FaceInPhoto:
    bbox: list[float]
    score: float
    landmarks: list[list[float]]
    quality: float
    index: int  # position in the detector's output (biggest first)

    @property
    def size(self) -> float:
        return max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])


def describe(image: np.ndarray, detections: Detections) -> list[FaceInPhoto]:
    """Faces of one photo, biggest first, with their quality scores."""
    ordered = detections.order_by_size()
    qualities = face_quality(image, ordered) if len(ordered) else np.zeros(0)
    return [
        FaceInPhoto(
            bbox=[round(float(v), 2) for v in ordered.boxes[i]],
            score=round(float(ordered.scores[i]), 4),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in ordered.landmarks[i]],
            quality=round(float(qualities[i]), 4),
            index=i,
        )
        for i in range(len(ordered))
    ]


def _overlap(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_faces(faces: list[FaceInPhoto], mode: FaceSelect = "biggest",
                 bbox: list[float] | None = None) -> list[FaceInPhoto]:
    """The faces an enrolment or search uses: an explicit `bbox` wins over `mode`."""
    if not faces:
        raise NoFaceError("no face was found in the photo")
    if bbox is not None:
        best = max(faces, key=lambda f: _overlap(f.bbox, bbox))
        if _overlap(best.bbox, bbox) < 0.3:
            raise NoFaceError("no face was found inside the given bbox")
        return [best]
    if mode == "all":
        return faces
    if mode == "reject" and len(faces) > 1:
        raise TooManyFacesError(f"the photo holds {len(faces)} faces", [f.bbox for f in faces])
    return [faces[0]]


class PhotoAnalyzer:
    """Detector + quality + chips for one embedder geometry (size, template, padding)."""

    def __init__(self, chip_size: int = 150, template: str = "dlib", padding: float | None = 0.25,
                 min_face_size: int = 20, device: str | None = None) -> None:
        self.detector = FaceDetector(min_face_size=min_face_size, device=device)
        self.chip_size, self.template, self.padding = chip_size, template, padding

    def analyze(self, image: np.ndarray) -> list[FaceInPhoto]:
        return describe(image, self.detector.detect(image))

    def chips(self, image: np.ndarray, faces: list[FaceInPhoto]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.chip_size, self.chip_size, 3), np.uint8)
        landmarks = np.array([f.landmarks for f in faces], dtype=np.float32)
        return align_faces(image, landmarks, size=self.chip_size, template=self.template, padding=self.padding)
