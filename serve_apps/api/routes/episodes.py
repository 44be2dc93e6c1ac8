"""Episodes: list, get, acknowledge (which acknowledges the episode's events, present and future)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlalchemy import update

from serve_apps.api.deps import Operator, Pages, Uow, Viewer
from serve_apps.api.schemas import EpisodeOut, Page
from storage import orm

router = APIRouter(prefix="/episodes", tags=["episodes"])


@router.get("", response_model=Page[EpisodeOut])
def list_episodes(
    uow: Uow,
    _: Viewer,
    paging: Pages,
    camera_group_id: int | None = None,
    camera_id: int | None = None,
    dossier_id: int | None = None,
    watch_list_id: int | None = None,
    matched: bool | None = None,
    open: bool | None = None,  # noqa: A002 - the API's filter name
    acknowledged: bool | None = None,
) -> Page[EpisodeOut]:
    stmt = uow.episodes.query()
    for name, value in (("camera_group_id", camera_group_id), ("camera_id", camera_id),
                        ("dossier_id", dossier_id), ("watch_list_id", watch_list_id)):
        if value is not None:
            stmt = stmt.where(getattr(orm.Episode, name) == value)
    for name, flag in (("matched", matched), ("open", open), ("acknowledged", acknowledged)):
        if flag is not None:
            stmt = stmt.where(getattr(orm.Episode, name).is_(flag))
    page = uow.episodes.page(stmt, paging.limit, paging.cursor, keys=uow.episodes.newest_first)
    return Page(results=[EpisodeOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor)


@router.get("/{episode_id}", response_model=EpisodeOut)
def get_episode(episode_id: int, uow: Uow, _: Viewer) -> orm.Episode:
    return uow.episodes.get(episode_id)


@router.post("/{episode_id}/ack", response_model=EpisodeOut)
def acknowledge_episode(episode_id: int, uow: Uow, caller: Operator) -> orm.Episode:
    episode = uow.episodes.get(episode_id)
    now = datetime.now(UTC)
    episode.acknowledged, episode.acknowledged_by, episode.acknowledged_at = True, caller.username, now
    uow.session.execute(
        update(orm.Event)
        .where(orm.Event.episode_id == episode_id, orm.Event.acknowledged.is_(False))
        .values(acknowledged=True, acknowledged_by=caller.username, acknowledged_at=now)
    )
    uow.commit()
    return episode
