"""The edge's ingest rules, on a fake clock with a recording connector."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from streamgate.edge.hub import EdgeTiming
from streamgate.edge.ingest import Ingest, IngestState, LinkSink, PlayWaiter
from streamgate.edge.origins import Origin, OriginPool
from streamgate.relay.clock import FakeClock
from streamgate.relay.stream import FanoutSettings
from streamgate.rtmp.messages import MsgType, Status
from tests.edge.fakes import Edge, FakeConnector, FakeLink, Player
from tests.relay.sinks import AVC_INTER, AVC_KEY

NOT_FOUND, FAILED, UNPUBLISH = (
    Status.PLAY_STREAM_NOT_FOUND,
    Status.PLAY_FAILED,
    Status.PLAY_UNPUBLISH_NOTIFY,
)


def test_one_link_however_many_players_including_concurrent_first_ones() -> None:
    edge = Edge()
    players = [edge.play() for _ in range(100)]
    assert len(edge.connector.links) == 1
    assert all(p.stream is None and p.refused is None for p in players)  # waiting, not started
    edge.connector.last.start_media()
    assert all(p.stream is not None for p in players)
    late = edge.play()
    assert late.stream is players[0].stream
    assert len(edge.connector.links) == 1
    assert late.sink.payloads[-1] == AVC_KEY  # instant start from the GOP cache


def test_origin_says_not_found_players_refused_and_name_cached() -> None:
    edge = Edge(missing_ttl=10)
    players = [edge.play() for _ in range(3)]
    link = edge.connector.last
    link.sink.link_missing(NOT_FOUND, "No such stream")
    assert all(p.refused is not None and p.refused[0] == NOT_FOUND for p in players)
    assert link.closed
    edge.clock.advance(9.9)
    again = edge.play()
    assert again.refused is not None and again.refused[0] == NOT_FOUND
    assert len(edge.connector.links) == 1  # refused without touching the origin
    edge.clock.advance(0.2)
    edge.play()
    assert len(edge.connector.links) == 2


def test_silent_origin_start_timeout_is_missing() -> None:
    """SRS answers Play.Start for a missing stream and sends nothing."""
    edge = Edge(start_timeout=5)
    player = edge.play()
    link = edge.connector.last
    link.sink.link_playing()
    edge.clock.advance(4.9)
    assert player.refused is None
    edge.clock.advance(0.2)
    assert player.refused is not None and player.refused[0] == NOT_FOUND
    assert "no media within 5 s" in player.refused[1]
    assert link.closed
    assert edge.play().refused is not None  # negative-cached
    assert len(edge.connector.links) == 1


def test_origin_closing_after_play_is_missing() -> None:
    edge = Edge()
    player = edge.play()
    edge.connector.last.sink.link_playing()
    edge.connector.last.sink.link_failed("closed", connect=False)
    assert player.refused is not None and player.refused[0] == NOT_FOUND


def test_idle_stream_ends_players_and_closes_link() -> None:
    edge = Edge(idle_timeout=10)
    player = edge.play()
    link = edge.connector.last
    link.start_media()
    edge.clock.advance(6)
    link.sink.link_media(MsgType.VIDEO, 6000, AVC_INTER)
    edge.clock.advance(9.9)
    assert player.ended is None  # media 9.9 s ago: still fine
    edge.clock.advance(0.2)
    assert player.ended is not None and player.ended[0] == UNPUBLISH
    assert link.closed and not edge.hub.ingests
    assert edge.clock.pending == 0


def test_origin_unpublish_ends_players() -> None:
    edge = Edge()
    player = edge.play()
    link = edge.connector.last
    link.start_media()
    link.sink.link_ended("unpublished")
    assert player.ended is not None and player.ended[0] == UNPUBLISH
    assert link.closed
    assert edge.play().refused is None  # an unpublish is not cached as missing
    assert len(edge.connector.links) == 2


def test_last_player_leaves_link_lingers_and_is_reused() -> None:
    edge = Edge(linger=5)
    first = edge.play()
    link = edge.connector.last
    link.start_media()
    first.leave()
    edge.clock.advance(4.9)
    assert not link.closed
    second = edge.play()
    assert second.stream is first.stream  # same link, instant start
    assert len(edge.connector.links) == 1
    second.leave()
    edge.clock.advance(5.1)
    assert link.closed and not edge.hub.ingests


def test_waiting_player_leaves_during_start_link_closed() -> None:
    edge = Edge()
    player = edge.play()
    edge.cancel(player)
    assert edge.connector.last.closed and not edge.hub.ingests


def test_reconnect_follows_jittered_capped_backoff_within_grace() -> None:
    edge = Edge(
        reconnect_grace=1000, backoff_initial=0.5, backoff_max=30, breaker_failures=1000
    )
    player = edge.play()
    edge.connector.last.start_media()
    ingest = edge.hub.ingests[("live", "x")]
    edge.connector.last.sink.link_failed("lost", connect=False)
    assert ingest.state is IngestState.RECONNECTING
    for _ in range(12):  # every reconnect attempt fails to connect
        assert ingest._retry_timer is not None
        opened = len(edge.connector.links)
        edge.clock.advance(ingest.retry_delays[-1] + 0.001)
        assert len(edge.connector.links) == opened + 1  # no attempt before the delay is up
        edge.connector.last.sink.link_failed("refused", connect=True)
    delays = ingest.retry_delays
    assert len(delays) == 13
    for n, delay in enumerate(delays):
        assert 0 <= delay <= min(30.0, 0.5 * 2**n)
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed pause
    assert player.ended is None


def test_reconnects_respect_the_open_breaker() -> None:
    edge = Edge(reconnect_grace=1000, breaker_failures=3, breaker_reset=60)
    edge.play()
    edge.connector.last.start_media()
    ingest = edge.hub.ingests[("live", "x")]
    edge.connector.last.sink.link_failed("lost", connect=False)
    for _ in range(3):
        edge.clock.advance(ingest.retry_delays[-1] + 0.001)
        edge.connector.last.sink.link_failed("refused", connect=True)
    opened = len(edge.connector.links)
    edge.clock.advance(59)  # breaker open: retries are scheduled but reach no origin
    assert len(edge.connector.links) == opened
    assert len(ingest.retry_delays) > 4
    for _ in range(400):  # past the reset, the next retry is the one probe
        edge.clock.advance(0.1)
        if len(edge.connector.links) > opened:
            break
    assert len(edge.connector.links) == opened + 1
    edge.connector.last.sink.link_failed("still refused", connect=True)
    edge.clock.advance(9.9)  # the failed probe re-opened the circuit for a full period
    assert len(edge.connector.links) == opened + 1


def test_origin_back_within_grace_players_continue_monotonic() -> None:
    edge = Edge(reconnect_grace=10, backoff_initial=0.5, backoff_max=4, idle_timeout=100)
    player = edge.play()
    link = edge.connector.last
    link.start_media(ts=5000)
    link.sink.link_media(MsgType.VIDEO, 5040, AVC_INTER)
    link.sink.link_failed("lost", connect=False)
    edge.clock.advance(4)  # at most 0.5 + 1 + 2 s of backoff: a retry happened
    new = edge.connector.last
    assert new is not link and not new.closed
    new.start_media(ts=0)  # the new link's clock starts over
    new.sink.link_media(MsgType.VIDEO, 40, AVC_INTER)
    assert player.ended is None and player.refused is None
    stamps = [m.timestamp for m in player.sink.messages if m.type_id == MsgType.VIDEO]
    assert stamps == sorted(stamps) and stamps[-1] > 5040
    edge.clock.advance(20)
    assert player.ended is None  # grace timer cancelled


def test_origin_not_back_within_grace_players_failed_and_retries_stop() -> None:
    edge = Edge(reconnect_grace=10, backoff_initial=0.5, backoff_max=2, start_timeout=5)
    player = edge.play()
    edge.connector.last.start_media()
    edge.connector.last.sink.link_failed("lost", connect=False)
    for _ in range(40):
        edge.clock.advance(0.5)
        if edge.connector.open_links():
            edge.connector.last.sink.link_failed("refused", connect=True)
    assert player.ended is not None and player.ended[0] == FAILED
    opened = len(edge.connector.links)
    edge.clock.advance(300)
    assert len(edge.connector.links) == opened  # no loop after the grace
    assert not edge.hub.ingests and edge.clock.pending == 0


def test_retrying_stops_when_no_player_is_left() -> None:
    edge = Edge(reconnect_grace=100)
    player = edge.play()
    edge.connector.last.start_media()
    edge.connector.last.sink.link_failed("lost", connect=False)
    player.leave()
    opened = len(edge.connector.links)
    edge.clock.advance(200)
    assert len(edge.connector.links) == opened
    assert not edge.hub.ingests


def test_connect_failure_of_new_stream_fails_fast_then_breaker_opens() -> None:
    edge = Edge(breaker_failures=3, breaker_reset=10)
    for i in range(3):
        player = edge.play(f"s{i}")
        edge.connector.last.sink.link_failed("connection refused", connect=True)
        assert player.refused is not None and player.refused[0] == FAILED
        assert "connection refused" in player.refused[1]
    opened = len(edge.connector.links)
    for i in range(50):  # breaker open: refused at once, no connect per player
        player = edge.play(f"t{i}")
        assert player.refused is not None and "circuit open" in player.refused[1]
    assert len(edge.connector.links) == opened
    edge.clock.advance(10)
    edge.play("probe")
    edge.play("other")  # only one probe while half-open
    assert len(edge.connector.links) == opened + 1
    edge.connector.last.start_media()
    edge.play("after")
    assert len(edge.connector.links) == opened + 2  # closed again


def test_failover_to_next_origin() -> None:
    edge = Edge(origins=2)
    player = edge.play()
    first = edge.connector.last
    first.sink.link_failed("refused", connect=True)
    second = edge.connector.last
    assert second is not first and second.origin is not first.origin
    second.start_media()
    assert player.stream is not None


def test_max_upstreams_refuses_at_once() -> None:
    edge = Edge(max_upstreams=2)
    edge.play("a")
    edge.play("b")
    third = edge.play("c")
    assert third.refused is not None and third.refused[0] == FAILED
    assert "limit" in third.refused[1]
    assert len(edge.connector.links) == 2
    assert edge.hub.refusals["max_upstreams"] == 1


def test_connect_rate_is_capped() -> None:
    edge = Edge(max_connects_per_second=5)
    players = [edge.play(f"n{i}") for i in range(50)]
    assert len(edge.connector.links) == 5
    assert sum(p.refused is not None for p in players) == 45
    edge.clock.advance(1.0)
    more = [edge.play(f"m{i}") for i in range(50)]
    assert len(edge.connector.links) == 10
    assert sum(p.refused is None for p in more) == 5


def test_flood_of_distinct_missing_names_is_bounded_per_name() -> None:
    """Players reconnect as soon as they are dropped, for 30 s of fake time."""
    ttl, duration = 10.0, 30.0
    edge = Edge(missing_ttl=ttl, max_connects_per_second=1000)
    names = [f"missing{i}" for i in range(200)]
    t = 0.0
    while t < duration:
        for name in names:
            player = edge.play(name)
            if player.refused is None:
                edge.connector.last.sink.link_missing(NOT_FOUND, "No such stream")
        edge.clock.advance(0.25)
        t += 0.25
    per_name: dict[str, int] = {}
    for link in edge.connector.links:
        per_name[link.name] = per_name.get(link.name, 0) + 1
    assert max(per_name.values()) <= math.ceil(duration / ttl) + 1


def test_stale_reports_from_a_closed_link_are_ignored() -> None:
    edge = Edge()
    player = edge.play()
    old = edge.connector.last
    edge.cancel(player)
    old.sink.link_media(MsgType.VIDEO, 0, AVC_KEY)
    old.sink.link_failed("late", connect=True)
    assert not edge.hub.ingests
    assert edge.hub.pool.origins[0].links == 0
    assert edge.hub.pool.origins[0].failures == 0


def test_query_string_selects_upstream_only_when_enabled() -> None:
    edge = Edge(forward_query=True)
    edge.play("x", query="token=a")
    edge.play("x", query="token=b")
    assert [link.name for link in edge.connector.links] == ["x?token=a", "x?token=b"]
    plain = Edge()
    plain.play("x", query="token=a")
    plain.play("x", query="token=b")
    assert [link.name for link in plain.connector.links] == ["x"]


def test_start_timeout_runs_from_the_origins_answer_not_from_the_request() -> None:
    """A hung origin is the link's connect/reply timeout (a failure that fails over),
    never a 'missing' verdict that poisons the negative cache."""
    edge = Edge(origins=2, start_timeout=5)
    player = edge.play()
    hung = edge.connector.last
    edge.clock.advance(30)  # the request alone never times out the start
    assert player.refused is None and not hung.closed
    hung.sink.link_failed("origin accepted TCP but did not answer", connect=True)
    second = edge.connector.last
    assert second is not hung
    assert edge.hub.pool.origins[0].failures == 1
    second.start_media()
    assert player.stream is not None
    assert edge.hub.negative.get(("live", "x"), edge.clock.now()) is None


def test_flapping_origin_does_not_reset_grace_or_backoff() -> None:
    edge = Edge(reconnect_grace=10, backoff_initial=0.5, backoff_max=4, breaker_failures=1000)
    player = edge.play()
    edge.connector.last.start_media()
    ingest = edge.hub.ingests[("live", "x")]
    for _ in range(1000):  # the origin takes every link and drops it after one frame
        if player.ended is not None:
            break
        link = edge.connector.last
        if not link.closed:
            link.start_media(ts=0)
            link.sink.link_failed("dropped", connect=False)
        edge.clock.advance(0.25)
    assert player.ended is not None and player.ended[0] == FAILED
    assert len(edge.connector.links) < 40  # backoff kept growing: no reconnect storm
    assert max(ingest.retry_delays) > 1.0


def test_a_link_that_stays_ends_the_outage() -> None:
    edge = Edge(reconnect_grace=10, backoff_initial=0.5, idle_timeout=1000)
    player = edge.play()
    edge.connector.last.start_media()
    ingest = edge.hub.ingests[("live", "x")]
    edge.connector.last.sink.link_failed("lost", connect=False)
    edge.clock.advance(ingest.retry_delays[-1] + 0.001)
    edge.connector.last.start_media(ts=0)
    edge.clock.advance(6)  # stable now
    assert ingest.backoff.attempt == 0
    edge.connector.last.sink.link_failed("lost again", connect=False)
    edge.clock.advance(9)  # a fresh grace period, not the remains of the first
    assert player.ended is None


def test_only_the_probe_link_releases_the_half_open_breaker() -> None:
    edge = Edge(breaker_failures=2, breaker_reset=10)
    early = edge.play("early")  # opened while the breaker is closed
    for i in range(2):
        edge.play(f"f{i}")
        edge.connector.last.sink.link_failed("refused", connect=True)
    edge.clock.advance(10)
    edge.play("probe")  # the one half-open probe
    opened = len(edge.connector.links)
    edge.cancel(early)  # an old, non-probe link is abandoned
    edge.play("second")  # must not become a second concurrent probe
    assert len(edge.connector.links) == opened


@dataclass
class BareHost:
    """An IngestHost that is not the hub: what an ingest needs, and nothing more."""

    clock: FakeClock = field(default_factory=FakeClock)
    fanout: FanoutSettings = field(default_factory=lambda: FanoutSettings(merge_ms=0))
    settings: EdgeTiming = field(default_factory=EdgeTiming)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    pool: OriginPool = field(
        default_factory=lambda: OriginPool.from_urls(
            ["rtmp://127.0.0.1:19350"],
            max_upstreams=10,
            max_connects_per_second=1000,
            breaker_failures=3,
            breaker_reset=10.0,
            now=0.0,
        )
    )
    connector: FakeConnector = field(default_factory=FakeConnector)
    missing: list[tuple[tuple[str, str], str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)

    def listed_by(self, app: str, name: str) -> frozenset[int]:
        return frozenset()

    def open_link(self, origin: Origin, app: str, name: str, sink: LinkSink) -> FakeLink:
        return self.connector.open(origin, app, name, sink)

    def remember_missing(self, key: tuple[str, str], description: str) -> None:
        self.missing.append((key, description))

    def count_refusal(self, reason: str) -> None:
        self.refusals.append(reason)

    def ingest_ended(self, ingest: Ingest, reason: str) -> None:
        self.ended.append(reason)


def test_an_ingest_runs_on_any_host_and_reports_origin_health_to_the_pool() -> None:
    host = BareHost()
    ingest = Ingest(host, ("live", "x"), "live", "x")
    player = Player()
    ingest.add_waiter(PlayWaiter(player.ready, player.refuse))
    ingest.start()
    origin = host.pool.origins[0]
    assert (host.connector.last.name, origin.links) == ("x", 1)
    host.connector.last.sink.link_missing(NOT_FOUND, "No such stream")
    assert player.refused == (NOT_FOUND, "No such stream")
    assert host.missing == [(("live", "x"), "No such stream")]
    assert host.ended == ["No such stream"] and ingest.state is IngestState.ENDED
    assert (origin.links, origin.missing, origin.failures) == (0, 1, 0)
