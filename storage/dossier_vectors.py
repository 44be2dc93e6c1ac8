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

from facewatch.gallery_schema import DOSSIERS_GALLERY, EVENTS_GALLERY, dossier_meta, encode_vector
from storage import orm

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
    faces = uow.session.execute(
        select(orm.DossierFace.id, orm.DossierFace.dossier_id).where(orm.DossierFace.dossier_id.in_(ids))
    ).all()
    dossiers = {d.id: d for d in uow.session.scalars(select(orm.Dossier).where(orm.Dossier.id.in_(ids)))}
    metas = {str(face_id): dossier_face_meta(dossiers[dossier_id]) for face_id, dossier_id in faces}
    if metas:
        uow.vectors.set_meta(DOSSIERS_GALLERY, list(metas), metas)
    return len(metas)


def dossiers_on_watch_list(uow: UnitOfWork, watch_list_id: int) -> list[int]:
    stmt = select(orm.dossier_watch_lists.c.dossier_id).where(orm.dossier_watch_lists.c.watch_list_id == watch_list_id)
    return list(uow.session.scalars(stmt))


def remove_dossier_face_vectors(uow: UnitOfWork, face_ids: Iterable[int]) -> int:
    return uow.vectors.remove(DOSSIERS_GALLERY, [str(i) for i in face_ids])
