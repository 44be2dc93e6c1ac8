"""Mapping each embedder's native similarity to a confidence in [0, 1].

Every gallery scores by cosine similarity of L2-normalised vectors. Models differ in how cosine
values spread, so each embedder declares a `Calibration`: a monotone piecewise-linear map from
cosine to confidence through anchor points placed at the model's own operating points. The anchors
are chosen so that the named presets mean the same strictness for every model:

    preset   confidence   dlib ResNet (Euclidean on its raw descriptor)   FaceNet VGGFace2 (L2 of unit vectors)
    strict   0.85         ≈ 0.50                                           1.00
    medium   0.75         ≈ 0.60 (dlib's published threshold; default)    1.10 (the usual facenet-pytorch cut)
    low      0.65         ≈ 0.70                                           1.20
    none     0.00         everything is a candidate

For unit vectors Euclidean distance d and cosine c are tied by d² = 2 − 2c; dlib's raw descriptors
are not exactly unit length, so the dlib anchors were measured on real chips (see
`docs/calibration.md` for the data, the measured norms and the false-match rates per preset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRESETS: dict[str, float] = {"strict": 0.85, "medium": 0.75, "low": 0.65, "none": 0.0}
DEFAULT_THRESHOLD = PRESETS["medium"]


def cosine_for_distance(distance: float) -> float:
    """The cosine of two unit vectors at Euclidean `distance`."""
    return 1.0 - distance * distance / 2.0


@dataclass(frozen=True)
class Calibration:
    """Cosine anchors for the strict / medium / low presets; the map is linear between anchors."""

    strict_cosine: float
    medium_cosine: float
    low_cosine: float

    def __post_init__(self) -> None:
        if not -1.0 < self.low_cosine < self.medium_cosine < self.strict_cosine < 1.0:
            raise ValueError("calibration anchors must satisfy -1 < low < medium < strict < 1")

    @property
    def _xs(self) -> np.ndarray:
        return np.array([-1.0, self.low_cosine, self.medium_cosine, self.strict_cosine, 1.0])

    _ys = np.array([0.0, PRESETS["low"], PRESETS["medium"], PRESETS["strict"], 1.0])

    def confidence(self, cosine: np.ndarray | float) -> np.ndarray:
        """Confidence in [0, 1] for cosine similarities (vectorised)."""
        return np.interp(np.asarray(cosine, dtype=np.float64), self._xs, self._ys)

    def cosine(self, confidence: float) -> float:
        """The cosine that gives `confidence`: how a confidence threshold becomes an index cut-off."""
        if not 0.0 <= confidence <= 1.0:
            raise ValueError("confidence must be in [0, 1]")
        return float(np.interp(confidence, self._ys, self._xs))


def resolve_threshold(value: float | str | None, default: float = DEFAULT_THRESHOLD) -> float:
    """A threshold from a number in [0, 1] or a preset name; None gives `default`."""
    if value is None:
        return default
    if isinstance(value, str):
        if value in PRESETS:
            return PRESETS[value]
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"threshold must be a number in [0, 1] or one of {sorted(PRESETS)}") from None
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError("threshold must be in [0, 1]")
    return float(value)
