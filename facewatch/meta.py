"""User metadata (`meta`) rules shared by the API, storage and tasks: size cap and filter names."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from facewatch.errors import BadParam

META_MAX_BYTES = 4096
MAX_META_FILTERS = 10
KEY_PATTERN = re.compile(r"^meta\.([A-Za-z0-9_-]{1,64}?)(?:__(gte|gt|lte|lt))?$")


def meta_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `meta.*` entries of a mapping of parameters (others are left to their own handling)."""
    found = {k: v for k, v in params.items() if k.startswith("meta.") or k.startswith("meta__")}
    if len(found) > MAX_META_FILTERS:
        raise BadParam(f"at most {MAX_META_FILTERS} meta filters", param="meta")
    for key in found:
        if not KEY_PATTERN.match(key):
            raise BadParam(f"{key!r} is not a meta filter (meta.<key> or meta.<key>__gte|gt|lte|lt)", param=key)
    return found


def check_meta(value: Any, param: str = "meta") -> dict[str, Any]:
    """A metadata object as stored: a JSON object of at most META_MAX_BYTES bytes (as compact JSON)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadParam(f"{param} must be a JSON object", param=param)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > META_MAX_BYTES:
        raise BadParam(f"{param} is {size} bytes; at most {META_MAX_BYTES}", param=param)
    return value
