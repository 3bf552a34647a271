"""The clock the relay logic runs on (the event loop in production, a fake in tests),
and the one way it calls other parties back."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Clock", "FakeClock", "LoopClock", "TimerHandle", "notify"]

log = logging.getLogger("streamgate.relay")


def notify(callback: Callable[..., None], *args: Any) -> None:
    """Call one party back; its failure is logged and stays its own, never the caller's
    (a waiter that broke must not take down a publisher, a link or other waiters)."""
    try:
        callback(*args)
    except Exception:
        log.exception("callback %r failed", callback)


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The running asyncio loop's monotonic clock and timers."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        # Read the clock itself: uvloop's loop.time() is taken once per loop
        # iteration (in ms), so under load every event of one busy iteration
        # would share a stale time and a sliding-window limit would let more
        # through than its bound in real seconds. Same epoch (CLOCK_MONOTONIC).
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_later(delay, callback)


class _FakeHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to; timers fire in order during advance()."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _FakeHandle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _FakeHandle()
        when = self._now + max(delay, 0.0)
        heapq.heappush(self._timers, (when, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        target = self._now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not handle.cancelled:
                callback()
        self._now = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[2].cancelled)
