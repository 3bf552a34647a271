"""The bitrate meter: bits per second a stream receives, over a sliding window.

A stream feeds it once per media message it receives and the HTTP API reads
it; memory is bounded and each message costs O(1).
"""

from __future__ import annotations

import math

__all__ = ["BitrateMeter"]


class BitrateMeter:
    """Bits per second over a sliding window, fed with byte counts.

    Bytes are accumulated in one bucket per whole second of the caller's clock
    in a fixed ring, so memory is bounded and ``add`` is O(1). ``bitrate``
    assumes bytes are spread evenly within a second to prorate the bucket that
    straddles the window's start. Until the meter has seen a full window, the
    average is taken over the time since the first ``add`` (at least one
    second) so a new stream does not read low for its first seconds.
    """

    __slots__ = ("_bytes", "_first", "_seconds", "_size", "_window")

    def __init__(self, window: float = 5.0) -> None:
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self._window = float(window)
        # One spare bucket so the partially covered oldest second is retained.
        self._size = math.ceil(self._window) + 1
        self._seconds = [-1] * self._size
        self._bytes = [0] * self._size
        self._first: float | None = None

    def add(self, nbytes: int, now: float) -> None:
        """Account ``nbytes`` received at time ``now`` (seconds, any epoch)."""
        if nbytes <= 0 or not math.isfinite(now):
            return
        second = math.floor(now)
        slot = second % self._size
        held = self._seconds[slot]
        if held != second:
            if held > second:
                return  # older than anything the ring still covers
            self._seconds[slot] = second
            self._bytes[slot] = 0
        self._bytes[slot] += nbytes
        if self._first is None or now < self._first:
            self._first = now

    def bitrate(self, now: float) -> float:
        """Average bits per second over the window ending at ``now``."""
        if self._first is None or not math.isfinite(now):
            return 0.0
        start = now - self._window
        total = 0.0
        for second, count in zip(self._seconds, self._bytes, strict=True):
            if count == 0 or second > now or second + 1 <= start:
                continue
            total += count * min(1.0, second + 1 - start)
        span = min(self._window, max(now - self._first, 1.0))
        return total * 8.0 / span
