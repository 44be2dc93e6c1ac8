"""Multipart forms are documented as they are read: `read_file_query` (serve_apps/api/services.py) takes an
empty form field for an absent one (browsers send every field of a form), so an optional text field may
not claim a minimum length the route never enforces. Found by the full-service fuzz: `POST /v1/videos` with
an empty `name` was accepted (the file's name is used) while the schema said `minLength: 1`."""

from __future__ import annotations

from facewatch.settings import load_config
from serve_apps.api.app import create_app


def test_no_optional_form_text_field_claims_a_minimum_length() -> None:
    config = load_config({"FACEWATCH_HOME": "/nonexistent/facewatch-forms", "FACEWATCH_DATABASE_URL": "sqlite://"})
    openapi = create_app(config).openapi()
    forms = 0
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            if form is None or "properties" not in form.get("schema", {}):
                continue
            forms += 1
            required = set(form["schema"].get("required", []))
            for name, field in form["schema"]["properties"].items():
                if name not in required and field.get("type") == "string":
                    assert field.get("minLength", 0) == 0, f"{method.upper()} {path}: form field {name}"
    assert forms >= 4
