"""The machine bus with its real parts: an Exchange and worker peers over a unix
socket in a temp dir, each peer on its own ban store and admission guard."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamgate.edge.budgeted import BudgetRefusal
from streamgate.shield.admission import AdmissionGuard, AdmissionRules
from streamgate.shield.bans import BanRules, MemoryBanStore, SafeBans
from streamgate.shield.negcache import NegativeCache
from streamgate.workers.exchange import Exchange
from streamgate.workers.peer import MachinePeer
from streamgate.workers.wire import BusError, batches, counts, decode, encode
from tests.waiting import await_until


class Worker:
    def __init__(self, wid: int, path: str) -> None:
        self.bans = MemoryBanStore(BanRules(ban_after=3))
        self.bans.clock = time.monotonic
        self.admission = AdmissionGuard(
            AdmissionRules(max_connections_per_ip=5, connections_per_second_per_ip=1000),
            SafeBans(self.bans),
        )
        self.negative = NegativeCache(10.0)
        self.peer = MachinePeer(wid, path, self.bans, self.admission, time.monotonic)
        self.peer.budget_rate = 5
        self.peer.budget_cap = 3

    def start(self) -> None:
        self.peer.start(self.negative)


async def machine(tmp_path: Path, n: int = 2) -> tuple[Exchange, list[Worker]]:
    path = str(tmp_path / "bus.sock")
    exchange = Exchange(path)
    await exchange.start()
    workers = [Worker(w, path) for w in range(n)]
    for worker in workers:
        worker.start()
    await await_until(lambda: exchange.connected() == list(range(n)), timeout=5, what="on bus")
    await await_until(lambda: all(w.peer.up for w in workers), timeout=5, what="peers up")
    return exchange, workers


async def close(exchange: Exchange, workers: list[Worker]) -> None:
    for worker in workers:
        await worker.peer.close()
    await exchange.close()


def test_bans_failures_misses_and_counts_hold_for_the_machine(tmp_path: Path) -> None:
    async def main() -> None:
        exchange, (a, b) = await machine(tmp_path)
        try:
            now = time.monotonic()
            # Failures count across workers: two on A and one on B make the ban.
            a.bans.record_failure("10.0.0.1", "bad token", now)
            a.bans.record_failure("10.0.0.1", "bad token", now)
            await await_until(
                lambda: b.peer.counters["received:failure"] == 2, timeout=5, what="failures"
            )
            assert b.bans.record_failure("10.0.0.1", "bad token", time.monotonic()) is not None
            await await_until(
                lambda: a.bans.is_banned("10.0.0.1", time.monotonic()), timeout=5, what="ban on A"
            )
            # A lift anywhere lifts everywhere.
            assert a.bans.unban("10.0.0.1")
            await await_until(
                lambda: not b.bans.is_banned("10.0.0.1", time.monotonic()),
                timeout=5,
                what="lift on B",
            )
            # A miss on one worker is refused by the other.
            a.negative.add(("live", "nope"), time.monotonic(), "not found")
            await await_until(
                lambda: b.negative.get(("live", "nope"), time.monotonic()) is not None,
                timeout=5,
                what="miss on B",
            )
            # Per-IP caps count the other worker's connections.
            for _ in range(3):
                assert a.admission.admit("10.0.0.2", time.monotonic()) is None
            await await_until(
                lambda: b.admission.elsewhere.get("10.0.0.2") == 3, timeout=5, what="counts"
            )
            assert b.admission.admit("10.0.0.2", time.monotonic()) is None
            assert b.admission.admit("10.0.0.2", time.monotonic()) is None
            assert b.admission.admit("10.0.0.2", time.monotonic()) == "max_connections_per_ip"
            # A worker gone: its connections no longer count anywhere.
            await a.peer.close()
            await await_until(
                lambda: "10.0.0.2" not in b.admission.elsewhere, timeout=5, what="gone"
            )
        finally:
            await close(exchange, [b])

    asyncio.run(main())


def test_a_new_worker_starts_with_the_machines_bans_and_misses(tmp_path: Path) -> None:
    async def main() -> None:
        exchange, (a,) = await machine(tmp_path, 1)
        try:
            now = time.monotonic()
            for _ in range(3):
                a.bans.record_failure("10.0.0.9", "bad token", now)
            a.negative.add(("live", "gone"), now, "not found")
            await await_until(lambda: len(exchange.kept) == 2, timeout=5, what="kept")
            late = Worker(1, exchange.path)
            late.start()
            await await_until(
                lambda: (
                    late.bans.is_banned("10.0.0.9", time.monotonic())
                    and late.negative.get(("live", "gone"), time.monotonic()) is not None
                ),
                timeout=5,
                what="the replay",
            )
            await late.peer.close()
        finally:
            await close(exchange, [a])

    asyncio.run(main())


def test_the_connect_budget_is_the_machines(tmp_path: Path) -> None:
    async def main() -> None:
        exchange, (a, b) = await machine(tmp_path)
        try:
            answers = [await w.peer.take("origin:1935") for w in (a, b, a)]
            assert answers == [True, True, True]
            # The link cap (3) holds for both workers together...
            refused = await b.peer.take("origin:1935")
            assert isinstance(refused, BudgetRefusal) and refused.reason == "machine_link_cap"
            # ... and a closed link gives its place back.
            a.peer.done("origin:1935")
            a.peer.done("origin:1935")
            a.peer.done("origin:1935")
            await await_until(
                lambda: exchange.view()["links"]["origin:1935"] == 1, timeout=5, what="done"
            )
            # The rate (5 per second) too: two more fit, then the window is full.
            assert await a.peer.take("origin:1935") is True
            assert await b.peer.take("origin:1935") is True
            for w in (a, b, b):  # every link closed: only the rate can refuse now
                w.peer.done("origin:1935")
            await await_until(
                lambda: exchange.view()["links"]["origin:1935"] == 0, timeout=5, what="closed"
            )
            late = await a.peer.take("origin:1935")
            assert isinstance(late, BudgetRefusal) and late.reason == "machine_connect_rate"
        finally:
            await close(exchange, [a, b])

    asyncio.run(main())


def test_garbage_on_the_bus_closes_only_that_link(tmp_path: Path) -> None:
    async def main() -> None:
        exchange, (a, b) = await machine(tmp_path)
        try:
            for junk in (b"\xff\xfe\n", b"[]\n", b'{"t": 5}\n', b"x" * 100 + b"\n"):
                reader, writer = await asyncio.open_unix_connection(exchange.path)
                writer.write(junk)
                await writer.drain()
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed on us
                writer.close()
            # A well-framed worker sending bad messages: counted, the link stays.
            reader, writer = await asyncio.open_unix_connection(exchange.path)
            writer.write(b'{"t": "hello", "worker": 7}\n{"t": "nonsense"}\n{"t": "conns"}\n')
            await writer.drain()
            await await_until(lambda: exchange.counters["malformed"] == 2, timeout=5, what="n")
            assert 7 in exchange.connected()
            writer.close()
            # The real workers never noticed.
            a.negative.add(("live", "still"), time.monotonic(), "not found")
            await await_until(
                lambda: b.negative.get(("live", "still"), time.monotonic()) is not None,
                timeout=5,
                what="the bus still works",
            )
        finally:
            await close(exchange, [a, b])

    asyncio.run(main())


@given(st.binary(max_size=300))
def test_decode_takes_any_bytes(raw: bytes) -> None:
    try:
        message = decode(raw)
    except BusError:
        return
    assert isinstance(message["t"], str)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_counts_take_any_json(value: object) -> None:
    json.dumps(value)
    try:
        parsed = counts(value)
    except BusError:
        return
    assert all(isinstance(k, str) and isinstance(n, int) and n >= 0 for k, n in parsed.items())


@pytest.mark.parametrize("junk", [b"{}", b'{"t": []}', b"null", b"1e999999"])
def test_decode_refuses_what_is_not_a_message(junk: bytes) -> None:
    with pytest.raises(BusError):
        decode(junk)


def test_a_replay_of_many_entries_reaches_a_late_worker_whole(tmp_path: Path) -> None:
    """Far more than the 16 MB backlog bound: paced by the worker's reading, not cut."""

    async def main() -> None:
        exchange, (a,) = await machine(tmp_path, 1)
        try:
            now = time.monotonic()
            long = "n" * 1000  # names up to 1024 characters: batches split by size
            for i in range(20_000):
                a.negative.add(("live", f"{long}{i}"), now, "not found")
            await await_until(lambda: len(exchange.kept) == 20_000, timeout=30, what="kept")
            late = Worker(1, exchange.path)
            late.start()
            await await_until(lambda: late.peer.replayed.is_set(), timeout=30, what="replay")
            assert len(late.negative) == 20_000
            assert late.peer.counters["malformed"] == 0
            await late.peer.close()
        finally:
            await close(exchange, [a])

    asyncio.run(main())


def test_batches_stay_under_the_decoders_bounds() -> None:
    events = [{"k": "miss", "app": "live", "name": "é" * 1000, "expires": 1.0}] * 3000
    parts = batches(events)
    assert sum(len(p) for p in parts) == 3000
    assert all(len(p) <= 1000 and len(encode({"t": "ev", "events": p})) < 1 << 20 for p in parts)
