"""The frame pipeline of a camera or video job, without Ray: motion → detect → track → best shot.

A `FramePipeline` is fed decoded frames one at a time (`push`) by whoever reads the source (the
`CameraJob` actor, a test, a benchmark) and returns the shots to post (`ShotCandidate`s whose
payload is a `ShotPayload`). It owns the per-source state: the motion gate, the tracker, the
best-shot policy. Frames never leave it; a track keeps only the payload of its current best shot
(the aligned chip, the thumbnail JPEG and the JPEG of that one frame, encoded at once) and the
chips of its few best frames (`actors/track_identity.py`), which every shot of the track carries so
that its match is decided on several frames.

Per frame:  MotionGate → every `detect_every_n`-th frame, in batches of `detect_batch`:
FaceDetector.detect_batch → drop faces outside `rot` → scene cut (ends every track) → IouTracker →
face_quality → PostFilter (roi, min_quality, min/max face size) → best-shot policy, once the track was
detected on MIN_TRACK_HITS frames.

A live pipeline (`live=True`, a camera) detects at a target rate instead, decoupled from the decode
rate (Frigate's `detect.fps`, default 5): a frame is detected when `detect_fps` says one is due by its
stream time AND it is the newest the decoder has (`Frame.backlog == 0`), one at a time. When detection
is slow (a loaded node) it runs less often on fresh frames, instead of making the decoder drop
frames; the tracker carries the faces over the frames between (`IouTracker` predicts each track's box
from its velocity and ends unseen tracks on time). Frames that are not detected are never converted to
RGB (`Frame.image` is lazy). Files are never rate-limited: every `detect_every_n`-th frame is detected,
as before, so a video's events do not depend on how fast the machine is.

The split follows Frigate's capture / detect / track separation: capture (the `VideoSource`) and
posting (`actors.face_posting`) run in their own threads; this part is synchronous and pure, so it
is tested frame by frame without Ray (tests/integration/test_frame_pipeline.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from actors.best_shot import EveryIntervalBest, PostFilter, ShotCandidate, best_shot_policy
from actors.motion_gate import MotionGate
from actors.scene_cut import SceneCuts
from actors.track_identity import SampleChip, TrackSamples
from actors.tracking import IouTracker, inside_region
from actors.video_source import Frame
from facewatch.stream_settings import StreamSettings
from models.alignment import align_faces
from models.detector import FaceDetector, YuFaceDetector, make_detector
from models.embedders import EmbedderSpec
from models.images import encode_jpeg
from models.quality import face_quality
from models.types import Detections

THUMBNAIL_MARGIN = 0.3  # of the face box, on every side
THUMBNAIL_MAX_SIDE = 320
# A track is offered to the best-shot policy once it was detected on this many frames: a detection on one
# frame only (a hand or a shadow the detector took for a face, seen on the clip) never becomes an event.
MIN_TRACK_HITS = 2


# The one stream-settings type (API, jobs, batch driver), under the name this module's callers use.
StreamConfig = StreamSettings


@dataclass(frozen=True, eq=False)
class ShotPayload:
    """What the best shot of a track keeps: small crops and one frame's JPEG bytes, never a frame."""

    chip: np.ndarray  # aligned chip in the embedder's geometry (uint8, S×S×3)
    thumbnail_jpeg: bytes
    frame_jpeg: bytes
    detection_score: float
    wall_time: datetime
    frame_index: int
    # The track's best frames when the shot is posted (actors/track_identity.py): its match is decided on them.
    samples: tuple[SampleChip, ...] = ()


@dataclass
class Counters:
    frames_decoded: int = 0
    frames_handled: int = 0  # consumed by the pipeline loop (gated and sampled-out frames included)
    frames_processed: int = 0  # the detector ran on them
    frames_dropped: int = 0
    frames_motion_skipped: int = 0
    faces_detected: int = 0
    faces_outside_rot: int = 0
    faces_filtered: dict[str, int] = field(default_factory=dict)
    faces_posted: int = 0
    faces_failed: int = 0
    events: int = 0
    sightings_dropped: int = 0  # the pipeline dropped them (dedup, ignore_unmatched)
    tracks: int = 0
    tracks_unconfirmed: int = 0  # ended before MIN_TRACK_HITS detections: never posted
    source_opens: int = 0
    source_errors: int = 0


DetectorFactory = Callable[[StreamConfig], Any]


def default_detector(settings: StreamConfig) -> FaceDetector | YuFaceDetector:
    """The CPU default ("auto": yuface); the camera job passes its own (setting, GPU)."""
    return make_detector("auto", min_face_size=max(int(settings.min_face_size), 1), max_side=settings.detect_max_side)


_TIME_EPS_S = 1e-6  # sums of frame times are not exact: 15 / 25 < 3 × 0.2
CATCH_UP_PERIODS = 3  # a detection later than this is a new start, not a hiccup to make up


class DetectClock:
    """When a live pipeline's next detection is due, by stream time: `rate` per second at most."""

    def __init__(self, rate: float) -> None:
        self.period = 1.0 / rate if rate > 0 else 0.0
        self._due: float | None = None

    def due(self, t_s: float) -> bool:
        # A timestamp jump back (the stream restarted its clock) or forward starts the clock afresh.
        return self._due is None or t_s >= self._due - _TIME_EPS_S or t_s < self._due - 2 * self.period

    def ran(self, t_s: float) -> None:
        """The frame at `t_s` was looked at: the next detection is due one period after the one that
        was due (a slightly late detection does not push the later ones back). Late by one to
        `CATCH_UP_PERIODS` periods (a slow detection on a loaded node, a pause), the slot it missed is
        half made up: the next is due half a period after `t_s`, so short hiccups do not cost the
        camera its rate. After a longer delay or a timestamp jump: one period after `t_s`."""
        late = None if self._due is None else t_s - self._due
        if late is None or late < -_TIME_EPS_S or late >= CATCH_UP_PERIODS * self.period:
            self._due = t_s + self.period
        elif late < self.period:
            self._due = t_s - late + self.period  # the due time kept: one period after it
        else:
            self._due = t_s + self.period / 2


class FramePipeline:
    """Frames in, shots to post out. Call `start_source()` for every (re)opened source."""

    def __init__(self, settings: StreamConfig, embedder: EmbedderSpec, counters: Counters | None = None,
                 detect_batch: int = 4, detector_factory: DetectorFactory = default_detector,
                 live: bool = False) -> None:
        self.embedder = embedder
        self.live = live
        self.counters = counters if counters is not None else Counters()
        self.detect_batch = max(1, int(detect_batch))
        self._detector_factory = detector_factory
        self.detector: Any = None
        self._detector_key: Any = None
        self._batch: list[Frame] = []
        self._track_base = 0
        self._local_max_track = 0
        self._max_quality: dict[int, float] = {}
        self.samples = TrackSamples()
        self._hits: dict[int, int] = {}  # detections per open track
        self._held: dict[int, ShotCandidate] = {}  # the best shot of a track not yet confirmed
        # Told the tracked boxes and their track ids of every detected frame (the console's live view).
        self.on_tracked: Callable[[list[np.ndarray], list[int]], None] | None = None
        self.configure(settings)
        self.start_source()

    def configure(self, settings: StreamConfig) -> None:
        """New stream settings; the detector is kept when its own settings did not change."""
        settings = settings.for_source(self.live)  # the detection size of a camera or a video, unless set
        self.settings = settings
        key = (max(int(settings.min_face_size), 1), settings.detect_max_side)
        if self.detector is None or key != self._detector_key:
            self.detector, self._detector_key = self._detector_factory(settings), key
        self.post_filter = PostFilter(roi=settings.roi, min_quality=settings.min_quality,
                                      min_face_size=float(settings.min_face_size),
                                      max_face_size=settings.max_face_size)

    def start_source(self) -> None:
        """Fresh state for a newly opened source; track ids continue so event ids stay unique."""
        s = self.settings
        self.gate = MotionGate(s.motion_threshold)
        self._track_base += self._local_max_track
        self._local_max_track = 0
        self._batch = []
        self.tracker = IouTracker(miss_interval_s=s.miss_interval_s)
        self.scene_cuts = SceneCuts()
        self.clock = DetectClock(s.detect_fps) if self.live and s.detect_fps > 0 else None
        self.policy = best_shot_policy(s.overall_only, s.realtime_interval_s, s.realtime_every_interval)

    # -- frames in ----------------------------------------------------------------------------------

    def push(self, frame: Frame) -> list[ShotCandidate]:
        """One decoded frame; the shots to post now (detection runs when a batch is full)."""
        if self.clock is not None:
            return self._push_live(frame, self.clock)
        if frame.index % self.settings.detect_every_n:
            return []  # (before the gate: a frame nobody detects on is never converted to RGB)
        if not self.gate.check(frame.image):
            self.counters.frames_motion_skipped += 1
            return []
        self._batch.append(frame)
        if len(self._batch) < self.detect_batch:
            return []
        return self.drain()

    def _push_live(self, frame: Frame, clock: DetectClock) -> list[ShotCandidate]:
        """A live frame: detected when one is due and nothing newer waits, else only tracked."""
        if frame.backlog or not clock.due(frame.pts_s) or frame.index % self.settings.detect_every_n:
            return self._between(frame)
        clock.ran(frame.pts_s)  # a still frame counts too: the gate is not asked again on every frame
        if not self.gate.check(frame.image):
            self.counters.frames_motion_skipped += 1
            return self._between(frame)
        return self.detect([frame])

    def _between(self, frame: Frame) -> list[ShotCandidate]:
        """A frame between detections: tracks unseen for too long end (and owe their best shot)."""
        shots: list[ShotCandidate] = []
        for track in self.tracker.expire(frame.pts_s):
            shots.extend(self._end_track(self._track_base + track.track_id))
        return [s for s in shots if s.payload is not None]

    def drain(self) -> list[ShotCandidate]:
        """Detect on the frames still waiting in the batch (at the end of a source)."""
        frames, self._batch = self._batch, []
        return self.detect(frames) if frames else []

    def end_tracks(self) -> list[ShotCandidate]:
        """The source ended or broke: every track ends and owes its best shot."""
        shots: list[ShotCandidate] = []
        for track in self.tracker.finish():
            shots.extend(self._end_track(self._track_base + track.track_id))
        shots.extend(self._with_samples(self.policy.finish()))
        self._max_quality.clear()
        self.samples.clear()
        self._hits.clear()
        self._held.clear()
        self._batch = []
        return [s for s in shots if s.payload is not None]

    def detect(self, frames: list[Frame]) -> list[ShotCandidate]:
        detections = self.detector.detect_batch([f.image for f in frames])
        shots: list[ShotCandidate] = []
        for frame, found in zip(frames, detections, strict=True):
            self.counters.frames_processed += 1
            if self.settings.rot is not None and len(found):
                inside = inside_region(found.boxes, self.settings.rot)
                self.counters.faces_outside_rot += int((~inside).sum())
                found = found.select(inside)
            self.counters.faces_detected += len(found)
            shots.extend(self._track(frame, found))
        return [s for s in shots if s.payload is not None]

    # -- tracking and best shots ----------------------------------------------------------------------

    def _track(self, frame: Frame, found: Detections) -> list[ShotCandidate]:
        quality = face_quality(frame.image, found) if len(found) else np.zeros(0)
        # Another shot of an edited video: whoever stands where a track was is someone else (actors/scene_cut.py).
        ended = self.tracker.finish() if self.scene_cuts.cut(frame.image) else []
        update = self.tracker.update(frame.pts_s, found.boxes)
        if self.on_tracked is not None:
            self.on_tracked([found.boxes[i] for _, i in update.assignments],
                            [self._track_base + t for t, _ in update.assignments])
        shots: list[ShotCandidate] = []
        for track in ended + update.ended:
            shots.extend(self._end_track(self._track_base + track.track_id))
        frame_jpeg: bytes | None = None
        every_interval = isinstance(self.policy, EveryIntervalBest)
        for local_id, i in update.assignments:
            if local_id > self._local_max_track:
                self._local_max_track = local_id
                self.counters.tracks += 1
            track_id = self._track_base + local_id
            hits = self._hits[track_id] = self._hits.get(track_id, 0) + 1
            candidate = ShotCandidate(track_id, frame.pts_s, float(quality[i]), found.boxes[i])
            reason = self.post_filter.reason(candidate)
            if reason is not None:
                self.counters.faces_filtered[reason] = self.counters.faces_filtered.get(reason, 0) + 1
                continue
            chip: np.ndarray | None = None
            if self.samples.wants(track_id, candidate.quality):  # one of the track's best frames so far
                chip = self._chip(frame, found, i)
                self.samples.add(track_id, SampleChip(frame.index, candidate.quality, chip))
            if hits >= MIN_TRACK_HITS and track_id in self._held:  # confirmed: its first shot goes to the policy
                shots.extend(self._with_samples(self.policy.offer(self._held.pop(track_id))))
            # Overall and improving policies keep a candidate only when it beats every earlier one of
            # its track; only then is its payload (chip, crops, this frame's JPEG) worth making.
            if not every_interval and candidate.quality <= self._max_quality.get(track_id, -1.0):
                continue
            self._max_quality[track_id] = candidate.quality
            if frame_jpeg is None:
                frame_jpeg = encode_jpeg(frame.image, self.settings.jpeg_quality)
            shot = dataclasses.replace(candidate, payload=self._payload(frame, found, i, frame_jpeg, chip))
            if hits < MIN_TRACK_HITS:
                self._held[track_id] = shot
                continue
            shots.extend(self._with_samples(self.policy.offer(shot)))
        return shots

    def _end_track(self, track_id: int) -> list[ShotCandidate]:
        self._max_quality.pop(track_id, None)
        held = self._held.pop(track_id, None)
        shots: list[ShotCandidate] = []
        if self._hits.pop(track_id, 0) < MIN_TRACK_HITS:
            self.counters.tracks_unconfirmed += 1
        elif held is not None:  # confirmed on a frame the post filter refused: the held shot is still owed
            shots = self.policy.offer(held)
        shots = self._with_samples(shots + self.policy.end_track(track_id))
        self.samples.forget(track_id)
        return shots

    def _with_samples(self, shots: list[ShotCandidate]) -> list[ShotCandidate]:
        """The shots with their track's best frames as they are now (a held shot gets the later ones too)."""
        return [s if s.payload is None else dataclasses.replace(
            s, payload=dataclasses.replace(s.payload, samples=self.samples.of(s.track_id))) for s in shots]

    def _chip(self, frame: Frame, found: Detections, i: int) -> np.ndarray:
        spec = self.embedder
        return align_faces(frame.image, found.landmarks[i:i + 1], size=spec.chip_size, template=spec.template,
                           padding=spec.padding)[0]

    def _payload(self, frame: Frame, found: Detections, i: int, frame_jpeg: bytes,
                 chip: np.ndarray | None = None) -> ShotPayload:
        chip = chip if chip is not None else self._chip(frame, found, i)
        return ShotPayload(chip=chip, thumbnail_jpeg=thumbnail_jpeg(frame.image, found.boxes[i],
                                                                    self.settings.jpeg_quality),
                           frame_jpeg=frame_jpeg, detection_score=float(found.scores[i]),
                           wall_time=frame.wall_time, frame_index=frame.index)


def thumbnail_jpeg(image: np.ndarray, box: np.ndarray, jpeg_quality: int) -> bytes:
    """The face box with a margin, at most THUMBNAIL_MAX_SIDE pixels on its longer side, as JPEG."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * THUMBNAIL_MARGIN, (y2 - y1) * THUMBNAIL_MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
    crop = image[top:bottom, left:right] if right > left and bottom > top else image[:1, :1]
    side = max(crop.shape[:2])
    if side > THUMBNAIL_MAX_SIDE:
        scale = THUMBNAIL_MAX_SIDE / side
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return encode_jpeg(np.ascontiguousarray(crop), jpeg_quality)
