"""GET /v1/audit: the audit log of mutating API calls (admins only), newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from serve_apps.api.deps import Admin, Pages, Uow
from serve_apps.api.routes._common import page_out
from serve_apps.api.schemas import Page, Timestamp

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int | None
    username: str
    method: str
    path: str
    status: int
    request_id: str
    created_at: datetime


class AuditFilters(BaseModel):
    """Filters of `GET /v1/audit`, all AND-ed."""

    user_id: int | None = Field(None, ge=-(2**63), le=2**63 - 1, description="the caller's user id")
    username: str | None = Field(None, max_length=150, description="the caller's user name (exact)")
    method: Literal["POST", "PUT", "PATCH", "DELETE"] | None = None
    path_prefix: str | None = Field(None, max_length=1000, description="e.g. /v1/dossiers")
    status: int | None = Field(None, ge=100, le=599, description="exact HTTP status")
    status_gte: int | None = Field(None, ge=100, le=599, description="e.g. 400 for failed calls only")
    status_lte: int | None = Field(None, ge=100, le=599)
    created_gte: Timestamp | None = None
    created_lte: Timestamp | None = None


@router.get("", response_model=Page[AuditOut])
def list_audit(uow: Uow, _: Admin, paging: Pages, filters: Annotated[AuditFilters, Query()]) -> Page[AuditOut]:
    page = uow.audit.list_page(filters.model_dump(exclude_none=True), paging.limit, paging.cursor)
    return page_out(page, AuditOut)
