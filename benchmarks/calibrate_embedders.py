"""Measure how an embedder's scores separate people on ../shared/data, and what each preset gives.

For every labelled single-face photo (identity from the file or folder name), the pipeline's own path
(MTCNN → 5-point alignment → embedder) gives a descriptor. Over all pairs it reports dlib's native
Euclidean distance on raw descriptors next to the cosine of the unit vectors, the descriptor norms,
and for each preset the false-match rate (different people at or above the preset) and the
false-non-match rate (same person below it).

    .venv/bin/python benchmarks/calibrate_embedders.py [--data ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.alignment import align_faces
from models.calibration import PRESETS
from models.detector import FaceDetector
from models.embedders import embedder_spec, load_embedder

IDENTITY_OF_FILE = {
    "obama.jpg": "obama", "obama2.jpg": "obama", "obama_small.jpg": "obama", "obama-240p.jpg": "obama",
    "obama-480p.jpg": "obama", "obama-720p.jpg": "obama", "obama-1080p.jpg": "obama", "biden.jpg": "biden",
    "lin-manuel-miranda.png": "lin_manuel_miranda", "alex-lacamoire.png": "alex_lacamoire",
    "alex_lacamoire1.jpg": "alex_lacamoire", "johnsnow_test1.jpg": "kit_harington", "obama1.jpg": "obama",
}


def labelled_photos(faces: Path) -> list[tuple[Path, str]]:
    photos = [(faces / name, who) for name, who in IDENTITY_OF_FILE.items() if (faces / name).exists()]
    photos += [(faces / "knn_examples" / "test" / name, who) for name, who in IDENTITY_OF_FILE.items()
               if (faces / "knn_examples" / "test" / name).exists()]
    for folder in sorted((faces / "knn_examples" / "train").iterdir()):
        photos += [(p, folder.name) for p in sorted(folder.iterdir()) if p.is_file()]
    return photos


def run(data: Path, embedder: str = "dlib_resnet_v1") -> dict[str, Any]:
    spec = embedder_spec(embedder)
    model = load_embedder(embedder)
    detector = FaceDetector(min_face_size=20)
    raw, who, names = [], [], []
    for path, person in labelled_photos(data / "faces"):
        image = np.asarray(Image.open(path).convert("RGB"))
        found = detector.detect(image).order_by_size()
        if len(found) == 0:
            continue
        chip = align_faces(image, found.landmarks[:1], size=spec.chip_size, template=spec.template,
                           padding=spec.padding)
        raw.append(model.embed(chip)[0])
        who.append(person)
        names.append(path.name)
    vectors = np.asarray(raw, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / norms[:, None]
    same, different = [], []
    for i, j in itertools.combinations(range(len(vectors)), 2):
        pair = (float(np.linalg.norm(vectors[i] - vectors[j])), float(unit[i] @ unit[j]))
        (same if who[i] == who[j] else different).append(pair)
    same_cos = np.array([c for _, c in same])
    diff_cos = np.array([c for _, c in different])
    presets = {}
    for preset, threshold in PRESETS.items():
        cut = spec.calibration.cosine(threshold)
        presets[preset] = {
            "confidence": threshold, "cosine": round(cut, 4),
            "false_match_rate": round(float((diff_cos >= cut).mean()), 4),
            "false_non_match_rate": round(float((same_cos < cut).mean()), 4),
        }
    return {
        "embedder": embedder, "faces": len(vectors), "people": len(set(who)),
        "same_pairs": len(same), "different_pairs": len(different),
        "descriptor_norm": {"min": round(float(np.linalg.norm(vectors, axis=1).min()), 4),
                            "max": round(float(np.linalg.norm(vectors, axis=1).max()), 4)},
        "same_person": {"max_distance": round(max(d for d, _ in same), 4),
                        "min_cosine": round(float(same_cos.min()), 4)},
        "different_people": {"min_distance": round(min(d for d, _ in different), 4),
                             "max_cosine": round(float(diff_cos.max()), 4)},
        "presets": presets,
        # Cosines equivalent to raw distances 0.5 / 0.6 / 0.7 for descriptors of the median norm:
        # c = 1 - d^2 / (2 n^2); these are the anchors models/embedders.py uses for dlib.
        "cosine_for_raw_distance": {str(d): round(1 - d * d / (2 * float(np.median(norms)) ** 2), 4)
                                    for d in (0.5, 0.6, 0.7)},
        "median_norm": round(float(np.median(norms)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--embedder", default="dlib_resnet_v1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.data, args.embedder)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
