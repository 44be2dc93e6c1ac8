"""`facewatch enroll DIR --watch-list NAME`: one dossier per photo file, or per sub-folder of photos.

It talks to the HTTP API: to a running service when one answers (FACEWATCH_URL, or the local port),
otherwise it starts the service in this process for the duration of the run. Progress is kept in a
state file under FACEWATCH_HOME, so a second run skips what is done and `--failed` retries only the
failures. A dossier is named from the file's stem (or the folder's name) and tagged with an
`external_id` (`enroll:<watch list>:<relative path>`), so a rerun finds it instead of duplicating it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from facewatch.settings import Config
from storage import orm

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class Person:
    key: str  # path relative to DIR: a file, or a folder
    name: str
    photos: list[Path]


def find_people(root: Path) -> list[Person]:
    """Photo files directly in `root` are one person each; each sub-folder is one person."""
    people = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() in PHOTO_SUFFIXES:
            people.append(Person(entry.name, entry.stem, [entry]))
        elif entry.is_dir():
            photos = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
            if photos:
                people.append(Person(entry.name + "/", entry.name, photos))
    return people


class EnrollState:
    """Per-item outcome of earlier runs over the same folder and watch list."""

    def __init__(self, home: Path, root: Path, watch_list: str) -> None:
        digest = hashlib.sha1(f"{root.resolve()}|{watch_list}".encode()).hexdigest()[:16]
        self.path = home / "enroll" / f"{digest}.json"
        self.items: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.items, indent=1))
        os.replace(tmp, self.path)


class Api:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 500 or response.status_code in (401, 403):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def watch_list_id(self, name: str) -> int:
        for item in self.call("GET", "/v1/watch-lists", params={"name_contains": name, "limit": 1000}).json()[
                "results"]:
            if item["name"] == name:
                return item["id"]
        created = self.call("POST", "/v1/watch-lists", json={"name": name})
        created.raise_for_status()
        return created.json()["id"]

    def dossier_for(self, person: Person, tag: str, watch_list_id: int) -> dict[str, Any]:
        found = self.call("GET", "/v1/dossiers", params={"external_id": tag, "limit": 1}).json()["results"]
        if found:
            return found[0]
        created = self.call("POST", "/v1/dossiers", json={"name": person.name, "external_id": tag,
                                                          "watch_list_ids": [watch_list_id]})
        created.raise_for_status()
        return created.json()


def enroll_person(api: Api, person: Person, watch_list: str, watch_list_id: int) -> list[dict[str, Any]]:
    """Enrol every photo of one person; a dossier left without any face is removed again."""
    tag = f"enroll:{watch_list}:{person.key}"
    dossier = api.dossier_for(person, tag, watch_list_id)
    results = []
    for photo in person.photos:
        response = api.call("POST", f"/v1/dossiers/{dossier['id']}/faces",
                            files={"photo": (photo.name, photo.read_bytes())})
        ok = response.status_code == 201
        results.append({"file": str(photo), "dossier": person.name, "dossier_id": dossier["id"] if ok else None,
                        "status": "ok" if ok else "failed", "error": None if ok else response.json().get("code")})
    if not any(r["status"] == "ok" for r in results):
        faces = api.call("GET", f"/v1/dossiers/{dossier['id']}/faces").json()["results"]
        if not faces:
            api.call("DELETE", f"/v1/dossiers/{dossier['id']}")
    return results


@contextmanager
def api_session(config: Config, token: str | None, url: str | None) -> Iterator[Api]:
    """An API client: to `url` / a service already answering, or to one started here."""
    remote = url or config.url
    base = remote or f"http://{config.http_host}:{config.http_port}"
    token = token or config.admin_token
    if _answers(base):
        if not token and remote:
            raise SystemExit("a facewatch service answers at " + base + ": give --token or FACEWATCH_ADMIN_TOKEN")
        with _run_token(config, token) as run_token, httpx.Client(
                base_url=base, headers={"Authorization": f"Token {run_token}"}, timeout=120) as client:
            yield Api(client)
        return
    from cluster.http_client import wait_healthy
    from cluster.service import start_service, stop_service

    print(f"No service at {base}: starting one for this run ...", file=sys.stderr)
    # Ray's driver prints its own messages to stdout; keep stdout for the command's output (--json).
    with redirect_stdout(sys.stderr):
        started = start_service(config)
    if started.admin_token:
        print(f"First start: the admin token is {started.admin_token} (shown once; keep it)", file=sys.stderr)
    try:
        with _run_token(config, token or started.admin_token) as run_token, httpx.Client(
                base_url=started.url, headers={"Authorization": f"Token {run_token}"}, timeout=120) as client:
            wait_healthy(client)
            yield Api(client)
    finally:
        with redirect_stdout(sys.stderr):
            stop_service()


@contextmanager
def _run_token(config: Config, token: str | None) -> Iterator[str]:
    """`token`, or one made for this run in the installation's own database (the local service reads
    the same database) and deleted afterwards, so the CLI works run after run without a token."""
    if token:
        yield token
        return
    from storage.db import migrate
    from storage.tokens import local_admin_token
    from storage.unit_of_work import UnitOfWork

    migrate(config.database_url)
    expires = datetime.now(UTC) + timedelta(days=1)  # outlives a long run; never a lasting credential
    with UnitOfWork(config.database_url) as uow:
        _, row, plain = local_admin_token(uow, name="facewatch enroll (this run)", expires_at=expires)
        token_id = row.id
    try:
        yield plain
    finally:
        with UnitOfWork(config.database_url) as uow:
            row = uow.session.get(orm.Token, token_id)
            if row is not None:
                uow.session.delete(row)
                uow.commit()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def run_enroll(config: Config, root: Path, watch_list: str, *, failed_only: bool = False, token: str | None = None,
               url: str | None = None) -> dict[str, Any]:
    if not root.is_dir():
        raise SystemExit(f"{root} is not a folder")
    people = find_people(root)
    state = EnrollState(config.home, root, watch_list)
    todo = [p for p in people if (state.items.get(p.key, {}).get("status") == "failed") == failed_only
            and (failed_only or state.items.get(p.key, {}).get("status") != "ok")]
    results: list[dict[str, Any]] = []
    if todo:
        with api_session(config, token, url) as api:
            watch_list_id = api.watch_list_id(watch_list)
            for person in tqdm(todo, desc="enrolling", unit="person", file=sys.stderr):
                outcome = enroll_person(api, person, watch_list, watch_list_id)
                results.extend(outcome)
                ok = any(r["status"] == "ok" for r in outcome)
                state.items[person.key] = {"status": "ok" if ok else "failed",
                                           "dossier_id": next((r["dossier_id"] for r in outcome if r["dossier_id"]),
                                                              None)}
                state.save()
    enrolled = sum(1 for r in results if r["status"] == "ok")
    return {"enrolled": enrolled, "failed": len(results) - enrolled, "results": results,
            "skipped": len(people) - len(todo)}
