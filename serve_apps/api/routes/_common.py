"""Helpers the resource routers share: patching rows, the not-visible-is-not-found rule, pages out."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel

from facewatch.errors import NotFound
from serve_apps.api.schemas import Page
from storage.meta_filters import meta_params
from storage.pagination import Page as RowPage
from storage.unit_of_work import UnitOfWork

T = TypeVar("T")


def apply_patch(row: Any, patch: BaseModel, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Copies the fields the client sent (and only those) onto `row`; returns them."""
    changes = patch.model_dump(exclude_unset=True, mode="json")
    for name, value in changes.items():
        if name not in skip:
            setattr(row, name, value)
    return changes


def ensure_visible(row: T, seen: bool, label: str, id_: Any) -> T:
    """`row`, or NOT_FOUND when the caller's visibility scope does not see it (hidden looks absent)."""
    if not seen:
        raise NotFound(f"{label} {id_} does not exist", param="id")
    return row


def meta_query(request: Request) -> dict[str, Any]:
    """The `meta.<key>[__op]` and `external_id` query parameters of a list request (storage.meta_filters)."""
    found = meta_params(dict(request.query_params))
    external = request.query_params.get("external_id")
    return {**found, "external_id": external} if external else found


def dialect_of(uow: UnitOfWork) -> str:
    return uow.session.get_bind().dialect.name


M = TypeVar("M", bound=BaseModel)


def page_out(page: RowPage[Any], out: type[M]) -> Page[M]:
    """A page of rows in its public form (`out` is read from each row's attributes)."""
    return Page[out](results=[out.model_validate(row) for row in page.items],  # type: ignore[valid-type]
                     next_cursor=page.next_cursor)
