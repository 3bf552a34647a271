"""Protection primitives: backoff, circuit breaker, token bucket, negative cache.

Pure logic on an injectable clock (``now`` is passed in or read from a
:class:`~streamgate.relay.clock.Clock`), so every bound is tested exactly.
"""

from __future__ import annotations

from streamgate.shield.backoff import Backoff
from streamgate.shield.breaker import BreakerState, CircuitBreaker
from streamgate.shield.negcache import NegativeCache
from streamgate.shield.ratelimit import TokenBucket
from streamgate.shield.window import RateWindow

__all__ = [
    "Backoff",
    "BreakerState",
    "CircuitBreaker",
    "NegativeCache",
    "RateWindow",
    "TokenBucket",
]
