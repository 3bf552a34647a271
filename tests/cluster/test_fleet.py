"""Three edges (in-process ServerThreads, each with its own loop and cluster node) and
one real ``redis-server``, in front of one streamgate origin, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgate.config import load_settings
from streamgate.rtmp.messages import Status
from tests.cluster.harness import ClusterEdge, accepts_from, fleet_sections
from tests.cluster.redisd import RedisServer
from tests.interop.test_edge import play
from tests.peers import wait_until
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop

ATTACKER = "127.0.0.2"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    # Missing names are answered after play_wait: each one is one upstream play.
    with ServerThread(origin={"play_wait": 0.2}) as srv:
        yield srv


def start_edges(redis_url: str, origin_port: int, n: int = 3, **extra: Any) -> list[ClusterEdge]:
    edges = []
    for i in range(n):
        sections = fleet_sections(redis_url, f"edge{i + 1}", origin_port, **extra)
        edges.append(ClusterEdge(load_settings(None, **sections)).start())
    for edge in edges:
        wait_until(edge.cluster_up, timeout=10, what=f"{edge.settings.cluster.node_id} up")
    return edges


def stop_all(edges: list[ClusterEdge]) -> None:
    for edge in edges:
        edge.stop()


def ban_on(edge: ClusterEdge, ip: str) -> None:
    """Auth failures from ``ip`` on ``edge`` until banned, through the session's own call."""

    def fail() -> bool:
        assert edge.ctx is not None
        now = edge.ctx.loop.time()
        return any(
            edge.ctx.bans.record_failure(ip, "auth_bad_signature", now) is not None
            for _ in range(edge.settings.limits.ban_after_failures)
        )

    assert edge.call(fail)


def origin_plays(origin: ServerThread) -> int:
    """Upstream plays the origin answered StreamNotFound to (one per edge connect)."""
    assert origin.ctx is not None
    ctx = origin.ctx
    return origin.call(lambda: ctx.counters.plays_refused[Status.PLAY_STREAM_NOT_FOUND])


def test_a_ban_on_one_edge_resets_the_address_on_all_survives_restarts_and_lifts_everywhere(
    redis_server: RedisServer, origin: ServerThread
) -> None:
    edges = start_edges(redis_server.url, origin.port)
    try:
        assert all(accepts_from(e.port, ATTACKER) for e in edges)  # not banned yet
        ban_on(edges[0], ATTACKER)
        made = time.monotonic()
        assert not accepts_from(edges[0].port, ATTACKER)
        for edge in edges[1:]:
            wait_until(
                lambda e=edge: not accepts_from(e.port, ATTACKER),  # type: ignore[misc]
                timeout=1.0,
                what="the ban to reach the other edges",
            )
        assert time.monotonic() - made < 1.0
        assert all(accepts_from(e.port, "127.0.0.1") for e in edges)  # viewers unharmed
        # It came from edge 1: as the ban itself, or as the failures that made it.
        got = edges[1].counters()
        assert got.get("received:ban", 0) + got.get("received:failure", 0) >= 1
    finally:
        stop_all(edges)

    edges = start_edges(redis_server.url, origin.port)  # all three restarted
    try:
        assert not any(accepts_from(e.port, ATTACKER) for e in edges)
        assert edges[2].call(lambda: edges[2].ctx.bans.unban(ATTACKER))  # type: ignore[union-attr]
        for edge in edges:
            wait_until(
                lambda e=edge: accepts_from(e.port, ATTACKER),  # type: ignore[misc]
                timeout=1.0,
                what="the lift to reach every edge",
            )
    finally:
        stop_all(edges)
    edges = start_edges(redis_server.url, origin.port, n=1)  # the lift outlives restarts too
    try:
        assert accepts_from(edges[0].port, ATTACKER)
    finally:
        stop_all(edges)


def test_failures_count_across_the_fleet(redis_server: RedisServer, origin: ServerThread) -> None:
    edges = start_edges(redis_server.url, origin.port)
    try:
        # ban_after_failures = 3: one failure on each edge bans the address everywhere.
        for edge in edges:
            edge.call(
                lambda e=edge: e.ctx.bans.record_failure(  # type: ignore[misc]
                    ATTACKER, "auth_bad_signature", e.ctx.loop.time()
                )
            )
            time.sleep(0.05)  # not synchronisation: the failures must come one after another
        for edge in edges:
            wait_until(
                lambda e=edge: not accepts_from(e.port, ATTACKER),  # type: ignore[misc]
                timeout=2.0,
                what="three failures on three edges to ban",
            )
    finally:
        stop_all(edges)


async def flood(urls: list[str]) -> list[list[str]]:
    outcomes = await asyncio.gather(*(play(u, 1, timeout=10) for u in urls))
    return [o.statuses for o in outcomes]


def test_the_negative_cache_is_shared(redis_server: RedisServer, origin: ServerThread) -> None:
    edges = start_edges(redis_server.url, origin.port)
    try:
        names = [f"made-up-{i}" for i in range(30)]
        first = edges[0].run(flood([edges[0].url(n) for n in names]))
        assert all(s == [Status.PLAY_STREAM_NOT_FOUND] for s in first)
        assert origin_plays(origin) == len(names)

        def learned(edge: ClusterEdge) -> bool:
            return edge.call(lambda: len(edge.ctx.edge.negative)) == len(names)  # type: ignore[union-attr]

        for edge in edges[1:]:
            wait_until(lambda e=edge: learned(e), timeout=2, what="the misses to replicate")  # type: ignore[misc]
        for _ in range(3):  # the same names, re-opened at every edge
            for edge in edges:
                statuses = edge.run(flood([edge.url(n) for n in names]))
                assert all(s == [Status.PLAY_STREAM_NOT_FOUND] for s in statuses)
        assert origin_plays(origin) == len(names)  # what one edge costs, not three times
        assert edges[1].counters()["received:miss"] == len(names)
    finally:
        stop_all(edges)


class SilentOrigin:
    """Accepts TCP and never speaks: an upstream link waits out its reply_timeout."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="silent-origin")
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()
        self._thread.join(5)


def asks(edge: ClusterEdge) -> dict[str, int]:
    def read() -> dict[str, int]:
        assert edge.ctx is not None and edge.ctx.cluster is not None
        assert edge.ctx.cluster.probes is not None
        return dict(edge.ctx.cluster.probes.counters)

    return edge.call(read)


def test_a_claim_given_up_without_a_verdict_releases_the_other_edges_at_once(
    redis_server: RedisServer,
) -> None:
    origin = SilentOrigin()
    # A claim lasts start_timeout (60 s); the claimer's link fails after 1 s of silence.
    edges = start_edges(
        redis_server.url, origin.port, n=2, edge={"start_timeout": 60.0, "reply_timeout": 1.0}
    )
    try:
        first = asyncio.run_coroutine_threadsafe(play(edges[0].url("n"), 1, 30), edges[0].loop)
        wait_until(lambda: asks(edges[0]).get("claimed") == 1, timeout=10, what="edge1's claim")
        second = asyncio.run_coroutine_threadsafe(play(edges[1].url("n"), 1, 30), edges[1].loop)
        # edge2 waits on edge1's claim; edge1's link fails without a verdict and gives
        # the claim back, so edge2 asks again, claims and asks the origin itself: long
        # before the 60 s claim would have expired.
        wait_until(lambda: asks(edges[1]).get("claimed") == 1, timeout=20, what="edge2's claim")
        assert asks(edges[1]).get("claim_ended") == 1
        assert asks(edges[0]).get("released") == 1
        assert first.result(30).statuses == [Status.PLAY_FAILED]
        assert second.result(30).statuses == [Status.PLAY_FAILED]
        assert len(origin.accepted) == 2  # one asker at a time
    finally:
        stop_all(edges)
        origin.close()
