"""dlib's face ResNet in PyTorch: the file reader, agreement with dlib's own C++ on real faces, batching."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from models import model_files
from models.dlib_format import TAG_OR_SKIP, parse_network, read_network
from models.dlib_resnet import DlibResNetEmbedder, chips_to_tensor, zero_padded_add
from models.model_files import dlib_resnet_path, dlib_shape_predictor_5_path

# Photos with one or two frontal faces each (see ../shared/data/README.md).
PHOTOS = [
    "obama.jpg",
    "obama2.jpg",
    "biden.jpg",
    "two_people.jpg",
    "lin-manuel-miranda.png",
    "alex-lacamoire.png",
    "knn_examples/test/obama_and_biden.jpg",
    "knn_examples/test/kit_with_rose.jpg",
    "knn_examples/test/johnsnow_test1.jpg",
    "knn_examples/train/rose_leslie/img1.jpg",
]


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return dlib_resnet_path().read_bytes()


@pytest.fixture(scope="module")
def embedder() -> DlibResNetEmbedder:
    return DlibResNetEmbedder(device="cpu", batch_size=4)


# --- locating the files ----------------------------------------------------------------------------


def test_model_files_are_found_without_importing_the_package() -> None:
    assert dlib_resnet_path().name == "dlib_face_recognition_resnet_model_v1.dat"
    assert dlib_shape_predictor_5_path().is_file()


def test_missing_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="face-recognition-models"):
        model_files.dlib_resnet_path()


# --- (a) the reader ------------------------------------------------------------------------------


def test_reader_parses_the_real_file(model_bytes: bytes) -> None:
    net = parse_network(model_bytes)
    kinds = Counter(rec.kind for rec in net.layers)
    assert kinds == {
        "con_4": 29,
        "affine_": 29,
        "relu_": 29,
        "add_prev_": 14,
        TAG_OR_SKIP: 22,  # a tag per residual unit, plus tag2 + skip1 in the 4 down-sampling units
        "avg_pool_2": 5,
        "max_pool_2": 1,
        "fc_2": 1,
    }
    assert len(net.records) == 132
    assert net.loss.kind == "loss_metric_2"
    assert net.loss.settings["dist_thresh"] == pytest.approx(0.6)
    assert net.loss.settings["margin"] == pytest.approx(0.04)
    inp = net.input.settings
    assert net.input.kind == "input_rgb_image_sized"
    assert (inp["nr"], inp["nc"]) == (150, 150)
    assert (inp["avg_red"], inp["avg_green"], inp["avg_blue"]) == pytest.approx((122.782, 117.001, 104.298))


def test_first_convolution(model_bytes: bytes) -> None:
    first = parse_network(model_bytes).layers[0]
    assert first.kind == "con_4"
    assert first.params["weight"].shape == (32, 3, 7, 7)
    assert first.params["weight"].dtype == np.float32
    assert first.params["bias"].shape == (32,)
    s = first.settings
    assert (s["num_filters"], s["nr"], s["nc"], s["stride_y"], s["stride_x"]) == (32, 7, 7, 2, 2)
    assert (s["padding_y"], s["padding_x"]) == (0, 0)
    # The raw bytes: the first weight float sits right after the params tensor header "02 80 12 ...".
    header = bytes.fromhex("0102028012010101010101")
    at = model_bytes.index(header) + len(header)
    assert first.params["weight"][0, 0, 0, 0] == np.frombuffer(model_bytes, "<f4", 1, at)[0]
    assert np.isfinite(first.params["weight"]).all()


def test_last_layers(model_bytes: bytes) -> None:
    layers = parse_network(model_bytes).layers
    assert layers[-2].settings["nr"] == 0  # avg_pool_everything
    assert layers[-1].kind == "fc_2"
    assert layers[-1].params["weight"].shape == (256, 128)
    assert "bias" not in layers[-1].params


@pytest.mark.parametrize("keep", [0, 3, 40, 300, 5_000, 11_000_000, -1])
def test_truncated_file_raises_a_clear_error(model_bytes: bytes, tmp_path: Path, keep: int) -> None:
    cut = tmp_path / "cut.dat"
    cut.write_bytes(model_bytes[:keep])
    with pytest.raises(ValueError, match="truncated"):
        read_network(cut)


def test_malformed_files_raise(model_bytes: bytes) -> None:
    with pytest.raises(ValueError, match="unexpected bytes"):
        parse_network(model_bytes + b"\x00")
    with pytest.raises(ValueError, match="not a dlib DNN file"):
        parse_network(b"\x01\x05" + model_bytes[2:])
    broken = bytearray(model_bytes)
    at = model_bytes.index(b"con_4")
    broken[at : at + 5] = b"cnv_4"
    with pytest.raises(ValueError, match="cnv_4"):
        parse_network(bytes(broken))


# --- module pieces ---------------------------------------------------------------------------------


def test_zero_padded_add_matches_dlib_add_prev() -> None:
    a = torch.ones(1, 4, 3, 3)
    b = torch.full((1, 2, 4, 4), 2.0)
    out = zero_padded_add(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 0, 0, 0] == 3 and out[0, 3, 0, 0] == 1 and out[0, 0, 3, 3] == 2 and out[0, 3, 3, 3] == 0


def test_chip_layouts() -> None:
    nhwc = np.random.default_rng(0).integers(0, 255, (2, 150, 150, 3), dtype=np.uint8)
    t = chips_to_tensor(nhwc)
    assert t.shape == (2, 3, 150, 150) and t.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(chips_to_tensor(t), t)
    with pytest.raises(ValueError):
        chips_to_tensor(np.zeros((2, 112, 112, 3), np.uint8))


# --- (b) agreement with dlib on real faces ------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_chips(faces_dir: Path) -> dict[str, list[np.ndarray]]:
    """Aligned chips per photo, cut by dlib itself (HOG detector, 5-point landmarks, get_face_chip)."""
    dlib = pytest.importorskip("dlib")
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_shape_predictor_5_path()))
    chips: dict[str, list[np.ndarray]] = {}
    for name in PHOTOS:
        with Image.open(faces_dir / name) as im:
            img = np.ascontiguousarray(np.asarray(im.convert("RGB")))
        rects = sorted(detector(img, 1), key=lambda r: r.left())
        chips[name] = [dlib.get_face_chip(img, predictor(img, r), size=150, padding=0.25) for r in rects]
    return chips


@pytest.fixture(scope="module")
def dlib_descriptors(dlib_chips: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    dlib = pytest.importorskip("dlib")
    recogniser = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    return {
        name: np.array([np.asarray(d) for d in recogniser.compute_face_descriptor(chips)], np.float32)
        for name, chips in dlib_chips.items()
    }


def test_agrees_with_dlib_on_every_real_chip(
    embedder: DlibResNetEmbedder, dlib_chips: dict, dlib_descriptors: dict
) -> None:
    names = [n for n in PHOTOS for _ in dlib_chips[n]]
    assert len(names) >= 10 and len(set(names)) >= 5
    ours = embedder.embed(np.stack([c for n in PHOTOS for c in dlib_chips[n]]))
    ref = np.concatenate([dlib_descriptors[n] for n in PHOTOS])
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.999, dict(zip(names, cos.round(5), strict=True))
    # Same scale as dlib (not unit length): distances stay comparable with dlib's 0.6 threshold.
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-3)


def test_same_and_different_people_as_dlib(
    embedder: DlibResNetEmbedder, dlib_chips: dict, dlib_descriptors: dict
) -> None:
    def one(name: str) -> tuple[np.ndarray, np.ndarray]:
        assert len(dlib_chips[name]) == 1
        return embedder.embed(np.stack(dlib_chips[name]))[0], dlib_descriptors[name][0]

    (obama, obama_ref), (obama2, obama2_ref), (biden, biden_ref) = one("obama.jpg"), one("obama2.jpg"), one("biden.jpg")
    pairs = {
        "obama-obama2": (obama, obama2, obama_ref, obama2_ref, True),
        "obama-biden": (obama, biden, obama_ref, biden_ref, False),
        "obama2-biden": (obama2, biden, obama2_ref, biden_ref, False),
    }
    for label, (a, b, ra, rb, same) in pairs.items():
        ours, theirs = np.linalg.norm(a - b), np.linalg.norm(ra - rb)
        assert (ours < 0.6) == same and (theirs < 0.6) == same, (label, ours, theirs)
        assert ours == pytest.approx(theirs, abs=0.01), label


# --- (c) batching ----------------------------------------------------------------------------------


def test_batch_of_one_equals_batch_of_n(embedder: DlibResNetEmbedder, dlib_chips: dict) -> None:
    chips = np.stack([c for n in PHOTOS[:6] for c in dlib_chips[n]])
    together = embedder.embed(chips)  # 7 chips: two batches of 4
    alone = np.concatenate([embedder.embed(chips[i : i + 1]) for i in range(len(chips))])
    assert together.shape == (len(chips), 128) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    unit = embedder.embed_normalized(chips[:2])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 128)


def test_bfloat16_option_still_agrees(dlib_chips: dict, dlib_descriptors: dict) -> None:
    chips = np.stack([c for n in PHOTOS for c in dlib_chips[n]])
    ref = np.concatenate([dlib_descriptors[n] for n in PHOTOS])
    ours = DlibResNetEmbedder(device="cpu", precision="bf16").embed(chips)
    assert ours.dtype == np.float32
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.999
    with pytest.raises(ValueError, match="precision"):
        DlibResNetEmbedder(device="cpu", precision="int4")
