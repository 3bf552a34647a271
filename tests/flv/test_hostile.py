"""Hostile HTTP against the [flv] listener, with real viewers playing beside it.

Every case keeps a publisher and HTTP-FLV and WebSocket-FLV viewers from
127.0.0.1 playing while attackers from 127.0.0.2 and up misbehave, and
shows: the offender is cut within its limit (with a status where one can
still be said), the viewers keep receiving and lose nothing (every video
tag 40 ms after the one before, nothing ended), and the log stays bounded
(lines counted from the production handler, ``tests/logs.py``). The last
cases fuzz the decoders the listener runs on what a peer sends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgate.client import RtmpClient
from streamgate.flv import websocket as ws
from streamgate.flv.server import FlvViewer, parse_target
from streamgate.log import flush_floods
from streamgate.rtmp.messages import MsgType, Status
from tests.flv.test_server import SECRET, token
from tests.flv.viewer import ViewerResult, view
from tests.logs import accounted, lines_since, real_log
from tests.relay.sinks import AAC_CONFIG, AAC_RAW, AVC_CONFIG
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.waiting import await_until, wait_until

HEADER_TIMEOUT = 1.0
SLOW_PLAYER_TIMEOUT = 1.0
SLACK = 2.0  # what a loaded 2-core machine may add to a deadline, seen by the client
FLV = {"enabled": True, "listen": "127.0.0.1:0", "header_timeout": HEADER_TIMEOUT}
RTMP = {"slow_player_timeout": SLOW_PLAYER_TIMEOUT}
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 22)]
GET = b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\n"
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()
UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
).encode()


def server(flv: dict[str, Any] | None = None, **sections: dict[str, Any]) -> ServerThread:
    sections.setdefault("rtmp", dict(RTMP))
    sections["flv"] = {**FLV, **(flv or {})}
    return ServerThread(None, **sections)


# --------------------------------------------------------------------------- the audience


class Publisher:
    """RTMP publisher of live/x: AVC/AAC headers, 25 frames a second of ``size`` bytes,
    a keyframe every 10."""

    def __init__(self, client: RtmpClient, sid: int, size: int) -> None:
        self.client = client
        self.sid = sid
        self.size = size
        self.ts = 0

    def frame(self) -> None:
        key = self.ts % 400 == 0
        body = (KEY if key else INTER) + b"v" * self.size
        self.client.send_media(self.sid, MsgType.VIDEO, self.ts, body)
        self.client.send_media(self.sid, MsgType.AUDIO, self.ts, AAC_RAW)
        self.ts += 40

    async def run(self) -> None:
        while True:
            self.frame()
            await asyncio.sleep(0.04)  # a live source's pace


@dataclass
class Audience:
    """The publisher and the viewers from 127.0.0.1 that must not notice the attack."""

    srv: ServerThread
    query: str = ""
    viewers: list[tuple[str, ViewerResult, asyncio.Task[ViewerResult]]] = field(
        default_factory=list
    )

    def join(self, label: str, *, websocket: bool = False) -> ViewerResult:
        result = ViewerResult()
        path = f"/live/x.flv{'?' + self.query if self.query else ''}"
        task = asyncio.get_running_loop().create_task(
            view("127.0.0.1", self.srv.flv_port, path, websocket=websocket, timeout=300,
                 source="127.0.0.1", result=result)
        )  # fmt: skip
        self.viewers.append((label, result, task))
        return result

    async def keep_playing(self, more: int = 20) -> None:
        """Every viewer receives ``more`` tags again, and has lost nothing so far."""
        before = [len(result.flv.tags) for _, result, _ in self.viewers]

        def grew() -> bool:
            return all(
                len(result.flv.tags) >= count + more
                for (_, result, _), count in zip(self.viewers, before, strict=True)
            )

        await await_until(grew, timeout=30, what="every viewer receiving more media")
        self.assert_intact()

    def assert_intact(self) -> None:
        for label, result, task in self.viewers:
            assert not task.done(), (label, task)
            assert result.status in (200, 101) and not result.ended and not result.closed, label
            video = [t.timestamp for t in result.flv.tags if t.type == 9 and not t.config]
            gaps = [(a, b) for a, b in itertools.pairwise(video) if b - a != 40]
            assert not gaps, f"{label} lost media: {gaps[:5]}"

    def leave(self) -> None:
        for _, _, task in self.viewers:
            task.cancel()


@asynccontextmanager
async def audience(
    srv: ServerThread, *, http: int = 2, websocket: int = 1, size: int = 200, query: str = ""
) -> AsyncIterator[Audience]:
    client = await RtmpClient.open(srv.url("x"))
    sid = await client.publish()
    await client.wait_status(Status.PUBLISH_START)
    client.send_media(sid, MsgType.VIDEO, 0, AVC_CONFIG)
    client.send_media(sid, MsgType.AUDIO, 0, AAC_CONFIG)
    pub = Publisher(client, sid, size)
    pub.frame()  # a keyframe: the stream is described
    publisher = asyncio.get_running_loop().create_task(pub.run())
    crowd = Audience(srv, query)
    try:
        for i in range(http):
            crowd.join(f"http-{i}")
        for i in range(websocket):
            crowd.join(f"ws-{i}", websocket=True)
        await crowd.keep_playing(10)
        yield crowd
        await crowd.keep_playing()
    finally:
        crowd.leave()
        publisher.cancel()
        client.close()


def stream_players(srv: ServerThread) -> int:
    return srv.players("x")


def http_counters(srv: ServerThread) -> Counter[str]:
    assert srv.flv is not None
    flv = srv.flv
    return srv.call(lambda: Counter(flv.http.counters))


def held(srv: ServerThread) -> int:
    """Connections the FLV listener holds."""
    assert srv.flv is not None
    flv = srv.flv
    return srv.call(lambda: len(flv.http.connections))


def no_attacker_left(srv: ServerThread) -> bool:
    """Every connection still open is one of the audience (from 127.0.0.1)."""
    assert srv.flv is not None
    flv = srv.flv
    return srv.call(lambda: all(conn.ip == "127.0.0.1" for conn in flv.http.connections))


def status_of(answer: bytes) -> int:
    """The status of an HTTP answer (0: none)."""
    if not answer.startswith(b"HTTP/1."):
        return 0
    return int(answer.split(b" ", 2)[1])


# --------------------------------------------------------------------------- attackers


@dataclass
class Outcome:
    answer: bytes = b""  # everything the server sent
    lifetime: float = 0.0  # from connected to closed by the server
    reset: bool = False  # closed by a reset (or refused before connect() returned)
    failed_connect: bool = False

    @property
    def status(self) -> int:
        return status_of(self.answer)


async def read_to_end(reader: asyncio.StreamReader, into: Outcome, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            while data := await reader.read(65536):
                into.answer += data
    except ConnectionError:
        into.reset = True


async def attack(
    port: int,
    source: str,
    send: Callable[[asyncio.StreamWriter], Awaitable[None]] | bytes = b"",
    *,
    within: float = 30.0,
) -> Outcome:
    """One connection from ``source``: send (bytes, or a coroutine writing them),
    then read until the server closes. Raises TimeoutError if it never does."""
    outcome = Outcome()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except ConnectionError:
        outcome.reset = outcome.failed_connect = True
        return outcome
    started = time.monotonic()
    reading = asyncio.create_task(read_to_end(reader, outcome, within))
    try:
        if isinstance(send, bytes):
            if send:
                writer.write(send)
                await writer.drain()
        else:
            await send(writer)
    except ConnectionError:
        outcome.reset = True
    try:
        await reading
    finally:
        outcome.lifetime = time.monotonic() - started
        writer.close()
    if not reading.cancelled() and not reader.at_eof() and not outcome.reset:
        raise TimeoutError(f"the server kept a connection from {source} open {within} s")
    return outcome


def pieces(
    data: bytes, size: int, pause: float
) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """Send ``data`` ``size`` bytes at a time, ``pause`` s apart, until the server
    closes (the pace is the attacker's, not a synchronisation)."""

    async def send(writer: asyncio.StreamWriter) -> None:
        for at in range(0, len(data), size):
            if writer.is_closing():
                return
            writer.write(data[at : at + size])
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)

    return send


async def flood(
    count: int, one: Callable[[int], Awaitable[Outcome]], at_once: int
) -> list[Outcome]:
    gate = asyncio.Semaphore(at_once)

    async def each(i: int) -> Outcome:
        async with gate:
            return await one(i)

    return await asyncio.gather(*(each(i) for i in range(count)))


@dataclass
class Log:
    lines: list[str]

    def about(self, what: str) -> list[str]:
        return [line for line in self.lines if what in line]


def flushed(out: Any, mark: int) -> Log:
    """Every line since ``mark``, the held-back counts written (as at shutdown)."""
    flush_floods()
    return Log(lines_since(out, mark))


def figures(name: str, **values: object) -> None:
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items()))


# --------------------------------------------------------------------------- 1. idle sockets


def test_1000_idle_sockets_are_cut_and_a_new_viewer_still_gets_in() -> None:
    cap, per_ip = 60, 8

    def source(i: int) -> str:
        # Half from one address (its cap refuses them), half spread over 19 (they
        # fill the listener: the oldest head-less one gives up its slot).
        return ATTACKERS[0] if i % 2 == 0 else ATTACKERS[1 + i % 19]

    with (
        real_log() as out,
        server({"max_connections": cap, "max_connections_per_ip": per_ip}) as srv,
    ):
        port = srv.flv_port
        outcomes: list[Outcome] = []
        stop = asyncio.Event()

        first_round = 0

        async def idle_attacker(i: int, gate: asyncio.Semaphore) -> None:
            # Connect and send nothing; reconnect, 2 to 4 s later (many hosts do not
            # move in step), whatever the server closes.
            nonlocal first_round
            async with gate:  # connects in flight: the listen backlog holds them
                first = asyncio.create_task(attack(port, source(i), within=12))
                await asyncio.sleep(0)  # its connect is under way
            outcomes.append(await first)
            first_round += 1
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), 2.0 + (i * 37 % 200) / 100)
                    return
                except TimeoutError:
                    outcomes.append(await attack(port, source(i), within=12))

        async def scenario() -> ViewerResult:
            async with audience(srv) as crowd:
                mark = len(out.getvalue())
                gate = asyncio.Semaphore(200)
                tasks = [asyncio.create_task(idle_attacker(i, gate)) for i in range(1000)]
                try:
                    # The flood is in force: every slot taken, both caps refusing.
                    await await_until(
                        lambda: (
                            first_round == 1000
                            and held(srv) >= cap
                            and http_counters(srv)["rejected_per_ip"] > 0
                            and http_counters(srv)["evicted"] > 0
                        ),
                        timeout=30,
                        what="the idle flood holding the listener at its caps",
                    )
                    newcomer = crowd.join("newcomer")
                    await await_until(
                        lambda: len(newcomer.flv.tags) >= 10 or newcomer.status not in (0, 200),
                        timeout=30,
                        what="the newcomer playing",
                    )
                    assert newcomer.status == 200, (newcomer.status, newcomer.body)
                    assert held(srv) >= cap - 5, "the flood ended before the newcomer came"
                    await crowd.keep_playing()
                finally:
                    stop.set()
                    await asyncio.gather(*tasks)
                await await_until(
                    lambda: no_attacker_left(srv), timeout=10, what="every attacker cut"
                )
                log = flushed(out, mark)
                counters = http_counters(srv)
                kinds = {
                    "timed out (silent close)": [o for o in outcomes if not o.answer],
                    "503 per address": [o for o in outcomes if b"your address" in o.answer],
                    "503 evicted": [o for o in outcomes if b"too slow" in o.answer],
                }
                assert sum(len(v) for v in kinds.values()) == len(outcomes), [
                    o.answer[:80] for o in outcomes if o.answer and o.status != 503
                ]
                silent = kinds["timed out (silent close)"]
                slowest = max(o.lifetime for o in outcomes)
                figures(
                    "idle flood",
                    connections=len(outcomes),
                    **{k: len(v) for k, v in kinds.items()},
                    max_lifetime=f"{slowest:.2f}s",
                    max_silent=f"{max(o.lifetime for o in silent):.2f}s",
                    limit=f"{HEADER_TIMEOUT}s",
                    log_lines=len(log.lines),
                    counters=counters,
                )
                assert len(outcomes) >= 1000
                assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
                assert slowest <= HEADER_TIMEOUT + SLACK
                assert counters["timeouts"] >= len(silent)
                # One end line per connection, aggregated: a handful of lines for them all.
                ends = log.about("disconnected (flv viewer")
                assert len(ends) <= 12, "\n".join(ends)
                # Each says why the server cut it (the reasons it is grouped by).
                for why in ("no request in time", "evicted", "too many connections from"):
                    assert log.about(why), (why, log.lines)
                assert not log.about("closed by the peer"), log.lines
                assert accounted(log.lines, "disconnected (flv viewer") >= len(outcomes)
                assert len(log.lines) <= 20, "\n".join(log.lines)
                return newcomer

        newcomer = asyncio.run(scenario())
        assert newcomer.status == 200
        wait_until(srv.idle, timeout=10, what="every connection ended")


# --------------------------------------------------------------------------- 2-5. bad heads


def run_attack(
    srv: ServerThread, out: Any, attackers: Callable[[], Awaitable[list[Outcome]]]
) -> tuple[list[Outcome], Log]:
    """``attackers`` beside the audience: their outcomes, and the log lines of the attack."""

    async def scenario() -> tuple[list[Outcome], Log]:
        async with audience(srv) as crowd:
            mark = len(out.getvalue())
            outcomes = await attackers()
            await await_until(lambda: no_attacker_left(srv), timeout=10, what="every attacker cut")
            await crowd.keep_playing()
            return outcomes, flushed(out, mark)

    return asyncio.run(scenario())


def test_slowloris_heads_are_cut_at_the_header_timeout_with_408() -> None:
    head = GET + b"X-Slow: " + b"a" * 100

    with real_log() as out, server() as srv:

        async def attackers() -> list[Outcome]:
            return await flood(
                40,
                lambda i: attack(srv.flv_port, ATTACKERS[i % 4], pieces(head, 1, 0.25)),
                at_once=40,
            )

        outcomes, log = run_attack(srv, out, attackers)
    slowest = max(o.lifetime for o in outcomes)
    figures("slowloris", connections=len(outcomes), max_lifetime=f"{slowest:.2f}s",
            limit=f"{HEADER_TIMEOUT}s", log_lines=len(log.lines))  # fmt: skip
    assert [o.status for o in outcomes] == [408] * 40
    assert all(b"not received in time" in o.answer for o in outcomes)
    assert all(HEADER_TIMEOUT - 0.1 <= o.lifetime <= HEADER_TIMEOUT + SLACK for o in outcomes)
    assert len(log.lines) <= 2, "\n".join(log.lines)  # a first line, then a count
    assert all("request head not received within 1 s" in line for line in log.lines)
    assert accounted(log.lines, "disconnected (flv viewer") == 40, "\n".join(log.lines)


HUGE = GET + b"X-Big: " + b"b" * (1 << 20) + b"\r\n\r\n"
MANY = GET + b"".join(b"h%d: v\r\n" % i for i in range(10_000)) + b"\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "piece", "flv", "reason"),
    [
        (HUGE, 0, {}, b""),
        (HUGE, 1024, {}, b""),
        (MANY, 0, {}, b""),
        # Room for 10,000 short lines (about 100 KB): the header-line cap says no.
        (MANY, 0, {"max_header_bytes": 1 << 20}, b"more than 64 header lines"),
        (MANY, 4096, {"max_header_bytes": 1 << 20}, b"more than 64 header lines"),
    ],
    ids=["1MB-whole", "1MB-in-pieces", "10k-headers", "10k-headers-count", "10k-in-pieces"],
)
def test_an_oversized_head_is_431_and_closed(
    request_bytes: bytes, piece: int, flv: dict[str, Any], reason: bytes
) -> None:
    with real_log() as out, server(flv) as srv:

        async def attackers() -> list[Outcome]:
            send = pieces(request_bytes, piece, 0.001) if piece else request_bytes
            return await flood(
                20, lambda i: attack(srv.flv_port, ATTACKERS[i % 4], send, within=20), at_once=10
            )

        outcomes, log = run_attack(srv, out, attackers)
    figures("oversized head", piece=piece, statuses=Counter(o.status for o in outcomes),
            max_lifetime=f"{max(o.lifetime for o in outcomes):.2f}s",
            log_lines=len(log.lines))  # fmt: skip
    for o in outcomes:
        assert o.status == 431, o.answer[:200]
        assert reason in o.answer, o.answer
    assert len(log.lines) <= 2, "\n".join(log.lines)  # a first line, then a count
    # The head-size bound is h11's ("Receive buffer too long") or ours ("431 ...").
    assert all("431" in line or "too long" in line for line in log.lines), log.lines
    assert accounted(log.lines, "disconnected (flv viewer") == 20, "\n".join(log.lines)


CLIENT_HELLO = bytes.fromhex(
    "16030100f4010000f00303" + "00" * 32 + "20" + "11" * 32 + "0008130213031301c02f0100009f"
) + bytes(120)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET /live/x.flv\r\n\r\n",  # no version
        b"GET  /live/x.flv HTTP/1.1\r\nHost: a\r\n\r\n",  # two spaces
        b"GET /live/x.flv HTTP/9.9\r\nHost: a\r\n\r\n",  # h11 takes it: we answer 505
        b"GET /live/x.flv HTTP/1.1\r\nBad Header\r\n\r\n",
        bytes(range(256)) * 16,
        CLIENT_HELLO,
    ],
    ids=["no-version", "two-spaces", "http-9.9", "bad-header-line", "binary", "tls-hello"],
)
def test_garbage_is_400_or_closed_with_one_log_line_each(garbage: bytes) -> None:
    with real_log() as out, server() as srv:

        async def attackers() -> list[Outcome]:
            return [await attack(srv.flv_port, ATTACKERS[0], garbage, within=10)]

        (outcome,), log = run_attack(srv, out, attackers)
    figures("garbage", status=outcome.status, lifetime=f"{outcome.lifetime:.2f}s",
            lines=log.lines)  # fmt: skip
    assert outcome.status in (400, 505) or (not outcome.answer and outcome.reset), outcome
    assert len(log.lines) == 1, "\n".join(log.lines)
    assert "disconnected (flv viewer" in log.lines[0]
    assert ("answered 505" if outcome.status == 505 else "bad request") in log.lines[0]


# --------------------------------------------------------------------------- 6. WebSocket


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    masked: bool = True,
    fin: bool = True,
    rsv: int = 0,
    claimed: int | None = None,
) -> bytes:
    """A client frame as RFC 6455 says (or not): ``claimed`` overrides its length."""
    size = len(payload) if claimed is None else claimed
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


@dataclass
class WsPeer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pongs: list[bytes] = field(default_factory=list)
    media: int = 0
    close_code: int | None = None
    close_reason: str = ""

    async def read_until_close(self, pongs: int = 0, within: float = 20.0) -> None:
        """Read server frames until a close (or ``pongs`` pongs); then expect EOF."""
        async with asyncio.timeout(within):
            while True:
                first, second = await self.reader.readexactly(2)
                size = second & 0x7F
                if size == 126:
                    size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                elif size == 127:
                    size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
                payload = await self.reader.readexactly(size)
                opcode = first & 0x0F
                if opcode == ws.OP_PONG:
                    self.pongs.append(payload)
                    if pongs and len(self.pongs) >= pongs:
                        return
                elif opcode == ws.OP_BINARY:
                    self.media += 1
                elif opcode == ws.OP_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    self.close_reason = payload[2:].decode()
                    break
            with contextlib.suppress(ConnectionError):
                assert await self.reader.read() == b""  # and the server closed


async def ws_open(port: int, source: str) -> WsPeer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(GET + UPGRADE + b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert status_of(head) == 101, head
    return WsPeer(reader, writer)


def test_bad_websocket_handshakes_are_400_with_one_line_each() -> None:
    version = UPGRADE.replace(b"Version: 13", b"Version: 8")
    key = UPGRADE.replace(WS_KEY.encode(), b"c2hvcnQ=")  # 5 bytes, not 16
    no_connection = UPGRADE.replace(b"Connection: Upgrade\r\n", b"")
    bad = [version, key, no_connection, UPGRADE.replace(WS_KEY.encode(), b"!!not base64!!")]

    with real_log() as out, server() as srv:

        async def attackers() -> list[Outcome]:
            return await flood(
                40,
                lambda i: attack(srv.flv_port, ATTACKERS[i % 4], GET + bad[i % 4] + b"\r\n"),
                at_once=10,
            )

        outcomes, log = run_attack(srv, out, attackers)
    figures("bad handshakes", statuses=Counter(o.status for o in outcomes),
            log_lines=len(log.lines))  # fmt: skip
    assert [o.status for o in outcomes] == [400] * 40
    assert all(b"bad WebSocket handshake" in o.answer for o in outcomes)
    assert len(log.lines) <= 2, "\n".join(log.lines)  # a first line, then a count
    ends = log.about("disconnected (flv viewer")
    assert all("bad WebSocket handshake: " in line for line in ends), "\n".join(ends)
    assert accounted(log.lines, "disconnected (flv viewer") == 40, "\n".join(log.lines)


PAYLOAD = b"x" * 10


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (client_frame(ws.OP_BINARY, PAYLOAD, masked=False), ws.CLOSE_PROTOCOL_ERROR),
        (client_frame(ws.OP_BINARY, PAYLOAD, rsv=4), ws.CLOSE_PROTOCOL_ERROR),
        (client_frame(ws.OP_BINARY, claimed=10 << 20), ws.CLOSE_TOO_BIG),  # only the header
        (client_frame(ws.OP_PING, b"p" * 200), ws.CLOSE_PROTOCOL_ERROR),
        (client_frame(ws.OP_PING, b"p", fin=False), ws.CLOSE_PROTOCOL_ERROR),
        (client_frame(0x3, PAYLOAD), ws.CLOSE_PROTOCOL_ERROR),
        (client_frame(ws.OP_TEXT, PAYLOAD) * 100 + b"\xff" * 8, ws.CLOSE_PROTOCOL_ERROR),
    ],
    ids=["unmasked", "reserved-bits", "10MB-length", "big-ping", "fragmented-ping",
         "unknown-opcode", "data-then-noise"],
)  # fmt: skip
def test_a_websocket_viewer_sending_garbage_is_closed_with_the_right_code(
    frames: bytes, code: int
) -> None:
    with real_log() as out, server() as srv:

        async def attackers() -> list[Outcome]:
            peer = await ws_open(srv.flv_port, ATTACKERS[0])
            peer.writer.write(frames)
            try:
                await peer.read_until_close()
            finally:
                peer.writer.close()
            assert peer.media > 0  # it was a viewer
            results.append(peer)
            return []

        results: list[WsPeer] = []
        _, log = run_attack(srv, out, attackers)
    (peer,) = results
    figures("ws garbage", code=peer.close_code, reason=peer.close_reason, lines=log.lines)
    assert peer.close_code == code, peer.close_reason
    ends = log.about("disconnected (ws-flv viewer")
    assert len(ends) == 1 and "WebSocket error" in ends[0], log.lines


def test_a_ping_flood_gets_its_pongs_and_one_that_never_reads_them_costs_bounded_memory() -> None:
    buffer = 1 << 16
    with real_log() as out, server(rtmp={**RTMP, "player_buffer": buffer}) as srv:
        assert srv.ctx is not None
        ctx = srv.ctx

        def write_buffer(port: int) -> int:
            for conn in ctx.sessions.values():
                if isinstance(conn, FlvViewer) and conn.peer.endswith(f":{port}"):
                    transport = conn.transport
                    return 0 if transport is None else transport.get_write_buffer_size()
            return -1

        async def attackers() -> list[Outcome]:
            # A reader: every ping answered with its payload, in order.
            peer = await ws_open(srv.flv_port, ATTACKERS[0])
            pings = [b"%08d" % i for i in range(5000)]
            peer.writer.write(b"".join(client_frame(ws.OP_PING, p) for p in pings))
            await peer.read_until_close(pongs=len(pings))
            assert peer.pongs == pings
            peer.writer.close()
            # One that never reads: as many pings as it can push, for a while.
            peer = await ws_open(srv.flv_port, ATTACKERS[1])
            port = peer.writer.get_extra_info("sockname")[1]
            peak = 0
            sent = 0
            ping = client_frame(ws.OP_PING, b"p" * 125) * 512  # 67 KB of pings
            started = time.monotonic()
            try:
                while sent < 200 << 20 and time.monotonic() - started < 15:
                    peer.writer.write(ping)
                    sent += len(ping)
                    with contextlib.suppress(TimeoutError):  # not read: it stops pushing
                        async with asyncio.timeout(0.05):
                            await peer.writer.drain()
                    await asyncio.sleep(0)  # the publisher goes on
                    size = srv.call(lambda: write_buffer(port))
                    if size < 0:
                        break  # dropped
                    peak = max(peak, size)
            except ConnectionError:
                pass
            peer.writer.close()
            await await_until(
                lambda: srv.call(lambda: write_buffer(port)) < 0, timeout=20, what="the drop"
            )
            figures("ping flood", answered=len(pings), unread_sent=f"{sent >> 10} KB",
                    peak_write_buffer=f"{peak >> 10} KB", player_buffer=f"{buffer >> 10} KB",
                    lasted=f"{time.monotonic() - started:.2f}s")  # fmt: skip
            assert peak <= 2 * buffer + (256 << 10), peak
            return []

        _, log = run_attack(srv, out, attackers)
    assert len(log.about("disconnected (ws-flv viewer")) == 2, log.lines


# --------------------------------------------------------------------------- 7. never reads


def test_a_viewer_that_never_reads_is_dropped_after_the_slow_player_timeout() -> None:
    rtmp = {**RTMP, "player_buffer": 1 << 16}
    with real_log() as out, server(rtmp=rtmp) as srv:
        assert srv.ctx is not None
        ctx = srv.ctx
        counters = ctx.counters

        async def scenario() -> None:
            async with audience(srv, size=30_000) as crowd:
                mark = len(out.getvalue())
                players = stream_players(srv)
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.bind((ATTACKERS[0], 0))
                sock.setblocking(False)
                loop = asyncio.get_running_loop()
                await loop.sock_connect(sock, ("127.0.0.1", srv.flv_port))
                port = sock.getsockname()[1]
                await loop.sock_sendall(sock, GET + b"\r\n")
                congested: list[float] = []  # when its stream saw it stop taking data

                def dropped() -> bool:
                    def look() -> bool:
                        for conn in ctx.sessions.values():
                            if isinstance(conn, FlvViewer) and conn.peer.endswith(f":{port}"):
                                for _, player in conn.playing.values():
                                    if player.paused_since is not None and not congested:
                                        congested.append(player.paused_since)
                        return counters.slow_players_dropped == 1

                    if not srv.call(look):
                        return False
                    congested.append(srv.call(ctx.clock.now))
                    return True

                try:
                    await await_until(
                        lambda: stream_players(srv) == players + 1, timeout=10, what="it plays"
                    )
                    await await_until(
                        dropped, timeout=30, what="the viewer that does not read dropped"
                    )
                    assert stream_players(srv) == players
                    await crowd.keep_playing()
                finally:
                    sock.close()
                log = flushed(out, mark)
                mine = log.about(f":{port}:")
                since, at = congested
                figures("never reads", dropped_after_congestion=f"{at - since:.2f}s",
                        limit=f"{SLOW_PLAYER_TIMEOUT}s", lines=mine)  # fmt: skip
                assert SLOW_PLAYER_TIMEOUT <= at - since <= SLOW_PLAYER_TIMEOUT + SLACK
                ends = [line for line in mine if "disconnected" in line]
                assert len(ends) == 1 and "dropped: could not keep up" in ends[0], mine
                assert len(log.lines) <= 3, log.lines  # its playing line, its end line

        asyncio.run(scenario())


# --------------------------------------------------------------------------- 8. bans


def test_a_banned_address_is_reset_at_accept_also_during_a_flood() -> None:
    limits = {"allow": ["127.0.0.1/32"], "ban_after_failures": 3, "ban_time": 60,
              "connections_per_second_per_ip": 1000}  # fmt: skip
    auth = {"play": "signed", "keys": {"k1": SECRET.decode()}}
    bad = GET.replace(b".flv", b".flv?" + token("x").replace("sig=", "sig=00").encode()) + b"\r\n"
    with real_log() as out, server(limits=limits, auth=auth) as srv:
        assert srv.ctx is not None
        ctx = srv.ctx

        async def scenario() -> tuple[list[Outcome], list[Outcome], Log]:
            async with audience(srv, query=token("x")) as crowd:
                mark = len(out.getvalue())
                port = srv.flv_port
                first = [await attack(port, ATTACKERS[0], bad) for _ in range(3)]
                assert [o.status for o in first] == [403] * 3
                # Banned now: a flood from it, beside a flood of bad tokens from others.
                banned, others = await asyncio.gather(
                    flood(500, lambda i: attack(port, ATTACKERS[0], bad), at_once=100),
                    flood(60, lambda i: attack(port, ATTACKERS[1 + i % 19], bad), at_once=20),
                )
                await await_until(lambda: no_attacker_left(srv), timeout=10, what="all cut")
                await crowd.keep_playing()
                return banned, others, flushed(out, mark)

        banned, others, log = asyncio.run(scenario())
        rejected = srv.call(lambda: dict(ctx.counters.rejected))
    figures("bans", banned_answers=Counter(len(o.answer) for o in banned),
            others=Counter(o.status for o in others), rejected=rejected,
            log_lines=len(log.lines), lines=log.lines)  # fmt: skip
    assert all(o.answer == b"" and o.reset for o in banned)  # not a byte of HTTP
    assert rejected.get("banned", 0) >= 500  # and the others' once banned
    # The others: 403 until their own ban after 3 failures, then reset too.
    assert all(o.status == 403 or (o.answer == b"" and o.reset) for o in others)
    assert len(log.about("refused at accept: banned")) <= 2, log.lines
    assert len(log.lines) <= 12, "\n".join(log.lines)


# --------------------------------------------------------------------------- 9. fuzz


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(0, 4096), max_size=20))
def test_the_frame_reader_returns_frames_or_raises_websocket_error(
    data: bytes, cuts: list[int]
) -> None:
    reader = ws.FrameReader(max_payload=1024)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    try:
        for a, b in itertools.pairwise(points):
            frames = reader.feed(data[a:b])
            assert isinstance(frames, list)
            for frame in frames:
                assert frame.opcode in (ws.OP_CLOSE, ws.OP_PING, ws.OP_PONG)
                assert len(frame.payload) <= 125
            assert len(reader._buffer) <= 14 + reader.max_payload
    except ws.WebSocketError as exc:
        assert exc.code in (ws.CLOSE_PROTOCOL_ERROR, ws.CLOSE_TOO_BIG)


def _masked_frames() -> st.SearchStrategy[bytes]:
    frame = st.builds(
        lambda op, payload, fin: client_frame(op, payload, fin=fin),
        st.sampled_from([0, 1, 2, 8, 9, 10]),
        st.binary(max_size=300),
        st.booleans(),
    )
    return st.lists(frame, max_size=8).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(data=_masked_frames(), cut=st.integers(0, 3000))
def test_the_frame_reader_on_well_formed_frames_in_any_split(data: bytes, cut: int) -> None:
    whole = ws.FrameReader(max_payload=1024)
    split = ws.FrameReader(max_payload=1024)
    try:
        expected = whole.feed(data)
    except ws.WebSocketError as exc:
        with pytest.raises(ws.WebSocketError) as raised:
            split.feed(data[:cut])
            split.feed(data[cut:])
        assert raised.value.code == exc.code
        return
    assert split.feed(data[:cut]) + split.feed(data[cut:]) == expected


_HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF), max_size=60)


@settings(max_examples=300, deadline=None)
@given(target=st.one_of(_HEADER_TEXT, st.text(max_size=300), st.builds(
    lambda app, name, query: f"/{app}/{name}.flv?{query}", _HEADER_TEXT, _HEADER_TEXT, _HEADER_TEXT
)))  # fmt: skip
def test_parse_target_never_raises(target: str) -> None:
    parsed = parse_target(target)
    if isinstance(parsed, tuple):
        assert len(parsed) == 3 and all(isinstance(part, str) for part in parsed)
        assert parsed[0] and parsed[1]
    else:
        assert isinstance(parsed, str) and parsed


@settings(max_examples=300, deadline=None)
@given(headers=st.dictionaries(
    st.sampled_from(["connection", "sec-websocket-version", "sec-websocket-key", "upgrade"]),
    st.one_of(_HEADER_TEXT, st.just("Upgrade"), st.just("13"), st.just(WS_KEY)),
))  # fmt: skip
def test_handshake_problem_never_raises(headers: dict[str, str]) -> None:
    problem = ws.handshake_problem(headers.get)
    assert problem is None or (isinstance(problem, str) and problem)
    if problem is None:
        assert ws.accept_key(headers["sec-websocket-key"])
