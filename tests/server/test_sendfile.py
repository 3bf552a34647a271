"""Large flushes go to players by sendfile over real sockets: every byte arrives,
in order, for fast players and for one that stalls and catches up."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import select
import socket
import struct

import pytest
import uvloop

from streamgate.client import RtmpClient
from streamgate.relay.clock import LoopClock
from streamgate.relay.shared import sendfile_available
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.messages import MsgType, Status
from streamgate.server.delivery import TransportDelivery
from tests.relay.sinks import RecordingPlayer
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.server.test_session import publisher
from tests.waiting import await_until

pytestmark = pytest.mark.skipif(not sendfile_available(), reason="no memfd_create/sendfile")

FRAMES, GOP, FPS = 100, 25, 25


def frame(i: int) -> bytes:
    """Frame i: 120 KB nobody else has (a 300 ms flush is ~1 MB, sendfile's size;
    24 Mbit/s, so a stall soon outgrows what the sockets hold)."""
    head = KEY if i % GOP == 0 else INTER
    return head + i.to_bytes(4, "big") + random.Random(i).randbytes(120_000)


async def collect(
    client: RtmpClient, stall: float = 0.0, got: list[tuple[int, bytes]] | None = None
) -> list[tuple[int, bytes]]:
    """The video ``client`` receives (into ``got`` as it comes) until the unpublish."""
    got = [] if got is None else got
    if stall:  # reads nothing for that long: its socket fills, then its server-side buffer
        client.transport.pause_reading()  # type: ignore[union-attr]
        await asyncio.sleep(stall)
        client.transport.resume_reading()  # type: ignore[union-attr]
    try:
        async with asyncio.timeout(15):
            while True:
                event = await client.next_event()
                if isinstance(event, MediaReceived) and event.type_id == MsgType.VIDEO:
                    got.append((event.timestamp, event.payload))
                elif getattr(event, "code", None) == Status.PLAY_UNPUBLISH_NOTIFY:
                    return got
    except (TimeoutError, ConnectionError):
        return got


def test_sendfile_fanout_delivers_every_byte_to_fast_and_stalled_players() -> None:
    with ServerThread(rtmp={"merge_ms": 300, "player_buffer": 65536}) as srv:

        async def scenario() -> tuple[list[list[tuple[int, bytes]]], int]:
            pub, sid = await publisher(srv, "big")
            pub.send_media(sid, MsgType.VIDEO, 0, frame(0))
            players = []
            for n in range(4):
                client = await RtmpClient.open(srv.url("big"))
                if n == 3:  # a small window: the stall backs up into the server at once
                    sock = client.transport.get_extra_info("socket")  # type: ignore[union-attr]
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
                await client.play()
                players.append(client)
            fast: list[list[tuple[int, bytes]]] = [[], [], []]
            pairs = zip(players[:3], fast, strict=True)
            tasks = [asyncio.ensure_future(collect(c, got=g)) for c, g in pairs]
            tasks.append(asyncio.ensure_future(collect(players[3], stall=2.5)))
            for i in range(1, FRAMES):
                await asyncio.sleep(1 / FPS)  # a live source's pace
                pub.send_media(sid, MsgType.VIDEO, i * 40, frame(i))
            await await_until(
                lambda: all(len(g) >= FRAMES for g in fast),
                timeout=15,
                what="the last flush to reach the fast players",
            )
            stream = srv.ctx.hub.get("live", "big")  # type: ignore[union-attr]
            assert stream is not None
            by_sendfile = stream.bytes_sendfile
            pub.close()  # the players are told, and stop collecting
            results = await asyncio.gather(*tasks)
            for c in players:
                c.close()
            return results, by_sendfile

        results, by_sendfile = srv.run(scenario(), timeout=60)
    assert by_sendfile > 3 * 10_000_000  # most of what the fast players got
    for got in results[:3]:
        assert [ts for ts, _ in got] == [i * 40 for i in range(FRAMES)]
        assert all(payload == frame(ts // 40) for ts, payload in got)
    # The stalled one skipped ahead, at a keyframe, and lost nothing after that.
    stalled = results[3]
    stamps = [ts // 40 for ts, _ in stalled]
    assert stamps and all(payload == frame(ts // 40) for ts, payload in stalled)
    assert stamps[-1] == FRAMES - 1
    gaps = [b for a, b in itertools.pairwise(stamps) if b != a + 1]
    assert gaps, "the stall was absorbed: nothing exercised the skip"
    assert all(i % GOP == 0 for i in gaps), gaps


def test_a_player_that_resets_mid_stream_leaves_as_a_disconnect_not_a_slow_drop() -> None:
    with ServerThread(rtmp={"merge_ms": 300}) as srv:

        async def scenario() -> tuple[int, int]:
            pub, sid = await publisher(srv, "big")
            pub.send_media(sid, MsgType.VIDEO, 0, frame(0))
            stays = await RtmpClient.open(srv.url("big"))
            await stays.play()
            gone = await RtmpClient.open(srv.url("big"))
            await gone.play()
            keep = asyncio.ensure_future(collect(stays))
            for i in range(1, 40):
                await asyncio.sleep(1 / FPS)  # a live source's pace
                pub.send_media(sid, MsgType.VIDEO, i * 40, frame(i))
                if i == 10:  # RST: the server learns of it from the next send
                    sock = gone.transport.get_extra_info("socket")  # type: ignore[union-attr]
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    gone.transport.abort()  # type: ignore[union-attr]
            stream = srv.ctx.hub.get("live", "big")  # type: ignore[union-attr]
            assert stream is not None
            # The reset player is gone (else "not dropped" below would prove nothing).
            await await_until(lambda: stream.player_count == 1, timeout=10, what="the reset seen")
            players = stream.player_count
            pub.close()
            got = await keep
            stays.close()
            return players, len(got)

        players, got = srv.run(scenario(), timeout=60)
        dropped = srv.call(lambda: srv.ctx.counters.slow_players_dropped)  # type: ignore[union-attr]
    assert players == 1 and got == 40
    assert dropped == 0


def test_a_reset_found_by_sendfile_is_left_to_the_transport_to_report() -> None:
    """The peer reset before the server read of it: sendfile meets the error first.
    The player is not 'dropped as too slow'; its transport reports the loss."""
    class Lost(asyncio.Protocol):
        def __init__(self) -> None:
            self.lost = asyncio.get_running_loop().create_future()

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.set_result(exc)

    async def scenario() -> tuple[str | None, bool]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        transport, protocol = await loop.create_connection(Lost, *listener.getsockname()[:2])
        peer, _ = listener.accept()
        stream = Stream("live", "x", LoopClock(loop), FanoutSettings(merge_ms=0))
        sink = RecordingPlayer()
        stream.add_player(sink, 1, TransportDelivery(transport))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # RST, and this loop does not run before the send below
        listener.close()
        # Wait for the RST to reach our socket without running the loop, which must
        # not see it: poll() reports it (POLLHUP/POLLERR) and consumes nothing.
        poller = select.poll()
        poller.register(transport.get_extra_info("socket").fileno(), select.POLLIN)
        assert poller.poll(5000), "the reset never arrived"
        stream.on_media(MsgType.VIDEO, 0, frame(0))  # merge_ms=0: flushed at once
        exc = await asyncio.wait_for(protocol.lost, 5)
        return sink.dropped, isinstance(exc, OSError)

    dropped, reported = uvloop.run(scenario())
    assert dropped is None and reported


class Failing(RecordingPlayer):
    """A sink whose write and drop both fail: a bug elsewhere, made to happen."""

    def write(self, data: bytes) -> None:
        raise RuntimeError("write failed")

    def drop(self, reason: str) -> None:
        raise RuntimeError("drop failed")


def test_a_failure_mid_flush_still_lets_the_pages_go_and_the_last_leaver_frees_the_file() -> None:
    async def scenario() -> tuple[int, bool, bool]:
        loop = asyncio.get_running_loop()
        listener = socket.create_server(("127.0.0.1", 0))
        transport, _ = await loop.create_connection(asyncio.Protocol, *listener.getsockname()[:2])
        peer, _ = listener.accept()
        listener.close()
        stream = Stream("live", "x", LoopClock(loop), FanoutSettings(merge_ms=0))
        good = stream.add_player(RecordingPlayer(), 1, TransportDelivery(transport))
        bad = Failing()
        stream.add_player(bad, 1)
        with pytest.raises(RuntimeError):
            stream.on_media(MsgType.VIDEO, 0, frame(0))  # merge_ms=0: flushed at once
        shared = stream._shared
        assert shared is not None
        size = os.fstat(shared.fd).st_size  # 0: truncated though the flush failed
        stream.remove_player(good)
        freed = stream._shared is None
        with pytest.raises(OSError):
            os.fstat(shared.fd)
        transport.close()
        peer.close()
        return size, freed, True

    size, freed, _ = uvloop.run(scenario())
    assert size == 0 and freed
