"""The fleet's connect budget per origin: one atomic Redis script, under a small bound.

``[edge] fleet_max_connects_per_second`` caps the new upstream connections
the whole fleet opens to one origin: a sliding-window log in one sorted set
per origin, trimmed and counted inside a Lua script against Redis's own
clock, so the check and the take are one atomic step for every node (the
same exact window as the local :class:`~streamgate.shield.RateWindow`, not
a bucket that adds a burst).

It sits on the upstream connect path, not on the play answer path: the
pool has already granted the link under the local limits, and
:class:`FleetConnector` waits at most ``budget_wait`` for the script before
opening it. Redis slow, down or answering garbage: the local limits alone
decide (counted as ``fallback``), and no play fails for it.
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

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from streamgate.edge.ingest import Connector, Link, LinkSink
    from streamgate.edge.origins import Origin

__all__ = ["FleetBudget", "FleetConnector", "window_terms"]

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

    async def take(self, origin: str) -> bool | None:
        """True: granted; False: the fleet's budget is spent; None: no answer in
        time (the caller falls back to its local limits)."""
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
        granted = bool(answer == 1)
        self.counters["granted" if granted else "refused"] += 1
        return granted

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)


class _GatedLink:
    """A link that opens once the fleet's budget allows it (or cannot say in time)."""

    __slots__ = ("_closed", "_inner", "_task")

    def __init__(
        self,
        connector: FleetConnector,
        origin: Origin,
        app: str,
        name: str,
        sink: LinkSink,
    ) -> None:
        self._inner: Link | None = None
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(
            self._open(connector, origin, app, name, sink)
        )

    async def _open(
        self, connector: FleetConnector, origin: Origin, app: str, name: str, sink: LinkSink
    ) -> None:
        granted = await connector.budget.take(origin.address)
        if self._closed:
            return
        if granted is False:
            origin.rate_limited += 1
            sink.link_refused(
                "fleet_connect_rate", f"origin {origin.address}: fleet connect budget reached"
            )
            return
        self._inner = connector.inner.open(origin, app, name, sink)

    def close(self) -> None:
        self._closed = True
        if not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()


class FleetConnector:
    """Wraps the edge's connector: every upstream connect first takes the fleet's budget."""

    def __init__(self, inner: Connector, budget: FleetBudget) -> None:
        self.inner = inner
        self.budget = budget

    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Link:
        return _GatedLink(self, origin, app, name, sink)
