"""The RTMPS listener against real peers: FFmpeg publishes and ffprobe plays
over verified TLS, certificates rotate on disk under playing clients, SNI
picks a certificate, and hostile TLS costs only its own connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from streamgate.client import RtmpClient
from streamgate.config import load_settings
from streamgate.errors import ConfigError
from streamgate.log import flush_floods
from streamgate.rtmp.events import MediaReceived
from streamgate.server.tls import ServedCertificates
from tests.logs import accounted, real_log
from tests.peers import need, process_log, publisher
from tests.pki import Issued, Pki
from tests.server.harness import ServerThread
from tests.waiting import await_until, wait_until

pytestmark = pytest.mark.interop


def tls_settings(issued: Issued, **extra: Any) -> dict[str, Any]:
    return issued.rtmp_settings(**extra)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def srv(pki: Pki) -> Iterator[ServerThread]:
    with ServerThread(rtmp=tls_settings(pki.server("origin"))) as server:
        yield server


def tls_port(srv: ServerThread) -> int:
    assert srv.server is not None
    return srv.server.tls_port


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def served_serial(port: int, pki: Pki, name: str = "localhost") -> int:
    """The serial of the certificate the listener presents now, verified."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with client_context(pki).wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_ffmpeg_publishes_over_verified_rtmps_and_ffprobe_plays_over_both(
    srv: ServerThread, pki: Pki
) -> None:
    need("ffmpeg")
    url = f"rtmps://localhost:{tls_port(srv)}/live/x"
    verify = ["-tls_verify", "1", "-ca_file", str(pki.ca)]
    with publisher(url, extra=verify) as proc:
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish over RTMPS")
        for play_url, options in ((url, verify), (srv.url("x"), [])):
            done = subprocess.run(
                [need("ffprobe"), "-v", "error", *options, "-rw_timeout", "10000000",
                 "-show_entries", "stream=codec_name", "-of", "csv=p=0", play_url],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()
            assert sorted(done.stdout.decode().split()) == ["aac", "h264"], play_url
        assert proc.poll() is None, process_log(proc)


async def rtmps_player(port: int, ctx: ssl.SSLContext, counts: list[int], i: int) -> None:
    client = await RtmpClient.open(f"rtmp://localhost:{port}/live/x", tls=ctx)
    try:
        await client.play()
        while True:
            event = await client.next_event()
            if isinstance(event, MediaReceived):
                counts[i] += 1
    finally:
        # Shielded: a cancelled player still says goodbye and its socket is gone
        # before the test's loop ends (no transport left to the garbage collector).
        await asyncio.shield(client.wait_closed(2.0))
        if client.transport is not None:
            client.transport.abort()


def test_a_rotated_certificate_is_served_to_new_clients_and_the_playing_ones_play_on(
    srv: ServerThread, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    need("ffmpeg")
    assert srv.ctx is not None and srv.ctx.tls is not None
    port = tls_port(srv)
    first = served_serial(port, pki)
    cert_path = srv.settings.rtmp.tls_cert
    key_path = srv.settings.rtmp.tls_key
    assert cert_path is not None and key_path is not None
    with publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish")

        async def scenario() -> tuple[int, int, list[int], list[int]]:
            counts = [0] * 20
            ctx = client_context(pki)
            tasks = [asyncio.create_task(rtmps_player(port, ctx, counts, i)) for i in range(20)]
            try:
                await await_until(
                    lambda: all(c >= 5 for c in counts), timeout=20, what="20 players"
                )
                renewed = pki.server("renewed")
                cert_path.write_bytes(renewed.cert.read_bytes())
                key_path.write_bytes(renewed.key.read_bytes())
                await await_until(
                    lambda: served_serial(port, pki) == renewed.serial,
                    timeout=10,
                    what="the renewed certificate served",
                )
                # A broken replacement (a key that is not the certificate's) is refused.
                other = pki.server("other")
                before = list(counts)
                cert_path.write_bytes(other.cert.read_bytes())
                await await_until(
                    lambda: "refused, the served one stays" in caplog.text,
                    timeout=10,
                    what="the broken certificate refused",
                )
                still = served_serial(port, pki)
                await await_until(
                    lambda: all(c > b + 5 for c, b in zip(counts, before, strict=True)),
                    timeout=20,
                    what="the 20 players to play on",
                )
                return renewed.serial, still, before, list(counts)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        with caplog.at_level(logging.INFO, logger="streamgate.tls"):
            renewed, still, before, after = asyncio.run(scenario())
    assert first != renewed and still == renewed  # the broken one never replaced it
    assert all(a > b for a, b in zip(after, before, strict=True))
    errors = [r for r in caplog.records if "refused, the served one stays" in r.getMessage()]
    assert len(errors) == 1  # one line, not one per check
    assert "does not belong" in errors[0].getMessage()


def test_sni_picks_the_certificate_for_the_name_asked(pki: Pki) -> None:
    default = pki.server("default", ("localhost", "127.0.0.1"))
    other = pki.server("other", ("media.example.test",))
    rtmp = tls_settings(
        default,
        tls_certs=[
            {"names": ["media.example.test"], "cert": str(other.cert), "key": str(other.key)}
        ],
    )
    with ServerThread(rtmp=rtmp) as srv:
        port = tls_port(srv)
        assert served_serial(port, pki, "localhost") == default.serial
        assert served_serial(port, pki, "media.example.test") == other.serial


@pytest.mark.parametrize("kind", ["expired", "not_yet_valid", "wrong_key"])
def test_a_certificate_that_does_not_load_stops_the_start_or_a_reload_with_the_reason(
    pki: Pki, kind: str
) -> None:
    good = pki.server("good")
    if kind == "wrong_key":
        bad = Issued(good.cert, pki.server("stranger").key, 0)
        words = "does not belong"
    else:
        bad = pki.server(kind, expired=kind == "expired", not_yet_valid=kind == "not_yet_valid")
        words = "expired on" if kind == "expired" else "not valid before"
    with pytest.raises(ConfigError, match=words):  # at start: the start fails with it
        ServedCertificates(load_settings(None, rtmp=tls_settings(bad)).rtmp)
    with ServerThread(rtmp=tls_settings(good)) as srv:
        assert srv.ctx is not None
        ctx = srv.ctx
        broken = load_settings(None, rtmp=tls_settings(bad), limits={"allow": ["127.0.0.0/8"]})
        with pytest.raises(ConfigError, match=words):
            srv.call(lambda: ctx.apply(broken))
        assert served_serial(tls_port(srv), pki) == good.serial  # the old one serves on


def test_hostile_tls_costs_only_its_own_connection(srv: ServerThread, pki: Pki) -> None:
    """Garbage, a stalled handshake, plain RTMP and 300 handshakes never finished:
    each is cut within the handshake deadline, with one line per reason, while
    an RTMPS player plays on."""
    need("ffmpeg")
    port = tls_port(srv)
    assert srv.ctx is not None and srv.ctx.tls is not None
    deadline = srv.settings.rtmp.handshake_timeout
    with publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish")

        async def scenario() -> tuple[list[float], int, int]:
            counts = [0]
            player = asyncio.create_task(rtmps_player(port, client_context(pki), counts, 0))
            await await_until(lambda: counts[0] >= 5, timeout=15, what="the player")
            loop = asyncio.get_running_loop()
            hello = _client_hello(pki)

            async def attacker(payload: bytes, source: str) -> float:
                started = loop.time()
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
                if payload:
                    writer.write(payload)
                try:
                    while await reader.read(65536):
                        pass
                except ConnectionError:
                    pass
                writer.close()
                return loop.time() - started

            kinds = [
                b"\x16\x03\x01\x00\x05garbage-not-a-hello",
                hello,  # a real ClientHello, then silence: stalls after it
                b"\x03" + b"\x00" * 1536,  # plain RTMP C0C1
                b"",  # connects and says nothing
            ]
            attackers = [attacker(p, f"127.0.0.{2 + i}") for i, p in enumerate(kinds)]
            attackers += [attacker(hello[:40], f"127.0.0.{10 + i % 5}") for i in range(300)]
            before = counts[0]
            took = await asyncio.gather(*attackers)
            await await_until(
                lambda: counts[0] > before + 10, timeout=15, what="the player plays on"
            )
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            return list(took), before, counts[0]

        with real_log() as out:
            took, before, after = asyncio.run(scenario())
            ctx = srv.ctx
            assert ctx is not None
            wait_until(lambda: srv.call(lambda: len(ctx.sessions)) <= 2, timeout=10, what="cleanup")
            flush_floods()
            lines = [
                line for line in out.getvalue().splitlines() if "disconnected (unknown" in line
            ]
    # One line per connection, aggregated per reason: a handful for 304 attackers.
    assert accounted(lines, "disconnected (unknown") == 304, "\n".join(lines)
    assert len(lines) <= 12, "\n".join(lines)
    assert any("plain RTMP to the RTMPS port" in line for line in lines), "\n".join(lines)
    assert max(took) <= deadline + 3, sorted(took)[-5:]
    assert after > before
    failures = srv.call(lambda: dict(srv.ctx.tls.failures))  # type: ignore[union-attr]
    assert failures.get("plain_rtmp") == 1, failures


def _client_hello(pki: Pki) -> bytes:
    """The first flight of a real TLS client (its ClientHello), from memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server: as meant
        obj.do_handshake()
    return outgoing.read()


def test_a_banned_address_is_reset_before_any_tls(pki: Pki) -> None:
    limits = {"allow": [], "ban_after_failures": 1, "ban_time": 60}
    with ServerThread(rtmp=tls_settings(pki.server("o")), limits=limits) as srv:
        assert srv.ctx is not None
        srv.call(lambda: srv.ctx.bans.record_failure("127.0.0.2", "test", srv.ctx.clock.now()))  # type: ignore[union-attr]
        with socket.create_connection(
            ("127.0.0.1", tls_port(srv)), source_address=("127.0.0.2", 0)
        ) as raw:
            raw.settimeout(5)
            try:
                got = raw.recv(1)
            except ConnectionResetError:
                got = b"reset"
        assert got in (b"", b"reset")
        assert srv.call(lambda: sum(srv.ctx.tls.failures.values())) == 0  # type: ignore[union-attr]
        # No handshake was attempted: a good client from elsewhere is served.
        assert served_serial(tls_port(srv), pki) > 0


def test_an_edge_pulls_from_a_streamgate_origin_over_verified_rtmps(
    srv: ServerThread, pki: Pki
) -> None:
    need("ffmpeg")
    from tests.interop.test_edge import play

    with publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish")
        edge_settings = {
            "origins": [f"rtmps://localhost:{tls_port(srv)}"],
            "tls_ca_file": str(pki.ca),
        }
        with ServerThread(mode="edge", edge=edge_settings) as edge:  # type: ignore[arg-type]
            result = edge.run(play(edge.url("x"), 30))
            assert result.media >= 30 and result.first_video_key
            assert srv.call(lambda: srv.ctx is not None and srv.ctx.tls is not None)
