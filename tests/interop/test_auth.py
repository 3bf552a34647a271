"""Auth and abuse protection against real clients over loopback."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from streamgate.auth import sign_query
from streamgate.client import RtmpClient
from streamgate.config import load_settings
from streamgate.errors import UpstreamError
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.messages import MsgType, Status
from tests.auth.hookserver import HookServer
from tests.interop.test_edge import CountingConnector, play
from tests.peers import free_port, need, play_status, probe, publisher
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.waiting import wait_until

pytestmark = pytest.mark.interop

SECRET = b"play-secret"
KEYS = {"k1": SECRET.decode()}


def token(stream: str, ttl: float = 300, action: str = "play", secret: bytes = SECRET) -> str:
    return sign_query(action, "live", stream, int(time.time() + ttl), secret, "k1")


def edge_with_auth(origin_port: int, **sections: Any) -> tuple[ServerThread, CountingConnector]:
    srv = ServerThread(
        mode="edge",  # type: ignore[arg-type]
        edge={"origins": [f"rtmp://127.0.0.1:{origin_port}"]},
        auth={"play": "signed", "keys": KEYS},
        **sections,
    ).start()
    assert srv.ctx is not None and srv.ctx.edge is not None
    counting = CountingConnector(srv.ctx.edge.connector)
    srv.ctx.edge.connector = counting
    return srv, counting


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    need("ffmpeg")
    with ServerThread() as srv, publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish")
        yield srv


def tampered(query: str) -> list[str]:
    """The query with single characters of the signature and expiry changed."""
    exp, sig, kid = (part.split("=", 1)[1] for part in query.split("&"))
    out = []
    for i in (0, len(sig) // 2, len(sig) - 1):
        c = "A" if sig[i] != "A" else "B"
        out.append(f"exp={exp}&sig={sig[:i]}{c}{sig[i + 1 :]}&kid={kid}")
    for i in (0, len(exp) - 1):
        d = str((int(exp[i]) + 1) % 10)
        out.append(f"exp={exp[:i]}{d}{exp[i + 1 :]}&sig={sig}&kid={kid}")
    return out


def test_signed_url_plays_through_the_edge_and_any_change_is_refused(origin: ServerThread) -> None:
    edge, connects = edge_with_auth(origin.port, limits={"ban_after_failures": 1000})
    try:
        query = token("x")
        result = probe(f"{edge.url('x')}?{query}", read_seconds=2)
        assert (result.video.codec_name, result.audio.codec_name) == ("h264", "aac")
        assert connects.count() == 1

        refused = [f"{edge.url('x')}?{q}" for q in tampered(query)]
        refused.append(f"{edge.url('y')}?{query}")  # the stream name changed
        refused.append(f"{edge.url('x')}?{token('x', ttl=-120)}")  # expired
        refused.append(edge.url("x"))  # no token at all
        for url in refused:
            outcome = edge.run(play(url, 1))
            assert outcome.statuses == [Status.PLAY_FAILED], url
        ffmpeg = play_status(refused[0], timeout=10)
        assert ffmpeg.returncode not in (None, 0) and "bad signature" in (ffmpeg.server_error or "")
        expired = play_status(refused[-2], timeout=10)
        assert "token expired" in (expired.server_error or "")
        assert connects.count() == 1  # refusals never reached the origin
    finally:
        edge.stop()


def test_a_play_token_does_not_publish() -> None:
    auth = {
        "play": "signed",
        "publish": "signed",
        "keys": KEYS,
        "publish_keys": {"k1": "publish-secret"},
    }
    with ServerThread(auth=auth) as srv:

        async def attempt(query: str) -> str:
            client = await RtmpClient.open(srv.url("cam"))
            try:
                await client.publish(f"cam?{query}")
                return (await client.wait_status(timeout=5)).code
            finally:
                client.close()

        assert srv.run(attempt(token("cam"))) == Status.PUBLISH_BAD_NAME
        granted = token("cam", action="publish", secret=b"publish-secret")
        assert srv.run(attempt(granted)) == Status.PUBLISH_START


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("allow", Status.PLAY_RESET),
        ("deny", Status.PLAY_FAILED),
        ("slow", Status.PLAY_FAILED),
        ("down", Status.PLAY_FAILED),
    ],
)
def test_hook_auth(scenario: str, expected: str) -> None:
    with HookServer() as hook:
        url = hook.url if scenario != "down" else f"http://127.0.0.1:{free_port()}/on_play"
        hook.status = 403 if scenario == "deny" else 200
        hook.delay = 2.0 if scenario == "slow" else 0.0
        auth = {"play": "hook", "hook_url": url, "hook_timeout": 0.5}
        with ServerThread(auth=auth, origin={"play_wait": 3}) as srv:

            async def attempt() -> tuple[str, str]:
                pub = await RtmpClient.open(srv.url("cam"))
                sid = await pub.publish()
                await pub.wait_status(Status.PUBLISH_START)
                pub.send_media(sid, MsgType.VIDEO, 0, KEY + bytes(10))
                client = await RtmpClient.open(srv.url("cam"))
                try:
                    await client.play("cam?token=abc")
                    status = await client.wait_status(timeout=5)
                    return status.code, status.description
                finally:
                    client.close()
                    pub.close()

            code, description = srv.run(attempt())
            assert code == expected, description
        if scenario in ("allow", "deny"):
            assert hook.requests[0]["stream"] == "cam" and hook.requests[0]["query"] == "token=abc"


def test_unauthorised_flood_causes_zero_upstream_connections(origin: ServerThread) -> None:
    limits = {"ban_after_failures": 100_000, "connections_per_second_per_ip": 10_000}
    edge, connects = edge_with_auth(origin.port, limits=limits)
    try:

        async def flood() -> list[list[str]]:
            results: list[list[str]] = []
            for batch in range(10):
                urls = [
                    f"{edge.url(f's{batch}-{i}')}?exp=9999999999&sig=forged" for i in range(100)
                ]
                outcomes = await asyncio.gather(*(play(u, 1) for u in urls))
                results.extend(o.statuses for o in outcomes)
            return results

        statuses = edge.run(flood(), timeout=120)
        assert len(statuses) == 1000
        assert all(s == [Status.PLAY_FAILED] for s in statuses)
        assert connects.count() == 0
        counters = edge.call(lambda: copy.deepcopy(edge.ctx.counters))  # type: ignore[union-attr]
        assert counters.rejected["auth_bad_signature"] == 1000
    finally:
        edge.stop()


def handshake_bytes_on_connect(port: int) -> bytes:
    """Connect, send C0C1, and return whatever the server answers before closing.

    A reset can land before connect() returns (the server accepted and reset the
    connection while this thread waited for the CPU): that too is "nothing".
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\x03" + bytes(1536))
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
                if len(data) >= 1537:
                    break
            return data
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_bad_tokens_ban_the_ip_closed_before_handshake_and_bans_survive_reload() -> None:
    limits = {
        "ban_after_failures": 30,
        "ban_window": 60,
        "ban_time": 120,
        "connections_per_second_per_ip": 1000,
    }
    auth = {"play": "signed", "keys": KEYS}
    with ServerThread(auth=auth, limits=limits) as srv:

        async def attempts(n: int) -> list[str]:
            out = []
            for i in range(n):
                try:
                    result = await play(f"{srv.url(f'z{i}')}?exp=9999999999&sig=bad", 1)
                    out.append(result.statuses[-1] if result.statuses else "closed")
                except (UpstreamError, OSError):
                    out.append("refused at connect")
            return out

        first = srv.run(attempts(30))
        assert first == [Status.PLAY_FAILED] * 30
        assert handshake_bytes_on_connect(srv.port) == b""  # no S0S1: closed at accept
        counters = srv.call(lambda: copy.deepcopy(srv.ctx.counters))  # type: ignore[union-attr]
        assert counters.bans_issued == 1 and counters.rejected["banned"] >= 1

        new = load_settings(
            None,
            rtmp={"listen": srv.settings.rtmp.listen},
            auth=auth,
            limits={**limits, "ban_time": 999},
        )
        srv.call(lambda: srv.ctx.apply(new))  # type: ignore[union-attr]
        banned = counters.rejected["banned"]
        assert handshake_bytes_on_connect(srv.port) == b""  # still banned after the reload
        # ... by the ban itself: the connection was refused as banned, not lost otherwise
        assert srv.call(lambda: srv.ctx.counters.rejected["banned"]) == banned + 1  # type: ignore[union-attr]


def test_an_allow_listed_ip_is_never_banned() -> None:
    limits = {"ban_after_failures": 3, "allow": ["127.0.0.0/8"]}  # also exempt from rates
    with ServerThread(auth={"play": "signed", "keys": KEYS}, limits=limits) as srv:

        async def attempts() -> list[str]:
            results = await asyncio.gather(
                *(play(f"{srv.url(f'z{i}')}?exp=1&sig=bad", 1) for i in range(50))
            )
            return [r.statuses[-1] for r in results]

        assert srv.run(attempts()) == [Status.PLAY_FAILED] * 50
        assert len(handshake_bytes_on_connect(srv.port)) >= 1537  # still served
        assert srv.call(lambda: srv.ctx.counters.bans_issued) == 0  # type: ignore[union-attr]


def test_idle_connections_and_a_connect_flood_do_not_stop_a_legitimate_player() -> None:
    """500 idle TCP connections that never send a byte, plus 200 connects a second from
    one IP, while a real player starts. All from 127.0.0.1, so the per-IP limits are
    set to let the flood in: what is shown is that absorbing it costs nothing."""
    rtmp = {"handshake_timeout": 3.0}
    limits = {"max_connections_per_ip": 5000, "connections_per_second_per_ip": 5000}
    with ServerThread(rtmp=rtmp, limits=limits) as srv:
        idle = []
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            idle.append(sock)
        stop = threading.Event()
        flood_count = [0]

        def connect_flood() -> None:
            deadline = time.monotonic()
            while not stop.is_set():  # 200 connects a second, paced
                deadline += 1 / 200
                try:
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=2):
                        flood_count[0] += 1
                except OSError:
                    pass
                time.sleep(max(0.0, deadline - time.monotonic()))

        flooder = threading.Thread(target=connect_flood, daemon=True)
        flooder.start()
        try:

            async def legitimate() -> tuple[float, int]:
                pub = await RtmpClient.open(srv.url("live1"))
                sid = await pub.publish()
                await pub.wait_status(Status.PUBLISH_START)
                for i in range(5):
                    pub.send_media(
                        sid, MsgType.VIDEO, i * 40, (KEY if i == 0 else INTER) + bytes(10)
                    )
                started = time.monotonic()
                player = await RtmpClient.open(srv.url("live1"))
                await player.play()
                await player.wait_status(Status.PLAY_START, timeout=10)
                while not isinstance(await player.next_event(), MediaReceived):
                    pass
                elapsed = time.monotonic() - started
                player.close()
                pub.close()
                return elapsed, srv.ctx.admission.connections  # type: ignore[union-attr]

            wait_until(lambda: flood_count[0] >= 100, timeout=10, what="the flood to be on")
            elapsed, connections = srv.run(legitimate(), timeout=30)
            print(
                f"legitimate player started in {elapsed * 1000:.0f} ms beside "
                f"{connections} open connections and {flood_count[0]} flood connects"
            )
            assert connections >= 500
            # the idle ones are shed at the handshake deadline, none outlives it
            wait_until(
                lambda: srv.call(lambda: srv.ctx.admission.connections) < 50,  # type: ignore[union-attr]
                timeout=15,
                what="idle connections closed at the handshake timeout",
            )
        finally:
            stop.set()
            flooder.join(5)
            for sock in idle:
                sock.close()


def test_edge_signs_its_upstream_once_per_stream_for_a_protected_origin() -> None:
    need("ffmpeg")
    origin_auth = {"play": "signed", "keys": {"edge1": "origin-secret"}}
    with ServerThread(auth=origin_auth) as origin, publisher(origin.url("x")):
        wait_until(lambda: origin.published("x"), timeout=15, what="ffmpeg to publish")
        signing = ServerThread(
            mode="edge",  # type: ignore[arg-type]
            edge={
                "origins": [f"rtmp://127.0.0.1:{origin.port}"],
                "upstream_secret": "origin-secret",
                "upstream_kid": "edge1",
            },
        ).start()
        plain = ServerThread(
            mode="edge",  # type: ignore[arg-type]
            edge={"origins": [f"rtmp://127.0.0.1:{origin.port}"]},
        ).start()
        try:

            async def crowd(edge: ServerThread) -> list[int]:
                results = await asyncio.gather(*(play(edge.url("x"), 10) for _ in range(20)))
                return [r.media for r in results]

            assert signing.run(crowd(signing), timeout=60) == [10] * 20
            assert origin.players("x") == 1  # one signed link for twenty players
            refused = plain.run(play(plain.url("x"), 10))
            assert refused.media == 0 and refused.statuses[-1] == Status.PLAY_FAILED
        finally:
            signing.stop()
            plain.stop()
