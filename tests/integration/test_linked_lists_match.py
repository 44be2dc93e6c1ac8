"""A linked list's copies match on the slave (slow: the slave runs its real models on Ray).

The master holds Joe Biden's face with a vector of the slave's model (copied as it is) and Barack Obama's face
without one (the slave re-embeds it from the master's photo at the master's box); afterwards a search by
another photo of Obama on the slave finds the copy, and the linked list refuses a new photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ray import serve

from actors.galleries import Galleries
from models.embedders import embedder_spec
from serve_apps.api.app import create_app
from serve_apps.api.services import Services
from serve_apps.extractor import EXTRACTOR_APP, build_extractor_application
from storage.db import migrate
from storage.dossier_vectors import DOSSIERS_GALLERY
from storage.tokens import ensure_admin
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, make_config
from tests.helpers import local_ray
from tests.integration.test_linked_lists import MODEL, Master

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def slave(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("slave")
    url = f"sqlite:///{tmp / 'fw.db'}"
    migrate(url)
    config = make_config(tmp, url)
    with local_ray(4, "test-linked"):
        serve.run(build_extractor_application(config, MODEL), name=EXTRACTOR_APP, route_prefix=None)
        galleries = Galleries(db_url=url, snapshot_dir=str(tmp / "snap"), model=MODEL, dim=embedder_spec(MODEL).dim,
                              shards=2)
        galleries.open_all()
        with UnitOfWork(url) as uow:
            tokens = {"admin": ensure_admin(uow)}
            uow.commit()
        app = create_app(config, Services(MODEL, galleries))
        yield ApiClient(TestClient(app, raise_server_exceptions=False), tokens)
        serve.shutdown()


def photo(path: Path) -> dict:
    return {"photo": (path.name, path.read_bytes(), "image/jpeg")}


def test_copied_and_reembedded_faces_match_on_the_slave(slave: ApiClient, tmp_path: Path, faces_dir: Path) -> None:
    (tmp_path / "master").mkdir()
    master_db = f"sqlite:///{tmp_path / 'master' / 'fw.db'}"
    migrate(master_db)
    master = Master(tmp_path / "master", master_db)
    # A real vector of the slave's model for Biden: enrolled once on the slave (scratch list), read back.
    scratch = slave.post("/v1/watch-lists", json={"name": "scratch"}).json()["id"]
    probe = slave.post("/v1/dossiers", json={"name": "scratch biden", "watch_list_ids": [scratch]}).json()
    face = slave.post(f"/v1/dossiers/{probe['id']}/faces", files=photo(faces_dir / "biden.jpg")).json()
    with UnitOfWork(slave.client.app.state.config.database_url) as uow:
        biden_vector = uow.vectors.find(DOSSIERS_GALLERY, str(face["id"]), MODEL).vector
    slave.delete(f"/v1/dossiers/{probe['id']}")

    obama_box = slave.post("/v1/detect", files=photo(faces_dir / "obama.jpg")).json()["faces"][0]["bbox"]

    with master.server:
        m_list = master.api.post("/v1/watch-lists", json={"name": "wanted"}).json()["id"]
        obama = master.api.post("/v1/dossiers", json={"name": "Barack Obama", "watch_list_ids": [m_list]}).json()
        biden = master.api.post("/v1/dossiers", json={"name": "Joe Biden", "watch_list_ids": [m_list]}).json()
        master.add_face(obama["id"], (faces_dir / "obama.jpg").read_bytes(), seed=1, with_vector=False, bbox=obama_box)
        master.add_face(biden["id"], (faces_dir / "biden.jpg").read_bytes(), seed=2, bbox=face["bbox"],
                        vector=np.frombuffer(biden_vector, dtype=np.float32))

        local = slave.post("/v1/watch-lists", json={"name": "wanted (HQ)"}).json()["id"]
        linked = slave.post(f"/v1/watch-lists/{local}/link", json={
            "master_url": master.server.url, "master_token": master.api.tokens["operator"],
            "master_watch_list_id": m_list})
        assert linked.status_code == 201, linked.text
        report = slave.post(f"/v1/watch-lists/{local}/link/sync").json()
        assert report["last_sync_status"] == "ok", report
        assert report["last_sync_report"]["faces_copied"] == 1
        assert report["last_sync_report"]["faces_reembedded"] == 1

    found = slave.post("/v1/search", files=photo(faces_dir / "obama2.jpg"),
                       data={"target": "dossiers", "watch_list_id": str(local)}).json()
    assert found["results"] and found["results"][0]["dossier"]["name"] == "Barack Obama", found
    found = slave.post("/v1/search", files=photo(faces_dir / "biden.jpg"), data={"target": "dossiers"}).json()
    assert found["results"][0]["dossier"]["name"] == "Joe Biden", found
    copy = slave.get(f"/v1/dossiers?watch_list_id={local}&name_contains=Obama").json()["results"][0]
    refused = slave.post(f"/v1/dossiers/{copy['id']}/faces", files=photo(faces_dir / "obama2.jpg"))
    assert refused.status_code == 409 and "linked to a master installation" in refused.json()["reason"]
