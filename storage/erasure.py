"""Erasure: nothing of a deleted person, photo or dropped face stays behind (SPEC §11).

- Deleting a dossier photo (`DELETE /v1/dossiers/{id}/faces/{face_id}`) or a dossier
  (`DELETE /v1/dossiers/{id}`) removes the rows, the vectors of every model (through the gallery
  change log, so the shards drop them), the dossier's negatives (rows holding their vectors, by
  cascade; storage/negatives.py) and the photo and crop files no other row refers to. Its
  events stay (with `dossier_id` cleared by the database), as before.
- Erasing a person (`POST /v1/dossiers/{id}/erase`, admins; the audit log records the call) also
  removes every event matched to the dossier and every event of its episodes (the episode rule
  grouped them as the same person), with their rows, outbox rows, vectors in the events gallery,
  media files and episodes: `storage.retention.delete_events` does the per-event part, as for expired
  events. Erase before deleting: a deleted dossier's events no longer name it.
- Faces the event pipeline drops (dedup, ignored unmatched) have their thumbnail and crop removed at
  once when no row refers to them; a frame may still be wanted by another face of the same frame, so
  frames (and the media of posts that failed for good) are left to the sweep.
- The media sweep (`sweep_media`, run by the retention schedule and by `facewatch sweep-media`)
  deletes every file under the media root that no row refers to and that is older than a grace
  period (default 1 hour, so a file written just before its row commits is never taken), and stale
  temporary files of interrupted writes.

Files are deleted only after the rows that referred to them are committed: a crash in between
leaves an unreferenced file, which the sweep removes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from storage import orm
from storage.dossier_vectors import remove_dossier_face_vectors
from storage.media import LocalMediaStore
from storage.negatives import negative_keys, negatives_of
from storage.retention import CleanupReport, delete_events, referenced_keys
from storage.unit_of_work import UnitOfWork

DEFAULT_GRACE_S = 3600.0
SWEEP_CHUNK = 500


def delete_unreferenced(uow: UnitOfWork, media: LocalMediaStore, keys: Iterable[str]) -> int:
    """Deletes the files of `keys` that no row refers to (call after the commit); returns how many."""
    wanted = {k for k in keys if k}
    deleted = 0
    for key in sorted(wanted - referenced_keys(uow, wanted)):
        if media.exists(key):
            media.delete(key)
            deleted += 1
    return deleted


def face_keys(faces: Iterable[orm.DossierFace]) -> set[str]:
    return {k for f in faces for k in (f.source_key, f.crop_key) if k}


def remove_dossier_faces(uow: UnitOfWork, faces: list[orm.DossierFace]) -> int:
    """Deletes these photos' rows and their vectors of every model (the caller commits); returns vectors removed."""
    removed = remove_dossier_face_vectors(uow, [f.id for f in faces])
    for face in faces:
        uow.dossier_faces.delete(face)
    return removed


def remove_dossier(uow: UnitOfWork, dossier: orm.Dossier) -> int:
    """Deletes the dossier, its photos (by cascade) and their vectors of every model (the caller commits
    and then deletes the photos' files); returns vectors removed."""
    removed = remove_dossier_face_vectors(uow, [f.id for f in dossier.faces])
    uow.dossiers.delete(dossier)
    return removed


@dataclass
class ErasureReport:
    dossier_id: int
    faces_deleted: int = 0
    events_deleted: int = 0
    episodes_deleted: int = 0
    vectors_deleted: int = 0
    media_deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_person(uow: UnitOfWork, media: LocalMediaStore, dossier: orm.Dossier) -> ErasureReport:
    """Removes the dossier, its photos and every event of the person (module docstring); commits."""
    report = ErasureReport(dossier_id=dossier.id)
    episodes = select(orm.Episode.id).where(orm.Episode.dossier_id == dossier.id)
    event_ids = list(uow.session.scalars(select(orm.Event.id).where(
        or_(orm.Event.dossier_id == dossier.id, orm.Event.episode_id.in_(episodes)))))
    events = CleanupReport()
    for start in range(0, len(event_ids), SWEEP_CHUNK):
        delete_events(uow, media, event_ids[start:start + SWEEP_CHUNK], events)
    report.events_deleted, report.episodes_deleted = events.events_deleted, events.episodes_deleted
    report.media_deleted = events.media_deleted
    dossier = uow.dossiers.get(report.dossier_id)  # delete_events expired the session's objects
    faces = list(dossier.faces)
    negatives = negatives_of(uow, dossier.id)  # rows cascade with the dossier; their files follow below
    keys = face_keys(faces) | negative_keys(negatives)
    report.faces_deleted = len(faces)
    report.vectors_deleted = events.vectors_deleted + remove_dossier(uow, dossier)
    uow.commit()
    report.media_deleted += delete_unreferenced(uow, media, keys)
    return report


# -- the media sweep -----------------------------------------------------------------------------------


@dataclass
class SweepReport:
    files_seen: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    temporary_deleted: int = 0
    kept_referenced: int = 0
    kept_young: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _media_files(root: Path) -> Iterable[Path]:
    """Files in the store's layout (root/ab/cd/<key>), temporaries included; never `.incoming`."""
    for first in sorted(root.glob("[0-9a-f][0-9a-f]")):
        for second in sorted(first.glob("[0-9a-f][0-9a-f]")):
            yield from (p for p in sorted(second.iterdir()) if p.is_file())


def sweep_media(db_url: str, media_root: str | Path, grace_s: float = DEFAULT_GRACE_S,
                now: float | None = None) -> dict[str, Any]:
    """Deletes media files older than `grace_s` that no row refers to (module docstring); returns a report."""
    if grace_s < 0:
        raise ValueError("grace_s must be 0 or more")
    media = LocalMediaStore(media_root)
    cutoff = (now if now is not None else time.time()) - grace_s
    report = SweepReport()
    if not media.root.is_dir():
        return report.as_dict()
    batch: list[Path] = []
    for path in _media_files(media.root):
        report.files_seen += 1
        try:
            young = path.stat().st_mtime > cutoff
        except FileNotFoundError:
            continue
        if young:
            report.kept_young += 1
        elif path.name.startswith(".tmp-"):  # an interrupted write; the finished file has another name
            path.unlink(missing_ok=True)
            report.temporary_deleted += 1
        else:
            batch.append(path)
        if len(batch) >= SWEEP_CHUNK:
            _sweep_batch(db_url, batch, report)
            batch = []
    _sweep_batch(db_url, batch, report)
    return report.as_dict()


def _sweep_batch(db_url: str, paths: list[Path], report: SweepReport) -> None:
    if not paths:
        return
    with UnitOfWork(db_url) as uow:
        referenced = referenced_keys(uow, [p.name for p in paths])
    for path in paths:
        if path.name in referenced:
            report.kept_referenced += 1
            continue
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        report.files_deleted += 1
        report.bytes_deleted += size


__all__ = ["DEFAULT_GRACE_S", "ErasureReport", "SweepReport", "delete_unreferenced", "erase_person", "face_keys",
           "remove_dossier", "remove_dossier_faces", "sweep_media"]
