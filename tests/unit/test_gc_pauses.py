"""facewatch/gc_pauses.py: start-up objects leave the collector's passes, later ones stay in them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from facewatch.gc_pauses import freeze_start_up_objects


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_at_freezing_are_no_longer_walked(thawed: None) -> None:
    before = Node()
    assert any(o is before for o in gc.get_objects())
    frozen = freeze_start_up_objects()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is before for o in gc.get_objects())


def test_cycles_made_after_freezing_are_still_collected(thawed: None) -> None:
    freeze_start_up_objects()
    later = Node()
    gone = weakref.ref(later)
    del later
    gc.collect()
    assert gone() is None
