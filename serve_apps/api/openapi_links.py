"""OpenAPI links (OpenAPI 3.1 §4.8.20) from each create operation to the operations on what it created.

A client (or a stateful fuzzer such as schemathesis) reads them to chain calls with real ids: create a
camera, then read, patch, restart and delete *that* camera instead of guessing ids. They are derived here,
in one place, from the routes themselves, so a route added later is linked without anyone remembering to:

- a create operation is a POST on a collection path P answering 201 (`POST /v1/cameras`,
  `POST /v1/dossiers/{dossier_id}/faces`);
- its targets are the operations on P/{x} and below (`GET /v1/cameras/{camera_id}`,
  `POST /v1/cameras/{camera_id}/restart`); `x` comes from the created object's field named `x` or,
  failing that, its `id`; the path parameters P already had come from the create request's path;
- a target that needs another path parameter (`PATCH /v1/vms/{vms_id}/cameras/{camera_id}`) is not
  linked: nothing in the create answer says its value.

`FIELDS` names the answers that do not carry the new object's `id` at the top, `EXTRA` the creates whose
object is another collection's item (promoting a person makes a dossier).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

# create operation id → JSON pointer (in the 201 body) of the created object's id, where not `/id`
# or a field named like the target's path parameter.
FIELDS: dict[str, str] = {
    "post_still_event_v1_events_post": "/events/0/id",  # {"events": [...], "dropped": n}: the first event
}
# create operation id → (collection whose items it makes, JSON pointer of the item's id in the 201 body)
EXTRA: dict[str, tuple[str, str]] = {
    "promote_person_v1_persons__person_id__promote_post": ("/v1/dossiers", "/dossier_id"),
}
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_PARAM = re.compile(r"\{([^}]+)\}")


def _response_fields(schema: dict[str, Any], response: dict[str, Any]) -> set[str]:
    """The top-level property names of a JSON response body (following one `$ref`)."""
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = body.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        body = schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {})
    return set(body.get("properties", {}))


def _item_targets(schema: dict[str, Any], collection: str) -> list[tuple[str, str, str, str]]:
    """(path, method, operation id, new parameter) of every operation on `collection`/{x} and below."""
    prefix = re.compile(re.escape(collection) + r"/\{([^}/]+)\}(/.*)?$")
    targets = []
    for path, item in schema.get("paths", {}).items():
        match = prefix.match(path)
        if match is None:
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation and operation.get("operationId"):
                targets.append((path, method, operation["operationId"], match.group(1)))
    return targets


def _links_to(schema: dict[str, Any], collection: str, known: set[str], id_of: Any) -> dict[str, Any]:
    """The links to the items of `collection`; `known` are the path parameters taken from the request."""
    links: dict[str, Any] = {}
    for path, _method, operation_id, new in _item_targets(schema, collection):
        needed = set(_PARAM.findall(path))
        if not needed <= known | {new}:
            continue  # another parameter nothing in the create answer names
        parameters = {f"path.{name}": f"$request.path.{name}" for name in sorted(needed - {new})}
        parameters[f"path.{new}"] = f"$response.body#{id_of(new)}"
        links[operation_id] = {"operationId": operation_id, "parameters": parameters}
    return links


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Adds `links` to the 201 answer of every create operation of `schema` (in place); returns it."""
    for path, item in schema.get("paths", {}).items():
        operation = item.get("post")
        if not operation or "201" not in operation.get("responses", {}):
            continue
        created = operation["responses"]["201"]
        operation_id = operation.get("operationId", "")
        fields = _response_fields(schema, created)
        known = set(_PARAM.findall(path))

        def id_of(new: str, operation_id: str = operation_id, fields: set[str] = fields) -> str:
            if operation_id in FIELDS:
                return FIELDS[operation_id]
            return f"/{new}" if new in fields else "/id"

        links = {} if path.endswith("}") else _links_to(schema, path, known, id_of)
        if operation_id in EXTRA:
            collection, pointer = EXTRA[operation_id]
            links.update(_links_to(schema, collection, set(), lambda _new, pointer=pointer: pointer))
        if links:
            created["links"] = {**created.get("links", {}), **links}
    return schema


def install_openapi_links(app: FastAPI) -> None:
    """Makes `app.openapi()` (and so /openapi.json) carry the links; built once, as FastAPI caches it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign] - FastAPI's documented way to customise the schema
