"""A sliding-window limit: never more than ``rate`` events in any window of 1/rate-scaled length.

Unlike a token bucket, which lets a full burst through on top of the refill,
this bounds every window exactly: with ``rate`` 20, no 1-second window holds
more than 20 events. Rates below one become one event per ``1/rate`` seconds.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["RateWindow"]


class RateWindow:
    __slots__ = ("_events", "limit", "rate", "window")

    def __init__(self, rate: float, margin: float = 0.0) -> None:
        """``margin``: seconds added to the window, for events counted a little
        before they happen where the bound is kept (a grant, then a connect)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.limit = max(1, math.floor(rate))
        self.window = self.limit / rate + margin
        self._events: deque[float] = deque(maxlen=self.limit)

    def try_take(self, now: float) -> bool:
        events = self._events
        if len(events) < self.limit or now - events[0] >= self.window:
            events.append(now)  # maxlen drops the oldest
            return True
        return False

    def take(self, now: float) -> None:
        """Count an event that was let through regardless of the limit."""
        self._events.append(now)

    @property
    def newest(self) -> float | None:
        """When the last counted event happened (``None`` before any)."""
        return self._events[-1] if self._events else None
