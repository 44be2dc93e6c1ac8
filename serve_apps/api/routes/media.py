"""GET /v1/media/{key}: event and dossier media (thumbnails, crops, frames, photos)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from facewatch.errors import NotFound
from serve_apps.api.deps import Media, Scope, Uow, Viewer

router = APIRouter(prefix="/media", tags=["media"])
CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
                 "mp4": "video/mp4"}


@router.get("/{key}", response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}}}})
def get_media(key: str, media: Media, _: Viewer, scope: Scope, uow: Uow) -> FileResponse:
    """A media file, for callers who see at least one event, dossier photo or video that refers to it
    (storage/visibility.py); anything else is NOT_FOUND, as if it did not exist."""
    path = media.path(key)
    if not path.is_file() or not scope.sees_media(uow.session, key):
        raise NotFound(f"media {key!r} does not exist", param="key")
    extension = key.rsplit(".", 1)[-1]
    return FileResponse(path, media_type=CONTENT_TYPES.get(extension, "application/octet-stream"),
                        headers={"Cache-Control": "private, max-age=86400, immutable"})
