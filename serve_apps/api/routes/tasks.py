"""/v1/tasks: long-running tasks (export, cross-match, clean-up, re-extract, evaluate, estimate).

`POST /v1/tasks` answers 201 with the task at once (status `pending`); the task supervisor
(`actors.task_supervisor`) runs it. JSON `{"kind", "params", "notify_url"?}`, or multipart with the
same fields (`params` as JSON text) plus `file` (the ZIP of `evaluate` / `estimate`). Operators and
admins create tasks (`cleanup` and `reextract`, and server folders as a source, are admin-only); a
caller sees their own tasks, admins every task.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import AnyHttpUrl, BaseModel, Field, ValidationError

from actors.task_supervisor import wake_supervisor
from actors.tasks.context import TaskContext
from facewatch import tasks as rules
from facewatch.errors import BadParam, Conflict, Forbidden, NotFound, TooLarge
from facewatch.task_params import ADMIN_KINDS, ARCHIVE_KINDS, PARAMS
from serve_apps.api.deps import Caller, Media, Operator, Pages, Uow, scope_of
from serve_apps.api.schemas import DbId, Input, Page
from storage import orm
from storage import tasks as store
from storage.unit_of_work import UnitOfWork

router = APIRouter(prefix="/tasks", tags=["tasks"])
MAX_ARCHIVE_BYTES = 4 * 1024**3
TaskKind = Literal["export", "cross_match", "cleanup", "reextract", "evaluate", "estimate"]


class TaskIn(Input):
    kind: TaskKind
    params: dict[str, Any] = Field(default_factory=dict)
    notify_url: AnyHttpUrl | None = None


class PartError(BaseModel):
    part_id: int
    seq: int
    code: str
    error: str
    attempts: int
    at: str | None


class TaskOut(BaseModel):
    id: int
    kind: str
    status: Literal["pending", "running", "done", "failed", "cancelled"]
    params: dict[str, Any]
    notify_url: str | None
    created_by: str
    parts_total: int
    parts_done: int
    parts_failed: int
    summary: dict[str, Any]
    error: str
    result_name: str | None
    result_size: int
    result_url: str | None = None
    errors: list[PartError] = Field(default_factory=list)
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None


def _ctx(request: Request) -> TaskContext:
    return TaskContext(request.app.state.config, "")


def task_out(uow: UnitOfWork, task: orm.Task, with_errors: bool = False) -> TaskOut:
    data = store.task_dict(task)
    data["params"] = {k: v for k, v in data["params"].items() if not k.startswith("_")}
    data["result_url"] = f"/v1/tasks/{task.id}/result" if task.status == rules.DONE and task.result_name else None
    if with_errors:
        data["errors"] = store.part_errors(uow.session, task.id)
    return TaskOut(**data)


def _validated(kind: str, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    if kind in ADMIN_KINDS and caller.role != "admin":
        raise Forbidden(f"only admins may run {kind} tasks", param="kind")
    if params.get("path") is not None and caller.role != "admin":
        raise Forbidden("only admins may name a server folder", param="params.path")
    if any(k.startswith("_") for k in params):
        raise BadParam("parameter names may not start with '_'", param="params")
    try:
        model = PARAMS[kind].model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadParam(f"params.{where}: {first['msg']}" if where else f"params: {first['msg']}",
                       param=f"params.{where}" if where else "params") from None
    return model.model_dump(mode="json", exclude_none=True)


async def _read_request(request: Request, media: Any) -> TaskIn:
    """The task from JSON, or from a multipart form whose `file` is stored in the media store."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = await request.json()
        except ValueError:
            raise BadParam("the body is not valid JSON") from None
        archive_key = None
    else:
        form = await request.form()
        raw = {k: v for k, v in form.items() if isinstance(v, str) and v != ""}
        if "params" in raw:
            try:
                raw["params"] = json.loads(raw["params"])
            except ValueError:
                raise BadParam("params must be JSON text", param="params") from None
        upload = form.get("file")
        archive_key = await _store_upload(upload, media) if upload is not None and not isinstance(upload, str) else None
    try:
        body = TaskIn.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        raise BadParam(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    if archive_key is not None:
        if body.kind not in ARCHIVE_KINDS:
            raise BadParam(f"a {body.kind} task takes no file", param="file")
        body.params = {**body.params, "archive_key": archive_key}
    return body


async def _store_upload(upload: Any, media: Any) -> str:
    """Streams the upload to a temporary file, then into the media store (never whole in memory)."""
    with tempfile.NamedTemporaryFile(suffix=".zip", delete=False) as tmp:
        size = 0
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > MAX_ARCHIVE_BYTES:
                Path(tmp.name).unlink(missing_ok=True)
                raise TooLarge(f"the file is larger than {MAX_ARCHIVE_BYTES} bytes", param="file")
            tmp.write(chunk)
    try:
        return media.put_file(Path(tmp.name), "zip")
    finally:
        Path(tmp.name).unlink(missing_ok=True)


TASK_FORM = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"type": "string", "enum": list(PARAMS)},
    "params": {"type": "string", "description": "the kind's parameters as JSON text"},
    "notify_url": {"type": "string", "format": "uri"},
    "file": {"type": "string", "format": "binary", "description": "evaluate / estimate: a ZIP of photos"},
}}


@router.post("", status_code=201, response_model=TaskOut, openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": TaskIn.model_json_schema()},
    "multipart/form-data": {"schema": TASK_FORM},
}, "required": True}})
async def create_task(request: Request, uow: Uow, media: Media, caller: Operator) -> TaskOut:
    body = await _read_request(request, media)
    params = _validated(body.kind, body.params, caller)
    scope = scope_of(uow, caller)  # a task sees what its creator sees (storage/visibility.py)
    lists, groups = sorted(scope.hidden_list_ids), sorted(scope.hidden_group_ids)
    if lists or groups:
        params = {**params, "_hidden_watch_lists": lists, "_hidden_camera_groups": groups}
    task = store.create_task(uow.session, body.kind, params, str(body.notify_url) if body.notify_url else "",
                             caller.username)
    uow.commit()
    wake_supervisor()
    return task_out(uow, task)


def _own(uow: UnitOfWork, task_id: int, caller: Caller) -> orm.Task:
    task = uow.session.get(orm.Task, task_id)
    if task is None or (caller.role != "admin" and task.created_by != caller.username):
        raise NotFound(f"task {task_id} does not exist", param="id")
    return task


@router.get("", response_model=Page[TaskOut])
def list_tasks(
    uow: Uow, caller: Operator, paging: Pages,
    status: Annotated[Literal["pending", "running", "done", "failed", "cancelled"] | None, Query()] = None,
    kind: Annotated[TaskKind | None, Query()] = None,
) -> Page[TaskOut]:
    """Newest first."""
    owner = None if caller.role == "admin" else caller.username
    page = store.page_of_tasks(uow.session, owner, status, kind, paging.limit, paging.cursor)
    return Page(results=[task_out(uow, t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", response_model=TaskOut)
def get_task(task_id: DbId, uow: Uow, caller: Operator) -> TaskOut:
    """The task with its parts' progress and every failed part's error."""
    return task_out(uow, _own(uow, task_id, caller), with_errors=True)


@router.post("/{task_id}/cancel", response_model=TaskOut)
def cancel_task(task_id: DbId, uow: Uow, caller: Operator) -> TaskOut:
    task = _own(uow, task_id, caller)
    store.set_status(uow.session, task, rules.CANCELLED)
    uow.commit()
    wake_supervisor()
    return task_out(uow, task, with_errors=True)


@router.delete("/{task_id}", status_code=204)
def delete_task(task_id: DbId, request: Request, uow: Uow, media: Media, caller: Operator) -> Response:
    """Cancels the task if it still runs, then removes it, its parts, its result files and its upload."""
    task = _own(uow, task_id, caller)
    if task.status in rules.ACTIVE:
        store.set_status(uow.session, task, rules.CANCELLED)
    archive = (task.params or {}).get("archive_key")
    uow.session.delete(task)
    uow.commit()
    _ctx(request).remove_task_dir(task_id)
    if archive and store.archive_unused(uow.session, str(archive)):
        media.delete(str(archive))
    wake_supervisor()
    return Response(status_code=204)


# A result file's media type by its extension; the schema documents the same set (the fuzz checks it).
RESULT_TYPES = {".zip": "application/zip", ".json": "application/json", ".png": "image/png",
                ".jsonl": "application/x-ndjson"}
OTHER_RESULT = "application/octet-stream"
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get("/{task_id}/result", response_class=Response, responses={200: {
    "description": "the result file", "content": {t: _BINARY for t in (*RESULT_TYPES.values(), OTHER_RESULT)}}})
def task_result(
    task_id: DbId, request: Request, uow: Uow, caller: Operator,
    file: Annotated[str | None, Query(max_length=100, description="another result file, e.g. roc.png")] = None,
) -> FileResponse:
    """The result as a download (streamed from the results folder), once the task is `done`."""
    task = _own(uow, task_id, caller)
    if task.status != rules.DONE:
        raise Conflict(f"the task is {task.status}; its result is available once it is done", param="id")
    extra = list((task.summary or {}).get("files", []))
    name = task.result_name if file is None else file
    if not name or (file is not None and file not in extra):
        raise NotFound("this task has no such result file" if file else "this task has no result file",
                       param="file" if file else "id")
    path = _ctx(request).results_root / str(task_id) / name
    if not path.is_file():
        raise NotFound("the result file is gone", param="id")
    return FileResponse(path, media_type=RESULT_TYPES.get(path.suffix, OTHER_RESULT), filename=name)
