"""A worker's side of the machine bus: its changes out, the other workers' in.

Nothing on the play path waits on it, except an upstream connect, which
takes the machine's budget for at most :data:`TAKE_BOUND`:

* the worker's ban store and negative cache tell the peer of each local
  change (it is their listener, ahead of the fleet's replicator when there
  is one); the peer sends them on the next loop turn, in one message;
* the admission guard tells it each address's count; changed counts go out
  every :data:`COUNTS_EVERY` seconds, so a cap holds for the machine within
  that delay;
* what the others sent is applied to the same local state
  (:func:`~streamgate.cluster.merge.apply_event`) and their counts are
  summed into the guard's ``elsewhere``.

The supervisor unreachable: the worker goes on alone with its local limits,
and reconnects (its state is sent again then).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from streamgate.cluster.entries import (
    BanEntry,
    Event,
    FailureEntry,
    Malformed,
    MissEntry,
    decode_message,
)
from streamgate.cluster.merge import apply_event
from streamgate.edge.budgeted import BudgetRefusal
from streamgate.shield.admission import AdmissionGuard
from streamgate.shield.bans import Ban, BanListener, MemoryBanStore
from streamgate.shield.negcache import NegativeCache
from streamgate.workers.wire import (
    MAX_LINE,
    Backlog,
    BusError,
    batches,
    counts,
    decode,
    encode,
)

__all__ = ["COUNTS_EVERY", "TAKE_BOUND", "MachinePeer"]

log = logging.getLogger("streamgate.workers")

COUNTS_EVERY = 0.02
"""Seconds between two sends of changed connection counts."""

# The supervisor is a local process: an answer later than this means the machine
# itself is overloaded. The connect is then refused (the other workers may be
# taking the machine's whole budget meanwhile), not left to the worker's own
# limits; only with no link to the supervisor do those decide.
TAKE_BOUND = 1.0
"""Seconds an upstream connect waits for the machine's budget, at most."""

_RETRY = 0.5  # seconds between two attempts to reach the supervisor

_REFUSALS = {
    "connect_rate": BudgetRefusal("machine_connect_rate", "the machine's connect rate reached"),
    "link_cap": BudgetRefusal("machine_link_cap", "the machine's link cap reached"),
}


_UNANSWERED = BudgetRefusal(
    "machine_connect_rate", "the machine's connect budget unanswered within 1 s"
)


class MachinePeer:
    """One worker's link to its supervisor's :class:`~.exchange.Exchange`."""

    def __init__(
        self,
        worker: int,
        path: str,
        bans: MemoryBanStore,
        admission: AdmissionGuard,
        now: Any,
        wall: Any = time.time,
    ) -> None:
        self.worker = worker
        self.path = path
        self.bans = bans
        self.admission = admission
        self.negative: NegativeCache | None = None
        self.now = now
        self.wall = wall
        self.up = False
        self.counters: Counter[str] = Counter()
        self.budget_rate = 0.0
        self.budget_cap = 0
        self._next: BanListener | None = None  # the fleet's replicator, if any
        self._next_miss: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._events: list[dict[str, Any]] = []
        self._flush: asyncio.Handle | None = None
        self._dirty: dict[str, int] = {}
        self._counts_timer: asyncio.TimerHandle | None = None
        self._others: dict[int, dict[str, int]] = {}
        self._others_total: dict[int, int] = {}
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        # Origin mode: which worker publishes each name (from the supervisor), and
        # what to do when the machine already had a publisher for ours.
        self.holders: dict[tuple[str, str], int] = {}
        self.on_busy: Callable[[str, str], None] | None = None
        self.on_held: Callable[[str, str, int], None] | None = None
        self._publishing: set[tuple[str, str]] = set()
        self._links: Counter[str] = Counter()  # granted upstream links still open
        self._abandoned: set[int] = set()  # takes given up on: a late grant is given back
        self.replayed = asyncio.Event()  # the machine's state has arrived once
        self._backlog = Backlog()

    # ------------------------------------------------------------ lifecycle

    def start(self, negative: NegativeCache | None) -> None:
        """Connect (in the background) and listen to the local state."""
        self.connect(negative)
        self.listen()

    def connect(self, negative: NegativeCache | None) -> None:
        """Join the bus in the background; ``replayed`` is set once the machine's
        bans and misses are applied here (the worker waits for it, bounded, before
        it accepts players)."""
        self.negative = negative
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def listen(self) -> None:
        """Hear every local change from now on (ahead of the fleet's replicator,
        which must be listening already if there is one)."""
        self._next = self.bans.listener
        self.bans.listener = self
        if self.negative is not None:
            self._next_miss = self.negative.on_add
            self.negative.on_add = self.missed
        self.admission.on_change = self.counted

    async def close(self) -> None:
        if self.bans.listener is self:
            self.bans.listener = self._next
        if self.negative is not None and self.negative.on_add == self.missed:
            self.negative.on_add = self._next_miss
        self.admission.on_change = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=MAX_LINE)
            except OSError as exc:
                self.counters["connect_failed"] += 1
                if self.counters["connect_failed"] == 1:
                    log.warning("worker %d: cannot reach the supervisor: %s", self.worker, exc)
                await asyncio.sleep(_RETRY)
                continue
            try:
                await self._session(reader, writer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link is lost, never the worker
                if not isinstance(exc, ConnectionError | ValueError):
                    log.exception("worker %d: bus link failed", self.worker)
                log.warning("worker %d: bus link to the supervisor lost: %s", self.worker, exc)
            finally:
                self._down()
                writer.close()
            await asyncio.sleep(_RETRY)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode({"t": "hello", "worker": self.worker}))
        self._writer = writer
        self.up = True
        self._send_state()
        while line := await reader.readline():
            try:
                self._receive(decode(line))
            except BusError as exc:
                self.counters["malformed"] += 1
                log.warning("worker %d: bad bus message: %s", self.worker, exc)

    def _down(self) -> None:
        self.up = False
        self._writer = None
        for future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()
        self._others.clear()
        self._others_total.clear()
        self.holders.clear()  # the supervisor sends them all again on reconnect
        self.admission.elsewhere = {}
        self.admission.elsewhere_total = 0

    def _send_state(self) -> None:
        """On (re)connect: every ban, lift and miss this worker holds, and its counts."""
        now, wall = self.now(), self.wall()
        for ban, changed in self.bans.changes():
            until = ban.until - now + wall if ban.until > now else 0.0
            self._queue(BanEntry(ban.ip, until, ban.offences, ban.reason, changed - now + wall))
        if self.negative is not None:
            for key, expires, reason in self.negative.items(now):
                self.missed(key, expires, reason)
        self._dirty = self.admission.counts()
        self._send_counts()
        for app, name in self._publishing:
            self._write({"t": "pub", "app": app, "name": name, "on": True})
        if self._links:
            self._write({"t": "links", "links": dict(self._links)})

    # ------------------------------------------------------------ local changes

    def failed(self, ip: str, kind: str, detail: str, now: float) -> None:
        self._queue(FailureEntry(ip, kind, detail))
        if self._next is not None:
            self._next.failed(ip, kind, detail, now)

    def banned(self, ban: Ban, now: float) -> None:
        shift = self.wall() - self.now()
        self._queue(BanEntry(ban.ip, ban.until + shift, ban.offences, ban.reason, now + shift))
        if self._next is not None:
            self._next.banned(ban, now)

    def lifted(self, ip: str, offences: int, now: float) -> None:
        self._queue(BanEntry(ip, 0.0, offences, "", now + self.wall() - self.now()))
        if self._next is not None:
            self._next.lifted(ip, offences, now)

    def missed(self, key: Hashable, expires: float, reason: str) -> None:
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            app, name = key
            shift = self.wall() - self.now()
            self._queue(MissEntry(app, name, expires + shift, reason[:256]))
        if self._next_miss is not None:
            self._next_miss(key, expires, reason)

    def counted(self, ip: str, connections: int) -> None:
        self._dirty[ip] = connections
        if self._counts_timer is None and self._writer is not None:
            loop = asyncio.get_running_loop()
            self._counts_timer = loop.call_later(COUNTS_EVERY, self._send_counts)

    def published(self, app: str, name: str, on: bool) -> None:
        """The worker's hub began (or ended) a publish of ``app``/``name``."""
        if on:
            self._publishing.add((app, name))
        else:
            self._publishing.discard((app, name))
        self._write({"t": "pub", "app": app, "name": name, "on": on})

    def _queue(self, event: Event) -> None:
        if self._writer is None:
            return  # sent with the whole state at the next connect
        self._events.append(event.to_json())
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._send_events)

    def _send_events(self) -> None:
        self._flush = None
        events, self._events = self._events, []
        for batch in batches(events):
            self._write({"t": "ev", "events": batch})

    def _send_counts(self) -> None:
        self._counts_timer = None
        dirty, self._dirty = self._dirty, {}
        if dirty or self._writer is not None:
            self._write({"t": "conns", "total": self.admission.connections, "ips": dirty})

    def _write(self, message: dict[str, Any]) -> None:
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        if self._backlog.stalled(writer.transport.get_write_buffer_size(), time.monotonic()):
            # The supervisor does not read: cut the link (the state goes again on reconnect).
            self.counters["cut_slow_supervisor"] += 1
            writer.transport.abort()
            return
        writer.write(encode(message))

    # ------------------------------------------------------------ from the others

    def _receive(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "ev":
            self._apply(message)
        elif kind == "conns":
            self._counts(message)
        elif kind == "gone":
            wid = message.get("w")
            if isinstance(wid, int):
                self._forget(wid)
        elif kind == "held":
            app, name, wid = message.get("app"), message.get("name"), message.get("w")
            if not isinstance(app, str) or not isinstance(name, str) or not isinstance(wid, int):
                raise BusError("held: needs app, name and w")
            if wid < 0:
                self.holders.pop((app, name), None)
            else:
                self.holders[(app, name)] = wid
                if self.on_held is not None:
                    self.on_held(app, name, wid)
        elif kind == "busy":
            app, name = message.get("app"), message.get("name")
            if isinstance(app, str) and isinstance(name, str) and self.on_busy is not None:
                self.on_busy(app, name)
        elif kind == "grant":
            ident = message.get("id")
            future = self._waiting.pop(ident, None)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
            elif ident in self._abandoned:
                self._abandoned.discard(ident)
                if message.get("ok") is True and isinstance(message.get("origin"), str):
                    self._write({"t": "done", "origin": message["origin"]})  # given back
        elif kind == "ready":
            self.replayed.set()
        else:
            raise BusError(f"unknown kind {kind[:32]!r}")

    def _apply(self, message: dict[str, Any]) -> None:
        now = self.now()
        try:
            # Checked as the fleet's messages are (the same entries, the same bounds).
            raw = json.dumps({"node": "", "events": message.get("events")})
            _, events = decode_message(raw, self.wall())
        except Malformed as exc:
            raise BusError(str(exc)) from None
        shift = self.now() - self.wall()
        for event in events:
            if isinstance(event, Malformed):
                self.counters["malformed"] += 1
                continue
            kind = apply_event(event, self.bans, self.negative, lambda w: w + shift, now)
            if kind is not None:
                self.counters[f"received:{kind}"] += 1

    def _counts(self, message: dict[str, Any]) -> None:
        wid, total = message.get("w"), message.get("total")
        if not isinstance(wid, int) or not isinstance(total, int):
            raise BusError("conns: needs w and total")
        changed = counts(message.get("ips"))
        mine = self._others.setdefault(wid, {})
        elsewhere = dict(self.admission.elsewhere)
        for ip, n in changed.items():
            delta = n - mine.get(ip, 0)
            if n:
                mine[ip] = n
            else:
                mine.pop(ip, None)
            left = elsewhere.get(ip, 0) + delta
            if left > 0:
                elsewhere[ip] = left
            else:
                elsewhere.pop(ip, None)
        self.admission.elsewhere = elsewhere
        self._others_total[wid] = total
        self.admission.elsewhere_total = sum(self._others_total.values())

    def _forget(self, wid: int) -> None:
        self._counts({"w": wid, "total": 0, "ips": dict.fromkeys(self._others.get(wid, {}), 0)})
        self._others.pop(wid, None)
        self._others_total.pop(wid, None)

    # ------------------------------------------------------------ the machine's budget

    async def take(self, origin: str) -> BudgetRefusal | bool | None:
        """ConnectBudget: one connect toward ``origin`` from the machine's budget."""
        if self._writer is None or self.budget_rate <= 0:
            self.counters["budget_fallback"] += 1
            return None
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        self._write(
            {
                "t": "take",
                "id": ident,
                "origin": origin,
                "rate": self.budget_rate,
                "cap": self.budget_cap,
            }
        )
        try:
            answer = await asyncio.wait_for(future, TAKE_BOUND)
        except BaseException as exc:  # too late, or the link closed while it waited
            if self._waiting.pop(ident, None) is not None and len(self._abandoned) < 10_000:
                self._abandoned.add(ident)  # a grant that still comes is given back
            if not isinstance(exc, TimeoutError):
                raise
            self.counters["budget_unanswered"] += 1
            return _UNANSWERED
        if answer.get("ok") is True:
            self.counters["budget_granted"] += 1
            self._links[origin] += 1
            return True
        reason = str(answer.get("reason"))
        self.counters[f"budget_refused:{reason}"] += 1
        return _REFUSALS.get(reason, _REFUSALS["connect_rate"])

    def done(self, origin: str) -> None:
        if self._links[origin] > 0:
            self._links[origin] -= 1
            if not self._links[origin]:
                del self._links[origin]
        self._write({"t": "done", "origin": origin})
