"""The origin directory end to end: a real streamgate origin's /api/v1/directory,
polled over HTTP by a real edge, deciding real plays."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.messages import Status
from tests.api.harness import ApiThread, metric, wait_for
from tests.api.test_edge_api import Feed, edge_in_front_of

OUTCOMES = (Status.PLAY_START, Status.PLAY_STREAM_NOT_FOUND, Status.PLAY_FAILED)


async def outcome(url: str, media: int = 0) -> tuple[str, str]:
    """Play ``url``: the first decisive status (and, after Play.Start, ``media`` messages)."""
    client = await RtmpClient.open(url)
    try:
        await client.play()
        status = await client.wait_status(*OUTCOMES)
        got = 0
        while status.code == Status.PLAY_START and got < media:
            if isinstance(await client.next_event(), MediaReceived):
                got += 1
        return status.code, status.description
    finally:
        client.close()


@contextmanager
def origin_and_edge(http: dict[str, Any] | None = None, **edge: Any) -> Iterator[ApiThread]:
    """A streamgate origin publishing live/cam with its API, and an edge that
    polls the origin's directory every 0.2 s (plus ``edge`` settings)."""
    with ApiThread(http=http or {}) as origin:
        feed = Feed(origin.srv, "cam")
        url = f"http://127.0.0.1:{origin.port}/api/v1/directory"
        try:
            settings = {"directory": [url], "directory_interval": 0.2, **edge}
            with edge_in_front_of(origin.srv.port, **settings) as gw:
                yield gw
        finally:
            feed.stop()


def _directory_origin(gw: ApiThread) -> str:
    address: str = gw.get("/api/v1/origins").json()["origins"][0]["address"]
    return address


def _directory(gw: ApiThread) -> dict[str, Any]:
    origin = gw.get("/api/v1/origins").json()["origins"][0]
    directory: dict[str, Any] = origin["directory"]
    return directory


def test_origin_directory_lists_published_streams_only() -> None:
    with ApiThread(origin={"play_wait": 5.0}) as origin:
        assert origin.get("/api/v1/directory").json()["playable"] == []
        feed = Feed(origin.srv, "cam")
        try:
            # A player waiting (play_wait) for a name does not make it playable.
            srv = origin.srv
            srv.call(lambda: srv.loop.create_task(outcome(srv.url("soon"))))
            wait_for(
                lambda: len(origin.get("/api/v1/clients").json()["clients"]) == 2,
                "the waiting player",
            )
            listing = origin.get("/api/v1/directory").json()
            assert listing == {"mode": "origin", "playable": [{"app": "live", "name": "cam"}]}
        finally:
            feed.stop()
        wait_for(lambda: origin.get("/api/v1/directory").json()["playable"] == [], "unlisted")


def test_cold_stream_starts_through_a_flood_that_spends_the_connect_rate() -> None:
    with origin_and_edge(max_connects_per_second=3, missing_ttl=60) as gw:
        edge = gw.srv
        wait_for(lambda: _directory(gw)["streams"] == 1, "the edge to read the directory")
        assert _directory(gw)["fresh"] and _directory(gw)["last_error"] is None

        async def flood_then_cold() -> tuple[Counter[str], float, tuple[str, str]]:
            started = time.monotonic()
            flood = await asyncio.gather(*(outcome(edge.url(f"miss{i}")) for i in range(40)))
            took = time.monotonic() - started
            cold = await outcome(edge.url("cam"), media=10)  # nobody watched it yet
            return Counter(code for code, _ in flood), took, cold

        flood, took, cold = edge.run(flood_then_cold(), timeout=30)
        # At 3 connects/s the misses get 3 per started second of the flood (a slow
        # machine stretches it; it still ends long before 13 windows) ...
        let_through = 3 * (math.floor(took) + 1)
        assert flood[Status.PLAY_FAILED] >= 40 - let_through, (flood, took)
        # ... and the listed stream still started, with media.
        assert cold[0] == Status.PLAY_START, cold
        counts = gw.get("/api/v1/origins").json()["origins"][0]
        assert counts["connects"] <= let_through + 1, (counts, took)  # + the stream


def test_authoritative_directory_refuses_misses_without_touching_the_origin() -> None:
    with origin_and_edge(
        http={"token": "sekrit"}, directory_authoritative=True, directory_token="sekrit"
    ) as gw:
        edge = gw.srv
        wait_for(lambda: _directory(gw)["fresh"], "the edge to read the directory")
        code, description = edge.run(outcome(edge.url("nope")))
        assert code == Status.PLAY_STREAM_NOT_FOUND
        assert "no origin lists it" in description
        assert gw.get("/api/v1/origins").json()["origins"][0]["connects"] == 0
        assert edge.run(outcome(edge.url("cam"), media=5))[0] == Status.PLAY_START
        assert gw.get("/api/v1/origins").json()["origins"][0]["connects"] == 1


def test_directory_without_the_token_is_reported_and_ignored() -> None:
    with origin_and_edge(http={"token": "sekrit"}, directory_authoritative=True) as gw:
        edge = gw.srv
        wait_for(lambda: _directory(gw)["failures"] >= 1, "a failed poll")
        directory = _directory(gw)
        assert directory["fresh"] is False
        assert directory["last_error"] == "HTTP 401"
        # An unknown directory is no directory: the origin is asked.
        assert edge.run(outcome(edge.url("cam"), media=5))[0] == Status.PLAY_START


def test_directory_metrics() -> None:
    with origin_and_edge() as gw:
        wait_for(lambda: _directory(gw)["streams"] == 1, "the edge to read the directory")
        samples = gw.metrics()
        address = _directory_origin(gw)
        assert metric(samples, "streamgate_origin_directory_streams", origin=address) == 1
        assert metric(samples, "streamgate_origin_directory_fresh", origin=address) == 1
        failures = "streamgate_origin_directory_poll_failures_total"
        assert metric(samples, failures, origin=address) == 0
