"""Calibrate the person threshold and quality bar on ../shared/data/faces (docs/calibration.md, persons).

Every single-face photo of knn_examples/train and knn_examples/test is one event, embedded through
the pipeline's own path (MTCNN, 5-point alignment, the embedder; quality from models.quality). It
prints each face's quality, the closest different-person and farthest same-person cosines with
their confidences, and, for a range of person thresholds, what online assignment in file order gives
(persons per identity, purity) — the same rule as actors/persons.py: join the most similar person at
or above the threshold, else start one.

    .venv/bin/python benchmarks/calibrate_persons.py [--data ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.alignment import align_faces
from models.detector import FaceDetector
from models.embedders import embedder_spec, load_embedder
from models.quality import face_quality


def knn_single_face_photos(faces: Path) -> list[tuple[Path, str]]:
    """(photo, identity) for every single-face photo of knn_examples, train first, then test."""
    photos = []
    for folder in sorted((faces / "knn_examples" / "train").iterdir()):
        photos += [(path, folder.name) for path in sorted(folder.iterdir()) if path.is_file()]
    test = {"alex_lacamoire1.jpg": "alex_lacamoire", "johnsnow_test1.jpg": "kit_harington", "obama1.jpg": "obama"}
    photos += [(faces / "knn_examples" / "test" / name, who) for name, who in test.items()]
    return photos


def embed_photos(photos: list[tuple[Path, str]], embedder: str = "dlib_resnet_v1"
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit vectors, qualities and identities of the biggest face of each photo."""
    spec, model = embedder_spec(embedder), load_embedder(embedder)
    detector = FaceDetector(min_face_size=20)
    vectors, qualities, who = [], [], []
    for path, person in photos:
        image = np.asarray(Image.open(path).convert("RGB"))
        found = detector.detect(image).order_by_size()
        if len(found) == 0:
            continue
        chip = align_faces(image, found.landmarks[:1], size=spec.chip_size, template=spec.template,
                           padding=spec.padding)
        vector = model.embed(chip)[0].astype(np.float64)
        vectors.append(vector / np.linalg.norm(vector))
        qualities.append(float(face_quality(image, found)[0]))
        who.append(person)
    return np.asarray(vectors, np.float32), np.asarray(qualities), who


def online_assignment(vectors: np.ndarray, cosine: float) -> list[int]:
    """Person index per face: most similar earlier face's person at or above `cosine`, else a new one."""
    persons: list[int] = []
    for i in range(len(vectors)):
        scores = vectors[:i] @ vectors[i] if i else np.zeros(0)
        best = int(np.argmax(scores)) if i else -1
        persons.append(persons[best] if i and scores[best] >= cosine else (max(persons, default=-1) + 1))
    return persons


def quality_of_clustering(persons: list[int], who: list[str]) -> dict[str, float]:
    """Purity (share of faces in their person's majority identity) and persons per real identity."""
    by_person: dict[int, Counter[str]] = {}
    for person, identity in zip(persons, who, strict=True):
        by_person.setdefault(person, Counter())[identity] += 1
    purity = sum(c.most_common(1)[0][1] for c in by_person.values()) / len(who)
    return {"purity": round(purity, 4), "persons": len(by_person), "identities": len(set(who)),
            "persons_per_identity": round(len(by_person) / len(set(who)), 4)}


def run(data: Path, embedder: str = "dlib_resnet_v1") -> dict[str, Any]:
    calibration = embedder_spec(embedder).calibration
    vectors, qualities, who = embed_photos(knn_single_face_photos(data / "faces"), embedder)
    sims = vectors @ vectors.T
    same = [sims[i, j] for i in range(len(who)) for j in range(i + 1, len(who)) if who[i] == who[j]]
    diff = [sims[i, j] for i in range(len(who)) for j in range(i + 1, len(who)) if who[i] != who[j]]
    sweep = {}
    for threshold in (0.70, 0.72, 0.74, 0.76, 0.78, 0.80, 0.82, 0.84, 0.86):
        sweep[str(threshold)] = quality_of_clustering(online_assignment(vectors, calibration.cosine(threshold)), who)
    return {
        "faces": len(who), "identities": len(set(who)),
        "quality": {"min": round(float(qualities.min()), 4), "median": round(float(np.median(qualities)), 4)},
        "same_person_min": {"cosine": round(float(min(same)), 4),
                            "confidence": round(float(calibration.confidence(min(same))), 4)},
        "different_people_max": {"cosine": round(float(max(diff)), 4),
                                 "confidence": round(float(calibration.confidence(max(diff))), 4)},
        "online_assignment_by_threshold": sweep,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--embedder", default="dlib_resnet_v1")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.data, args.embedder), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
