"""PATCH bodies (issue 11, item 2): a null for a field that cannot be null is a 422 and leaves the object
readable; a null for a nullable field (a threshold override, a dossier's external id) clears it.

Every field of every PATCH schema is tried, so a field added later without thought is caught here.
"""

from __future__ import annotations

from typing import Any

import pytest

from serve_apps.api import schemas
from tests.conftest import ApiClient
from tests.integration.test_api import CRUD, assert_error, seed

PATCHES: dict[str, type[schemas.Patch]] = {
    "camera-groups": schemas.CameraGroupPatch,
    "cameras": schemas.CameraPatch,
    "watch-lists": schemas.WatchListPatch,
    "dossiers": schemas.DossierPatch,
    "webhooks": schemas.WebhookPatch,
    "users": schemas.UserPatch,
}


@pytest.mark.pg_capable
@pytest.mark.parametrize(("resource", "make_body", "change"), CRUD, ids=[c[0] for c in CRUD])
def test_null_for_every_patch_field(api_any_db: ApiClient, resource: str, make_body: Any, change: Any) -> None:
    api = api_any_db
    created = api.post(f"/v1/{resource}", json=make_body(seed(api)))
    assert created.status_code == 201, created.text
    path = f"/v1/{resource}/{created.json()['id']}"
    model = PATCHES[resource]
    for field in model.model_fields:
        answer = api.patch(path, json={field: None})
        if field in model.NULLABLE:
            assert answer.status_code == 200, (field, answer.text)
            assert answer.json()[field] is None
        else:
            assert_error(answer, 422, "BAD_PARAM", param=field)
        assert api.get(path).status_code == 200, field
        listed = api.get(f"/v1/{resource}", params={"limit": 1000})
        assert listed.status_code == 200, (field, listed.text)


def test_null_runtime_setting_is_422(api: ApiClient) -> None:
    before = api.get("/v1/settings").json()
    for field in schemas.RuntimeSettingsPatch.model_fields:
        assert_error(api.patch("/v1/settings", json={field: None}), 422, "BAD_PARAM", param=field)
    assert api.get("/v1/settings").json() == before


def test_openapi_says_which_patch_fields_may_be_null(api: ApiClient) -> None:
    """Clients (and the schema fuzzer) learn from the schema that null is refused."""
    components = api.get("/openapi.json").json()["components"]["schemas"]
    for model in (*PATCHES.values(), schemas.RuntimeSettingsPatch, schemas.DossierFacePatch):
        properties = components[model.__name__]["properties"]
        for field, prop in properties.items():
            allows_null = any(s.get("type") == "null" for s in prop.get("anyOf", []))
            assert allows_null == (field in model.NULLABLE), (model.__name__, field, prop)


def test_patching_stream_settings_changes_only_the_keys_sent(api: ApiClient) -> None:
    """Issue 11, item 12: the stored settings are merged with the keys sent, then checked as a whole."""
    group = api.post("/v1/camera-groups", json={"name": "merge"}).json()
    created = api.post("/v1/cameras", json={"name": "door", "camera_group_id": group["id"], "stream_settings": {
        "roi": [0, 0, 640, 480], "detect_every_n": 2, "max_face_size": 500}}).json()
    path = f"/v1/cameras/{created['id']}"
    patched = api.patch(path, json={"stream_settings": {"jpeg_quality": 80}})
    assert patched.status_code == 200, patched.text
    after = patched.json()["stream_settings"]
    assert after == {**created["stream_settings"], "jpeg_quality": 80}
    assert api.get(path).json()["stream_settings"] == after
    cleared = api.patch(path, json={"stream_settings": {"roi": None}}).json()["stream_settings"]
    assert cleared["roi"] is None and cleared["detect_every_n"] == 2
    # Checked against the stored values: min_face_size may not pass the stored max_face_size (500).
    assert_error(api.patch(path, json={"stream_settings": {"min_face_size": 600}}), 422, "BAD_PARAM")
    assert api.get(path).json()["stream_settings"] == cleared
