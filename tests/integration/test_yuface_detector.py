"""The yuface (libfacedetection) detector: the CPU default of camera jobs."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from models.detector import DetectorError, FaceDetector, YuFaceDetector, make_detector, resolve_detector


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def yu() -> YuFaceDetector:
    return YuFaceDetector(min_face_size=20)


def test_finds_the_faces_of_the_photos_with_landmarks_in_mtcnn_order(yu: YuFaceDetector, faces_dir: Path) -> None:
    one = yu.detect(rgb(faces_dir / "obama.jpg"))
    assert len(one) == 1 and one.scores[0] > 0.8
    eyes, mouth = one.landmarks[0, :2], one.landmarks[0, 3:]
    assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]  # image-left first, as MTCNN
    assert eyes[:, 1].max() < one.landmarks[0, 2, 1] < mouth[:, 1].min()  # eyes above nose above mouth
    assert len(yu.detect(rgb(faces_dir / "two_people.jpg"))) == 2


def test_large_frames_are_scaled_down_and_boxes_scaled_back(yu: YuFaceDetector, faces_dir: Path) -> None:
    image = rgb(faces_dir / "obama.jpg")
    big = cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    small_box, big_box = yu.detect(image).boxes[0], yu.detect(big).boxes[0]
    assert np.allclose(big_box / 2.0, small_box, atol=0.05 * (small_box[2] - small_box[0]))


def test_no_face_on_the_hand_and_collar_of_the_clip(yu: YuFaceDetector, data_dir: Path) -> None:
    """Frames 120-130 and 152 of the clip: MTCNN fires on the hand holding the microphone."""
    with av.open(str(data_dir / "video" / "short_hamilton_clip.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0))
                  if i in (120, 123, 126, 130, 152)]
    for found in yu.detect_batch(frames):
        assert len(found) == 1  # Miranda's face only
        x1, y1, x2, y2 = found.boxes[0]
        assert y1 < 100 and (x2 - x1) > 60


def test_min_face_size_and_bad_frames(faces_dir: Path) -> None:
    image = rgb(faces_dir / "obama.jpg")
    assert len(YuFaceDetector(min_face_size=400).detect(image)) == 0
    with pytest.raises(DetectorError):
        YuFaceDetector().detect(np.zeros((10, 10), np.uint8))


def test_auto_is_yuface_on_cpu_and_mtcnn_on_gpu() -> None:
    assert resolve_detector("auto") == "yuface"
    assert resolve_detector("auto", "cuda") == "mtcnn"
    assert resolve_detector("mtcnn", "cpu") == "mtcnn"
    assert isinstance(make_detector("mtcnn", min_face_size=40), FaceDetector)
    assert isinstance(make_detector(min_face_size=40), YuFaceDetector)
    with pytest.raises(ValueError, match="unknown face detector"):
        resolve_detector("hog")
