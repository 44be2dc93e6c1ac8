"""A page of events as plain rows (EventRepository.list_views, GET /v1/events) reads exactly as the ORM
objects do: same dicts, same order, same cursors, same visibility."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import orm
from storage.event_views import event_to_dict
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope


def test_rows_and_entities_give_the_same_pages(sqlite_url: str) -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    with UnitOfWork(sqlite_url) as uow:
        shown = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        hidden = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=["viewer"]))
        camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=shown.id, url="", active=False))
        for n in range(7):
            uow.session.add(orm.Event(
                id=f"e{n}", camera_id=camera.id, camera_group_id=hidden.id if n == 3 else shown.id,
                timestamp=now - timedelta(minutes=n), video_offset_s=1.5 * n, bbox=[1, 2, 30, 40],
                detection_score=0.9, quality=0.8, attributes={"gender": "female", "age": 31.0}, age=31.0,
                gender="female", matched=n % 2 == 0, watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, confidence=0.7,
                track_id=n, acknowledged=n == 1, acknowledged_by="op" if n == 1 else None,
                acknowledged_at=now if n == 1 else None, thumbnail_key=f"t{n}", crop_key=f"c{n}", frame_key="",
                meta={"lane": n}, external_id=f"x{n}", person_status="new"))
        uow.commit()
        scope = VisibilityScope.for_role(uow.session, "viewer")
        for filters in ({}, {"matched": True}):
            cursor: str | None = None
            pages = 0
            while True:
                entities = uow.events.list_page(filters, 2, cursor, scope)
                rows = uow.events.list_views(filters, 2, cursor, scope)
                assert [event_to_dict(r, "http://x") for r in rows.items] == \
                       [event_to_dict(e, "http://x") for e in entities.items]
                assert rows.next_cursor == entities.next_cursor
                assert "e3" not in [r.id for r in rows.items]  # the hidden group's event stays hidden
                pages += 1
                cursor = rows.next_cursor
                if cursor is None:
                    break
            assert pages == (3 if not filters else 2)
