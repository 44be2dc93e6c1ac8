"""Keeping a live source's decoder at the live edge: skip whole groups of pictures BEFORE decoding.

A `VideoSource` hands decoded frames to its consumer through a small queue that drops the oldest
frame when the consumer is slow; that costs a decode per dropped frame, which is fine while decoding
itself keeps up. When the decoder does not (the node's CPUs are overcommitted), it falls further and
further behind the camera and the packets pile up in the socket: latency grows without bound. Then
the only cheap way back is to skip packets without decoding them — and an H.264/H.265 P-frame cannot
be decoded without the frames it refers to, so skipping starts at any packet and ends at a keyframe.

`DecodeLag` decides that per packet from two clocks: the packet's stream time and the moment the
decoding thread reaches it. The offset between them is smallest when the decoder is at the live edge;
the lag is how far the current offset exceeds that minimum. The minimum may creep up by `drift` seconds
per second, so a camera whose clock runs slightly slow is not mistaken for a decoder falling behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_LAG_S = 4.0  # behind by more than this: skip to a keyframe (slack for a detection that stalls decoding)
RESUME_LAG_S = 0.5  # decode again from the first keyframe this close to the live edge
# Seconds per second the baseline may creep up: camera clocks run slow by far less than 2 %, and the
# offset an RTSP server's opening burst leaves in the baseline is gone within seconds.
DRIFT = 0.02
_JUMP_BACK_S = 1.0  # a timestamp this far behind the previous one: the stream restarted its clock


class DecodeLag:
    """`decode(pts_s, is_keyframe)` → whether to decode this packet (False: drop it undecoded)."""

    def __init__(self, max_lag_s: float = MAX_LAG_S, resume_lag_s: float = RESUME_LAG_S, drift: float = DRIFT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= resume_lag_s < max_lag_s:
            raise ValueError("need 0 <= resume_lag_s < max_lag_s")
        self.max_lag_s, self.resume_lag_s, self.drift, self.clock = max_lag_s, resume_lag_s, drift, clock
        self.skipping = False
        self.catch_ups = 0  # how many times decoding fell behind and skipped ahead
        self.lag_s = 0.0
        self._base: float | None = None
        self._last_now = 0.0
        self._last_pts = 0.0

    def decode(self, pts_s: float | None, is_keyframe: bool) -> bool:
        if pts_s is None:  # no timestamp, no measure: decode it unless already skipping to a keyframe
            return not self.skipping or self._resume(is_keyframe, 0.0)
        now = self.clock()
        offset = now - pts_s
        if self._base is None or pts_s < self._last_pts - _JUMP_BACK_S:
            self._base = offset
        else:
            self._base = min(offset, self._base + self.drift * (now - self._last_now))
        self._last_now, self._last_pts = now, pts_s
        self.lag_s = offset - self._base
        if self.skipping:
            return self._resume(is_keyframe, self.lag_s)
        if self.lag_s > self.max_lag_s:
            self.skipping = True
            self.catch_ups += 1
            return False
        return True

    def _resume(self, is_keyframe: bool, lag_s: float) -> bool:
        if is_keyframe and lag_s <= self.resume_lag_s:
            self.skipping = False
            return True
        return False
