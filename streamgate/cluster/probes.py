"""One asker per name for the whole fleet: the others wait for its verdict.

Sharing the negative cache is not enough against a flood of the same
made-up names at every edge: each edge meets a new name (or a shared miss
that just expired) at the same moment, and each asks the origin before any
verdict can travel, so N edges still cost N connects per name and period.

Before an upstream connect for a name the edge has no verdict on, one
atomic Redis script answers:

* the fleet holds a miss for it: refused at once (learned locally with the
  fleet's expiry), no connect;
* no node is asking: this node claims the name for ``start_timeout`` and
  connects; when its origin plays the name it tells the fleet (``live``) and
  drops its claim, when it does not, its miss is replicated as always; when
  its link ends without a verdict (the connect failed, a budget refused it,
  the play was abandoned) it drops its claim and tells the fleet (``free``);
* another node is asking: this node waits for that verdict (the miss or
  ``live`` by pub/sub, applied by the replicator). The claim ending without
  one (``free``; its node's heartbeat gone, then the script takes the claim
  over; its expiry) ends the wait at once: this node asks again, and takes
  the claim or waits for the new asker's verdict. The whole wait is bounded
  by ``start_timeout``, then the link opens.

The late-answer rule (as the fleet budget's): an answer that takes longer
than ``[cluster] budget_wait`` is not given up, since the script may well
have run and found another node asking. The edge waits on for it as a
waiter waits (a fleet verdict on the name that arrives first answers the
play) until ``[cluster] claim_wait`` (a quarter second by default: the
most a play waits on Redis); only then, or when the
replicator finds Redis down, or the script fails, does Redis count as
unavailable and the link opens under the edge's own limits, as without a
fleet. A late answer that claimed the name for a play that no longer wants
it gives the claim back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import count
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

# KEYS[1] the name's miss, KEYS[2] its claim; ARGV: this node, the claim's lease
# (ms), this ask's claim value ("<token> <node>"), the prefix of the heartbeat keys.
# {1, miss}: known missing; {0}: claimed for this ask; {2, ms left, holder}: another
# node asks. A claim of this node's (an earlier ask), of a node whose heartbeat key
# is gone (it died) or holding garbage is replaced. A miss key that is not a string
# is no verdict.
_CLAIM = """
local miss = redis.pcall('GET', KEYS[1])
if type(miss) == 'string' then
  return {1, miss}
end
local cur = redis.pcall('GET', KEYS[2])
if type(cur) == 'string' then
  local holder = string.match(cur, '^%S+ (.+)$') or cur
  if holder ~= ARGV[1] and redis.call('EXISTS', ARGV[4] .. holder) == 1 then
    return {2, redis.call('PTTL', KEYS[2]), holder}
  end
end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return {0}
"""

_ROUNDS = 4  # asks for one link at most (a claim that ended is asked about again)

# What ends a wait on another node's claim.
_MISSING, _LIVE, _ENDED = "missing", "live", "ended"


class _Again:
    """Ask again: the claim waited on ended without a verdict."""


_AGAIN = _Again()

# (why the name is missing, or None to connect; the claim value this node may
# hold, to give back or settle, or None)
Decision = tuple[str | None, str | None]


class _Wait:
    """One ask listening for the fleet's word on a name (and, once known, on whose claim)."""

    __slots__ = ("future", "holder")

    def __init__(self, future: asyncio.Future[str]) -> None:
        self.future = future
        self.holder: str | None = None


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
        self._waiting: defaultdict[tuple[str, str], list[_Wait]] = defaultdict(list)
        self._token = secrets.token_hex(4)  # claims of this process, not of a restarted one
        self._serial = count(1)
        replicator.on_verdict = self.verdict
        replicator.on_release = self.released
        replicator.on_nodes = self.nodes_seen

    def _redis(self) -> Redis:
        if self._client is None:
            # A late answer is waited for up to claim_wait: no command is cut sooner.
            opts = self.options
            self._client = opts.client(timeout=max(opts.command_timeout, opts.claim_wait))
        return self._client

    # ------------------------------------------------------------ the gate

    def open(
        self, key: tuple[str, str], opener: Callable[[LinkSink], Link], sink: LinkSink
    ) -> Link:
        return _ProbedLink(self, key, opener, sink)

    # ------------------------------------------------------------ the fleet's word

    def verdict(self, key: tuple[str, str], missing: bool) -> None:
        """Another node's verdict on ``key`` arrived (the replicator applied it)."""
        for wait in self._waiting.pop(key, ()):
            if not wait.future.done():
                wait.future.set_result(_MISSING if missing else _LIVE)

    def released(self, key: tuple[str, str]) -> None:
        """Another node gave up its claim on ``key`` without a verdict."""
        for wait in self._waiting.pop(key, ()):
            if not wait.future.done():
                wait.future.set_result(_ENDED)

    def nodes_seen(self) -> None:
        """The heartbeats were read: a claim whose node is gone ends its waits."""
        alive = self.replicator.nodes
        for waits in list(self._waiting.values()):
            for wait in waits:
                gone = wait.holder is not None and wait.holder not in alive
                if gone and not wait.future.done():
                    wait.future.set_result(_ENDED)

    def found(self, key: tuple[str, str], claim: str) -> None:
        """This node's origin plays ``key``: tell the fleet, then drop the claim."""
        self.replicator.found(*key)
        self.replicator.released(*key, claim)

    def release(self, key: tuple[str, str], claim: str) -> None:
        """This node's claim on ``key`` ends without a verdict."""
        self.counters["released"] += 1
        self.replicator.released(*key, claim)

    def _listen(self, key: tuple[str, str]) -> _Wait:
        wait = _Wait(asyncio.get_running_loop().create_future())
        self._waiting[key].append(wait)
        return wait

    def _unlisten(self, key: tuple[str, str], wait: _Wait) -> None:
        waits = self._waiting.get(key)
        if waits is None:
            return
        with contextlib.suppress(ValueError):
            waits.remove(wait)
        if not waits:
            del self._waiting[key]

    # ------------------------------------------------------------ asking

    async def ask(self, key: tuple[str, str]) -> Decision:
        """Whether to connect for ``key``, and the claim that comes with the link."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease  # the whole wait on other nodes' claims
        for _ in range(_ROUNDS):
            if not self.available():
                self.counters["fallback"] += 1
                return None, None
            claim = f"{self._token}.{next(self._serial)} {self.options.node_id}"
            wait = self._listen(key)
            try:
                decision = await self._round(key, claim, wait, deadline)
            finally:
                self._unlisten(key, wait)
            if not isinstance(decision, _Again):
                return decision
        self.counters["waited_out"] += 1
        return None, None

    async def _eval(self, key: tuple[str, str], claim: str) -> Any:
        keys = self.options.keys
        return await self._redis().eval(
            _CLAIM,
            2,
            keys.miss(*key),
            keys.probe(*key),
            self.options.node_id,
            max(1, int(self.lease * 1000)),
            claim,
            keys.node(""),
        )

    async def _round(
        self, key: tuple[str, str], claim: str, wait: _Wait, deadline: float
    ) -> Decision | _Again:
        task = asyncio.get_running_loop().create_task(self._eval(key, claim))
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), self.options.budget_wait)
        except TimeoutError:
            late = await self._late(key, claim, task, wait)
            if not isinstance(late, _Answer):
                return late
            answer = late.value
        except asyncio.CancelledError:
            self._abandon(key, claim, task)
            raise
        except Exception as exc:  # a lost connection, a script error: nothing claimed
            return self._fallback(exc)
        return await self._answer(key, claim, answer, wait, deadline)

    async def _late(
        self, key: tuple[str, str], claim: str, task: asyncio.Task[Any], wait: _Wait
    ) -> _Answer | Decision:
        """No answer within ``budget_wait``: wait on for it (or the fleet's verdict)
        until ``claim_wait``; then Redis counts as unavailable."""
        self.counters["late"] += 1
        loop = asyncio.get_running_loop()
        end = loop.time() + max(0.0, self.options.claim_wait - self.options.budget_wait)
        try:
            while not task.done() and (left := end - loop.time()) > 0 and self.available():
                pending: set[asyncio.Future[Any]] = {task}
                if not wait.future.done():
                    pending.add(wait.future)
                await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if not task.done() and wait.future.done() and wait.future.result() != _ENDED:
                    self._abandon(key, claim, task)  # the fleet's verdict came first
                    return self._heard(key, wait.future.result())
        except asyncio.CancelledError:
            self._abandon(key, claim, task)
            raise
        if not task.done():
            # Redis is unavailable; the script may still run: if it claims, the link
            # opened now is the asker, so it carries the claim (its verdict, or its
            # release, settles it).
            self._abandon(key, claim, task, keep=True)
            self.counters["fallback"] += 1
            self.last_error = "no answer within claim_wait"
            return None, claim
        try:
            return _Answer(task.result())
        except Exception as exc:
            return self._fallback(exc)

    def _abandon(
        self, key: tuple[str, str], claim: str, task: asyncio.Task[Any], keep: bool = False
    ) -> None:
        """The ask no longer waits for ``task``: a claim it makes anyway is given back
        (unless ``keep``: the link carries it)."""

        def settle(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return
            answer = done.result()
            if not keep and isinstance(answer, list) and answer[:1] == [0]:
                self.release(key, claim)

        if task.done():
            settle(task)
        else:
            task.add_done_callback(settle)

    def _fallback(self, exc: BaseException) -> Decision:
        self.counters["fallback"] += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        return None, None

    def _heard(self, key: tuple[str, str], outcome: str) -> Decision:
        """The fleet's verdict on ``key`` (another node's miss or ``live``)."""
        reason = self.negative.holds(key, self.replicator.now()) if outcome == _MISSING else None
        if reason is None:
            self.counters["peer_found"] += 1
            return None, None
        self.counters["peer_missing"] += 1
        return reason or "not found", None

    async def _answer(
        self, key: tuple[str, str], claim: str, answer: Any, wait: _Wait, deadline: float
    ) -> Decision | _Again:
        kind = answer[0] if isinstance(answer, list) and answer else None
        if kind == 0:
            self.counters["claimed"] += 1
            return None, claim
        if kind == 1 and len(answer) == 2:
            rep = self.replicator
            try:
                miss = decode_miss(answer[1], rep.wall())
                if (miss.app, miss.name) != key:
                    raise Malformed("miss", "the key holds another name")
            except Malformed as exc:
                rep._malformed(exc, "key")
                return None, None
            now = rep.now()
            self.negative.learn(key, rep.to_local(miss.expires), miss.reason, now)
            reason = self.negative.holds(key, now)
            self.counters["known_missing"] += 1
            if reason is None:
                # Redis still holds the miss, its value says it just expired (the key
                # outlives the value by the write's delay): still the fleet's word. To
                # connect here, unclaimed, made every edge ask at each expiry.
                return miss.reason or "not found", None
            return reason or "not found", None
        if kind == 2 and len(answer) in (2, 3) and isinstance(answer[1], int):
            if len(answer) == 3 and isinstance(answer[2], bytes | str):
                holder = answer[2]
                if isinstance(holder, bytes):
                    holder = holder.decode("utf-8", "replace")
                wait.holder = holder
            return await self._wait(key, wait, answer[1] / 1000, deadline)
        self.counters["fallback"] += 1
        return None, None

    async def _wait(
        self, key: tuple[str, str], wait: _Wait, ttl: float, deadline: float
    ) -> Decision | _Again:
        """Another node asks the origin for ``key``: its verdict; or ask again when its
        claim ends without one; or connect at ``deadline``."""
        reason = self.negative.holds(key, self.replicator.now())
        if reason is not None:  # learned meanwhile
            self.counters["peer_missing"] += 1
            return reason or "not found", None
        left = deadline - asyncio.get_running_loop().time()
        bound = max(0.0, min(ttl, self.lease, left))
        try:
            outcome = await asyncio.wait_for(asyncio.shield(wait.future), bound)
        except TimeoutError:
            if left <= ttl:
                self.counters["waited_out"] += 1
                return None, None
            self.counters["claim_ended"] += 1  # its claim expired without a verdict
            return _AGAIN
        if outcome == _ENDED:
            self.counters["claim_ended"] += 1
            return _AGAIN
        return self._heard(key, outcome)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)


class _Answer:
    """The script's answer, once it came (late)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _ProbedLink(PendingLink):
    """A link that opens unless the fleet already knows the name is missing."""

    __slots__ = ("_claim",)

    def __init__(
        self,
        gate: FleetProbes,
        key: tuple[str, str],
        opener: Callable[[LinkSink], Link],
        sink: LinkSink,
    ) -> None:
        super().__init__()
        self._claim: _ClaimSink | None = None
        self.start(self._open(gate, key, opener, sink))

    async def _open(
        self,
        gate: FleetProbes,
        key: tuple[str, str],
        opener: Callable[[LinkSink], Link],
        sink: LinkSink,
    ) -> None:
        reason, claim = await gate.ask(key)
        if self._closed:
            if claim is not None:
                gate.release(key, claim)
            return
        if reason is not None:
            sink.link_known_missing(Status.PLAY_STREAM_NOT_FOUND, reason)
        elif claim is not None:
            self._claim = _ClaimSink(sink, gate, key, claim)
            self._inner = opener(self._claim)
        else:
            self._inner = opener(sink)

    def close(self) -> None:
        super().close()
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.abandon()


class _ClaimSink:
    """The claimed link's sink: settles the claim once. The origin's Play.Start
    tells the fleet (``live``) and drops the claim; its miss is replicated by the
    negative cache; a link that ends without a verdict gives the claim back."""

    __slots__ = ("_claim", "_gate", "_key", "_sink")

    def __init__(self, sink: LinkSink, gate: FleetProbes, key: tuple[str, str], claim: str) -> None:
        self._sink = sink
        self._gate = gate
        self._key = key
        self._claim: str | None = claim

    def _settled(self) -> str | None:
        claim, self._claim = self._claim, None
        return claim

    def abandon(self) -> None:
        """The link was closed: a claim not settled yet is given back."""
        if (claim := self._settled()) is not None:
            self._gate.release(self._key, claim)

    def link_playing(self) -> None:
        if (claim := self._settled()) is not None:
            self._gate.found(self._key, claim)
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
        self._settled()  # the miss itself is the verdict (the negative cache replicates it)
        self._sink.link_missing(code, description)

    def link_known_missing(self, code: str, description: str) -> None:
        self._settled()
        self._sink.link_known_missing(code, description)

    def link_ended(self, description: str) -> None:
        self._settled()  # unpublished: missing, or ended after Play.Start
        self._sink.link_ended(description)

    def link_failed(self, description: str, *, connect: bool) -> None:
        if connect:
            self.abandon()  # the origin never answered: no verdict
        else:
            self._settled()  # lost after it answered (a miss before any media)
        self._sink.link_failed(description, connect=connect)

    def link_refused(self, reason: str, description: str) -> None:
        self.abandon()  # held back before the origin (a budget): no verdict
        self._sink.link_refused(reason, description)
