"""Retention (SPEC §9): deleting events older than the configured number of days, and pruning the
tables that would otherwise only grow (audit log, webhook deliveries, gallery change log: `prune_logs`).

What "older" means: an event's age counts from when it was recorded (`created_at`), not from its
`timestamp` (a video file processed today with stream timestamps from last year is kept for the
full retention). Matched and unmatched events have their own limits, the runtime settings
`retention_days_matched` and `retention_days_unmatched` (a value of 0 or less, or null, keeps those
events forever); `older_than_days` overrides both and deletes every event older than that.

Per expired event, in one transaction per batch:
- the event row; its webhook outbox rows (pending ones too: the event no longer exists);
- its vectors in the events gallery (every model), through `VectorRepository.remove`, so the gallery
  change log records the removal — the caller then syncs the events gallery's shards (or they
  replay the log when they next start);
- its media files (thumbnail, crop, frame) — only those no remaining row references: media are
  content addressed, so identical content is one file shared by several rows (any `*_key` column of
  any table counts as a reference);
- its episode is updated (event count, first and best event), or deleted once no event is left.
Files are deleted after the rows are deleted (flushed) and before the commit: a crash between the two
leaves rows of expired events whose files are already gone, which the next run deletes. Running it
again is always safe; it does nothing when nothing is expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, delete, func, or_, select

from storage import orm
from storage.dossier_vectors import EVENTS_GALLERY
from storage.media import LocalMediaStore
from storage.persons import forget_events, persons_of_events
from storage.unit_of_work import UnitOfWork

DEFAULT_BATCH = 500
IN_CHUNK = 500  # ids per IN (...) list


@dataclass
class CleanupReport:
    events_deleted: int = 0
    matched_deleted: int = 0
    unmatched_deleted: int = 0
    episodes_deleted: int = 0
    episodes_updated: int = 0
    outbox_deleted: int = 0
    vectors_deleted: int = 0
    media_deleted: int = 0
    media_kept_shared: int = 0
    batches: int = 0
    persons_deleted: int = 0
    cutoff_matched: str | None = None
    cutoff_unmatched: str | None = None
    event_ids_sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _days(value: Any) -> float | None:
    try:
        days = float(value)
    except (TypeError, ValueError):
        return None
    return days if days > 0 else None


def cutoffs(settings: dict[str, Any], now: datetime, older_than_days: float | None = None
            ) -> tuple[datetime | None, datetime | None]:
    """(matched cutoff, unmatched cutoff): events created before it are expired; None keeps them."""
    if older_than_days is not None:
        if older_than_days < 0:
            raise ValueError("older_than_days must be 0 or more")
        cut = now - timedelta(days=float(older_than_days))
        return cut, cut
    matched, unmatched = _days(settings.get("retention_days_matched")), _days(settings.get("retention_days_unmatched"))
    return (now - timedelta(days=matched) if matched else None,
            now - timedelta(days=unmatched) if unmatched else None)


def expired_clause(matched_cutoff: datetime | None, unmatched_cutoff: datetime | None) -> Any | None:
    e = orm.Event
    parts = []
    if matched_cutoff is not None:
        parts.append(and_(e.matched.is_(True), e.created_at < matched_cutoff))
    if unmatched_cutoff is not None:
        parts.append(and_(e.matched.is_(False), e.created_at < unmatched_cutoff))
    return or_(*parts) if parts else None


def media_columns() -> list[Any]:
    """Every column that holds a media key (`*_key` text columns of any table)."""
    return [c for t in orm.Base.metadata.sorted_tables for c in t.columns
            if c.name.endswith("_key") and isinstance(c.type, String)]


def _chunks(items: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def referenced_keys(uow: UnitOfWork, keys: Iterable[str]) -> set[str]:
    """The keys among `keys` that some row (as the session sees it) still references."""
    wanted = sorted({k for k in keys if k})
    found: set[str] = set()
    for column in media_columns():
        for chunk in _chunks(wanted):
            found.update(uow.session.scalars(select(column).where(column.in_(chunk)).distinct()))
    return found


def _tidy_episodes(uow: UnitOfWork, episode_ids: set[int], report: CleanupReport) -> None:
    """After events were deleted: drop episodes left empty, re-derive the counts of the others."""
    e = orm.Event
    for episode_id in sorted(episode_ids):
        episode = uow.episodes.find(episode_id)
        if episode is None:
            continue
        count = int(uow.session.scalar(select(func.count()).where(e.episode_id == episode_id)) or 0)
        if count == 0:
            uow.session.delete(episode)
            report.episodes_deleted += 1
            continue
        first = uow.session.execute(select(e.id, e.timestamp).where(e.episode_id == episode_id)
                                    .order_by(e.timestamp, e.id).limit(1)).one()
        best = uow.session.execute(select(e.id, e.quality).where(e.episode_id == episode_id)
                                   .order_by(e.quality.desc(), e.timestamp, e.id).limit(1)).one()
        episode.event_count = count
        episode.first_event_id, episode.started_at = first.id, first.timestamp
        if episode.best_event_id is None or uow.session.get(orm.Event, episode.best_event_id) is None:
            episode.best_event_id, episode.best_quality = best.id, best.quality
        if episode.last_event_id is not None and uow.session.get(orm.Event, episode.last_event_id) is None:
            last = uow.session.scalar(select(e.id).where(e.episode_id == episode_id)
                                      .order_by(e.timestamp.desc(), e.id.desc()).limit(1))
            episode.last_event_id = last
        report.episodes_updated += 1


def delete_events(uow: UnitOfWork, media: LocalMediaStore, event_ids: list[str], report: CleanupReport) -> None:
    """Deletes these events with their outbox rows, vectors, unshared media and empty episodes
    (inside the caller's transaction; the caller commits)."""
    e = orm.Event
    rows = []
    for chunk in _chunks(event_ids):
        rows.extend(uow.session.execute(select(e.id, e.episode_id, e.matched, e.thumbnail_key, e.crop_key,
                                               e.frame_key).where(e.id.in_(chunk))).all())
    ids = [r.id for r in rows]
    if not ids:
        return
    keys = {k for r in rows for k in (r.thumbnail_key, r.crop_key, r.frame_key) if k}
    episodes = {r.episode_id for r in rows if r.episode_id is not None}
    people = persons_of_events(uow, ids)
    for chunk in _chunks(ids):
        result = uow.session.execute(delete(orm.WebhookOutbox).where(orm.WebhookOutbox.event_id.in_(chunk)))
        report.outbox_deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        report.vectors_deleted += uow.vectors.remove(EVENTS_GALLERY, chunk)
        uow.session.execute(delete(e).where(e.id.in_(chunk)), execution_options={"synchronize_session": False})
    uow.session.expire_all()  # episodes (and anything else loaded) re-read after the bulk deletes
    _tidy_episodes(uow, episodes, report)
    report.persons_deleted += forget_events(uow, ids, people)
    uow.flush()
    shared = referenced_keys(uow, keys)
    for key in sorted(keys - shared):
        if media.exists(key):
            media.delete(key)
            report.media_deleted += 1
    report.media_kept_shared += len(keys & shared)
    report.events_deleted += len(ids)
    report.matched_deleted += sum(1 for r in rows if r.matched)
    report.unmatched_deleted += sum(1 for r in rows if not r.matched)
    if len(report.event_ids_sample) < 20:
        report.event_ids_sample.extend(ids[: 20 - len(report.event_ids_sample)])


def cleanup(db_url: str, media_root: str | Path, older_than_days: float | None = None, *,
            batch: int = DEFAULT_BATCH, now: datetime | None = None, max_batches: int | None = None
            ) -> dict[str, Any]:
    """Delete expired events (see the module docstring) in batches of `batch`; returns a report.

    Does not touch the gallery actors: when `vectors_deleted` > 0 the caller syncs the events
    gallery (`Galleries.sync_async("events")`), or the shards replay the removals when they start.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = now or datetime.now(UTC)
    media = LocalMediaStore(media_root)
    report = CleanupReport()
    with UnitOfWork(db_url) as uow:
        settings = uow.settings.all()
    matched_cut, unmatched_cut = cutoffs(settings, now, older_than_days)
    report.cutoff_matched = matched_cut.isoformat() if matched_cut else None
    report.cutoff_unmatched = unmatched_cut.isoformat() if unmatched_cut else None
    clause = expired_clause(matched_cut, unmatched_cut)
    if clause is None:
        return report.as_dict()
    while max_batches is None or report.batches < max_batches:
        with UnitOfWork(db_url) as uow:
            ids = list(uow.session.scalars(select(orm.Event.id).where(clause).limit(batch)))
            if not ids:
                break
            delete_events(uow, media, ids, report)
            uow.commit()
        report.batches += 1
    return report.as_dict()


# -- tables that would otherwise only grow ------------------------------------------------------

LOG_RETENTION: dict[str, str] = {
    "audit_log": "retention_days_audit_log",
    "webhook_deliveries": "retention_days_webhook_deliveries",
    "gallery_changes": "retention_days_gallery_changes",
}
"""Table → the runtime setting holding its retention in days (0 keeps every row forever)."""


def prune_logs(db_url: str, gallery_positions: dict[str, int] | None = None, *, now: datetime | None = None,
               batch: int = DEFAULT_BATCH) -> dict[str, int]:
    """Deletes audit records, webhook delivery attempts and gallery change-log rows older than their
    retention settings; returns the rows deleted per table.

    The gallery change log is what a shard replays after loading its snapshot, so a row is deleted only
    when, besides being old, every snapshot of its gallery already contains it: `gallery_positions`
    maps a gallery to the lowest `applied_seq` of its snapshots (galleries not named keep their whole
    log). A shard without a snapshot loads from `face_vectors`, not from the log.
    """
    now = now or datetime.now(UTC)
    with UnitOfWork(db_url) as uow:
        settings = uow.settings.all()
    deleted = dict.fromkeys(LOG_RETENTION, 0)
    for table, key in LOG_RETENTION.items():
        days = _days(settings.get(key))
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        if table == "gallery_changes":
            for gallery, position in sorted((gallery_positions or {}).items()):
                c = orm.GalleryChange
                deleted[table] += _delete_in_batches(db_url, c.seq, and_(
                    c.gallery == gallery, c.seq <= position, c.created_at < cutoff), batch)
        else:
            model = orm.AuditRecord if table == "audit_log" else orm.WebhookDelivery
            deleted[table] += _delete_in_batches(db_url, model.id, model.created_at < cutoff, batch)
    return deleted


def _delete_in_batches(db_url: str, key: Any, where: Any, batch: int) -> int:
    """Deletes the rows of `key`'s table matching `where`, `batch` per transaction (short write locks)."""
    total = 0
    while True:
        with UnitOfWork(db_url) as uow:
            ids = list(uow.session.scalars(select(key).where(where).order_by(key).limit(batch)))
            if not ids:
                return total
            uow.session.execute(delete(key.class_).where(key.in_(ids)))
            uow.commit()
        total += len(ids)


__all__ = ["LOG_RETENTION", "CleanupReport", "cleanup", "cutoffs", "delete_events", "expired_clause",
           "media_columns", "prune_logs", "referenced_keys"]
