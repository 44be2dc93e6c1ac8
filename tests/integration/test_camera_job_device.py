"""Issue 14, item 9, on this GPU-less machine: a camera job's detector device is decided from what Ray
granted the job, never from the CUDA devices it can see; and realtime mode, on the clip's real frames,
posts a better shot of a track only after `realtime_interval_s` or a clear quality gain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from actors.best_shot import ImprovingBest, ShotCandidate
from actors.camera_job import detector_device, job_detector
from actors.frame_pipeline import FramePipeline, StreamConfig
from models.detector import FaceDetector, YuFaceDetector, resolve_detector
from tests.integration.test_frame_pipeline import EMBEDDER, clip_frames


@pytest.fixture
def cuda_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a job on a GPU node sees: CUDA present (this machine has none, so it is stated)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_no_gpu_granted_means_the_cpu_even_with_cuda_visible(cuda_visible: None) -> None:
    assert torch.cuda.is_available()
    assert detector_device([]) == "cpu"
    auto = job_detector("auto", StreamConfig().for_source(live=True), [])  # as FramePipeline resolves it
    assert isinstance(auto, YuFaceDetector)  # "auto" on the CPU is yuface, not MTCNN on the visible GPU
    mtcnn = job_detector("mtcnn", StreamConfig(min_face_size=40), [])
    assert isinstance(mtcnn, FaceDetector) and mtcnn.device.type == "cpu"


def test_a_granted_gpu_is_used() -> None:
    assert detector_device([0]) == "cuda"
    assert detector_device(["GPU-1234"]) == "cuda"  # Ray may name GPUs by id string
    assert resolve_detector("auto", detector_device([0])) == "mtcnn"


def _posts(interval_s: float, frames: list) -> list[ShotCandidate]:
    pipe = FramePipeline(StreamConfig(min_face_size=80, overall_only=False, realtime_interval_s=interval_s),
                         EMBEDDER, detect_batch=1)
    assert isinstance(pipe.policy, ImprovingBest) and pipe.policy.interval_s == interval_s
    return [shot for frame in frames for shot in pipe.push(frame)] + pipe.end_tracks()


def test_realtime_posts_a_better_shot_only_after_the_interval_or_a_clear_gain(data_dir: Path) -> None:
    frames = clip_frames(data_dir, 150, 200)  # Miranda's close-up: one track, qualities that wander
    patient = _posts(3600.0, frames)
    tracks = {s.track_id for s in patient}
    assert len(tracks) >= 1
    for track in tracks:
        shots = [s for s in patient if s.track_id == track]
        # the first post at once; after it only shots clearly better than the last one posted
        # (the track's end may add the best one held back)
        for before, after in zip(shots, shots[1:-1], strict=False):
            assert after.quality >= before.quality + 0.1 - 1e-9
    eager = _posts(0.2, frames)  # 0.2 s = 6 frames of the clip
    assert len(eager) > len(patient)  # the interval, not the frame count, paced the corrections
