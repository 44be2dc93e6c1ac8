"""The console's files as the API serves them: index.html for its pages, assets under /console/, no
shadowed API path, no asset from another host, every module import resolvable (no build step)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from serve_apps.console import SECTIONS, STATIC
from tests.conftest import ApiClient

IMPORT = re.compile(r"""(?:^|\s)(?:import|export)\s[^;]*?from\s+["']([^"']+)["']"""
                    r"""|import\(\s*[`"']([^`"']+)[`"']""", re.M)


@pytest.mark.parametrize("path", ["/", "/events", "/events/ev-123", "/cameras/3", "/admin/users", "/signin", "/persons",
                                  "/persons/12"])
def test_console_pages_answer_index_html(api: ApiClient, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/app.js">' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp


def test_assets_are_served_and_api_paths_are_not_shadowed(api: ApiClient) -> None:
    js = api.client.get("/console/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert api.client.get("/console/style.css").headers["content-type"].startswith("text/css")
    assert api.client.get("/console/missing.js").status_code == 404
    unknown = api.get("/v1/no-such-thing")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
    assert api.client.get("/openapi.json").json()["paths"].keys() >= {"/v1/events", "/v1/dossiers"}
    assert not any(p == "/" or p.split("/")[1] in SECTIONS for p in api.client.get("/openapi.json").json()["paths"])


def _assets() -> list[Path]:
    return [p for p in STATIC.rglob("*") if p.is_file()]


def test_every_module_import_resolves_to_a_served_file() -> None:
    modules = [p for p in _assets() if p.suffix == ".js"]
    assert len(modules) >= 10
    for module in modules:
        for static, dynamic in IMPORT.findall(module.read_text()):
            target = static or dynamic
            if "${" in target:  # the router's `./pages/${name}.js`: every page it names must exist
                continue
            assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"
    router = (STATIC / "app.js").read_text()
    for page in set(re.findall(r'\["/[^"]*", "(\w+)"', router)):
        assert (STATIC / "pages" / f"{page}.js").is_file(), page


def test_no_asset_refers_to_another_host() -> None:
    for asset in _assets():
        text = asset.read_text(errors="replace")
        for url in re.findall(r"https?://[^\s\"'<>)]+", text):
            assert url.startswith("http://www.w3.org/2000/svg"), f"{asset.name} refers to {url}"


CALL = re.compile(r"""\b(?:api\(\s*"(GET|POST|PUT|PATCH|DELETE)",\s*|get\(\s*)[`"'](/v1/[^`"']*)[`"']""")


def _api_calls(module: Path) -> set[tuple[str, str]]:
    """(method, path pattern) of every API call a page makes; `${…}` in a template is a path parameter."""
    calls = set()
    for method, path in CALL.findall(module.read_text()):
        calls.add((method or "GET", re.sub(r"\$\{[^}]*\}", "{}", path.split("?")[0])))
    return calls


def test_persons_page_is_routed_and_calls_only_real_persons_operations(api: ApiClient) -> None:
    """The persons page (issue 13 item 6) is in the menu and every call it makes (grid, history,
    merge, "not this person", promote) is an operation the API documents, with that method."""
    router = (STATIC / "app.js").read_text()
    assert '["/persons", "persons", "Persons"]' in router and '["/persons/:id", "persons"]' in router
    documented = {(method.upper(), re.sub(r"\{[^}]*\}", "{}", path))
                  for path, operations in api.client.get("/openapi.json").json()["paths"].items()
                  for method in operations}
    calls = _api_calls(STATIC / "pages" / "persons.js")
    wanted = {("GET", "/v1/persons"), ("GET", "/v1/persons/{}"), ("GET", "/v1/persons/{}/events"),
              ("POST", "/v1/persons/{}/merge"), ("DELETE", "/v1/persons/{}/events/{}"),
              ("POST", "/v1/persons/{}/promote")}
    assert wanted <= calls, wanted - calls
    assert calls <= documented, calls - documented
