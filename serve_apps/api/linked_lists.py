"""Linked installations: a slave's watch list follows a master installation's list.

The slave reads the master through the master's public API (an API token of the master): the list's
dossiers, each dossier's faces, their photos and crops, and their vectors. A face whose vector the master
holds for the slave's active model is copied as it is (photo, crop, vector: no model run); otherwise the
slave re-embeds the face from the master's photo at the master's box. Each dossier commits on its own
and the link remembers which master face became which local face, so an interrupted sync resumes where
it stopped and a repeated one changes nothing. Dossiers and faces gone from the master list go here too.
The linked list and its dossiers are read-only here (storage.vms.LinkRepository.refuse_edit).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np

from facewatch.errors import FacewatchError
from serve_apps.api.enrolment import enrol_photo, sync_dossiers
from serve_apps.api.services import Services
from storage import orm
from storage.dossier_vectors import (
    refresh_dossier_meta,
    remove_dossier_face_vectors,
    store_dossier_face_vector,
)
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.links")
PAGE = 200
SYNC_LEASE = timedelta(minutes=30)


class MasterError(Exception):
    """The master installation could not be read (unreachable, refused the token, answered nonsense)."""


def next_sync_at(hour: int, minute: int, after: datetime) -> datetime:
    """The next daily HH:MM (UTC) strictly after `after`."""
    at = after.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > after else at + timedelta(days=1)


@dataclass
class SyncReport:
    dossiers: int = 0
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    faces_copied: int = 0
    faces_reembedded: int = 0
    faces_removed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MasterClient:
    """Reads the master installation's API with its token."""

    def __init__(self, url: str, token: str, client: httpx.AsyncClient) -> None:
        self.url, self.client = url.rstrip("/"), client
        self.headers = {"Authorization": f"Token {token}"}

    async def get(self, path_or_url: str, **params: Any) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("http") else f"{self.url}{path_or_url}"
        try:
            response = await self.client.get(url, params=params or None, headers=self.headers, timeout=30.0)
        except httpx.HTTPError as exc:
            raise MasterError(f"the master is unreachable ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise MasterError(f"the master answered {response.status_code} to GET {path_or_url.split('?')[0]}: "
                              f"{_reason(response)}")
        return response

    async def pages(self, path: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        cursor = None
        while True:
            body = (await self.get(path, limit=PAGE, **params, **({"cursor": cursor} if cursor else {}))).json()
            for item in body.get("results", []):
                yield item
            cursor = body.get("next_cursor")
            if not cursor:
                return

    async def vectors(self, dossier_id: int, face_id: int) -> dict[str, np.ndarray]:
        body = (await self.get(f"/v1/dossiers/{dossier_id}/faces/{face_id}/vectors")).json()
        return {v["model"]: np.frombuffer(base64.b64decode(v["vector"]), dtype=np.float32) for v in body["vectors"]}

    async def media(self, url: str | None) -> bytes | None:
        return (await self.get(url)).content if url else None


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))[:200]
    except ValueError:
        return response.text[:200]


async def _copy_face(uow: UnitOfWork, media: LocalMediaStore, services: Services | None, master: MasterClient,
                     dossier: orm.Dossier, master_dossier_id: int, face: dict[str, Any], model: str,
                     limit: int, report: SyncReport) -> orm.DossierFace:
    photo = await master.media(face.get("photo"))
    vector = (await master.vectors(master_dossier_id, int(face["id"]))).get(model)
    if vector is not None:
        crop = await master.media(face.get("crop"))
        row = uow.dossier_faces.add(orm.DossierFace(
            dossier_id=dossier.id, source_key=media.put(photo, "jpg") if photo else "",
            crop_key=media.put(crop, "png") if crop else "", bbox=face.get("bbox") or [],
            landmarks=face.get("landmarks") or [], detection_score=float(face.get("detection_score") or 0.0),
            quality=float(face.get("quality") or 0.0), attributes=face.get("attributes") or {}))
        store_dossier_face_vector(uow, row, dossier, model, vector)
        report.faces_copied += 1
        return row
    if services is None or photo is None:
        raise MasterError(f"face {face['id']} has no {model} vector on the master and cannot be re-embedded here")
    rows = await enrol_photo(uow, media, services, dossier, photo, limit=limit, bbox=face.get("bbox") or None)
    report.faces_reembedded += 1
    return rows[0]


async def sync_link(link_id: int, db_url: str, media: LocalMediaStore, services: Services | None,
                    client: httpx.AsyncClient, model: str, limit: int) -> SyncReport:
    """One sync of one link (see the module docstring); the outcome is kept on the link's row."""
    report = SyncReport()
    with UnitOfWork(db_url) as uow:
        link = uow.links.get(link_id)
        master = MasterClient(link.master_url, link.master_token, client)
        master_list, local_list_id = link.master_watch_list_id, link.watch_list_id
    try:
        seen: set[int] = set()
        async for item in master.pages("/v1/dossiers", watch_list_id=master_list):
            seen.add(int(item["id"]))
            report.dossiers += 1
            try:
                await _sync_dossier(link_id, local_list_id, item, db_url, media, services, master, model, limit,
                                    report)
            except (FacewatchError, MasterError) as exc:  # this dossier waits for the next sync; the rest goes on
                report.errors.append({"master_dossier_id": item["id"], "reason": str(exc)})
        with UnitOfWork(db_url) as uow:
            for master_id, copy in uow.links.copies(link_id).items():
                if master_id not in seen:
                    dossier = uow.dossiers.find(copy.dossier_id)
                    if dossier is not None:
                        remove_dossier_face_vectors(uow, [f.id for f in dossier.faces])
                        uow.dossiers.delete(dossier)
                    report.deleted.append(copy.dossier_id)
            uow.commit()
        status, error = ("partial" if report.errors else "ok"), ""
    except MasterError as exc:
        status, error = "failed", str(exc)
    if services is not None:
        await sync_dossiers(services.galleries)
    with UnitOfWork(db_url) as uow:
        link = uow.links.get(link_id)
        now = datetime.now(UTC)
        link.last_sync_at, link.last_sync_status, link.last_sync_error = now, status, error
        link.last_sync_report, link.syncing_until = report.as_dict(), None
        link.next_sync_at = next_sync_at(link.sync_hour, link.sync_minute, now)
        uow.commit()
    return report


async def _sync_dossier(link_id: int, local_list_id: int, item: dict[str, Any], db_url: str, media: LocalMediaStore,
                        services: Services | None, master: MasterClient, model: str, limit: int,
                        report: SyncReport) -> None:
    master_id = int(item["id"])
    faces = [f async for f in master.pages(f"/v1/dossiers/{master_id}/faces")]
    with UnitOfWork(db_url) as uow:
        copy = uow.links.copies(link_id).get(master_id)
        fields = {"name": item["name"], "comment": item.get("comment") or "", "external_id": item.get("external_id"),
                  "active": bool(item.get("active", True))}
        if copy is None:
            dossier = uow.dossiers.add(orm.Dossier(**fields, watch_lists=[uow.watch_lists.get(local_list_id)]))
            copy = uow.links.add_copy(orm.LinkedDossier(link_id=link_id, master_dossier_id=master_id,
                                                        dossier_id=dossier.id, faces={}))
            report.created.append(dossier.id)
        else:
            dossier = uow.dossiers.get(copy.dossier_id)
            if copy.master_updated_at != str(item.get("updated_at")):
                for name, value in fields.items():
                    setattr(dossier, name, value)
                uow.flush()
                refresh_dossier_meta(uow, [dossier.id])
                report.updated.append(dossier.id)
        mapping = dict(copy.faces or {})
        wanted = {str(f["id"]): f for f in faces}
        for master_face_id in [k for k in mapping if k not in wanted]:
            local = uow.dossier_faces.find(int(mapping.pop(master_face_id)))
            if local is not None:
                remove_dossier_face_vectors(uow, [local.id])
                uow.dossier_faces.delete(local)
            report.faces_removed += 1
        for master_face_id, face in wanted.items():
            if master_face_id not in mapping:
                row = await _copy_face(uow, media, services, master, dossier, master_id, face, model, limit, report)
                mapping[master_face_id] = row.id
        copy.faces, copy.master_updated_at = mapping, str(item.get("updated_at"))
        uow.commit()


def start_link_scheduler(app: Any, every_s: float = 30.0) -> None:
    """From the API app's startup: every `every_s`, run the links whose daily sync is due (claimed in the
    database, so several API replicas never run one link twice)."""
    import asyncio

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            services = getattr(app.state, "services", None)
            if services is None:  # without the extractor pool, only the slave's API is up: nothing to sync into
                continue
            config = app.state.config
            try:
                await run_due_links(config.database_url, app.state.media, services, services.embedder,
                                    config.max_upload_bytes)
            except Exception:  # noqa: BLE001 - the database away: try again on the next round
                log.warning("linked watch lists: scheduled sync round failed", exc_info=True)

    app.state.link_scheduler = asyncio.get_running_loop().create_task(loop())


async def run_due_links(db_url: str, media: LocalMediaStore, services: Services | None, model: str,
                        limit: int) -> list[int]:
    """Claims the links whose daily sync is due and runs them (any API replica may call this)."""
    with UnitOfWork(db_url) as uow:
        claimed = uow.links.claim_due(datetime.now(UTC), SYNC_LEASE)
        uow.commit()
    async with httpx.AsyncClient() as client:
        for link_id in claimed:
            try:
                await sync_link(link_id, db_url, media, services, client, model, limit)
            except Exception:  # noqa: BLE001 - one broken link must not stop the others
                log.warning("sync of watch-list link %s failed", link_id, exc_info=True)
    return claimed
