"""The FastAPI application: routes, the SPEC §5.1 error format, body limits, request ids, audit."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facewatch import __version__
from facewatch.errors import FacewatchError
from facewatch.settings import Config
from serve_apps.api.deps import refuse_nul_in_url
from serve_apps.api.linked_lists import start_link_scheduler
from serve_apps.api.openapi_links import install_openapi_links
from serve_apps.api.request_cache import TtlCache
from serve_apps.api.routes import (
    audit,
    auth,
    camera_groups,
    cameras,
    dossiers,
    episodes,
    event_stream,
    events,
    faces,
    galleries,
    health,
    jobs,
    links,
    live_view,
    media,
    metrics,
    negatives,
    persons,
    search,
    settings,
    still_events,
    tasks,
    tokens,
    users,
    videos,
    vms,
    watch_lists,
    webhooks,
)
from serve_apps.api.schemas import ErrorOut
from serve_apps.api.services import UPLOAD_LIMIT_SETTING, Services
from serve_apps.console import mount_console
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.api")

JSON_BODY_LIMIT = 1 * 1024 * 1024
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 403, 404, 409, 413, 422, 503)
}


def error_response(status: int, code: str, reason: str, param: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "reason": reason}
    if param is not None:
        body["param"] = param
    body.update(extra)
    return JSONResponse(body, status_code=status)


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FacewatchError)
    async def _typed(_: Request, exc: FacewatchError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers() or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "BAD_PARAM", "the body is not valid JSON")
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _validation_param(tuple(first.get("loc", ())))
        reason = str(first.get("msg", "invalid request"))
        return error_response(422, "BAD_PARAM", f"{param}: {reason}" if param else reason, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "AUTH_FAILED", 403: "FORBIDDEN", 404: "NOT_FOUND", 413: "TOO_LARGE"}.get(
            exc.status_code, "BAD_PARAM"
        )
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot store or compare (PostgreSQL: a NUL character in a text, a
        # number out of the column's range): bad input, not a server fault; the transaction rolls back.
        log.info("database rejected a value: %s", exc.orig)
        return error_response(400, "BAD_PARAM", "a value is not valid for the database (NUL character or out of range)")

    @app.exception_handler(OverflowError)
    async def _overflow(_: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's twin of PostgreSQL's "out of range" DataError: an integer beyond 64 bits.
        log.info("value out of range: %s", exc)
        return error_response(400, "BAD_PARAM", "a number is out of range")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "INTERNAL", "internal error; the server log has the details")


class BodyLimit:
    """Rejects oversize bodies with 413 before they are read into memory (ASGI middleware).

    `upload_note` is added to the refusal of a form upload (multipart) held to the default limit: that
    limit follows the upload setting, and the reason should name what to change."""

    def __init__(self, app: ASGIApp, limits: dict[str, int], default: int, upload_note: str = "") -> None:
        self.app, self.limits, self.default, self.upload_note = app, limits, default, upload_note

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path.startswith(prefix):
                return limit
        return self.default

    def refusal(self, scope: Scope, limit: int) -> JSONResponse:
        reason = f"the body is larger than {limit} bytes"
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if self.upload_note and limit == self.default and content_type.lower().startswith(b"multipart/form-data"):
            reason += f"; {self.upload_note}"
        return error_response(413, "TOO_LARGE", reason)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self.refusal(scope, limit)(scope, receive, send)
            return
        seen, exceeded, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise _BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            # A body without Content-Length (chunked) is cut off while the app reads it; FastAPI turns
            # that into its own 400 "error parsing the body", which is replaced here by the 413.
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:  # (_BodyTooLarge itself, possibly wrapped by a middleware)
                raise
        if exceeded and not started:
            await self.refusal(scope, limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


class RequestIdAndAudit:
    """Gives every answer an X-Request-ID and audits every /v1 write (ASGI middleware).

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs each request
    through an extra task and memory stream, which cost the console-load benchmark's pages measurably."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = request_id
        writes = request.method in MUTATING and scope["path"].startswith("/v1/")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
                if writes:
                    # Any write may have revoked a token, ended a session, changed a user or hidden a group
                    # or list: before its answer leaves, this replica forgets every kept caller and scope.
                    request.app.state.request_cache.clear()
                    _audit(request, message["status"], request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)


def _audit(request: Request, status: int, request_id: str) -> None:
    caller = getattr(request.state, "caller", None)
    try:
        with UnitOfWork(request.app.state.config.database_url) as uow:
            uow.audit.record(
                user_id=caller.user_id if caller else None,
                # A failed sign-in has no caller: the user name it tried (routes/auth.py) is kept instead.
                username=caller.username if caller else getattr(request.state, "audit_username", ""),
                method=request.method,
                path=request.url.path,
                status=status,
                request_id=request_id,
            )
            uow.commit()
    except FacewatchError:
        # The call itself already answered; a briefly unavailable DB must not turn it into an error.
        log.warning("audit record not written for %s %s", request.method, request.url.path)


def create_app(config: Config, services: Services | None = None) -> FastAPI:
    """The API app; `services` (extractor pool, galleries) enables the face endpoints (503 without)."""
    app = FastAPI(
        title="facewatch",
        version=__version__,
        description="Video face recognition on Ray: cameras, watch lists, events, search.",
        responses=ERROR_RESPONSES,
        dependencies=[Depends(refuse_nul_in_url)],
    )
    app.state.config = config
    app.state.media = LocalMediaStore(config.media_root)
    app.state.services = services
    app.state.request_cache = TtlCache(config.auth_cache_ttl_s)  # callers and scopes (deps.py)
    app.router.on_startup.append(lambda: start_link_scheduler(app))
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limits={"/v1/videos": 4 * 1024**3, "/v1/tasks": 4 * 1024**3 + 65536},
                       default=max(config.max_upload_bytes + 65536, JSON_BODY_LIMIT),
                       upload_note=f"a file may be at most {config.max_upload_bytes} bytes ({UPLOAD_LIMIT_SETTING})")
    # Added last, so outermost: every answer, the body limit's 413 included, gets a request id and an audit row.
    app.add_middleware(RequestIdAndAudit)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # event_stream before events: /events/stream must not be taken for an event id.
    for module in (camera_groups, cameras, watch_lists, dossiers, faces, search, galleries, event_stream, events,
                   episodes, media, webhooks, users, tokens, settings, audit, jobs, videos, vms, links, tasks,
                   still_events, auth, live_view, persons, negatives):
        app.include_router(module.router, prefix="/v1")
    # Last: the console's catch-all (deep links answer index.html) must not shadow any API route.
    mount_console(app)
    install_openapi_links(app)
    return app
