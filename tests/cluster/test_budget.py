"""The fleet connect budget (cluster/budget.py) against a real redis-server: a late
answer refuses while Redis is up, its slot is given back, and only Redis found down
lets the edge's share of the rate decide."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamgate.cluster.budget import FleetBudget
from streamgate.cluster.settings import cluster_options
from streamgate.config import load_settings
from streamgate.edge.budgeted import BudgetRefusal
from tests.cluster.redisd import RedisServer
from tests.waiting import await_until

pytestmark = pytest.mark.interop

ORIGIN = "127.0.0.1:1935"


def budget(server: RedisServer, up: list[bool]) -> FleetBudget:
    settings = load_settings(
        None,
        mode="edge",
        edge={"origins": [f"rtmp://{ORIGIN}"], "fleet_max_connects_per_second": 10.0},
        cluster={"redis_url": server.url, "node_id": "me", "command_timeout": 10.0},
    )
    options = cluster_options(settings)
    assert options is not None
    return FleetBudget(options, available=lambda: up[0], nodes=lambda: 2)


def test_a_late_answer_refuses_and_its_slot_is_given_back(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server, server.client() as r:
        key = f"streamgate:budget:{ORIGIN}"

        async def main() -> None:
            fleet = budget(server, [True])
            try:
                assert await fleet.take(ORIGIN) is True  # answered in time: granted
                assert r.zcard(key) == 1
                server.pause()
                try:
                    answer = await fleet.take(ORIGIN)  # budget_wait passes, Redis is up
                finally:
                    server.resume()
                assert isinstance(answer, BudgetRefusal), answer
                assert "unanswered" in answer.description
                assert fleet.counters["unanswered"] == 1
                # The script ran once Redis woke and took a slot nobody uses: back.
                await await_until(
                    lambda: fleet.counters["given_back"] == 1, timeout=10, what="the give-back"
                )
                await await_until(lambda: r.zcard(key) == 1, timeout=10, what="the ZREM")
                assert fleet.counters["granted"] == 1
            finally:
                await fleet.close()

        asyncio.run(main())


def test_only_redis_found_down_lets_the_share_decide(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:

        async def main() -> None:
            up = [False]
            fleet = budget(server, up)
            try:
                # Down: the share (10/s over 2 nodes) lets five through, then refuses.
                answers = [await fleet.take(ORIGIN) for _ in range(6)]
                assert answers[:5] == [None] * 5
                assert isinstance(answers[5], BudgetRefusal)
                assert fleet.counters["fallback"] == 5
                assert fleet.counters["fallback_refused"] == 1
            finally:
                await fleet.close()

        asyncio.run(main())
