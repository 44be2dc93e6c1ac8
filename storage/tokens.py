"""Issuing API tokens and creating the first admin."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import func, or_, select

from storage import orm
from storage.repositories import hash_token
from storage.unit_of_work import UnitOfWork

PREFIX_CHARS = 8


def readable_prefix(plain: str) -> str:
    """What is kept of a token in the clear, to tell tokens apart in lists (`GET /v1/tokens`, the console):
    its first 8 characters ("fw_" and 5 random ones for a generated token), but never more than a quarter
    of it. A token chosen by hand (FACEWATCH_ADMIN_TOKEN) may be short, and its first 8 characters would
    be the whole secret, readable by every admin. The start is kept rather than the end because the start
    is what a person matches against the token they hold; the rest of it is only ever hashed."""
    return plain[: min(PREFIX_CHARS, len(plain) // 4)]


def issue_token(
    uow: UnitOfWork, user: orm.User, name: str = "", expires_at: datetime | None = None, plain: str | None = None
) -> tuple[orm.Token, str]:
    """Creates a token for `user`; returns the row and the plain token (never stored)."""
    plain = plain or f"fw_{secrets.token_urlsafe(32)}"
    row = orm.Token(user_id=user.id, token_hash=hash_token(plain), prefix=readable_prefix(plain), name=name,
                    expires_at=expires_at)
    uow.tokens.add(row)
    return row, plain


def ensure_admin(uow: UnitOfWork, token: str | None = None) -> str | None:
    """At first start, creates the `admin` user with a token; returns the plain token then, else None.

    With FACEWATCH_ADMIN_TOKEN set (`token`), that value becomes the admin's token; otherwise a new one
    is generated and returned so the caller can print it once.
    """
    if uow.users.count(uow.users.query()) > 0:
        return None
    admin = uow.users.add(orm.User(username="admin", role="admin", comment="created at first start"))
    _, plain = issue_token(uow, admin, name="first start", plain=token)
    uow.commit()
    return plain


def admin_tokens_left(uow: UnitOfWork, without_token_id: int | None = None) -> int:
    """Unexpired tokens of active admins (leaving out `without_token_id`): while there is one, someone
    can still administer the installation over the API."""
    stmt = (select(func.count()).select_from(orm.Token).join(orm.User, orm.User.id == orm.Token.user_id)
            .where(orm.User.role == "admin", orm.User.active.is_(True),
                   or_(orm.Token.expires_at.is_(None), orm.Token.expires_at > datetime.now(UTC))))
    if without_token_id is not None:
        stmt = stmt.where(orm.Token.id != without_token_id)
    return int(uow.session.scalar(stmt) or 0)


def local_admin_token(uow: UnitOfWork, username: str | None = None, name: str = "local admin-token",
                      expires_at: datetime | None = None) -> tuple[orm.User, orm.Token, str]:
    """A new token for an admin, made with the installation's own database: the operator's way back in
    when no admin can authenticate any more (`facewatch admin-token`), and the local CLI's own access.

    `username`: that user, created as an admin if missing (an existing non-admin or inactive user is
    refused: promoting is a decision for the API, where it is audited). Without it: the oldest active
    admin, or a new `admin` user when there is none (`admin-2`, … when that name is taken).
    """
    if username is not None:
        user = uow.users.by_username(username)
        if user is not None and (user.role != "admin" or not user.active):
            raise ValueError(f"user {username!r} is not an active admin")
    else:
        user = uow.session.scalars(select(orm.User).where(orm.User.role == "admin", orm.User.active.is_(True))
                                   .order_by(orm.User.id).limit(1)).first()
        if user is None:
            taken = set(uow.session.scalars(select(orm.User.username).where(orm.User.username.like("admin%"))))
            username = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 10_000))) if n not in taken)
    if user is None:
        user = uow.users.add(orm.User(username=username, role="admin", comment="created by facewatch admin-token"))
    row, plain = issue_token(uow, user, name=name, expires_at=expires_at)
    uow.commit()
    return user, row, plain
