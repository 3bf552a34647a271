"""The fleet's one asker per name (cluster/probes.py) on an edge with a recording
connector and a scripted Redis: the test answers each claim script when it wants,
so late answers, releases and fleet verdicts come in a known order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamgate.cluster.entries import MissEntry, encode_message
from streamgate.cluster.probes import FleetProbes
from streamgate.cluster.replicator import Replicator
from streamgate.cluster.settings import cluster_options
from streamgate.config import load_settings
from streamgate.rtmp.messages import Status
from streamgate.shield import BreakerState
from streamgate.shield.bans import MemoryBanStore
from tests.edge.fakes import Edge, Player
from tests.waiting import await_until

WAIT = 10.0  # generous: how long a test waits for something that must happen


@dataclass
class Call:
    args: tuple[Any, ...]
    answer: asyncio.Future[Any]


@dataclass
class ScriptedRedis:
    """Stands in for the claim's Redis client: each eval waits for the test's answer."""

    calls: list[Call] = field(default_factory=list)

    async def eval(self, script: str, numkeys: int, *args: Any) -> Any:
        call = Call(args, asyncio.get_running_loop().create_future())
        self.calls.append(call)
        return await call.answer

    async def aclose(self) -> None:
        pass

    async def asked(self, count: int) -> Call:
        """The ``count``-th claim script (from 1), once it was sent."""
        await await_until(lambda: len(self.calls) >= count, timeout=WAIT, what=f"ask {count}")
        return self.calls[count - 1]


@dataclass
class Fleet:
    edge: Edge
    probes: FleetProbes
    redis: ScriptedRedis
    replicator: Replicator

    def play(self, name: str) -> Player:
        return self.edge.play(name)

    def links(self) -> int:
        return len(self.edge.connector.links)


def fleet(start_timeout: float = 30.0, **cluster: float) -> Fleet:
    settings = load_settings(
        None, cluster={"redis_url": "redis://127.0.0.1:1/0", "node_id": "me", **cluster}
    )
    options = cluster_options(settings)
    assert options is not None
    edge = Edge(breaker_failures=1, breaker_reset=10.0, start_timeout=start_timeout)
    rep = Replicator(options, MemoryBanStore(), edge.hub.negative, edge.clock.now)
    probes = FleetProbes(options, rep, edge.hub.negative, start_timeout)
    redis = ScriptedRedis()
    probes._client = redis  # type: ignore[assignment]
    edge.hub.name_gate = probes
    return Fleet(edge, probes, redis, rep)


def run(test: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(test, 60))


def miss_value(name: str, reason: str = "no such stream") -> str:
    entry = MissEntry("live", name, time.time() + 60, reason)
    return json.dumps({**entry.to_json(), "node": "other"})


def test_a_fleet_miss_leaves_the_half_open_breaker_to_this_edges_own_answers() -> None:
    async def main() -> None:
        f = fleet()
        origin = f.edge.hub.pool.origins[0]
        origin.breaker.failure(f.edge.clock.now())  # breaker_failures=1: open
        f.edge.clock.advance(10.0)
        assert origin.breaker.current(f.edge.clock.now()) is BreakerState.HALF_OPEN

        player = f.play("gone")  # the half-open probe's lease: the gate asks first
        (await f.redis.asked(1)).answer.set_result([1, miss_value("gone")])
        await await_until(lambda: player.refused is not None, timeout=WAIT, what="refused")
        assert player.refused is not None and player.refused[0] == Status.PLAY_STREAM_NOT_FOUND
        assert f.links() == 0  # the origin was never asked
        # Another edge's verdict is no evidence about this origin: still half-open,
        # and the probe it did not use is free for the next name.
        assert origin.breaker.current(f.edge.clock.now()) is BreakerState.HALF_OPEN
        assert origin.missing == 0
        f.play("next")
        (await f.redis.asked(2)).answer.set_result([0])
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the probe's link")
        f.edge.connector.last.start_media()  # this origin's own answer closes it
        assert origin.breaker.current(f.edge.clock.now()) is BreakerState.CLOSED

    run(main())


def test_a_fleet_miss_learned_while_waiting_leaves_the_breaker_alone() -> None:
    async def main() -> None:
        f = fleet()
        origin = f.edge.hub.pool.origins[0]
        origin.breaker.failure(f.edge.clock.now())
        f.edge.clock.advance(10.0)
        player = f.play("gone")
        (await f.redis.asked(1)).answer.set_result([2, 20_000])  # another node asks
        await await_until(lambda: bool(f.probes._waiting), timeout=WAIT, what="a waiter")
        f.replicator.receive(encode_message("other", [
            MissEntry("live", "gone", time.time() + 60, "no such stream")
        ]))  # fmt: skip
        await await_until(lambda: player.refused is not None, timeout=WAIT, what="refused")
        assert f.links() == 0
        assert origin.breaker.current(f.edge.clock.now()) is BreakerState.HALF_OPEN

    run(main())
