"""Keeping the watch-list gallery in step with dossier and watch-list edits.

The edit and the faces' new metadata commit together; then the shards replay the change log before
the route answers, so the next search or match already sees the change (no polling interval).
"""

from __future__ import annotations

import anyio.from_thread
from fastapi import Request

from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY


def sync_dossier_gallery(request: Request) -> None:
    """From a (threadpool) route: make the dossier gallery's shards replay the DB change log."""
    services = getattr(request.app.state, "services", None)
    if services is not None and services.galleries is not None:
        anyio.from_thread.run(services.galleries.sync_async, DOSSIERS_GALLERY)


def sync_events_gallery(request: Request) -> None:
    """The same for the events gallery (after events were erased)."""
    services = getattr(request.app.state, "services", None)
    if services is not None and services.galleries is not None:
        anyio.from_thread.run(services.galleries.sync_async, EVENTS_GALLERY)
