"""The supervisor's side of the machine bus: what every worker must know of the others.

One owner for the machine-wide protection state that is not already in
every worker: the workers keep their own bans, misses and counts and take
every decision locally; the exchange relays each worker's changes to the
others, keeps the latest ban or lift per address and miss per name so a
restarted worker starts with them, and owns the one machine-wide budget per
origin (connect rate and open links), answered on the bus.

A worker's link ending (the worker died or stopped) drops its connection
counts and its open links at once and tells the others (``gone``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from streamgate.shield.window import RateWindow
from streamgate.workers.wire import (
    MAX_LINE,
    Backlog,
    BusError,
    batches,
    counts,
    decode,
    encode,
)

__all__ = ["Exchange"]

log = logging.getLogger("streamgate.workers")

# A connect is granted here and made by a worker a moment later (the grant's trip,
# the worker's loop): the rate window is widened by this, so that the bound holds
# where it matters, at the origin.
GRANT_MARGIN = 0.1

_MAX_KEPT = 200_000  # bans and misses kept for replay, at most (oldest dropped)


def _expired(event: dict[str, Any], wall: float) -> bool:
    """A kept miss past its expiry, or a ban past its end (lifts are kept)."""
    if event.get("k") == "miss":
        expires = event.get("expires")
        return isinstance(expires, int | float) and expires < wall
    until = event.get("until")
    return isinstance(until, int | float) and 0 < until < wall


class _Worker:
    __slots__ = ("backlog", "conns", "id", "links", "total", "writer")

    def __init__(self, wid: int, writer: asyncio.StreamWriter) -> None:
        self.id = wid
        self.writer = writer
        self.backlog = Backlog()
        self.conns: dict[str, int] = {}
        self.total = 0
        self.links: Counter[str] = Counter()  # open upstream links per origin


class Exchange:
    """Relays the workers' changes and answers the machine's connect budget."""

    def __init__(
        self,
        path: str,
        clock: Any = time.monotonic,
        limits: Callable[[], tuple[float, int]] | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        # (connects per second, links) per origin for the machine: the supervisor's
        # settings, so workers that read different versions of the file cannot
        # reset each other's window. None: what each take says (tests).
        self.limits = limits
        self.workers: dict[int, _Worker] = {}
        self.kept: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.rates: dict[str, RateWindow] = {}
        self.holders: dict[tuple[str, str], int] = {}  # origin mode: who publishes a name
        self.counters: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for worker in list(self.workers.values()):
            worker.writer.close()
        for task in list(self._tasks):
            task.cancel()

    def connected(self) -> list[int]:
        return sorted(self.workers)

    # ------------------------------------------------------------ one worker's link

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        worker: _Worker | None = None
        try:
            hello = decode(await reader.readline())
            wid = hello.get("worker")
            if hello["t"] != "hello" or not isinstance(wid, int) or wid < 0:
                raise BusError("the first message must be hello")
            old = self.workers.get(wid)
            if old is not None:
                self._gone(old)
            worker = self.workers[wid] = _Worker(wid, writer)
            await self._replay(worker)
            while line := await reader.readline():
                try:
                    self._handle(worker, decode(line))
                except BusError as exc:
                    self.counters["malformed"] += 1
                    log.warning("worker %d sent a bad bus message: %s", wid, exc)
        except (BusError, ValueError, ConnectionError) as exc:  # ValueError: a line too long
            log.warning("a worker's bus link ended: %s", exc)
        except asyncio.CancelledError:
            pass
        except Exception:  # that link ends, never the supervisor
            log.exception("a worker's bus link failed")
        finally:
            if worker is not None and self.workers.get(worker.id) is worker:
                self._gone(worker)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _gone(self, worker: _Worker) -> None:
        del self.workers[worker.id]
        self._send_others(worker.id, {"t": "gone", "w": worker.id})
        for key in [k for k, w in self.holders.items() if w == worker.id]:
            del self.holders[key]
            self._send_others(worker.id, {"t": "held", "app": key[0], "name": key[1], "w": -1})

    async def _replay(self, worker: _Worker) -> None:
        """A worker (re)joined: what the machine knows, before anything new, then
        ``ready``. Paced by the worker's reading (never cut as a slow reader), with
        the expired entries dropped first."""
        wall = time.time()
        for key in [k for k, e in self.kept.items() if _expired(e, wall)]:
            del self.kept[key]
        events = list(self.kept.values())
        for batch in batches(events):
            worker.writer.write(encode({"t": "ev", "w": -1, "events": batch}))
            await worker.writer.drain()
        for (app, name), holder in self.holders.items():
            self._send(worker, {"t": "held", "app": app, "name": name, "w": holder})
        for other in list(self.workers.values()):
            if other is not worker and other.conns:
                self._send(
                    worker, {"t": "conns", "w": other.id, "total": other.total, "ips": other.conns}
                )
        self._send(worker, {"t": "ready"})

    def _handle(self, worker: _Worker, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "ev":
            events = message.get("events")
            if not isinstance(events, list):
                raise BusError("ev: events must be a list")
            for event in events:
                self._keep(event)
            self.counters["events"] += len(events)
            self._send_others(worker.id, {"t": "ev", "w": worker.id, "events": events})
        elif kind == "conns":
            total = message.get("total")
            if not isinstance(total, int) or total < 0:
                raise BusError("conns: total must be a count")
            changed = counts(message.get("ips"))
            for ip, n in changed.items():
                if n:
                    worker.conns[ip] = n
                else:
                    worker.conns.pop(ip, None)
            worker.total = total
            self._send_others(
                worker.id, {"t": "conns", "w": worker.id, "total": total, "ips": changed}
            )
        elif kind == "take":
            self._send(worker, self._take(worker, message))
        elif kind == "pub":
            self._publish(worker, message)
        elif kind == "links":  # after a reconnect: the upstream links it still holds
            held = counts(message.get("links"))
            worker.links = Counter({origin: n for origin, n in held.items() if n})
        elif kind == "done":
            origin = message.get("origin")
            if isinstance(origin, str) and worker.links[origin] > 0:
                worker.links[origin] -= 1
        else:
            raise BusError(f"unknown kind {kind[:32]!r}")

    def _publish(self, worker: _Worker, message: dict[str, Any]) -> None:
        """Origin mode: one publisher per name on the machine; the first holds it."""
        app, name, on = message.get("app"), message.get("name"), message.get("on")
        if not isinstance(app, str) or not isinstance(name, str) or not isinstance(on, bool):
            raise BusError("pub: needs app, name and on")
        key = (app, name)
        holder = self.holders.get(key)
        if on:
            if holder is not None and holder != worker.id and holder in self.workers:
                self.counters["publish_busy"] += 1
                self._send(worker, {"t": "busy", "app": app, "name": name, "w": holder})
                return
            self.holders[key] = worker.id
        elif holder == worker.id:
            del self.holders[key]
        else:
            return
        held = {"t": "held", "app": app, "name": name, "w": worker.id if on else -1}
        self._send_others(worker.id, held)

    def _keep(self, event: object) -> None:
        """The latest ban or lift per address and miss per name, for replay."""
        if not isinstance(event, dict):
            return
        if event.get("k") == "ban":
            key = f"ban:{event.get('ip')}"
        elif event.get("k") == "miss":
            key = f"miss:{event.get('app')}/{event.get('name')}"
        else:
            return  # failures count now or never
        self.kept[key] = event
        self.kept.move_to_end(key)
        while len(self.kept) > _MAX_KEPT:
            self.kept.popitem(last=False)

    # ------------------------------------------------------------ the machine's budget

    def _take(self, worker: _Worker, message: dict[str, Any]) -> dict[str, Any]:
        ident, origin = message.get("id"), message.get("origin")
        rate, cap = message.get("rate"), message.get("cap")
        if not (
            isinstance(origin, str)
            and isinstance(rate, int | float)
            and rate > 0
            and isinstance(cap, int)
            and cap > 0
        ):
            raise BusError("take: needs origin, a positive rate and cap")
        if self.limits is not None:
            rate, cap = self.limits()
        answer: dict[str, Any] = {"t": "grant", "id": ident, "origin": origin, "ok": False}
        if sum(w.links[origin] for w in self.workers.values()) >= cap:
            self.counters["refused:link_cap"] += 1
            answer["reason"] = "link_cap"
            return answer
        window = self.rates.get(origin)
        if window is None or window.rate != rate:  # a reload changed it
            window = self.rates[origin] = RateWindow(float(rate), GRANT_MARGIN)
        if not window.try_take(self.clock()):
            self.counters["refused:connect_rate"] += 1
            answer["reason"] = "connect_rate"
            return answer
        worker.links[origin] += 1
        self.counters["granted"] += 1
        answer["ok"] = True
        return answer

    # ------------------------------------------------------------ sending

    def _send(self, worker: _Worker, message: dict[str, Any]) -> None:
        self._write(worker, encode(message))

    def _send_others(self, wid: int, message: dict[str, Any]) -> None:
        data = encode(message)
        for other in list(self.workers.values()):
            if other.id != wid:
                self._write(other, data)

    def _write(self, worker: _Worker, data: bytes) -> None:
        writer = worker.writer
        if writer.is_closing():
            return
        if worker.backlog.stalled(writer.transport.get_write_buffer_size(), self.clock()):
            # A worker that stopped reading (stopped, stuck): its link is cut rather
            # than the supervisor's memory; it reconnects and gets the replay.
            self.counters["cut_slow_worker"] += 1
            log.warning("worker %d does not read its bus link; cutting it", worker.id)
            writer.transport.abort()
            return
        writer.write(data)

    def view(self) -> dict[str, Any]:
        return {
            "connected": self.connected(),
            "kept": len(self.kept),
            "published": len(self.holders),
            "links": {
                origin: sum(w.links[origin] for w in self.workers.values()) for origin in self.rates
            },
            **dict(self.counters),
        }
