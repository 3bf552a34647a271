"""The fleet's connect budget per origin: one atomic Redis script, under a small bound.

``[edge] fleet_max_connects_per_second`` caps the new upstream connections
the whole fleet opens to one origin: a sliding-window log in one sorted set
per origin, trimmed and counted inside a Lua script against Redis's own
clock, so the check and the take are one atomic step for every node (the
same exact window as the local :class:`~streamgate.shield.RateWindow`, not
a bucket that adds a burst).

It sits on the upstream connect path, not on the play answer path: the
pool has already granted the link under the local limits, and the
:class:`~streamgate.edge.budgeted.BudgetedConnector` waits at most
``budget_wait`` for the script before opening it. Redis slow, down or
answering garbage: the local limits alone decide (counted as
``fallback``), and no play fails for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamgate.cluster.settings import ClusterOptions
from streamgate.edge.budgeted import BudgetRefusal

if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = ["FleetBudget", "window_terms"]

# KEYS[1] the origin's log; ARGV: limit, window (ms), a unique member.
# A key that is not a sorted set (garbage) is replaced.
_TAKE = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', key)
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
  return 1
end
return 0
"""

_SPENT = BudgetRefusal("fleet_connect_rate", "fleet connect budget reached")


def window_terms(rate: float, margin: float) -> tuple[int, int]:
    """(limit, window in ms) for ``rate`` connects per second, as RateWindow
    computes them, the window widened by ``margin`` seconds: a connect granted
    now reaches the origin a little later, and the bound is at the origin."""
    limit = max(1, math.floor(rate))
    return limit, math.ceil((limit / rate + margin) * 1000)


class FleetBudget:
    """Takes one connect from the fleet's budget for an origin."""

    def __init__(
        self,
        options: ClusterOptions,
        available: Callable[[], bool] = lambda: True,
    ) -> None:
        self.options = options
        self.limit, self.window_ms = window_terms(options.fleet_rate, options.budget_wait)
        self.available = available  # False while the replicator finds Redis down
        self.counters: Counter[str] = Counter()
        self.last_error = ""
        self._client: Redis | None = None
        self._ids = itertools.count()

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = self.options.client(timeout=self.options.budget_wait)
        return self._client

    async def take(self, origin: str) -> BudgetRefusal | bool | None:
        """True: granted; a refusal: the fleet's budget is spent; None: no answer
        in time (the caller falls back to its local limits)."""
        if not self.available():
            self.counters["fallback"] += 1
            return None
        member = f"{self.options.node_id}:{next(self._ids)}"
        try:
            answer = await asyncio.wait_for(
                self._redis().eval(
                    _TAKE,
                    1,
                    self.options.keys.budget(origin),
                    self.limit,
                    self.window_ms,
                    member,
                ),
                self.options.budget_wait,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout, a lost connection, a script error: local limits
            self.counters["fallback"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return None
        if answer != 1:
            self.counters["refused"] += 1
            return _SPENT
        self.counters["granted"] += 1
        return True

    def done(self, origin: str) -> None:
        """Nothing to give back: the budget is a rate, not a count of open links."""

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)
