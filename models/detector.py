"""MTCNN face detection (facenet-pytorch's networks and weights), batched over frames.

`FaceDetector` runs facenet-pytorch's three-stage MTCNN (P-Net over an image pyramid, then R-Net
and O-Net on candidate crops) with the pretrained weights shipped inside the facenet-pytorch wheel
(nothing is ever downloaded). It returns, per frame, a `Detections` with boxes, scores and the five
landmarks in MTCNN's order: left eye, right eye, nose tip, left mouth corner, right mouth corner
("left" = image-left, the subject's right).

The pipeline is facenet-pytorch's `detect_face`, with the same thresholds, NMS and box regression,
but reorganised for speed on CPU without changing what it finds (see benchmarks/bench_detection.py):
- P-Net runs in channels-last memory format (its 2×2 max-pool is ~3× faster that way on CPU);
- on GPU all frames of a call go through each stage together (one P-Net call per pyramid level,
  one R-Net and one O-Net call for the candidates of all frames); on CPU batching buys nothing
  (these small convolutions are memory-bound: a batch of large pyramid levels is slower than the
  same frames one by one), so frames go through the stages one at a time (`frames_per_pass`);
- pyramid levels and candidate crops are computed from one integral image per frame: the same
  box averages that facenet-pytorch's `interpolate(mode="area")` (adaptive average pooling)
  computes, equal to the last float bit or so, but without a pass over the full frame per
  pyramid level nor one torch call per candidate crop. (OpenCV's INTER_AREA would be faster
  still but is a different filter: it moved boxes by ~2 % of the face size and changed which
  borderline faces are found.)

Frames of different sizes in one call are grouped by size and each group is batched.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy,
    bbreg,
    generateBoundingBox,
    rerec,
)
from torchvision.ops.boxes import batched_nms

from .types import Detections

# facenet-pytorch's defaults (those of the original MTCNN paper's code).
DEFAULT_STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
DEFAULT_PYRAMID_FACTOR = 0.709


class DetectorError(ValueError):
    """A frame the detector cannot take (wrong shape or dtype)."""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class _Candidates:
    """Boxes of all frames of one batch: (K, 5+) float tensor and the frame index of each row."""

    boxes: torch.Tensor
    frame_index: torch.Tensor


class FaceDetector:
    """Batched MTCNN detector.

    min_face_size: smallest face (pixels, longer box side) to look for and to return; it sets the
        finest pyramid level, so larger values are also faster.
    score_threshold: minimum final (O-Net) confidence of a returned face.
    stage_thresholds: MTCNN's per-stage candidate thresholds (P-Net, R-Net, O-Net).
    pyramid_factor: scale step between pyramid levels (larger = more levels, slower, finds more).
    device: "cuda", "cpu", a torch.device, or None for cuda when available else cpu.
    frames_per_pass: frames that go through the three stages together; None = all of a call on
        GPU, 1 on CPU (see module docstring). Results do not depend on it.
    """

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        score_threshold: float = 0.9,
        stage_thresholds: Sequence[float] = DEFAULT_STAGE_THRESHOLDS,
        pyramid_factor: float = DEFAULT_PYRAMID_FACTOR,
        device: str | torch.device | None = None,
        frames_per_pass: int | None = None,
    ) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
        if not 0.0 < pyramid_factor < 1.0:
            raise ValueError(f"pyramid_factor must be in (0, 1), got {pyramid_factor}")
        if len(stage_thresholds) != 3:
            raise ValueError("stage_thresholds needs three values (P-Net, R-Net, O-Net)")
        self.min_face_size = int(min_face_size)
        self.score_threshold = float(score_threshold)
        self.stage_thresholds = tuple(float(t) for t in stage_thresholds)
        self.pyramid_factor = float(pyramid_factor)
        self.device = torch.device(device) if device is not None else default_device()
        if frames_per_pass is None:
            frames_per_pass = 1 if self.device.type == "cpu" else 1_000_000
        if frames_per_pass < 1:
            raise ValueError(f"frames_per_pass must be >= 1, got {frames_per_pass}")
        self.frames_per_pass = int(frames_per_pass)
        # pretrained=True loads the .pt files inside the facenet_pytorch wheel (data/*.pt).
        self._pnet = PNet(pretrained=True).to(self.device).eval()
        self._rnet = RNet(pretrained=True).to(self.device).eval()
        self._onet = ONet(pretrained=True).to(self.device).eval()
        self._pnet = self._pnet.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ public API

    def detect(self, frame: np.ndarray) -> Detections:
        """Faces in one (H, W, 3) uint8 RGB frame."""
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        """Faces in each frame; frames are (H, W, 3) uint8 RGB, any mix of sizes."""
        frames = checked_frames(frames)
        results: list[Detections | None] = [None] * len(frames)
        for same_size in _group_by_size(frames).values():
            for start in range(0, len(same_size), self.frames_per_pass):
                indices = same_size[start : start + self.frames_per_pass]
                detected = self._detect_same_size([frames[i] for i in indices])
                for i, detections in zip(indices, detected, strict=True):
                    results[i] = detections
        return [r if r is not None else Detections.empty() for r in results]

    # ------------------------------------------------------------------ the three stages

    @torch.inference_mode()
    def _detect_same_size(self, frames: list[np.ndarray]) -> list[Detections]:
        # One integral image per frame serves every pyramid level and every candidate crop.
        integrals = [_integral(frame) for frame in frames]
        candidates = self._propose(integrals)
        candidates = self._refine(integrals, candidates)
        boxes, points, frame_index = self._output(integrals, candidates)
        return self._split(boxes, points, frame_index, len(frames))

    def _scales(self, height: int, width: int) -> list[float]:
        # Same pyramid as facenet-pytorch: the finest level maps min_face_size to P-Net's 12 px.
        scale = 12.0 / self.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.pyramid_factor
            side *= self.pyramid_factor
        return scales

    def _propose(self, integrals: list[np.ndarray]) -> _Candidates:
        """Stage 1: P-Net over the pyramid; NMS per level, then across levels."""
        height, width = integrals[0].shape[0] - 1, integrals[0].shape[1] - 1
        boxes, frame_index, picks = [], [], []
        offset = 0
        for scale in self._scales(height, width):
            size = (int(height * scale + 1), int(width * scale + 1))
            level = np.stack([_resize(integral, size) for integral in integrals])
            # An NHWC array seen as NCHW is already channels-last: no copy needed.
            reg, probs = self._pnet(self._to_tensor(_normalise(level)))
            level_boxes, level_index = generateBoundingBox(reg, probs[:, 1], scale, self.stage_thresholds[0])
            pick = batched_nms(level_boxes[:, :4], level_boxes[:, 4], level_index, 0.5)
            boxes.append(level_boxes)
            frame_index.append(level_index)
            picks.append(pick + offset)
            offset += level_boxes.shape[0]
        if not boxes:  # frame smaller than min_face_size: no pyramid level at all
            return _Candidates(torch.zeros((0, 5), device=self.device), torch.zeros(0, dtype=torch.long))
        all_boxes = torch.cat(boxes)
        all_index = torch.cat(frame_index)
        keep = torch.cat(picks)
        all_boxes, all_index = all_boxes[keep], all_index[keep]
        keep = batched_nms(all_boxes[:, :4], all_boxes[:, 4], all_index, 0.7)
        all_boxes, all_index = all_boxes[keep], all_index[keep]
        # Apply P-Net's box regression, then square the boxes for R-Net.
        w = all_boxes[:, 2] - all_boxes[:, 0]
        h = all_boxes[:, 3] - all_boxes[:, 1]
        regressed = torch.stack(
            [
                all_boxes[:, 0] + all_boxes[:, 5] * w,
                all_boxes[:, 1] + all_boxes[:, 6] * h,
                all_boxes[:, 2] + all_boxes[:, 7] * w,
                all_boxes[:, 3] + all_boxes[:, 8] * h,
                all_boxes[:, 4],
            ],
            dim=1,
        )
        return _Candidates(rerec(regressed), all_index)

    def _refine(self, integrals: list[np.ndarray], candidates: _Candidates) -> _Candidates:
        """Stage 2: R-Net on 24×24 crops of every candidate of every frame."""
        if len(candidates.boxes) == 0:
            return candidates
        crops, kept = _crops(integrals, candidates, 24)
        boxes, frame_index = candidates.boxes[kept], candidates.frame_index[kept]
        reg, probs = self._rnet(self._to_tensor(crops))
        score = probs[:, 1]
        passed = score > self.stage_thresholds[1]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        frame_index, reg = frame_index[passed], reg[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], frame_index, 0.7)
        boxes = rerec(bbreg(boxes[keep], reg[keep]))
        return _Candidates(boxes, frame_index[keep])

    def _output(
        self, integrals: list[np.ndarray], candidates: _Candidates
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48×48 crops: final boxes, scores and landmarks."""
        if len(candidates.boxes) == 0:
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros(0, np.int64)
        crops, kept = _crops(integrals, candidates, 48)
        boxes, frame_index = candidates.boxes[kept], candidates.frame_index[kept]
        reg, points, probs = self._onet(self._to_tensor(crops))
        score = probs[:, 1]
        passed = score > self.stage_thresholds[2]
        points, reg, frame_index = points[passed], reg[passed], frame_index[passed]
        boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
        # Landmarks are relative to the (pre-regression) O-Net input box; "+1 −1" as facenet-pytorch.
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        xs = w[:, None] * points[:, :5] + boxes[:, 0:1] - 1
        ys = h[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1
        landmarks = torch.stack([xs, ys], dim=2)
        boxes = bbreg(boxes, reg)
        keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4], frame_index, 0.7, "Min")
        return (
            boxes[keep].cpu().numpy().astype(np.float32),
            landmarks[keep].cpu().numpy().astype(np.float32),
            frame_index[keep].cpu().numpy(),
        )

    def _split(self, boxes: np.ndarray, points: np.ndarray, frame_index: np.ndarray, n: int) -> list[Detections]:
        results = []
        for i in range(n):
            mine = frame_index == i
            detections = Detections(
                boxes=np.ascontiguousarray(boxes[mine, :4]),
                scores=np.ascontiguousarray(boxes[mine, 4]),
                landmarks=np.ascontiguousarray(points[mine]),
            )
            wanted = (detections.scores >= self.score_threshold) & (detections.sizes >= self.min_face_size)
            results.append(detections.select(wanted))
        return results

    def _to_tensor(self, nhwc: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(nhwc).to(self.device).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------- helpers


def checked_frames(frames: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """`frames` as a list of valid (H, W, 3) uint8 RGB frames (one frame, a batch array or a sequence)."""
    frames = list(frames) if not isinstance(frames, np.ndarray) or frames.ndim == 4 else [frames]
    for frame in frames:
        _check_frame(frame)
    return frames


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise DetectorError(f"a frame must be an (H, W, 3) RGB array, got shape {shape}")
    if frame.dtype != np.uint8:
        raise DetectorError(f"a frame must be uint8, got {frame.dtype}")
    if frame.shape[0] < 12 or frame.shape[1] < 12:
        raise DetectorError(f"a frame must be at least 12×12 pixels, got {frame.shape[1]}×{frame.shape[0]}")


def _group_by_size(frames: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    return groups


def _normalise(pixels: np.ndarray) -> np.ndarray:
    # MTCNN's input scaling: (x - 127.5) / 128.
    return (pixels - 127.5) * 0.0078125


def _integral(frame: np.ndarray) -> np.ndarray:
    """(H+1, W+1, 3) uint32 summed-area table of a uint8 frame.

    uint32 arithmetic wraps past 2**32 on frames over ~16 M pixels, but the sum over any box we
    pool is far below that, and wrap-around subtraction still yields it exactly.
    """
    return cv2.integral(frame, sdepth=cv2.CV_32S).view(np.uint32)


def _pool_bins(in_size: np.ndarray | int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start/end offsets of torch's adaptive-average-pooling bins (`interpolate(mode="area")`)."""
    i = np.arange(out_size)
    size = np.asarray(in_size)[..., None]
    return (i * size) // out_size, ((i + 1) * size + out_size - 1) // out_size


def _resize(integral: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-resize a whole frame (given by its integral image) to size = (h, w), float32 HWC."""
    height, width = integral.shape[0] - 1, integral.shape[1] - 1
    row_start, row_end = _pool_bins(height, size[0])
    col_start, col_end = _pool_bins(width, size[1])
    # Separable: row differences first (whole-row copies), then column differences.
    rows = np.take(integral, row_end, axis=0) - np.take(integral, row_start, axis=0)
    sums = np.take(rows, col_end, axis=1) - np.take(rows, col_start, axis=1)
    counts = (row_end - row_start)[:, None] * (col_end - col_start)[None, :]
    return sums.astype(np.float32) / counts.astype(np.float32)[:, :, None]


def _crops(integrals: list[np.ndarray], candidates: _Candidates, size: int) -> tuple[np.ndarray, torch.Tensor]:
    """Area-resize each candidate box (clipped to its frame, as facenet-pytorch does) to size×size.

    Returns the normalised crops (K, size, size, 3) and the indices of the candidates kept (a box
    entirely outside its frame has nothing to crop and is dropped, as in facenet-pytorch).
    """
    height, width = integrals[0].shape[0] - 1, integrals[0].shape[1] - 1
    boxes = candidates.boxes[:, :4].trunc().int().cpu().numpy()
    frame_index = candidates.frame_index.cpu().numpy()
    # facenet-pytorch's pad(): 1-based inclusive coordinates clipped to the frame, cropped as
    # rows y1-1 .. y2-1 and columns x1-1 .. x2-1.
    x1 = np.maximum(boxes[:, 0], 1) - 1
    y1 = np.maximum(boxes[:, 1], 1) - 1
    x2 = np.minimum(boxes[:, 2], width)
    y2 = np.minimum(boxes[:, 3], height)
    kept = np.flatnonzero((y2 > y1) & (x2 > x1))
    x1, y1, x2, y2, frame_index = x1[kept], y1[kept], x2[kept], y2[kept], frame_index[kept]
    row_start, row_end = _pool_bins(y2 - y1, size)
    col_start, col_end = _pool_bins(x2 - x1, size)
    counts = ((row_end - row_start)[:, :, None] * (col_end - col_start)[:, None, :]).astype(np.float32)
    crops = np.empty((len(kept), size, size, 3), np.float32)
    for f in np.unique(frame_index):
        mine = np.flatnonzero(frame_index == f)
        # Gather box corners from the table seen as (pixels, 3) with flat indices: np.take on one
        # axis is several times faster than multi-dimensional fancy indexing.
        table = integrals[f].reshape(-1, 3)
        stride = width + 1
        top = (y1[mine, None, None] + row_start[mine, :, None]) * stride
        bottom = (y1[mine, None, None] + row_end[mine, :, None]) * stride
        left = x1[mine, None, None] + col_start[mine, None, :]
        right = x1[mine, None, None] + col_end[mine, None, :]

        def corner(rows: np.ndarray, cols: np.ndarray, table: np.ndarray = table) -> np.ndarray:
            return np.take(table, (rows + cols).ravel(), axis=0)

        sums = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
        crops[mine] = sums.reshape(len(mine), size, size, 3).astype(np.float32) / counts[mine, :, :, None]
    return _normalise(crops), torch.from_numpy(kept).to(candidates.boxes.device)


# ---------------------------------------------------------------------- libfacedetection (yuface)

YUFACE_MAX_SIDE = 960  # libfacedetection's stated limit; larger frames are scaled down first
DETECTORS = ("auto", "yuface", "mtcnn")


class YuFaceDetector:
    """libfacedetection's CNN (the `yuface` wheel: BSD-3, weights compiled into its library), CPU only.

    Same interface as `FaceDetector`: RGB frames in, `Detections` out, five landmarks in the same
    order (image-left eye first), scores in [0, 1]. It is several times faster than MTCNN on CPU
    and, on the shared clip, does not fire on the collar or the hand MTCNN takes for faces
    (BENCHMARKS.md, "Face detectors"). Frames larger than `max_side` are scaled down for detection
    and the boxes scaled back, so faces smaller than `min_face_size × scale` are lost there.
    """

    device = torch.device("cpu")

    def __init__(self, *, min_face_size: int = 20, score_threshold: float = 0.7,
                 max_side: int = YUFACE_MAX_SIDE, threads: int = 1) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
        self._detect = _load_yuface(threads)
        self.threads = max(1, int(threads))
        self._set_openmp_threads = _global_openmp_threads()
        self.min_face_size = int(min_face_size)
        self.score_threshold = float(score_threshold)
        self.max_side = int(max_side)

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> list[Detections]:
        return [self._one(frame) for frame in checked_frames(frames)]

    def _one(self, frame: np.ndarray) -> Detections:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        # Scale first, then swap the channels of the small image: the area resize works on each channel
        # alone, so the order does not change a pixel, and swapping a 640 px image instead of a 720p
        # frame saves most of the conversion's cost (it ran on every detected frame of every camera).
        small = frame
        if scale < 1.0:
            small = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        if self._set_openmp_threads is not None:  # per call: OpenMP's thread count is per calling thread
            self._set_openmp_threads(self.threads)
        rows = np.asarray(self._detect(bgr), np.float32).reshape(-1, 16)
        if not len(rows):
            return Detections.empty()
        x, y, w, h = (rows[:, i] / scale for i in range(1, 5))
        detections = Detections(
            boxes=np.ascontiguousarray(np.stack([x, y, x + w, y + h], axis=1), np.float32),
            scores=np.ascontiguousarray(rows[:, 0] / 100.0, np.float32),
            landmarks=np.ascontiguousarray(rows[:, 5:15].reshape(-1, 5, 2) / scale, np.float32),
        )
        wanted = (detections.scores >= self.score_threshold) & (detections.sizes >= self.min_face_size)
        return detections.select(np.flatnonzero(wanted))


def _load_yuface(threads: int) -> Any:
    """yuface's detect function. Its library brings its own OpenMP runtime, which reads
    OMP_NUM_THREADS once, when it is loaded: one thread by default, since a node runs several
    cameras and spinning OpenMP workers of several processes on few cores slow each other down
    several times over (measured: 0.9 fps instead of 3 on a loaded 2-core machine)."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    try:
        from yuface.yuface import detect as c_detect
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    return c_detect


def _global_openmp_threads() -> Callable[[int], None] | None:
    """`omp_set_num_threads` of the OpenMP runtime in the process's global symbol scope, if any.

    torch loads its own libgomp globally (RTLD_GLOBAL) when it is imported, which this module does
    before yuface: libfacedetection's OpenMP calls then bind to torch's runtime, not to the one its
    wheel brings, so the OMP_NUM_THREADS set in `_load_yuface` does not reach them, and every
    detection ran on torch's pool of one thread per core, whose idle workers spin. Measured on one
    720p camera (640 px detection, 5/s): 0.53 CPU s/s with a second thread spinning 0.2 of it, 0.37
    with one thread (BENCHMARKS.md, "Camera density"). Looking the function up the way the dynamic
    linker bound libfacedetection's calls (global scope first) reaches the runtime that serves them."""
    try:
        function = ctypes.CDLL(None).omp_set_num_threads
    except AttributeError:  # no OpenMP runtime in the global scope: OMP_NUM_THREADS reached yuface's own
        return None
    function.argtypes, function.restype = [ctypes.c_int], None
    return function


def resolve_detector(name: str, device: str | torch.device | None = None) -> str:
    """"auto" is yuface on a CPU and MTCNN on a GPU (yuface has no GPU build); others as named."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r} (one of {', '.join(DETECTORS)})")
    if name != "auto":
        return name
    on_gpu = torch.device(device).type == "cuda" if device is not None else False
    return "mtcnn" if on_gpu else "yuface"


def make_detector(name: str = "auto", *, min_face_size: int = 20, device: str | torch.device | None = None,
                  max_side: int = YUFACE_MAX_SIDE) -> FaceDetector | YuFaceDetector:
    """The detector a setting names, on `device` (None: the CPU; a GPU only when asked for).
    `max_side`: yuface scales larger frames down to it (MTCNN works on the whole frame)."""
    if resolve_detector(name, device) == "yuface":
        return YuFaceDetector(min_face_size=min_face_size, max_side=max_side)
    return FaceDetector(min_face_size=min_face_size, device=device if device is not None else "cpu")
