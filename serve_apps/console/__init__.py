"""The web console: a single-page application served by the API itself (same origin as `/v1`).

`/` and the console's page paths (`/events/12`, `/cameras/3`) answer `index.html`, so deep
links and reloads work; the page's modules, CSS and icons are under `/console/`. Nothing is built or
downloaded: the files in `static/` are what the browser runs, and a Content-Security-Policy keeps the
page from loading anything from another host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# The console's own top-level paths (its router's sections, see static/app.js): deep links under them
# answer index.html. Only these, so no API path, present or added later, is ever shadowed.
SECTIONS = ("signin", "events", "episodes", "persons", "wall", "search", "verify", "dossiers", "watch-lists", "cameras",
            "videos", "admin", "account")
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: data:; "
       "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
       "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin"}


class ConsoleFiles(StaticFiles):
    """Static assets, revalidated on every load (ETag), so an upgrade is never masked by a stale cache."""

    async def get_response(self, path: str, scope: dict) -> Response:  # type: ignore[override]
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_console(app: FastAPI) -> None:
    """Serves the console on `app`: its assets under `/console/`, its page at `/` and its sections."""
    app.mount("/console", ConsoleFiles(directory=STATIC), name="console")

    def console_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)

    app.add_api_route("/", console_page, methods=["GET"], include_in_schema=False)
    for section in SECTIONS:
        app.add_api_route(f"/{section}", console_page, methods=["GET"], include_in_schema=False)
        app.add_api_route(f"/{section}/{{rest:path}}", console_page, methods=["GET"], include_in_schema=False)
