"""The fleet's one asker per name (cluster/probes.py) on an edge with a recording
connector and a scripted Redis: the test answers each claim script when it wants,
so late answers, releases and fleet verdicts come in a known order."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamgate.cluster.entries import LiveEntry, MissEntry, ReleaseEntry, encode_message
from streamgate.cluster.probes import FleetProbes
from streamgate.cluster.replicator import Replicator
from streamgate.cluster.settings import cluster_options
from streamgate.config import load_settings
from streamgate.rtmp.messages import Status
from streamgate.shield import BreakerState
from streamgate.shield.bans import MemoryBanStore
from streamgate.shield.negcache import NegativeCache
from tests.cluster.redisd import RedisServer
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


# ------------------------------------------------------------------ late answers


def late(f: Fleet) -> bool:
    """The claim's answer is past budget_wait (or the old rule connected at it)."""
    return f.probes.counters["late"] > 0 or f.links() > 0


def test_a_late_answer_that_another_node_asks_makes_a_waiter_not_a_second_asker() -> None:
    async def main() -> None:
        f = fleet(claim_wait=30.0)  # Redis is slow, not down
        player = f.play("x")
        call = await f.redis.asked(1)
        await await_until(lambda: late(f), timeout=WAIT, what="budget_wait to pass")
        assert f.links() == 0  # no link on a missing answer
        call.answer.set_result([2, 20_000, b"other"])
        await await_until(
            lambda: [w.holder for w in f.probes._waiting.get(("live", "x"), ())] == ["other"],
            timeout=WAIT,
            what="a waiter on the other node's claim",
        )
        assert f.links() == 0
        f.replicator.receive(encode_message("other", [
            MissEntry("live", "x", time.time() + 60, "no such stream")
        ]))  # fmt: skip
        await await_until(lambda: player.refused is not None, timeout=WAIT, what="refused")
        assert f.links() == 0
        assert f.probes.counters["peer_missing"] == 1

    run(main())


def test_a_fleet_verdict_while_the_answer_is_late_answers_the_play() -> None:
    async def main() -> None:
        f = fleet(claim_wait=30.0)
        f.replicator._live = True  # collect what it would write to Redis
        player = f.play("x")
        call = await f.redis.asked(1)
        await await_until(lambda: late(f), timeout=WAIT, what="budget_wait to pass")
        f.replicator.receive(encode_message("other", [
            MissEntry("live", "x", time.time() + 60, "no such stream")
        ]))  # fmt: skip
        await await_until(lambda: player.refused is not None, timeout=WAIT, what="refused")
        assert f.links() == 0
        # The script ran after all and claimed the name: the claim is given back.
        claim = call.args[4]
        call.answer.set_result([0])
        await await_until(
            lambda: ReleaseEntry("live", "x", claim) in f.replicator._queue,
            timeout=WAIT,
            what="the unused claim released",
        )

    run(main())


def test_a_late_answer_that_claims_makes_this_edge_the_one_asker() -> None:
    async def main() -> None:
        f = fleet(claim_wait=30.0)
        f.replicator._live = True
        f.play("x")
        call = await f.redis.asked(1)
        await await_until(lambda: late(f), timeout=WAIT, what="budget_wait to pass")
        assert f.links() == 0
        call.answer.set_result([0])
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the asker's link")
        f.edge.connector.last.start_media()  # its origin plays it: the fleet hears it
        claim = call.args[4]
        released = ReleaseEntry("live", "x", claim)
        assert list(f.replicator._queue) == [LiveEntry("live", "x"), released]

    run(main())


def test_no_answer_within_claim_wait_opens_the_link_on_local_limits() -> None:
    async def main() -> None:
        f = fleet(claim_wait=0.2)  # Redis does not answer at all
        player = f.play("x")
        await f.redis.asked(1)
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the local fallback")
        assert f.probes.counters["fallback"] == 1
        f.edge.connector.last.start_media()
        assert player.stream is not None  # no play fails because Redis is slow

    run(main())


def test_a_late_claim_for_a_play_that_left_is_given_back() -> None:
    async def main() -> None:
        f = fleet(claim_wait=30.0)
        f.replicator._live = True
        player = f.play("x")
        call = await f.redis.asked(1)
        await await_until(lambda: late(f), timeout=WAIT, what="budget_wait to pass")
        f.edge.cancel(player)
        call.answer.set_result([0])
        claim = call.args[4]
        await await_until(
            lambda: ReleaseEntry("live", "x", claim) in f.replicator._queue,
            timeout=WAIT,
            what="the abandoned claim released",
        )
        assert f.links() == 0

    run(main())


# ------------------------------------------------------------------ a claim that ends


async def waiting_on(f: Fleet, holder: str, name: str = "x") -> None:
    await await_until(
        lambda: [w.holder for w in f.probes._waiting.get(("live", name), ())] == [holder],
        timeout=WAIT,
        what=f"a waiter on {holder}'s claim",
    )


def test_waiters_ask_again_as_soon_as_the_claim_is_released() -> None:
    async def main() -> None:
        f = fleet()
        f.play("x")
        (await f.redis.asked(1)).answer.set_result([2, 20_000, "other"])
        await waiting_on(f, "other")
        # The other node's link failed before its origin answered: no verdict.
        raw = json.dumps({"node": "other", "events": [{"k": "free", "app": "live", "name": "x"}]})
        f.replicator.receive(raw)
        (await f.redis.asked(2)).answer.set_result([0])  # asked again: this node claims
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the new asker's link")
        assert f.probes.counters["claim_ended"] == 1
        assert f.replicator.received() == {"free": 1}

    run(main())


def test_waiters_ask_again_when_the_claimers_heartbeat_is_gone() -> None:
    async def main() -> None:
        f = fleet()
        f.play("x")
        (await f.redis.asked(1)).answer.set_result([2, 20_000, "other"])
        await waiting_on(f, "other")
        f.replicator.nodes = {}  # a heartbeat reading without the other node
        assert f.replicator.on_nodes is not None
        f.replicator.on_nodes()
        (await f.redis.asked(2)).answer.set_result([2, 20_000, "third"])  # a new asker
        await waiting_on(f, "third")
        assert f.links() == 0

    run(main())


def test_a_claim_that_expires_without_a_verdict_is_asked_about_again() -> None:
    async def main() -> None:
        f = fleet()
        f.play("x")
        (await f.redis.asked(1)).answer.set_result([2, 1, "other"])  # 1 ms left
        (await f.redis.asked(2)).answer.set_result([2, 20_000, "third"])
        await waiting_on(f, "third")
        assert f.links() == 0  # not a second asker: a waiter on the new one

    run(main())


def test_the_claimer_gives_its_claim_back_when_its_link_ends_without_a_verdict() -> None:
    async def main() -> None:
        f = fleet()
        f.replicator._live = True
        f.play("x")
        call = await f.redis.asked(1)
        call.answer.set_result([0])
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the claimed link")
        f.edge.connector.last.sink.link_failed("connection refused", connect=True)
        claim = call.args[4]
        assert ReleaseEntry("live", "x", claim) in f.replicator._queue
        assert f.probes.counters["released"] == 1

    run(main())


def test_the_claimers_miss_is_its_verdict_and_keeps_the_claim() -> None:
    async def main() -> None:
        f = fleet()
        f.replicator._live = True
        f.edge.hub.negative.on_add = f.replicator.missed  # as a started replicator hears it
        f.play("x")
        (await f.redis.asked(1)).answer.set_result([0])
        await await_until(lambda: f.links() == 1, timeout=WAIT, what="the claimed link")
        f.edge.connector.last.sink.link_missing(Status.PLAY_STREAM_NOT_FOUND, "not here")
        assert [type(e) for e in f.replicator._queue] == [MissEntry]

    run(main())


# ------------------------------------------------------------------ the scripts, on Redis


@pytest.mark.interop
def test_the_claim_and_release_scripts_on_redis(tmp_path: Path) -> None:
    async def main(url: str) -> None:
        def node(node_id: str) -> tuple[FleetProbes, Replicator]:
            settings = load_settings(None, cluster={"redis_url": url, "node_id": node_id})
            options = cluster_options(settings)
            assert options is not None
            rep = Replicator(options, MemoryBanStore(), NegativeCache(10.0), lambda: 0.0)
            return FleetProbes(options, rep, NegativeCache(10.0), 30.0), rep

        (me, _), (other, other_rep) = node("me"), node("other")
        key, probe = ("live", "a"), "streamgate:probe:4:live/a"
        client = other.options.client()
        try:
            await client.set("streamgate:node:me", "{}")  # me's heartbeat
            reason, mine = await me.ask(key)
            assert reason is None and mine is not None and mine.endswith(" me")
            assert await client.get(probe) == mine.encode()
            answer = await other._eval(key, "t1 other")
            assert answer[0] == 2 and 0 < answer[1] <= 30_000 and answer[2] == b"me"
            await client.delete("streamgate:node:me")  # me died: its claim is taken over
            assert await other._eval(key, "t2 other") == [0]
            assert await client.get(probe) == b"t2 other"

            pubsub = client.pubsub()
            await pubsub.subscribe("streamgate:events")
            await other_rep._send(client, [ReleaseEntry(*key, "t1 other")])  # an old claim
            assert await client.get(probe) == b"t2 other"  # left alone
            await other_rep._send(client, [ReleaseEntry(*key, "t2 other")])
            assert await client.exists(probe) == 0
            message = None
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=WAIT)
            assert json.loads(message["data"])["events"] == [
                {"k": "free", "app": "live", "name": "a"}
            ]
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
            await me.close()
            await other.close()

    with RedisServer(tmp_path) as redis_server:
        run(main(redis_server.url))
