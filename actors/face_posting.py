"""Posting a job's best shots: media to the store, chips to the extractor, sightings to the pipeline.

`FacePoster` runs in its own thread so extraction latency does not stall decoding. It is Ray-free:
the job hands it two callables, `extract(ChipBatch) -> {"embeddings", "attributes", "model"}` and
`hand_over(sightings) -> [event id or None]` (in production a Ray Serve handle call and an
`EventPipeline.post` call, in tests plain functions). Both are retried with back-off
(`attempts`, `backoff_s` doubling); the event ids make retries idempotent. Shots that still fail
are counted in the job's health (status `degraded` for a while); for a video job the first failure
stops the poster and is kept in `error` (the job then fails, and the manager re-runs it without
duplicates). A live camera whose queue is full drops the batch (counted) rather than fall behind.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from actors.best_shot import ShotCandidate
from actors.frame_pipeline import Counters, ShotPayload
from actors.job_status import JobHealth, short_error
from facewatch.chips import ChipBatch
from facewatch.sightings import FaceSighting, event_id_for
from models.images import encode_jpeg
from storage.media import LocalMediaStore

log = logging.getLogger("facewatch.camera_job")

LIVE_POST_QUEUE = 32
SAMPLE_VECTORS_KEPT = 4096  # vectors of tracks' best frames, so a track's later shots embed only new frames
T = TypeVar("T")

Extract = Callable[[ChipBatch], dict[str, Any]]
HandOver = Callable[[list[FaceSighting]], Sequence[str | None]]


@dataclass(frozen=True)
class SightingSource:
    """Who the sightings of one job come from (fields of every `FaceSighting` it posts)."""

    job_id: int
    run_id: int
    camera_group_id: int
    camera_id: int | None = None
    video_id: int | None = None
    single_pass: bool = False


def retry(what: str, call: Callable[[], T], attempts: int, backoff_s: float, stop: threading.Event,
          touch: Callable[[], None] = lambda: None, log_prefix: str = "") -> T:
    """`call()`, tried up to `attempts` times with a back-off doubling from `backoff_s`; the last
    error is raised as a RuntimeError naming `what`. A set `stop` ends the waiting at once."""
    delay = backoff_s
    attempts = max(1, attempts)
    for attempt in range(1, attempts + 1):
        touch()
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or stop.is_set():
                raise RuntimeError(f"{what}: {short_error(exc)}") from exc
            log.warning("%s%s failed (attempt %d): %s", log_prefix, what, attempt, short_error(exc))
            stop.wait(delay)
            delay *= 2
    raise AssertionError("unreachable")


class FacePoster:
    """The posting thread of one job and the shot → sighting conversion."""

    def __init__(self, source: SightingSource, media: LocalMediaStore, counters: Counters, health: JobHealth,
                 extract: Extract, hand_over: HandOver, stop: threading.Event, attempts: int = 4,
                 backoff_s: float = 1.0, touch: Callable[[], None] = lambda: None) -> None:
        self.source = source
        self.media = media
        self.counters = counters
        self.health = health
        self.extract, self.hand_over = extract, hand_over
        self.stop = stop
        self.attempts, self.backoff_s = attempts, backoff_s
        self.touch = touch
        self.jpeg_quality = 95
        self.error: BaseException | None = None  # a video job's failed post
        self._draining = False
        self._shot_numbers: dict[int, int] = {}
        self._sample_vectors: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()  # (track, frame) → vector
        self._queue: queue.Queue[list[ShotCandidate] | None] = queue.Queue(
            maxsize=0 if source.single_pass else LIVE_POST_QUEUE)
        self._thread = threading.Thread(target=self._loop, name=f"poster job {source.job_id}", daemon=True)

    # -- the thread -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def finish(self) -> None:
        """No more shots: the thread posts what is queued, then ends."""
        self._queue.put(None)

    def abandon(self) -> None:
        """End the thread soon; what is still queued is dropped unposted."""
        if not self._thread.is_alive():
            return
        self._draining = True
        try:
            self._queue.put(None, timeout=5.0)
        except queue.Full:
            pass
        self._thread.join(timeout=5.0)

    def enqueue(self, shots: list[ShotCandidate]) -> None:
        shots = [s for s in shots if s.payload is not None]
        if not shots:
            return
        if self.source.single_pass:
            self._queue.put(shots)
            return
        try:
            self._queue.put_nowait(shots)
        except queue.Full:  # the extractor or pipeline cannot keep up: a live camera must not fall behind
            self.health.record_failure(self.counters, len(shots),
                                       "the post queue is full (extractor or event pipeline too slow)")

    def _loop(self) -> None:
        while True:
            shots = self._queue.get()
            if shots is None:
                return
            if self.stop.is_set() or self._draining:
                continue
            try:
                self.post(shots)
            except Exception as exc:
                self.health.record_failure(self.counters, len(shots),
                                           f"posting {len(shots)} face(s) failed: {short_error(exc)}")
                if self.source.single_pass:
                    self.error = exc
                    return

    # -- one batch --------------------------------------------------------------------------------------

    def post(self, shots: list[ShotCandidate]) -> list[str | None]:
        """Store the media, extract, hand over; the pipeline's answer (event id or None per shot)."""
        keys = [self._store_media(shot.payload) for shot in shots]
        # The shots' chips, then those of their tracks' best frames not embedded before (one extractor call).
        wanted = self._new_samples(shots)
        chips = np.stack([shot.payload.chip for shot in shots] + [chip for _, chip in wanted])
        # Attributes only for the shots: the best frames' chips are embedded for the match alone.
        batch = ChipBatch(chips, attributes_for=len(shots))
        prefix = f"job {self.source.job_id}: "
        extracted = retry("the extractor pool", lambda: self.extract(batch), self.attempts, self.backoff_s,
                          self.stop, self.touch, prefix)
        vectors = [np.asarray(v, np.float32) for v in extracted["embeddings"]]
        for shot, vector in zip(shots, vectors[:len(shots)], strict=True):
            self._keep_vector((shot.track_id, shot.payload.frame_index), vector)
        for (key, _), vector in zip(wanted, vectors[len(shots):], strict=True):
            self._keep_vector(key, vector)
        sightings = [self._sighting(shot, media_keys, vector, attributes, str(extracted["model"]))
                     for shot, media_keys, vector, attributes in zip(
                         shots, keys, vectors[:len(shots)], extracted["attributes"][:len(shots)], strict=True)]
        ids = list(retry("the event pipeline", lambda: self.hand_over(sightings), self.attempts, self.backoff_s,
                         self.stop, self.touch, prefix))
        self.counters.faces_posted += len(sightings)
        self.counters.events += sum(1 for i in ids if i is not None)
        self.counters.sightings_dropped += sum(1 for i in ids if i is None)
        return ids

    def _new_samples(self, shots: list[ShotCandidate]) -> list[tuple[tuple[int, int], np.ndarray]]:
        """(track, frame) and chip of every best frame of these shots' tracks that has no vector yet."""
        have = set(self._sample_vectors) | {(s.track_id, s.payload.frame_index) for s in shots}
        new: dict[tuple[int, int], np.ndarray] = {}
        for shot in shots:
            for sample in shot.payload.samples:
                key = (shot.track_id, sample.frame_index)
                if key not in have:
                    new.setdefault(key, sample.chip)
        return list(new.items())

    def _keep_vector(self, key: tuple[int, int], vector: np.ndarray) -> None:
        self._sample_vectors[key] = vector
        self._sample_vectors.move_to_end(key)
        while len(self._sample_vectors) > SAMPLE_VECTORS_KEPT:
            self._sample_vectors.popitem(last=False)

    def _track_evidence(self, shot: ShotCandidate) -> tuple[np.ndarray | None, list[float]]:
        """The vectors and qualities of the shot's track's best frames (those still known)."""
        found = [(self._sample_vectors.get((shot.track_id, s.frame_index)), s.quality) for s in shot.payload.samples]
        found = [(v, q) for v, q in found if v is not None]
        if not found:
            return None, []
        return np.stack([v for v, _ in found]), [float(q) for _, q in found]

    def _store_media(self, p: ShotPayload) -> tuple[str, str, str]:
        return (self.media.put(p.thumbnail_jpeg, "jpg"), self.media.put(encode_jpeg(p.chip, self.jpeg_quality), "jpg"),
                self.media.put(p.frame_jpeg, "jpg") if p.frame_jpeg else "")

    def _sighting(self, shot: ShotCandidate, media_keys: tuple[str, str, str], vector: Any,
                  attributes: dict[str, Any] | None, model: str) -> FaceSighting:
        src = self.source
        number = self._shot_numbers.get(shot.track_id, 0)
        self._shot_numbers[shot.track_id] = number + 1
        p: ShotPayload = shot.payload
        thumb, crop, frame = media_keys
        track_embeddings, track_qualities = self._track_evidence(shot)
        return FaceSighting(
            event_id=event_id_for(src.job_id, src.run_id, shot.track_id, number),
            job_id=src.job_id, camera_group_id=src.camera_group_id, timestamp=p.wall_time,
            bbox=[round(float(v), 2) for v in shot.bbox], detection_score=p.detection_score,
            quality=float(shot.quality), embedding=np.asarray(vector, np.float32), model=model,
            camera_id=src.camera_id, video_id=src.video_id, track_id=shot.track_id,
            video_offset_s=round(float(shot.time_s), 3) if src.single_pass else None,
            attributes=dict(attributes or {}), thumbnail_key=thumb, crop_key=crop, frame_key=frame,
            track_embeddings=track_embeddings, track_qualities=track_qualities,
        )
