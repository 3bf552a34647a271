"""One asker per name for the whole fleet: the others wait for its verdict.

Sharing the negative cache is not enough against a flood of the same
made-up names at every edge: each edge meets a new name (or a shared miss
that just expired) at the same moment, and each asks the origin before any
verdict can travel, so N edges still cost N connects per name and period.

Before an upstream connect for a name the edge has no verdict on, one
atomic Redis script (waiting at most ``[cluster] budget_wait``) answers:

* the fleet holds a miss for it: refused at once (learned locally with the
  fleet's expiry), no connect;
* no node is asking: this node claims the name for ``start_timeout`` and
  connects; when its origin plays the name it tells the fleet (``live``),
  when it does not, its miss is replicated as always;
* another node is asking: this node waits for that verdict (the miss or
  ``live`` by pub/sub, applied by the replicator) at most until the claim
  expires, then connects itself.

Redis slow, down or answering garbage: the link opens, as without a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamgate.cluster.entries import Malformed, decode_miss
from streamgate.cluster.settings import ClusterOptions
from streamgate.edge.budgeted import PendingLink
from streamgate.rtmp.messages import Status

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from streamgate.cluster.replicator import Replicator
    from streamgate.edge.ingest import Link, LinkSink
    from streamgate.shield.negcache import NegativeCache

__all__ = ["FleetProbes"]

# KEYS[1] the name's miss, KEYS[2] its claim; ARGV: this node, the claim's lease (ms).
# {1, miss}: known missing; {0}: claimed by this node; {2, ms left}: another asks.
# A claim key holding garbage (not a string) is replaced; a miss key that is not a
# string is no verdict.
_CLAIM = """
local miss = redis.pcall('GET', KEYS[1])
if type(miss) == 'string' then
  return {1, miss}
end
local cur = redis.pcall('GET', KEYS[2])
if type(cur) == 'table' and cur['err'] then
  redis.call('DEL', KEYS[2])
  cur = false
end
if (not cur) or cur == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {0}
end
return {2, redis.call('PTTL', KEYS[2])}
"""

_CLAIMED, _GO = "claimed", "go"


class FleetProbes:
    """The edge's :class:`~streamgate.edge.budgeted.NameGate` through Redis."""

    def __init__(
        self,
        options: ClusterOptions,
        replicator: Replicator,
        negative: NegativeCache,
        lease: float,
        available: Callable[[], bool] = lambda: True,
    ) -> None:
        self.options = options
        self.replicator = replicator
        self.negative = negative
        self.lease = lease
        self.available = available
        self.counters: Counter[str] = Counter()
        self.last_error = ""
        self._client: Redis | None = None
        self._waiting: defaultdict[tuple[str, str], list[asyncio.Future[bool]]] = defaultdict(list)
        replicator.on_verdict = self.verdict

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = self.options.client(timeout=self.options.budget_wait)
        return self._client

    # ------------------------------------------------------------ the gate

    def open(
        self, key: tuple[str, str], opener: Callable[[LinkSink], Link], sink: LinkSink
    ) -> Link:
        return _ProbedLink(self, key, opener, sink)

    def verdict(self, key: tuple[str, str], missing: bool) -> None:
        """Another node's verdict on ``key`` arrived (the replicator applied it)."""
        for future in self._waiting.pop(key, ()):
            if not future.done():
                future.set_result(missing)

    def found(self, key: tuple[str, str]) -> None:
        self.replicator.found(*key)

    async def ask(self, key: tuple[str, str]) -> str:
        """``_CLAIMED`` or ``_GO`` (connect), or the reason the name is missing."""
        if not self.available():
            self.counters["fallback"] += 1
            return _GO
        keys = self.options.keys
        try:
            answer = await asyncio.wait_for(
                self._redis().eval(
                    _CLAIM,
                    2,
                    keys.miss(*key),
                    keys.probe(*key),
                    self.options.node_id,
                    max(1, int(self.lease * 1000)),
                ),
                self.options.budget_wait,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a timeout, a lost connection, a script error
            self.counters["fallback"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            return _GO
        return await self._answer(key, answer)

    async def _answer(self, key: tuple[str, str], answer: Any) -> str:
        kind = answer[0] if isinstance(answer, list) and answer else None
        if kind == 0:
            self.counters["claimed"] += 1
            return _CLAIMED
        if kind == 1 and len(answer) == 2:
            rep = self.replicator
            try:
                miss = decode_miss(answer[1], rep.wall())
                if (miss.app, miss.name) != key:
                    raise Malformed("miss", "the key holds another name")
            except Malformed as exc:
                rep._malformed(exc, "key")
                return _GO
            now = rep.now()
            self.negative.learn(key, rep.to_local(miss.expires), miss.reason, now)
            reason = self.negative.holds(key, now)
            if reason is None:
                return _GO  # it had just expired
            self.counters["known_missing"] += 1
            return reason or "not found"
        if kind == 2 and len(answer) == 2 and isinstance(answer[1], int):
            return await self._wait(key, max(0.0, min(answer[1] / 1000, self.lease)))
        self.counters["fallback"] += 1
        return _GO

    async def _wait(self, key: tuple[str, str], bound: float) -> str:
        """Another node asks the origin for ``key``: its verdict, or connect after ``bound``."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiting = self._waiting[key]
        waiting.append(future)
        reason = self.negative.holds(key, self.replicator.now())
        try:
            if reason is None:
                missing = await asyncio.wait_for(future, bound)
                reason = self.negative.holds(key, self.replicator.now()) if missing else None
        except TimeoutError:
            self.counters["waited_out"] += 1
            return _GO
        finally:
            with contextlib.suppress(ValueError):
                waiting.remove(future)
            if not waiting and self._waiting.get(key) is waiting:
                del self._waiting[key]
        if reason is None:
            self.counters["peer_found"] += 1
            return _GO
        self.counters["peer_missing"] += 1
        return reason or "not found"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)


class _ProbedLink(PendingLink):
    """A link that opens unless the fleet already knows the name is missing."""

    __slots__ = ()

    def __init__(
        self,
        gate: FleetProbes,
        key: tuple[str, str],
        opener: Callable[[LinkSink], Link],
        sink: LinkSink,
    ) -> None:
        super().__init__()
        self.start(self._open(gate, key, opener, sink))

    async def _open(
        self,
        gate: FleetProbes,
        key: tuple[str, str],
        opener: Callable[[LinkSink], Link],
        sink: LinkSink,
    ) -> None:
        verdict = await gate.ask(key)
        if self._closed:
            return
        if verdict == _CLAIMED:
            self._inner = opener(_FoundSink(sink, lambda: gate.found(key)))
        elif verdict == _GO:
            self._inner = opener(sink)
        else:
            sink.link_known_missing(Status.PLAY_STREAM_NOT_FOUND, verdict)


class _FoundSink:
    """The claimed link's sink: the origin's Play.Start also tells the fleet."""

    __slots__ = ("_found", "_sink")

    def __init__(self, sink: LinkSink, found: Callable[[], None]) -> None:
        self._sink = sink
        self._found: Callable[[], None] | None = found

    def link_playing(self) -> None:
        found, self._found = self._found, None
        if found is not None:
            found()
        self._sink.link_playing()

    def link_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self._sink.link_media(type_id, timestamp, payload)

    def link_media_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        self._sink.link_media_batch(items)

    def link_data(self, timestamp: int, values: tuple[Any, ...], payload: bytes) -> None:
        self._sink.link_data(timestamp, values, payload)

    def link_flush(self) -> None:
        self._sink.link_flush()

    def link_missing(self, code: str, description: str) -> None:
        self._sink.link_missing(code, description)

    def link_known_missing(self, code: str, description: str) -> None:
        self._sink.link_known_missing(code, description)

    def link_ended(self, description: str) -> None:
        self._sink.link_ended(description)

    def link_failed(self, description: str, *, connect: bool) -> None:
        self._sink.link_failed(description, connect=connect)

    def link_refused(self, reason: str, description: str) -> None:
        self._sink.link_refused(reason, description)
