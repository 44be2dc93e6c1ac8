"""FastAPI dependencies: the unit of work per request, the caller's identity, role checks, paging."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from facewatch.errors import AuthFailed, Forbidden
from facewatch.settings import Config
from serve_apps.api.request_cache import TtlCache
from storage import orm
from storage.media import LocalMediaStore
from storage.repositories import hash_token
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

SESSION_COOKIE = "fw_session"
CSRF_COOKIE = "fw_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Dependencies that only read the request are `async def`: FastAPI runs a plain `def` dependency in its
# thread pool, and those hops, several per request, showed in the console-load benchmark's page p99.
# Whatever touches the database stays a plain `def`, off the event loop.


async def refuse_nul_in_url(request: Request) -> None:
    """PostgreSQL cannot compare text holding NUL (it would answer 400 there and match nothing on
    SQLite): a NUL in a path or query parameter is a 422, like one in a body, on every database."""
    errors = [
        {"type": "value_error", "loc": (where, name), "msg": "must not contain NUL characters", "input": value}
        for where, items in (("path", request.path_params.items()), ("query", request.query_params.multi_items()))
        for name, value in items
        if "\x00" in str(value) or "\x00" in name
    ]
    if errors:
        raise RequestValidationError(errors)


async def get_config(request: Request) -> Config:
    return request.app.state.config


def get_uow(request: Request) -> Iterator[UnitOfWork]:
    with UnitOfWork(request.app.state.config.database_url) as uow:
        yield uow


async def get_media(request: Request) -> LocalMediaStore:
    return request.app.state.media


@dataclass(frozen=True)
class Caller:
    user_id: int
    username: str
    role: str
    token_id: int | None = None
    session_id: int | None = None  # signed in with the console's session cookie


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        raise AuthFailed("send 'Authorization: Token <token>' or sign in (POST /v1/auth/login)")
    return token.strip()


@dataclass(frozen=True)
class KnownCaller:
    """A credential's caller as the database gave it (kept up to FACEWATCH_AUTH_CACHE_TTL_S), with what
    every request still checks itself: the expiry, and for a session its CSRF token."""

    caller: Caller
    expires_at: datetime | None
    csrf_token: str = ""


def request_cache(request: Request) -> TtlCache[object]:
    """This replica's cache of callers and scopes (serve_apps/api/request_cache.py)."""
    return request.app.state.request_cache


def get_caller(request: Request, uow: Annotated[UnitOfWork, Depends(get_uow)]) -> Caller:
    """The caller, by `Authorization: Token …` or, without that header, by the `fw_session` cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    by_session = bool(cookie) and "authorization" not in request.headers
    cache = request_cache(request)
    try:
        plain = cookie if by_session and cookie else _bearer(request)
        key = ("session" if by_session else "token", hash_token(plain))
        known = cache.get(key)
        if not isinstance(known, KnownCaller):
            generation = cache.generation
            known = _session_caller(uow, plain) if by_session else _token_caller(uow, plain)
            cache.put(key, known, generation)
    finally:
        # Hand the connection back to the pool now: the route takes one again when it needs it. Held
        # from here to the end of the request it would stay taken while the request waits for a worker
        # thread (with more requests than pooled connections, they starve each other) and for as long
        # as a live feed is open.
        uow.session.close()
    # A kept answer may be older than the credential's expiry: checked on every request.
    if known.expires_at is not None and known.expires_at <= datetime.now(UTC):
        raise AuthFailed(SESSION_ENDED if by_session else TOKEN_UNKNOWN)
    if by_session:
        check_csrf(request, known.csrf_token)
    request.state.caller = known.caller  # read by the audit log
    return known.caller


TOKEN_UNKNOWN = "the token is unknown or expired"
SESSION_ENDED = "the session is unknown, expired or signed out; sign in again"


def _token_caller(uow: UnitOfWork, plain: str) -> KnownCaller:
    token = uow.tokens.by_plain_token(plain)
    now = datetime.now(UTC)
    if token is None or (token.expires_at is not None and token.expires_at <= now):
        raise AuthFailed(TOKEN_UNKNOWN)
    user = token.user
    if not user.active:
        raise AuthFailed("the user is deactivated")
    if uow.tokens.touch(token, now):  # shown in the token list: is this token still used by anyone?
        uow.commit()
    return KnownCaller(Caller(user_id=user.id, username=user.username, role=user.role, token_id=token.id),
                       token.expires_at)


def live_session(uow: UnitOfWork, cookie: str) -> orm.UserSession:
    """The session the cookie names, if it can still be used (else AUTH_FAILED)."""
    session = uow.sessions.by_plain(cookie)
    if session is None or session.revoked or session.expires_at <= datetime.now(UTC):
        raise AuthFailed(SESSION_ENDED)
    if not session.user.active:
        raise AuthFailed("the user is deactivated")
    return session


def check_csrf(request: Request, csrf_token: str) -> None:
    """A cookie-authenticated write must echo the session's CSRF token in X-CSRF-Token: another site can
    make a browser send the cookie, but cannot read the token (the fw_csrf cookie is same-origin)."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token.encode()):
        raise Forbidden(f"a signed-in {request.method} needs the {CSRF_HEADER} header (the fw_csrf cookie's value)")


def _session_caller(uow: UnitOfWork, cookie: str) -> KnownCaller:
    session = live_session(uow, cookie)
    if uow.sessions.touch(session, datetime.now(UTC)):
        uow.commit()
    user = session.user
    return KnownCaller(Caller(user_id=user.id, username=user.username, role=user.role, session_id=session.id),
                       session.expires_at, session.csrf_token)


def require(*roles: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets only callers with one of `roles` through (403 otherwise)."""

    async def check(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
        if caller.role not in roles:
            raise Forbidden(f"the {caller.role} role may not do this")
        return caller

    return check


ANY_ROLE = ("admin", "operator", "viewer")
Admin = Annotated[Caller, Depends(require("admin"))]
Operator = Annotated[Caller, Depends(require("admin", "operator"))]
Viewer = Annotated[Caller, Depends(require(*ANY_ROLE))]
Uow = Annotated[UnitOfWork, Depends(get_uow)]
Media = Annotated[LocalMediaStore, Depends(get_media)]


def scope_of(uow: UnitOfWork, caller: Caller) -> VisibilityScope:
    """What the caller's role may see (storage/visibility.py decides it, for every read path)."""
    return VisibilityScope.for_role(uow.session, caller.role)


def get_scope(request: Request, uow: Annotated[UnitOfWork, Depends(get_uow)],
              caller: Annotated[Caller, Depends(get_caller)]) -> VisibilityScope:
    """The caller's scope, kept per role up to FACEWATCH_AUTH_CACHE_TTL_S (the list pages' dependency)."""
    cache = request_cache(request)
    key = ("scope", caller.role)
    scope = cache.get(key)
    if not isinstance(scope, VisibilityScope):
        generation = cache.generation
        scope = scope_of(uow, caller)
        cache.put(key, scope, generation)
    return scope


Scope = Annotated[VisibilityScope, Depends(get_scope)]


@dataclass(frozen=True)
class Paging:
    limit: int
    cursor: str | None


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 20,
    cursor: Annotated[str | None, Query(max_length=1000, description="from the previous page")] = None,
) -> Paging:
    return Paging(limit=limit, cursor=cursor)


Pages = Annotated[Paging, Depends(get_paging)]
