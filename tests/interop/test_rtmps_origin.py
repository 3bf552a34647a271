"""A streamgate edge pulling from a real RTMPS origin: nginx-rtmp behind nginx's own
TLS terminator (the ``stream`` module), ffmpeg publishing to nginx-rtmp's plain port.

One nginx serves every case, each on its own TLS port with its own certificate
(good, expired, not yet valid, wrong name, self-signed, unknown issuer, missing
intermediate, no cipher in common); the plain RTMP port stands in for an
origin that speaks RTMP where TLS was expected. Each case starts its own edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamgate.rtmp.messages import Status
from tests.api.harness import ApiThread, metric
from tests.edge.test_tls_origins import intermediate_ca, play
from tests.peers import NginxRtmp, TlsFront, need, need_nginx_stream, probe, publisher
from tests.probe.certs import TestCA, self_signed
from tests.waiting import wait_until

pytestmark = pytest.mark.interop

DAY = timedelta(days=1)
STREAM = "cam"


@dataclass
class Origin:
    nginx: NginxRtmp
    ca: TestCA
    ports: dict[str, int]


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    need("ffmpeg")
    need_nginx_stream()
    certs = tmp_path_factory.mktemp("certs")
    ca = TestCA(certs)
    other = certs / "other"
    other.mkdir()
    now = datetime.now(UTC)
    inter = intermediate_ca(ca, certs / "inter")
    issued = {
        "good": ca.issue("good", ["127.0.0.1", "localhost"]),
        "expired": ca.issue(
            "expired",
            ["127.0.0.1"],
            not_before=datetime(2024, 1, 1, tzinfo=UTC),
            not_after=datetime(2024, 1, 2, 12, 0, tzinfo=UTC),
        ),
        "future": ca.issue("future", ["127.0.0.1"], not_before=now + 30 * DAY),
        "wrong-name": ca.issue("wrong", ["origin.example"]),
        "self-signed": self_signed(certs, "self", ["127.0.0.1"]),
        "unknown-issuer": TestCA(other).issue("unknown", ["127.0.0.1"]),
        "missing-intermediate": inter.issue("leaf", ["127.0.0.1"]),
        "protocol": ca.issue("proto", ["127.0.0.1"]),
    }
    extra = {"protocol": "ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-AES128-SHA;"}
    fronts = {
        case: TlsFront(cert.cert, cert.key, extra.get(case, "")) for case, cert in issued.items()
    }
    block = "application live { live on; }"
    with NginxRtmp(tmp_path_factory.mktemp("nginx"), block, tls=list(fronts.values())) as nginx:
        ports = {case: front.port for case, front in zip(fronts, nginx.tls, strict=True)}
        with publisher(nginx.url("live", STREAM)):
            wait_until(
                lambda: nginx.publishing("live", STREAM), timeout=20, what="ffmpeg to publish"
            )
            yield Origin(nginx, ca, ports)


def edge(port: int, **settings: Any) -> ApiThread:
    return ApiThread(
        mode="edge",
        edge={
            "origins": [f"rtmps://127.0.0.1:{port}"],
            "connect_timeout": 3.0,
            "start_timeout": 60.0,
            **settings,
        },
    )


def test_verified_pull_from_nginx_over_rtmps(origin: Origin) -> None:
    with edge(origin.ports["good"], tls_ca_file=str(origin.ca.pem)) as gw:
        status, media = gw.srv.run(play(gw.srv.url(STREAM), 50), timeout=60)
        assert status.code == Status.PLAY_START and media == 50
        result = probe(gw.srv.url(STREAM), timeout=20)
        assert result.of_type("video") and result.of_type("audio")
        [view] = gw.get("/api/v1/origins").json()["origins"]
        assert (view["scheme"], view["failures"], view["tls"]["verify"]) == ("rtmps", 0, True)
        # nginx-rtmp sees the edge as one player of its plain port, through the terminator.
        wait_until(lambda: origin.nginx.nclients("live", STREAM) >= 2, timeout=10, what="the edge")


CASES = {
    "expired": ("expired", "TLS: certificate expired on 2024-01-02"),
    "future": ("not_yet_valid", "TLS: certificate not valid before "),
    "wrong-name": (
        "hostname_mismatch",
        "TLS: host name mismatch: the certificate is for DNS:origin.example, not '127.0.0.1'",
    ),
    "self-signed": ("self_signed", "TLS: self-signed certificate (O=streamgate tests"),
    "unknown-issuer": ("unknown_issuer", "TLS: unknown issuer (O=streamgate tests, CN=stream"),
    "missing-intermediate": (
        "unknown_issuer",
        "TLS: unknown issuer (O=streamgate tests, CN=streamgate test intermediate)",
    ),
    "protocol": ("protocol", "TLS handshake failed: the server aborted the handshake"),
    "pin": ("pin_mismatch", "TLS: pin mismatch: the origin's certificate has SHA-256 "),
    "plain-rtmp": ("not_tls", "this port speaks RTMP, not TLS"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_tls_failure_is_named(
    case: str, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    reason, text = CASES[case]
    extra: dict[str, Any] = {}
    if case == "pin":
        port, extra["tls_pin_sha256"] = origin.ports["good"], ["ab" * 32]
    elif case == "plain-rtmp":
        port = origin.nginx.rtmp_port
    else:
        port = origin.ports[case]
    where = f"127.0.0.1:{port}"
    with caplog.at_level(logging.INFO), edge(port, tls_ca_file=str(origin.ca.pem), **extra) as gw:
        status, _media = gw.srv.run(play(gw.srv.url(STREAM)), timeout=60)
        assert status.code == Status.PLAY_FAILED, status
        assert text in status.description
        [view] = gw.get("/api/v1/origins").json()["origins"]
        assert text in view["last_error"]
        assert view["tls"]["failures"] == {reason: 1}
        assert (view["failures"], view["breaker_consecutive_failures"]) == (1, 1)
        samples = gw.metrics()
        assert metric(samples, "streamgate_edge_tls_failures_total", origin=where, reason=reason)

        def cached() -> int:
            assert gw.srv.ctx is not None and gw.srv.ctx.edge is not None
            return len(gw.srv.ctx.edge.negative)

        assert gw.srv.call(cached) == 0
    lines = [r.getMessage() for r in caplog.records if f"tls_failure={reason}" in r.getMessage()]
    assert len(lines) == 1 and text in lines[0]


def test_unverified_pull_from_a_self_signed_nginx(
    origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        edge(origin.ports["self-signed"], tls_verify=False) as gw,
    ):
        status, media = gw.srv.run(play(gw.srv.url(STREAM), 10), timeout=60)
        assert status.code == Status.PLAY_START and media == 10
        [view] = gw.get("/api/v1/origins").json()["origins"]
        assert view["tls"]["verify"] is False
    assert any("tls_verify = false" in r.getMessage() for r in caplog.records)
