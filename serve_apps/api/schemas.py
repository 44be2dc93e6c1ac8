"""Pydantic schemas of the HTTP API: what clients send (`*In`, `*Patch`) and receive (`*Out`).

Inputs forbid unknown fields, so a typo is a BAD_PARAM instead of being silently ignored.
References are named `<object>_id` / `<object>_ids`.

Size: ~850 lines of declarations, no logic: one model per request or response, in the order of the
resources (persons and VMS already have their own modules). The next split is by resource
(`schemas/events.py`, `schemas/cameras.py`, …); it waits until the API schema work of this round has
merged, since both change most of these models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from facewatch.fields import EventFilterFields, SightingRefs, Timestamp
from facewatch.states import CameraStatus, DesiredState, JobKind, JobState, VideoStatus
from facewatch.stream_settings import StreamSettings as SharedStreamSettings

T = TypeVar("T")

Threshold = Field(default=None, ge=0.0, le=1.0, description="Confidence threshold override in [0, 1]")
Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[str, ...] = ("admin", "operator", "viewer")
Box = list[float]
DbId = Annotated[int, Interval(ge=-(2**63), le=2**63 - 1)]
"""An object id as the API accepts it: within the databases' 64-bit integer range (larger ones would
make the database driver fail instead of answering NOT_FOUND / BAD_PARAM)."""




def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return any(_has_nul(v) for v in value)
    if isinstance(value, BaseModel):
        return any(_has_nul(v) for v in value.__dict__.values())
    return False


class Input(BaseModel):
    """Base of every request body.

    Strict: a wrong JSON type (`"active": 0`, `"threshold": false`, `"name": 5`) is a 422 instead of
    being coerced; datetime fields must be typed `Timestamp`. Surrounding whitespace is stripped after
    the documented length and pattern checks (so what the OpenAPI schema says is what is enforced);
    a text that was only whitespace is refused where the field needs one.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _strip_texts(self) -> Any:
        for name, field in type(self).model_fields.items():
            value = self.__dict__.get(name)
            if _has_nul(value):
                # PostgreSQL cannot store NUL in text or JSON; refused here, every database answers alike.
                raise ValueError(f"{name} must not contain NUL characters")
            if isinstance(value, str) and value != value.strip():
                if not value.strip() and any(getattr(m, "min_length", 0) for m in field.metadata):
                    raise ValueError(f"{name} must not be blank")
                self.__dict__[name] = value.strip()
        return self


def _non_null_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """OpenAPI of a `Patch`: a field that cannot be null is optional but not nullable."""
    nullable = getattr(model, "NULLABLE", frozenset())
    for name, prop in schema.get("properties", {}).items():
        if name in nullable or "anyOf" not in prop:
            continue
        kept = [s for s in prop.pop("anyOf") if s.get("type") != "null"]
        if len(kept) == 1:
            prop.update(kept[0])
        else:
            prop["anyOf"] = kept
        prop.pop("default", None)


class Patch(Input):
    """Base of every PATCH body: a field left out keeps its stored value; only fields named in
    `NULLABLE` (stored as nullable, e.g. a threshold override) may be sent as null to clear them.

    A null for any other field is a 422: storing it would leave the object unreadable (its output
    schema requires a value), as `{"labels": null}` once did.
    """

    NULLABLE: ClassVar[frozenset[str]] = frozenset()
    model_config = ConfigDict(json_schema_extra=_non_null_schema)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name not in cls.NULLABLE:
            raise ValueError("must not be null: leave the field out to keep its value")
        return value


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    results: list[T]
    next_cursor: str | None = None


class StreamSettings(Input, SharedStreamSettings):
    """How a camera's stream is decoded, filtered and posted (SPEC §2, §3); the fields are those of
    `facewatch.stream_settings.StreamSettings`, validated strictly as a request body."""


# -- camera groups ---------------------------------------------------------------------------------


class CameraGroupIn(Input):
    name: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)
    active: bool = True
    deduplicate: bool = False
    dedup_interval_s: float = Field(15.0, ge=0.0, le=86_400.0)
    threshold: float | None = Threshold
    hidden_from_roles: list[Role] = Field(default_factory=list)


class CameraGroupPatch(Patch):
    NULLABLE = frozenset({"threshold"})
    name: str | None = Field(None, min_length=1, max_length=200)
    comment: str | None = Field(None, max_length=10_000)
    labels: dict[str, str] | None = None
    active: bool | None = None
    deduplicate: bool | None = None
    dedup_interval_s: float | None = Field(None, ge=0.0, le=86_400.0)
    threshold: float | None = Threshold
    hidden_from_roles: list[Role] | None = None


class CameraGroupOut(Output):
    id: int
    name: str
    comment: str
    labels: dict[str, str]
    active: bool
    deduplicate: bool
    dedup_interval_s: float
    threshold: float | None
    hidden_from_roles: list[str]
    created_at: datetime
    updated_at: datetime


# -- cameras ---------------------------------------------------------------------------------------

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "file")


def _check_stream_url(value: str | None) -> str | None:
    if value is None or value == "":
        return value
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in URL_SCHEMES:
        raise ValueError(f"url must start with one of {', '.join(s + '://' for s in URL_SCHEMES)}")
    return value


def _meta(value: dict[str, Any] | None) -> dict[str, Any] | None:
    from facewatch.errors import BadParam
    from facewatch.meta import check_meta

    try:
        return None if value is None else check_meta(value)
    except BadParam as exc:
        raise ValueError(exc.reason) from None


Meta = Annotated[dict[str, Any], AfterValidator(_meta), Field(description="user metadata: a JSON object, at most 4 KB")]
ExternalId = Annotated[str | None, Field(max_length=200, description="the integrator's own id")]


class CameraIn(Input):
    name: str = Field(min_length=1, max_length=200)
    camera_group_id: DbId
    url: str = Field("", max_length=4000)
    comment: str = Field("", max_length=10_000)
    active: bool = True
    threshold: float | None = Threshold
    stream_settings: StreamSettings = Field(default_factory=StreamSettings)
    meta: Meta = Field(default_factory=dict)
    external_id: ExternalId = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_stream_url(value)


class CameraPatch(Patch):
    NULLABLE = frozenset({"threshold"})
    name: str | None = Field(None, min_length=1, max_length=200)
    camera_group_id: DbId | None = None
    url: str | None = Field(None, max_length=4000)
    comment: str | None = Field(None, max_length=10_000)
    active: bool | None = None
    threshold: float | None = Threshold
    stream_settings: StreamSettings | None = None
    meta: Meta | None = None
    external_id: ExternalId = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_stream_url(value)


class CameraOut(Output):
    id: int
    name: str
    camera_group_id: int
    url: str
    comment: str
    active: bool
    threshold: float | None
    stream_settings: dict[str, Any]
    status: CameraStatus
    status_error: str
    stats: dict[str, Any]
    meta: dict[str, Any] = Field(default_factory=dict)
    external_id: str | None = None
    created_at: datetime
    updated_at: datetime


# -- watch lists -----------------------------------------------------------------------------------


class WatchListIn(Input):
    name: str = Field(min_length=1, max_length=200)
    comment: str = Field("", max_length=10_000)
    color: str = Field("#ff0000", pattern=r"^#[0-9a-fA-F]{6}$")
    active: bool = True
    require_ack: bool = False
    threshold: float | None = Threshold
    camera_group_ids: list[DbId] = Field(default_factory=list, description="empty: all camera groups")
    hidden_from_roles: list[Role] = Field(default_factory=list)


class WatchListPatch(Patch):
    NULLABLE = frozenset({"threshold"})
    name: str | None = Field(None, min_length=1, max_length=200)
    comment: str | None = Field(None, max_length=10_000)
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    active: bool | None = None
    require_ack: bool | None = None
    threshold: float | None = Threshold
    camera_group_ids: list[DbId] | None = None
    hidden_from_roles: list[Role] | None = None


class WatchListOut(Output):
    id: int
    name: str
    comment: str
    color: str
    active: bool
    require_ack: bool
    threshold: float | None
    camera_group_ids: list[int]
    builtin: bool
    hidden_from_roles: list[str]
    unacknowledged_events: int = Field(0, description="events of this list still to be acknowledged "
                                                       "(among those the caller sees)")
    created_at: datetime
    updated_at: datetime


# -- dossiers --------------------------------------------------------------------------------------


class DossierIn(Input):
    name: str = Field(min_length=1, max_length=300)
    comment: str = Field("", max_length=10_000)
    external_id: str | None = Field(None, max_length=200)
    active: bool = True
    watch_list_ids: list[DbId] = Field(default_factory=list)
    meta: Meta = Field(default_factory=dict)
    event_ids: list[str] = Field(default_factory=list, max_length=100,
                                 description="events whose face crops become the dossier's photos")


class DossierPatch(Patch):
    NULLABLE = frozenset({"external_id"})
    name: str | None = Field(None, min_length=1, max_length=300)
    comment: str | None = Field(None, max_length=10_000)
    external_id: str | None = Field(None, max_length=200)
    active: bool | None = None
    watch_list_ids: list[DbId] | None = None
    meta: Meta | None = None


class DossierOut(Output):
    id: int
    name: str
    comment: str
    external_id: str | None
    active: bool
    watch_list_ids: list[int]
    face_count: int
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class ErasureOut(Output):
    """What `POST /v1/dossiers/{id}/erase` removed (storage/erasure.py)."""

    dossier_id: int
    faces_deleted: int
    events_deleted: int
    episodes_deleted: int
    vectors_deleted: int
    media_deleted: int


# -- webhooks --------------------------------------------------------------------------------------


WebhookEventType = Literal["event", "camera_status", "task_status"]


class WebhookFilters(Input):
    """Values inside one filter are OR-ed, filters are AND-ed; absent = any; an empty list = none."""

    camera_group_in: list[int] | None = None
    camera_in: list[int] | None = None
    watch_list_in: list[int] | None = None
    dossier_in: list[int] | None = None
    matched: bool | None = None
    confidence_gte: float | None = Field(None, ge=0.0, le=1.0)
    person_in: list[int] | None = None
    person_status_in: list[Literal["new", "known", "regular"]] | None = None


class WebhookIn(Input):
    title: str = Field(min_length=1, max_length=200)
    url: AnyHttpUrl
    active: bool = True
    filters: WebhookFilters = Field(default_factory=WebhookFilters)
    batch_size: int = Field(1, ge=1, le=1000)
    max_attempts: int = Field(10, ge=1, le=1000)
    secret: str = Field("", max_length=200)
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: ["event"], min_length=1,
        description="what the webhook hears: event (faces), camera_status, task_status")


class WebhookPatch(Patch):
    title: str | None = Field(None, min_length=1, max_length=200)
    url: AnyHttpUrl | None = None
    active: bool | None = None
    filters: WebhookFilters | None = None
    batch_size: int | None = Field(None, ge=1, le=1000)
    max_attempts: int | None = Field(None, ge=1, le=1000)
    secret: str | None = Field(None, max_length=200)
    event_types: list[WebhookEventType] | None = Field(None, min_length=1)


class WebhookOut(Output):
    id: int
    title: str
    url: str
    active: bool
    filters: dict[str, Any]
    batch_size: int
    max_attempts: int
    has_secret: bool
    event_types: list[str]
    created_at: datetime
    updated_at: datetime


# -- users, tokens, settings -----------------------------------------------------------------------


def _password_rules(value: SecretStr) -> SecretStr:
    length = len(value.get_secret_value())
    if length < 8:
        raise ValueError("must be at least 8 characters long")
    if length > 1024:
        raise ValueError("must be at most 1024 characters long")
    return value


Password = Annotated[
    SecretStr,  # never stripped (Input strips str fields), never shown in logs or reprs
    AfterValidator(_password_rules),
    WithJsonSchema({"type": "string", "format": "password", "writeOnly": True, "minLength": 8, "maxLength": 1024}),
]
"""A new password: 8 to 1024 characters, taken exactly as sent."""


class UserIn(Input):
    username: str = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    active: bool = True
    comment: str = Field("", max_length=10_000)
    password: Password | None = Field(None, description="for console sign-in; without one, API tokens only")


class UserPatch(Patch):
    role: Role | None = None
    active: bool | None = None
    comment: str | None = Field(None, max_length=10_000)


class UserOut(Output):
    id: int
    username: str
    role: str
    active: bool
    comment: str
    has_password: bool = Field(description="whether the user can sign in to the console with a password")
    created_at: datetime
    updated_at: datetime


class TokenIn(Input):
    name: str = Field("", max_length=200)
    user_id: DbId | None = Field(None, description="admins may create tokens for other users")
    expires_in_s: int | None = Field(None, ge=60, le=10 * 365 * 86_400)


class TokenOut(Output):
    """A token as listed: never the secret (only its hash is stored), its first characters to recognise it."""

    id: int
    user_id: int
    username: str = Field(description="the owner")
    name: str
    prefix: str = Field(description="the token's first 8 characters (fewer for a token shorter than 32: never "
                                    "more than a quarter of it); the rest is never stored")
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None = Field(None, description="last authenticated request (kept to the minute)")


class TokenCreated(TokenOut):
    token: str = Field(description="the token itself; shown only in this answer")


class RuntimeSettings(Output):
    default_threshold: float
    match_min_quality: float
    episode_threshold: float
    episode_lookback_s: float
    episode_idle_timeout_s: float
    episode_max_duration_s: float
    ignore_unmatched: bool
    retention_days_matched: int
    retention_days_unmatched: int
    retention_days_audit_log: int
    retention_days_webhook_deliveries: int
    retention_days_gallery_changes: int
    min_dossier_photo_quality: float
    embedder: str
    person_threshold: float
    person_min_quality: float
    person_max_faces: int
    person_scope: Literal["installation", "camera_group"]
    person_merge_threshold: float
    friend_days: int
    friend_window_days: int


class RuntimeSettingsPatch(Patch):
    default_threshold: float | None = Field(None, ge=0.0, le=1.0)
    match_min_quality: float | None = Field(None, ge=0.0, le=1.0, description=(
        "a track (or photo) whose best frame's quality is below this is never matched: faces that poor "
        "(blurred, dark, tiny) resemble too many people"))
    episode_threshold: float | None = Field(None, ge=0.0, le=1.0)
    episode_lookback_s: float | None = Field(None, ge=0.0, le=86_400.0)
    episode_idle_timeout_s: float | None = Field(None, gt=0.0, le=86_400.0)
    episode_max_duration_s: float | None = Field(None, gt=0.0, le=7 * 86_400.0)
    ignore_unmatched: bool | None = None
    # Days; 0 keeps forever (as the README has always said for events).
    retention_days_matched: int | None = Field(None, ge=0, le=36_500)
    retention_days_unmatched: int | None = Field(None, ge=0, le=36_500)
    retention_days_audit_log: int | None = Field(None, ge=0, le=36_500)
    retention_days_webhook_deliveries: int | None = Field(None, ge=0, le=36_500)
    retention_days_gallery_changes: int | None = Field(None, ge=0, le=36_500)
    min_dossier_photo_quality: float | None = Field(None, ge=0.0, le=1.0)
    person_threshold: float | None = Field(None, ge=0.0, le=1.0)
    person_min_quality: float | None = Field(None, ge=0.0, le=1.0)
    person_max_faces: int | None = Field(None, ge=1, le=64)
    person_scope: Literal["installation", "camera_group"] | None = None
    person_merge_threshold: float | None = Field(None, ge=0.0, le=1.0)
    friend_days: int | None = Field(None, ge=1, le=3650)
    friend_window_days: int | None = Field(None, ge=1, le=3650)


class ErrorOut(BaseModel):
    code: str
    reason: str
    param: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, dict[str, Any]]
    down: list[str] = Field(default_factory=list, description="the components that are down")


# -- events, episodes ------------------------------------------------------------------------------


class GenderOut(BaseModel):
    value: Literal["male", "female"]
    confidence: float


class EventMedia(BaseModel):
    thumbnail: str | None
    crop: str | None
    frame: str | None


class EventOut(BaseModel):
    id: str
    camera_id: int | None
    camera_group_id: int | None
    video_id: int | None
    job_id: int | None
    track_id: int | None
    timestamp: datetime
    video_offset_s: float | None
    bbox: list[float]
    detection_score: float
    quality: float
    age: float | None
    gender: GenderOut | None
    attributes: dict[str, Any]
    matched: bool
    dossier_id: int | None
    watch_list_id: int | None
    matched_face_id: int | None
    confidence: float | None
    episode_id: int | None
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    media: EventMedia
    meta: dict[str, Any] = Field(default_factory=dict)
    external_id: str | None = None
    created_at: datetime | None
    person_id: int | None = None
    person_status: Literal["new", "known", "regular"] | None = None


NEGATIVE_RULE = ("A face closer to one of a dossier's negatives than to the dossier's best photo no longer matches "
                 "that dossier (for a track: its quality-weighted best frames, scored the same way against both).")


class NegativeMedia(BaseModel):
    thumbnail: str | None
    crop: str | None


class NegativeOut(BaseModel):
    """A "not this person" example of a dossier: the face of an event an operator rejected. """ + NEGATIVE_RULE

    id: int
    dossier_id: int
    event_id: str | None = Field(description="the rejected event (it may have expired since)")
    camera_group_id: int | None
    model: str = Field(description="the embedder of its vector; only sightings of that model are judged by it")
    created_by: str
    created_at: datetime
    media: NegativeMedia


class RejectMatchOut(BaseModel):
    event: EventOut = Field(description="the event, now unmatched (on the Unmatched list)")
    negative: NegativeOut


class EventFilters(EventFilterFields):
    """Event filters (query parameters of `GET /v1/events`, the live feed and search)."""

    person_id: int | None = None
    person_status: Literal["new", "known", "regular"] | None = None


class EventAckFilter(Input, SightingRefs):
    """Acknowledge every event matching these filters (at least one filter is required)."""

    episode_id: int | None = None
    matched: bool | None = None
    timestamp_gte: Timestamp | None = None
    timestamp_lte: Timestamp | None = None

    @model_validator(mode="after")
    def _some_filter(self) -> EventAckFilter:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one filter; acknowledging every event needs matched=true/false")
        return self


class AckCount(BaseModel):
    acknowledged: int


class EpisodeOut(Output):
    id: int
    camera_group_id: int | None
    camera_id: int | None
    dossier_id: int | None
    watch_list_id: int | None
    matched: bool
    first_event_id: str | None
    last_event_id: str | None
    best_event_id: str | None
    event_count: int
    started_at: datetime
    last_at: datetime
    closed_at: datetime | None
    open: bool
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: datetime | None


# -- faces: detect, verify, enrol ------------------------------------------------------------------


class DetectedFace(BaseModel):
    bbox: list[float] = Field(description="[x1, y1, x2, y2] in photo pixels")
    score: float = Field(description="detector confidence")
    quality: float | None = Field(description="0..1, higher is better (see docs); null for aligned crops")
    landmarks: list[list[float]] = Field(description="5 points: left eye, right eye, nose, mouth left, mouth right")
    age: float | None
    gender: GenderOut | None
    attributes: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None
    model: str | None = None


class DetectPhotoError(BaseModel):
    code: str
    reason: str


class DetectPhotoResult(BaseModel):
    file: str
    faces: list[DetectedFace]
    error: DetectPhotoError | None = None


class DetectOut(BaseModel):
    """One photo (`photo`): `faces`. Several (`photos`): `results`, one per photo in the order sent."""

    faces: list[DetectedFace] | None = None
    results: list[DetectPhotoResult] | None = None


class VerifyPair(BaseModel):
    face1: list[float] | None
    face2: list[float] | None
    confidence: float
    verified: bool


class VerifyOut(BaseModel):
    confidence: float
    verified: bool
    threshold: float
    pairs: list[VerifyPair] | None = Field(None, description="face_select=all: every pair of faces, best first")


class DossierFaceOut(BaseModel):
    id: int
    dossier_id: int
    bbox: list[float]
    quality: float
    detection_score: float
    landmarks: list[list[float]]
    attributes: dict[str, Any]
    photo: str | None
    crop: str | None
    meta: dict[str, Any] = Field(default_factory=dict)
    external_id: str | None = None
    created_at: datetime


class DossierFacePatch(Patch):
    """A dossier face's user metadata; its photo, box and vector are not editable (enrol another)."""

    NULLABLE = frozenset({"external_id"})
    meta: Meta | None = None
    external_id: str | None = Field(None, max_length=200)


class EnrolOut(DossierFaceOut):
    faces: list[DossierFaceOut] = Field(description="every face stored (several with face_select=all)")


class BulkEnrolItem(BaseModel):
    file: str
    dossier: str
    dossier_id: int | None
    status: Literal["ok", "failed"]
    error: str | None
    reason: str | None = None


class BulkEnrolOut(BaseModel):
    enrolled: int
    failed: int
    results: list[BulkEnrolItem]


class DossierRef(BaseModel):
    id: int
    name: str


class SearchHit(BaseModel):
    confidence: float
    dossier: DossierRef | None = None
    face_id: int | None = None
    event: EventOut | None = None


class SearchFaceResults(BaseModel):
    bbox: list[float]
    quality: float
    results: list[SearchHit]


class SearchOut(BaseModel):
    results: list[SearchHit]
    missing_shards: list[int] | None = None
    faces: list[SearchFaceResults] | None = Field(
        None, description="face_select=all: every face of the photo with its own results (biggest first)")


# -- galleries (low level) -------------------------------------------------------------------------


class GalleryIn(Input):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    comment: str = Field("", max_length=10_000)


class GalleryOut(BaseModel):
    name: str
    model: str
    dim: int
    builtin: bool
    comment: str
    count: int


class GalleryFaceOut(BaseModel):
    id: str
    gallery: str
    bbox: list[float] | None = None


class GalleryHit(BaseModel):
    id: str
    confidence: float


class GallerySearchOut(BaseModel):
    results: list[GalleryHit]


# -- jobs, camera status, videos -------------------------------------------------------------------


class JobOut(BaseModel):
    """The JobManager's record of one camera or video job."""

    id: int
    kind: JobKind
    camera_id: int | None
    video_id: int | None
    single_pass: bool
    desired_state: DesiredState
    state: JobState
    actor_name: str
    lease_holder: str | None = Field(description="the job actor attempt holding the lease")
    lease_node: str | None = Field(description="Ray node id the job runs on")
    lease_expires_at: datetime | None
    attempts: int
    consecutive_failures: int
    backoff_until: datetime | None
    last_error: str
    stats: dict[str, Any] = Field(description="the job's last heartbeat: frames, fps, faces, status")
    created_at: datetime | None
    updated_at: datetime | None


class CameraStatusOut(BaseModel):
    camera_id: int
    name: str
    active: bool
    status: CameraStatus
    status_error: str
    stats: dict[str, Any]
    job: JobOut | None


class VideoIn(Input):
    """`POST /v1/videos` as JSON (a URL), or the form fields beside an uploaded `file`."""

    url: str | None = Field(None, max_length=4000)
    name: str | None = Field(None, min_length=1, max_length=300)
    camera_group_id: DbId
    camera_id: DbId | None = None
    stream_settings: StreamSettings | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_stream_url(value)


class VideoProgress(BaseModel):
    frames_done: int
    frames_total: int
    fraction: float | None = Field(description="frames_done / frames_total, when the total is known")


class VideoOut(BaseModel):
    id: int
    name: str
    source_url: str
    media: str | None = Field(description="the uploaded file, under /v1/media")
    camera_group_id: int
    camera_id: int | None
    stream_settings: dict[str, Any]
    status: VideoStatus
    progress: VideoProgress
    duration_s: float
    events_count: int
    matched_count: int
    unmatched_count: int
    error: str
    job: JobOut | None
    created_at: datetime
    updated_at: datetime


class WebhookDeliveryOut(Output):
    id: int
    webhook_id: int
    event_ids: list[str]
    attempt: int
    ok: bool
    status_code: int | None
    error: str
    duration_ms: float
    created_at: datetime
