"""A watch list or gallery larger than the databases' bind-parameter limits (issue 11, item 13): SQLite
allows 32766 parameters per statement, PostgreSQL 65535; one `IN (...)` list of every member used to
fail. 70,001 dossiers are written by bulk insert; re-deriving 70,001 faces' metadata through the ORM
still takes about a CPU minute, so the module is `slow`."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, insert, select

from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

pytestmark = pytest.mark.slow
N = 70_001


def _big_watch_list(url: str) -> int:
    vector = (np.ones(4, np.float32) / 2).tobytes()
    with UnitOfWork(url) as uow:
        watch_list = uow.watch_lists.add(orm.WatchList(name="everyone"))
        first = int(uow.session.scalar(select(func.coalesce(func.max(orm.Dossier.id), 0)))) + 1
        ids = range(first, first + N)
        now = orm.utcnow()
        uow.session.execute(insert(orm.Dossier), [
            {"id": i, "name": f"p{i}", "comment": "", "active": True, "created_at": now, "updated_at": now}
            for i in ids])
        uow.session.execute(insert(orm.dossier_watch_lists), [
            {"dossier_id": i, "watch_list_id": watch_list.id} for i in ids])
        uow.session.execute(insert(orm.DossierFace), [
            {"id": i, "dossier_id": i, "created_at": now, "updated_at": now, "source_key": "", "crop_key": "",
             "bbox": [], "landmarks": [], "detection_score": 0.0, "quality": 0.0, "attributes": {}} for i in ids])
        uow.session.execute(insert(orm.FaceVector), [
            {"gallery": "dossiers", "item_id": str(i), "model": "m", "dim": 4, "vector": vector,
             "meta": {"dossier_id": i, "watch_list_ids": [watch_list.id], "active": True}, "created_at": now}
            for i in ids])
        uow.commit()
        return watch_list.id


def _vectors_on(url: str, watch_list_id: int) -> int:
    with UnitOfWork(url) as uow:
        metas = uow.session.scalars(select(orm.FaceVector.meta))
        return sum(1 for meta in metas if watch_list_id in meta["watch_list_ids"])


def test_deactivating_and_deleting_a_watch_list_of_70k_dossiers(api: ApiClient) -> None:
    url = str(api.client.app.state.config.database_url)
    list_id = _big_watch_list(url)
    answer = api.patch(f"/v1/watch-lists/{list_id}", json={"active": False})
    assert answer.status_code == 200, answer.text
    assert _vectors_on(url, list_id) == 0  # every face lost the inactive list from its metadata
    assert api.delete(f"/v1/watch-lists/{list_id}").status_code == 204
    assert _vectors_on(url, list_id) == 0


def test_removing_70k_vectors_at_once(api: ApiClient) -> None:
    """What deleting a big user gallery asks of the vector store."""
    url = str(api.client.app.state.config.database_url)
    vector = (np.ones(4, np.float32) / 2).tobytes()
    ids = [str(i) for i in range(N)]
    with UnitOfWork(url) as uow:
        uow.session.execute(insert(orm.FaceVector), [
            {"gallery": "big", "item_id": i, "model": "m", "dim": 4, "vector": vector, "meta": {},
             "created_at": orm.utcnow()} for i in ids])
        uow.commit()
    with UnitOfWork(url) as uow:
        assert uow.vectors.remove("big", ids) == N
        uow.commit()
    with UnitOfWork(url) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.FaceVector)) == 0
        assert uow.session.scalar(select(func.count()).select_from(orm.GalleryChange).where(
            orm.GalleryChange.op == "remove")) == N
