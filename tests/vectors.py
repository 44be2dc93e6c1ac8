"""Synthetic unit vectors placed exactly, standing in for face embeddings in tests."""

from __future__ import annotations

import numpy as np


def unit_vector(seed: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def vector_near(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` from the unit vector `base`."""
    other = unit_vector(seed, base.size)
    other -= other.dot(base) * base
    other /= np.linalg.norm(other)
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)
