"""Vectors of dossier faces in the `dossiers` gallery, and the metadata its shards filter on.

A face's metadata says whether it can match at all: `active` is the dossier's own flag, and
`watch_list_ids` lists only the ACTIVE watch lists the dossier is on. So deactivating a dossier or a
watch list, or changing membership, is a metadata update of the affected faces (plus a gallery
sync), and the very next search sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from facewatch.gallery_schema import DOSSIERS_GALLERY, EVENTS_GALLERY, dossier_meta, encode_vector
from storage import orm
from storage.repositories import in_chunks

if TYPE_CHECKING:  # the unit of work's repositories import this module
    from storage.unit_of_work import UnitOfWork

__all__ = ["DOSSIERS_GALLERY", "EVENTS_GALLERY", "dossier_face_meta", "dossiers_on_watch_list", "refresh_dossier_meta",
           "remove_dossier_face_vectors", "store_dossier_face_vector"]  # the gallery names: re-exported


def dossier_face_meta(dossier: orm.Dossier) -> dict[str, Any]:
    return dossier_meta(dossier.id, [w.id for w in dossier.watch_lists if w.active], dossier.active)


def store_dossier_face_vector(uow: UnitOfWork, face: orm.DossierFace, dossier: orm.Dossier, model: str,
                              vector: np.ndarray) -> None:
    raw = encode_vector(vector)
    uow.vectors.upsert(DOSSIERS_GALLERY, str(face.id), model, raw, len(raw) // 4,
                       dossier_face_meta(dossier))


def refresh_dossier_meta(uow: UnitOfWork, dossier_ids: Iterable[int]) -> int:
    """Re-derive the metadata of every face of these dossiers (all models); returns faces touched."""
    ids = sorted(set(dossier_ids))
    if not ids:
        return 0
    faces, dossiers = [], {}
    for chunk in in_chunks(ids):  # a big watch list would exceed the databases' bind-parameter limits
        faces.extend(uow.session.execute(
            select(orm.DossierFace.id, orm.DossierFace.dossier_id).where(orm.DossierFace.dossier_id.in_(chunk))
        ).all())
        dossiers.update({d.id: d for d in uow.session.scalars(select(orm.Dossier).where(orm.Dossier.id.in_(chunk))
                                                              .options(selectinload(orm.Dossier.watch_lists)))})
    metas = {str(face_id): dossier_face_meta(dossiers[dossier_id]) for face_id, dossier_id in faces}
    if metas:
        uow.vectors.set_meta(DOSSIERS_GALLERY, metas)
    return len(metas)


def dossiers_on_watch_list(uow: UnitOfWork, watch_list_id: int) -> list[int]:
    stmt = select(orm.dossier_watch_lists.c.dossier_id).where(orm.dossier_watch_lists.c.watch_list_id == watch_list_id)
    return list(uow.session.scalars(stmt))


def remove_dossier_face_vectors(uow: UnitOfWork, face_ids: Iterable[int]) -> int:
    return uow.vectors.remove(DOSSIERS_GALLERY, [str(i) for i in face_ids])


def faces_from_events(uow: UnitOfWork, dossier: orm.Dossier, events: list[orm.Event],
                      model: str) -> list[orm.DossierFace]:
    """A dossier face per event: the event's crop, box and quality, and a copy of its `model` vector
    (the event was embedded by the same pipeline, so no model runs again). An event without a vector of
    `model` (recorded before a model change) is refused."""
    from facewatch.errors import BadParam

    vectors = {v.item_id: v for v in uow.vectors.by_items(EVENTS_GALLERY, model, [e.id for e in events])}
    faces = []
    for event in events:
        vector = vectors.get(event.id)
        if vector is None or not event.crop_key:
            raise BadParam(f"event {event.id} has no face crop or no {model} vector", param="event_ids")
        face = orm.DossierFace(dossier_id=dossier.id, source_key=event.frame_key or event.crop_key,
                               crop_key=event.crop_key, bbox=list(event.bbox), detection_score=event.detection_score,
                               quality=event.quality, attributes=dict(event.attributes or {}),
                               meta={"from_event": event.id})
        uow.dossier_faces.add(face)
        store_dossier_face_vector(uow, face, dossier, model, np.frombuffer(vector.vector, np.float32))
        faces.append(face)
    return faces
