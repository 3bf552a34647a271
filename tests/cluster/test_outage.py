"""Redis killed, paused and fed garbage under a fleet of three edges: plays go on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamgate.api.views import cluster_view
from streamgate.rtmp.messages import Status
from tests.cluster.harness import ClusterEdge, accepts_from
from tests.cluster.redisd import RedisServer
from tests.cluster.test_fleet import ATTACKER, ban_on, flood, origin_plays, start_edges, stop_all
from tests.peers import wait_until
from tests.processes import ConnectCounter
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    with ServerThread(origin={"play_wait": 0.2}) as srv:
        yield srv


def view(edge: ClusterEdge) -> dict[str, object]:
    ctx = edge.ctx
    assert ctx is not None
    return edge.call(lambda: cluster_view(ctx, ctx.loop.time()))


def metric_up(edge: ClusterEdge) -> float:
    from prometheus_client import CollectorRegistry

    from streamgate.api.metrics import StreamgateCollector

    def scrape() -> float:
        registry = CollectorRegistry()
        registry.register(StreamgateCollector(edge.ctx, listening=lambda: True))  # type: ignore[arg-type]
        value = registry.get_sample_value("streamgate_cluster_up")
        assert value is not None
        return value

    return edge.call(scrape)


def test_redis_killed_plays_go_on_local_bans_work_and_recovery_republishes(
    tmp_path: Path, origin: ServerThread
) -> None:
    redis_server = RedisServer(tmp_path).start()
    edges = start_edges(redis_server.url, origin.port)
    try:
        names = [f"before-{i}" for i in range(10)]
        edges[0].run(flood([edges[0].url(n) for n in names]))
        assert metric_up(edges[0]) == 1.0

        redis_server.kill9()
        for edge in edges:
            wait_until(lambda e=edge: not e.cluster_up(), timeout=5, what="Redis seen down")  # type: ignore[misc]
        assert metric_up(edges[1]) == 0.0
        shown = view(edges[1])
        assert shown["redis"]["up"] is False and shown["redis"]["last_error"]  # type: ignore[index]

        # Plays keep being answered on every edge, new names reach the origin.
        before = origin_plays(origin)
        for i, edge in enumerate(edges):
            statuses = edge.run(flood([edge.url(f"during-{i}-{k}") for k in range(5)]))
            assert all(s == [Status.PLAY_STREAM_NOT_FOUND] for s in statuses)
        assert origin_plays(origin) == before + 15
        # A ban made during the outage protects its own edge at once.
        ban_on(edges[0], ATTACKER)
        assert not accepts_from(edges[0].port, ATTACKER)
        assert accepts_from(edges[1].port, ATTACKER)

        redis_server = RedisServer(tmp_path, port=redis_server.port).start()  # empty
        for edge in edges:
            wait_until(edge.cluster_up, timeout=10, what="reconnected")
        for edge in edges[1:]:
            wait_until(
                lambda e=edge: not accepts_from(e.port, ATTACKER),  # type: ignore[misc]
                timeout=2,
                what="the outage's ban to reach the other edges",
            )
        with redis_server.client() as keys:
            assert keys.exists(f"streamgate:ban:{ATTACKER}")
            assert keys.exists("streamgate:miss:4:live/before-0")  # repopulated by the nodes
            assert keys.exists("streamgate:miss:4:live/during-2-4")
    finally:
        stop_all(edges)
        redis_server.close()


def test_a_paused_redis_holds_back_no_play(tmp_path: Path, origin: ServerThread) -> None:
    with RedisServer(tmp_path) as redis_server:
        edges = start_edges(redis_server.url, origin.port, n=2)
        try:
            edges[0].run(flood([edges[0].url("cached")]))
            wait_until(
                lambda: edges[1].call(lambda: len(edges[1].ctx.edge.negative)) == 1,  # type: ignore[union-attr]
                timeout=2,
                what="the miss to replicate",
            )
            redis_server.pause()
            try:
                # Redis answers nothing now: every play below is answered without it.
                for edge in edges:
                    cached = edge.run(flood([edge.url("cached")] * 5))
                    fresh = edge.run(flood([edge.url(f"fresh-{k}") for k in range(5)]))
                    assert all(s == [Status.PLAY_STREAM_NOT_FOUND] for s in cached + fresh)
                    ban_on(edge, ATTACKER)
                    assert not accepts_from(edge.port, ATTACKER)
                for edge in edges:
                    wait_until(lambda e=edge: not e.cluster_up(), timeout=5, what="Redis seen down")  # type: ignore[misc]
            finally:
                redis_server.resume()
            for edge in edges:
                wait_until(edge.cluster_up, timeout=10, what="reconnected after SIGCONT")
        finally:
            stop_all(edges)


def test_garbage_in_the_keys_is_counted_and_ignored(tmp_path: Path, origin: ServerThread) -> None:
    with RedisServer(tmp_path) as redis_server, redis_server.client() as r:
        r.hset("streamgate:ban:10.0.0.1", "x", "y")  # wrong type
        r.set("streamgate:ban:10.0.0.2", "x" * 100_000)  # huge
        r.set("streamgate:ban:not-an-ip", json.dumps({"ip": "not-an-ip", "until": 1}))
        r.set("streamgate:ban:10.0.0.3", json.dumps({"ip": "10.0.0.3", "until": "soon"}))
        r.set("streamgate:miss:4:live/x", b"\xff\xfe not json")
        r.lpush("streamgate:miss:list", "a")
        r.set("streamgate:node:ghost", "[]")
        r.lpush("streamgate:budget:127.0.0.1:1", "a")
        r.set("streamgate:directory:leader", "nobody")
        edges = start_edges(redis_server.url, origin.port)
        try:
            for raw in (b"\x00\x01", b"[]", b'{"node": "x", "events": [1, {"k": "ban"}]}',
                        json.dumps({"node": "x", "events": [
                            {"k": "ban", "ip": "999.1.1.1", "until": 0, "offences": 1,
                             "reason": "", "changed": time.time()},
                            {"k": "fail", "ip": "::1", "kind": "boom", "detail": ""},
                            {"k": "miss", "app": "", "name": "n", "expires": 1e300,
                             "reason": ""}]})):  # fmt: skip
                r.publish("streamgate:events", raw)
            for edge in edges:
                wait_until(
                    lambda e=edge: (
                        sum(  # type: ignore[misc]
                            v for k, v in e.counters().items() if k.startswith("malformed:")
                        )
                        >= 12
                    ),
                    timeout=5,
                    what="the garbage to be counted",
                )
                assert edge.cluster_up()
            counts = view(edges[0])["malformed"]
            assert isinstance(counts, dict)
            assert set(counts) >= {"key", "ban", "miss", "node", "message", "event"}
            # Still serving, still replicating.
            statuses = edges[0].run(flood([edges[0].url("after-garbage")]))
            assert statuses == [[Status.PLAY_STREAM_NOT_FOUND]]
            ban_on(edges[0], ATTACKER)
            wait_until(lambda: not accepts_from(edges[2].port, ATTACKER), timeout=2, what="ban")
        finally:
            stop_all(edges)


def test_the_fleet_connect_budget_bounds_the_origin(tmp_path: Path, origin: ServerThread) -> None:
    with RedisServer(tmp_path) as redis_server, ConnectCounter(origin.port) as counter:
        # The default budget_wait (50 ms): late answers under the burst are refused
        # (the window was full a moment ago), never let through.
        edges = start_edges(
            redis_server.url, counter.port, edge={"fleet_max_connects_per_second": 10}
        )
        try:

            async def wave(edge: ClusterEdge, wave_no: int) -> list[list[str]]:
                return await flood([edge.url(f"w{wave_no}-{edge.port}-{k}") for k in range(15)])

            results: list[list[str]] = []
            for wave_no in range(3):  # 45 distinct names per wave, 15 at each edge at once
                futures = [
                    asyncio.run_coroutine_threadsafe(wave(e, wave_no), e.loop) for e in edges
                ]
                results.extend(s for f in futures for s in f.result(60))
            refused = [s for s in results if s == [Status.PLAY_FAILED]]
            assert refused, [view(e)["fleet_connect_budget"] for e in edges]  # the budget said no
            assert counter.stamps  # and some connects went through
            budgets = [view(e)["fleet_connect_budget"] for e in edges]
            opened = sum(b.get("granted", 0) + b.get("fallback", 0) for b in budgets)  # type: ignore[attr-defined]
            assert opened == len(counter.stamps), budgets
            assert counter.most_within(1.0) <= 10, sorted(counter.stamps)
        finally:
            stop_all(edges)
