"""The API of an edge in front of a real streamgate origin: pulled streams, origin
health, cached misses, ending an ingest, and /readyz following the breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamgate.client import RtmpClient
from streamgate.rtmp.messages import Status
from tests.api.harness import ApiThread, metric, open_player, open_publisher, send_frames, wait_for
from tests.peers import free_port
from tests.server.harness import ServerThread


@contextmanager
def edge_in_front_of(origin_port: int, **edge: Any) -> Iterator[ApiThread]:
    settings = {"origins": [f"rtmp://127.0.0.1:{origin_port}"], **edge}
    with ApiThread(mode="edge", edge=settings) as gw:
        yield gw


class Feed:
    """A publisher on the origin that keeps sending frames until stopped."""

    def __init__(self, origin: ServerThread, name: str) -> None:
        self.origin = origin
        self.client, self.sid = origin.run(open_publisher(origin.url(name)))
        origin.call(lambda: send_frames(self.client, self.sid, 0, 30))
        self.task = origin.call(lambda: origin.loop.create_task(self._pump()))

    async def _pump(self) -> None:
        frame = 30
        while not self.client.closed:
            send_frames(self.client, self.sid, frame, 1)
            frame += 1
            await asyncio.sleep(0.04)  # a live source: 25 frames a second

    def stop(self) -> None:
        self.origin.call(self.client.close)
        self.origin.call(self.task.cancel)


def test_pulled_stream_listing_and_origin_health() -> None:
    with ServerThread() as origin:
        feed = Feed(origin, "e1")
        try:
            with edge_in_front_of(origin.port) as gw:
                edge = gw.srv
                player = edge.run(open_player(edge.url("e1")))
                stream = gw.get("/api/v1/streams/live/e1").json()
                assert (stream["role"], stream["state"], stream["players"]) == ("pulled", "live", 1)
                upstream = stream["upstream"]
                assert upstream["origin"] == f"127.0.0.1:{origin.port}"
                assert upstream["links_opened"] == 1
                assert upstream["link_age_seconds"] >= 0
                assert stream["video"]["codec"] == "h264"
                assert stream["audio"]["codec"] == "aac"

                [entry] = gw.get("/api/v1/origins").json()["origins"]
                assert entry["address"] == f"127.0.0.1:{origin.port}"
                assert (entry["healthy"], entry["breaker"], entry["links"]) == (True, "closed", 1)
                assert (entry["connects"], entry["failures"]) == (1, 0)
                assert entry["last_error"] is None

                samples = gw.metrics()
                where = f"127.0.0.1:{origin.port}"
                assert metric(samples, "streamgate_upstream_links", origin=where) == 1
                assert metric(samples, "streamgate_upstream_connects_total", origin=where) == 1
                assert metric(samples, "streamgate_upstream_breaker_state", origin=where) == 0
                assert metric(samples, "streamgate_streams", role="pulled", state="live") == 1
                assert metric(samples, "streamgate_stream_publishers", app="live", stream="e1") == 1
                assert gw.get("/readyz").json()["ready"] is True
                edge.call(player.close)
        finally:
            feed.stop()


def test_deleting_a_pulled_stream_ends_its_players_and_link() -> None:
    with ServerThread() as origin:
        feed = Feed(origin, "e2")
        try:
            with edge_in_front_of(origin.port) as gw:
                edge = gw.srv
                players = [edge.run(open_player(edge.url("e2"))) for _ in range(2)]
                reply = gw.delete("/api/v1/streams/live/e2")
                assert reply.json() == {"app": "live", "name": "e2", "ended": ["ingest-ended"]}
                for player in players:
                    status = edge.run(player.wait_status(Status.PLAY_UNPUBLISH_NOTIFY))
                    assert "operator" in status.description
                assert gw.get("/api/v1/streams").json()["streams"] == []
                wait_for(
                    lambda: gw.get("/api/v1/origins").json()["origins"][0]["links"] == 0,
                    "the upstream link closed",
                )
                # The origin keeps its publisher: only the edge's pull ended.
                assert origin.published("e2")
                edge.call(lambda: [p.close() for p in players])
        finally:
            feed.stop()


async def refused(url: str) -> str:
    client = await RtmpClient.open(url)
    await client.play()
    status = await client.wait_status()
    client.close()
    return status.code


def test_missing_streams_are_listed_from_the_negative_cache_and_can_be_forgotten() -> None:
    with ServerThread() as origin, edge_in_front_of(origin.port, missing_ttl=60) as gw:
        edge = gw.srv
        assert edge.run(refused(edge.url("ghost"))) == Status.PLAY_STREAM_NOT_FOUND
        listing = gw.get("/api/v1/streams").json()
        assert listing["missing_cached_total"] == 1
        [ghost] = listing["streams"]
        assert (ghost["app"], ghost["name"], ghost["state"]) == ("live", "ghost", "missing-cached")
        assert ghost["expires_in_seconds"] > 0
        assert gw.get("/api/v1/streams/live/ghost").json()["state"] == "missing-cached"
        origin_entry = gw.get("/api/v1/origins").json()["origins"][0]
        assert origin_entry["missing"] == 1
        assert origin_entry["healthy"] is True  # a missing stream is not a sick origin

        # A second play is refused from the cache, without asking the origin.
        assert edge.run(refused(edge.url("ghost"))) == Status.PLAY_STREAM_NOT_FOUND
        samples = gw.metrics()
        assert metric(samples, "streamgate_negative_cache_entries") == 1
        assert metric(samples, "streamgate_negative_cache_hits_total") == 1
        assert metric(samples, "streamgate_edge_plays_refused_total", reason="missing_cached") == 1
        assert (
            metric(samples, "streamgate_upstream_connects_total", origin=f"127.0.0.1:{origin.port}")
            == 1
        )

        assert gw.delete("/api/v1/streams/live/ghost").json()["forgotten"] == 1
        assert gw.get("/api/v1/streams/live/ghost").status == 404
        assert gw.get("/api/v1/streams").json()["missing_cached_total"] == 0


def test_readyz_fails_when_the_only_origin_is_down_and_its_breaker_opens() -> None:
    dead = free_port()  # nothing listens there
    with edge_in_front_of(dead, breaker_failures=1, breaker_reset=600) as gw:
        edge = gw.srv
        assert gw.get("/readyz").status == 200
        code = edge.run(refused(edge.url("any")))
        assert code == Status.PLAY_FAILED
        reply = gw.get("/readyz")
        assert reply.status == 503
        assert reply.json() == {
            "mode": "edge",
            "listening": True,
            "origins_healthy": 0,
            "origins_total": 1,
            "ready": False,
        }
        [entry] = gw.get("/api/v1/origins").json()["origins"]
        assert (entry["healthy"], entry["breaker"], entry["failures"]) == (False, "open", 1)
        assert entry["breaker_opens"] == 1
        assert entry["last_error"]
        samples = gw.metrics()
        where = f"127.0.0.1:{dead}"
        assert metric(samples, "streamgate_upstream_breaker_state", origin=where) == 2
        assert metric(samples, "streamgate_upstream_connect_failures_total", origin=where) == 1
        assert metric(samples, "streamgate_upstream_breaker_opens_total", origin=where) == 1
        assert metric(samples, "streamgate_ready") == 0
        assert metric(samples, "streamgate_plays_refused_total", reason=Status.PLAY_FAILED) == 1
        # While the circuit is open, plays fail fast without touching the origin.
        assert edge.run(refused(edge.url("other"))) == Status.PLAY_FAILED
        samples = gw.metrics()
        assert metric(samples, "streamgate_edge_plays_refused_total", reason="breaker_open") == 1
        assert metric(samples, "streamgate_upstream_connects_total", origin=where) == 1


def test_a_lost_upstream_shows_as_reconnecting_or_backing_off() -> None:
    with ServerThread() as origin:
        feed = Feed(origin, "e3")
        try:
            with edge_in_front_of(origin.port, reconnect_grace=30) as gw:
                edge = gw.srv
                player = edge.run(open_player(edge.url("e3")))
                assert gw.get("/api/v1/streams/live/e3").json()["state"] == "live"

                def cut() -> None:
                    # Reconnects must fail: stop accepting, then drop the edge's link.
                    assert origin.server is not None and origin.ctx is not None
                    origin.server.stop_accepting()
                    for session in list(origin.ctx.sessions.values()):
                        if session.role == "player":
                            session.abort()

                origin.call(cut)
                wait_for(
                    lambda: (
                        gw.get("/api/v1/streams/live/e3").json()["state"]
                        in ("reconnecting", "backing-off")
                    ),
                    "the ingest notices the lost link",
                )
                wait_for(
                    lambda: (
                        gw.get("/api/v1/streams/live/e3").json()["upstream"]["retry_delays_seconds"]
                        != []
                    ),
                    "a retry is scheduled",
                )
                stream = gw.get("/api/v1/streams/live/e3").json()
                assert stream["players"] == 1  # players are kept while it retries
                samples = gw.metrics()
                waiting = sum(
                    metric(samples, "streamgate_streams", role="pulled", state=state) or 0
                    for state in ("reconnecting", "backing-off")
                )
                assert waiting == 1
                edge.call(player.close)
        finally:
            feed.stop()
