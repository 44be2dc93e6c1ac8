"""Track-level identity without Ray: the samples a track keeps, the weighted score, the negatives rule,
and the poster that embeds a track's best frames once and hands them over with every shot.

The vectors are synthetic unit vectors placed at exact cosines (tests/vectors.py) and the calibration is
dlib's own, so "a match" here means what it means in production at the default threshold.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.best_shot import ShotCandidate
from actors.face_posting import FacePoster, SightingSource
from actors.frame_pipeline import Counters, ShotPayload
from actors.job_status import JobHealth
from actors.track_identity import TRACK_SAMPLES, SampleChip, TrackEvidence, TrackSamples, score_dossier
from facewatch.chips import ChipBatch
from facewatch.sightings import FaceSighting, track_event_prefix
from models.calibration import DEFAULT_THRESHOLD
from models.embedders import DLIB_CALIBRATION
from storage.media import LocalMediaStore
from tests.vectors import unit_vector, vector_near

DIM = 32
MATCH_COSINE = DLIB_CALIBRATION.cosine(DEFAULT_THRESHOLD)  # the cosine the default threshold asks for


def chip(value: int) -> np.ndarray:
    return np.full((150, 150, 3), value, np.uint8)


# -- the samples a track keeps --------------------------------------------------------------------------


def test_a_track_keeps_its_best_frames_best_first_and_earlier_on_ties() -> None:
    samples = TrackSamples(size=3)
    for frame, quality in enumerate([0.2, 0.5, 0.4, 0.5, 0.1, 0.9]):
        if samples.wants(7, quality):
            samples.add(7, SampleChip(frame, quality, chip(frame)))
    kept = samples.of(7)
    assert [(s.frame_index, s.quality) for s in kept] == [(5, 0.9), (1, 0.5), (3, 0.5)]
    assert not samples.wants(7, 0.5) and samples.wants(7, 0.51)  # a tie does not displace an earlier frame
    assert samples.of(8) == ()
    samples.forget(7)
    assert samples.of(7) == () and samples.wants(7, 0.0)
    with pytest.raises(ValueError):
        TrackSamples(size=0)


# -- the weighted score ----------------------------------------------------------------------------------


def test_weights_follow_quality_with_a_floor() -> None:
    evidence = TrackEvidence.of(np.stack([unit_vector(i, DIM) for i in range(3)]), [0.6, 0.2, 0.0])
    assert evidence.frames == 3 and evidence.weights.sum() == pytest.approx(1.0)
    assert evidence.weights[0] == pytest.approx(3 * evidence.weights[1])
    assert evidence.weights[2] > 0  # a 0-quality frame still counts a little
    with pytest.raises(ValueError):
        TrackEvidence.of(np.stack([unit_vector(1, DIM)]), [0.5, 0.5])


def test_one_odd_frame_cannot_make_a_match() -> None:
    """The track's best-quality frame happens to be very close to a dossier's photo; its other four frames
    are not. The best frame alone would match at the default threshold; the track does not."""
    photo = unit_vector(1, DIM)
    odd = vector_near(photo, 0.97, seed=2)
    others = [vector_near(photo, 0.80, seed=10 + i) for i in range(4)]
    qualities = [0.6, 0.5, 0.5, 0.45, 0.4]
    assert DLIB_CALIBRATION.confidence(float(odd @ photo)) >= DEFAULT_THRESHOLD  # the one-frame rule: a match
    score = score_dossier(TrackEvidence.of(np.stack([odd, *others]), qualities), 5, [50], photo[None, :])
    assert score is not None and score.face_id == 50
    assert score.cosine < MATCH_COSINE
    assert DLIB_CALIBRATION.confidence(score.cosine) < DEFAULT_THRESHOLD


def test_a_track_seen_well_on_most_frames_matches_and_reports_the_weighted_confidence() -> None:
    photos = np.stack([unit_vector(1, DIM), unit_vector(2, DIM)])
    frames = [vector_near(photos[1], c, seed=20 + i) for i, c in enumerate([0.96, 0.95, 0.94, 0.60])]
    qualities = [0.8, 0.7, 0.6, 0.1]  # the odd frame is also the worst one
    evidence = TrackEvidence.of(np.stack(frames), qualities)
    score = score_dossier(evidence, 5, [50, 51], photos)
    assert score is not None and score.face_id == 51  # the photo the track is closest to
    weights = np.array(qualities) / sum(qualities)
    expected = float(weights @ np.array([f @ photos[1] for f in frames]))
    assert score.cosine == pytest.approx(expected, abs=1e-5)
    assert DLIB_CALIBRATION.confidence(score.cosine) >= DEFAULT_THRESHOLD
    assert score_dossier(evidence, 5, [], np.zeros((0, DIM))) is None


def test_a_face_closer_to_a_negative_than_to_the_best_photo_does_not_match() -> None:
    photo = unit_vector(1, DIM)
    face = vector_near(photo, 0.94, seed=3)  # a match on its own
    evidence = TrackEvidence.of(face[None, :], [0.5])
    closer = vector_near(face, 0.99, seed=4)
    farther = vector_near(face, 0.5, seed=5)
    assert not score_dossier(evidence, 5, [50], photo[None, :]).rejected
    assert not score_dossier(evidence, 5, [50], photo[None, :], np.zeros((0, 0))).rejected
    assert not score_dossier(evidence, 5, [50], photo[None, :], farther[None, :]).rejected
    rejected = score_dossier(evidence, 5, [50], photo[None, :], np.stack([farther, closer]))
    assert rejected.rejected and rejected.negative_cosine == pytest.approx(0.99, abs=1e-5)


def test_track_event_prefix_is_shared_by_the_shots_of_one_track() -> None:
    assert track_event_prefix("j3-r2-t15-s0") == track_event_prefix("j3-r2-t15-s4") == "j3-r2-t15-s"
    assert not "j3-r2-t150-s0".startswith(track_event_prefix("j3-r2-t15-s0"))


# -- the poster: a track's best frames embedded once, handed over with each shot ------------------------------


class CountingExtractor:
    """Embeds a chip as a fixed unit vector per chip value (so equal chips give equal vectors)."""

    def __init__(self) -> None:
        self.chips_seen = 0
        self.attributes_for: list[int] = []  # per call: how many chips (the shots') wanted attributes

    def __call__(self, batch: ChipBatch) -> dict[str, Any]:
        self.chips_seen += len(batch)
        self.attributes_for.append(batch.attributes_for)
        vectors = [unit_vector(int(c[0, 0, 0]), DIM) for c in batch.chips]
        return {"embeddings": vectors, "attributes": [{} for _ in batch.chips], "model": "m"}


def track_shot(track_id: int, frame: int, samples: list[tuple[int, float]]) -> ShotCandidate:
    payload = ShotPayload(chip=chip(frame), thumbnail_jpeg=b"\xff\xd8t", frame_jpeg=b"", detection_score=0.9,
                          wall_time=datetime(2026, 1, 1, tzinfo=UTC), frame_index=frame,
                          samples=tuple(SampleChip(f, q, chip(f)) for f, q in samples))
    return ShotCandidate(track_id, frame / 30, dict(samples).get(frame, 0.5), np.array([0, 0, 40, 40.0]), payload)


def test_poster_hands_over_the_tracks_best_frames_and_embeds_each_only_once(tmp_path: Path) -> None:
    received: list[FaceSighting] = []
    extractor = CountingExtractor()

    def hand_over(sightings: list[FaceSighting]) -> list[str | None]:
        received.extend(sightings)
        return [s.event_id for s in sightings]

    poster = FacePoster(SightingSource(7, 1, 3, camera_id=2), LocalMediaStore(str(tmp_path)), Counters(),
                        JobHealth(7), extractor, hand_over, threading.Event(), attempts=1)
    poster.post([track_shot(1, 10, [(10, 0.6), (11, 0.4)])])
    assert extractor.chips_seen == 2  # the shot (also its best frame) and its other best frame
    assert extractor.attributes_for == [1]  # attributes for the shot only, not for its track's other frame
    first = received[-1]
    assert first.track_qualities == [0.6, 0.4]
    assert np.allclose(first.track_embeddings, np.stack([unit_vector(10, DIM), unit_vector(11, DIM)]))
    assert np.allclose(first.embedding, unit_vector(10, DIM))
    # The track's later shot: one new best frame; the two known ones are not embedded again.
    poster.post([track_shot(1, 14, [(14, 0.8), (10, 0.6), (11, 0.4)])])
    assert extractor.chips_seen == 3 and extractor.attributes_for == [1, 1]
    second = received[-1]
    assert second.event_id == "j7-r1-t1-s1" and second.track_qualities == [0.8, 0.6, 0.4]
    assert np.allclose(second.track_embeddings[2], unit_vector(11, DIM))
    # A shot without samples (an old payload) still posts, with its own face as the only evidence.
    poster.post([track_shot(2, 20, [])])
    assert received[-1].track_embeddings is None and received[-1].track_qualities == []
    assert TRACK_SAMPLES >= 3
