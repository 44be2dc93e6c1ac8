"""Issue 14: tracks end at a scene cut (actors/scene_cut.py), measured on the Hamilton clip.

The clip cuts at frames 20, 82 and 211 (checked by eye: the first frame of each new shot). Before the
scene-cut test, the default pipeline's IoU tracker carried tracks across them (two people in the same
place became one track, and its best frames mixed them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.frame_pipeline import Counters, FramePipeline
from actors.scene_cut import SceneCuts
from facewatch.stream_settings import StreamSettings
from models.embedders import embedder_spec
from tests.integration.test_frame_pipeline import clip_frames

CUTS = (20, 82, 211)


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list:
    return clip_frames(data_dir, 0, 275)


def test_the_cut_test_finds_the_clips_cuts_and_nothing_else(frames: list) -> None:
    for stride in (1, 3, 6):  # every frame, every 3rd, a live camera's 5 detections per second
        cuts = SceneCuts()
        found = [f.index for f in frames[::stride] if cuts.cut(f.image)]
        # the first checked frame at or after each cut
        assert found == [next(f.index for f in frames[::stride] if f.index >= c) for c in CUTS], stride


def test_no_track_spans_a_cut(frames: list) -> None:
    pipe = FramePipeline(StreamSettings(), embedder_spec("dlib_resnet_v1"), Counters(), detect_batch=1)
    seen: dict[int, list[int]] = {}
    index = {"now": 0}
    pipe.on_tracked = lambda _boxes, ids: [seen.setdefault(t, []).append(index["now"]) for t in ids]
    for frame in frames:
        index["now"] = frame.index
        pipe.push(frame)
    pipe.drain()
    pipe.end_tracks()
    spans = {t: (min(v), max(v)) for t, v in seen.items()}
    crossing = {t: span for t, span in spans.items() if any(span[0] < c <= span[1] for c in CUTS)}
    assert not crossing, spans
    assert len(spans) >= 4 and pipe.scene_cuts.cuts == len(CUTS)


def test_bad_distance() -> None:
    with pytest.raises(ValueError, match="scene-cut distance"):
        SceneCuts(0.0)
    assert not SceneCuts().cut(np.zeros((36, 64, 3), np.uint8))  # the first frame is no cut
