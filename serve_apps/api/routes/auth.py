"""Console sign-in: `POST /v1/auth/login`, `POST /v1/auth/logout`, `GET /v1/auth/me`, and
`PUT /v1/users/{id}/password` (README "Console and sign-in").

Signing in sets two cookies: `fw_session` (HttpOnly, SameSite=Strict: the session id, of which the
database keeps only the SHA-256) and `fw_csrf` (readable by the page, SameSite=Strict: the token that a
cookie-authenticated write must echo in `X-CSRF-Token`). Failed sign-ins are counted per user name and
per client address in a sliding window; past the limit the answer is 429 with Retry-After, before any
password is checked. Every sign-in, sign-out and failure lands in the audit log (POST calls).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field, SecretStr

from facewatch.errors import AuthFailed, Forbidden, TooManyRequests
from facewatch.settings import Config
from serve_apps.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_ENDED,
    Caller,
    Uow,
    Viewer,
    check_csrf,
    get_config,
    live_session,
)
from serve_apps.api.schemas import DbId, ErrorOut, Input, Password
from storage import orm
from storage.passwords import hash_password, needs_rehash, verify_password
from storage.unit_of_work import UnitOfWork

router = APIRouter(tags=["auth"])
Settings = Annotated[Config, Depends(get_config)]
THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorOut, "description": "too many failed sign-ins; try again after Retry-After seconds",
          "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}},
}


class LoginIn(Input):
    username: str = Field(min_length=1, max_length=150)
    # Any length is accepted here (the check is the hash); the bound keeps hashing cheap.
    password: SecretStr = Field(max_length=1024)


class SessionUser(BaseModel):
    id: int
    username: str
    role: str


class SessionOut(BaseModel):
    user: SessionUser
    csrf_token: str | None = Field(description="echo it in X-CSRF-Token on writes; null for API-token callers")
    expires_at: datetime | None = Field(description="when the session (or the API token) expires")


class PasswordIn(Input):
    password: Password
    current_password: SecretStr | None = Field(None, max_length=1024,
                                               description="needed when changing one's own password (non-admins)")


def client_address(request: Request) -> str:
    """The peer address (X-Forwarded-For is not trusted: any client could set it)."""
    return request.client.host if request.client else ""


def retry_after_s(newest_first: list[datetime], limit: int, window_s: float, now: datetime) -> float:
    """Seconds until fewer than `limit` of these failures lie within the window (0: not throttled).

    `newest_first` holds the newest `limit` failures of the window; once the oldest of them leaves it,
    one more attempt is allowed.
    """
    if limit <= 0 or len(newest_first) < limit:
        return 0.0
    return max(0.0, (newest_first[limit - 1] + timedelta(seconds=window_s) - now).total_seconds())


def refuse_if_throttled(uow: UnitOfWork, config: Config, username: str, client: str, now: datetime) -> None:
    since = now - timedelta(seconds=config.login_failure_window_s)
    failures = uow.login_failures
    wait = max(
        retry_after_s(failures.newest(since, config.login_max_failures, username=username),
                      config.login_max_failures, config.login_failure_window_s, now),
        retry_after_s(failures.newest(since, config.login_max_failures_per_client, client=client),
                      config.login_max_failures_per_client, config.login_failure_window_s, now),
    )
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"too many failed sign-ins; try again in {seconds} s", retry_after_s=seconds)


def _session_out(user: orm.User, csrf_token: str | None, expires_at: datetime | None) -> SessionOut:
    return SessionOut(user=SessionUser(id=user.id, username=user.username, role=user.role), csrf_token=csrf_token,
                      expires_at=expires_at)


def _set_cookies(response: Response, config: Config, session_id: str, csrf_token: str) -> None:
    secure = config.public_url.startswith("https://")
    age = int(config.session_ttl_s)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=age, path="/", httponly=True, samesite="strict",
                        secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf_token, max_age=age, path="/", httponly=False, samesite="strict",
                        secure=secure)


def _clear_cookies(response: Response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", samesite="strict")


@router.post("/auth/login", response_model=SessionOut, responses=THROTTLED)
def login(body: LoginIn, request: Request, response: Response, uow: Uow, config: Settings) -> SessionOut:
    """Signs in with a user name and password; sets the `fw_session` and `fw_csrf` cookies."""
    now = datetime.now(UTC)
    client = client_address(request)
    request.state.audit_username = body.username[:150]
    refuse_if_throttled(uow, config, body.username, client, now)
    password = body.password.get_secret_value()
    user = uow.users.by_username(body.username)
    right = verify_password(user.password_hash if user else None, password)
    if user is None or not right or not user.active:
        uow.login_failures.record(body.username, client, now)
        uow.commit()
        # Only someone who knows the password learns that the account is deactivated.
        raise AuthFailed("the user is deactivated" if right else "wrong user name or password")
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    uow.login_failures.clear(user.username, before=now - timedelta(seconds=config.login_failure_window_s))
    uow.sessions.purge(before=now)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous and (old := uow.sessions.by_plain(previous)) is not None:
        old.revoked = True  # one browser, one session
    session, plain = uow.sessions.create(user, now, config.session_ttl_s, client)
    uow.commit()
    request.state.caller = Caller(user_id=user.id, username=user.username, role=user.role, session_id=session.id)
    _set_cookies(response, config, plain, session.csrf_token)
    return _session_out(user, session.csrf_token, session.expires_at)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, uow: Uow) -> Response:
    """Ends the cookie's session (needs X-CSRF-Token like every signed-in write) and clears the cookies;
    without a live session it only clears them."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        try:
            session = live_session(uow, cookie)
        except AuthFailed:
            session = None
        if session is not None:
            check_csrf(request, session.csrf_token)
            user = session.user
            request.state.caller = Caller(user_id=user.id, username=user.username, role=user.role,
                                          session_id=session.id)
            session.revoked = True
            uow.commit()
    response = Response(status_code=204)
    _clear_cookies(response)
    return response


@router.get("/auth/me", response_model=SessionOut)
def me(uow: Uow, caller: Viewer) -> SessionOut:
    """Who is signed in (401 without a live session or token): for the console to restore itself."""
    user = uow.users.get(caller.user_id)
    if caller.session_id is not None:
        session = uow.sessions.find(caller.session_id)
        if session is None:  # purged since this replica last looked it up (kept up to the cache's TTL)
            raise AuthFailed(SESSION_ENDED)
        return _session_out(user, session.csrf_token, session.expires_at)
    token = uow.tokens.find(caller.token_id) if caller.token_id is not None else None
    return _session_out(user, None, token.expires_at if token else None)


@router.put("/users/{user_id}/password", status_code=204, responses=THROTTLED, tags=["users"])
def set_password(user_id: DbId, body: PasswordIn, request: Request, uow: Uow, caller: Viewer,
                 config: Settings) -> Response:
    """Admins set or reset anyone's password; other users change their own, giving `current_password`.
    The user's other sessions end (a reset locks out whoever knew the old password)."""
    if caller.role != "admin":
        if caller.user_id != user_id:
            raise Forbidden("only admins may set other users' passwords", param="id")
        now = datetime.now(UTC)
        client = client_address(request)
        refuse_if_throttled(uow, config, caller.username, client, now)
        user = uow.users.get(user_id)
        current = body.current_password.get_secret_value() if body.current_password is not None else ""
        if not verify_password(user.password_hash, current):
            uow.login_failures.record(caller.username, client, now)
            uow.commit()
            raise Forbidden("the current password is missing or wrong", param="current_password")
        uow.login_failures.clear(caller.username, before=now - timedelta(seconds=config.login_failure_window_s))
    user = uow.users.get(user_id)
    user.password_hash = hash_password(body.password.get_secret_value())
    uow.sessions.revoke_for_user(user.id, keep_id=caller.session_id if caller.user_id == user.id else None)
    uow.commit()
    return Response(status_code=204)
