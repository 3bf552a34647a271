"""Bad input and slow or silent peers: only the offender's connection ends.

Every test keeps a good publisher and player running beside the offender
and checks they lose nothing.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest

from streamgate.client import RtmpClient
from streamgate.rtmp import amf0
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.handshake import ClientHandshake
from streamgate.rtmp.messages import MsgType, Status
from tests.server.harness import ServerThread
from tests.waiting import await_until

KEY = b"\x17\x01\x00\x00\x00"
INTER = b"\x27\x01\x00\x00\x00"


class Bystanders:
    """A publisher of live/good and one player of it, in the server's loop."""

    def __init__(self, srv: ServerThread) -> None:
        self.srv = srv
        self.pub: RtmpClient | None = None
        self.player: RtmpClient | None = None
        self.sid = 0
        self.ts = 0
        self.received: list[int] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.pub = await RtmpClient.open(self.srv.url("good"))
        self.sid = await self.pub.publish()
        await self.pub.wait_status(Status.PUBLISH_START)
        self.player = await RtmpClient.open(self.srv.url("good"))
        await self.player.play()
        await self.player.wait_status(Status.PLAY_START)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.send(3)

    async def _read(self) -> None:
        assert self.player is not None
        while True:
            event = await self.player.next_event()
            if isinstance(event, MediaReceived):
                self.received.append(event.timestamp)

    async def send(self, count: int) -> None:
        assert self.pub is not None
        for i in range(count):
            payload = (KEY if self.ts % 400 == 0 else INTER) + bytes(100)
            self.pub.send_media(self.sid, MsgType.VIDEO, self.ts, payload)
            self.ts += 40
            if i % 5 == 4:  # a live source: a few frames, then a pause
                await asyncio.sleep(0.01)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for client in (self.pub, self.player):
            if client is not None:
                client.close()

    async def check_intact(self) -> None:
        """Send more and see the player get every message, in order."""
        await self.send(10)
        sent = self.ts // 40
        await await_until(lambda: len(self.received) >= sent, timeout=10, what="every message")
        assert self.received == list(range(0, self.ts, 40))


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    settings = {"handshake_timeout": 0.5, "command_timeout": 1.0, "merge_ms": 0}
    with ServerThread(rtmp=settings) as server:
        yield server


async def open_raw(srv: ServerThread) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", srv.port)


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    hs = ClientHandshake()
    writer.write(hs.data_to_send())
    hs.receive_data(await reader.readexactly(1 + 2 * 1536))
    writer.write(hs.data_to_send())
    await writer.drain()


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """Read until EOF (or reset); False if the server kept the connection open."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def command(*values: object, stream_id: int = 0) -> bytes:
    return encode_message(3, 0, MsgType.COMMAND_AMF0, stream_id, amf0.encode(*values), 128)


def run_with_bystanders(srv: ServerThread, offender: object) -> None:
    async def scenario() -> None:
        good = Bystanders(srv)
        await good.start()
        try:
            await offender(srv)  # type: ignore[operator]
            await good.check_intact()
        finally:
            good.close()
            await await_until(srv.idle, timeout=5, what="every connection to be closed")

    srv.run(scenario(), timeout=60)


def test_silent_connection_is_closed_at_handshake_timeout(srv: ServerThread) -> None:
    async def offender(srv: ServerThread) -> None:
        reader, writer = await open_raw(srv)
        assert await closed_by_server(reader)
        writer.close()

    run_with_bystanders(srv, offender)


def test_trickling_handshake_is_closed(srv: ServerThread) -> None:
    async def offender(srv: ServerThread) -> None:
        reader, writer = await open_raw(srv)
        try:
            for _ in range(40):  # one byte every 50 ms would take 77 s to finish
                writer.write(b"\x03")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        assert await closed_by_server(reader)
        writer.close()

    run_with_bystanders(srv, offender)


def test_no_commands_after_handshake_is_closed(srv: ServerThread) -> None:
    async def offender(srv: ServerThread) -> None:
        reader, writer = await open_raw(srv)
        await handshake(reader, writer)
        assert await closed_by_server(reader)
        writer.close()

    run_with_bystanders(srv, offender)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff" * 4096, id="noise"),
        pytest.param(command("connect", 1.0) + b"\x03" + b"\x00" * 10, id="truncated"),
        pytest.param(
            encode_message(3, 0, MsgType.COMMAND_AMF0, 0, b"\x0a\xff\xff\xff\xff", 128),
            id="amf-array-claims-4G-items",
        ),
        pytest.param(
            encode_message(3, 0, MsgType.COMMAND_AMF0, 0, b"\x03" * 5000 + b"\x00", 128),
            id="amf-nesting-bomb",
        ),
        pytest.param(
            encode_message(2, 0, MsgType.SET_CHUNK_SIZE, 0, struct.pack(">I", 0x7FFFFFFF), 128)
            + bytes([3]) + b"\x00\x00\x00" + (0xFFFFFF).to_bytes(3, "big") + b"\x14"
            + b"\x00" * 4 + b"\x02",
            id="chunk-size-2G-then-16MB-message",
        ),
        pytest.param(
            b"".join(bytes([0x40 | 0, i]) + b"\x00" * 7 for i in range(200)),
            id="too-many-chunk-streams",
        ),
        pytest.param(command("play", 0.0, None, "x"), id="play-before-connect"),
    ],
)
def test_bad_input_closes_only_the_offender(srv: ServerThread, garbage: bytes) -> None:
    async def offender(srv: ServerThread) -> None:
        reader, writer = await open_raw(srv)
        await handshake(reader, writer)
        writer.write(garbage)
        await writer.drain()
        assert await closed_by_server(reader, within=5)
        writer.close()

    run_with_bystanders(srv, offender)
    assert srv.call(lambda: srv.ctx.counters.protocol_errors) >= 1  # type: ignore[union-attr]


def test_wrong_rtmp_version_is_closed(srv: ServerThread) -> None:
    async def offender(srv: ServerThread) -> None:
        reader, writer = await open_raw(srv)
        writer.write(b"\x06" + bytes(1536))  # RTMPE is not spoken
        await writer.drain()
        assert await closed_by_server(reader, within=5)
        writer.close()

    run_with_bystanders(srv, offender)


@pytest.mark.parametrize("merge_ms", [20, 300])  # 300: ~1 MB flushes, sent by sendfile
def test_slow_player_is_skipped_then_dropped_without_slowing_others(merge_ms: int) -> None:
    rtmp = {"merge_ms": merge_ms, "slow_player_timeout": 1.0, "player_buffer": 256 * 1024}
    with ServerThread(rtmp=rtmp) as srv:

        async def scenario() -> tuple[list[int], list[int], int]:
            pub = await RtmpClient.open(srv.url("fat"))
            pub.conn.set_chunk_size(65536)
            sid = await pub.publish()
            await pub.wait_status(Status.PUBLISH_START)

            slow = await RtmpClient.open(srv.url("fat"))
            sock = slow.transport.get_extra_info("socket")  # type: ignore[union-attr]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await slow.play()
            await slow.wait_status(Status.PLAY_START)
            slow.transport.pause_reading()  # type: ignore[union-attr]

            fast = await RtmpClient.open(srv.url("fat"))
            await fast.play()
            await fast.wait_status(Status.PLAY_START)
            got: list[int] = []

            async def read_fast() -> None:
                while True:
                    event = await fast.next_event()
                    if isinstance(event, MediaReceived):
                        got.append(event.timestamp)

            reader = asyncio.get_running_loop().create_task(read_fast())
            sent = []
            # ~16 MB over ~4 s, far more than the slow socket holds, for far longer
            # than the slow_player_timeout: the pace is the live source's.
            for i in range(400):
                key = i % 10 == 0
                body = (KEY if key else INTER) + bytes(100_000 if key else 30_000)
                pub.send_media(sid, MsgType.VIDEO, i * 10, body)
                sent.append(i * 10)
                await asyncio.sleep(0.01)
            await await_until(lambda: len(got) >= len(sent), timeout=20, what="all of it, fast")
            reader.cancel()
            counters = srv.ctx.counters  # type: ignore[union-attr]
            await await_until(
                lambda: counters.slow_players_dropped > 0, timeout=10, what="the slow drop"
            )
            stream = srv.ctx.hub.get("live", "fat")  # type: ignore[union-attr]
            players_left = stream.player_count if stream is not None else -1
            for client in (pub, slow, fast):
                client.close()
            await await_until(srv.idle, timeout=5, what="every connection to be closed")
            return sent, got, players_left

        sent, got, players_left = srv.run(scenario(), timeout=90)
        assert got == sent  # the fast player lost nothing and was never held back
        dropped = srv.call(lambda: srv.ctx.counters.slow_players_dropped)  # type: ignore[union-attr]
        assert dropped == 1
        assert players_left == 1  # only the fast one is still attached
