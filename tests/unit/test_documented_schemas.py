"""The schema documents answers and forms as the routes really send and read them (both found by the
full-service fuzz, tests/cluster/test_api_fuzz_service.py).

Multipart forms: `read_file_query` (serve_apps/api/services.py) takes an empty form field for an absent one
(browsers send every field of a form), so an optional text field may not claim a minimum length the route
never enforces: `POST /v1/videos` with an empty `name` was accepted (the file's name is used) while the
schema said `minLength: 1`."""

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


def test_a_task_result_documents_every_media_type_it_is_sent_as() -> None:
    """Found by the full-service fuzz: an export's zip came back as application/zip, documented as JSON."""
    from serve_apps.api.routes.tasks import OTHER_RESULT, RESULT_TYPES

    config = load_config({"FACEWATCH_HOME": "/nonexistent/facewatch-forms", "FACEWATCH_DATABASE_URL": "sqlite://"})
    answer = create_app(config).openapi()["paths"]["/v1/tasks/{task_id}/result"]["get"]["responses"]["200"]
    assert set(answer["content"]) == {*RESULT_TYPES.values(), OTHER_RESULT}
