"""Face detectors compared: speed and precision/recall against hand-labelled boxes.

Three detectors in one run, on the same images:
- `mtcnn`: ours (models.detector.FaceDetector: facenet-pytorch's networks, reorganised for CPU);
- `facenet-pytorch`: facenet-pytorch's own `MTCNN.detect`, the reference (same weights);
- `yuface`: libfacedetection (models.detector.YuFaceDetector), also at several score thresholds.

Accuracy: `benchmarks/data/face_boxes.json`, 42 faces in 26 images (10 shared photos and 16 frames
of the clip, labelled by eye; see its "about"). A detection matches a labelled face when their IoU
is ≥ 0.4 (the detectors draw boxes of different shapes around the same face: yuface's are taller),
greedily, best IoU first; a detection on an "ignore" box counts neither way. Every detector looks
for faces of 20 px and more. (BENCHMARKS.md "Face detectors" was measured on the first 21 images,
before the frames 18, 67, 90, 130 and 150 and the "not_faces" labels were added.)

Speed: frames of the clip at 640×360 and 1280×720, one at a time, alternating rounds; the best round
counts (other processes only ever slow a round down). CPU time per frame (all threads) is printed
beside fps because it is far less sensitive to a shared machine's noise.

Run: .venv/bin/python benchmarks/bench_detectors.py [--frames 40] [--rounds 3] [--threads 2]
(--threads: torch threads for both MTCNNs; yuface always runs on one thread, as in a camera job.)
`--sizes 320 480 640 960` instead compares yuface's detection sizes (`detect_max_side`) on the fixture
as a 720p camera gives it (the clip's frames upscaled ×2) and on 1280×720 frames. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actors.tracking import iou_matrix  # noqa: E402
from models.detector import FaceDetector, YuFaceDetector  # noqa: E402

DATA = Path(os.environ.get("FACEWATCH_TEST_DATA") or ROOT.parent / "shared" / "data")
LABELS = ROOT / "benchmarks" / "data" / "face_boxes.json"
MIN_FACE = 20
MATCH_IOU = 0.4
YUFACE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)

Detect = Callable[[np.ndarray], np.ndarray]  # RGB frame -> (N, 4) boxes


Labelled = list[tuple[str, np.ndarray, dict[str, Any]]]
"""(key, RGB image, its labels) per labelled image of the fixture."""


def load_labelled(data: Path = DATA, labels: Path = LABELS) -> Labelled:
    """(key, RGB image, labels) for every labelled image."""
    import av

    spec = json.loads(labels.read_text())["images"]
    wanted: dict[int, str] = {}
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    for key, entry in spec.items():
        path, _, frame = key.partition("#")
        if frame:
            wanted[int(frame)] = key
            video = data / path
        else:
            image = cv2.imread(str(data / path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"cannot read {data / path}")
            out[key] = (cv2.cvtColor(image, cv2.COLOR_BGR2RGB), entry)
    if wanted:
        with av.open(str(video)) as container:
            for index, av_frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    out[wanted[index]] = (av_frame.to_ndarray(format="rgb24"), spec[wanted[index]])
                if index >= max(wanted):
                    break
    return [(key, *out[key]) for key in spec]


def score_image(found: np.ndarray, faces: np.ndarray, ignore: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, missed faces) of one image's detections."""
    found = np.asarray(found, np.float64).reshape(-1, 4)
    faces = np.asarray(faces, np.float64).reshape(-1, 4)
    matched_faces: set[int] = set()
    matched_found: set[int] = set()
    if len(found) and len(faces):
        ious = iou_matrix(found, faces)
        for flat in np.argsort(-ious, axis=None):
            d, f = divmod(int(flat), len(faces))
            if ious[d, f] < MATCH_IOU:
                break
            if d not in matched_found and f not in matched_faces:
                matched_found.add(d)
                matched_faces.add(f)
    rest = [d for d in range(len(found)) if d not in matched_found]
    ignored = 0
    if rest and len(ignore):
        ignored = int((iou_matrix(found[rest], np.asarray(ignore, np.float64)).max(axis=1) >= MATCH_IOU).sum())
    tp = len(matched_found)
    return tp, len(rest) - ignored, len(faces) - tp


def accuracy(detect: Detect, labelled: list[tuple[str, np.ndarray, dict[str, Any]]]) -> dict[str, Any]:
    tp = fp = fn = 0
    false_positives, misses = [], []
    for key, image, entry in labelled:
        t, f, n = score_image(detect(image), np.array(entry["faces"]), np.array(entry.get("ignore", [])))
        tp, fp, fn = tp + t, fp + f, fn + n
        if f:
            false_positives.append(f"{key} ({f})")
        if n:
            misses.append(f"{key} ({n})")
    return {"precision": round(tp / (tp + fp), 3) if tp + fp else 1.0, "recall": round(tp / (tp + fn), 3),
            "true_positives": tp, "false_positives": fp, "missed": fn,
            "false_positive_images": false_positives, "missed_images": misses}


def speed(methods: dict[str, Detect], frames: list[np.ndarray], rounds: int) -> dict[str, dict[str, float]]:
    best: dict[str, tuple[float, float]] = {}
    for detect in methods.values():  # warm-up
        detect(frames[0])
    for _ in range(rounds):
        for name, detect in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for frame in frames:
                detect(frame)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    return {name: {"fps": round(len(frames) / wall, 1), "cpu_ms_per_frame": round(1000 * cpu / len(frames), 1)}
            for name, (wall, cpu) in best.items()}


def clip_frames(count: int, size: tuple[int, int] | None) -> list[np.ndarray]:
    import av

    with av.open(str(DATA / "video" / "short_hamilton_clip.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0), strict=False)]
    # Spread over the clip: every 6th of the first 6×count frames would be better, but decoding
    # from the start is what a camera does; the first frames hold two faces, later ones one.
    return frames if size is None else [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames]


def detectors() -> tuple[dict[str, Detect], dict[str, Detect]]:
    """The methods timed, and the extra accuracy-only variants (yuface thresholds)."""
    from facenet_pytorch import MTCNN

    ours = FaceDetector(min_face_size=MIN_FACE, device="cpu")
    reference = MTCNN(keep_all=True, min_face_size=MIN_FACE, device="cpu")
    yu = YuFaceDetector(min_face_size=MIN_FACE)  # one OpenMP thread, as in a camera job

    def reference_detect(image: np.ndarray) -> np.ndarray:
        boxes, probs = reference.detect(image)
        if boxes is None:
            return np.zeros((0, 4))
        sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        # The same final cut as ours: O-Net score >= 0.9 and the size floor.
        return boxes[(probs >= ours.score_threshold) & (sizes >= MIN_FACE)]

    timed: dict[str, Detect] = {
        "mtcnn": lambda image: ours.detect(image).boxes,
        "facenet-pytorch": reference_detect,
        "yuface": lambda image: yu.detect(image).boxes,
    }
    variants: dict[str, Detect] = {}
    for threshold in YUFACE_THRESHOLDS:
        variant = YuFaceDetector(min_face_size=MIN_FACE, score_threshold=threshold)
        variants[f"yuface@{threshold}"] = lambda image, d=variant: d.detect(image).boxes
    return timed, variants


def run(frames: int = 40, rounds: int = 3, threads: int = 2) -> dict[str, Any]:
    torch.set_num_threads(threads)
    timed, variants = detectors()
    labelled = load_labelled()
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": threads, "python": platform.python_version(),
                    "load_average": [round(v, 1) for v in os.getloadavg()]},
        "labelled": {"images": len(labelled), "faces": sum(len(e["faces"]) for _, _, e in labelled)},
        "accuracy": {name: accuracy(detect, labelled) for name, detect in {**timed, **variants}.items()},
        "speed": {},
    }
    for label, size in (("640x360", None), ("1280x720", (1280, 720))):
        result["speed"][label] = speed(timed, clip_frames(frames, size), rounds)
    return result


def as_720p_camera(labelled: Labelled) -> Labelled:
    """The fixture as a 720p camera gives it: the clip's 640×360 frames upscaled ×2 (bicubic) with their
    boxes, the photos as they are."""
    cameras = []
    for key, image, entry in labelled:
        if "#" in key:  # a frame of the 640×360 clip
            image = cv2.resize(image, (1280, 720), interpolation=cv2.INTER_CUBIC)
            entry = {k: (np.asarray(entry[k], float) * 2).tolist() for k in ("faces", "ignore") if k in entry}
        cameras.append((key, image, entry))
    return cameras


def detection_sizes(sizes: list[int], frames: int = 40, rounds: int = 3) -> dict[str, Any]:
    """yuface at each `detect_max_side`: accuracy on the fixture as a 720p camera gives it, and CPU per
    1280×720 clip frame (the choice of the stream setting's default, docs/detection.md)."""
    labelled = as_720p_camera(load_labelled())
    by_side = {side: YuFaceDetector(min_face_size=MIN_FACE, max_side=side) for side in sizes}
    methods = {str(side): (lambda image, d=d: d.detect(image).boxes) for side, d in by_side.items()}
    timing = speed(methods, clip_frames(frames, (1280, 720)), rounds)
    return {"machine": {"cpus": os.cpu_count(), "load_average": [round(v, 1) for v in os.getloadavg()]},
            "sizes": {name: {**timing[name], **{k: v for k, v in accuracy(detect, labelled).items()
                                                if k in ("precision", "recall", "false_positive_images",
                                                         "missed_images")}}
                      for name, detect in methods.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (MTCNN); yuface runs on one thread")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="PX",
                        help="instead: yuface at these detection sizes on the fixture as a 720p camera")
    args = parser.parse_args()
    if args.sizes:
        print(json.dumps(detection_sizes(args.sizes, args.frames, args.rounds), indent=1))
        return
    print(json.dumps(run(args.frames, args.rounds, args.threads), indent=1))


if __name__ == "__main__":
    main()
