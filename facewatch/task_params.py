"""The parameters of each task kind (validated when a task is created, read again by its worker).

Filters are the list filters of `GET /v1/events` (and `meta.<key>[__op]`, `external_id`); see
README "Tasks" for every kind's inputs and outputs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from facewatch.fields import EventFilterFields
from facewatch.meta import meta_params

MAX_EXPORT_BYTES = 10 * 1024**3
M = TypeVar("M", bound=BaseModel)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _only_meta(extra: dict[str, Any]) -> None:
    """Names beyond a selection's fields must be meta filters: an unknown name (a typo) would otherwise
    narrow nothing, and a clean-up meant for a few rows would delete them all."""
    meta = meta_params(extra)
    unknown = sorted(set(extra) - set(meta))
    if unknown:
        raise ValueError(f"unknown filter {unknown[0]!r} (a list filter, meta.<key>[__op] or external_id)")


class EventSelection(EventFilterFields):
    """Events by the list filters (facewatch.fields.EventFilterFields: the names of `GET /v1/events`)."""

    model_config = ConfigDict(extra="allow")  # meta.<key>[__op] filters

    external_id: str | None = Field(None, max_length=200)
    person_id: int | None = None
    person_status: Literal["new", "known", "regular"] | None = None

    @model_validator(mode="after")
    def _only_meta_extras(self) -> EventSelection:
        _only_meta(self.model_extra or {})
        return self


class DossierSelection(_Params):
    model_config = ConfigDict(extra="allow")

    watch_list_id: int | None = None
    dossier_ids: list[int] | None = Field(None, max_length=100_000)
    active: bool | None = None
    name_contains: str | None = Field(None, max_length=300)
    external_id: str | None = Field(None, max_length=200)
    created_gte: datetime | None = None
    created_lte: datetime | None = None

    @model_validator(mode="after")
    def _only_meta_extras(self) -> DossierSelection:
        _only_meta(self.model_extra or {})
        return self


class ExportParams(_Params):
    target: Literal["events", "dossiers"] = "events"
    filters: dict[str, Any] = Field(default_factory=dict)
    include_media: bool = True
    max_bytes: int = Field(1024**3, ge=1024, le=MAX_EXPORT_BYTES)
    part_size: int = Field(500, ge=1, le=10_000)

    @model_validator(mode="after")
    def _filters(self) -> ExportParams:
        (EventSelection if self.target == "events" else DossierSelection).model_validate(self.filters)
        return self


class CrossMatchSide(_Params):
    """One set of faces: a watch list's (or given dossiers') faces, or events by the list filters."""

    target: Literal["dossiers", "events"]
    watch_list_id: int | None = None
    dossier_ids: list[int] | None = Field(None, max_length=100_000)
    filters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> CrossMatchSide:
        if self.target == "events":
            EventSelection.model_validate(self.filters)
        return self


class CrossMatchParams(_Params):
    reference: CrossMatchSide
    candidates: CrossMatchSide
    limit: int = Field(5, ge=1, le=100)
    threshold: float | Literal["strict", "medium", "low", "none"] = "medium"
    part_size: int = Field(100, ge=1, le=10_000)

    @field_validator("threshold")
    @classmethod
    def _range(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not 0.0 <= float(v) <= 1.0:
            raise ValueError("threshold must be in [0, 1] or a preset")
        return v


class CleanupParams(_Params):
    target: Literal["events", "dossier_faces", "vectors"]
    filters: dict[str, Any] = Field(default_factory=dict)
    part_size: int = Field(500, ge=1, le=10_000)

    @model_validator(mode="after")
    def _check(self) -> CleanupParams:
        if self.target == "events":
            EventSelection.model_validate(self.filters)
        elif self.target == "dossier_faces":
            DossierSelection.model_validate(self.filters)
        elif self.filters:
            raise ValueError("the vectors target takes no filters: it removes vectors of models not in use")
        if self.target != "vectors" and not self.filters:
            raise ValueError("give at least one filter (a clean-up of everything must be explicit: "
                             "e.g. timestamp_lte)")
        return self


class ReextractParams(_Params):
    model: str = Field(min_length=1, max_length=100)
    batch: int = Field(32, ge=1, le=1024)
    switch: bool = True


class ArchiveParams(_Params):
    """A ZIP uploaded with the task (`archive_key`, set by the API) or a folder on the server."""

    archive_key: str | None = Field(None, max_length=200)
    path: str | None = Field(None, max_length=4000)
    part_size: int = Field(20, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_source(self) -> ArchiveParams:
        if (self.archive_key is None) == (self.path is None):
            raise ValueError("give exactly one source: upload a ZIP (file) or name a server folder (path)")
        return self


class EvaluateParams(ArchiveParams):
    pass


class EstimateParams(ArchiveParams):
    with_embeddings: bool = False


PARAMS: dict[str, type[BaseModel]] = {
    "export": ExportParams, "cross_match": CrossMatchParams, "cleanup": CleanupParams,
    "reextract": ReextractParams, "evaluate": EvaluateParams, "estimate": EstimateParams,
}
ARCHIVE_KINDS = ("evaluate", "estimate")
ADMIN_KINDS = ("cleanup", "reextract")


def parse(model: type[M], params: dict[str, Any]) -> M:
    """A kind's parameters as stored (`_`-prefixed keys are the API's own: the creator's visibility)."""
    return model.model_validate({k: v for k, v in params.items() if not k.startswith("_")})


def event_filter_values(filters: dict[str, Any]) -> dict[str, Any]:
    """Stored (JSON) event filters as typed values for `storage.event_queries.filter_events`."""
    return EventSelection.model_validate(filters).model_dump(exclude_none=True)


def dossier_filter_values(filters: dict[str, Any]) -> dict[str, Any]:
    return DossierSelection.model_validate(filters).model_dump(exclude_none=True)
