"""SQLAlchemy 2 models for the whole domain of SPEC §2.

Conventions: every object has `id`, `created_at`, `updated_at` (UTC). Integer ids everywhere except
events, whose id is derived from job id + track id so a retried hand-off is idempotent. Vectors are
stored as float32 bytes with the model that made them (`FaceVector`); every change to a gallery
is also appended to `GalleryChange`, the log gallery shards replay after loading a snapshot.

Size: one module of ~740 lines on purpose. It is the schema, table after table, and the tables refer to
each other (relationships, association tables, `NEVER_REUSE`); Alembic's autogenerate and the
migrations read it as one metadata. Split by domain, every module would import most of the others and
a reader would lose the one place where the whole schema is seen at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UNMATCHED_WATCH_LIST_ID = -1
"""The built-in Unmatched list has this fixed id; it cannot be deleted, only deactivated."""

NEVER_REUSE: dict[str, Any] = {"sqlite_autoincrement": True}
"""`__table_args__` of every table with an integer id: SQLite without AUTOINCREMENT hands the id of the
newest deleted row to the next insert, and other rows, vectors, files and event ids (job id + track id)
still name it, so a re-uploaded video's events were taken for retries of the deleted one's. PostgreSQL
sequences never go back. tests/integration/test_ids_never_reused.py checks every table has it."""

# BigInteger primary keys still autoincrement on SQLite only as INTEGER; this variant keeps both happy.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


watch_list_camera_groups = Table(
    "watch_list_camera_groups",
    Base.metadata,
    Column("watch_list_id", ForeignKey("watch_lists.id", ondelete="CASCADE"), primary_key=True),
    Column("camera_group_id", ForeignKey("camera_groups.id", ondelete="CASCADE"), primary_key=True),
)

dossier_watch_lists = Table(
    "dossier_watch_lists",
    Base.metadata,
    Column("dossier_id", ForeignKey("dossiers.id", ondelete="CASCADE"), primary_key=True),
    Column("watch_list_id", ForeignKey("watch_lists.id", ondelete="CASCADE"), primary_key=True),
)


class CameraGroup(Timestamped, Base):
    __tablename__ = "camera_groups"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deduplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    dedup_interval_s: Mapped[float] = mapped_column(Float, default=15.0)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    hidden_from_roles: Mapped[list[Any]] = mapped_column(default=list)

    cameras: Mapped[list[Camera]] = relationship(back_populates="camera_group", passive_deletes=True)


class Camera(Timestamped, Base):
    __tablename__ = "cameras"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    camera_group_id: Mapped[int] = mapped_column(ForeignKey("camera_groups.id", ondelete="RESTRICT"), index=True)
    url: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    stream_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="disabled")
    status_error: Mapped[str] = mapped_column(Text, default="")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)

    camera_group: Mapped[CameraGroup] = relationship(back_populates="cameras")


class WatchList(Timestamped, Base):
    __tablename__ = "watch_lists"
    # AUTOINCREMENT also keeps SQLite ids starting at 1 beside the built-in row -1 (it would pick 0).
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    color: Mapped[str] = mapped_column(String(20), default="#ff0000")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    require_ack: Mapped[bool] = mapped_column(Boolean, default=False)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden_from_roles: Mapped[list[Any]] = mapped_column(default=list)

    camera_groups: Mapped[list[CameraGroup]] = relationship(secondary=watch_list_camera_groups)


class Dossier(Timestamped, Base):
    __tablename__ = "dossiers"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)

    watch_lists: Mapped[list[WatchList]] = relationship(secondary=dossier_watch_lists)
    faces: Mapped[list[DossierFace]] = relationship(
        back_populates="dossier", cascade="all, delete-orphan", passive_deletes=True
    )


class DossierFace(Timestamped, Base):
    __tablename__ = "dossier_faces"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    # Media keys are indexed: media visibility and the media sweep look rows up by key.
    source_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    crop_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    bbox: Mapped[list[Any]] = mapped_column(default=list)
    landmarks: Mapped[list[Any]] = mapped_column(default=list)
    detection_score: Mapped[float] = mapped_column(Float, default=0.0)
    quality: Mapped[float] = mapped_column(Float, default=0.0)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)

    dossier: Mapped[Dossier] = relationship(back_populates="faces")


class DossierNegative(Timestamped, Base):
    """An operator's "not this person" (POST /v1/events/{id}/reject-match): the event's face as a negative
    example of the dossier it was matched to. A face closer to one of a dossier's negatives than to its
    best photo no longer matches that dossier (actors/track_identity.py). The vector lives in the row (the
    event's own may expire); the media keys are the event's, kept while this row refers to them."""

    __tablename__ = "dossier_negatives"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)  # not a FK: events expire
    # The event's camera group: who may not see that group's events may not see this face either.
    camera_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("camera_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    model: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    thumbnail_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    crop_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    created_by: Mapped[str] = mapped_column(String(150), default="")


class Gallery(Timestamped, Base):
    """A named vector collection: the built-in `dossiers` and `events` galleries, or a user's own."""

    __tablename__ = "galleries"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    model: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")


class FaceVector(Base):
    """The source of truth for every vector in every gallery (one row per item and model)."""

    __tablename__ = "face_vectors"
    __table_args__ = (UniqueConstraint("gallery", "item_id", "model", name="uq_face_vectors_item"), NEVER_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery: Mapped[str] = mapped_column(String(100), index=True)
    item_id: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GalleryChange(Base):
    """Append-only log of gallery changes; a shard replays the rows newer than its snapshot."""

    __tablename__ = "gallery_changes"
    __table_args__ = (Index("ix_gallery_changes_gallery_seq", "gallery", "seq"), NEVER_REUSE)
    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str] = mapped_column(String(100))
    op: Mapped[str] = mapped_column(String(10))  # add | remove | meta
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Episode(Timestamped, Base):
    __tablename__ = "episodes"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    camera_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("camera_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), nullable=True)
    dossier_id: Mapped[int | None] = mapped_column(
        ForeignKey("dossiers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    watch_list_id: Mapped[int | None] = mapped_column(
        ForeignKey("watch_lists.id", ondelete="SET NULL"), nullable=True
    )
    matched: Mapped[bool] = mapped_column(Boolean, default=False)
    first_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_quality: Mapped[float] = mapped_column(Float, default=0.0)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    open: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Person(Timestamped, Base):
    """A lasting identity: a dossier's person (one per dossier) or an anonymous one (docs/persons.md).

    `scope` is 0 for installation-wide persons, else the camera group the person lives in. The
    statistics (first/last seen, cameras, distinct days, best event) are kept in step with its events
    by `storage.persons`; `dirty` marks persons the next incremental re-clustering must look at.
    """

    __tablename__ = "persons"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dossier_id: Mapped[int | None] = mapped_column(
        ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    scope: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    camera_ids: Mapped[list[Any]] = mapped_column(default=list)
    camera_group_ids: Mapped[list[Any]] = mapped_column(default=list)
    seen_days: Mapped[list[Any]] = mapped_column(default=list)
    days_seen: Mapped[int] = mapped_column(Integer, default=0)
    best_event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    best_quality: Mapped[float] = mapped_column(Float, default=0.0)
    dirty: Mapped[bool] = mapped_column(Boolean, default=True, index=True)


class PersonFace(Base):
    """A representative face of a person; its vector is in the `persons` gallery (item id = this id)."""

    __tablename__ = "person_faces"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    quality: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PersonExclusion(Base):
    """An operator's "these two are not one person": no merge, automatic or online, joins them."""

    __tablename__ = "person_exclusions"
    __table_args__ = (UniqueConstraint("person_id", "other_person_id", name="uq_person_exclusions_pair"), NEVER_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    other_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PersonClusteringRun(Base):
    """One re-clustering pass: its progress, so an interrupted pass resumes where it stopped."""

    __tablename__ = "person_clustering_runs"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running | done | failed
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    merges: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Event(Timestamped, Base):
    __tablename__ = "events"
    # (created_at, id): the live feed's read order and retention's age.
    # (watch_list_id, acknowledged): the unacknowledged events per watch list.
    __table_args__ = (Index("ix_events_timestamp", "timestamp"), Index("ix_events_created_at_id", "created_at", "id"),
                      Index("ix_events_watch_list_unack", "watch_list_id", "acknowledged"))
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    track_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    camera_id: Mapped[int | None] = mapped_column(
        ForeignKey("cameras.id", ondelete="SET NULL"), nullable=True, index=True
    )
    camera_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("camera_groups.id", ondelete="SET NULL"), nullable=True, index=True
    )
    video_id: Mapped[int | None] = mapped_column(
        ForeignKey("videos.id", ondelete="SET NULL"), nullable=True, index=True
    )
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    video_offset_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    bbox: Mapped[list[Any]] = mapped_column(default=list)
    detection_score: Mapped[float] = mapped_column(Float, default=0.0)
    quality: Mapped[float] = mapped_column(Float, default=0.0)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    age: Mapped[float | None] = mapped_column(Float, nullable=True)
    gender: Mapped[str | None] = mapped_column(String(10), nullable=True)
    matched: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    dossier_id: Mapped[int | None] = mapped_column(
        ForeignKey("dossiers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    watch_list_id: Mapped[int | None] = mapped_column(
        ForeignKey("watch_lists.id", ondelete="SET NULL"), nullable=True, index=True
    )
    matched_face_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    episode_id: Mapped[int | None] = mapped_column(
        ForeignKey("episodes.id", ondelete="SET NULL"), nullable=True, index=True
    )
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    thumbnail_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    crop_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    frame_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    # Persons (docs/persons.md): the event's person and whether it was new, known or a regular then.
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("persons.id", ondelete="SET NULL"), nullable=True, index=True
    )
    person_status: Mapped[str | None] = mapped_column(String(10), nullable=True)


class Video(Timestamped, Base):
    __tablename__ = "videos"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    source_url: Mapped[str] = mapped_column(Text, default="")
    media_key: Mapped[str] = mapped_column(String(200), default="", index=True)
    camera_group_id: Mapped[int] = mapped_column(ForeignKey("camera_groups.id", ondelete="RESTRICT"), index=True)
    camera_id: Mapped[int | None] = mapped_column(ForeignKey("cameras.id", ondelete="SET NULL"), nullable=True)
    stream_settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    frames_total: Mapped[int] = mapped_column(Integer, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    events_count: Mapped[int] = mapped_column(Integer, default=0)
    matched_count: Mapped[int] = mapped_column(Integer, default=0)
    unmatched_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")


class Job(Timestamped, Base):
    """The JobManager's record per camera or video: desired state, lease, attempts, statistics."""

    __tablename__ = "jobs"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # camera | video
    camera_id: Mapped[int | None] = mapped_column(
        ForeignKey("cameras.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    video_id: Mapped[int | None] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    single_pass: Mapped[bool] = mapped_column(Boolean, default=False)
    desired_state: Mapped[str] = mapped_column(String(10), default="running")  # running | stopped
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending|running|finished|failed|stopped
    lease_holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    backoff_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Webhook(Timestamped, Base):
    __tablename__ = "webhooks"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    secret: Mapped[str] = mapped_column(String(200), default="")
    # What the webhook hears about: "event" (faces), "camera_status", "task_status" (SPEC-level notices).
    event_types: Mapped[list[Any]] = mapped_column(default=lambda: ["event"])


class WebhookOutbox(Base):
    """One row per (webhook, event) to deliver, written in the event's own transaction."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_webhook_outbox_item"),
        Index("ix_webhook_outbox_pending", "webhook_id", "status", "id"),
        NEVER_REUSE,
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookDelivery(Base):
    """One delivery attempt (a POST of a batch), kept for `GET /v1/webhooks/{id}/deliveries`."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_ids: Mapped[list[Any]] = mapped_column(default=list)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # admin | operator | viewer
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    # An argon2id hash (storage.passwords); None: the user signs in with API tokens only.
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)

    tokens: Mapped[list[Token]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)


class Token(Timestamped, Base):
    """An API token; only its SHA-256 is stored, the plain token is shown once at creation."""

    __tablename__ = "tokens"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")


class UserSession(Base):
    """A console sign-in: only the SHA-256 of the session id is stored (the cookie holds the id)."""

    __tablename__ = "sessions"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()


class LoginFailure(Base):
    """One failed sign-in, kept for the throttle's window (per user name and per client address)."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username", "username", "created_at"),
        Index("ix_login_failures_client", "client", "created_at"), NEVER_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(150))
    client: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class RuntimeSetting(Base):
    """Admin-editable runtime settings (SPEC §2 Settings), one row per key, JSON value."""

    __tablename__ = "runtime_settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    username: Mapped[str] = mapped_column(String(150), default="")
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)



# -- VMS plug-ins and linked installations ---------------------------------------------------------


class VmsPlugin(Timestamped, Base):
    """A video management system reached through its plug-in service (docs/vms.md).

    The token is the shared secret of the `VmsPluginToken` scheme: facewatch sends it to the plug-in and the
    plug-in sends it back when it posts VMS events to facewatch, so it is kept (like a webhook secret), never
    shown again. The sender settings are those of the video security suite's event sender.
    """

    __tablename__ = "vms_plugins"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    url: Mapped[str] = mapped_column(Text)
    token: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    camera_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("camera_groups.id", ondelete="SET NULL"), nullable=True
    )
    sync_interval_s: Mapped[float] = mapped_column(Float, default=300.0)
    sender_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_types: Mapped[list[Any]] = mapped_column(default=lambda: ["face"])
    sender_tasks: Mapped[int] = mapped_column(Integer, default=1)
    max_send_attempts: Mapped[int] = mapped_column(Integer, default=1)
    min_send_timeout_s: Mapped[float] = mapped_column(Float, default=0.1)
    max_send_timeout_s: Mapped[float] = mapped_column(Float, default=100.0)
    response_timeout_s: Mapped[float] = mapped_column(Float, default=10.0)
    forward_watch_list_ids: Mapped[list[Any]] = mapped_column(default=list)
    sent_retention_days: Mapped[int] = mapped_column(Integer, default=0)
    received_retention_days: Mapped[int] = mapped_column(Integer, default=0)
    # The newest event (created_at ISO | id) the sender has already considered: it resumes after it.
    event_cursor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sync_error: Mapped[str] = mapped_column(Text, default="")
    last_sync_report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class VmsCamera(Base):
    """A facewatch camera imported from a VMS: which VMS camera it is and whether its events go back."""

    __tablename__ = "vms_cameras"
    __table_args__ = (UniqueConstraint("vms_id", "vms_camera_id", name="uq_vms_cameras_item"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vms_id: Mapped[int] = mapped_column(ForeignKey("vms_plugins.id", ondelete="CASCADE"), index=True)
    vms_camera_id: Mapped[str] = mapped_column(String(200))
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"), unique=True)
    forward_events: Mapped[bool] = mapped_column(Boolean, default=False)
    present: Mapped[bool] = mapped_column(Boolean, default=True)
    vms_status: Mapped[str] = mapped_column(String(50), default="")
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VmsMessage(Base):
    """An event sent to a VMS (direction `sent`) or received from one (`received`), with its delivery state."""

    __tablename__ = "vms_messages"
    __table_args__ = (
        UniqueConstraint("vms_id", "direction", "event_id", name="uq_vms_messages_event"),
        Index("ix_vms_messages_pending", "vms_id", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    vms_id: Mapped[int] = mapped_column(ForeignKey("vms_plugins.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(10))  # sent | received
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vms_camera_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kind: Mapped[str] = mapped_column(String(50), default="face")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | sent | failed | received
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WatchListLink(Timestamped, Base):
    """A slave installation's watch list that follows a master installation's list (read-only here)."""

    __tablename__ = "watch_list_links"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    watch_list_id: Mapped[int] = mapped_column(ForeignKey("watch_lists.id", ondelete="CASCADE"), unique=True)
    master_url: Mapped[str] = mapped_column(Text)
    master_token: Mapped[str] = mapped_column(String(200))
    master_watch_list_id: Mapped[int] = mapped_column(BigInteger)
    sync_hour: Mapped[int] = mapped_column(Integer, default=3)
    sync_minute: Mapped[int] = mapped_column(Integer, default=0)
    next_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    syncing_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_sync_status: Mapped[str] = mapped_column(String(20), default="never")  # never | ok | failed | partial
    last_sync_error: Mapped[str] = mapped_column(Text, default="")
    last_sync_report: Mapped[dict[str, Any]] = mapped_column(default=dict)


class LinkedDossier(Base):
    """Which local dossier copies which master dossier, and which master faces it holds (resumable sync)."""

    __tablename__ = "linked_dossiers"
    __table_args__ = (UniqueConstraint("link_id", "master_dossier_id", name="uq_linked_dossiers_item"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("watch_list_links.id", ondelete="CASCADE"), index=True)
    master_dossier_id: Mapped[int] = mapped_column(BigInteger)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id", ondelete="CASCADE"), unique=True)
    master_updated_at: Mapped[str] = mapped_column(String(64), default="")
    # master face id (as text) -> local dossier face id
    faces: Mapped[dict[str, Any]] = mapped_column(default=dict)
class WebhookNotice(Base):
    """A non-event notification (camera status change, task status change) for webhooks.

    Its outbox rows name it as `notice:<id>` in `WebhookOutbox.event_id`, so notices share the
    durable, ordered, retried delivery of events.
    """

    __tablename__ = "webhook_notices"
    __table_args__ = NEVER_REUSE
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # camera_status | task_status
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Task(Timestamped, Base):
    """A long-running task (export, cross-match, clean-up, …): its parts are `TaskPart` rows."""

    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_status_id", "status", "id"), NEVER_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|running|done|failed|cancelled
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notify_url: Mapped[str] = mapped_column(Text, default="")
    # Status changes not yet told to notify_url, oldest first (delivered, or dropped after bounded retries).
    notify_pending: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str] = mapped_column(String(150), default="")
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    parts_done: Mapped[int] = mapped_column(Integer, default=0)
    parts_failed: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result_name: Mapped[str] = mapped_column(String(200), default="")
    result_size: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class TaskPart(Base):
    """One unit of a task's work; its result is committed once (keyed by the part's id)."""

    __tablename__ = "task_parts"
    __table_args__ = (UniqueConstraint("task_id", "seq", name="uq_task_parts_seq"), NEVER_REUSE)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending | running | done | failed
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_code: Mapped[str] = mapped_column(String(40), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node_id: Mapped[str] = mapped_column(String(100), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
