"""Operators teach the matcher: reject an event's match ("not this person"), list and remove negatives.

The rule and the storage are in storage/negatives.py; the matching in actors/track_identity.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from serve_apps.api.deps import Media, Operator, Scope, Uow, Viewer
from serve_apps.api.routes._common import ensure_visible
from serve_apps.api.routes.events import base_url, visible_event
from serve_apps.api.schemas import NEGATIVE_RULE, DbId, NegativeMedia, NegativeOut, RejectMatchOut
from storage import orm
from storage.erasure import delete_unreferenced
from storage.event_views import event_to_dict, media_url
from storage.negatives import negative_keys, negative_of, negatives_of, reject_match
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(tags=["negatives"])


def negative_out(row: orm.DossierNegative, url: str) -> NegativeOut:
    return NegativeOut(id=row.id, dossier_id=row.dossier_id, event_id=row.event_id,
                       camera_group_id=row.camera_group_id, model=row.model, created_by=row.created_by,
                       created_at=row.created_at, media=NegativeMedia(thumbnail=media_url(url, row.thumbnail_key),
                                                                      crop=media_url(url, row.crop_key)))


def _visible_dossier(uow: UnitOfWork, dossier_id: int, scope: VisibilityScope) -> orm.Dossier:
    row = uow.dossiers.get(dossier_id)
    return ensure_visible(row, scope.sees_dossier(row), "dossier", dossier_id)


@router.post("/events/{event_id}/reject-match", response_model=RejectMatchOut, description=(
        "\"Not this person\": the matched event's face is stored as a negative example of the dossier it "
        "matched, and the event is unmatched (Unmatched list; its episode and video counters follow). "
        + NEGATIVE_RULE + " An unmatched event is a CONFLICT. Operators and admins; audited."))
def reject_event_match(event_id: str, request: Request, uow: Uow, caller: Operator, scope: Scope) -> RejectMatchOut:
    event = visible_event(uow, event_id, scope)
    negative = reject_match(uow, event, str(uow.settings.get("embedder")), caller.username)
    uow.commit()
    url = base_url(request)
    return RejectMatchOut(event=event_to_dict(event, url), negative=negative_out(negative, url))


@router.get("/dossiers/{dossier_id}/negatives", response_model=list[NegativeOut], description=(
        "The dossier's negatives, oldest first (those of camera groups hidden from the caller left out). "
        + NEGATIVE_RULE))
def list_negatives(dossier_id: DbId, request: Request, uow: Uow, _: Viewer, scope: Scope) -> list[NegativeOut]:
    _visible_dossier(uow, dossier_id, scope)
    url = base_url(request)
    return [negative_out(n, url) for n in negatives_of(uow, dossier_id, scope.negatives())]


@router.delete("/dossiers/{dossier_id}/negatives/{negative_id}", status_code=204, description=(
        "Removes one negative, its vector and its files no other row refers to: the dossier matches such "
        "faces again. Operators and admins; audited."))
def delete_negative(dossier_id: DbId, negative_id: DbId, uow: Uow, _: Operator, scope: Scope,
                    media: Media) -> Response:
    _visible_dossier(uow, dossier_id, scope)
    row = negative_of(uow, dossier_id, negative_id, scope.negatives())
    keys = negative_keys([row])
    uow.session.delete(row)
    uow.commit()
    delete_unreferenced(uow, media, keys)
    return Response(status_code=204)
