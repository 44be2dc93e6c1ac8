"""The task state machine, part results committed once, metadata filters, webhook notices (no Ray)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from actors.tasks.evaluate import evaluate, identification, rates, roc
from facewatch import tasks as rules
from facewatch.errors import BadParam, Conflict
from facewatch.meta import check_meta
from storage import orm
from storage import tasks as store
from storage.event_queries import filter_events
from storage.meta_filters import apply_meta
from storage.notices import notice_payloads
from storage.unit_of_work import UnitOfWork


def test_task_moves() -> None:
    assert rules.can_move("pending", "running") and rules.can_move("running", "done")
    assert rules.can_move("pending", "cancelled") and rules.can_move("running", "cancelled")
    for final in ("done", "failed", "cancelled"):
        for new in rules.TASK_STATUSES:
            assert not rules.can_move(final, new)
    assert not rules.can_move("pending", "done")  # a task is planned (running) before it can finish
    with pytest.raises(rules.TransitionError):
        rules.check_move("done", "cancelled")


def test_outcome_and_chunks() -> None:
    assert rules.outcome(rules.progress(["done", "running"])) is None
    assert rules.outcome(rules.progress(["done", "failed"])) == "done"  # partial results, errors listed
    assert rules.outcome(rules.progress(["failed", "failed"])) == "failed"
    assert rules.outcome(rules.progress([])) == "done"  # nothing matched the filters: an empty result
    assert rules.chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert rules.chunks([], 3) == [[]]
    assert rules.should_retry_part(2, 3) and not rules.should_retry_part(3, 3)


pytestmark = pytest.mark.pg_capable


def _task(uow: UnitOfWork, parts: int = 2) -> orm.Task:
    task = store.create_task(uow.session, "export", {"target": "events"}, "http://127.0.0.1:9/x", "admin")
    store.add_parts(uow.session, task, [{"ids": [i]} for i in range(parts)])
    store.set_status(uow.session, task, rules.RUNNING)
    uow.commit()
    return task


def test_a_part_result_commits_once(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        task = _task(uow)
        part_ids = [p.id for p in store.all_parts(uow.session, task.id)]
    with UnitOfWork(db_url) as uow:
        assert store.commit_part(uow.session, part_ids[0], {"rows": 3}) is True
        uow.commit()
    with UnitOfWork(db_url) as uow:  # the same part run again (a lost worker): nothing changes
        assert store.commit_part(uow.session, part_ids[0], {"rows": 99}) is False
        assert store.fail_part(uow.session, part_ids[0], "X", "late failure") is False
        uow.commit()
    with UnitOfWork(db_url) as uow:
        parts = store.all_parts(uow.session, task.id)
        assert parts[0].result == {"rows": 3} and parts[0].status == "done"
        task = uow.session.get(orm.Task, task.id)
        p = store.refresh_counts(uow.session, task)
        assert (p.total, p.done, p.open) == (2, 1, 1)
        store.add_parts(uow.session, task, [{"ids": []}] * 5)  # planning twice adds nothing
        assert len(store.all_parts(uow.session, task.id)) == 2


def test_status_changes_queue_notifications_and_final_tasks_refuse_moves(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        task = _task(uow, parts=1)
        store.set_status(uow.session, task, rules.CANCELLED)
        uow.commit()
        assert [v["status"] for v in task.notify_pending] == ["pending", "running", "cancelled"]
        with pytest.raises(Conflict):
            store.set_status(uow.session, task, rules.DONE)
        view = task.notify_pending[0]
        store.drop_notification(uow.session, task.id, view)
        uow.commit()
        assert [v["status"] for v in uow.session.get(orm.Task, task.id).notify_pending] == ["running", "cancelled"]


def test_meta_filters_equality_and_ranges(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="g"))
        metas = [{"badge": 42, "floor": 3}, {"badge": "42", "floor": 5.5}, {"badge": 7, "floor": "top"}, {}]
        for n, meta in enumerate(metas):
            uow.session.add(orm.Event(id=f"e{n}", camera_group_id=group.id, meta=meta, external_id=f"x{n}"))
        uow.commit()
        dialect = uow.session.get_bind().dialect.name

        def ids(filters: dict) -> list[str]:
            stmt = filter_events(select(orm.Event.id), filters, dialect)
            return sorted(uow.session.scalars(stmt))

        assert ids({"meta.badge": "42"}) == ["e0", "e1"]
        assert ids({"meta.floor__gte": "3"}) == ["e0", "e1"]  # "top" is not a number: not in a range
        assert ids({"meta.floor__gt": 3, "meta.floor__lte": 6}) == ["e1"]
        assert ids({"meta.floor__lt": "3"}) == []
        assert ids({"external_id": "x2"}) == ["e2"]
        assert ids({"meta.badge": "42", "external_id": "x1"}) == ["e1"]
        with pytest.raises(BadParam):
            ids({"meta.floor__gte": "high"})
        with pytest.raises(BadParam):
            ids({"meta.bad key": "1"})
        stmt = apply_meta(select(orm.CameraGroup.id), orm.Event, {}, dialect)  # no filters: unchanged
        assert stmt is not None


def test_dossier_faces_filter_on_their_meta_and_external_id(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        dossier = uow.dossiers.add(orm.Dossier(name="Grace"))
        other = uow.dossiers.add(orm.Dossier(name="Ada"))
        metas = [({"year": 2019, "src": "scan"}, "s-1"), ({"year": 2015.5}, None), ({"year": "old"}, None)]
        faces = [uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, meta=m, external_id=x))
                 for m, x in metas]
        uow.dossier_faces.add(orm.DossierFace(dossier_id=other.id, meta={"year": 2019}))
        uow.commit()

        def ids(filters: dict) -> list[int]:
            return [f.id for f in uow.dossier_faces.for_dossier(dossier.id, filters)]

        assert ids({}) == [f.id for f in faces]
        assert ids({"meta.year__gte": "2016"}) == [faces[0].id]  # the other dossier's face is not listed
        assert ids({"meta.year__lt": 2019}) == [faces[1].id]  # "old" is not a number: in no range
        assert ids({"meta.year": "old"}) == [faces[2].id]
        assert ids({"external_id": "s-1"}) == ids({"meta.src": "scan"}) == [faces[0].id]
        with pytest.raises(BadParam):
            ids({"meta.year__gte": "soon"})


def test_a_vectors_clean_up_waits_for_a_re_extraction_under_way(db_url: str, tmp_path) -> None:
    from actors.tasks import cleanup
    from actors.tasks.context import TaskContext
    from tests.conftest import make_config

    ctx = TaskContext(make_config(tmp_path, db_url), "dlib_resnet_v1")
    with UnitOfWork(db_url) as uow:
        uow.session.add(orm.FaceVector(gallery="dossiers", item_id="1", model="facenet_vggface2", dim=2,
                                       vector=np.ones(2, np.float32).tobytes()))
        reextract = store.create_task(uow.session, "reextract", {"model": "facenet_vggface2"}, "", "admin")
        clean = store.create_task(uow.session, "cleanup", {"target": "vectors"}, "", "admin")
        uow.commit()
        with pytest.raises(Conflict, match=f"task {reextract.id}"):
            cleanup.plan(ctx, clean.id, {"target": "vectors"})
        store.set_status(uow.session, reextract, rules.CANCELLED)
        uow.commit()
        (part,) = cleanup.plan(ctx, clean.id, {"target": "vectors"})
        assert len(part["ids"]) == 1


def test_meta_is_capped_at_4_kb() -> None:
    assert check_meta({"a": 1}) == {"a": 1}
    with pytest.raises(BadParam):
        check_meta({"a": "x" * 5000})
    with pytest.raises(BadParam):
        check_meta([1, 2])


def test_camera_status_changes_become_webhook_notices(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="g"))
        other = uow.camera_groups.add(orm.CameraGroup(name="h"))
        camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=group.id, status="ok"))
        hooks = [orm.Webhook(title="status", url="http://127.0.0.1:9/a", event_types=["camera_status"]),
                 orm.Webhook(title="faces", url="http://127.0.0.1:9/b"),
                 orm.Webhook(title="elsewhere", url="http://127.0.0.1:9/c", event_types=["camera_status"],
                             filters={"camera_group_in": [other.id]})]
        for hook in hooks:
            uow.webhooks.add(hook)
        uow.commit()
        camera.status, camera.status_error = "failing", "connection refused"
        uow.commit()
        camera.stats = {"frames": 1}  # no status change: no notice
        uow.commit()
        camera.status, camera.status_error = "ok", ""
        uow.commit()
        rows = list(uow.session.scalars(select(orm.WebhookOutbox).order_by(orm.WebhookOutbox.id)))
        assert {r.webhook_id for r in rows} == {hooks[0].id}
        payloads = notice_payloads(uow.session, [r.event_id for r in rows])
        seen = [(payloads[r.event_id]["old_status"], payloads[r.event_id]["status"],
                 payloads[r.event_id]["error"]) for r in rows]
        assert seen == [("ok", "failing", "connection refused"), ("failing", "ok", "")]
        assert uow.session.scalar(select(func.count()).select_from(orm.WebhookNotice)) == 2


def test_events_do_not_reach_webhooks_that_did_not_subscribe_to_them(db_url: str) -> None:
    from storage.outbox import enqueue_event

    with UnitOfWork(db_url) as uow:
        uow.webhooks.add(orm.Webhook(title="tasks only", url="http://127.0.0.1:9/a", event_types=["task_status"]))
        faces = uow.webhooks.add(orm.Webhook(title="faces", url="http://127.0.0.1:9/b"))
        event = orm.Event(id="e1", timestamp=datetime.now(UTC))
        uow.session.add(event)
        assert enqueue_event(uow, event) == 1
        uow.commit()
        assert [r.webhook_id for r in uow.session.scalars(select(orm.WebhookOutbox))] == [faces.id]


def test_evaluation_metrics() -> None:
    people = ["a", "a", "b", "b", "c"]
    v = np.array([[1, 0], [0.95, 0.31], [0, 1], [0.1, 0.99], [0.7, 0.7]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    report = evaluate(v, people, lambda c: np.clip(c, 0, 1))
    assert report["genuine_pairs"] == 2 and report["impostor_pairs"] == 8
    assert rates(np.array([0.9, 0.5]), np.array([0.2, 0.8]), 0.75) == (0.5, 0.5)
    curve = roc(np.array([0.9, 0.95]), np.array([0.1, 0.2]))
    assert curve["auc"] == pytest.approx(1.0) and curve["eer"] == 0.0
    ident = identification(v, people)
    assert ident["probes"] == 4 and ident["top1"] == 1.0
