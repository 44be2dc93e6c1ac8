"""On real Ray, a real extractor deployment and real gallery actors (issue 11, items 3, 11, 12, 13):

- bad input is not an outage: a 1×1 PNG to /v1/detect, /v1/galleries/{name}/faces and …/search is a
  422 BAD_IMAGE, and a typed error raised inside an extractor replica crosses Ray with its own code;
- a gallery face added with an id already there is a 409, not a silent overwrite;
- a user gallery created under another model (before `migrate-model`) gets its new faces stored and
  found under the active model;
- /health says ok only while the extractor pool answers and every gallery shard has a live replica,
  and answers 503 naming what is down.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image
from ray import serve
from sqlalchemy import select

from facewatch.errors import BadImage
from serve_apps.extractor import EXTRACTOR_APP
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.helpers import kill_for_good
from tests.integration.test_api import assert_error
from tests.integration.test_face_api import EMBEDDER, face_api  # noqa: F401 - the shared fixture


@pytest.fixture(scope="module")
def service(face_api):  # noqa: F811 - the imported fixture
    """The face API of tests/integration/test_face_api.py (Ray, extractor deployment, galleries), with its services."""
    api, url = face_api
    return api, url, api.client.app.state.services


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 200, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_one_pixel_photo_is_bad_input_everywhere(service) -> None:
    api, _, _ = service
    assert api.post("/v1/galleries", json={"name": "tiny"}).status_code == 201
    photo = {"photo": ("dot.png", _png(1, 1), "image/png")}
    for path in ("/v1/detect", "/v1/galleries/tiny/faces", "/v1/galleries/tiny/search"):
        assert_error(api.post(path, files=photo), 422, "BAD_IMAGE", param="photo")


def test_a_typed_error_in_a_replica_crosses_ray_with_its_code(service) -> None:
    _, _, services = service
    with pytest.raises(BadImage):  # the detector refuses 5×5 frames inside the replica
        asyncio.run(services.analyze(np.zeros((5, 5, 3), np.uint8)))


def test_gallery_face_ids_are_not_overwritten_and_use_the_active_model(service) -> None:
    api, url, services = service
    with UnitOfWork(url) as uow:  # a gallery made before `migrate-model` switched the embedder
        uow.session.add(orm.Gallery(name="old", model="facenet_vggface2", dim=512))
        uow.commit()
    dim = services.spec.dim
    vector = np.random.default_rng(3).standard_normal(dim)
    vector = (vector / np.linalg.norm(vector)).tolist()
    added = api.post("/v1/galleries/old/faces", json={"id": "p1", "vector": vector})
    assert added.status_code == 201, added.text
    assert_error(api.post("/v1/galleries/old/faces", json={"id": "p1", "vector": vector}), 409, "CONFLICT", param="id")
    with UnitOfWork(url) as uow:
        models = list(uow.session.scalars(select(orm.FaceVector.model).where(orm.FaceVector.gallery == "old")))
    assert models == [EMBEDDER]
    hits = api.post("/v1/galleries/old/search", json={"vector": vector, "limit": 1}).json()["results"]
    assert [h["id"] for h in hits] == ["p1"]


def test_health_names_what_is_down(service) -> None:
    api, _, services = service
    healthy = api.client.get("/health")
    assert healthy.status_code == 200, healthy.text
    assert {"extractor", "galleries"} <= set(healthy.json()["components"]) and healthy.json()["down"] == []

    router = services.galleries.router("dossiers")
    kill_for_good(router.handles[1][0])  # shard 1 of the dossiers gallery loses its only replica
    answer = api.client.get("/health")
    assert answer.status_code == 503 and answer.json()["down"] == ["galleries"], answer.text
    assert "dossiers (shards [1])" in answer.json()["components"]["galleries"]["error"]

    serve.delete(EXTRACTOR_APP)
    services._handle = None
    answer = api.client.get("/health")
    assert answer.status_code == 503 and answer.json()["down"] == ["extractor", "galleries"], answer.text
