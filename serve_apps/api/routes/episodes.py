"""Episodes: list, get, acknowledge (which acknowledges the episode's events, present and future)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from facewatch.errors import NotFound
from serve_apps.api.deps import Operator, Pages, Scope, Uow, Viewer
from serve_apps.api.list_queries import EpisodeQuery
from serve_apps.api.routes._common import page_out
from serve_apps.api.schemas import EpisodeOut, Page
from storage import orm
from storage.acknowledgement import acknowledge_finished_episodes
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(prefix="/episodes", tags=["episodes"])


@router.get("", response_model=Page[EpisodeOut])
def list_episodes(uow: Uow, _: Viewer, scope: Scope, paging: Pages,
                  query: Annotated[EpisodeQuery, Query()]) -> Page[EpisodeOut]:
    filters = query.model_dump(exclude_none=True)
    page = uow.episodes.list_page(filters, paging.limit, paging.cursor, scope)
    return page_out(page, EpisodeOut)


@router.get("/{episode_id}", response_model=EpisodeOut)
def get_episode(episode_id: int, uow: Uow, _: Viewer, scope: Scope) -> orm.Episode:
    return _visible_episode(uow, episode_id, scope)


def _visible_episode(uow: UnitOfWork, episode_id: int, scope: VisibilityScope) -> orm.Episode:
    episode = uow.episodes.visible(episode_id, scope)
    if episode is None:
        raise NotFound(f"episode {episode_id} does not exist", param="id")
    return episode


@router.post("/{episode_id}/ack", response_model=EpisodeOut)
def acknowledge_episode(episode_id: int, uow: Uow, caller: Operator, scope: Scope) -> orm.Episode:
    """Acknowledges the episode's events the caller sees (never those of groups or lists hidden from
    the caller's role). The episode itself counts as acknowledged once all its events are; only then do
    its future events arrive acknowledged."""
    episode = _visible_episode(uow, episode_id, scope)
    now = datetime.now(UTC)
    uow.episodes.acknowledge_events(episode_id, scope, caller.username, now)
    acknowledge_finished_episodes(uow, [episode_id], caller.username, now)
    uow.commit()
    uow.session.refresh(episode)
    return episode
