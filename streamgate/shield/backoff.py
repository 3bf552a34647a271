"""Exponential backoff with full jitter, bounded in delay and in attempts.

The n-th delay (n from 0) is uniform in ``[0, min(cap, initial * 2**n)]``
("full jitter"): retries of many streams that failed together spread out
instead of arriving at the origin in waves.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    __slots__ = ("_uniform", "attempt", "cap", "initial", "max_attempts")

    def __init__(
        self,
        initial: float,
        cap: float,
        max_attempts: int | None = None,
        uniform: Callable[[float, float], float] | None = None,
    ) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.max_attempts = max_attempts
        self.attempt = 0
        # A generator of its own, not the process-wide one: jitter must not
        # move (or be moved by) anyone else's random state.
        self._uniform = uniform or random.Random().uniform

    @property
    def exhausted(self) -> bool:
        return self.max_attempts is not None and self.attempt >= self.max_attempts

    def ceiling(self, attempt: int | None = None) -> float:
        """The largest delay the given (or next) attempt may wait."""
        n = self.attempt if attempt is None else attempt
        return min(self.cap, self.initial * (2.0 ** min(n, 62)))

    def next_delay(self) -> float:
        """The delay before the next attempt; raises if attempts are exhausted."""
        if self.exhausted:
            raise RuntimeError("backoff attempts exhausted")
        delay = self._uniform(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
