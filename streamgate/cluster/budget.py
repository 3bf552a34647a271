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
``budget_wait`` for the script before opening it. The budget is a bound
the origin relies on, so it fails closed: an answer later than that (Redis
slow, or this node's own loop behind under a flood) refuses the connect
(``unanswered``), since the other nodes may be spending the budget at that
moment. Only while the replicator finds Redis down do the local limits and
this node's share of the rate decide (``fallback``), so plays go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from streamgate.cluster.settings import ClusterOptions
from streamgate.edge.budgeted import BudgetRefusal
from streamgate.shield.window import RateWindow

if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = ["FleetBudget", "window_terms"]

# KEYS[1] the origin's log; ARGV: limit, window (ms), how many are asked for, a
# prefix unique to this batch. Grants as many as the window has room for (the first
# ones asked); returns {that count, the window's count after}. A key that is not a
# sorted set (garbage) is replaced.
_TAKE = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local asked = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = redis.call('TYPE', key)['ok']
if kind ~= 'zset' and kind ~= 'none' then
  redis.call('DEL', key)
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local used = redis.call('ZCARD', key)
local granted = math.min(asked, limit - used)
if granted <= 0 then
  return {0, used}
end
for i = 1, granted do
  redis.call('ZADD', key, now, ARGV[4] .. ':' .. i)
end
redis.call('PEXPIRE', key, window)
return {granted, used + granted}
"""

_SPENT = BudgetRefusal("fleet_connect_rate", "fleet connect budget reached")
_UNANSWERED = BudgetRefusal(
    "fleet_connect_rate", "fleet connect budget unanswered within budget_wait"
)
_SHARE_SPENT = BudgetRefusal(
    "fleet_connect_rate", "fleet connect budget unanswered; this node's share reached"
)


def window_terms(rate: float, margin: float) -> tuple[int, int]:
    """(limit, window in ms) for ``rate`` connects per second, as RateWindow
    computes them, the window widened by ``margin`` seconds: a connect granted
    now reaches the origin a little later, and the bound is at the origin."""
    limit = max(1, math.floor(rate))
    return limit, math.ceil((limit / rate + margin) * 1000)


class FleetBudget:
    """Takes connects from the fleet's budget for an origin.

    Takes that arrive while a script for the same origin is in flight wait for
    the next one, which asks for all of them at once: one Redis round trip per
    burst and origin, on one connection, whatever the burst's size. A take
    that waited ``budget_wait`` without an answer falls back to the local
    limits; its batch still runs (a slot it was granted counts at Redis).

    No answer in time while Redis is up (slow, or this node's own loop behind,
    as under a flood): refused, because the other nodes may be taking the
    whole budget meanwhile. A slot granted to a take that no longer wants it is
    given back at Redis, so refusals do not waste the fleet's budget. Redis
    found down by the replicator: if the last answer, less than a window ago,
    found the window full, refused (under a flood it stays spent); otherwise
    the connect is held to this node's share of the fleet's rate (the rate
    over the nodes seen, counting the connects it was granted too), so a fleet
    whose nodes all lost Redis still stays near the bound.
    """

    def __init__(
        self,
        options: ClusterOptions,
        available: Callable[[], bool] = lambda: True,
        nodes: Callable[[], int] = lambda: 1,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.nodes = nodes  # how many nodes share the budget (the heartbeats seen)
        self.now = now
        self._shares: dict[str, RateWindow] = {}
        self._full_at: dict[str, float] = {}  # when an answer last found the window full
        self.limit, self.window_ms = window_terms(options.fleet_rate, options.budget_wait)
        self.available = available  # False while the replicator finds Redis down
        self.counters: Counter[str] = Counter()
        self.last_error = ""
        self._client: Redis | None = None
        self._batches = itertools.count()
        self._queued: dict[str, list[asyncio.Future[bool | None]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        # Takes that fell back and connected while their batch was in flight.
        self._opened: set[asyncio.Future[bool | None]] = set()
        self._warm: asyncio.Task[None] | None = None
        self._removals: set[asyncio.Task[None]] = set()

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = self.options.client()
        return self._client

    def start(self) -> None:
        """Connect now, so the first burst does not pay for the connection."""
        self._warm = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        with contextlib.suppress(Exception):  # not reachable yet: the first take connects
            await asyncio.wait_for(self._redis().ping(), self.options.command_timeout)

    async def take(self, origin: str) -> BudgetRefusal | bool | None:
        """True: granted; a refusal: the fleet's budget is spent; None: no answer
        in time (the caller falls back to its local limits)."""
        if not self.available():
            return self._fallback(origin)
        future: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(origin, []).append(future)
        if origin not in self._running:
            task = asyncio.get_running_loop().create_task(self._ask(origin))
            self._running[origin] = task
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), self.options.budget_wait)
        except TimeoutError:
            refusal = self._unanswered(origin)
            if refusal is None and not future.done():
                self._opened.add(future)  # its batch counts it at Redis first, if it has room
            elif not future.done():
                future.cancel()  # refused: its batch gives the slot to a take still waiting
            return refusal
        if answer is None:
            return self._unanswered(origin)
        if not answer:
            self.counters["refused"] += 1
            return _SPENT
        self.counters["granted"] += 1
        self._share(origin).take(self.now())
        return True

    def _share(self, origin: str) -> RateWindow:
        rate = self.options.fleet_rate / max(1, self.nodes())
        share = self._shares.get(origin)
        if share is None or share.rate != rate:
            share = self._shares[origin] = RateWindow(rate)
        return share

    def _unanswered(self, origin: str) -> BudgetRefusal | None:
        """No answer in time: refused while Redis is up (the bound fails closed);
        with Redis found down, this node decides alone."""
        if not self.available():
            return self._fallback(origin)
        self.counters["unanswered"] += 1
        return _UNANSWERED

    def _fallback(self, origin: str) -> BudgetRefusal | None:
        """No answer from the fleet: spent if it was a moment ago, else this node's share."""
        now = self.now()
        full_at = self._full_at.get(origin)
        if full_at is not None and now - full_at < self.window_ms / 1000:
            self.counters["late_refused"] += 1
            return _SPENT
        if self._share(origin).try_take(now):
            self.counters["fallback"] += 1
            return None
        self.counters["fallback_refused"] += 1
        return _SHARE_SPENT

    async def _ask(self, origin: str) -> None:
        """Batches for ``origin`` until no take is queued."""
        try:
            while batch := [f for f in self._queued.pop(origin, ()) if not f.done()]:
                prefix = f"{self.options.node_id}:{next(self._batches)}"
                granted = await self._eval(origin, len(batch), prefix)
                # The script may have run although no answer came: its slots are unused.
                given = len(batch) if granted is None else granted
                if granted is not None and granted < len(batch):
                    self._full_at[origin] = self.now()
                # Those that already connected take the slots first: counted at Redis.
                batch.sort(key=lambda f: f not in self._opened)
                for future in batch:
                    if future in self._opened:
                        self._opened.discard(future)
                        if granted:
                            granted -= 1
                            self.counters["late_counted"] += 1
                        future.cancel()
                        continue
                    if future.done():
                        continue  # gave up waiting: its slot (if any) goes unused
                    if granted is None:
                        future.set_result(None)
                    elif granted > 0:
                        granted -= 1
                        future.set_result(True)
                    else:
                        future.set_result(False)
                if granted:  # slots of takes that gave up waiting: for other takes
                    self._give_back(origin, prefix, given - granted + 1, given)
                elif granted is None:
                    self._give_back(origin, prefix, 1, given)
        finally:
            self._running.pop(origin, None)
            for future in self._queued.pop(origin, ()):
                self._opened.discard(future)
                if not future.done():
                    future.set_result(None)

    def _give_back(self, origin: str, prefix: str, first: int, last: int) -> None:
        """Remove the unused slots ``first..last`` of a batch from the window."""
        members = [f"{prefix}:{i}" for i in range(first, last + 1)]
        self.counters["given_back"] += len(members)
        task = asyncio.get_running_loop().create_task(self._remove(origin, members))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _remove(self, origin: str, members: list[str]) -> None:
        try:
            await asyncio.wait_for(
                self._redis().zrem(self.options.keys.budget(origin), *members),
                self.options.command_timeout,
            )
        except Exception as exc:  # the slots expire with the window anyway
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    async def _eval(self, origin: str, asked: int, prefix: str) -> int | None:
        try:
            answer = await asyncio.wait_for(
                self._redis().eval(
                    _TAKE,
                    1,
                    self.options.keys.budget(origin),
                    self.limit,
                    self.window_ms,
                    asked,
                    prefix,
                ),
                self.options.command_timeout,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout, a lost connection, a script error: local limits
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return None
        granted, used = answer if isinstance(answer, list) and len(answer) == 2 else (None, None)
        if not isinstance(granted, int) or not isinstance(used, int):
            self.last_error = f"unexpected answer {answer!r}"[:200]
            return None
        self.counters["batches"] += 1
        if used >= self.limit:
            self._full_at[origin] = self.now()
        return max(0, granted)

    def done(self, origin: str) -> None:
        """Nothing to give back: the budget is a rate, not a count of open links."""

    async def close(self) -> None:
        if self._warm is not None:
            self._warm.cancel()
        for task in [*self._running.values(), *self._removals]:
            task.cancel()
        self._running.clear()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)
