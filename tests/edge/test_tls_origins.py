"""An edge pulling from rtmps:// origins over real TLS on 127.0.0.1.

The origin is a streamgate origin behind an asyncio TLS terminator (the
probe tests' fake servers), with certificates made by ``cryptography``. Each
bad certificate or TLS mismatch must be named exactly: in the edge's log
line, in ``/api/v1/origins`` and in ``streamgate_edge_tls_failures_total``;
the play fails with ``NetStream.Play.Failed`` and that reason, the breaker
counts it, and no stream lands in the negative cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from streamgate.client import RtmpClient
from streamgate.config import load_settings
from streamgate.edge.directory import OriginDirectory
from streamgate.edge.upstream import RtmpConnector
from streamgate.errors import ConfigError
from streamgate.rtmp.events import MediaReceived, StatusReceived
from streamgate.rtmp.messages import Status
from streamgate.tls.client import origin_context
from tests.api.harness import ApiThread, metric
from tests.api.test_edge_api import Feed
from tests.probe.certs import DAY, Issued, TestCA, self_signed
from tests.probe.servers import LoopThread, silent, tls_terminator
from tests.server.harness import ServerThread

ANSWERS = (Status.PLAY_START, Status.PLAY_FAILED, Status.PLAY_STREAM_NOT_FOUND)


# --------------------------------------------------------------------- certificates


def intermediate_ca(root: TestCA, directory: Path) -> TestCA:
    """A CA whose certificate ``root`` signs (the leaf it issues needs it in the chain)."""
    directory.mkdir(exist_ok=True)
    inter = TestCA(directory, "streamgate test intermediate")
    now = datetime.now(UTC)
    inter.cert = (
        x509.CertificateBuilder()
        .subject_name(inter.name)
        .issuer_name(root.name)
        .public_key(inter.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    inter.pem.write_bytes(inter.cert.public_bytes(serialization.Encoding.PEM))
    return inter


def server_tls(issued: Issued, *, chain: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert = issued.cert
    if chain is not None:  # leaf then intermediate, one file
        cert = issued.cert.with_suffix(".chain.pem")
        cert.write_bytes(issued.cert.read_bytes() + chain.read_bytes())
    context.load_cert_chain(cert, issued.key)
    return context


# --------------------------------------------------------------------- the setup


@dataclass
class Outcome:
    status: StatusReceived
    origin: dict[str, Any]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    negative: int
    logs: list[str] = field(default_factory=list)
    media: int = 0


@pytest.fixture
def fakes() -> Iterator[LoopThread]:
    with LoopThread() as loop_thread:
        yield loop_thread


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def live() -> Iterator[ServerThread]:
    """A streamgate origin with live/cam published and fed."""
    with ServerThread() as origin:
        feed = Feed(origin, "cam")
        try:
            yield origin
        finally:
            feed.stop()


async def play(url: str, media: int = 0, timeout: float = 30.0) -> tuple[StatusReceived, int]:
    """The play's answer and, after Play.Start, how many media messages came (up to ``media``)."""
    client = await RtmpClient.open(url)
    try:
        await client.play()
        status = await client.wait_status(*ANSWERS, timeout=timeout)
        got = 0
        if status.code == Status.PLAY_START:
            async with asyncio.timeout(timeout):
                while got < media:
                    if isinstance(await client.next_event(), MediaReceived):
                        got += 1
        return status, got
    finally:
        client.close()


def pull(
    port: int,
    caplog: pytest.LogCaptureFixture,
    media: int = 0,
    host: str = "127.0.0.1",
    **edge: Any,
) -> Outcome:
    """Start an edge in front of rtmps://HOST:PORT, play live/cam once, and read its state."""
    settings = {
        "origins": [f"rtmps://{host}:{port}"],
        "connect_timeout": 2.0,
        "start_timeout": 60.0,  # a refusal must come from TLS, never from this
        "breaker_failures": 3,
        **edge,
    }
    with caplog.at_level(logging.INFO), ApiThread(mode="edge", edge=settings) as gw:
        status, got = gw.srv.run(play(gw.srv.url("cam"), media), timeout=60)
        [view] = gw.get("/api/v1/origins").json()["origins"]
        samples = gw.metrics()

        def negative() -> int:
            assert gw.srv.ctx is not None and gw.srv.ctx.edge is not None
            return len(gw.srv.ctx.edge.negative)

        cached = gw.srv.call(negative)
    logs = [r.getMessage() for r in caplog.records if r.name.startswith("streamgate")]
    return Outcome(status, view, samples, cached, logs, got)


def assert_failed(outcome: Outcome, reason: str, text: str, port: int) -> None:
    """The one TLS failure, named the same everywhere."""
    where = f"127.0.0.1:{port}"
    status, view = outcome.status, outcome.origin
    assert status.code == Status.PLAY_FAILED, status
    assert text in status.description
    assert text in (view["last_error"] or "")
    assert (view["failures"], view["breaker_consecutive_failures"], view["missing"]) == (1, 1, 0)
    assert view["tls"]["failures"] == {reason: 1}
    assert view["tls"]["last_failure"] == reason
    name = "streamgate_edge_tls_failures_total"
    assert metric(outcome.samples, name, origin=where, reason=reason) == 1
    others = [r for r in ("expired", "timeout", "not_tls", "other") if r != reason]
    assert all(metric(outcome.samples, name, origin=where, reason=r) == 0 for r in others)
    assert outcome.negative == 0
    lines = [line for line in outcome.logs if f"tls_failure={reason}" in line]
    assert len(lines) == 1 and text in lines[0], outcome.logs


# --------------------------------------------------------------------- success


def test_verified_rtmps_origin_plays(
    live: ServerThread, fakes: LoopThread, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    port = fakes.serve(
        tls_terminator(live.port), server_tls(ca.issue("srv", ["127.0.0.1", "localhost"]))
    )
    outcome = pull(port, caplog, media=20, tls_ca_file=str(ca.pem))
    assert outcome.status.code == Status.PLAY_START and outcome.media == 20
    view = outcome.origin
    assert (view["scheme"], view["failures"], view["last_error"]) == ("rtmps", 0, None)
    assert view["tls"] == {
        "verify": True,
        "ca_file": str(ca.pem),
        "server_name": "127.0.0.1",
        "pins": 0,
        "failures": {},
        "last_failure": None,
    }
    assert not any("NOT verified" in line for line in outcome.logs)


def test_server_name_and_a_full_chain_from_an_intermediate(
    live: ServerThread,
    fakes: LoopThread,
    ca: TestCA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An origin addressed by IP whose certificate names only its DNS name, issued
    # by an intermediate the origin sends along: tls_server_name makes it verify.
    inter = intermediate_ca(ca, tmp_path / "inter")
    issued = inter.issue("srv", ["origin.example"])
    port = fakes.serve(tls_terminator(live.port), server_tls(issued, chain=inter.pem))
    outcome = pull(port, caplog, media=5, tls_ca_file=str(ca.pem), tls_server_name="origin.example")
    assert outcome.status.code == Status.PLAY_START and outcome.media == 5
    assert outcome.origin["tls"]["server_name"] == "origin.example"


def test_matching_pin_plays(
    live: ServerThread, fakes: LoopThread, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    issued = ca.issue("srv", ["127.0.0.1"])
    spki = x509.load_pem_x509_certificate(issued.cert.read_bytes()).public_key()
    pin = hashlib.sha256(
        spki.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).hexdigest()
    port = fakes.serve(tls_terminator(live.port), server_tls(issued))
    outcome = pull(port, caplog, media=5, tls_ca_file=str(ca.pem), tls_pin_sha256=[pin])
    assert outcome.status.code == Status.PLAY_START
    assert outcome.origin["tls"]["pins"] == 1


def test_tls_verify_false_plays_from_a_self_signed_origin_loudly(
    live: ServerThread, fakes: LoopThread, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    issued = self_signed(tmp_path, "self", ["origin.example"])
    port = fakes.serve(tls_terminator(live.port), server_tls(issued))
    outcome = pull(port, caplog, media=5, tls_verify=False)
    assert outcome.status.code == Status.PLAY_START and outcome.media == 5
    assert outcome.origin["tls"]["verify"] is False
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "tls_verify = false" in r.getMessage()
    ]
    assert warnings and f"rtmps://127.0.0.1:{port}" in warnings[0]
    assert "NOT verified" in warnings[0]


# --------------------------------------------------------------------- each failure


BadCert = Callable[[TestCA, Path], Issued]
NOW = datetime.now(UTC).replace(microsecond=0)

CASES: dict[str, tuple[BadCert, str, str]] = {
    "expired": (
        lambda ca, _d: ca.issue(
            "c",
            ["127.0.0.1"],
            not_before=datetime(2024, 1, 1, tzinfo=UTC),
            not_after=datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
        ),
        "expired",
        "TLS: certificate expired on 2024-01-02 (notAfter 2024-01-02 12:00:00 UTC",
    ),
    "not-yet-valid": (
        lambda ca, _d: ca.issue(
            "c", ["127.0.0.1"], not_before=NOW + 30 * DAY, not_after=NOW + 60 * DAY
        ),
        "not_yet_valid",
        f"TLS: certificate not valid before {NOW + 30 * DAY:%Y-%m-%d %H:%M:%S} UTC",
    ),
    "wrong-name": (
        lambda ca, _d: ca.issue("c", ["origin.example", "10.9.8.7"]),
        "hostname_mismatch",
        "TLS: host name mismatch: the certificate is for DNS:origin.example, IP:10.9.8.7, "
        "not '127.0.0.1'",
    ),
    "self-signed": (
        lambda _ca, d: self_signed(d, "c", ["127.0.0.1"]),
        "self_signed",
        "TLS: self-signed certificate (O=streamgate tests, CN=127.0.0.1): not trusted; pass "
        "it or its CA with [edge] tls_ca_file",
    ),
    "unknown-issuer": (
        lambda _ca, d: TestCA(d).issue("c", ["127.0.0.1"]),
        "unknown_issuer",
        "TLS: unknown issuer (O=streamgate tests, CN=streamgate test CA): the issuing CA is "
        "not trusted here",
    ),
    "missing-intermediate": (
        lambda ca, d: intermediate_ca(ca, d).issue("c", ["127.0.0.1"]),
        "unknown_issuer",
        "TLS: unknown issuer (O=streamgate tests, CN=streamgate test intermediate): the "
        "issuing CA is not trusted here, or the server does not send its intermediate",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_certificate_is_named_everywhere(
    case: str,
    live: ServerThread,
    fakes: LoopThread,
    ca: TestCA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make, reason, text = CASES[case]
    other = tmp_path / "other"
    other.mkdir()
    port = fakes.serve(tls_terminator(live.port), server_tls(make(ca, other)))
    outcome = pull(port, caplog, tls_ca_file=str(ca.pem))
    assert_failed(outcome, reason, text, port)


def test_pin_mismatch_names_both_fingerprints(
    live: ServerThread, fakes: LoopThread, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    issued = ca.issue("srv", ["127.0.0.1"])
    der = issued.der()
    port = fakes.serve(tls_terminator(live.port), server_tls(issued))
    wrong = "ab" * 32
    outcome = pull(port, caplog, tls_ca_file=str(ca.pem), tls_pin_sha256=[wrong])
    text = (
        f"TLS: pin mismatch: the origin's certificate has SHA-256 {hashlib.sha256(der).hexdigest()}"
    )
    assert_failed(outcome, "pin_mismatch", text, port)
    assert f"tls_pin_sha256 expects {wrong}" in outcome.status.description


def test_plain_rtmp_on_the_rtmps_port(live: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    outcome = pull(live.port, caplog)
    text = f"TLS: 127.0.0.1:{live.port}: this port speaks RTMP, not TLS"
    assert_failed(outcome, "not_tls", text, live.port)


def test_silent_port_is_a_handshake_timeout(
    fakes: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    port = fakes.serve(silent)
    outcome = pull(port, caplog, connect_timeout=0.5)
    assert_failed(outcome, "timeout", "TLS: no answer to the TLS handshake in 0.5 s", port)


def test_handshake_dropped_by_the_server(
    live: ServerThread, fakes: LoopThread, ca: TestCA, caplog: pytest.LogCaptureFixture
) -> None:
    # No cipher in common; asyncio's TLS server drops the connection without the
    # alert OpenSSL would send (nginx sends it: the interop test sees "protocol").
    context = server_tls(ca.issue("srv", ["127.0.0.1"]))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # SHA-1 MAC: not in our client's list
    port = fakes.serve(tls_terminator(live.port), context)
    outcome = pull(port, caplog, tls_ca_file=str(ca.pem))
    text = "TLS: the server closed the connection during the TLS handshake (no TLS version or"
    assert_failed(outcome, "other", text, port)


def test_tls_failure_fails_over_to_the_next_origin(
    live: ServerThread,
    fakes: LoopThread,
    ca: TestCA,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = fakes.serve(
        tls_terminator(live.port), server_tls(self_signed(tmp_path, "s", ["127.0.0.1"]))
    )
    good = fakes.serve(tls_terminator(live.port), server_tls(ca.issue("srv", ["127.0.0.1"])))
    settings = {
        "origins": [f"rtmps://127.0.0.1:{bad}", f"rtmps://127.0.0.1:{good}"],
        "tls_ca_file": str(ca.pem),
        "breaker_failures": 2,
    }
    with ApiThread(mode="edge", edge=settings) as gw:
        for name in ("cam",):
            status, got = gw.srv.run(play(gw.srv.url(name), 3), timeout=60)
            assert status.code == Status.PLAY_START and got == 3
        first, second = gw.get("/api/v1/origins").json()["origins"]
        assert (first["failures"], first["tls"]["failures"]) == (1, {"self_signed": 1})
        assert (second["failures"], second["connects"]) == (0, 1)


def test_breaker_opens_on_tls_failures_and_quotes_the_reason(
    live: ServerThread, fakes: LoopThread, tmp_path: Path
) -> None:
    port = fakes.serve(
        tls_terminator(live.port), server_tls(self_signed(tmp_path, "s", ["127.0.0.1"]))
    )
    settings = {"origins": [f"rtmps://127.0.0.1:{port}"], "breaker_failures": 2}
    with ApiThread(mode="edge", edge=settings) as gw:
        for _ in range(2):
            status, _got = gw.srv.run(play(gw.srv.url("cam")), timeout=60)
            assert status.code == Status.PLAY_FAILED and "self-signed" in status.description
        status, _got = gw.srv.run(play(gw.srv.url("cam")), timeout=60)
        assert status.code == Status.PLAY_FAILED
        assert "circuit open" in status.description and "self-signed" in status.description
        [view] = gw.get("/api/v1/origins").json()["origins"]
        assert (view["breaker"], view["connects"], view["tls"]["failures"]) == (
            "open",
            2,
            {"self_signed": 2},
        )


# --------------------------------------------------------------------- https:// directories


def listing_server(body: bytes) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return answer


def test_https_directory_uses_the_edge_tls_settings(fakes: LoopThread, ca: TestCA) -> None:
    body = json.dumps({"playable": [{"app": "live", "name": "cam"}]}).encode()
    port = fakes.serve(listing_server(body), server_tls(ca.issue("srv", ["origin.example"])))
    url = f"https://127.0.0.1:{port}/api/v1/directory"

    async def poll(context: ssl.SSLContext, server_name: str | None) -> OriginDirectory:
        directory = OriginDirectory.from_urls(
            [url], interval=1.0, tls=context, server_name=server_name
        )
        await directory.poll_origins(lambda: 1.0)
        return directory

    trusted = origin_context(verify=True, ca_file=str(ca.pem))
    good = asyncio.run(poll(trusted, "origin.example"))
    assert good.listing(("live", "cam"), 1.0) == frozenset({0})
    wrong_name = asyncio.run(poll(trusted, None)).listings[0]
    assert "TLS: host name mismatch" in wrong_name.last_error
    untrusted = asyncio.run(poll(origin_context(verify=True, ca_file=None), "origin.example"))
    assert "TLS: unknown issuer" in untrusted.listings[0].last_error
    unverified = asyncio.run(poll(origin_context(verify=False, ca_file=None), None))
    assert unverified.listings[0].last_error == "" and unverified.listings[0].fetched_at == 1.0


# --------------------------------------------------------------------- reload


def test_reload_warns_again_and_a_bad_ca_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    edge = {"origins": ["rtmps://127.0.0.1:1"], "tls_verify": True}
    loopback = {"listen": "127.0.0.1:0"}
    with ServerThread(load_settings(None, mode="edge", rtmp=loopback, edge=edge)) as srv:
        assert srv.ctx is not None and srv.ctx.edge is not None
        ctx = srv.ctx
        connector = srv.ctx.edge.connector
        assert isinstance(connector, RtmpConnector)
        base = {"rtmp": {"listen": ctx.settings.rtmp.listen}, "mode": "edge"}
        unverified = load_settings(None, **base, edge={**edge, "tls_verify": False})
        with caplog.at_level(logging.WARNING):
            srv.call(lambda: ctx.apply(unverified))
        assert connector.tls.verify is False
        assert any("tls_verify = false" in r.getMessage() for r in caplog.records)
        missing = str(tmp_path / "nope.pem")
        broken = load_settings(None, **base, edge={**edge, "tls_ca_file": missing})
        with pytest.raises(ConfigError, match="tls_ca_file"):
            srv.call(lambda: ctx.apply(broken))
        assert connector.tls.verify is False and ctx.settings is unverified
