"""Evaluate: a labelled set (a ZIP of folders, one per person) → ROC, AUC, EER, FMR/FNMR per preset,
top-1/top-5 identification, and a PNG plot of the ROC curve.

Each photo's identity is its folder's name (the innermost folder). Its biggest face is embedded with
the active model through the extractor pool (the pipeline's own path); photos without a face are
listed as errors. Over every pair of faces: same-person pairs are genuine, the others impostor pairs;
scores are the calibrated confidences of the API. FMR at a threshold = impostor pairs at or above it
/ impostor pairs; FNMR = genuine pairs below it / genuine pairs. The ROC is (FMR, 1 − FNMR) over
thresholds 0…1 in steps of 0.01 plus every observed score; AUC by the trapezoid rule; EER where FMR
and FNMR cross (their mean at the threshold where they are closest). Identification: each face whose
person has another face is a probe against all other faces; top-N = the share of probes with a face
of their own person among the N best.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from actors.tasks.archive import analyze, list_photos, read_photo
from actors.tasks.context import Finished, TaskContext, atomic_write
from facewatch.errors import FacewatchError
from facewatch.task_params import EvaluateParams, parse
from facewatch.tasks import chunks
from models.calibration import PRESETS
from models.embedders import embedder_spec


def person_of(name: str) -> str | None:
    parent = PurePosixPath(name).parent.name
    return parent or None


def plan(ctx: TaskContext, task_id: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    p = parse(EvaluateParams, params)
    photos = [n for n in list_photos(ctx, params) if person_of(n)]
    return [{"files": chunk} for chunk in chunks(photos, p.part_size)]


def run_part(ctx: TaskContext, task_id: int, part_id: int, seq: int, params: dict[str, Any],
             spec: dict[str, Any]) -> dict[str, Any]:
    faces, errors = [], []
    for name in spec["files"]:
        try:
            found, extracted = analyze(ctx, read_photo(ctx, params, name))
        except FacewatchError as exc:
            errors.append({"file": name, "code": exc.code, "reason": exc.reason})
            continue
        if not found:
            errors.append({"file": name, "code": "NO_FACE", "reason": "no face found"})
            continue
        faces.append({"file": name, "person": person_of(name),
                      "vector": [round(float(v), 7) for v in extracted["embeddings"][0]]})
    return {"faces": faces, "errors": errors}


# -- the metrics (pure) ----------------------------------------------------------------------------


def pair_scores(vectors: np.ndarray, people: list[str], calibrate: Any) -> tuple[np.ndarray, np.ndarray]:
    """(genuine confidences, impostor confidences) over every unordered pair."""
    cos = vectors @ vectors.T
    i, j = np.triu_indices(len(people), k=1)
    same = np.array([people[a] == people[b] for a, b in zip(i, j, strict=True)], dtype=bool)
    conf = np.asarray(calibrate(cos[i, j]), dtype=np.float64)
    return conf[same], conf[~same]


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at `threshold` (accept at or above)."""
    fmr = float((impostor >= threshold).mean()) if len(impostor) else 0.0
    fnmr = float((genuine < threshold).mean()) if len(genuine) else 0.0
    return fmr, fnmr


def roc(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, Any]:
    thresholds = np.unique(np.concatenate([np.round(np.linspace(0, 1, 101), 4), genuine, impostor, [1.0 + 1e-9]]))
    points = []
    for t in thresholds:
        fmr, fnmr = rates(genuine, impostor, float(t))
        points.append((float(t), fmr, 1.0 - fnmr, fnmr))
    fpr = np.array([p[1] for p in points])
    tpr = np.array([p[2] for p in points])
    order = np.lexsort((tpr, fpr))
    auc = float(np.trapezoid(tpr[order], fpr[order])) if len(points) > 1 else 0.0
    gaps = [abs(p[1] - p[3]) for p in points]
    best = int(np.argmin(gaps))
    return {
        "points": [{"threshold": round(t, 4), "fmr": round(f, 6), "tpr": round(r, 6)} for t, f, r, _ in points],
        "auc": round(auc, 6),
        "eer": round((points[best][1] + points[best][3]) / 2, 6), "eer_threshold": round(points[best][0], 4),
    }


def identification(vectors: np.ndarray, people: list[str], ranks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    cos = vectors @ vectors.T
    np.fill_diagonal(cos, -np.inf)
    counts: dict[str, int] = {}
    for p in people:
        counts[p] = counts.get(p, 0) + 1
    probes = [i for i, p in enumerate(people) if counts[p] > 1]
    hits = {r: 0 for r in ranks}
    for i in probes:
        order = np.argsort(-cos[i])
        for r in ranks:
            if any(people[j] == people[i] for j in order[:r]):
                hits[r] += 1
    return {"probes": len(probes),
            **{f"top{r}": round(hits[r] / len(probes), 6) if probes else None for r in ranks}}


def evaluate(vectors: np.ndarray, people: list[str], calibrate: Any) -> dict[str, Any]:
    genuine, impostor = pair_scores(vectors, people, calibrate)
    presets = {}
    for name, threshold in PRESETS.items():
        fmr, fnmr = rates(genuine, impostor, threshold)
        presets[name] = {"threshold": threshold, "fmr": round(fmr, 6), "fnmr": round(fnmr, 6),
                         "false_matches": int((impostor >= threshold).sum()),
                         "false_non_matches": int((genuine < threshold).sum())}
    return {"faces": len(people), "people": len(set(people)), "genuine_pairs": len(genuine),
            "impostor_pairs": len(impostor), "presets": presets, "roc": roc(genuine, impostor),
            "identification": identification(vectors, people)}


def plot_png(report: dict[str, Any], size: int = 480) -> bytes:
    """The ROC curve (FMR on a log axis from 1e-4, TPR linear) drawn with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 50, 20, size - 20, size - 45
    draw.rectangle([left, top, right, bottom], outline="black")
    lo = -4.0

    def xy(fmr: float, tpr: float) -> tuple[float, float]:
        x = (max(np.log10(max(fmr, 1e-12)), lo) - lo) / -lo
        return left + x * (right - left), bottom - tpr * (bottom - top)

    for decade in range(int(lo), 1):
        x, _ = xy(10.0 ** decade, 0)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 12, bottom + 8), f"1e{decade}", fill="black")
    for tick in (0.0, 0.5, 1.0):
        _, y = xy(1, tick)
        draw.text((8, y - 6), f"{tick:.1f}", fill="black")
    points = sorted((p["fmr"], p["tpr"]) for p in report["roc"]["points"])
    draw.line([xy(f, t) for f, t in points], fill="blue", width=2)
    for name, preset in report["presets"].items():
        if name == "none":
            continue
        x, y = xy(preset["fmr"], 1 - preset["fnmr"])
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], outline="red", width=2)
        draw.text((x + 6, y - 14), name, fill="red")
    draw.text((left, bottom + 24), f"FMR (log)   AUC {report['roc']['auc']:.4f}   EER {report['roc']['eer']:.4f}",
              fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def finish(ctx: TaskContext, task_id: int, params: dict[str, Any], results: list[dict[str, Any]]) -> Finished:
    faces = [f for r in results for f in r["faces"]]
    errors = [e for r in results for e in r["errors"]]
    if len(faces) < 2:
        raise FacewatchError("fewer than two faces were found: nothing to evaluate")
    vectors = np.asarray([f["vector"] for f in faces], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    report = {"model": ctx.embedder, **evaluate(vectors, [f["person"] for f in faces],
                                                embedder_spec(ctx.embedder).calibration.confidence),
              "errors": errors}
    folder = ctx.task_dir(task_id)
    name = f"evaluation-{task_id}.json"
    atomic_write(folder / name, lambda h: h.write(json.dumps(report, indent=1).encode()))
    png = plot_png(report)
    atomic_write(folder / "roc.png", lambda h: h.write(png))
    summary = {k: report[k] for k in ("faces", "people", "genuine_pairs", "impostor_pairs")}
    summary.update(auc=report["roc"]["auc"], eer=report["roc"]["eer"], identification=report["identification"],
                   presets=report["presets"], photo_errors=len(errors))
    return Finished(summary=summary, result_name=name, files=["roc.png"])
