"""Small NumPy-based value types shared by the detector, alignment and quality code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Landmark order, as MTCNN gives it. "Left"/"right" are as seen in the image (image-left = smaller
# x), i.e. LEFT_EYE is the subject's right eye.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)


@dataclass(frozen=True, eq=False)
class Detections:
    """The faces found in one frame, as parallel arrays (row i is face i).

    boxes: (N, 4) float32 x1, y1, x2, y2 in frame pixels (x2/y2 exclusive-ish, as MTCNN gives them;
        they may reach slightly outside the frame).
    scores: (N,) float32 detector confidence in [0, 1] (MTCNN's last-stage probability).
    landmarks: (N, 5, 2) float32 x, y in frame pixels, in `LANDMARK_NAMES` order.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.landmarks.shape != (n, 5, 2):
            raise ValueError(
                f"inconsistent detection arrays: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"landmarks {self.landmarks.shape}"
            )

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    @property
    def sizes(self) -> np.ndarray:
        """Face size in pixels: the longer side of the box (what `min_face_size` compares to)."""
        return np.maximum(self.widths, self.heights)

    def select(self, index: np.ndarray | slice | list[int]) -> Detections:
        """A subset by boolean mask, indices or slice (rows keep their order)."""
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])

    def order_by_size(self) -> Detections:
        """Largest face first (what `face_select=biggest` wants)."""
        area = self.widths * self.heights
        return self.select(np.argsort(-area, kind="stable"))
