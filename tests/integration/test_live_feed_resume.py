"""The live feed resumes after the event its client saw last even when that event is gone (issue 11,
item 13): the SSE id carries the feed position, so retention or erasure deleting the event no longer
makes the feed restart at "now" and skip every event in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.cluster.test_video_pipeline import sse_events
from tests.conftest import ApiClient


def test_resume_after_a_deleted_event(api: ApiClient, sqlite_url: str) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    with UnitOfWork(sqlite_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        for n in range(1, 5):
            uow.session.add(orm.Event(id=f"e-{n}", camera_group_id=group.id, timestamp=t0,
                                      created_at=t0 + timedelta(seconds=n, microseconds=n), bbox=[0, 0, 1, 1]))
        uow.commit()
    seen = sse_events(api.get("/v1/events/stream", params={"since": t0.isoformat(), "max_events": 2}).text)
    assert [e["id"] for e in seen] == ["e-1", "e-2"]
    last = seen[-1]["sse_id"]
    with UnitOfWork(sqlite_url) as uow:  # retention (or an erasure) removes the event the client saw last
        uow.session.delete(uow.events.get("e-2"))
        uow.commit()
    resumed = api.get("/v1/events/stream", params={"timeout_s": 1}, headers={"Last-Event-ID": last})
    assert [e["id"] for e in sse_events(resumed.text)] == ["e-3", "e-4"]
    # A plain event id (what older versions sent as the SSE id) still resumes after that event.
    legacy = api.get("/v1/events/stream", params={"timeout_s": 1}, headers={"Last-Event-ID": "e-3"})
    assert [e["id"] for e in sse_events(legacy.text)] == ["e-4"]
