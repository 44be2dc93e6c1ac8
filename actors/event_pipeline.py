"""The event pipeline: sighting → match → dedup → episode → one atomic commit → events gallery.

Rules (SPEC §4):
- Candidates are faces of active dossiers on active watch lists whose camera groups include the
  sighting's group (or that name no group). The threshold for a (camera, watch list) pair is the
  most specific override set: camera → camera group → watch list → the global default. Among the
  candidates at or above their threshold the highest confidence wins (ties: the lower dossier id,
  then the lower watch list id, so the outcome is deterministic).
- No match → an event on the Unmatched list, unless that list is inactive or `ignore_unmatched` is on.
- Dedup (groups with `deduplicate`): a matched face of a dossier already matched in the group within
  `dedup_interval_s` is dropped; an unmatched face similar (≥ episode threshold) to an unmatched one
  seen within the interval is dropped unless its quality is higher.
- Episodes: an event joins the open episode (same camera group) whose events within the look-back
  hold a face with similarity ≥ the episode threshold, else opens a new one. Episodes close after the
  idle timeout or the max duration, measured on event timestamps (so a video file processed faster
  than real time groups its sightings the way they happened). Acknowledgement follows
  storage/acknowledgement.py: events of lists without `require_ack` are acknowledged on creation,
  events joining an episode a person acknowledged arrive acknowledged.
- The event row, its episode, its webhook outbox rows, its vector (events gallery) and the video's
  counters commit in ONE transaction; the events gallery is synced after the commit. Event ids come
  from job + run + track + shot, so a retried hand-off finds the committed event and adds nothing.

In-memory state (recent faces per group for dedup and episodes) is rebuilt from the DB on start.

Several pipelines (FACEWATCH_EVENT_PIPELINES, docs/event_pipeline.md): pipeline `i` of `n` holds the
camera groups with `pipeline_index(group, n) == i` (actors/pipeline_router.py routes every caller's
sightings so); it loads, dedups against and closes only their episodes. What they share lives in the
DB: a dossier's person is unique (a commit that loses that race is retried once and finds the
winner's), the webhook outbox is rows of the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import ray
from sqlalchemy.exc import IntegrityError

from actors import episode_clock
from actors.background_loop import BackgroundLoop
from actors.galleries import Galleries
from actors.persons import PersonAssigner
from actors.pipeline_router import pipeline_index
from actors.track_identity import TrackEvidence, score_dossier
from facewatch import metrics
from facewatch.sightings import FaceSighting, track_event_prefix
from models.calibration import Calibration
from storage import episode_queries, orm
from storage.acknowledgement import episode_after_event, initial_ack
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.erasure import delete_unreferenced
from storage.event_rows import add_to_episode, count_on_video, event_row
from storage.media import LocalMediaStore
from storage.negatives import EventMatch, candidate_dossiers, match_of, set_event_match, track_events
from storage.outbox import enqueue_event
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.events")
MATCH_CANDIDATES = 20
EPISODE_FACES = 64  # faces an open episode keeps (its memory bound, actors/episode_clock.py)


Match = EventMatch  # dossier, watch list, the dossier's best photo for the track, confidence


@dataclass
class RecentFace:
    timestamp: datetime
    embedding: np.ndarray
    dossier_id: int | None
    quality: float


@dataclass
class OpenEpisode:
    id: int
    started_at: datetime
    last_at: datetime
    faces: deque[RecentFace] = field(default_factory=lambda: deque(maxlen=EPISODE_FACES))
    touched: datetime = field(default_factory=lambda: datetime.now(UTC))  # wall clock of its last event


@dataclass
class Context:
    """The small tables a batch of sightings is judged against, read once per batch."""

    settings: dict[str, Any]
    groups: dict[int, orm.CameraGroup]
    cameras: dict[int, orm.Camera]
    watch_lists: dict[int, orm.WatchList]
    list_groups: dict[int, set[int]]

    def threshold(self, camera_id: int | None, group_id: int, watch_list: orm.WatchList) -> float:
        camera = self.cameras.get(camera_id) if camera_id is not None else None
        group = self.groups.get(group_id)
        for value in (camera.threshold if camera else None, group.threshold if group else None,
                      watch_list.threshold):
            if value is not None:
                return float(value)
        return float(self.settings["default_threshold"])

    def candidate_lists(self, group_id: int) -> list[orm.WatchList]:
        return [w for w in self.watch_lists.values()
                if w.active and not w.builtin and (not self.list_groups[w.id] or group_id in self.list_groups[w.id])]


def load_context(uow: UnitOfWork) -> Context:
    watch_lists = {w.id: w for w in uow.watch_lists.all()}
    list_groups: dict[int, set[int]] = {w: set() for w in watch_lists}
    for wl_id, group_id in uow.watch_lists.camera_group_links():
        list_groups[wl_id].add(group_id)
    return Context(
        settings=uow.settings.all(),
        groups={g.id: g for g in uow.camera_groups.all()},
        cameras={c.id: c for c in uow.cameras.all()},
        watch_lists=watch_lists,
        list_groups=list_groups,
    )


def track_evidence(s: FaceSighting, embedding: np.ndarray) -> TrackEvidence:
    """The frames a sighting's match is decided on: its track's best frames, or its own face alone."""
    if s.track_embeddings is not None and len(s.track_qualities):
        return TrackEvidence.of(s.track_embeddings, s.track_qualities)
    return TrackEvidence.of(embedding[None, :], [s.quality])


class EventPipelineCore:
    def __init__(self, db_url: str, galleries: Galleries, calibration: Calibration,
                 media_root: str | None = None, pipeline: int = 0, pipelines: int = 1) -> None:
        if not 0 <= pipeline < pipelines:
            raise ValueError(f"event pipeline {pipeline} of {pipelines} does not exist")
        self.pipeline, self.pipelines = pipeline, pipelines
        self.db_url = db_url
        self.media = LocalMediaStore(media_root) if media_root else None  # to remove dropped faces' media
        self.galleries = galleries
        self.calibration = calibration
        self.recent: dict[int, deque[RecentFace]] = {}
        self.episodes: dict[int, list[OpenEpisode]] = {}
        self.created = 0
        self.dropped = 0
        self.corrected = 0  # earlier events of a realtime track whose match a later shot changed
        self.closed_by_clock = 0
        self.misrouted = 0
        self._lock = threading.Lock()  # episode state: posts vs. the clock (actors/episode_clock.py)
        self.persons = PersonAssigner(galleries, calibration)  # every event gets a person (docs/persons.md)
        self._load_open_episodes()

    # ---- public --------------------------------------------------------------------------------
    def owns(self, camera_group_id: int | None) -> bool:
        """Is this camera group's state held here (the router sends its sightings here)?"""
        return pipeline_index(camera_group_id, self.pipelines) == self.pipeline

    async def post(self, sightings: list[FaceSighting]) -> list[str | None]:
        """Turn sightings into events; per sighting the event id, or None when it was dropped."""
        results: list[str | None] = []
        with UnitOfWork(self.db_url) as uow:
            context = load_context(uow)
        for sighting in sightings:
            if not self.owns(sighting.camera_group_id):
                # A caller with another FACEWATCH_EVENT_PIPELINES: the event is kept (nothing is lost), but
                # its dedup/episode state may live in another pipeline, so say so loudly.
                self.misrouted += 1
                log.warning("sighting %s of camera group %s reached event pipeline %d of %d; the router sends it "
                            "to %d (is FACEWATCH_EVENT_PIPELINES the same everywhere?)", sighting.event_id,
                            sighting.camera_group_id, self.pipeline, self.pipelines,
                            pipeline_index(sighting.camera_group_id, self.pipelines))
            results.append(await self._post_one(sighting, context))
        self._discard_media([s for s, r in zip(sightings, results, strict=True) if r is None])
        if any(r is not None for r in results):
            # One sync per batch: matching reads the dossiers gallery, never the events gallery.
            await self.galleries.sync_async(EVENTS_GALLERY)
        await self.persons.sync()
        return results

    def _discard_media(self, dropped: list[FaceSighting]) -> None:
        """A dropped face's thumbnail and crop, unless a row refers to them (storage/erasure.py; frames may be
        shared with faces still to come, so the media sweep takes those)."""
        keys = {k for s in dropped for k in (s.thumbnail_key, s.crop_key) if k}
        if self.media is None or not keys:
            return
        try:
            with UnitOfWork(self.db_url) as uow:
                delete_unreferenced(uow, self.media, keys)
        except Exception:  # noqa: BLE001 - the sweep removes them later; the post itself succeeded
            log.warning("could not remove the media of %d dropped face(s)", len(dropped), exc_info=True)

    def stats(self) -> dict[str, int]:
        return {"events_created": self.created, "sightings_dropped": self.dropped, "matches_corrected": self.corrected,
                "open_episodes": sum(len(v) for v in self.episodes.values()),
                "episodes_closed_by_clock": self.closed_by_clock, "sightings_misrouted": self.misrouted,
                "pipeline": self.pipeline, "pipelines": self.pipelines, **self.persons.stats()}

    def close_idle(self, now: datetime | None = None) -> int:
        """Closes the open episodes that are idle or too long by the clock, and those beyond the
        per-group cap (actors/episode_clock.py); returns how many closed."""
        now = now or datetime.now(UTC)
        with self._lock, UnitOfWork(self.db_url) as uow:
            closing = episode_clock.to_close(self.episodes, now, episode_clock.Limits.from_settings(uow.settings.all()))
            if not closing:
                return 0
            closed = episode_clock.close_rows(uow, (e for group in closing.values() for e in group))
            uow.commit()
            for group, episodes in closing.items():
                gone = {id(e) for e in episodes}
                left = [e for e in self.episodes.get(group, []) if id(e) not in gone]
                if left:
                    self.episodes[group] = left
                else:
                    self.episodes.pop(group, None)
        self.closed_by_clock += closed
        return closed

    async def close_idle_forever(self, tick_s: float = episode_clock.TICK_S) -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                self.close_idle()
            except Exception:  # noqa: BLE001 - a failed tick (DB away) is logged; the next one tries again
                log.exception("closing idle episodes failed")

    # ---- one sighting ----------------------------------------------------------------------------
    async def _post_one(self, s: FaceSighting, ctx: Context) -> str | None:
        with UnitOfWork(self.db_url) as uow:
            if uow.events.find(s.event_id) is not None:
                return s.event_id  # a retried hand-off: the event is already committed
        embedding = np.ascontiguousarray(s.embedding, dtype=np.float32).ravel()
        match = await self._match(s, embedding, ctx)
        self._correct_track(s, match)
        if match is None and (ctx.settings["ignore_unmatched"] or not self._unmatched_active(ctx)):
            self.dropped += 1
            return None
        if self._is_duplicate(s, embedding, match, ctx):
            self.dropped += 1
            return None
        event_id = await self._commit_once_more_on_conflict(s, embedding, match, ctx)
        self.persons.forget(s.event_id)
        if event_id is not None:
            self.created += 1
            metrics.events_created(1, matched=match is not None)
        return event_id

    async def _commit_once_more_on_conflict(self, s: FaceSighting, embedding: np.ndarray, match: Match | None,
                                            ctx: Context) -> str | None:
        """Commit; when another pipeline won a unique row first (a dossier's person made by its first
        event in two camera groups at once) commit again, which then finds the winner's row."""
        for attempt in (1, 2):
            await self.persons.prepare(s.event_id, embedding, s.camera_group_id, match is not None, ctx.settings)
            try:
                with self._lock:
                    return self._commit(s, embedding, match, ctx)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("event %s: a concurrent commit made a row first; committing again", s.event_id)
        return None  # not reached: the loop returns or raises

    @staticmethod
    def _unmatched_active(ctx: Context) -> bool:
        unmatched = ctx.watch_lists.get(orm.UNMATCHED_WATCH_LIST_ID)
        return bool(unmatched and unmatched.active)

    async def _match(self, s: FaceSighting, embedding: np.ndarray, ctx: Context) -> Match | None:
        """The track's match, decided on its best frames (actors/track_identity.py): every dossier a sample
        finds in the gallery is scored on all of them, negatives included, against its threshold."""
        lists = ctx.candidate_lists(s.camera_group_id)
        if not lists:
            return None
        evidence = track_evidence(s, embedding)
        if evidence.best_quality < float(ctx.settings["match_min_quality"]):
            return None  # no frame of the track is good enough to tell who it is
        thresholds = {w.id: ctx.threshold(s.camera_id, s.camera_group_id, w) for w in lists}
        router = await self.galleries.router_async(DOSSIERS_GALLERY)
        # A dossier whose weighted mean reaches the cut-off has a photo some sample reaches on its own,
        # so searching with every sample at that cut-off finds every dossier that can match.
        result = await router.search_async(
            evidence.embeddings, MATCH_CANDIDATES, min_score=self.calibration.cosine(min(thresholds.values())),
            filters={"active": True, "watch_list_ids": sorted(thresholds)},
        )
        hit_faces = {int(h.item_id) for hits in result.hits for h in hits}
        if not hit_faces:
            return None
        with UnitOfWork(self.db_url) as uow:
            candidates = candidate_dossiers(uow, hit_faces, s.model)
        best: Match | None = None
        for dossier_id, candidate in sorted(candidates.items()):
            score = score_dossier(evidence, dossier_id, candidate.face_ids, candidate.photos, candidate.negatives)
            if score is None or score.rejected:
                continue  # closer to an operator's "not this person" than to the dossier's best photo
            confidence = float(self.calibration.confidence(score.cosine))
            for wl_id in sorted(candidate.watch_list_ids & set(thresholds)):
                if confidence >= thresholds[wl_id]:
                    found = Match(dossier_id, wl_id, score.face_id, confidence)
                    if best is None or (-found.confidence, found.dossier_id, wl_id) < (
                            -best.confidence, best.dossier_id, best.watch_list_id):
                        best = found
                    break
        return best

    def _correct_track(self, s: FaceSighting, match: Match | None) -> int:
        """Realtime mode: a track's later shot is decided on more of its frames than its earlier ones, so its
        match becomes theirs too (storage/negatives.py `set_event_match`); returns events corrected."""
        if s.job_id is None or s.track_id is None or len(s.track_qualities) < 2 or s.event_id.endswith("-s0"):
            return 0  # a still photo, a one-frame track, or a track's first shot: nothing earlier to correct
        with UnitOfWork(self.db_url) as uow:
            changed = 0
            for event in track_events(uow, track_event_prefix(s.event_id), before=s.event_id):
                now = match_of(event)
                # Only the identity is corrected; an earlier shot keeps its own confidence for the same dossier.
                if (now.dossier_id if now else None) != (match.dossier_id if match else None):
                    changed += set_event_match(uow, event, match)
            uow.commit()
        self.corrected += changed
        return changed

    def _similar(self, a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
        return float(self.calibration.confidence(float(np.dot(a, b)))) >= threshold

    def _is_duplicate(self, s: FaceSighting, embedding: np.ndarray, match: Match | None, ctx: Context) -> bool:
        group = ctx.groups.get(s.camera_group_id)
        if group is None or not group.deduplicate:
            return False
        window = timedelta(seconds=group.dedup_interval_s)
        recent = [f for f in self.recent.get(s.camera_group_id, ()) if abs(s.timestamp - f.timestamp) <= window]
        if match is not None:
            return any(f.dossier_id == match.dossier_id for f in recent)
        threshold = float(ctx.settings["episode_threshold"])
        return any(f.dossier_id is None and self._similar(embedding, f.embedding, threshold)
                   and s.quality <= f.quality for f in recent)

    # ---- episodes --------------------------------------------------------------------------------
    def _close_stale(self, uow: UnitOfWork, group_id: int, now: datetime, ctx: Context) -> None:
        idle = timedelta(seconds=float(ctx.settings["episode_idle_timeout_s"]))
        longest = timedelta(seconds=float(ctx.settings["episode_max_duration_s"]))
        keep = []
        for episode in self.episodes.get(group_id, []):
            if now - episode.last_at > idle or now - episode.started_at > longest:
                row = uow.episodes.find(episode.id)
                if row is not None:
                    row.open, row.closed_at = False, episode.last_at
            else:
                keep.append(episode)
        self.episodes[group_id] = keep

    def _pick_episode(self, s: FaceSighting, embedding: np.ndarray, ctx: Context) -> OpenEpisode | None:
        lookback = timedelta(seconds=float(ctx.settings["episode_lookback_s"]))
        threshold = float(ctx.settings["episode_threshold"])
        best, best_score = None, -1.0
        for episode in self.episodes.get(s.camera_group_id, []):
            for face in episode.faces:
                if s.timestamp - face.timestamp <= lookback:
                    score = float(np.dot(embedding, face.embedding))
                    if score > best_score and self._similar(embedding, face.embedding, threshold):
                        best, best_score = episode, score
        return best

    # ---- persistence -----------------------------------------------------------------------------
    def _commit(self, s: FaceSighting, embedding: np.ndarray, match: Match | None, ctx: Context) -> str | None:
        with UnitOfWork(self.db_url) as uow:
            if uow.events.find(s.event_id) is not None:
                return s.event_id
            self._close_stale(uow, s.camera_group_id, s.timestamp, ctx)
            open_episode = self._pick_episode(s, embedding, ctx)
            episode = uow.episodes.find(open_episode.id) if open_episode else None
            if episode is None:
                episode = uow.episodes.add(orm.Episode(
                    camera_group_id=s.camera_group_id, camera_id=s.camera_id, started_at=s.timestamp,
                    last_at=s.timestamp, first_event_id=s.event_id))
            event = event_row(s, match, episode)
            first = not episode.event_count
            event.acknowledged, event.acknowledged_by, event.acknowledged_at = initial_ack(
                self._requires_ack(match, ctx), episode, datetime.now(UTC))
            self.persons.attach(uow, event, embedding, s.model, ctx.settings)
            uow.session.add(event)
            add_to_episode(episode, event, match)
            episode_after_event(episode, event, first)
            enqueue_event(uow, event)
            uow.vectors.upsert(EVENTS_GALLERY, s.event_id, s.model, embedding.tobytes(), int(embedding.size), {
                "camera_id": s.camera_id, "camera_group_id": s.camera_group_id,
                "timestamp": s.timestamp.timestamp()})
            count_on_video(uow, s.video_id, match is not None)
            uow.commit()
            self._remember(s, embedding, match, episode, open_episode)
            return s.event_id

    @staticmethod
    def _requires_ack(match: Match | None, ctx: Context) -> bool:
        """The event's watch list requires acknowledgement (see storage/acknowledgement.py)."""
        watch_list = ctx.watch_lists.get(match.watch_list_id if match else orm.UNMATCHED_WATCH_LIST_ID)
        return bool(watch_list is not None and watch_list.require_ack)

    def _remember(self, s: FaceSighting, embedding: np.ndarray, match: Match | None, episode: orm.Episode,
                  open_episode: OpenEpisode | None) -> None:
        face = RecentFace(s.timestamp, embedding, match.dossier_id if match else None, s.quality)
        self.recent.setdefault(s.camera_group_id, deque(maxlen=512)).append(face)
        if open_episode is None:
            open_episode = OpenEpisode(episode.id, episode.started_at, episode.last_at)
            self.episodes.setdefault(s.camera_group_id, []).append(open_episode)
        open_episode.last_at = max(open_episode.last_at, s.timestamp)
        open_episode.touched = datetime.now(UTC)
        open_episode.faces.append(face)

    def _load_open_episodes(self) -> None:
        """Rebuild episode state after a restart from open episodes and their events' vectors: those
        stale by the clock close first, and at most a bounded number per group is loaded."""
        owns = self.owns if self.pipelines > 1 else None
        with UnitOfWork(self.db_url) as uow:
            episode_clock.close_stale_at_start(uow, datetime.now(UTC),
                                               episode_clock.Limits.from_settings(uow.settings.all()), owns)
            for episode in episode_clock.freshest_open(uow, owns=owns):
                state = OpenEpisode(episode.id, episode.started_at, episode.last_at, touched=episode.updated_at)
                events = episode_queries.latest_events(uow, episode.id, EPISODE_FACES)
                vectors = {v.item_id: v for v in uow.vectors.by_items(
                    EVENTS_GALLERY, self.galleries.model, [e.id for e in events])}
                for event in reversed(events):
                    if event.id in vectors:
                        face = RecentFace(event.timestamp, np.frombuffer(vectors[event.id].vector, np.float32),
                                          event.dossier_id, event.quality)
                        state.faces.append(face)
                        self.recent.setdefault(episode.camera_group_id or 0, deque(maxlen=512)).append(face)
                self.episodes.setdefault(episode.camera_group_id or 0, []).append(state)
            uow.commit()


# max_concurrency=1: posts are handled one at a time, so episode and dedup state never interleave.
# Ray restarts a dead one and re-runs its unanswered posts (max_task_retries=-1); event ids make that safe.
@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=1)
class EventPipeline:
    """The Ray actor around `EventPipelineCore`: pipeline `pipeline` of `pipelines` (named
    `event_pipeline_name(pipeline)`, facewatch/names.py)."""

    def __init__(self, db_url: str, galleries: Galleries, calibration: Calibration,
                 media_root: str | None = None, pipeline: int = 0, pipelines: int = 1) -> None:
        self.core = EventPipelineCore(db_url, galleries, calibration, media_root, pipeline, pipelines)
        # Started here so a pipeline Ray restarts closes quiet groups' episodes by itself.
        self.clock = BackgroundLoop(self.core.close_idle_forever, name="episode-clock")

    async def post(self, sightings: list[FaceSighting]) -> list[str | None]:
        return await self.core.post(sightings)

    async def stats(self) -> dict[str, int]:
        return self.core.stats()


__all__ = ["DOSSIERS_GALLERY", "EVENTS_GALLERY", "EventPipeline", "EventPipelineCore", "Match", "load_context"]
