"""The extractor pool computes attributes only for the chips that want them (issue 14 item 7).

The real `FaceExtractor` (dlib embedder, age/gender ONNX models) outside Serve: a camera job's
`ChipBatch` names its shots' chips; its tracks' best frames are embedded for the match only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facewatch.chips import ChipBatch
from models.face_analysis import PhotoAnalyzer
from models.images import decode_image
from serve_apps.extractor import FaceExtractor


class CountingModel:
    """The real attribute model, counting the chips it is asked about."""

    def __init__(self, model: Any) -> None:
        self.model, self.name, self.chips = model, model.name, 0

    def predict_chips(self, chips: np.ndarray) -> list[dict[str, Any]]:
        self.chips += len(chips)
        return self.model.predict_chips(chips)


@pytest.fixture(scope="module")
def extractor() -> FaceExtractor:
    return FaceExtractor("dlib_resnet_v1")


@pytest.fixture(scope="module")
def chips(extractor: FaceExtractor, faces_dir: Path) -> np.ndarray:
    spec = extractor.spec
    analyzer = PhotoAnalyzer(spec.chip_size, spec.template, spec.padding)
    found = []
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        image = decode_image((faces_dir / name).read_bytes())
        found.append(analyzer.chips(image, analyzer.analyze(image)))
    return np.concatenate(found)


def _extract(extractor: FaceExtractor, *requests: Any) -> list[dict[str, Any]]:
    """What `extract` does with the requests `@serve.batch` merged (Serve itself needs a replica)."""
    return extractor.extract_requests(list(requests))


def test_attributes_only_for_the_chips_a_batch_names(extractor: FaceExtractor, chips: np.ndarray) -> None:
    assert len(chips) >= 4
    counting = CountingModel(extractor.attribute_models[0])
    extractor.attribute_models = [counting]
    try:
        shots, plain = _extract(extractor, ChipBatch(chips, attributes_for=1), chips[:2])
    finally:
        extractor.attribute_models = [counting.model]
    assert counting.chips == 1 + 2  # the batch's one shot and every chip of the plain array
    assert len(shots["embeddings"]) == len(chips) and len(shots["attributes"]) == len(chips)
    assert set(shots["attributes"][0]) == {"age", "gender"}
    assert all(a == {} for a in shots["attributes"][1:])  # the best frames: embedded, no attributes
    assert all(set(a) == {"age", "gender"} for a in plain["attributes"])
    # The chip's attributes and vector are the same as when every chip is asked for.
    every = _extract(extractor, chips)[0]
    assert shots["attributes"][0] == every["attributes"][0]
    assert np.allclose(shots["embeddings"], every["embeddings"], atol=1e-5)


def test_a_batch_names_at_most_its_chips() -> None:
    chips = np.zeros((2, 150, 150, 3), np.uint8)
    assert ChipBatch.of(chips).attributes_for == 2
    assert ChipBatch(chips, 0).attribute_mask().tolist() == [False, False]
    with pytest.raises(ValueError, match="attributes_for"):
        ChipBatch(chips, 3)
