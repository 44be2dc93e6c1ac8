"""Track-level identity: a track's match is decided from several of its best frames, not one.

Frame side (`TrackSamples`, used by `actors/frame_pipeline.py`): every track keeps the aligned chips
of its `TRACK_SAMPLES` best-quality frames. A shot the pipeline posts carries them; the poster
(`actors/face_posting.py`) embeds them with the shot and the sighting carries their vectors and
qualities (`FaceSighting.track_embeddings`, `track_qualities`).

Match side (`TrackEvidence`, `score_dossier`, used by `EventPipelineCore._match`): the samples'
weights are their qualities (normalised to sum 1, with a floor so a 0-quality frame still counts a
little). A dossier's score for the track is, per photo of the dossier, the weighted mean of the
samples' cosines to that photo; the best photo gives the dossier's cosine, whose calibrated
confidence is the event's confidence and must reach the threshold. So one odd frame among the
track's best frames moves the score by its weight only: it cannot make a match the others deny.
A still photo (or an old caller) is a track of one sample: the rule is then the plain one.
A track whose best frame's quality is below the runtime setting `match_min_quality` (default 0.3) is
never matched: on the Hamilton clip the blurred, dark background faces (quality 0.15–0.25) came within
the default threshold of Alex Lacamoire (0.74–0.77) while every face one can recognise there has ≥ 0.3.

Negatives (operators' "not this person", storage/negatives.py): a dossier's negatives are scored
the same way; when the track is closer to one of the dossier's negatives than to its best photo
(negative score > photo score) it does not match that dossier at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TRACK_SAMPLES = 3
"""How many of a track's best frames decide its match (and are embedded with each of its shots). Three
gave the clip the same events and matches as five (docs/matching.md) for up to two chips fewer a track."""
MIN_WEIGHT = 0.05
"""A sample's weight is its quality, at least this much (quality can be 0 for a barely visible face)."""


# -- frame side ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SampleChip:
    """One of a track's best frames: its aligned chip, its quality, the frame it came from."""

    frame_index: int
    quality: float
    chip: np.ndarray


class TrackSamples:
    """The `size` best-quality chips of every open track (ties: the earlier frame stays)."""

    def __init__(self, size: int = TRACK_SAMPLES) -> None:
        if size < 1:
            raise ValueError(f"a track needs at least one sample, got {size}")
        self.size = size
        self._samples: dict[int, list[SampleChip]] = {}

    def wants(self, track_id: int, quality: float) -> bool:
        """Whether a frame of this quality would be kept (ask before making its chip)."""
        kept = self._samples.get(track_id, [])
        return len(kept) < self.size or quality > kept[-1].quality

    def add(self, track_id: int, sample: SampleChip) -> None:
        kept = self._samples.setdefault(track_id, [])
        if len(kept) >= self.size and sample.quality <= kept[-1].quality:
            return
        kept.append(sample)
        kept.sort(key=lambda s: -s.quality)  # stable: an equal later frame ranks after the earlier one
        del kept[self.size:]

    def of(self, track_id: int) -> tuple[SampleChip, ...]:
        """The track's samples, best first."""
        return tuple(self._samples.get(track_id, ()))

    def forget(self, track_id: int) -> None:
        self._samples.pop(track_id, None)

    def clear(self) -> None:
        self._samples.clear()


# -- match side -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackEvidence:
    """The unit vectors of a track's samples (k × d) and their weights (k, summing to 1)."""

    embeddings: np.ndarray
    weights: np.ndarray
    best_quality: float = 1.0  # the quality of the track's best frame

    @classmethod
    def of(cls, embeddings: np.ndarray | Sequence[np.ndarray], qualities: Sequence[float]) -> TrackEvidence:
        matrix = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(matrix) != len(qualities) or len(matrix) == 0:
            raise ValueError(f"{len(matrix)} sample vector(s) for {len(qualities)} quality value(s)")
        weights = np.maximum(np.asarray(qualities, dtype=np.float64), MIN_WEIGHT)
        return cls(matrix, weights / weights.sum(), float(max(qualities)))

    @property
    def frames(self) -> int:
        return len(self.weights)

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Per row of `vectors` (n × d): the weighted mean cosine of the samples to it."""
        if len(vectors) == 0:
            return np.zeros(0)
        return (np.asarray(vectors, dtype=np.float32) @ self.embeddings.T).astype(np.float64) @ self.weights


@dataclass(frozen=True)
class DossierScore:
    dossier_id: int
    face_id: int  # the dossier's best photo for this track
    cosine: float  # the track's weighted mean cosine to that photo
    negative_cosine: float | None  # the same to the dossier's closest negative; None without negatives

    @property
    def rejected(self) -> bool:
        """The track is closer to one of the dossier's negatives than to its best photo."""
        return self.negative_cosine is not None and self.negative_cosine > self.cosine


def score_dossier(evidence: TrackEvidence, dossier_id: int, face_ids: Sequence[int], photos: np.ndarray,
                  negatives: np.ndarray | None = None) -> DossierScore | None:
    """The track's score against one dossier (its photos' vectors in the order of `face_ids`), or None
    when the dossier has no photo vector of the track's model."""
    if not len(face_ids):
        return None
    photo_scores = evidence.scores(photos)
    best = int(np.argmax(photo_scores))
    negative = None
    if negatives is not None and len(negatives):
        negative = float(evidence.scores(negatives).max())
    return DossierScore(dossier_id, int(face_ids[best]), float(photo_scores[best]), negative)


__all__ = ["MIN_WEIGHT", "TRACK_SAMPLES", "DossierScore", "SampleChip", "TrackEvidence", "TrackSamples",
           "score_dossier"]
