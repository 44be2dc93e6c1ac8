"""One back-off rule for every retry loop: exponential, capped, optionally jittered.

Job placement (`actors/job_manager.py`), webhook deliveries, posting a sighting to the event
pipeline and reconnecting a camera stream all wait `backoff_delay(...)` seconds between attempts.
"""

from __future__ import annotations

import random


def backoff_delay(failures: int, initial_s: float, factor: float = 2.0, max_s: float = 60.0,
                  jitter: float = 0.0, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` failures in a row (0 → none): initial·factor^(failures-1),
    at most `max_s`; with `jitter` j the delay is scaled by a uniform factor in [1-j, 1+j] (after the
    cap), so many clients that failed together do not retry together."""
    if failures <= 0:
        return 0.0
    # The exponent is capped too: factor**1000 would overflow a float long after max_s was reached.
    delay = min(max_s, initial_s * factor ** min(failures - 1, 64))
    if jitter:
        delay *= 1 + jitter * (2 * (rng or random).random() - 1)
    return max(0.0, delay)
