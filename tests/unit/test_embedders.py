"""The embedder registry, FaceNet loading (weights given by the user, never downloaded), calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.calibration import PRESETS, Calibration, resolve_threshold
from models.embedders import EMBEDDERS, embedder_spec, load_embedder
from models.facenet import WEIGHTS_ENV, FaceNetEmbedder, MissingWeightsError


def test_registry_knows_both_embedders_and_their_geometry() -> None:
    assert set(EMBEDDERS) == {"dlib_resnet_v1", "facenet_vggface2"}
    assert (embedder_spec("dlib_resnet_v1").dim, embedder_spec("dlib_resnet_v1").chip_size) == (128, 150)
    assert (embedder_spec("facenet_vggface2").dim, embedder_spec("facenet_vggface2").chip_size) == (512, 160)
    with pytest.raises(KeyError, match="unknown embedder"):
        embedder_spec("nope")


def test_facenet_without_weights_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(MissingWeightsError, match=WEIGHTS_ENV):
        load_embedder("facenet_vggface2")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        FaceNetEmbedder(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        FaceNetEmbedder(junk)


def test_facenet_loads_a_checkpoint_and_embeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A checkpoint in facenet-pytorch's layout (classifier head included) loads; no download happens."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    source = InceptionResnetV1(pretrained=None, classify=True, num_classes=10).eval()
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    embedder = load_embedder("facenet_vggface2", device="cpu")
    chips = np.random.default_rng(0).integers(0, 255, (3, 160, 160, 3), dtype=np.uint8)
    vectors = embedder.embed(chips)
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    source.classify = False
    with torch.no_grad():
        expected = source((torch.from_numpy(chips).permute(0, 3, 1, 2).float() - 127.5) / 128.0).numpy()
    assert np.allclose(vectors, expected, atol=1e-4)
    with pytest.raises(ValueError, match="160"):
        embedder.embed(np.zeros((1, 150, 150, 3), np.uint8))


def test_calibration_maps_anchors_to_presets_and_back() -> None:
    calibration = embedder_spec("dlib_resnet_v1").calibration
    for name in ("strict", "medium", "low"):
        cosine = calibration.cosine(PRESETS[name])
        assert calibration.confidence(cosine) == pytest.approx(PRESETS[name])
    grid = np.linspace(-1, 1, 101)
    assert np.all(np.diff(calibration.confidence(grid)) >= 0)  # monotone
    with pytest.raises(ValueError):
        Calibration(strict_cosine=0.5, medium_cosine=0.6, low_cosine=0.4)
    assert resolve_threshold("strict") == 0.85 and resolve_threshold("0.6") == 0.6
    assert resolve_threshold(None, 0.7) == 0.7
    for bad in ("loose", "1.5", -0.1):
        with pytest.raises(ValueError):
            resolve_threshold(bad)
