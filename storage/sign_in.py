"""Console sign-in storage: sessions (only the SHA-256 of the session id is kept), failed sign-ins for
the throttle, and the first admin's password."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, joinedload

from storage import orm
from storage.passwords import hash_password
from storage.repositories import hash_token

if TYPE_CHECKING:  # the unit of work imports this module for its repositories
    from storage.unit_of_work import UnitOfWork

MIN_PASSWORD_LENGTH = 8
# last_seen_at is written at most this often per session, so reads do not each become a write.
TOUCH_EVERY = timedelta(seconds=60)


class SessionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, user: orm.User, now: datetime, ttl_s: float, client: str) -> tuple[orm.UserSession, str]:
        """A new session for `user`; returns the row and the plain session id (for the cookie only)."""
        plain = secrets.token_urlsafe(32)
        row = orm.UserSession(session_hash=hash_token(plain), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                              client=client[:100], created_at=now, last_seen_at=now,
                              expires_at=now + timedelta(seconds=ttl_s), revoked=False)
        self.session.add(row)
        self.session.flush()
        return row, plain

    def by_plain(self, plain: str) -> orm.UserSession | None:
        stmt = (select(orm.UserSession).where(orm.UserSession.session_hash == hash_token(plain))
                .options(joinedload(orm.UserSession.user)))
        return self.session.scalar(stmt)

    def find(self, session_id: int) -> orm.UserSession | None:
        return self.session.get(orm.UserSession, session_id)

    def touch(self, row: orm.UserSession, now: datetime) -> bool:
        """Records that the session was used; True when that changed the row (then commit)."""
        if now - row.last_seen_at < TOUCH_EVERY:
            return False
        row.last_seen_at = now
        return True

    def revoke_for_user(self, user_id: int, keep_id: int | None = None) -> None:
        stmt = update(orm.UserSession).where(orm.UserSession.user_id == user_id, orm.UserSession.revoked.is_(False))
        if keep_id is not None:
            stmt = stmt.where(orm.UserSession.id != keep_id)
        self.session.execute(stmt.values(revoked=True))

    def purge(self, before: datetime) -> None:
        """Deletes sessions that expired before `before` (they can never be used again)."""
        self.session.execute(delete(orm.UserSession).where(orm.UserSession.expires_at < before))


class LoginFailureRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, username: str, client: str, now: datetime) -> None:
        self.session.add(orm.LoginFailure(username=username[:150], client=client[:100], created_at=now))
        self.session.flush()

    def newest(self, since: datetime, limit: int, username: str | None = None,
               client: str | None = None) -> list[datetime]:
        """Times of the newest `limit` failures since `since` for a user name or a client, newest first."""
        f = orm.LoginFailure
        stmt = select(f.created_at).where(f.created_at >= since)
        stmt = stmt.where(f.username == username) if username is not None else stmt.where(f.client == client)
        return list(self.session.scalars(stmt.order_by(f.created_at.desc()).limit(limit)))

    def clear(self, username: str, before: datetime) -> None:
        """Forgets the failures of `username` (after a successful sign-in) and every one older than `before`."""
        f = orm.LoginFailure
        self.session.execute(delete(f).where((f.username == username) | (f.created_at < before)))


def ensure_admin_password(uow: UnitOfWork, password: str | None, generate: bool) -> str | None:
    """Gives the `admin` user a password when it has none: `password` (FACEWATCH_ADMIN_PASSWORD), or a
    generated one when `generate` (first start). Returns the generated password, to be printed once.

    An existing password is never replaced from the environment: change it through the API.
    """
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"FACEWATCH_ADMIN_PASSWORD must be at least {MIN_PASSWORD_LENGTH} characters long")
    admin = uow.users.by_username("admin")
    if admin is None or admin.password_hash or (password is None and not generate):
        return None
    plain = password or secrets.token_urlsafe(12)
    admin.password_hash = hash_password(plain)
    uow.commit()
    return None if password else plain
