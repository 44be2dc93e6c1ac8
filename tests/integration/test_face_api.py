"""Face endpoints on real models, a real extractor deployment, real gallery actors, real photos.

detect / verify / enrol / bulk enrol / search / the low-level gallery API, and the identification
proof on ../shared/data: every knn_examples test photo (both faces in the two-person ones) is
identified as the person in its name against a gallery built from knn_examples/train.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from ray import serve
from sqlalchemy import func, select

from actors.galleries import Galleries
from facewatch.settings import load_config
from models.embedders import embedder_spec
from serve_apps.api.app import create_app
from serve_apps.api.services import Services
from serve_apps.extractor import EXTRACTOR_APP, build_extractor_application
from storage import orm
from storage.db import migrate
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, role_tokens
from tests.helpers import local_ray

EMBEDDER = "dlib_resnet_v1"


@pytest.fixture(scope="module")
def face_api(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path):
    tmp = tmp_path_factory.mktemp("faces")
    url = f"sqlite:///{tmp / 'fw.db'}"
    migrate(url)
    config = load_config({"FACEWATCH_HOME": str(tmp / "home"), "FACEWATCH_DATABASE_URL": url})
    with local_ray(4, "test-faces"):
        serve.run(build_extractor_application(config, EMBEDDER), name=EXTRACTOR_APP, route_prefix=None)
        spec = embedder_spec(EMBEDDER)
        galleries = Galleries(db_url=url, snapshot_dir=str(tmp / "snap"), model=EMBEDDER, dim=spec.dim, shards=2)
        galleries.open_all()
        tokens = role_tokens(url, suffix="")
        client = TestClient(create_app(config, Services(EMBEDDER, galleries)), raise_server_exceptions=False)
        yield ApiClient(client, tokens), url
        serve.shutdown()


def photo(path: Path) -> dict:
    return {"photo": (path.name, path.read_bytes(), "image/jpeg")}


def counts(url: str) -> tuple[int, int]:
    with UnitOfWork(url) as uow:
        faces = uow.session.scalar(select(func.count()).select_from(orm.DossierFace))
        vectors = uow.session.scalar(select(func.count()).select_from(orm.FaceVector))
    return int(faces or 0), int(vectors or 0)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_detect_contract(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    body = api.post("/v1/detect", role="viewer", files=photo(faces_dir / "obama.jpg")).json()
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and 0 < face["quality"] <= 1
    assert face["gender"]["value"] == "male" and 30 < face["age"] < 75
    assert "embedding" not in face or face["embedding"] is None
    two = api.post("/v1/detect", files=photo(faces_dir / "two_people.jpg")).json()["faces"]
    assert len(two) == 2
    empty = png(np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (120, 1, 3)))
    none = api.post("/v1/detect", files={"photo": ("grad.png", empty, "image/png")})
    assert none.status_code == 200 and none.json() == {"faces": []}


def test_detect_embeddings_only_when_asked_and_allowed(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    denied = api.post("/v1/detect", role="viewer", files=photo(faces_dir / "obama.jpg"),
                      data={"with_embeddings": "true"})
    assert denied.status_code == 403 and denied.json()["code"] == "FORBIDDEN"
    face = api.post("/v1/detect", role="operator", files=photo(faces_dir / "obama.jpg"),
                    data={"with_embeddings": "true"}).json()["faces"][0]
    assert len(face["embedding"]) == 128 and face["model"] == EMBEDDER
    assert abs(np.linalg.norm(face["embedding"]) - 1) < 1e-3


def test_verify_same_and_different_people(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    files = {"photo1": ("a.jpg", (faces_dir / "obama.jpg").read_bytes()),
             "photo2": ("b.jpg", (faces_dir / "obama2.jpg").read_bytes())}
    same = api.post("/v1/verify", files=files).json()
    assert same["verified"] is True and same["threshold"] == 0.75 and same["confidence"] > 0.75
    files["photo2"] = ("c.jpg", (faces_dir / "biden.jpg").read_bytes())
    different = api.post("/v1/verify", files=files).json()
    assert different["verified"] is False and different["confidence"] < 0.75
    strict = api.post("/v1/verify", files=files, data={"threshold": "none"}).json()
    assert strict["verified"] is True and strict["threshold"] == 0.0
    bad = api.post("/v1/verify", files={"photo1": files["photo1"]})
    assert bad.status_code == 400 and bad.json()["param"] == "photo2"


def test_enrol_rejects_bad_input_and_stores_nothing(face_api, faces_dir: Path) -> None:
    api, url = face_api
    dossier = api.post("/v1/dossiers", json={"name": "rejects"}).json()
    path = f"/v1/dossiers/{dossier['id']}/faces"
    before = counts(url)
    gradient = png(np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (120, 1, 3)))
    cases = [
        ({"photo": ("x.png", gradient, "image/png")}, {}, 422, "NO_FACE"),
        (photo(faces_dir / "two_people.jpg"), {"face_select": "reject"}, 422, "TOO_MANY_FACES"),
        ({"photo": ("x.jpg", b"not an image at all", "image/jpeg")}, {}, 422, "BAD_IMAGE"),
        ({"photo": ("x.jpg", b"", "image/jpeg")}, {}, 422, "BAD_IMAGE"),
        ({"photo": ("x.jpg", (faces_dir / "obama.jpg").read_bytes()[:5000], "image/jpeg")}, {}, 422, "BAD_IMAGE"),
        (photo(faces_dir / "obama.jpg"), {"face_select": "sideways"}, 422, "BAD_PARAM"),
        (photo(faces_dir / "obama.jpg"), {"bbox": "1,2,3"}, 400, "BAD_PARAM"),
        (photo(faces_dir / "obama.jpg"), {"bbox": "[0, 0, 5, 5]"}, 422, "NO_FACE"),
    ]
    for files, data, status, code in cases:
        response = api.post(path, role="operator", files=files, data=data)
        assert response.status_code == status, (code, response.text)
        assert response.json()["code"] == code
    many = api.post(path, files=photo(faces_dir / "two_people.jpg"), data={"face_select": "reject"}).json()
    assert len(many["boxes"]) == 2
    assert api.post(path, role="viewer", files=photo(faces_dir / "obama.jpg")).status_code == 403
    assert api.post("/v1/dossiers/99999/faces", files=photo(faces_dir / "obama.jpg")).status_code == 404
    blurred = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB").resize((60, 60)))
    low = api.post(path, files={"photo": ("tiny.png", png(blurred), "image/png")})
    assert low.status_code == 422 and low.json()["code"] in ("LOW_QUALITY", "NO_FACE")
    assert counts(url) == before


def test_enrol_face_select_and_explicit_bbox(face_api, faces_dir: Path) -> None:
    api, url = face_api
    dossier = api.post("/v1/dossiers", json={"name": "pair"}).json()
    path = f"/v1/dossiers/{dossier['id']}/faces"
    both = api.post(path, files=photo(faces_dir / "two_people.jpg"), data={"face_select": "all"})
    assert both.status_code == 201 and len(both.json()["faces"]) == 2
    boxes = [f["bbox"] for f in both.json()["faces"]]
    smaller = min(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    chosen = api.post(path, files=photo(faces_dir / "two_people.jpg"), data={"bbox": str(smaller)}).json()
    assert np.allclose(chosen["bbox"], smaller, atol=1)
    listed = api.get(path, role="viewer").json()["results"]
    assert len(listed) == 3 and listed[0]["crop"].startswith("http")
    assert api.delete(f"{path}/{listed[0]['id']}", role="operator").status_code == 204
    assert len(api.get(path).json()["results"]) == 2


def _zip_of_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder))
    return buffer.getvalue()


def test_identification_proof_on_knn_examples(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    watch_list = api.post("/v1/watch-lists", json={"name": "knn"}).json()
    archive = _zip_of_folder(faces_dir / "knn_examples" / "train")
    bulk = api.post("/v1/dossiers/bulk", role="operator", files={"files": ("train.zip", archive, "application/zip")},
                    data={"watch_list_ids": str(watch_list["id"])})
    assert bulk.status_code == 200, bulk.text
    body = bulk.json()
    assert body["failed"] == 0 and body["enrolled"] == 9
    assert {r["dossier"] for r in body["results"]} == {"alex_lacamoire", "biden", "kit_harington", "obama",
                                                        "rose_leslie"}
    expected = {"alex_lacamoire1.jpg": {"alex_lacamoire"}, "johnsnow_test1.jpg": {"kit_harington"},
                "kit_with_rose.jpg": {"kit_harington", "rose_leslie"}, "obama1.jpg": {"obama"},
                "obama_and_biden.jpg": {"obama", "biden"}}
    for name, people in expected.items():
        faces = api.post("/v1/detect", files=photo(faces_dir / "knn_examples" / "test" / name),
                         data={"with_embeddings": "true"}).json()["faces"]
        found = set()
        for face in sorted(faces, key=lambda f: -(f["bbox"][2] - f["bbox"][0]))[:len(people)]:
            hits = api.post("/v1/galleries/dossiers/search", json={
                "vector": face["embedding"], "limit": 1, "threshold": "medium",
                "filters": {"watch_list_ids": [watch_list["id"]], "active": True}}).json()["results"]
            assert hits, f"no match for a face in {name}"
            found.add(_dossier_of_face(api, int(hits[0]["id"])))
        assert found == people, name
        if len(people) == 1:  # search by photo (its biggest face) finds the person first
            results = api.post("/v1/search", files=photo(faces_dir / "knn_examples" / "test" / name),
                               data={"target": "dossiers", "watch_list_id": str(watch_list["id"])}).json()
            assert "results" in results, results
            assert results["results"][0]["dossier"]["name"] in people


def _dossier_of_face(api: ApiClient, face_id: int) -> str:
    for dossier in api.get("/v1/dossiers", params={"limit": 1000}).json()["results"]:
        faces = api.get(f"/v1/dossiers/{dossier['id']}/faces").json()["results"]
        if any(f["id"] == face_id for f in faces):
            return dossier["name"]
    raise AssertionError(f"face {face_id} belongs to no dossier")


def test_search_follows_the_db_at_once(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    dossier = api.post("/v1/dossiers", json={"name": "Joe"}).json()
    face = api.post(f"/v1/dossiers/{dossier['id']}/faces", files=photo(faces_dir / "biden.jpg")).json()
    query = {"files": photo(faces_dir / "knn_examples" / "train" / "biden" / "biden2.jpg"),
             "data": {"target": "dossiers", "threshold": "medium"}}
    first = api.post("/v1/search", **query).json()["results"]
    assert any(r["face_id"] == face["id"] for r in first)
    assert api.delete(f"/v1/dossiers/{dossier['id']}/faces/{face['id']}").status_code == 204
    after = api.post("/v1/search", **query).json()["results"]
    assert all(r["face_id"] != face["id"] for r in after)


def test_low_level_gallery_api(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    assert api.post("/v1/galleries", role="operator", json={"name": "visitors"}).status_code == 201
    assert api.post("/v1/galleries", json={"name": "visitors"}).status_code == 409
    added = api.post("/v1/galleries/visitors/faces", files=photo(faces_dir / "obama.jpg"), data={"id": "o1"})
    assert added.status_code == 201 and added.json()["id"] == "o1"
    vector = np.random.default_rng(1).standard_normal(128).tolist()
    assert api.post("/v1/galleries/visitors/faces", json={"id": "r1", "vector": vector}).status_code == 201
    assert api.post("/v1/galleries/visitors/faces", json={"id": "bad", "vector": [1, 2]}).status_code == 400
    hits = api.post("/v1/galleries/visitors/search", files=photo(faces_dir / "obama2.jpg"),
                    data={"limit": "2"}).json()["results"]
    assert hits[0]["id"] == "o1" and hits[0]["confidence"] > 0.75
    listed = {g["name"]: g for g in api.get("/v1/galleries", role="viewer").json()["results"]}
    assert listed["visitors"]["count"] == 2 and listed["dossiers"]["builtin"]
    assert api.delete("/v1/galleries/visitors/faces/o1").status_code == 204
    assert api.post("/v1/galleries/visitors/search", json={"vector": vector, "limit": 5}).json()["results"][0][
        "id"] == "r1"
    assert api.delete("/v1/galleries/dossiers").status_code == 409
    assert api.delete("/v1/galleries/visitors").status_code == 204
    assert api.post("/v1/galleries/visitors/search", json={"vector": vector}).status_code == 404


def test_dossier_and_watch_list_edits_change_search_results_at_once(face_api, faces_dir: Path) -> None:
    api, _ = face_api
    watch_list = api.post("/v1/watch-lists", json={"name": "follow-db"}).json()
    dossier = api.post("/v1/dossiers", json={"name": "Joseph", "watch_list_ids": [watch_list["id"]]}).json()
    face = api.post(f"/v1/dossiers/{dossier['id']}/faces", files=photo(faces_dir / "biden.jpg")).json()
    probe = (faces_dir / "knn_examples" / "train" / "biden" / "biden2.jpg").read_bytes()

    def found(**fields: str) -> bool:
        data = {"target": "dossiers", "watch_list_id": str(watch_list["id"]), **fields}
        body = api.post("/v1/search", files={"photo": ("q.jpg", probe)}, data=data).json()
        return any(r["face_id"] == face["id"] for r in body["results"])

    assert found()
    api.patch(f"/v1/dossiers/{dossier['id']}", json={"active": False})
    assert not found()
    api.patch(f"/v1/dossiers/{dossier['id']}", json={"active": True})
    assert found()
    api.patch(f"/v1/watch-lists/{watch_list['id']}", json={"active": False})
    assert not found()
    api.patch(f"/v1/watch-lists/{watch_list['id']}", json={"active": True})
    assert found()
    api.patch(f"/v1/dossiers/{dossier['id']}", json={"watch_list_ids": []})
    assert not found()
    api.patch(f"/v1/dossiers/{dossier['id']}", json={"watch_list_ids": [watch_list["id"]]})
    assert found()
    assert api.delete(f"/v1/dossiers/{dossier['id']}").status_code == 204
    body = api.post("/v1/search", files={"photo": ("q.jpg", probe)},
                    data={"target": "dossiers", "include_inactive": "true"}).json()
    assert all(r["face_id"] != face["id"] for r in body["results"])
