"""GET/PATCH /v1/settings: runtime settings (SPEC §2); everyone reads, admins change."""

from __future__ import annotations

from fastapi import APIRouter

from serve_apps.api.deps import Admin, Uow, Viewer
from serve_apps.api.schemas import RuntimeSettings, RuntimeSettingsPatch

router = APIRouter(prefix="/settings", tags=["settings"])


@router.get("", response_model=RuntimeSettings)
def get_settings(uow: Uow, _: Viewer) -> RuntimeSettings:
    return RuntimeSettings(**uow.settings.all())


@router.patch("", response_model=RuntimeSettings)
def update_settings(body: RuntimeSettingsPatch, uow: Uow, _: Admin) -> RuntimeSettings:
    values = uow.settings.update(body.model_dump(exclude_unset=True, exclude_none=True))
    uow.commit()
    return RuntimeSettings(**values)
