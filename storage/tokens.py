"""Issuing API tokens and creating the first admin."""

from __future__ import annotations

import secrets
from datetime import datetime

from storage import orm
from storage.repositories import hash_token
from storage.unit_of_work import UnitOfWork


def issue_token(
    uow: UnitOfWork, user: orm.User, name: str = "", expires_at: datetime | None = None, plain: str | None = None
) -> tuple[orm.Token, str]:
    """Creates a token for `user`; returns the row and the plain token (never stored)."""
    plain = plain or f"fw_{secrets.token_urlsafe(32)}"
    row = orm.Token(user_id=user.id, token_hash=hash_token(plain), prefix=plain[:8], name=name, expires_at=expires_at)
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
