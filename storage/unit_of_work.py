"""Unit of work: one session, every repository on it, one commit for related rows."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from storage import feed_order as _feed_order  # noqa: F401 - registers the feed-position commit hook
from storage import notices as _notices  # noqa: F401 - registers the camera-status flush hook
from storage import repositories as r
from storage import sign_in
from storage import vms as vms_repositories
from storage.db import session_factory, translate_db_errors
from storage.person_reads import PersonRepository
from storage.runtime_settings import SettingsRepository
from storage.vector_store import GalleryRepository, VectorRepository


class UnitOfWork:
    """`with UnitOfWork(url) as uow: ...; uow.commit()` — leaving without commit rolls back."""

    def __init__(self, url_or_factory: str | sessionmaker[Session]) -> None:
        self._factory = session_factory(url_or_factory) if isinstance(url_or_factory, str) else url_or_factory

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        s = self.session
        self.camera_groups = r.CameraGroupRepository(s)
        self.cameras = r.CameraRepository(s)
        self.watch_lists = r.WatchListRepository(s)
        self.dossiers = r.DossierRepository(s)
        self.dossier_faces = r.DossierFaceRepository(s)
        self.events = r.EventRepository(s)
        self.persons = PersonRepository(s)
        self.episodes = r.EpisodeRepository(s)
        self.videos = r.VideoRepository(s)
        self.jobs = r.JobRepository(s)
        self.webhooks = r.WebhookRepository(s)
        self.webhook_deliveries = r.WebhookDeliveryRepository(s)
        self.users = r.UserRepository(s)
        self.tokens = r.TokenRepository(s)
        self.settings = SettingsRepository(s)
        self.audit = r.AuditRepository(s)
        self.vectors = VectorRepository(s)
        self.galleries = GalleryRepository(s)
        self.vms = vms_repositories.VmsRepository(s)
        self.links = vms_repositories.LinkRepository(s)
        self.sessions = sign_in.SessionRepository(s)
        self.login_failures = sign_in.LoginFailureRepository(s)
        return self

    def flush(self) -> None:
        with translate_db_errors():
            self.session.flush()

    def commit(self) -> None:
        with translate_db_errors():
            self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # close() rolls back anything uncommitted without expiring loaded objects, so rows read in
        # the unit of work stay readable after it (rollback() would expire them).
        self.session.close()
