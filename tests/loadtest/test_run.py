"""Real runs: the load generator's worker processes against a streamgate server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamgate.loadtest.player import State
from streamgate.loadtest.run import LoadConfig, run_load
from streamgate.loadtest.stats import write_json
from streamgate.rtmp.messages import Status
from tests.peers import publisher, wait_until
from tests.server.harness import ServerThread

# Every player comes from 127.0.0.1: the per-address limits would refuse most of them.
LOOPBACK_ALLOWED = {"allow": ["127.0.0.1/32"]}


def _published_bps(srv: ServerThread, name: str) -> float:
    """What the publisher sent over the last 5 s, as the origin counted it (on its loop)."""
    assert srv.ctx is not None
    stream = srv.ctx.hub.get("live", name)
    assert stream is not None
    return stream.bitrate_in.bitrate(srv.loop.time())


def test_missing_streams_are_refused_and_retried() -> None:
    with ServerThread(limits=LOOPBACK_ALLOWED) as srv:
        config = LoadConfig(
            url=srv.url("nothere{i}"),
            players=4,
            rate=100.0,
            duration=1.0,
            warmup=0.0,
            reconnect=True,
            reconnect_delay=0.1,
            workers=2,
        )
        result = run_load(config)
        urls = {srv.url(f"nothere{i}") for i in range(4)}
    s = result.summary
    assert s["players"] == 4
    assert s["attempts"] > 4  # refused, then tried again
    assert s["reached"]["play_start"] == 0
    # An attempt still in flight when the run stopped (a loaded machine) has no
    # answer yet; every other one was refused and closed by the server.
    cut = [r for r in result.records if r.state == State.LEFT]
    answered = [r for r in result.records if r.state != State.LEFT]
    assert len(cut) <= 4 and len(answered) > 4
    assert {r.last_status for r in answered} == {Status.PLAY_STREAM_NOT_FOUND}
    assert all(r.closed_by_server for r in answered)
    assert s["closed_by_server"] == len(answered)
    assert s["timings_ms"]["drop_ms"]["count"] == len(answered)
    assert {r.url for r in result.records} == urls


@pytest.mark.interop
def test_five_players_record_start_times_and_bitrate(tmp_path: Path) -> None:
    with (
        ServerThread(limits=LOOPBACK_ALLOWED) as srv,
        publisher(srv.url("lt"), gop=25, extra=["-b:v", "400k"]) as pub,
    ):
        wait_until(
            lambda: srv.published("lt") or pub.poll() is not None,
            timeout=15,
            what="the ffmpeg publisher on the origin",
        )
        assert pub.poll() is None
        config = LoadConfig(
            url=srv.url("lt"), players=5, rate=50.0, duration=3.0, warmup=1.0, workers=2
        )
        result = run_load(config)
        published = srv.call(lambda: _published_bps(srv, "lt"))
    s = result.summary
    assert s["players"] == 5
    assert s["reached"] == {"tcp": 5, "handshake": 5, "play_start": 5, "keyframe": 5}
    assert s["final_state"] == {"left": 5}
    for r in result.records:
        assert r.started < r.tcp <= r.handshake <= r.connected < r.play_sent
        assert r.play_sent < r.play_start <= r.keyframe
        assert r.last_status == Status.PLAY_START
        assert not r.closed_by_server
    rates = [v for v in result.rates.values() if v is not None]
    assert len(rates) == 5
    # Every player gets the same stream: the rates agree, and match what came in.
    assert max(rates) / min(rates) < 1.1
    assert published > 0
    assert 0.7 < min(rates) / published < 1.4
    out = tmp_path / "run.json"
    write_json(out, s, result.records, result.rates, config.public())
    doc = json.loads(out.read_text())
    assert len(doc["players"]) == 5
    assert all(p["keyframe_ms"] > 0 and p["window_kbps"] > 0 for p in doc["players"])
