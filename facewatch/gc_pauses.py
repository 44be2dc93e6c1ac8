"""Long-running processes freeze what they loaded at start-up out of Python's cyclic garbage collector.

Why: a camera job imports PyTorch, PyAV, OpenCV and its detector, about 460,000 objects the collector
tracks. Every full (generation 2) collection walks all of them: about 230 ms of one core on the 2-core
dev machine, more when the cores are shared, all of it holding the GIL, so the decoder thread and the
detection loop stop alike. `gc.freeze()` moves the objects alive at that moment to a permanent
generation that collections no longer walk; objects made afterwards are collected as before. Python's
documentation suggests this order: collect once, then freeze, after start-up.
"""

from __future__ import annotations

import gc


def freeze_start_up_objects() -> int:
    """Collect once, then freeze every object still alive; returns how many are frozen now."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
