"""Three ``streamgate run`` processes, one ``redis-server``, one nginx-rtmp origin, over
loopback: what the fleet costs the origin is counted at the origin's port."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgate.client import RtmpClient
from streamgate.errors import UpstreamError
from streamgate.loadtest.engine import LoadGenerator, PlayerRecord
from streamgate.loadtest.player import PlayerOptions
from streamgate.rtmp.events import StatusReceived
from streamgate.rtmp.messages import Status
from tests.cluster.harness import QUICK_CLUSTER, accepts_from
from tests.cluster.redisd import RedisServer
from tests.peers import NginxRtmp
from tests.processes import ConnectCounter, GatewayProcess, missing_origin
from tests.waiting import wait_until

pytestmark = pytest.mark.interop

ATTACKER = "127.0.0.2"
VIEWER = "127.0.0.3"  # neither allow-listed nor failing: must stay welcome
VIEWERS = "127.0.0.1/32"  # the load test's players: trusted, never limited or banned


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    with missing_origin(tmp_path / "origin") as server:
        yield server


@pytest.fixture
def counter(nginx: NginxRtmp) -> Iterator[ConnectCounter]:
    with ConnectCounter(nginx.rtmp_port) as relay:
        yield relay


def edge_settings(
    redis_url: str | None, node: str, origin_port: int, **extra: dict[str, Any]
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "mode": "edge",
        "rtmp": {"drain_time": 0.2},
        "edge": {
            "origins": [f"rtmp://127.0.0.1:{origin_port}"],
            "start_timeout": 2.0,
            "missing_ttl": 5.0,
            "max_connects_per_second": 10_000.0,  # the negative cache is what is measured
        },
        "limits": {"allow": [VIEWERS], "ban_after_failures": 3, "ban_time": 300.0},
        "log": {"level": "info"},
    }
    if redis_url is not None:
        settings["cluster"] = {"redis_url": redis_url, "node_id": node, **QUICK_CLUSTER}
    for name, values in extra.items():
        settings.setdefault(name, {}).update(values)
    return settings


def start_fleet(
    tmp_path: Path, redis_url: str | None, origin_port: int, n: int = 3, **extra: dict[str, Any]
) -> list[GatewayProcess]:
    edges: list[GatewayProcess] = []
    try:
        for i in range(n):
            node = f"edge{i + 1}"
            settings = edge_settings(redis_url, node, origin_port, **extra)
            edges.append(GatewayProcess(tmp_path / node, settings).start())
        if redis_url is not None:
            for edge in edges:
                wait_until(edge.cluster_up, timeout=15, what=f"{edge.name} connected to Redis")
    except BaseException:
        stop_fleet(edges)
        raise
    return edges


def stop_fleet(edges: list[GatewayProcess]) -> None:
    for edge in edges:
        edge.stop()


def flood(
    edges: list[GatewayProcess], names: list[str], seconds: float
) -> tuple[list[PlayerRecord], float]:
    """One player per (edge, name), each re-opening as soon as it is dropped, for
    ``seconds``; returns every attempt's record and when the flood began."""
    with LoadGenerator(PlayerOptions(start_timeout=10.0), workers=2) as gen:
        begin = time.monotonic() + 0.2
        end = begin + seconds
        urls = [edge.url(name) for name in names for edge in edges]
        # Each player re-opens twice a second: ten times per missing_ttl per name and
        # edge, a flood, at a pace two cores serve. Saturated edges measure their own
        # loop's lag (Redis answers past claim_wait fall back to local limits, by
        # design), not what the fleet saves.
        gen.add(urls, 5000.0, start_at=begin, reconnect=True, reconnect_delay=0.5, until=end)
        wait_until(lambda: time.monotonic() >= end, timeout=seconds + 5, what="the flood's end",
                   interval=0.2)  # fmt: skip
        return gen.stop(), begin


def test_a_flood_of_the_same_names_at_three_edges_costs_the_origin_what_one_edge_costs(
    tmp_path: Path, redis_server: RedisServer, counter: ConnectCounter
) -> None:
    seconds, ttl, names = 20.0, 5.0, [f"made-up-{i}" for i in range(100)]
    # This shows what the one asker per name saves the origin. On a loaded machine
    # Redis answers claims later than the default claim_wait (0.25 s), and each such
    # play falls back to this edge's own limits; a longer wait keeps the claims in
    # force. (That no play waits on Redis past claim_wait: test_outage.)
    edges = start_fleet(tmp_path, redis_server.url, counter.port, cluster={"claim_wait": 1.0})
    try:
        records, _ = flood(edges, names, seconds)
        asks = [edge.cluster()["asks"] for edge in edges]
    finally:
        stop_fleet(edges)
    bound = len(names) * (math.ceil(seconds / ttl) + 1)
    refused = [r for r in records if r.closed_by_server or r.last_status]
    drops = sorted(r.ended - r.play_sent for r in refused if r.play_sent and r.ended)
    print(
        f"origin connects {counter.count()} (bound {bound}); attempts {len(records)}; "
        f"drop p50 {drops[len(drops) // 2]:.3f} s max {drops[-1]:.3f} s; asks {asks}"
    )
    assert len(records) > 3 * len(names) * 3  # the players did re-open, many times
    assert counter.count() <= bound
    assert counter.count() >= len(names)  # each name was asked at least once
    late = [r for r in records if r.play_sent and r.ended and r.ended - r.play_sent >= 2.0]
    assert not late


def test_the_fleet_connect_budget_holds_the_origin_to_ten_connects_a_second(
    tmp_path: Path, redis_server: RedisServer, counter: ConnectCounter
) -> None:
    edges = start_fleet(
        tmp_path, redis_server.url, counter.port, edge={"fleet_max_connects_per_second": 10.0}
    )
    try:
        # Every player its own name: no verdict is shared, only the budget holds them back.
        names = [f"distinct-{i}" for i in range(50)]
        with LoadGenerator(PlayerOptions(start_timeout=10.0), workers=2) as gen:
            begin = time.monotonic() + 0.2
            end = begin + 8.0
            for edge in edges:
                urls = [edge.url(f"{edge.name}-{n}") for n in names]
                # Each re-opens four times a second: 600 asks a second for 10 slots.
                gen.add(urls, 500.0, start_at=begin, reconnect=True, reconnect_delay=0.25,
                        until=end)  # fmt: skip
            wait_until(lambda: time.monotonic() >= end, timeout=15, what="the flood's end",
                       interval=0.2)  # fmt: skip
            records = gen.stop()
        budgets = [edge.cluster()["fleet_connect_budget"] for edge in edges]
    finally:
        stop_fleet(edges)
    most = counter.most_within(1.0)
    print(f"origin connects {counter.count()}, most in one second {most}; budgets {budgets}")
    assert sum(b.get("refused", 0) for b in budgets) > 0  # the budget did say no
    assert all(b.get("granted", 0) > 0 for b in budgets)  # to every edge's share
    assert counter.count() >= 8 * 10 * 0.8  # and spent close to all it allowed
    # Every connect the origin saw was granted (Redis stayed up: an answer later than
    # budget_wait refuses, it lets nothing through): none behind the budget's back.
    opened = sum(b.get("granted", 0) + b.get("fallback", 0) for b in budgets)
    assert opened == counter.count()
    assert most <= 10, sorted(counter.stamps)
    assert len(records) > 3 * len(names)


async def refused_play(url: str, source: str) -> str:
    """A play from ``source``: the status it ended on, or how the connection ended."""
    try:
        client = await RtmpClient.open(url, source=source)
    except (UpstreamError, OSError) as exc:
        return f"refused at connect: {exc}"
    try:
        await client.play()
        async with asyncio.timeout(5):
            while True:
                event = await client.next_event()
                if isinstance(event, StatusReceived) and event.code != Status.PLAY_RESET:
                    return event.code
    except (ConnectionError, TimeoutError) as exc:
        return f"closed: {exc!r}"
    finally:
        client.close()


def test_a_ban_made_on_one_process_resets_the_address_at_the_others_outlives_restarts_and_is_lifted_over_http(  # noqa: E501
    tmp_path: Path, redis_server: RedisServer, nginx: NginxRtmp
) -> None:
    auth = {"play": "signed", "keys": {"k1": "fleet-secret"}}
    edges = start_fleet(tmp_path, redis_server.url, nginx.rtmp_port, auth=auth)
    try:
        assert all(accepts_from(e.port, ATTACKER) for e in edges)  # not banned yet
        bad = edges[0].url("x") + "?exp=9999999999&sig=bad"
        for _ in range(3):  # ban_after_failures
            assert asyncio.run(refused_play(bad, ATTACKER)) == Status.PLAY_FAILED
        banned = time.monotonic()
        assert not accepts_from(edges[0].port, ATTACKER)
        for edge in edges[1:]:
            wait_until(lambda e=edge: not accepts_from(e.port, ATTACKER), timeout=1.0,  # type: ignore[misc]
                       what=f"the ban to reach {edge.name}", interval=0.01)  # fmt: skip
        spread = time.monotonic() - banned
        print(f"ban on every edge {spread * 1000:.0f} ms after the third failure")
        assert spread < 1.0
        assert all(accepts_from(e.port, VIEWER) for e in edges)  # another address is welcome
        listed = edges[2].get(f"/api/v1/bans/{ATTACKER}")
        assert listed["ip"] == ATTACKER

        for edge in edges:  # all three restarted: the ban is in Redis
            edge.restart()
        for edge in edges:
            wait_until(edge.cluster_up, timeout=15, what=f"{edge.name} reconnected")
            assert not accepts_from(edge.port, ATTACKER)
            assert accepts_from(edge.port, VIEWER)

        status, _ = edges[2].request("DELETE", f"/api/v1/bans/{ATTACKER}")
        assert status in (200, 204)
        lifted = time.monotonic()
        for edge in edges:
            wait_until(lambda e=edge: accepts_from(e.port, ATTACKER), timeout=1.0,  # type: ignore[misc]
                       what=f"the lift to reach {edge.name}", interval=0.01)  # fmt: skip
        print(f"lift on every edge {(time.monotonic() - lifted) * 1000:.0f} ms after the DELETE")
        assert edges[0].request("GET", f"/api/v1/bans/{ATTACKER}")[0] == 404
    finally:
        stop_fleet(edges)
