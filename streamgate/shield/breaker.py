"""A circuit breaker per origin: fail fast while the origin is down.

Invariants:

* CLOSED: calls pass; ``threshold`` consecutive failures open it.
* OPEN: calls are refused without touching the origin until ``reset_after``
  seconds have passed, then the breaker is HALF_OPEN.
* HALF_OPEN: exactly one call (the probe) is let through; its success
  closes the breaker, its failure opens it again for another period.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    __slots__ = ("_opened_at", "_probing", "failures", "opens", "reset_after", "state", "threshold")

    def __init__(self, threshold: int = 5, reset_after: float = 10.0) -> None:
        if threshold < 1 or reset_after <= 0:
            raise ValueError("breaker needs threshold >= 1 and reset_after > 0")
        self.threshold = threshold
        self.reset_after = reset_after
        self.state = BreakerState.CLOSED
        self.failures = 0  # consecutive
        self.opens = 0  # how many times it opened (for metrics)
        self._opened_at = 0.0
        self._probing = False

    def current(self, now: float) -> BreakerState:
        if self.state is BreakerState.OPEN and now - self._opened_at >= self.reset_after:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        return self.state

    def allow(self, now: float) -> bool:
        """May a call go to the origin now? In HALF_OPEN, only the first caller may."""
        state = self.current(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self._probing = False
        self.state = BreakerState.CLOSED

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            if self.state is not BreakerState.OPEN:
                self.opens += 1
            self.state = BreakerState.OPEN
            self._opened_at = now
            self._probing = False

    def release(self) -> None:
        """The probe ended without a verdict (e.g. cancelled): let another probe try."""
        self._probing = False
