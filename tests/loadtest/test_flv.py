"""The load generator's HTTP-FLV and WebSocket-FLV viewers: parse mode across any
read boundaries (bytes written here from the HTTP, RFC 6455 and FLV specs), and
real runs against a streamgate origin with the [flv] listener."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from streamgate.client import RtmpClient
from streamgate.loadtest.flv import FlvPlayer, parse_flv_url
from streamgate.loadtest.player import PlayerOptions, State
from streamgate.loadtest.run import LoadConfig, run_load
from streamgate.rtmp.messages import MsgType, Status
from tests.relay.sinks import AAC_CONFIG, AAC_RAW, AVC_CONFIG
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.waiting import await_until

FLV = {"enabled": True, "listen": "127.0.0.1:0"}


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _tag(kind: int, ts: int, body: bytes) -> bytes:
    head = bytes((kind,)) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
    return head + bytes((ts >> 24,)) + b"\x00\x00\x00" + body + (11 + len(body)).to_bytes(4, "big")


FLV_START = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + b"".join(
    (
        _tag(9, 0, AVC_CONFIG),
        _tag(8, 0, AAC_CONFIG),
        _tag(8, 0, AAC_RAW),
        _tag(9, 0, INTER + b"p" * 50),  # not a keyframe
    )
)
KEYFRAME = _tag(9, 40, KEY + b"k" * 300)
AFTER = _tag(8, 40, AAC_RAW) + _tag(9, 80, INTER + b"i" * 3000)


def _chunked(pieces: list[bytes]) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: video/x-flv\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


def _ws(player: FlvPlayer, pieces: list[bytes]) -> bytes:
    digest = hashlib.sha1(player.ws_key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    accept = base64.b64encode(digest)
    head = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + accept + b"\r\n\r\n"
    )
    frames = []
    for p in pieces:
        size = len(p)
        if size < 126:
            frames.append(bytes((0x82, size)) + p)
        elif size < 65536:
            frames.append(struct.pack(">BBH", 0x82, 126, size) + p)
        else:
            frames.append(struct.pack(">BBQ", 0x82, 127, size) + p)
    return head + b"".join(frames)


def _player(scheme: str, buffer: bytearray) -> tuple[FlvPlayer, FakeTransport, list[FlvPlayer]]:
    ended: list[FlvPlayer] = []
    url = f"{scheme}://127.0.0.1:1/live/x.flv?t=1"
    player = FlvPlayer(
        0, 0, url, parse_flv_url(url), buffer, memoryview(buffer), PlayerOptions(), ended.append
    )
    transport = FakeTransport()
    player.connection_made(transport)  # type: ignore[arg-type]
    return player, transport, ended


def _feed(player: FlvPlayer, buffer: bytearray, data: bytes) -> None:
    buffer[: len(data)] = data
    player.buffer_updated(len(data))


def test_urls() -> None:
    u = parse_flv_url("ws://h:81/live/cam.flv?token=a")
    assert (u.host, u.port, u.app, u.stream, u.target, u.websocket) == (
        "h", 81, "live", "cam", "/live/cam.flv?token=a", True
    )  # fmt: skip
    assert parse_flv_url("http://h/a/b/c.flv").app == "a/b"
    for bad in ("rtmp://h/live/x", "http://h/live/x", "http://h/x.flv"):
        with pytest.raises(ValueError):
            parse_flv_url(bad)


@pytest.mark.parametrize("scheme", ["http", "ws"])
@pytest.mark.parametrize("step", [1, 5, 13, 100, 4096])
def test_the_first_keyframe_is_found_whatever_the_read_boundaries(scheme: str, step: int) -> None:
    buffer = bytearray(8192)
    player, transport, _ = _player(scheme, buffer)
    request = transport.written[0]
    assert request.startswith(b"GET /live/x.flv?t=1 HTTP/1.1\r\n")
    assert (b"Upgrade: websocket" in request) == (scheme == "ws")
    # Framing boundaries fall mid-tag: the keyframe tag spans two chunks/frames.
    pieces = [FLV_START[:7], FLV_START[7:] + KEYFRAME[:20], KEYFRAME[20:], AFTER]
    stream = _chunked(pieces) if scheme == "http" else _ws(player, pieces)
    keyframe_end = stream.index(KEYFRAME[20:]) + len(KEYFRAME) - 20
    for at in range(0, len(stream), step):
        piece = stream[at : at + step]
        before = player.state
        _feed(player, buffer, piece)
        if at + len(piece) < keyframe_end:
            assert player.state < State.COUNTING, (at, player.error)
        elif before < State.COUNTING:
            assert player.state is State.COUNTING, (at, player.error)
    assert player.state is State.COUNTING
    assert player.nbytes == len(stream)
    assert player.play_start and player.keyframe >= player.play_start
    assert player.last_status == ("HTTP 200" if scheme == "http" else "WS 101")


def test_the_end_of_the_stream_is_seen_in_counting_mode() -> None:
    buffer = bytearray(8192)
    http, _, _ = _player("http", buffer)
    _feed(http, buffer, _chunked([FLV_START + KEYFRAME]))
    _feed(http, buffer, b"3\r\nabc\r\n")
    assert http.last_status == "HTTP 200"
    _feed(http, buffer, b"0\r\n\r\n")
    assert http.last_status == "end of stream"
    ws, _, _ = _player("ws", buffer)
    _feed(ws, buffer, _ws(ws, [FLV_START + KEYFRAME]))
    reason = b"stream ended: gone"
    media = bytes((0x82, 3)) + b"\x88\x02x"  # a close frame's first bytes, within media
    _feed(ws, buffer, media + bytes((0x88, 2 + len(reason))) + b"\x03\xe8" + reason)
    assert ws.last_status == "WS close 1000"


@pytest.mark.parametrize(
    ("scheme", "answer", "status"),
    [
        ("http", b"HTTP/1.1 404 Not Found\r\ncontent-length: 11\r\n\r\nno stream\r\n", "HTTP 404"),
        ("ws", None, "WS close 4404"),
    ],
)
def test_a_refusal_is_recorded(scheme: str, answer: bytes | None, status: str) -> None:
    buffer = bytearray(8192)
    player, transport, _ = _player(scheme, buffer)
    if answer is None:
        reason = b"no such stream"
        close = bytes((0x88, 2 + len(reason))) + struct.pack(">H", 4404) + reason
        answer = _ws(player, []) + close
    for i in range(len(answer)):  # byte by byte
        _feed(player, buffer, answer[i : i + 1])
    assert transport.closed
    assert player.state is State.FAILED
    assert player.closed_by_server
    assert player.last_status == status
    assert player.error.startswith(status + ": no")


# ---------------------------------------------------------------------------- real runs


@asynccontextmanager
async def publishing(srv: ServerThread, name: str) -> AsyncIterator[None]:
    """Synthetic media at about 450 kbit/s (a viewer's reads wake at 32 KB queued):
    AVC/AAC headers, 25 frames/s of 2 KB, a keyframe every 10."""
    client = await RtmpClient.open(srv.url(name))
    sid = await client.publish()
    await client.wait_status(Status.PUBLISH_START)
    client.send_media(sid, MsgType.VIDEO, 0, AVC_CONFIG)
    client.send_media(sid, MsgType.AUDIO, 0, AAC_CONFIG)

    async def run() -> None:
        ts = 0
        while True:
            body = (KEY if ts % 400 == 0 else INTER) + b"v" * 2200
            client.send_media(sid, MsgType.VIDEO, ts, body)
            client.send_media(sid, MsgType.AUDIO, ts, AAC_RAW)
            ts += 40
            await asyncio.sleep(0.04)

    task = asyncio.get_running_loop().create_task(run())
    try:
        await await_until(lambda: srv.call(lambda: _live(srv, name)), timeout=10, what="a GOP")
        yield
    finally:
        task.cancel()
        client.close()


def _live(srv: ServerThread, name: str) -> bool:
    assert srv.ctx is not None
    stream = srv.ctx.hub.get("live", name)
    return stream is not None and bool(stream.gop)


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_viewers_against_a_real_origin(scheme: str) -> None:
    with ServerThread(flv=FLV) as srv:

        async def scenario() -> tuple[Any, Any, dict[str, int]]:
            async with publishing(srv, "lt"):
                config = LoadConfig(
                    url=srv.flv_url("lt", scheme=scheme),
                    players=4,
                    rate=50.0,
                    duration=2.0,
                    warmup=0.5,
                    workers=2,
                )
                missing = LoadConfig(
                    url=srv.flv_url("nothere", scheme=scheme), players=2, duration=0.2,
                    warmup=0.0, workers=1
                )  # fmt: skip
                playing = await asyncio.to_thread(run_load, config)
                # The viewers left as the run ended: the server sees them go soon after.
                await await_until(
                    lambda: not any(srv.call(lambda: _viewers(srv, "lt")).values()),
                    timeout=10,
                    what="the viewers gone from the stream",
                )
                viewers = srv.call(lambda: _viewers(srv, "lt"))
                refused = await asyncio.to_thread(run_load, missing)
            return playing, refused, viewers

        playing, refused, viewers = asyncio.run(scenario())
    s = playing.summary
    assert s["players"] == 4
    assert s["reached"] == {"tcp": 4, "handshake": 4, "play_start": 4, "keyframe": 4}
    assert s["final_state"] == {"left": 4}
    for r in playing.records:
        assert r.started < r.tcp <= r.play_sent < r.play_start <= r.keyframe
        assert r.last_status == ("HTTP 200" if scheme == "http" else "WS 101")
        assert not r.closed_by_server and not r.error
    rates = [v for v in playing.rates.values() if v is not None]
    assert len(rates) == 4
    assert max(rates) / min(rates) < 1.3  # the same stream: rates agree
    # The viewers left when the run ended; what the stream counted is gone with them.
    assert viewers == {"rtmp": 0, "flv": 0, "ws-flv": 0}
    r = refused.summary
    assert r["reached"]["keyframe"] == 0
    assert r["closed_by_server"] == 2
    expected = "HTTP 404" if scheme == "http" else "WS close 4404"
    assert set(r["last_status"]) == {expected}


def _viewers(srv: ServerThread, name: str) -> dict[str, int]:
    assert srv.ctx is not None
    stream = srv.ctx.hub.get("live", name)
    return stream.viewers() if stream is not None else {}
