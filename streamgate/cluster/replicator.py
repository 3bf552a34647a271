"""The node's replicator: its local bans and misses go to Redis, the fleet's come back.

One background task per node. Invariants:

* Nothing on the play path awaits it: the ban store and the negative cache
  call :meth:`Replicator.failed` / :meth:`banned` / :meth:`lifted` /
  :meth:`missed`, which only append to a bounded queue; the task writes the
  queue to Redis (keys, so a restarted node or Redis is repopulated) and
  publishes it on one channel, in batches.
* What comes from Redis (pub/sub and the periodic full read) is decoded by
  :mod:`.entries` and applied to the same local state; a malformed entry is
  counted and logged (bounded), never raised.
* Redis unreachable: ``up`` is false, the first failure is logged and the
  rest aggregated, reconnects follow full-jitter backoff. On every
  (re)connect the node first writes what it holds (bans, lifts, misses: so
  what it learned meanwhile, and everything a restarted Redis lost), then
  reads what the others hold.
* Bans merge last-writer-wins on the time of the change (wall clock), in
  Redis (an atomic script) and in every node's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from streamgate.cluster.entries import (
    MAX_EVENTS,
    MAX_VALUE,
    BanEntry,
    Event,
    FailureEntry,
    LiveEntry,
    Malformed,
    MissEntry,
    NodeEntry,
    ReleaseEntry,
    decode_ban,
    decode_message,
    decode_miss,
    decode_node,
    encode_message,
    encode_node,
)
from streamgate.cluster.merge import apply_event
from streamgate.cluster.settings import ClusterOptions
from streamgate.shield.backoff import Backoff
from streamgate.shield.bans import Ban, MemoryBanStore
from streamgate.shield.negcache import NegativeCache

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["MAX_QUEUE", "Replicator"]

log = logging.getLogger("streamgate.cluster")

MAX_QUEUE = 50_000
"""Local changes waiting to be written; beyond, the oldest are dropped (and counted)."""

_MAX_PULL = 500_000  # keys read in one full read, at most
_LOG_EVERY = 60.0  # seconds between aggregated log lines of one kind

# Writes a ban (or a lift) only if it is newer than the one stored: the
# fleet's last writer wins, whatever order the nodes' writes arrive in. A
# value that is not a ban (garbage) is replaced.
_SET_BAN = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' and tonumber(old['changed'])
     and tonumber(old['changed']) >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""

# Deletes a name's claim if it still holds the value this node claimed it with,
# and then (only then) tells the fleet: a claim made since, by this node or
# another, is left alone. KEYS[1] the claim; ARGV: the value, the channel, the
# message.
_RELEASE = """
local cur = redis.pcall('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    text = str(exc) or type(exc).__name__
    return text[:200]


class Replicator:
    """Replicates one node's ban store and negative cache through Redis."""

    def __init__(
        self,
        options: ClusterOptions,
        bans: MemoryBanStore,
        negative: NegativeCache | None,
        now: Callable[[], float],
        wall: Callable[[], float] = time.time,
        uniform: Callable[[float, float], float] | None = None,
    ) -> None:
        self.options = options
        self.keys = options.keys
        self.bans = bans
        self.negative = negative
        self.now = now
        self.wall = wall
        self.started = wall()
        self.backoff = Backoff(options.backoff_initial, options.backoff_max, uniform=uniform)
        self.up = False
        self.changed_at = now()  # when ``up`` last changed
        self.last_error = ""
        self.attempts_down = 0  # failed connects since the last success
        self.counters: Counter[str] = Counter()
        self.nodes: dict[str, NodeEntry] = {}
        self._queue: deque[Event] = deque(maxlen=MAX_QUEUE)
        self._live = False  # a session is collecting local changes
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._logged: dict[str, float] = {}
        # Hears every verdict on a name from another node: (key, missing).
        self.on_verdict: Callable[[tuple[str, str], bool], None] | None = None
        # Hears another node give up its claim on a name without a verdict.
        self.on_release: Callable[[tuple[str, str]], None] | None = None
        # Hears each new reading of the nodes' heartbeats (``nodes``).
        self.on_nodes: Callable[[], None] | None = None

    # ------------------------------------------------------------ time

    def to_wall(self, t: float) -> float:
        return t - self.now() + self.wall()

    def to_local(self, w: float) -> float:
        return w - self.wall() + self.now()

    # ------------------------------------------------------------ local changes (play path)

    def failed(self, ip: str, kind: str, detail: str, now: float) -> None:
        self._push(FailureEntry(ip, kind, detail))

    def banned(self, ban: Ban, now: float) -> None:
        self._push(
            BanEntry(ban.ip, self.to_wall(ban.until), ban.offences, ban.reason, self.to_wall(now))
        )

    def lifted(self, ip: str, offences: int, now: float) -> None:
        self._push(BanEntry(ip, 0.0, offences, "", self.to_wall(now)))

    def missed(self, key: Hashable, expires: float, reason: str) -> None:
        if isinstance(key, tuple) and len(key) == 2:
            app, name = key
            if isinstance(app, str) and isinstance(name, str):
                self._push(MissEntry(app, name, self.to_wall(expires), reason[:256]))

    def found(self, app: str, name: str) -> None:
        """This node's origin plays ``app``/``name`` (published only, never stored)."""
        self._push(LiveEntry(app, name))

    def released(self, app: str, name: str, claim: str) -> None:
        """This node no longer asks for ``app``/``name``: delete its claim (the one
        made with ``claim``) and tell the fleet."""
        self._push(ReleaseEntry(app, name, claim))

    def _push(self, event: Event) -> None:
        if not self._live:
            return  # the full write at the next connect carries bans and misses
        if len(self._queue) == self._queue.maxlen:
            self.counters["dropped"] += 1
        self._queue.append(event)
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._wake = asyncio.Event()
            self.bans.listener = self
            if self.negative is not None:
                self.negative.on_add = self.missed
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self.bans.listener is self:
            self.bans.listener = None
        if self.negative is not None and self.negative.on_add == self.missed:
            self.negative.on_add = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._live = False
        self.up = False

    def attach_negative(self, negative: NegativeCache | None) -> None:
        """The edge's negative cache (set once, when the edge is built)."""
        self.negative = negative
        if negative is not None and self._task is not None:
            negative.on_add = self.missed

    async def _run(self) -> None:
        while True:
            client = self.options.client()
            try:
                await self._session(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis errors, OSError, timeouts, groups of them
                self._down(exc)
            finally:
                self._live = False
                self._queue.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), self.options.command_timeout)
            await asyncio.sleep(self.backoff.next_delay())

    async def _session(self, client: Redis) -> None:
        opts = self.options
        await asyncio.wait_for(client.ping(), opts.connect_timeout + opts.command_timeout)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.keys.channel)
            self._live = True  # from here on local changes queue; the snapshot below is older
            self._queue.clear()
            bans, misses = await self._republish(client)
            await self._pull(client)
            await self._heartbeat_once(client)
            self._up(bans, misses)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(pubsub))
                tasks.create_task(self._write(client))
                beat, pull = self._heartbeat_once, self._pull
                tasks.create_task(self._every(opts.heartbeat_interval, beat, client))
                tasks.create_task(self._every(opts.reconcile_interval, pull, client))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), opts.command_timeout)  # type: ignore[no-untyped-call]

    def _up(self, bans: int, misses: int) -> None:
        if self.attempts_down:
            log.info(
                "cluster: Redis %s reachable again after %d failed attempts; wrote %d bans "
                "and %d misses learned meanwhile",
                self.options.shown_url,
                self.attempts_down,
                bans,
                misses,
            )
        else:
            log.info(
                "cluster: node %s connected to Redis %s",
                self.options.node_id,
                self.options.shown_url,
            )
        self.up = True
        self.changed_at = self.now()
        self.attempts_down = 0
        self.last_error = ""
        self.backoff.reset()
        self.counters["connected"] += 1

    def _down(self, exc: BaseException) -> None:
        self.last_error = _describe(exc)
        self.attempts_down += 1
        self.counters["errors"] += 1
        if self.up or self.attempts_down == 1:
            log.warning(
                "cluster: Redis %s unreachable (%s); serving from local state, retrying "
                "with backoff",
                self.options.shown_url,
                self.last_error,
            )
            self._logged["down"] = self.now()
        elif self._due("down"):
            log.warning(
                "cluster: Redis %s still unreachable after %d attempts (%s)",
                self.options.shown_url,
                self.attempts_down,
                self.last_error,
            )
        if self.up:
            self.changed_at = self.now()
        self.up = False

    def _due(self, kind: str) -> bool:
        now = self.now()
        if now - self._logged.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[kind] = now
            return True
        return False

    def _malformed(self, exc: Malformed, where: str) -> None:
        self.counters[f"malformed:{exc.what}"] += 1
        if self._due(f"malformed:{exc.what}"):
            total = self.counters[f"malformed:{exc.what}"]
            log.warning("cluster: ignored a malformed %s (%s); %d so far", where, exc, total)

    @staticmethod
    async def _every(interval: float, job: Callable[[Redis], Any], client: Redis) -> None:
        while True:
            await asyncio.sleep(interval)
            await job(client)

    # ------------------------------------------------------------ writing

    def _ban_ttl_ms(self, entry: BanEntry, wall: float) -> int:
        # A lifted or expired ban still carries its offences (the doubling)
        # until a ban-free max_ban_time forgives them.
        left = max(0.0, entry.until - wall) + self.bans.rules.max_ban_time
        return max(1000, int(left * 1000))

    async def _send(self, client: Redis, events: list[Event], publish: bool = True) -> None:
        wall = self.wall()
        pipe = client.pipeline(transaction=False)
        for event in events:
            if isinstance(event, BanEntry):
                value = json.dumps({**event.to_json(), "node": self.options.node_id})
                pipe.eval(
                    _SET_BAN,
                    1,
                    self.keys.ban(event.ip),
                    value,
                    repr(event.changed),
                    self._ban_ttl_ms(event, wall),
                )
            elif isinstance(event, MissEntry):
                ttl = int((event.expires - wall) * 1000)
                if ttl > 0:
                    value = json.dumps({**event.to_json(), "node": self.options.node_id})
                    pipe.set(self.keys.miss(event.app, event.name), value, px=ttl)
        told: list[Event] = [e for e in events if not isinstance(e, ReleaseEntry)]
        if publish and told:
            pipe.publish(self.keys.channel, encode_message(self.options.node_id, told))
        # After the batch: a name's live verdict reaches the fleet before its release.
        for event in events:
            if isinstance(event, ReleaseEntry):
                message = encode_message(self.options.node_id, [event])
                pipe.eval(
                    _RELEASE,
                    1,
                    self.keys.probe(event.app, event.name),
                    event.claim,
                    self.keys.channel,
                    message,
                )
        await pipe.execute()
        for event in events:
            self.counters[f"sent:{type(event).__name__}"] += 1

    async def _write(self, client: Redis) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                count = min(len(self._queue), MAX_EVENTS)
                batch = [self._queue.popleft() for _ in range(count)]
                await self._send(client, batch)

    async def _republish(self, client: Redis) -> tuple[int, int]:
        """Write (and publish) everything this node holds; returns (bans, misses)."""
        now, wall = self.now(), self.wall()
        horizon = now - self.bans.rules.max_ban_time
        events: list[Event] = [
            BanEntry(
                ban.ip,
                self.to_wall(ban.until) if ban.until > now else 0.0,
                ban.offences,
                ban.reason,
                changed - now + wall,
            )
            for ban, changed in self.bans.changes()
            if changed > horizon and ban.offences > 0
        ]
        bans = len(events)
        if self.negative is not None:
            for key, expires, reason in self.negative.items(now):
                if isinstance(key, tuple) and len(key) == 2:
                    app, name = key
                    if isinstance(app, str) and isinstance(name, str):
                        events.append(MissEntry(app, name, expires - now + wall, reason[:256]))
        for start in range(0, len(events), MAX_EVENTS):
            await self._send(client, events[start : start + MAX_EVENTS])
        return bans, len(events) - bans

    # ------------------------------------------------------------ reading

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message.get("type") == "message":
                self.receive(message.get("data"))

    def receive(self, raw: object) -> None:
        """Apply one pub/sub message (public for tests: any bytes must be safe here)."""
        now = self.now()
        try:
            node, events = decode_message(raw, self.wall())
        except Malformed as exc:
            self._malformed(exc, "message")
            return
        if node == self.options.node_id:
            return  # our own, echoed by the channel
        for event in events:
            if isinstance(event, Malformed):
                self._malformed(event, "event")
            else:
                self._apply(event, now)

    def _apply(self, event: Event, now: float) -> None:
        if isinstance(event, LiveEntry):
            key = (event.app, event.name)
            if self.negative is not None:
                self.negative.discard(key)  # the origin has it now: no longer missing
            self.counters["received:live"] += 1
            if self.on_verdict is not None:
                self.on_verdict(key, False)
            return
        if isinstance(event, ReleaseEntry):
            self.counters["received:free"] += 1
            if self.on_release is not None:
                self.on_release((event.app, event.name))
            return
        kind = apply_event(event, self.bans, self.negative, self.to_local, now)
        if kind is not None:
            self.counters[f"received:{kind}"] += 1
        if isinstance(event, MissEntry) and self.on_verdict is not None:
            self.on_verdict((event.app, event.name), True)

    async def _scan(self, client: Redis, pattern: str) -> list[tuple[str, bytes | str]]:
        """(key, value) of the keys matching ``pattern``; wrong types and oversized
        values are counted as malformed and skipped without reading them."""
        keys: list[str] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            keys.append(key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key))
            if len(keys) >= _MAX_PULL:
                self.counters["pull_truncated"] += 1
                break
        found: list[tuple[str, bytes | str]] = []
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.strlen(key)
            sizes = await pipe.execute(raise_on_error=False)
            readable = []
            for key, size in zip(chunk, sizes, strict=True):
                if isinstance(size, Exception):
                    self._malformed(Malformed("key", f"{key[:100]!r} is not a string"), "key")
                elif isinstance(size, int) and size > MAX_VALUE:
                    self._malformed(Malformed("key", f"{key[:100]!r} holds {size} bytes"), "key")
                elif size:
                    readable.append(key)
            if readable:
                values = await client.mget(readable)
                found.extend((k, v) for k, v in zip(readable, values, strict=True) if v is not None)
        return found

    async def _pull(self, client: Redis) -> None:
        """Read the fleet's bans and misses and take what is newer than ours."""
        wall = self.wall()
        now = self.now()
        for key, raw in await self._scan(client, self.keys.ban_pattern):
            try:
                entry = decode_ban(raw, wall)
                if key != self.keys.ban(entry.ip):
                    raise Malformed("ban", f"key {key[:100]!r} holds a ban of {entry.ip}")
            except Malformed as exc:
                self._malformed(exc, "key")
                continue
            self._apply(entry, now)
        if self.negative is None:
            return
        for key, raw in await self._scan(client, self.keys.miss_pattern):
            try:
                miss = decode_miss(raw, wall)
                if key != self.keys.miss(miss.app, miss.name):
                    raise Malformed("miss", f"key {key[:100]!r} holds another name")
            except Malformed as exc:
                self._malformed(exc, "key")
                continue
            self._apply(miss, now)
        self.counters["pulls"] += 1

    async def _heartbeat_once(self, client: Redis) -> None:
        wall = self.wall()
        await client.set(
            self.keys.node(self.options.node_id),
            encode_node(self.options.node_id, self.started, wall),
            px=int(self.options.node_ttl * 1000),
        )
        nodes: dict[str, NodeEntry] = {}
        for key, raw in await self._scan(client, self.keys.node_pattern):
            try:
                node = decode_node(raw, wall)
                if key != self.keys.node(node.node):
                    raise Malformed("node", f"key {key[:100]!r} holds node {node.node[:100]!r}")
            except Malformed as exc:
                self._malformed(exc, "key")
                continue
            nodes[node.node] = node
        self.nodes = nodes
        if self.on_nodes is not None:
            self.on_nodes()

    # ------------------------------------------------------------ views

    def received(self) -> dict[str, int]:
        return {
            k.partition(":")[2]: v for k, v in self.counters.items() if k.startswith("received:")
        }

    def malformed(self) -> dict[str, int]:
        return {
            k.partition(":")[2]: v for k, v in self.counters.items() if k.startswith("malformed:")
        }

    def node_ids(self) -> Iterable[str]:
        return sorted(self.nodes)
