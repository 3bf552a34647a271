"""The load tester over RTMPS: ``rtmps://`` URLs, ``--ca-file`` and ``--insecure``,
against a real streamgate origin with its TLS listener."""

from __future__ import annotations

import argparse
import asyncio
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgate.client import RtmpClient, parse_rtmp_url
from streamgate.errors import UpstreamError
from streamgate.loadtest import cli
from streamgate.loadtest.player import PlayerOptions, State
from streamgate.loadtest.run import LoadConfig, run_load
from streamgate.rtmp.messages import Status
from tests.peers import publisher, wait_until
from tests.pki import Issued, Pki
from tests.server.harness import ServerThread

LOOPBACK_ALLOWED = {"allow": ["127.0.0.1/32"]}


def _rtmp(issued: Issued) -> dict[str, Any]:
    return issued.rtmp_settings()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def srv(pki: Pki) -> Iterator[ServerThread]:
    with ServerThread(rtmp=_rtmp(pki.server("origin")), limits=LOOPBACK_ALLOWED) as server:
        yield server


def rtmps_url(srv: ServerThread, name: str) -> str:
    assert srv.server is not None
    return f"rtmps://127.0.0.1:{srv.server.tls_port}/live/{name}"


def test_rtmps_urls_parse_with_tls_and_port_443() -> None:
    url = parse_rtmp_url("rtmps://edge.example.com/live/cam?token=x")
    assert (url.host, url.port, url.app, url.name, url.tls) == (
        "edge.example.com",
        443,
        "live",
        "cam?token=x",
        True,
    )
    assert url.tc_url == "rtmps://edge.example.com:443/live"
    plain = parse_rtmp_url("rtmp://edge.example.com/live/cam")
    assert (plain.port, plain.tls, plain.tc_url) == (
        1935,
        False,
        "rtmp://edge.example.com:1935/live",
    )
    with pytest.raises(ValueError, match="rtmps://"):
        parse_rtmp_url("https://edge.example.com/live/cam")


def test_player_options_carry_the_tls_settings_to_the_workers(pki: Pki) -> None:
    options = pickle.loads(pickle.dumps(PlayerOptions(ca_file=str(pki.ca), rcvlowat=0)))
    assert (options.ca_file, options.insecure, options.rcvlowat) == (str(pki.ca), False, 0)
    assert pickle.loads(pickle.dumps(PlayerOptions(insecure=True))).insecure
    with pytest.raises(ValueError, match="exclude"):
        PlayerOptions(ca_file=str(pki.ca), insecure=True)


def test_rtmps_client_verifies_against_the_system_cas_by_default(srv: ServerThread) -> None:
    async def main() -> None:
        with pytest.raises(
            UpstreamError, match=r"certificate verify failed|CERTIFICATE_VERIFY_FAILED"
        ):
            await RtmpClient.open(rtmps_url(srv, "x"), timeout=5.0)

    asyncio.run(main())


def test_players_verify_against_the_ca_file_only(srv: ServerThread, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other", name="Other Root CA")
    config = LoadConfig(
        url=rtmps_url(srv, "x"),
        players=2,
        rate=50.0,
        duration=0.5,
        warmup=1.0,
        workers=1,
        ca_file=str(other.ca),
    )
    result = run_load(config)
    assert {r.state for r in result.records} == {State.FAILED}
    assert all(r.error.startswith("TLS: ") and not r.handshake for r in result.records)


def test_insecure_players_reach_a_self_signed_server(pki: Pki) -> None:
    rtmp = _rtmp(pki.server("self", self_signed=True))
    with ServerThread(rtmp=rtmp, limits=LOOPBACK_ALLOWED) as srv:
        config = LoadConfig(
            url=rtmps_url(srv, "missing"),
            players=2,
            rate=50.0,
            duration=0.5,
            warmup=1.0,
            workers=1,
            insecure=True,
        )
        result = run_load(config)
    # TLS, the RTMP handshake and connect went through: the play itself is refused.
    assert {r.last_status for r in result.records} == {Status.PLAY_STREAM_NOT_FOUND}
    assert all(r.handshake and r.connected and r.closed_by_server for r in result.records)


def test_cli_refuses_an_unreadable_ca_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    bad = tmp_path / "nothing.pem"
    args = parser.parse_args(["rtmps://127.0.0.1:1/live/x", "--ca-file", str(bad), "-q"])
    assert cli.main(args) == cli.EXIT_USAGE
    assert "not a usable CA file" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not both
        parser.parse_args(["rtmps://h/live/x", "--ca-file", str(bad), "--insecure"])


@pytest.mark.interop
def test_players_play_from_a_streamgate_origin_over_rtmps(srv: ServerThread, pki: Pki) -> None:
    with publisher(srv.url("lt"), gop=25, extra=["-b:v", "400k"]) as pub:
        wait_until(
            lambda: srv.published("lt") or pub.poll() is not None,
            timeout=15,
            what="the ffmpeg publisher on the origin",
        )
        assert pub.poll() is None
        config = LoadConfig(
            url=rtmps_url(srv, "lt"),
            players=4,
            rate=50.0,
            duration=3.0,
            warmup=1.0,
            workers=2,
            ca_file=str(pki.ca),
        )
        result = run_load(config)
        assert srv.ctx is not None and srv.ctx.tls is not None
        failures = dict(srv.ctx.tls.failures)
    s = result.summary
    assert s["reached"] == {"tcp": 4, "handshake": 4, "play_start": 4, "keyframe": 4}
    assert s["final_state"] == {"left": 4}
    assert failures == {}
    for r in result.records:
        assert r.last_status == Status.PLAY_START and not r.closed_by_server
    rates = [v for v in result.rates.values() if v is not None]
    assert len(rates) == 4 and min(rates) > 100_000  # bit/s of a 400 kbit/s stream
    assert max(rates) / min(rates) < 1.1
