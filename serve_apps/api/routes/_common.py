"""Helpers the resource routers share: patching rows, visibility by role, list pages."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy import String, cast, true

from facewatch.errors import NotFound
from serve_apps.api.deps import Caller
from storage.meta_filters import meta_params
from storage.unit_of_work import UnitOfWork


def apply_patch(row: Any, patch: BaseModel, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Copies the fields the client sent (and only those) onto `row`; returns them."""
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for name, value in changes.items():
        if name not in skip:
            setattr(row, name, value)
    return changes


def visible(row: Any, caller: Caller) -> bool:
    """Per-object rights: an object may be hidden from a role (never from admins)."""
    return caller.role == "admin" or caller.role not in (getattr(row, "hidden_from_roles", None) or [])


def ensure_visible(row: Any, caller: Caller, label: str, id_: Any) -> Any:
    if not visible(row, caller):
        raise NotFound(f"{label} {id_} does not exist", param="id")
    return row


def not_hidden_clause(column: Any, caller: Caller) -> Any:
    """SQL filter twin of `visible`: the JSON list of hidden roles does not name the caller's role.

    Role names are fixed words, so matching the quoted name in the JSON text is exact and portable
    across SQLite and PostgreSQL.
    """
    if caller.role == "admin":
        return true()
    return ~cast(column, String).contains(f'"{caller.role}"')


def meta_query(request: Request) -> dict[str, Any]:
    """The `meta.<key>[__op]` and `external_id` query parameters of a list request (storage.meta_filters)."""
    found = meta_params(dict(request.query_params))
    external = request.query_params.get("external_id")
    return {**found, "external_id": external} if external else found


def dialect_of(uow: UnitOfWork) -> str:
    return uow.session.get_bind().dialect.name
