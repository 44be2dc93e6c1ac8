"""What one event's commit writes besides its links: the event row built from a sighting, the episode's
running figures and the video's counters (actors/event_pipeline.py commits them in one transaction)."""

from __future__ import annotations

from facewatch.sightings import FaceSighting
from storage import orm
from storage.negatives import EventMatch
from storage.unit_of_work import UnitOfWork


def event_row(s: FaceSighting, match: EventMatch | None, episode: orm.Episode) -> orm.Event:
    """The event row of sighting `s` (matched as `match`, None for the Unmatched list) in `episode`."""
    gender = s.attributes.get("gender") if s.attributes else None
    return orm.Event(
        id=s.event_id, job_id=s.job_id, track_id=s.track_id, camera_id=s.camera_id,
        camera_group_id=s.camera_group_id, video_id=s.video_id, timestamp=s.timestamp,
        video_offset_s=s.video_offset_s, bbox=[float(v) for v in s.bbox], detection_score=s.detection_score,
        quality=s.quality, attributes=s.attributes, age=s.attributes.get("age") if s.attributes else None,
        gender=gender.get("value") if isinstance(gender, dict) else None,
        matched=match is not None, dossier_id=match.dossier_id if match else None,
        watch_list_id=match.watch_list_id if match else orm.UNMATCHED_WATCH_LIST_ID,
        matched_face_id=match.face_id if match else None, confidence=match.confidence if match else None,
        episode_id=episode.id, thumbnail_key=s.thumbnail_key, crop_key=s.crop_key, frame_key=s.frame_key,
        meta=dict(s.meta or {}), external_id=s.external_id,
    )


def add_to_episode(episode: orm.Episode, event: orm.Event, match: EventMatch | None) -> None:
    """The episode's count, last and best event, and its first match, once `event` joins it."""
    episode.event_count = (episode.event_count or 0) + 1
    episode.last_event_id = event.id
    episode.last_at = max(episode.last_at, event.timestamp) if episode.last_at else event.timestamp
    if event.quality >= (episode.best_quality or 0.0) or episode.best_event_id is None:
        episode.best_event_id, episode.best_quality = event.id, event.quality
    if match is not None and episode.dossier_id is None:
        episode.matched, episode.dossier_id, episode.watch_list_id = True, match.dossier_id, match.watch_list_id


def count_on_video(uow: UnitOfWork, video_id: int | None, matched: bool) -> None:
    """One more event (matched or not) on the video it came from, if any."""
    if video_id is None:
        return
    video = uow.videos.find(video_id)
    if video is not None:
        video.events_count += 1
        if matched:
            video.matched_count += 1
        else:
            video.unmatched_count += 1
