"""The schema's OpenAPI links (serve_apps/api/openapi_links.py): every create operation links to the
operations on what it created, schemathesis reads them into a state machine, and following one from a
real answer reaches the object that answer made."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis

from serve_apps.api.openapi_links import add_links
from tests.conftest import ApiClient

ITEM_METHODS = ("get", "put", "patch", "delete")


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from facewatch.settings import load_config
    from serve_apps.api.app import create_app

    config = load_config({"FACEWATCH_HOME": "/nonexistent/facewatch-links", "FACEWATCH_DATABASE_URL": "sqlite://"})
    return create_app(config).openapi()


def _creates(openapi: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, item["post"]) for path, item in openapi["paths"].items()
            if "post" in item and "201" in item["post"]["responses"] and not path.endswith("}")]


def test_every_create_links_to_the_get_patch_and_delete_of_its_item(openapi: dict[str, Any]) -> None:
    creates = _creates(openapi)
    assert len(creates) >= 14  # camera groups, cameras, watch lists, dossiers (+faces), galleries (+faces), …
    checked = 0
    for path, operation in creates:
        links = operation["responses"]["201"].get("links", {})
        item = re.compile(re.escape(path) + r"/\{[^}/]+\}$")
        for other, methods in openapi["paths"].items():
            if not item.match(other):
                continue
            for method in ITEM_METHODS:
                if method in methods:
                    target = methods[method]["operationId"]
                    assert target in links, f"POST {path} has no link to {method.upper()} {other}"
                    checked += 1
    assert checked >= 30


def test_links_name_real_operations_and_their_path_parameters(openapi: dict[str, Any]) -> None:
    by_id = {op["operationId"]: (path, op) for path, item in openapi["paths"].items() for op in item.values()}
    count = 0
    for _, operation in _creates(openapi):
        for link in operation["responses"]["201"].get("links", {}).values():
            path, _target = by_id[link["operationId"]]
            params = {f"path.{name}" for name in re.findall(r"\{([^}]+)\}", path)}
            assert set(link["parameters"]) == params, (link, path)
            count += 1
    assert count >= 40


def test_schemathesis_builds_its_state_machine_from_the_links(openapi: dict[str, Any]) -> None:
    from schemathesis.specs.openapi.stateful import collect_transitions

    schema = schemathesis.openapi.from_dict(openapi)
    operations = [result.ok() for result in schema.get_all_operations()]
    transitions = collect_transitions(operations)  # raises on a link it cannot resolve
    outgoing = transitions.operations["POST /v1/cameras"].outgoing
    assert {link.target.label for link in outgoing} >= {
        "GET /v1/cameras/{camera_id}", "PATCH /v1/cameras/{camera_id}", "DELETE /v1/cameras/{camera_id}"}
    assert schema.as_state_machine() is not None


def test_adding_links_twice_changes_nothing(openapi: dict[str, Any]) -> None:
    import copy

    again = add_links(copy.deepcopy(openapi))
    assert again == openapi


def _follow(link: dict[str, Any], body: dict[str, Any], request_path: dict[str, str]) -> dict[str, str]:
    """The path parameters a client gets by evaluating a link's expressions (the two forms used here)."""
    values: dict[str, str] = {}
    for name, expression in link["parameters"].items():
        if expression.startswith("$request.path."):
            values[name.removeprefix("path.")] = request_path[expression.removeprefix("$request.path.")]
            continue
        value: Any = body
        for part in expression.removeprefix("$response.body#/").split("/"):
            value = value[int(part)] if isinstance(value, list) else value[part]
        values[name.removeprefix("path.")] = str(value)
    return values


def test_following_the_links_reads_patches_and_deletes_what_was_created(api: ApiClient) -> None:
    openapi = api.client.app.openapi()
    by_id = {op["operationId"]: (path, method) for path, item in openapi["paths"].items()
             for method, op in item.items()}
    created = api.post("/v1/camera-groups", json={"name": "linked"})
    assert created.status_code == 201, created.text
    links = openapi["paths"]["/v1/camera-groups"]["post"]["responses"]["201"]["links"]
    answers = {}
    for method in ("get", "patch", "delete", "get"):  # the second GET: the group is gone
        (operation_id, link), = [(i, lk) for i, lk in links.items() if by_id[lk["operationId"]][1] == method]
        path = by_id[operation_id][0].format(**_follow(link, created.json(), {}))
        response = api.request(method.upper(), path, json={"comment": "via link"} if method == "patch" else None)
        answers.setdefault(method, []).append(response.status_code)
        if method == "patch":
            assert response.json()["comment"] == "via link"
    assert answers == {"get": [200, 404], "patch": [200], "delete": [204]}
