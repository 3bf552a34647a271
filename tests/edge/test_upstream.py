"""The real upstream connector over loopback, against scripted origins.

The scripted origins are built from our own ServerConnection core and
reproduce what SRS does as an origin (chunk size 60000, Play.Reset before
Play.Start, |RtmpSampleAccess and onMetaData, a 2.5 MB ack window), plus
origins that never answer, redirect, or refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from streamgate.edge.origins import OriginPool
from streamgate.edge.upstream import RtmpConnector, UpstreamTimeouts
from streamgate.rtmp.chunk import ChunkDecoder
from streamgate.rtmp.connection import ConnectionLimits, ServerConnection
from streamgate.rtmp.events import ConnectRequested, PlayRequested
from streamgate.rtmp.messages import MsgType, Status, UserControl, user_control
from tests.relay.sinks import AAC_CONFIG, AVC_CONFIG, AVC_INTER, AVC_KEY
from tests.waiting import await_until


@dataclass
class RecordingSink:
    calls: list[tuple[str, Any]] = field(default_factory=list)
    media: int = 0
    stamps: list[int] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def link_playing(self) -> None:
        self.calls.append(("playing", None))

    def link_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self.media += 1
        self.stamps.append(timestamp)

    def link_media_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        self.calls.append(("batch", len(items)))
        for item in items:
            self.link_media(*item)

    def link_data(self, timestamp: int, values: tuple[Any, ...], payload: bytes) -> None:
        self.calls.append(("data", values[0] if values else None))

    def link_flush(self) -> None:
        self.calls.append(("flush", self.media))

    def link_missing(self, code: str, description: str) -> None:
        self.calls.append(("missing", (code, description)))
        self.done.set()

    def link_known_missing(self, code: str, description: str) -> None:
        self.calls.append(("known_missing", (code, description)))
        self.done.set()

    def link_refused(self, reason: str, description: str) -> None:
        self.calls.append(("refused", (reason, description)))
        self.done.set()

    def link_ended(self, description: str) -> None:
        self.calls.append(("ended", description))
        self.done.set()

    def link_failed(self, description: str, *, connect: bool) -> None:
        self.calls.append(("failed", (description, connect)))
        self.done.set()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


OnPlay = Callable[[ServerConnection, int, asyncio.Transport], Awaitable[None]]


class ScriptedOrigin(asyncio.Protocol):
    """A ServerConnection on a socket that runs ``on_play`` when a play arrives."""

    def __init__(self, on_play: OnPlay | None, reject: dict[str, Any] | None, log: Any) -> None:
        self.on_play = on_play
        self.reject = reject
        self.log = log
        self.conn = ServerConnection(ConnectionLimits(chunk_size=60000))
        self.sniffer = ChunkDecoder()  # what the client sends, to count its acks
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.log.connections += 1
        self.log.transports.append(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.lost += 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        events = self.conn.receive_data(data)
        if self.conn.state.value != "handshake":
            for message in self.sniffer.receive_data(data if self.log.seen_handshake else b""):
                if message.type_id == MsgType.ACKNOWLEDGEMENT:
                    self.log.acks.append(int.from_bytes(message.payload[:4], "big"))
        for event in events:
            if isinstance(event, ConnectRequested):
                if self.reject is not None:
                    self.conn.send_command(0, "_error", 1.0, None, self.reject)
                else:
                    self.conn.accept_connect()
                    self.log.seen_handshake = True
            elif isinstance(event, PlayRequested) and self.on_play is not None:
                self.log.tasks.append(
                    asyncio.ensure_future(self.on_play(self.conn, event.stream_id, self.transport))
                )
        self.transport.write(self.conn.data_to_send())


@dataclass
class OriginLog:
    connections: int = 0
    lost: int = 0  # connections whose end this side has seen
    acks: list[int] = field(default_factory=list)
    seen_handshake: bool = False
    transports: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Future[None]] = field(default_factory=list)


async def shutdown(server: asyncio.Server, *logs: OriginLog) -> None:
    """Close the listener and every connection it accepted; return once they are gone."""
    server.close()
    for log in logs:
        for transport in log.transports:
            transport.close()
    await server.wait_closed()
    for log in logs:
        for transport in log.transports:
            if isinstance(transport, asyncio.StreamWriter):
                await transport.wait_closed()
    # A ScriptedOrigin counts its connections' ends (a StreamWriter's log, none at all).
    await await_until(
        lambda: all(log.lost == log.connections for log in logs),
        timeout=5,
        what="connections closed",
    )


async def serve(
    on_play: OnPlay | None = None, reject: dict[str, Any] | None = None
) -> tuple[asyncio.Server, int, OriginLog]:
    log = OriginLog()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ScriptedOrigin(on_play, reject, log), "127.0.0.1", 0
    )
    return server, server.sockets[0].getsockname()[1], log


def open_link(
    port: int, sink: RecordingSink, name: str = "x", merge_delay: float = 0.0, **timeouts: Any
) -> Any:
    pool = OriginPool.from_urls(
        [f"rtmp://127.0.0.1:{port}"],
        max_upstreams=10,
        max_connects_per_second=100,
        breaker_failures=5,
        breaker_reset=10,
        now=0,
    )
    connector = RtmpConnector(
        asyncio.get_running_loop(), UpstreamTimeouts(**timeouts), merge_delay=merge_delay
    )
    return connector.open(pool.origins[0], "live", name, sink)


async def srs_like(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
    """What SRS sends for a live stream: Reset, Start, sample access, metadata, media."""
    conn.send_status(sid, Status.PLAY_RESET, "reset")
    conn.accept_play(sid, "x")  # StreamBegin, Reset, Start, |RtmpSampleAccess
    conn.send_data(sid, "onMetaData", {"width": 320.0, "height": 240.0})
    transport.write(conn.data_to_send())
    frames = [AVC_CONFIG, AAC_CONFIG, AVC_KEY + bytes(200_000)] + [
        AVC_INTER + bytes(100_000) for _ in range(30)
    ]
    for i, frame in enumerate(frames):
        kind = MsgType.AUDIO if frame is AAC_CONFIG else MsgType.VIDEO
        transport.write(conn._encoder.encode(7, i * 40, kind, sid, frame))
        await asyncio.sleep(0)


def run(coro: Awaitable[Any]) -> Any:
    return uvloop.run(coro)  # type: ignore[arg-type]


def test_srs_like_origin_is_played_and_acked() -> None:
    async def scenario() -> tuple[RecordingSink, OriginLog]:
        server, port, log = await serve(srs_like)
        sink = RecordingSink()
        link = open_link(port, sink)
        await await_until(lambda: sink.media >= 33, timeout=10, what="all the media")
        link.close()
        await shutdown(server, log)
        return sink, log

    sink, log = run(scenario())
    assert sink.kinds()[:1] == ["playing"]
    assert ("data", "onMetaData") in sink.calls and ("data", "|RtmpSampleAccess") in sink.calls
    assert "failed" not in sink.kinds()
    # ~3.2 MB through a 2.5 MB window: the link acknowledged, so SRS would not stall
    assert log.acks and log.acks[0] >= 2_500_000


def test_origin_that_accepts_tcp_and_never_answers_is_a_connect_failure() -> None:
    async def scenario() -> RecordingSink:
        log = OriginLog()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            log.transports.append(writer)
            await reader.read(100_000)  # takes C0C1, answers nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        sink = RecordingSink()
        open_link(server.sockets[0].getsockname()[1], sink, reply_timeout=0.5)
        async with asyncio.timeout(5):
            await sink.done.wait()
        await shutdown(server, log)
        return sink

    sink = run(scenario())
    kind, (description, connect) = sink.calls[-1]
    assert kind == "failed" and connect
    assert "did not answer connect within 0.5 s" in description


def test_refused_port_is_a_connect_failure() -> None:
    async def scenario() -> RecordingSink:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        sink = RecordingSink()
        open_link(port, sink)
        async with asyncio.timeout(5):
            await sink.done.wait()
        return sink

    kind, (description, connect) = run(scenario()).calls[-1]
    assert kind == "failed" and connect and "refused" in description.lower()


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.PLAY_STREAM_NOT_FOUND, "missing"),
        (Status.PLAY_FAILED, "missing"),
        (Status.PLAY_UNPUBLISH_NOTIFY, "ended"),
        (Status.PLAY_STOP, "ended"),
        ("NetStream.Play.Complete", "ended"),
        ("NetStream.Play.Denied", "missing"),  # an error status: the origin will not serve it
    ],
)
def test_origin_statuses(status: str, expected: str) -> None:
    async def answer(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
        conn.send_status(sid, status, "as told")
        transport.write(conn.data_to_send())

    async def scenario() -> RecordingSink:
        server, port, log = await serve(answer)
        sink = RecordingSink()
        open_link(port, sink)
        async with asyncio.timeout(5):
            await sink.done.wait()
        await shutdown(server, log)
        return sink

    assert run(scenario()).kinds()[-1] == expected


def statuses_run(answer: OnPlay) -> RecordingSink:
    async def scenario() -> RecordingSink:
        server, port, log = await serve(answer)
        sink = RecordingSink()
        link = open_link(port, sink)
        try:
            # A link that hears nothing is not done: the sink says so, bounded.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await sink.done.wait()
        finally:
            link.close()
            await shutdown(server, log)
        return sink

    sink: RecordingSink = run(scenario())
    return sink


def test_an_error_status_of_any_code_is_missing() -> None:
    async def answer(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
        info = {"level": "error", "code": "Vendor.Custom.Failure", "description": "nope"}
        conn.send_command(sid, "onStatus", 0.0, None, info)
        transport.write(conn.data_to_send())

    assert statuses_run(answer).calls[-1] == ("missing", (Status.PLAY_FAILED, "nope"))


def test_play_failed_after_the_start_is_still_missing() -> None:
    async def answer(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
        conn.accept_play(sid, "x")
        conn.send_status(sid, Status.PLAY_FAILED, "origin gave up")
        transport.write(conn.data_to_send())

    sink = statuses_run(answer)
    assert sink.kinds()[0] == "playing"
    assert sink.calls[-1] == ("missing", (Status.PLAY_FAILED, "origin gave up"))


def test_stream_eof_after_media_without_a_play_start_ends_the_link() -> None:
    """An origin that sends media before any Play.Start: the play is under way all the same."""

    async def answer(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
        transport.write(conn._encoder.encode(7, 0, MsgType.VIDEO, sid, AVC_KEY + bytes(10)))
        conn._send_control(MsgType.USER_CONTROL, user_control(UserControl.STREAM_EOF, sid))
        transport.write(conn.data_to_send())

    sink = statuses_run(answer)
    assert sink.media == 1
    assert sink.calls[-1] == ("ended", "origin: StreamEOF")


def test_redirect_is_followed() -> None:
    async def scenario() -> tuple[RecordingSink, OriginLog]:
        real, real_port, real_log = await serve(srs_like)
        info = {
            "level": "error",
            "code": Status.CONNECT_REJECTED,
            "description": "go elsewhere",
            "ex": {"code": 302.0, "redirect": f"rtmp://127.0.0.1:{real_port}/live"},
        }
        front, front_port, front_log = await serve(reject=info)
        sink = RecordingSink()
        link = open_link(front_port, sink)
        await await_until(lambda: sink.media >= 5, timeout=10, what="media from the real origin")
        link.close()
        await shutdown(real, real_log)
        await shutdown(front, front_log)
        return sink, real_log

    sink, real_log = run(scenario())
    assert sink.kinds()[0] == "playing" and real_log.connections == 1


def test_redirect_loop_stops_after_max_redirects() -> None:
    async def scenario() -> tuple[RecordingSink, OriginLog]:
        loop_info: dict[str, Any] = {"level": "error", "code": Status.CONNECT_REJECTED}
        server, port, log = await serve(reject=loop_info)
        loop_info["ex"] = {"code": 302.0, "redirect": f"rtmp://127.0.0.1:{port}/live"}
        sink = RecordingSink()
        open_link(port, sink, max_redirects=2)
        async with asyncio.timeout(10):
            await sink.done.wait()
        await shutdown(server, log)
        return sink, log

    sink, log = run(scenario())
    kind, (code, description) = sink.calls[-1]
    assert kind == "missing" and code == Status.PLAY_FAILED and "too many redirects" in description
    assert log.connections == 3  # the first connect and two redirects, no more


@pytest.mark.parametrize(
    "redirect", ["rtmp://127.0.0.1:99999/live", "rtmp://" + "x" * 70 + ".example/live", "http://a/b"]
)
def test_unusable_redirect_ends_the_link_with_an_answer(redirect: str) -> None:
    async def scenario() -> RecordingSink:
        info = {"level": "error", "code": Status.CONNECT_REJECTED, "ex": {"redirect": redirect}}
        server, port, log = await serve(reject=info)
        sink = RecordingSink()
        open_link(port, sink)
        async with asyncio.timeout(5):
            await sink.done.wait()
        await shutdown(server, log)
        return sink

    kind, (code, description) = run(scenario()).calls[-1]
    assert kind == "missing" and code == Status.PLAY_FAILED and "unusable" in description


async def paced(conn: ServerConnection, sid: int, transport: asyncio.Transport) -> None:
    """A live stream: 40 frames, one write every 10 ms."""
    conn.accept_play(sid, "x")
    transport.write(conn.data_to_send())
    for i, frame in enumerate([AVC_CONFIG, AVC_KEY] + [AVC_INTER + bytes(1000)] * 38):
        transport.write(conn._encoder.encode(7, i * 10, MsgType.VIDEO, sid, frame))
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("merge_delay", [0.0, 0.15])
def test_merged_reads_deliver_everything_in_few_batches(merge_delay: float) -> None:
    reads: list[int] = []

    async def scenario() -> RecordingSink:
        server, port, log = await serve(paced)
        sink = RecordingSink()
        link = open_link(port, sink, merge_delay=merge_delay)
        receive = link.data_received

        def counting(data: bytes) -> None:
            reads.append(len(data))
            receive(data)

        link.data_received = counting
        await await_until(lambda: sink.media >= 40, timeout=10, what="all the media")
        link.close()
        await shutdown(server, log)
        return sink

    sink = run(scenario())
    if merge_delay:
        # SO_RCVLOWAT: the kernel holds the bytes, we wake once per interval
        # (the origin wrote 40 times, 10 ms apart)
        assert len(reads) <= 12, reads
    flushes = [media for kind, media in sink.calls if kind == "flush"]
    if merge_delay == 0:
        assert flushes == []  # every read decoded as it comes, nothing held
    else:
        # ~400 ms of 10 ms writes in batches of at most 150 ms (the first media at once)
        assert 2 <= len(flushes) <= 6, flushes
        assert flushes == sorted(flushes) and flushes[-1] == 40
        assert "batch" in sink.kinds()  # handed over in one call per merged read
    assert sink.stamps == [i * 10 for i in range(40)]  # all of it, in order
    assert "failed" not in sink.kinds()


def test_unpublish_held_in_a_merged_read_is_heard_when_the_origin_hangs_up() -> None:
    sink = RecordingSink()

    async def unpublish_and_close(
        conn: ServerConnection, sid: int, transport: asyncio.Transport
    ) -> None:
        conn.accept_play(sid, "x")
        transport.write(conn.data_to_send())
        transport.write(conn._encoder.encode(7, 0, MsgType.VIDEO, sid, AVC_KEY))
        # The first keyframe is handed over at once; the link holds what follows
        # (merge_delay 5 s).
        await await_until(lambda: sink.media == 1, timeout=5, what="the keyframe")
        transport.write(conn._encoder.encode(7, 40, MsgType.VIDEO, sid, AVC_INTER))
        conn.send_status(sid, Status.PLAY_UNPUBLISH_NOTIFY, "publisher left")
        transport.write(conn.data_to_send())
        transport.close()

    async def scenario() -> RecordingSink:
        server, port, log = await serve(unpublish_and_close)
        open_link(port, sink, merge_delay=5.0)
        async with asyncio.timeout(10):
            await sink.done.wait()
        await shutdown(server, log)
        return sink

    sink = run(scenario())
    assert sink.media == 2
    assert sink.kinds()[-1] == "ended", sink.calls


def test_merged_reads_never_hold_the_first_keyframe() -> None:
    """Cold start: headers, then the keyframe in a later read, arrive at once."""

    sink = RecordingSink()
    wrote_all = asyncio.Event()

    async def headers_then_keyframe(
        conn: ServerConnection, sid: int, transport: asyncio.Transport
    ) -> None:
        conn.accept_play(sid, "x")
        transport.write(conn.data_to_send())
        transport.write(conn._encoder.encode(7, 0, MsgType.VIDEO, sid, AVC_CONFIG))
        transport.write(conn._encoder.encode(6, 0, MsgType.AUDIO, sid, AAC_CONFIG))
        # Each write once the link handed over the one before: three reads.
        await await_until(lambda: sink.media >= 2, timeout=5, what="the headers")
        transport.write(conn._encoder.encode(7, 0, MsgType.VIDEO, sid, AVC_KEY))
        await await_until(lambda: sink.media >= 3, timeout=5, what="the keyframe")
        transport.write(conn._encoder.encode(7, 40, MsgType.VIDEO, sid, AVC_INTER))
        wrote_all.set()

    async def scenario() -> float:
        server, port, log = await serve(headers_then_keyframe)
        link = open_link(port, sink, merge_delay=5.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(3):  # far less than the 5 s merge delay
            await wrote_all.wait()  # the keyframe arrived, and the next frame was sent
        took = loop.time() - started
        # Held means not handed over for a while: 0.3 s, far less than the 5 s delay.
        await asyncio.sleep(0.3)
        held = sink.media  # the frame after the keyframe waits for the merge delay
        link.close()
        await shutdown(server, log)
        return took if held == 3 else -1.0

    took = run(scenario())
    assert 0 < took < 2.0, took
