"""Linked installations: two facewatch installations (separate databases and media roots) over real HTTP.

The master serves its API on a loopback port; the slave links one of its watch lists to the master's list and
syncs. These tests run without Ray: the master's faces carry vectors of the slave's model, so the slave copies
them as they are (test_linked_lists_match.py, slow, shows the copies matching on a slave with its models up, and
the re-embedding of a face the master holds no such vector for).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from serve_apps.api.app import create_app
from serve_apps.api.linked_lists import run_due_links
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, build_api, make_config
from tests.vms_parties import ThreadedServer

MODEL = "dlib_resnet_v1"


class Master:
    """The master installation: its own database and media root, its API on real HTTP."""

    def __init__(self, tmp: Path, db_url: str) -> None:
        self.api = build_api(tmp, db_url)
        self.db_url = db_url
        self.config = make_config(tmp, db_url)
        self.media = LocalMediaStore(self.config.media_root)
        self.server = ThreadedServer(create_app(self.config))

    def add_face(self, dossier_id: int, photo: bytes, seed: int, with_vector: bool = True,
                 bbox: list[float] | None = None, vector: np.ndarray | None = None) -> int:
        """A dossier photo as enrolment stores it: photo, crop, box, and (here) a vector of the slave's model
        (random unless given)."""
        with UnitOfWork(self.db_url) as uow:
            dossier = uow.dossiers.get(dossier_id)
            row = uow.dossier_faces.add(orm.DossierFace(
                dossier_id=dossier_id, source_key=self.media.put(photo, "jpg"),
                crop_key=self.media.put(photo[:2000], "png"), bbox=bbox or [10.0, 20.0, 110.0, 140.0], quality=0.8,
                detection_score=0.99, landmarks=[[1.0, 2.0]] * 5))
            if with_vector:
                if vector is None:
                    vector = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
                store_dossier_face_vector(uow, row, dossier, MODEL, vector / np.linalg.norm(vector))
            uow.commit()
            return row.id


@pytest.fixture
def sites(tmp_path: Path, faces_dir: Path, db_url: str):
    (tmp_path / "master").mkdir()
    (tmp_path / "slave").mkdir()
    master_db = f"sqlite:///{tmp_path / 'master' / 'fw.db'}"
    from storage.db import migrate

    migrate(master_db)
    master = Master(tmp_path / "master", master_db)
    slave = build_api(tmp_path / "slave", db_url)
    with master.server:
        yield master, slave


def vectors_of(db_url: str, face_ids: list[int]) -> list[bytes]:
    with UnitOfWork(db_url) as uow:
        return [uow.vectors.find(DOSSIERS_GALLERY, str(i), MODEL).vector for i in face_ids]


def link(slave: ApiClient, master: Master, master_list: int, local_list: int) -> dict:
    token = master.api.tokens["operator"]
    answer = slave.post(f"/v1/watch-lists/{local_list}/link", json={
        "master_url": master.server.url, "master_token": token, "master_watch_list_id": master_list})
    assert answer.status_code == 201, answer.text
    return answer.json()


def sync(slave: ApiClient, local_list: int) -> dict:
    answer = slave.post(f"/v1/watch-lists/{local_list}/link/sync")
    assert answer.status_code == 200, answer.text
    return answer.json()


def slave_dossiers(slave: ApiClient, local_list: int) -> dict[str, dict]:
    return {d["name"]: d for d in slave.get(f"/v1/dossiers?watch_list_id={local_list}&limit=100").json()["results"]}


@pytest.mark.pg_capable
def test_a_master_list_reaches_the_slave_and_edits_arrive_with_the_next_sync(sites, faces_dir: Path) -> None:
    master, slave = sites
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    m_other = master.api.post("/v1/watch-lists", json={"name": "not shared"}).json()["id"]
    obama = master.api.post("/v1/dossiers", json={"name": "Barack Obama", "watch_list_ids": [m_list],
                                                  "external_id": "p-1"}).json()
    biden = master.api.post("/v1/dossiers", json={"name": "Joe Biden", "watch_list_ids": [m_list]}).json()
    master.api.post("/v1/dossiers", json={"name": "Someone else", "watch_list_ids": [m_other]})
    obama_face = master.add_face(obama["id"], (faces_dir / "obama.jpg").read_bytes(), seed=1)
    biden_face = master.add_face(biden["id"], (faces_dir / "biden.jpg").read_bytes(), seed=2)

    local = slave.post("/v1/watch-lists", json={"name": "wanted (from HQ)"}).json()["id"]
    created = link(slave, master, m_list, local)
    assert created["sync_time"] == "03:00" and created["last_sync_status"] == "never"
    report = sync(slave, local)
    assert report["last_sync_status"] == "ok", report
    assert report["last_sync_report"]["faces_copied"] == 2 and len(report["last_sync_report"]["created"]) == 2
    assert report["next_sync_at"] > datetime.now(UTC).isoformat()  # the next night's run is scheduled
    copies = slave_dossiers(slave, local)
    assert sorted(copies) == ["Barack Obama", "Joe Biden"]
    assert copies["Barack Obama"]["external_id"] == "p-1" and copies["Barack Obama"]["face_count"] == 1
    slave_face = slave.get(f"/v1/dossiers/{copies['Barack Obama']['id']}/faces").json()["results"][0]
    assert vectors_of(slave.client.app.state.config.database_url, [slave_face["id"]]) == \
        vectors_of(master.db_url, [obama_face])
    photo = slave.client.get(slave_face["photo"].replace("http://testserver", ""), headers=slave.as_("viewer"))
    assert photo.content == (faces_dir / "obama.jpg").read_bytes()

    # A second sync with nothing changed changes nothing.
    again = sync(slave, local)["last_sync_report"]
    assert (again["created"], again["updated"], again["deleted"], again["faces_copied"]) == ([], [], [], 0)

    # Edits on the master: a rename, a new photo, a removed photo, a dossier leaving the list.
    master.api.patch(f"/v1/dossiers/{obama['id']}", json={"name": "Barack H. Obama"})
    master.add_face(obama["id"], (faces_dir / "obama2.jpg").read_bytes(), seed=3)
    assert master.api.delete(f"/v1/dossiers/{biden['id']}/faces/{biden_face}").status_code == 204
    master.api.patch(f"/v1/dossiers/{biden['id']}", json={"watch_list_ids": [m_other]})
    report = sync(slave, local)["last_sync_report"]
    assert report["faces_copied"] == 1 and len(report["updated"]) == 1 and len(report["deleted"]) == 1
    copies = slave_dossiers(slave, local)
    assert sorted(copies) == ["Barack H. Obama"] and copies["Barack H. Obama"]["face_count"] == 2


def test_a_linked_list_is_read_only_on_the_slave_until_unlinked(sites, faces_dir: Path) -> None:
    master, slave = sites
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    dossier = master.api.post("/v1/dossiers", json={"name": "Barack Obama", "watch_list_ids": [m_list]}).json()
    master.add_face(dossier["id"], (faces_dir / "obama.jpg").read_bytes(), seed=1)
    local = slave.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    link(slave, master, m_list, local)
    sync(slave, local)
    copy = slave_dossiers(slave, local)["Barack Obama"]
    refused = [  # (adding a photo is refused too: test_linked_lists_match.py, where models run)
        slave.post("/v1/dossiers", json={"name": "new", "watch_list_ids": [local]}),
        slave.patch(f"/v1/dossiers/{copy['id']}", json={"name": "renamed"}),
        slave.delete(f"/v1/dossiers/{copy['id']}"),
        slave.patch(f"/v1/watch-lists/{local}", json={"color": "#00ff00"}),
        slave.delete(f"/v1/watch-lists/{local}"),
    ]
    for answer in refused:
        assert answer.status_code == 409, answer.text
        assert "linked to a master installation" in answer.json()["reason"]
    assert slave.get(f"/v1/dossiers/{copy['id']}").json()["name"] == "Barack Obama"

    assert slave.delete(f"/v1/watch-lists/{local}/link").status_code == 204
    assert slave.get(f"/v1/watch-lists/{local}/link").status_code == 404
    assert slave.patch(f"/v1/dossiers/{copy['id']}", json={"name": "renamed"}).json()["name"] == "renamed"
    # Unlinked: the master's edits no longer arrive.
    master.api.patch(f"/v1/dossiers/{dossier['id']}", json={"name": "changed on the master"})
    assert slave.post(f"/v1/watch-lists/{local}/link/sync").status_code == 404
    assert slave.get(f"/v1/dossiers/{copy['id']}").json()["name"] == "renamed"


def test_linking_checks_the_master_and_the_list(sites) -> None:
    master, slave = sites
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    local = slave.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    body = {"master_url": master.server.url, "master_token": master.api.tokens["operator"],
            "master_watch_list_id": m_list}
    wrong_token = slave.post(f"/v1/watch-lists/{local}/link", json={**body, "master_token": "not-a-token-1"})
    assert wrong_token.status_code == 400 and "401" in wrong_token.json()["reason"]
    no_list = slave.post(f"/v1/watch-lists/{local}/link", json={**body, "master_watch_list_id": 999})
    assert no_list.status_code == 400 and "404" in no_list.json()["reason"]
    away = slave.post(f"/v1/watch-lists/{local}/link", json={**body, "master_url": "http://127.0.0.1:9"})
    assert away.status_code == 400 and "unreachable" in away.json()["reason"]
    assert slave.post(f"/v1/watch-lists/{local}/link", json={**body, "sync_time": "25:00"}).status_code == 422
    assert slave.post("/v1/watch-lists/-1/link", json=body).status_code == 400
    busy = slave.post("/v1/watch-lists", json={"name": "has dossiers"}).json()["id"]
    slave.post("/v1/dossiers", json={"name": "local person", "watch_list_ids": [busy]})
    assert slave.post(f"/v1/watch-lists/{busy}/link", json=body).status_code == 409
    assert slave.post(f"/v1/watch-lists/{local}/link", json=body).status_code == 201
    assert slave.post(f"/v1/watch-lists/{local}/link", json=body).status_code == 409
    assert slave.post(f"/v1/watch-lists/{local}/link", json=body, role="operator").status_code == 403


def test_a_sync_that_cannot_finish_reports_it_and_the_next_one_resumes(sites, faces_dir: Path) -> None:
    master, slave = sites
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    good = master.api.post("/v1/dossiers", json={"name": "Joe Biden", "watch_list_ids": [m_list]}).json()
    master.add_face(good["id"], (faces_dir / "biden.jpg").read_bytes(), seed=2)
    stuck = master.api.post("/v1/dossiers", json={"name": "Barack Obama", "watch_list_ids": [m_list]}).json()
    no_vector = master.add_face(stuck["id"], (faces_dir / "obama.jpg").read_bytes(), seed=1, with_vector=False)
    local = slave.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    link(slave, master, m_list, local)
    first = sync(slave, local)
    # Without models running here, a face the master holds no vector of this model for cannot be re-embedded.
    assert first["last_sync_status"] == "partial"
    [error] = first["last_sync_report"]["errors"]
    assert error["master_dossier_id"] == stuck["id"] and "cannot be re-embedded" in error["reason"]
    assert slave_dossiers(slave, local)["Joe Biden"]["face_count"] == 1

    with UnitOfWork(master.db_url) as uow:  # the master gains the vector (say, after its own migration)
        store_dossier_face_vector(uow, uow.dossier_faces.get(no_vector), uow.dossiers.get(stuck["id"]), MODEL,
                                  np.ones(128, dtype=np.float32) / np.sqrt(128))
        uow.commit()
    second = sync(slave, local)
    assert second["last_sync_status"] == "ok"
    assert second["last_sync_report"]["faces_copied"] == 1  # only the missing face; Biden is not copied again
    copies = slave_dossiers(slave, local)
    assert copies["Barack Obama"]["face_count"] == 1 and copies["Joe Biden"]["face_count"] == 1

    master.server.server.should_exit = True  # the master goes away
    master.server.thread.join(10)
    failed = sync(slave, local)
    assert failed["last_sync_status"] == "failed" and "unreachable" in failed["last_sync_error"]
    assert len(slave_dossiers(slave, local)) == 2  # nothing is removed when the master cannot be read


def test_the_scheduled_sync_runs_at_link_time_then_daily_at_the_sync_time(sites, faces_dir: Path) -> None:
    master, slave = sites
    db = slave.client.app.state.config.database_url
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    dossier = master.api.post("/v1/dossiers", json={"name": "Barack Obama", "watch_list_ids": [m_list]}).json()
    master.add_face(dossier["id"], (faces_dir / "obama.jpg").read_bytes(), seed=1)
    nightly = slave.post("/v1/watch-lists", json={"name": "nightly"}).json()["id"]
    early = slave.post("/v1/watch-lists", json={"name": "early"}).json()["id"]
    link(slave, master, m_list, nightly)  # the default time, 03:00
    answer = slave.post(f"/v1/watch-lists/{early}/link", json={
        "master_url": master.server.url, "master_token": master.api.tokens["operator"],
        "master_watch_list_id": m_list, "sync_time": "04:30"})
    assert answer.json()["sync_time"] == "04:30"

    def run() -> list[int]:
        return asyncio.run(run_due_links(db, slave.client.app.state.media, None, MODEL, 10_000_000))

    started = datetime.now(UTC)
    assert len(run()) == 2  # both are due at once: the first copy does not wait for the night
    for local, (hour, minute) in ((nightly, (3, 0)), (early, (4, 30))):
        state = slave.get(f"/v1/watch-lists/{local}/link").json()
        assert state["last_sync_status"] == "ok" and "Barack Obama" in slave_dossiers(slave, local)
        at = datetime.fromisoformat(state["next_sync_at"]).astimezone(UTC)
        assert (at.hour, at.minute, at.second) == (hour, minute, 0)
        assert started < at <= started + timedelta(days=1)
    assert run() == []  # nothing due until the night

    master.api.patch(f"/v1/dossiers/{dossier['id']}", json={"name": "Barack H. Obama"})
    with UnitOfWork(db) as uow:  # the night comes for one of them
        uow.links.for_watch_list(nightly).next_sync_at = datetime.now(UTC) - timedelta(seconds=1)
        uow.commit()
    [ran] = run()
    assert ran == slave.get(f"/v1/watch-lists/{nightly}/link").json()["id"]
    assert "Barack H. Obama" in slave_dossiers(slave, nightly)
    assert "Barack Obama" in slave_dossiers(slave, early)  # its night has not come


def test_a_due_link_is_claimed_by_one_replica_only(sites) -> None:
    master, slave = sites
    db = slave.client.app.state.config.database_url
    m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    local = slave.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
    link_id = link(slave, master, m_list, local)["id"]
    now = datetime.now(UTC)
    with UnitOfWork(db) as first, UnitOfWork(db) as second:
        assert first.links.claim_due(now, timedelta(minutes=30)) == [link_id]
        first.commit()
        assert second.links.claim_due(now, timedelta(minutes=30)) == []  # held by the first replica
    # A claim whose replica died runs again once its lease is over.
    with UnitOfWork(db) as uow:
        assert uow.links.claim_due(now + timedelta(minutes=31), timedelta(minutes=30)) == [link_id]
        uow.commit()
    assert slave.post(f"/v1/watch-lists/{local}/link/sync").status_code == 409  # a sync is running
