"""Motion gate (SPEC §3 step 3): skip still frames before running the detector on them.

A frame passes when enough of its pixels changed since the last frame that passed. Comparing with
the last *passed* frame, not the previous one, lets slow changes (someone walking in slowly)
accumulate until they pass instead of slipping through in steps too small to notice.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_WIDTH = 64
# Grey-level change (0-255) that counts a pixel of the downscaled frame as changed: above
# compression noise, which the downscaling already averages away.
DEFAULT_PIXEL_DELTA = 20


class MotionGate:
    """`threshold` is the fraction of changed pixels (0..1) a frame needs to pass; 0 passes all."""

    def __init__(self, threshold: float, width: int = DEFAULT_WIDTH, pixel_delta: int = DEFAULT_PIXEL_DELTA) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"motion threshold must be in [0, 1], got {threshold}")
        if width < 8:
            raise ValueError(f"width must be >= 8, got {width}")
        self.threshold = threshold
        self.width = width
        self.pixel_delta = pixel_delta
        self.frames_skipped = 0
        self._reference: np.ndarray | None = None

    def check(self, image: np.ndarray) -> bool:
        """True when the RGB frame has motion (and becomes the new reference); counts skips."""
        if self.threshold == 0.0:
            return True
        small = self._thumbnail(image)
        if self._reference is None or self._reference.shape != small.shape:
            self._reference = small
            return True
        if self._changed_fraction(small) >= self.threshold:
            self._reference = small
            return True
        self.frames_skipped += 1
        return False

    def _changed_fraction(self, thumbnail: np.ndarray) -> float:
        """Fraction of pixels of `thumbnail` that differ from the reference by more than `pixel_delta`."""
        diff = cv2.absdiff(thumbnail, self._reference)
        return float(np.count_nonzero(diff > self.pixel_delta)) / diff.size

    def reset(self) -> None:
        """Forget the reference frame (e.g. after reopening a stream): the next frame passes."""
        self._reference = None

    def _thumbnail(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        size = (self.width, max(1, round(height * self.width / width)))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
