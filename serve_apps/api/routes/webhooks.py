"""CRUD /v1/webhooks (admins only); the secret is write-only."""

from __future__ import annotations

from fastapi import APIRouter, Response

from serve_apps.api.deps import Admin, Pages, Uow
from serve_apps.api.routes._common import page_out
from serve_apps.api.schemas import DbId, Page, WebhookDeliveryOut, WebhookIn, WebhookOut, WebhookPatch
from storage import orm

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def webhook_out(row: orm.Webhook) -> WebhookOut:
    data = {c: getattr(row, c) for c in WebhookOut.model_fields if c != "has_secret"}
    return WebhookOut(**data, has_secret=bool(row.secret))


def _fields(body: WebhookIn | WebhookPatch) -> dict[str, object]:
    fields = body.model_dump(mode="json", exclude_unset=isinstance(body, WebhookPatch))
    if "filters" in fields and fields["filters"] is not None:
        # Absent filters mean "any"; only the ones the client set are stored.
        fields["filters"] = body.filters.model_dump(mode="json", exclude_none=True)  # type: ignore[union-attr]
    return fields


@router.post("", status_code=201, response_model=WebhookOut)
def create_webhook(body: WebhookIn, uow: Uow, _: Admin) -> WebhookOut:
    row = uow.webhooks.add(orm.Webhook(**_fields(body)))
    uow.commit()
    return webhook_out(row)


@router.get("", response_model=Page[WebhookOut])
def list_webhooks(uow: Uow, _: Admin, paging: Pages, active: bool | None = None) -> Page[WebhookOut]:
    page = uow.webhooks.list_page({"active": active}, paging.limit, paging.cursor)
    return Page(results=[webhook_out(w) for w in page.items], next_cursor=page.next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: DbId, uow: Uow, _: Admin) -> WebhookOut:
    return webhook_out(uow.webhooks.get(webhook_id))


@router.patch("/{webhook_id}", response_model=WebhookOut)
def update_webhook(webhook_id: DbId, body: WebhookPatch, uow: Uow, _: Admin) -> WebhookOut:
    row = uow.webhooks.get(webhook_id)
    for name, value in _fields(body).items():
        setattr(row, name, value)
    uow.commit()
    return webhook_out(row)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: DbId, uow: Uow, _: Admin) -> Response:
    uow.webhooks.delete(uow.webhooks.get(webhook_id))
    uow.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=Page[WebhookDeliveryOut])
def list_webhook_deliveries(
    webhook_id: DbId, uow: Uow, _: Admin, paging: Pages, ok: bool | None = None
) -> Page[WebhookDeliveryOut]:
    """Recent delivery attempts of a webhook, newest first (each POST of a batch is one attempt)."""
    uow.webhooks.get(webhook_id)
    page = uow.webhook_deliveries.list_page({"webhook_id": webhook_id, "ok": ok}, paging.limit, paging.cursor)
    return page_out(page, WebhookDeliveryOut)
