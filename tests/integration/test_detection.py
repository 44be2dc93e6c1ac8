"""Detection, alignment, quality and attributes on the shared real photos and video."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from models.alignment import DLIB_TEMPLATE, align_faces, crop_faces, similarity_transforms
from models.detector import DetectorError, FaceDetector
from models.quality import estimate_pose, face_quality
from models.types import Detections


@cache
def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    # Photo faces are large; 40 px keeps the pyramid short and the tests fast.
    return FaceDetector(min_face_size=40, device="cpu")


@pytest.fixture(scope="module")
def video_frames(data_dir: Path) -> list[np.ndarray]:
    av = pytest.importorskip("av")
    with av.open(str(data_dir / "video" / "short_hamilton_clip.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(120), container.decode(video=0), strict=False)]
    return frames[::30]


def _dlib_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


# ---------------------------------------------------------------------- detection


def test_one_face_in_obama(detector: FaceDetector, faces_dir: Path) -> None:
    faces = detector.detect(_rgb(faces_dir / "obama.jpg"))
    assert len(faces) == 1
    assert faces.boxes.shape == (1, 4) and faces.landmarks.shape == (1, 5, 2)
    assert faces.scores[0] > 0.99
    x1, y1, x2, y2 = faces.boxes[0]
    inside = (faces.landmarks[0, :, 0] > x1) & (faces.landmarks[0, :, 0] < x2)
    inside &= (faces.landmarks[0, :, 1] > y1) & (faces.landmarks[0, :, 1] < y2)
    assert inside.all()
    # Documented order: left eye, right eye (image-left first), nose, mouth left, mouth right.
    lm = faces.landmarks[0]
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])


def test_two_faces_in_two_people(detector: FaceDetector, faces_dir: Path) -> None:
    faces = detector.detect(_rgb(faces_dir / "two_people.jpg"))
    assert len(faces) == 2
    ordered = faces.order_by_size()
    assert (np.diff(ordered.widths * ordered.heights) <= 0).all()


def test_min_face_size_filters_small_faces(faces_dir: Path) -> None:
    small = _rgb(faces_dir / "obama-240p.jpg")  # the face is ~74 px here
    assert len(FaceDetector(min_face_size=40).detect(small)) == 1
    assert len(FaceDetector(min_face_size=100).detect(small)) == 0
    big = _rgb(faces_dir / "obama-720p.jpg")  # same photo, face ~230 px
    assert len(FaceDetector(min_face_size=100).detect(big)) == 1


def test_score_threshold(detector: FaceDetector, faces_dir: Path) -> None:
    strict = FaceDetector(min_face_size=40, score_threshold=1.01)
    assert len(strict.detect(_rgb(faces_dir / "obama.jpg"))) == 0


def test_matches_facenet_pytorch_mtcnn(faces_dir: Path) -> None:
    from facenet_pytorch import MTCNN

    image = _rgb(faces_dir / "obama_small.jpg")
    reference = MTCNN(keep_all=True, min_face_size=20, device="cpu", select_largest=False)
    boxes, probs, points = reference.detect(image, landmarks=True)
    ours = FaceDetector(min_face_size=20, score_threshold=0.0, device="cpu").detect(image)
    assert len(ours) == len(boxes)
    np.testing.assert_allclose(ours.boxes, boxes.astype(np.float32), atol=0.05)
    np.testing.assert_allclose(ours.landmarks, points.astype(np.float32), atol=0.05)
    np.testing.assert_allclose(ours.scores, probs.astype(np.float32), atol=1e-4)


def _assert_same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)


def test_batched_equals_single(detector: FaceDetector, video_frames: list[np.ndarray]) -> None:
    batched = detector.detect_batch(np.stack(video_frames))
    assert sum(len(d) for d in batched) > 0
    for frame, result in zip(video_frames, batched, strict=True):
        _assert_same(result, detector.detect(frame))
    # All frames through each stage together (the GPU path) gives the same faces.
    all_at_once = FaceDetector(min_face_size=40, device="cpu", frames_per_pass=len(video_frames))
    for a, b in zip(all_at_once.detect_batch(video_frames), batched, strict=True):
        _assert_same(a, b)


def test_mixed_sizes_in_one_batch(detector: FaceDetector, faces_dir: Path, video_frames: list[np.ndarray]) -> None:
    photo = _rgb(faces_dir / "obama_small.jpg")
    frames = [video_frames[0], photo, video_frames[1], np.zeros((50, 60, 3), np.uint8)]
    results = detector.detect_batch(frames)
    assert len(results) == 4
    _assert_same(results[1], detector.detect(photo))
    _assert_same(results[2], detector.detect(video_frames[1]))
    assert len(results[3]) == 0 and results[3].boxes.shape == (0, 4)
    assert detector.detect_batch([]) == []
    # A frame smaller than min_face_size has no pyramid level at all.
    assert len(FaceDetector(min_face_size=100).detect(np.zeros((50, 60, 3), np.uint8))) == 0


def test_bad_frames_are_rejected(detector: FaceDetector) -> None:
    for bad in (np.zeros((40, 40), np.uint8), np.zeros((40, 40, 3), np.float32), np.zeros((5, 40, 3), np.uint8)):
        with pytest.raises(DetectorError):
            detector.detect(bad)


# ---------------------------------------------------------------------- alignment


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(3, 5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = similarity_transforms(src, dst)
    np.testing.assert_allclose(m[:, :, :2], np.broadcast_to(rot, (3, 2, 2)), atol=1e-9)
    np.testing.assert_allclose(m[:, :, 2], np.broadcast_to(shift, (3, 2)), atol=1e-9)


def test_aligned_chip_puts_landmarks_on_the_template(detector: FaceDetector, faces_dir: Path) -> None:
    image = _rgb(faces_dir / "two_people.jpg")
    faces = detector.detect(image)
    chips = align_faces(image, faces.landmarks)
    assert chips.shape == (2, 150, 150, 3) and chips.dtype == np.uint8
    target = DLIB_TEMPLATE.chip_points()
    transforms = similarity_transforms(faces.landmarks, target)
    mapped = np.einsum("nij,nkj->nki", transforms[:, :, :2], faces.landmarks) + transforms[:, None, :, 2]
    residual = np.linalg.norm(mapped - target, axis=2)
    assert np.median(residual) < 5.0 and residual.max() < 15.0, residual  # chip pixels
    assert crop_faces(image, faces.boxes).shape == (2, 160, 160, 3)
    assert align_faces(image, faces.landmarks, template="facenet").shape == (2, 160, 160, 3)


@pytest.mark.parametrize("spread", [60.0, 500.0])  # 500: the chip is sampled from pyramid level 2
def test_warp_moves_pixels_where_the_transform_says(spread: float) -> None:
    rng = np.random.default_rng(1)
    landmarks = DLIB_TEMPLATE.points * spread + rng.normal(0, spread * 0.03, (5, 2)) + 100.0
    image = np.zeros((int(spread * 1.5) + 200, int(spread * 1.5) + 200, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), max(2, int(spread / 40)), (255, 255, 255), -1, cv2.LINE_AA)
    chip = align_faces(image, landmarks[None])[0].astype(np.float64)[:, :, 0]
    m = similarity_transforms(landmarks[None], DLIB_TEMPLATE.chip_points())[0]
    for x, y in np.rint(landmarks).astype(int):
        cx, cy = m[:, :2] @ [x, y] + m[:, 2]
        window = chip[int(cy) - 4 : int(cy) + 5, int(cx) - 4 : int(cx) + 5]
        rows, cols = np.mgrid[int(cy) - 4 : int(cy) + 5, int(cx) - 4 : int(cx) + 5]
        centroid = np.array([(cols * window).sum(), (rows * window).sum()]) / window.sum()
        assert np.abs(centroid - [cx, cy]).max() < 0.6, (centroid, (cx, cy))


# The photos used for the dlib agreement and identification checks: (file, person).
_IDENTITIES = [
    ("obama.jpg", "obama"),
    ("obama2.jpg", "obama"),
    ("knn_examples/test/obama1.jpg", "obama"),
    ("biden.jpg", "biden"),
    ("knn_examples/train/biden/biden2.jpg", "biden"),
    ("alex-lacamoire.png", "alex"),
    ("knn_examples/train/alex_lacamoire/img1.jpg", "alex"),
    ("lin-manuel-miranda.png", "lin"),
    ("knn_examples/train/kit_harington/john1.jpeg", "kit"),
    ("knn_examples/test/johnsnow_test1.jpg", "kit"),
    ("knn_examples/train/rose_leslie/img1.jpg", "rose"),
]


@pytest.fixture(scope="module")
def dlib_models():
    dlib = pytest.importorskip("dlib")
    directory = _dlib_models_dir()
    recognizer = dlib.face_recognition_model_v1(str(directory / "dlib_face_recognition_resnet_model_v1.dat"))
    predictor = dlib.shape_predictor(str(directory / "shape_predictor_5_face_landmarks.dat"))
    return dlib, recognizer, predictor


def _largest(faces: Detections) -> Detections:
    return faces.order_by_size().select(slice(0, 1))


def test_mtcnn_chips_agree_with_dlib_chips(detector: FaceDetector, faces_dir: Path, dlib_models) -> None:
    """dlib's descriptor of our chip ≈ its descriptor of dlib's own chip of the same face."""
    dlib, recognizer, predictor = dlib_models
    hog = dlib.get_frontal_face_detector()
    distances = []
    for name, _ in _IDENTITIES[::2]:
        image = _rgb(faces_dir / name)
        rects = sorted(hog(image, 0), key=lambda r: -r.area())
        assert rects, name
        dlib_chip = dlib.get_face_chip(image, predictor(image, rects[0]), size=150, padding=0.25)
        ours = align_faces(image, _largest(detector.detect(image)).landmarks)[0]
        a = np.array(recognizer.compute_face_descriptor(dlib_chip))
        b = np.array(recognizer.compute_face_descriptor(ours))
        distances.append(np.linalg.norm(a - b))
    # Measured: median ~0.12, max ~0.23 over 29 faces (dlib's same-person threshold is 0.6).
    assert np.median(distances) < 0.2, distances
    assert max(distances) < 0.3, distances


def test_identification_with_mtcnn_chips(detector: FaceDetector, faces_dir: Path, dlib_models) -> None:
    _, recognizer, _ = dlib_models
    people, vectors = [], []
    for name, person in _IDENTITIES:
        image = _rgb(faces_dir / name)
        chip = align_faces(image, _largest(detector.detect(image)).landmarks)[0]
        vectors.append(np.array(recognizer.compute_face_descriptor(chip)))
        people.append(person)
    v = np.array(vectors)
    distance = np.linalg.norm(v[:, None] - v[None], axis=2)
    same = np.array(people)[:, None] == np.array(people)[None]
    off_diagonal = ~np.eye(len(people), dtype=bool)
    assert distance[same & off_diagonal].max() < 0.6
    assert distance[~same].min() > 0.6


# ---------------------------------------------------------------------- quality and attributes


def test_quality_ranks_blurred_copy_lower(detector: FaceDetector, faces_dir: Path) -> None:
    sharp = _rgb(faces_dir / "obama.jpg")
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    q_sharp = face_quality(sharp, detector.detect(sharp))
    q_blur = face_quality(blurred, detector.detect(blurred))
    assert q_sharp.shape == (1,) and q_blur.shape == (1,)
    assert 0.0 <= q_blur[0] < q_sharp[0] - 0.1 and q_sharp[0] <= 1.0
    assert q_sharp[0] > 0.8


def test_quality_prefers_big_frontal_faces(detector: FaceDetector, faces_dir: Path) -> None:
    image = _rgb(faces_dir / "obama.jpg")
    faces = detector.detect(image)
    small = cv2.resize(image, None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA)
    small_faces = FaceDetector(min_face_size=20).detect(small)
    assert len(small_faces) == 1
    assert face_quality(small, small_faces)[0] < face_quality(image, faces)[0]
    yaw, roll = estimate_pose(faces.landmarks)
    assert abs(yaw[0]) < 15 and abs(roll[0]) < 10
    assert face_quality(image, Detections.empty()).shape == (0,)


def test_pose_estimate_on_synthetic_landmarks() -> None:
    frontal = DLIB_TEMPLATE.chip_points()
    frontal[2, 0] = frontal[:2, 0].mean()  # nose exactly between the eyes
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    turned = frontal.copy()
    turned[2, 0] += 0.35 * (frontal[1, 0] - frontal[0, 0])  # nose shifted towards image-right
    yaw, roll = estimate_pose(np.stack([frontal, frontal @ rot.T, turned]))
    np.testing.assert_allclose(yaw[:2], 0.0, atol=1.0)
    np.testing.assert_allclose(roll, [0.0, 20.0, 0.0], atol=1.0)
    assert 30 < yaw[2] < 60


def test_age_gender_plausible(detector: FaceDetector, faces_dir: Path) -> None:
    from models.attributes import ATTRIBUTE_MODELS, get_attribute_model

    model = get_attribute_model("age_gender")
    assert "age_gender" in ATTRIBUTE_MODELS.names()
    expected = {"obama.jpg": "male", "biden.jpg": "male", "knn_examples/train/rose_leslie/img1.jpg": "female"}
    for name, gender in expected.items():
        image = _rgb(faces_dir / name)
        faces = _largest(detector.detect(image))
        (result,) = model.predict(image, faces.landmarks)
        assert result["gender"]["value"] == gender, (name, result)
        assert 0.8 < result["gender"]["confidence"] <= 1.0
        assert 20 <= result["age"] <= 85, (name, result)
        # From the pipeline's normalised 150 px chip, the answer is the same.
        (via_chip,) = model.predict_chips(align_faces(image, faces.landmarks))
        assert via_chip["gender"]["value"] == gender
        assert abs(via_chip["age"] - result["age"]) < 8
    two = _rgb(faces_dir / "two_people.jpg")
    results = model.predict(two, detector.detect(two).landmarks)
    assert [r["gender"]["value"] for r in results] == ["male", "male"]
    assert model.predict(two, np.zeros((0, 5, 2))) == []


def test_unknown_attribute_model_is_a_clear_error() -> None:
    from models.attributes import get_attribute_model

    with pytest.raises(KeyError, match="emotions"):
        get_attribute_model("emotions")
