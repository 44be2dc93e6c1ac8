"""Measure where MTCNN's five landmarks fall inside dlib's face chips (the alignment template).

dlib's ResNet (and the age/gender models) were trained on chips cut by
`dlib.get_face_chip_details(shape, size, padding)` from dlib's own 5-point landmarks (eye corners
and nose base). Our pipeline only has MTCNN's points (eye centres, nose tip, mouth corners), so
`models.alignment` needs the positions of MTCNN's points *in dlib's chip coordinates*. This script
measures them on real photos:

1. dlib's HOG detector + 5-point shape predictor give dlib's chip for each face
   (`get_face_chip_details`); the exact chip→image mapping dlib uses (including the offset its
   image pyramid adds for large faces) is read back by extracting the same chip from two "ramp"
   images whose pixel values are their own x and y coordinates, and fitting an affine map;
2. `models.detector.FaceDetector` (MTCNN) runs on the same photo; faces are paired by box overlap;
3. MTCNN's points are mapped into the chip and expressed in dlib's size-free unit face coordinates
   u = c / (size - 1) * (1 + 2 * padding) - padding (c = chip pixel index),
   for the chip geometries we use: (150, 0.25) for the ResNet, (64, 0.2) and (32, 0.2) for age
   and gender — the three must agree if the size/padding conversion in `models.alignment` is right;
4. the template is the mean over faces; the spread and per-config disagreement are printed.

It also measures the "facenet" template: the mean position of MTCNN's points inside
facenet-pytorch's own face crop (`extract_face`: the box, margin 0, resized to 160×160 with
INTER_AREA), over every face MTCNN finds in the photos, as unit coordinates c / (160 - 1).

Run: .venv/bin/python benchmarks/measure_alignment_template.py [FACES_DIR] (prints JSON).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.detector import FaceDetector  # noqa: E402

CONFIGS = ((150, 0.25), (64, 0.2), (32, 0.2))
RAMP_OFFSET = 1000.0  # ramp values are coordinate + offset, so 0 (outside the image) is unmistakable
EDGE = 12  # ignore chip pixels mapped this close to the image border (pyramid blur meets padding)


def shape_predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("face_recognition_models is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_5_face_landmarks.dat"


def photos(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))


def chip_to_image_affine(details: dlib.chip_details, height: int, width: int) -> np.ndarray:
    """The (2, 3) affine map dlib uses from chip pixel (c, r) to image (x, y), read back from dlib."""
    xs = np.tile(np.arange(width, dtype=np.float32) + RAMP_OFFSET, (height, 1))
    ys = np.tile(np.arange(height, dtype=np.float32)[:, None] + RAMP_OFFSET, (1, width))
    cx = dlib.extract_image_chip(xs, details).astype(np.float64) - RAMP_OFFSET
    cy = dlib.extract_image_chip(ys, details).astype(np.float64) - RAMP_OFFSET
    rows, cols = np.mgrid[0 : cx.shape[0], 0 : cx.shape[1]]
    inside = (cx > EDGE) & (cx < width - 1 - EDGE) & (cy > EDGE) & (cy < height - 1 - EDGE)
    design = np.stack([cols[inside], rows[inside], np.ones(inside.sum())], axis=1)
    solution, *_ = np.linalg.lstsq(design, np.stack([cx[inside], cy[inside]], axis=1), rcond=None)
    return solution.T


def image_to_chip(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    linear, shift = affine[:, :2], affine[:, 2]
    return (points - shift) @ np.linalg.inv(linear).T


def to_unit(chip_points: np.ndarray, size: int, padding: float) -> np.ndarray:
    return chip_points / (size - 1) * (1 + 2 * padding) - padding


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def facenet_unit(box: np.ndarray, landmarks: np.ndarray, size: int = 160) -> np.ndarray:
    """MTCNN's points in facenet-pytorch's box crop (int-truncated box, resized to size×size)."""
    x1, y1, x2, y2 = (int(max(box[0], 0)), int(max(box[1], 0)), int(box[2]), int(box[3]))
    scale = np.array([size / (x2 - x1), size / (y2 - y1)])
    # cv2.resize maps pixel centres: dst = (src + 0.5) * scale - 0.5.
    chip = (landmarks - [x1, y1] + 0.5) * scale - 0.5
    return chip / (size - 1)


def measure(faces_dir: Path) -> dict:
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(shape_predictor_path()))
    mtcnn = FaceDetector(min_face_size=20, score_threshold=0.9)
    per_config: dict[tuple[int, float], list[np.ndarray]] = {c: [] for c in CONFIGS}
    faces = []
    facenet: list[np.ndarray] = []
    for path in photos(faces_dir):
        rgb = load_rgb(path)
        detections = mtcnn.detect(rgb)
        facenet += [
            facenet_unit(b, p.astype(np.float64)) for b, p in zip(detections.boxes, detections.landmarks, strict=True)
        ]
        for rect in hog(rgb, 1):
            dlib_box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float)
            overlaps = [box_iou(dlib_box, box) for box in detections.boxes]
            if not overlaps or max(overlaps) < 0.3:
                continue
            k = int(np.argmax(overlaps))
            shape = predictor(rgb, rect)
            for size, padding in CONFIGS:
                details = dlib.get_face_chip_details(shape, size, padding)
                affine = chip_to_image_affine(details, *rgb.shape[:2])
                chip = image_to_chip(affine, detections.landmarks[k].astype(np.float64))
                per_config[(size, padding)].append(to_unit(chip, size, padding))
            faces.append({"photo": str(path.relative_to(faces_dir)), "face_px": float(detections.sizes[k])})
    result: dict = {"faces": len(faces), "photos": faces, "configs": {}}
    reference = np.mean(per_config[CONFIGS[0]], axis=0)
    for config, points in per_config.items():
        stack = np.array(points)
        mean = stack.mean(axis=0)
        result["configs"][f"{config[0]}/{config[1]}"] = {
            "template_unit": np.round(mean, 5).tolist(),
            "std_unit": np.round(stack.std(axis=0), 5).tolist(),
            "max_diff_vs_150": float(np.abs(mean - reference).max()),
        }
    result["template_unit"] = np.round(reference, 5).tolist()
    result["facenet_faces"] = len(facenet)
    result["facenet_template_unit"] = np.round(np.mean(facenet, axis=0), 5).tolist()
    result["facenet_std_unit"] = np.round(np.std(facenet, axis=0), 5).tolist()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = ROOT.parent / "shared" / "data" / "faces"
    parser.add_argument("faces_dir", nargs="?", type=Path, default=default)
    args = parser.parse_args()
    print(json.dumps(measure(args.faces_dir), indent=2))


if __name__ == "__main__":
    main()
