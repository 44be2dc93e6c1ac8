"""Face descriptor throughput: dlib's own C++ ResNet vs our PyTorch port, on the same real chips.

    .venv/bin/python benchmarks/bench_extraction.py [--chips 256] [--json] [--device cuda]

The chips are real aligned faces: dlib's HOG detector and 5-point shape predictor on the shared photos
(``../shared/data/faces``), cut by ``dlib.get_face_chip(img, shape, 150, 0.25)`` exactly as dlib's
recogniser expects. To reach the requested count from a few dozen faces, each face is also cut from
the mirrored photo and with the detection box nudged by a few pixels (the shape predictor is re-run,
so the alignment really moves): every chip is still a real, properly aligned face.

Both models are timed in the same run, on the same chips; agreement (cosine per chip) is checked too.
Other processes on the machine slow both sides, dlib (one thread) much less than torch (all cores, in
lock-step): before each timed pass the script waits (``--quiet-wait``) for the CPU to be idle, measures
the CPU that other processes used during the pass, and reports the median over the quiet passes
(``faces_per_s``) next to the median over all of them (``faces_per_s_all_passes``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from models.dlib_resnet import DlibResNetEmbedder  # noqa: E402
from models.model_files import dlib_resnet_path, dlib_shape_predictor_5_path  # noqa: E402

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
# Detection-box nudges (pixels) used to make more distinct real chips from each detected face.
# Other processes using less than this many cores during a timed pass leave it "quiet".
QUIET_LOAD = 0.25
DLIB_CHUNK = 32
JITTERS = [(0, 0), (3, 0), (-3, 0), (0, 3), (0, -3), (3, 3), (-3, -3), (3, -3), (-3, 3)]


def default_faces_dir() -> Path:
    configured = os.environ.get("FACEWATCH_TEST_DATA")
    return (Path(configured) if configured else ROOT.parent / "shared" / "data") / "faces"


def _photos(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB")))


def _faces(photos: list[Path]) -> Iterator[tuple[np.ndarray, object]]:
    """(image, detection rectangle) for every face dlib finds, in each photo and its mirror image."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    for path in photos:
        image = _load_rgb(path)
        rects = detector(image, 1)
        mirrored = np.ascontiguousarray(image[:, ::-1])
        width = image.shape[1]
        for r in rects:
            yield image, r
            # The mirrored box of a detected face; the shape predictor re-aligns on the mirrored photo.
            yield mirrored, dlib.rectangle(width - 1 - r.right(), r.top(), width - 1 - r.left(), r.bottom())


def build_chips(count: int, faces_dir: Path) -> tuple[np.ndarray, int, int]:
    """``count`` real 150x150 chips, plus the number of photos and of detected faces they came from."""
    import dlib

    photos = _photos(faces_dir)
    if not photos:
        raise FileNotFoundError(f"no photos under {faces_dir} (set FACEWATCH_TEST_DATA)")
    predictor = dlib.shape_predictor(str(dlib_shape_predictor_5_path()))
    faces = list(_faces(photos))
    if not faces:
        raise RuntimeError(f"dlib found no face in the photos under {faces_dir}")
    chips: list[np.ndarray] = []
    for dx, dy in JITTERS:
        for image, r in faces:
            if len(chips) == count:
                break
            moved = dlib.rectangle(r.left() + dx, r.top() + dy, r.right() + dx, r.bottom() + dy)
            chips.append(dlib.get_face_chip(image, predictor(image, moved), size=150, padding=0.25))
    while len(chips) < count:  # more chips asked for than distinct cuts: repeat them
        chips.append(chips[len(chips) % (len(faces) * len(JITTERS))])
    return np.stack(chips), len(photos), len(faces) // 2


def _cpu_jiffies() -> tuple[int, int]:
    """(busy jiffies of the whole machine, jiffies used by this process)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    with open("/proc/self/stat") as f:
        own = f.read().rsplit(")", 1)[1].split()
    return sum(fields) - fields[3] - fields[4], int(own[11]) + int(own[12])


def _foreign_load(since: tuple[int, int], seconds: float) -> float | None:
    """CPU cores used by other processes since ``since`` (None where /proc is not there)."""
    try:
        busy, own = _cpu_jiffies()
    except OSError:
        return None
    cores = ((busy - since[0]) - (own - since[1])) / os.sysconf("SC_CLK_TCK") / max(seconds, 1e-3)
    return round(max(cores, 0.0), 2)  # clock-tick granularity can make an idle reading dip below 0


def wait_until_quiet(max_wait_s: float, limit: float = 0.2) -> float | None:
    """Wait (at most ``max_wait_s``) until other processes use less than ``limit`` cores; their load."""
    deadline = time.monotonic() + max_wait_s
    load = None
    while True:
        try:
            start = _cpu_jiffies()
        except OSError:
            return None
        time.sleep(0.5)
        load = _foreign_load(start, 0.5)
        if load is None or load < limit or time.monotonic() >= deadline:
            return load


def _timed(fn, quiet_wait_s: float) -> tuple[float, float | None]:
    """Seconds one call of ``fn`` takes, and the CPU load of other processes meanwhile."""
    if quiet_wait_s > 0:
        wait_until_quiet(quiet_wait_s)
    jiffies = _cpu_jiffies() if os.path.exists("/proc/stat") else None
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return seconds, _foreign_load(jiffies, seconds) if jiffies else None


def _summarise(passes: list[tuple[int, float, float | None]]) -> dict:
    """Rates of timed passes (faces, seconds, foreign load): the median over the quiet ones.

    A pass is quiet when other processes used less than QUIET_LOAD cores meanwhile; when none was,
    the median over all passes is used and ``quiet_passes`` says 0.
    """
    rates = [n / s for n, s, _ in passes]
    quiet = [n / s for n, s, load in passes if load is not None and load < QUIET_LOAD]
    return {
        "faces_per_s": round(statistics.median(quiet or rates), 2),
        "faces_per_s_all_passes": round(statistics.median(rates), 2),
        "faces_per_s_best": round(max(rates), 2),
        "passes": len(passes),
        "quiet_passes": len(quiet),
        "pass_rates": [round(r, 1) for r in rates],
        "foreign_load": [load for _, _, load in passes],
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _time_dlib(chips: np.ndarray, quiet_wait_s: float, chunk: int = DLIB_CHUNK) -> tuple[np.ndarray, dict]:
    """dlib's descriptors of every chip, timed in chunks (one batch call each) so each chunk can wait
    for a quiet CPU: at ~14 faces/s a single pass over 256 chips would rarely stay undisturbed."""
    import dlib

    recogniser = dlib.face_recognition_model_v1(str(dlib_resnet_path()))
    descriptors: list[np.ndarray] = []
    passes = []
    for start in range(0, len(chips), chunk):
        part = list(chips[start : start + chunk])

        def dlib_pass(part: list[np.ndarray] = part) -> None:
            descriptors.extend(np.asarray(d, np.float32) for d in recogniser.compute_face_descriptor(part))

        seconds, load = _timed(dlib_pass, quiet_wait_s)
        passes.append((len(part), seconds, load))
    return np.stack(descriptors), _summarise(passes)


def _time_port(
    chips: np.ndarray, reference: np.ndarray, dlib_rate: float, options: dict, repeats: int, quiet_wait_s: float
) -> dict:
    embedder = DlibResNetEmbedder(**options)
    start = time.perf_counter()
    embedder.warmup(chips[: embedder.batch_size])
    warmup_s = time.perf_counter() - start
    ours: list[np.ndarray] = []

    def port_pass() -> None:
        ours[:] = [embedder.embed(chips)]

    passes = [(len(chips), *_timed(port_pass, quiet_wait_s)) for _ in range(repeats)]
    summary = _summarise(passes)
    cos = _cosines(ours[0], reference)
    return {
        "precision": embedder.precision,
        "batch_size": embedder.batch_size,
        "compiled": embedder.compiled,
        "device": str(embedder.device),
        **summary,
        "ratio": round(summary["faces_per_s"] / dlib_rate, 2),
        "cosine_min": round(float(cos.min()), 7),
        "cosine_max": round(float(cos.max()), 7),
        "max_abs_diff": float(np.abs(ours[0] - reference).max()),
        "warmup_s": round(warmup_s, 2),
    }


def run(
    chips: int = 256,
    device: str | None = None,
    precisions: tuple[str, ...] = ("fp32", "bf16"),
    batch_size: int | None = None,
    compile: bool = False,
    repeats: int = 5,
    quiet_wait_s: float = 30.0,
    faces_dir: Path | None = None,
) -> dict:
    """Build chips, time dlib and the port (one entry per precision) on them, check agreement.

    ``quiet_wait_s``: before each timed pass, wait up to that long for other processes to leave the
    CPU idle (this machine is shared); the load they caused during each pass is reported either way.
    """
    import dlib
    import torch

    load_before = os.getloadavg()
    data, n_photos, n_faces = build_chips(chips, faces_dir or default_faces_dir())
    reference, dlib_result = _time_dlib(data, quiet_wait_s)
    ports = []
    for precision in precisions:
        options: dict = {"device": device, "precision": precision, "compile": compile}
        if batch_size:
            options["batch_size"] = batch_size
        ports.append(_time_port(data, reference, dlib_result["faces_per_s"], options, repeats, quiet_wait_s))
    return {
        "chips": len(data),
        "photos": n_photos,
        "faces_detected": n_faces,
        "dlib": dlib_result,
        "torch": ports,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": ports[0]["device"] if ports else None,
            "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "dlib": dlib.__version__,
            "dlib_cuda": bool(dlib.DLIB_USE_CUDA),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
    }


def _print_human(result: dict) -> None:
    m, d = result["machine"], result["dlib"]
    print(f"chips: {result['chips']} from {result['faces_detected']} faces in {result['photos']} photos")
    print(f"dlib C++ ({m['dlib']}): {d['faces_per_s']:8.1f} faces/s ({d['quiet_passes']}/{d['passes']} quiet passes)")
    for p in result["torch"]:
        label = f"PyTorch {p['precision']} bs={p['batch_size']}{' compiled' if p['compiled'] else ''}"
        print(
            f"{label:24s}: {p['faces_per_s']:8.1f} faces/s ({p['quiet_passes']}/{p['passes']} quiet passes), "
            f"ratio {p['ratio']:.1f}x, cosine min {p['cosine_min']:.6f} max {p['cosine_max']:.6f}"
        )
    print(
        f"machine: {m['cpu_count']} CPUs, {m['torch_threads']} torch threads, device {m['device']}, "
        f"load average {m['load_average_before']} -> {m['load_average_after']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chips", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--precision", default="fp32,bf16", help="comma-separated precisions of the port to time: fp32, bf16"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of the port (median)")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="seconds to wait for an idle CPU before each pass"
    )
    parser.add_argument("--faces-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(
        chips=args.chips,
        device=args.device,
        precisions=tuple(p.strip() for p in args.precision.split(",") if p.strip()),
        batch_size=args.batch_size,
        compile=args.compile,
        repeats=args.repeats,
        quiet_wait_s=args.quiet_wait,
        faces_dir=args.faces_dir,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
