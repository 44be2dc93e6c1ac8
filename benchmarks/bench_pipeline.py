"""Real-time factor of the whole pipeline on a clip vs a plain per-frame dlib loop, in one run.

facewatch: `cluster.batch.process_videos` (the same actors as the service: CameraJob, extractor pool,
event pipeline, galleries) on a fresh installation; its `wall_s` excludes start-up.
Reference: the `face_recognition`-style loop — for every frame, dlib's HOG detector, the 5-point
shape predictor and dlib's ResNet descriptor for each face — timed on the same clip.
Real-time factor = video seconds / wall seconds (higher is better; ≥ 1 keeps up with the video).

    .venv/bin/python benchmarks/bench_pipeline.py [--video ../shared/data/video/short_hamilton_clip.mp4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import dlib
import numpy as np

from models.model_files import dlib_resnet_path, dlib_shape_predictor_5_path

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "short_hamilton_clip.mp4"


def plain_dlib_loop(video: Path) -> dict[str, Any]:
    """Every frame: HOG detection, 5 landmarks, one ResNet descriptor per face (dlib's C++)."""
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(dlib_shape_predictor_5_path()))
    encoder = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    frames = faces = 0
    started = time.perf_counter()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        for frame in container.decode(stream):
            image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            for box in detector(image, 1):
                encoder.compute_face_descriptor(image, shapes(image, box))
                faces += 1
            frames += 1
    wall = time.perf_counter() - started
    return {"frames": frames, "faces": faces, "seconds": duration, "wall_s": round(wall, 3),
            "realtime_factor": round(duration / wall, 3)}


def facewatch_pipeline(video: Path) -> dict[str, Any]:
    from cluster.batch import process_videos
    from facewatch.settings import load_config

    with tempfile.TemporaryDirectory() as home:
        config = load_config({**os.environ, "FACEWATCH_HOME": home, "FACEWATCH_DATABASE_URL": "",
                              "FACEWATCH_MEDIA_ROOT": "", "FACEWATCH_RAY_ADDRESS": ""})
        summary = process_videos([video], camera_group="bench", config=config, progress=False)[0]
    return {"frames": summary["frames"], "events": summary["events"], "seconds": summary["seconds"],
            "wall_s": summary["wall_s"], "realtime_factor": round(summary["seconds"] / summary["wall_s"], 3)}


def run(video: Path = DEFAULT_VIDEO) -> dict[str, Any]:
    ours = facewatch_pipeline(video)
    reference = plain_dlib_loop(video)
    return {"video": video.name, "facewatch": ours, "plain_dlib_loop": reference,
            "speedup": round(ours["realtime_factor"] / reference["realtime_factor"], 2),
            "cpu_count": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.video), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
