"""Typed errors shared by storage, actors and the API.

Each error carries the API code and HTTP status of SPEC §5.1, so any layer can raise it and the
API answers `{"code": ..., "reason": ..., "param": ...}` without a lookup table in between.
"""

from __future__ import annotations

from typing import Any


class FacewatchError(Exception):
    code = "INTERNAL"
    status = 500

    def __init__(self, reason: str, param: str | None = None, **extra: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.param = param
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries beside the body (none, except where a subclass says)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.param is not None:
            body["param"] = self.param
        body.update(self.extra)
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> FacewatchError:
        """The error `to_dict` described, as its own type (errors that crossed a process boundary)."""
        fields = dict(body)
        code = fields.pop("code", cls.code)
        reason = str(fields.pop("reason", "unknown error"))
        param = fields.pop("param", None)
        kind = _by_code(FacewatchError).get(code)
        if kind is None:
            error = FacewatchError(reason, param, **fields)
            error.code = str(code)
            return error
        return kind(reason, param, **fields)


class AuthFailed(FacewatchError):
    code, status = "AUTH_FAILED", 401


class Forbidden(FacewatchError):
    code, status = "FORBIDDEN", 403


class NotFound(FacewatchError):
    code, status = "NOT_FOUND", 404


class BadParam(FacewatchError):
    code, status = "BAD_PARAM", 400


class Conflict(FacewatchError):
    code, status = "CONFLICT", 409


class TooLarge(FacewatchError):
    code, status = "TOO_LARGE", 413


class NoFace(FacewatchError):
    code, status = "NO_FACE", 422


class TooManyFaces(FacewatchError):
    code, status = "TOO_MANY_FACES", 422


class BadImage(FacewatchError):
    code, status = "BAD_IMAGE", 422


class LowQuality(FacewatchError):
    code, status = "LOW_QUALITY", 422


class TooManyRequests(FacewatchError):
    """Refused for now (e.g. too many failed sign-ins); `retry_after_s` says when to try again."""

    code, status = "TOO_MANY_REQUESTS", 429

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(self.extra.get("retry_after_s", 1)))}


class ServiceUnavailable(FacewatchError):
    code, status = "SERVICE_UNAVAILABLE", 503


def _by_code(root: type[FacewatchError]) -> dict[str, type[FacewatchError]]:
    kinds = {root.code: root}
    for sub in root.__subclasses__():
        # A subclass that keeps its parent's code does not take the code over.
        kinds.update({code: kind for code, kind in _by_code(sub).items() if "code" in kind.__dict__})
    return kinds
