"""``streamgate probe``: each diagnosis against real sockets on 127.0.0.1.

A real streamgate origin (``ServerThread``) stands in for a good server,
scripted servers over our sans-IO ``ServerConnection`` for misbehaving ones,
an asyncio TLS terminator in front of the origin for RTMPS, and certificates
made with ``cryptography`` for every TLS failure. The probe runs through the
same ``add_arguments``/``main`` the ``streamgate probe`` command uses, and
each test checks the exit status and the diagnosis line. Nothing here
resolves a name other than ``localhost``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import socket
import ssl
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.client import RtmpClient
from streamgate.probe import ProbeOptions, add_arguments, main, parse_target, run_probe
from streamgate.probe.steps import explain_dns_error
from streamgate.probe.watch import MediaWatch
from streamgate.rtmp.events import DataReceived, MediaReceived
from streamgate.rtmp.messages import MsgType, Status
from streamgate.tls.diagnosis import (
    X509_V_ERR_CERT_HAS_EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID,
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
    X509_V_ERR_HOSTNAME_MISMATCH,
    X509_V_ERR_IP_ADDRESS_MISMATCH,
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    explain_ssl_error,
    explain_verify_error,
)
from streamgate.tls.x509 import X509Error, parse_certificate
from tests.peers import NginxRtmp, publisher, wait_until
from tests.probe.certs import Issued, TestCA, self_signed
from tests.probe.servers import LoopThread, RtmpScript, silent, tls_terminator
from tests.relay.sinks import AAC_CONFIG, AAC_RAW, AVC_CONFIG, AVC_INTER, AVC_KEY
from tests.rtmp.samples import audio_tags, video_tags
from tests.server.harness import ServerThread

FAST = ["--timeout", "2", "--media-timeout", "0.5"]
METADATA = {
    "width": 320.0,
    "height": 240.0,
    "framerate": 25.0,
    "videocodecid": 7.0,
    "audiocodecid": 10.0,
    "encoder": "probe-test",
}


# --------------------------------------------------------------------- helpers


def probe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run the probe as ``streamgate probe ARGV`` does; returns (exit status, output lines)."""
    parser = argparse.ArgumentParser(prog="streamgate probe")
    add_arguments(parser)
    status = main(parser.parse_args(list(argv)))
    return status, capsys.readouterr().out.splitlines()


def diagnosis(lines: list[str]) -> str:
    return lines[-1]


def step(lines: list[str], name: str) -> str:
    """The output line of step ``name``."""
    found = [line for line in lines if line[2:].split(" ", 1)[0] == name]
    assert found, f"no {name!r} step in {lines}"
    return found[0]


def server_tls(issued: Issued) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    return context


@pytest.fixture
def fakes() -> Iterator[LoopThread]:
    with LoopThread() as loop_thread:
        yield loop_thread


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    with ServerThread() as srv:
        yield srv


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def publish(srv: ServerThread, name: str, tags: list[tuple[int, bytes]]) -> RtmpClient:
    """Publish ``tags`` (type id, payload) to the origin with our client; keep it open."""

    async def go() -> RtmpClient:
        client = await RtmpClient.open(srv.url(name))
        sid = await client.publish()
        await client.wait_status(Status.PUBLISH_START)
        client.conn.send_data(sid, "@setDataFrame", "onMetaData", METADATA)
        for i, (type_id, payload) in enumerate(tags):
            client.send_media(sid, type_id, i * 20, payload)
        return client

    client: RtmpClient = srv.run(go())
    wait_until(lambda: srv.published(name), timeout=5.0, what="the stream to be published")
    return client


def h264_aac_tags() -> list[tuple[int, bytes]]:
    """A real H.264 320x240 / AAC 44.1 kHz stereo start (PyAV encodes it)."""
    video = video_tags("libx264", 320, 240)
    audio = audio_tags("aac", 44100, "stereo")
    return [
        (MsgType.VIDEO, video[0]),  # AVCDecoderConfigurationRecord
        (MsgType.AUDIO, audio[0]),  # AudioSpecificConfig
        (MsgType.VIDEO, video[1]),  # the IDR
        (MsgType.AUDIO, audio[1]),
        (MsgType.VIDEO, video[2]),
    ]


@pytest.fixture
def live(origin: ServerThread) -> Iterator[ServerThread]:
    """The origin with live/cam published (H.264 + AAC, cached GOP)."""
    client = publish(origin, "cam", h264_aac_tags())
    yield origin
    origin.call(client.close)


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------- plain RTMP


def test_live_stream_succeeds_with_codecs_and_keyframe(
    live: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = probe(capsys, live.url("cam"), *FAST)
    assert status == 0
    assert lines[0] == f"probe {live.url('cam')}"
    assert [line[2:].split(" ", 1)[0] for line in lines[1:-1]] == [
        "dns", "tcp", "handshake", "connect", "play", "media", "keyframe", "codecs",
    ]  # fmt: skip
    assert all(line.startswith("✓") for line in lines[1:-1])
    assert "127.0.0.1 is an address" in step(lines, "dns")
    assert "server FMS/" in step(lines, "connect")
    assert "NetStream.Play.Start" in step(lines, "play")
    assert "onMetaData: 320x240, 25 fps, encoder probe-test" in step(lines, "media")
    assert "first keyframe" in step(lines, "keyframe")
    assert "video h264 High 1.3 320x240; audio aac 44100 Hz 2 ch" in step(lines, "codecs")
    assert diagnosis(lines).startswith(
        "OK: media arrived: video h264 High 1.3 320x240; audio aac 44100 Hz 2 ch; first keyframe"
    )


def test_json_output_lists_every_step(
    live: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = probe(capsys, live.url("cam"), "--json", *FAST)
    assert status == 0
    report = json.loads("\n".join(lines))
    assert report["ok"] is True
    assert report["url"] == live.url("cam")
    assert [s["name"] for s in report["steps"]] == [
        "dns", "tcp", "handshake", "connect", "play", "media", "keyframe", "codecs",
    ]  # fmt: skip
    for entry in report["steps"]:
        assert entry["ok"] is True
        assert isinstance(entry["ms"], int | float) and entry["ms"] >= 0
        assert isinstance(entry["detail"], str) and entry["detail"]
    codecs = report["steps"][-1]["info"]
    assert codecs["video"] == {
        "codec": "h264", "width": 320, "height": 240, "profile": "High", "level": "1.3",
    }  # fmt: skip
    assert codecs["audio"] == {"codec": "aac", "sample_rate": 44100, "channels": 2}
    assert report["steps"][1]["info"]["address"] == f"127.0.0.1:{live.port}"


def test_missing_stream_is_stream_not_found(
    origin: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = probe(capsys, origin.url("nobody"), *FAST)
    assert status == 1
    assert step(lines, "play").startswith("✗")
    assert diagnosis(lines) == (
        "FAIL: stream not found: the server answered play with "
        "NetStream.Play.StreamNotFound (live/nobody is not published)"
    )


def test_missing_stream_json_names_the_failed_step(
    origin: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = probe(capsys, origin.url("nobody"), "--json", *FAST)
    report = json.loads("\n".join(lines))
    assert status == 1
    assert report["ok"] is False
    assert report["diagnosis"].startswith("stream not found")
    last = report["steps"][-1]
    assert (last["name"], last["ok"]) == ("play", False)
    assert last["info"]["codes"] == [Status.PLAY_STREAM_NOT_FOUND]


def test_closed_port_is_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    port = refused_port()
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        f"FAIL: connection refused by 127.0.0.1:{port}: nothing listens there "
        "(or a firewall rejects)"
    )


def test_localhost_is_resolved_and_reported(capsys: pytest.CaptureFixture[str]) -> None:
    port = refused_port()
    status, lines = probe(capsys, f"rtmp://localhost:{port}/live/x", *FAST)
    assert status == 1
    assert "localhost -> " in step(lines, "dns") and "127.0.0.1" in step(lines, "dns")
    assert "connection refused" in diagnosis(lines)


def test_full_accept_queue_is_connect_timed_out(capsys: pytest.CaptureFixture[str]) -> None:
    # A listener with a full accept queue: Linux drops the SYN, the connect hangs.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", "--timeout", "0.3")
    assert status == 1
    assert diagnosis(lines) == (
        f"FAIL: TCP connect to 127.0.0.1:{port} timed out after 0.3 s: host down or a "
        "firewall drops the packets"
    )


def test_silent_server_is_no_handshake_answer(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fakes.serve(silent)
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", "--timeout", "0.3")
    assert status == 1
    assert step(lines, "tcp").startswith("✓")
    assert diagnosis(lines) == (
        "FAIL: TCP accepted but no RTMP handshake answer in 0.3 s: not an RTMP server, "
        "or it is overloaded"
    )


def test_connect_rejected_shows_description_and_redirect(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    script = RtmpScript(reject="app not allowed here", redirect="rtmp://127.0.0.1:1936/live")
    port = fakes.serve(script)
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: connect rejected by the server: NetConnection.Connect.Rejected: app not "
        "allowed here; redirect to rtmp://127.0.0.1:1936/live"
    )


def test_play_failed_is_reported_with_its_code(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fakes.serve(RtmpScript(play_status=(Status.PLAY_FAILED, "token expired")))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x?token=old", *FAST)
    assert status == 1
    assert diagnosis(lines) == "FAIL: play refused: NetStream.Play.Failed (token expired)"


def test_play_never_answered(fakes: LoopThread, capsys: pytest.CaptureFixture[str]) -> None:
    port = fakes.serve(RtmpScript(answer_play=False))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", "--timeout", "0.3")
    assert status == 1
    assert diagnosis(lines).startswith("FAIL: no answer to play in 0.3 s")


def test_play_start_without_media_is_missing_or_idle(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    # What an SRS origin does for a stream nobody publishes.
    port = fakes.serve(RtmpScript())
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    assert step(lines, "play").startswith("✓")
    assert diagnosis(lines) == (
        "FAIL: origin accepted play but sent no media in 0.5 s: stream missing or idle"
    )


def test_default_timeouts_are_five_seconds() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["rtmp://127.0.0.1/live/x"])
    assert (args.timeout, args.media_timeout) == (5.0, 5.0)


def test_media_without_keyframe(fakes: LoopThread, capsys: pytest.CaptureFixture[str]) -> None:
    media = [(MsgType.VIDEO, AVC_CONFIG), (MsgType.AUDIO, AAC_CONFIG)]
    media += [(MsgType.VIDEO, AVC_INTER), (MsgType.AUDIO, AAC_RAW)] * 3
    port = fakes.serve(RtmpScript(media=media, metadata=METADATA))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    assert step(lines, "media").startswith("✓")
    assert diagnosis(lines) == (
        "FAIL: media arrived (4 video, 4 audio messages) but no keyframe in 0.5 s: the "
        "keyframe interval is longer, or the encoder sends none"
    )


def test_audio_only_stream_succeeds_without_keyframe(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    media = [(MsgType.AUDIO, AAC_CONFIG), (MsgType.AUDIO, AAC_RAW)]
    metadata = {"audiocodecid": 10.0, "audiosamplerate": 44100.0}
    port = fakes.serve(RtmpScript(media=media, metadata=metadata))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/radio", *FAST)
    assert status == 0
    assert "audio-only stream" in step(lines, "keyframe")
    assert "video none; audio aac 44100 Hz 2 ch" in step(lines, "codecs")


def test_keyframe_before_sequence_header_is_a_warning(
    fakes: LoopThread, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fakes.serve(RtmpScript(media=[(MsgType.VIDEO, AVC_KEY)]))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 0
    assert "warning: the first h264 keyframe came before any sequence header" in step(
        lines, "codecs"
    )


def test_plain_rtmp_to_a_tls_port_suggests_rtmps(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    port = fakes.serve(tls_terminator(None), server_tls(ca.issue("srv", ["127.0.0.1"])))
    status, lines = probe(capsys, f"rtmp://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    # OpenSSL drops a non-TLS client without an alert, so there is nothing to sniff.
    assert diagnosis(lines) == (
        "FAIL: the server closed the connection during the RTMP handshake (not an RTMP "
        "port, or a TLS port: try rtmps://)"
    )


# --------------------------------------------------------------------- RTMPS


def rtmps(fakes: LoopThread, issued: Issued, upstream: int | None = None) -> int:
    return fakes.serve(tls_terminator(upstream), server_tls(issued))


def test_rtmps_with_private_ca_succeeds(
    live: ServerThread, fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, ca.issue("srv", ["localhost", "127.0.0.1"]), live.port)
    status, lines = probe(capsys, f"rtmps://localhost:{port}/live/cam", "--ca", str(ca.pem), *FAST)
    assert status == 0, lines
    tls = step(lines, "tls")
    assert tls.startswith("✓")
    assert "TLSv1.3" in tls
    assert "subject O=streamgate tests, CN=localhost" in tls
    assert "issuer O=streamgate tests, CN=streamgate test CA" in tls
    assert "valid until" in tls and "names DNS:localhost, IP:127.0.0.1" in tls
    assert f"chain and host name verified (CA file {ca.pem})" in tls
    assert "h264" in diagnosis(lines) and "NOT verified" not in diagnosis(lines)


def test_rtmps_expired_certificate_names_the_date(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = ca.issue(
        "old",
        ["127.0.0.1"],
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
    )
    port = rtmps(fakes, expired)
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", "--ca", str(ca.pem), *FAST)
    assert status == 1
    assert step(lines, "tls").startswith("✗")
    assert diagnosis(lines).startswith(
        "FAIL: TLS: certificate expired on 2024-01-02 (notAfter 2024-01-02 12:00:00 UTC, "
        "this machine's clock "
    )
    assert diagnosis(lines).endswith(" UTC; O=streamgate tests, CN=127.0.0.1)")


def test_rtmps_not_yet_valid_certificate(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    future = ca.issue("future", ["127.0.0.1"], not_before=start, not_after=start + timedelta(30))
    port = rtmps(fakes, future)
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", "--ca", str(ca.pem), *FAST)
    assert status == 1
    assert diagnosis(lines).startswith(
        f"FAIL: TLS: certificate not valid before {start:%Y-%m-%d %H:%M:%S} UTC"
    )
    assert "check this machine's clock" in diagnosis(lines)


def test_rtmps_self_signed_certificate(
    fakes: LoopThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, self_signed(tmp_path, "self", ["127.0.0.1"]))
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: TLS: self-signed certificate (O=streamgate tests, CN=127.0.0.1): not trusted; "
        "pass it or its CA with --ca FILE (or --insecure to skip verification)"
    )


def test_rtmps_unknown_issuer(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, ca.issue("srv", ["127.0.0.1"]))
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", *FAST)  # no --ca
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: TLS: unknown issuer (O=streamgate tests, CN=streamgate test CA): the issuing "
        "CA is not trusted here, or the server does not send its intermediate certificate"
    )


def test_rtmps_wrong_host_name(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, ca.issue("other", ["origin.example", "backup.example"]))
    status, lines = probe(capsys, f"rtmps://localhost:{port}/live/x", "--ca", str(ca.pem), *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: TLS: host name mismatch: the certificate is for DNS:origin.example, "
        "DNS:backup.example, not 'localhost'"
    )


def test_rtmps_wrong_ip_address(
    fakes: LoopThread, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, ca.issue("other", ["localhost", "10.9.8.7"]))
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", "--ca", str(ca.pem), *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: TLS: host name mismatch: the certificate is for DNS:localhost, IP:10.9.8.7, "
        "not '127.0.0.1'"
    )


@pytest.mark.parametrize(
    ("case", "host", "code"),
    [
        ("expired", "127.0.0.1", X509_V_ERR_CERT_HAS_EXPIRED),
        ("future", "127.0.0.1", X509_V_ERR_CERT_NOT_YET_VALID),
        ("self-signed", "127.0.0.1", X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT),
        ("unknown-issuer", "127.0.0.1", X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY),
        ("wrong-name", "localhost", X509_V_ERR_HOSTNAME_MISMATCH),
        ("wrong-ip", "127.0.0.1", X509_V_ERR_IP_ADDRESS_MISMATCH),
    ],
)
def test_verify_codes_match_the_linked_openssl(
    case: str,
    host: str,
    code: int,
    fakes: LoopThread,
    ca: TestCA,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The X509_V_ERR_* numbers the explanations key on, as this OpenSSL reports them.
    now = datetime.now(UTC)
    other = tmp_path / "other"  # a second CA, not the one passed with --ca
    other.mkdir()
    issued = {
        "expired": lambda: ca.issue(
            "c", ["127.0.0.1"], not_before=now - timedelta(9), not_after=now - timedelta(1)
        ),
        "future": lambda: ca.issue("c", ["127.0.0.1"], not_before=now + timedelta(days=1)),
        "self-signed": lambda: self_signed(tmp_path, "c", ["127.0.0.1"]),
        "unknown-issuer": lambda: TestCA(other).issue("c", ["127.0.0.1"]),
        "wrong-name": lambda: ca.issue("c", ["origin.example"]),
        "wrong-ip": lambda: ca.issue("c", ["10.9.8.7"]),
    }[case]()
    port = rtmps(fakes, issued)
    url = f"rtmps://{host}:{port}/live/x"
    status, lines = probe(capsys, url, "--ca", str(ca.pem), "--json", *FAST)
    report = json.loads("\n".join(lines))
    tls = report["steps"][-1]
    assert (status, tls["name"], tls["ok"]) == (1, "tls", False)
    assert tls["info"]["verify_code"] == code, tls["info"]["verify_message"]
    assert "OpenSSL verify error" not in report["diagnosis"]  # not the generic fallback
    assert "CN=" in tls["info"]["certificate"]["subject"]  # read over the second connection


def test_rtmps_insecure_skips_verification_loudly(
    live: ServerThread, fakes: LoopThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = rtmps(fakes, self_signed(tmp_path, "self", ["origin.example"]), live.port)
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/cam", "--insecure", *FAST)
    assert status == 0
    assert lines[1] == "WARNING: --insecure: the server's certificate is NOT verified"
    assert step(lines, "tls").startswith("✓ tls") and "certificate NOT verified" in step(
        lines, "tls"
    )
    assert diagnosis(lines).endswith("(WARNING: TLS certificate NOT verified, --insecure)")


def test_rtmps_to_a_plain_rtmp_port(
    origin: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines = probe(capsys, f"rtmps://127.0.0.1:{origin.port}/live/x", "--timeout", "0.3")
    assert status == 1
    assert diagnosis(lines).startswith("FAIL: TLS")
    assert "plain rtmp:// port" in diagnosis(lines)


def test_unreadable_ca_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        missing = tmp_path / "nope.pem"
        status, lines = probe(capsys, f"rtmps://127.0.0.1:{port}/live/x", "--ca", str(missing))
    assert status == 1
    assert diagnosis(lines).startswith(f"FAIL: TLS: cannot load --ca {missing}")


# --------------------------------------------------------------------- real peers


@pytest.mark.interop
def test_ffmpeg_published_stream(origin: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    with publisher(origin.url("ff"), size="320x240", gop=10):
        wait_until(lambda: origin.published("ff"), timeout=15.0, what="ffmpeg to publish")
        status, lines = probe(capsys, origin.url("ff"), "--media-timeout", "5")
    assert status == 0, lines
    assert "encoder Lavf" in step(lines, "media")
    assert "video h264 " in step(lines, "codecs")
    assert "320x240; audio aac 44100 Hz" in step(lines, "codecs")


@pytest.mark.interop
def test_nginx_rtmp_missing_stream_both_ways(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # idle_streams on (the default): Play.Start, then silence, as SRS does.
    with NginxRtmp(tmp_path / "idle", "application live { live on; }") as nginx:
        status, lines = probe(capsys, nginx.url("live", "nobody"), *FAST)
        assert status == 1
        assert "server FMS/" in step(lines, "connect")
        assert diagnosis(lines) == (
            "FAIL: origin accepted play but sent no media in 0.5 s: stream missing or idle"
        )
        status, lines = probe(capsys, nginx.url("noapp", "nobody"), *FAST)
        assert status == 1
        assert diagnosis(lines) == (
            "FAIL: the server closed the connection in answer to connect (app 'noapp' "
            "unknown, or access denied)"
        )
    block = "application live { live on; idle_streams off; }"
    with NginxRtmp(tmp_path / "strict", block) as nginx:
        status, lines = probe(capsys, nginx.url("live", "nobody"), *FAST)
    assert status == 1
    assert diagnosis(lines) == (
        "FAIL: stream not found: the server answered play with "
        "NetStream.Play.StreamNotFound (No such stream)"
    )


@pytest.mark.interop
def test_nginx_rtmp_live_stream_waits_for_the_next_keyframe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # nginx-rtmp keeps no GOP: media starts at once, the keyframe comes with the next GOP.
    with (
        NginxRtmp(tmp_path, "application live { live on; }") as nginx,
        publisher(nginx.url("live", "cam"), gop=25),
    ):
        wait_until(lambda: nginx.publishing("live", "cam"), timeout=15.0, what="ffmpeg")
        status, lines = probe(capsys, nginx.url("live", "cam"), "--media-timeout", "5")
    assert status == 0, lines
    assert "server FMS/" in step(lines, "connect")
    assert "320x240; audio aac 44100 Hz" in step(lines, "codecs")


# --------------------------------------------------------------------- pure parts


def test_url_parsing() -> None:
    target = parse_target("rtmps://origin.example/live/cam?token=x")
    assert (target.host, target.port, target.app, target.name) == (
        "origin.example", 443, "live", "cam?token=x",
    )  # fmt: skip
    assert target.tc_url == "rtmps://origin.example:443/live"
    assert parse_target("rtmp://[::1]/a/b").tc_url == "rtmp://[::1]:1935/a"
    for bad in ("http://h/a/b", "rtmp:///a/b", "rtmp://h/app", "rtmp://h:99999/a/b"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="streamgate probe")
    add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["rtmp://127.0.0.1/onlyapp"])
    assert exit_info.value.code == 2
    assert "expected /app/stream" in capsys.readouterr().err


def test_dns_errors_are_explained_without_resolving() -> None:
    nxdomain = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert explain_dns_error(nxdomain, "origin.invalid") == "DNS: no such host 'origin.invalid'"
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert explain_dns_error(again, "o").startswith("DNS: temporary failure resolving 'o'")


def test_x509_reader_matches_cryptography(ca: TestCA, tmp_path: Path) -> None:
    issued = ca.issue(
        "srv",
        ["a.example", "b.example", "127.0.0.1", "::1"],
        not_before=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
        not_after=datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC),  # GeneralizedTime after 2049
    )
    info = parse_certificate(issued.der())
    assert info.subject == "O=streamgate tests, CN=a.example"
    assert info.issuer == "O=streamgate tests, CN=streamgate test CA"
    assert info.not_before == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert info.not_after == datetime(2051, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.dns_names == ("a.example", "b.example")
    assert info.ip_addresses == ("127.0.0.1", "::1")
    assert not info.self_issued
    assert parse_certificate(self_signed(tmp_path, "s", ["x"]).der()).self_issued


@pytest.mark.parametrize("data", [b"", b"\x30", b"\x30\x05abc", b"\x04\x00", b"\x30\x84\xff"])
def test_x509_reader_rejects_garbage(data: bytes) -> None:
    with pytest.raises(X509Error):
        parse_certificate(data)


@functools.cache
def sample_der() -> bytes:
    with tempfile.TemporaryDirectory(prefix="probe-x509-") as directory:
        return TestCA(Path(directory)).issue("srv", ["a.example", "10.0.0.1"]).der()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_x509_reader_never_raises_anything_but_x509error(edits: list[tuple[int, int]]) -> None:
    data = bytearray(sample_der())
    for position, value in edits:
        data[position % len(data)] = value
    try:
        info = parse_certificate(bytes(data))
    except X509Error:
        return
    assert isinstance(info.subject, str) and isinstance(info.dns_names, tuple)


@given(st.binary(max_size=64))
def test_x509_reader_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(X509Error):
        parse_certificate(data)


def test_x509_reader_rejects_every_truncation(ca: TestCA) -> None:
    der = ca.issue("srv", ["a.example"]).der()
    for cut in range(0, len(der) - 1, 7):
        with pytest.raises(X509Error):
            parse_certificate(der[:cut])


def test_verify_error_without_the_certificate_still_says_why() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert explain_verify_error(
        X509_V_ERR_CERT_HAS_EXPIRED, "certificate has expired", None, "h", now
    ) == ("TLS: a certificate in the chain has expired")
    assert explain_verify_error(X509_V_ERR_HOSTNAME_MISMATCH, "", None, "h", now) == (
        "TLS: host name mismatch: the certificate is not for 'h'"
    )
    assert explain_verify_error(999, "odd failure", None, "h", now) == (
        "TLS: certificate verification failed: odd failure (OpenSSL verify error 999)"
    )


def test_expired_intermediate_is_not_blamed_on_the_server_certificate(ca: TestCA) -> None:
    leaf = parse_certificate(ca.issue("srv", ["a.example"]).der())
    now = datetime.now(UTC)
    text = explain_verify_error(X509_V_ERR_CERT_HAS_EXPIRED, "", leaf, "a.example", now)
    assert text == (
        f"TLS: a certificate in the chain has expired (the server's own is valid until "
        f"{leaf.not_after:%Y-%m-%d})"
    )


def test_handshake_failures_other_than_verification_are_explained() -> None:
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_PROTOCOL_VERSION] tlsv1 alert protocol version")
    alert.reason = "TLSV1_ALERT_PROTOCOL_VERSION"
    assert explain_ssl_error(alert) == (
        "TLS handshake failed: the server refused our TLS versions (protocol mismatch) "
        "(TLSV1_ALERT_PROTOCOL_VERSION)"
    )
    assert explain_ssl_error(ssl.SSLError(1, "odd")) == "TLS handshake failed: odd"


def test_media_watch_reads_metadata_and_headers() -> None:
    watch = MediaWatch(start=100.0)
    watch.feed(DataReceived(1, 0, ("@setDataFrame", "onMetaData", dict(METADATA))), 100.1)
    watch.feed(MediaReceived(1, MsgType.VIDEO, 0, AVC_INTER), 100.2)
    watch.feed(MediaReceived(1, MsgType.VIDEO, 0, AVC_CONFIG), 100.3)
    watch.feed(MediaReceived(1, MsgType.VIDEO, 0, AVC_KEY), 100.5)
    assert watch.first_media_kind == "video"
    assert watch.ms_since_start(watch.first_media_at) == 200
    assert watch.ms_since_start(watch.first_keyframe_at) == 500
    assert watch.announced_video and not watch.announced_audio_only
    assert watch.warnings() == []
    info: dict[str, Any] = watch.info()
    assert info["video_messages"] == 3 and info["audio"] is None


def test_run_probe_is_usable_from_an_event_loop(live: ServerThread) -> None:
    seen: list[str] = []
    report = asyncio.run(
        run_probe(
            parse_target(live.url("cam")),
            ProbeOptions(timeout=2.0, media_timeout=0.5),
            lambda result: seen.append(result.name),
        )
    )
    assert report.ok
    assert seen == [s.name for s in report.steps]
