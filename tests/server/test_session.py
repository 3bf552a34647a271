"""Session lifecycle edge cases over real sockets: multi-stream players, waits,
pipelined commands, stray control messages."""

from __future__ import annotations

import asyncio
import socket
from functools import partial

from streamgate.client import RtmpClient, _Protocol, parse_rtmp_url
from streamgate.rtmp.events import MediaReceived, StatusReceived
from streamgate.rtmp.messages import MsgType, Status, UserControl, user_control
from streamgate.server.session import RtmpSession
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.waiting import await_until


async def publisher(srv: ServerThread, name: str) -> tuple[RtmpClient, int]:
    client = await RtmpClient.open(srv.url(name))
    sid = await client.publish()
    await client.wait_status(Status.PUBLISH_START)
    return client, sid


async def player(srv: ServerThread, name: str) -> RtmpClient:
    client = await RtmpClient.open(srv.url(name))
    await client.play()
    await client.wait_status(Status.PLAY_START)
    return client


async def drain_media(
    client: RtmpClient, expected: int, quiet: float = 0.3, timeout: float = 10.0
) -> list[int]:
    """The media timestamps ``client`` receives: at least ``expected`` of them (or
    what came before ``timeout``), then whatever else arrives until ``quiet``
    seconds pass without a message (a duplicate would come right behind)."""
    stamps: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            wait = max(deadline - loop.time(), 0.0) if len(stamps) < expected else quiet
            event = await asyncio.wait_for(client.next_event(), wait)
            if isinstance(event, MediaReceived):
                stamps.append(event.timestamp)
    except (TimeoutError, ConnectionError):
        pass
    return stamps


async def closed(srv: ServerThread, *clients: RtmpClient) -> None:
    """Close ``clients`` and wait until the server has seen every session end."""
    for client in clients:
        client.close()
    await await_until(srv.idle, timeout=5, what="the server to see every client leave")


def test_one_stream_ending_on_a_multi_stream_player_leaks_nothing() -> None:
    with ServerThread(rtmp={"merge_ms": 0}) as srv:

        async def scenario() -> tuple[list[int], list[int], int]:
            pub_a, _sid_a = await publisher(srv, "a")
            pub_b, sid_b = await publisher(srv, "b")
            h1 = await player(srv, "b")
            multi = await RtmpClient.open(srv.url("b"))
            await multi.play("b")
            await multi.play("a")
            session = srv.session_of(multi)
            assert session is not None
            await await_until(
                lambda: len(session.playing) == 2, timeout=5, what="multi to play a and b"
            )
            h2 = await player(srv, "b")
            pub_a.close()  # a's publisher leaves: the multi-stream player is ended
            await await_until(
                lambda: srv.session_of(multi) is None and srv.ctx.hub.get("live", "a") is None,  # type: ignore[union-attr]
                timeout=5,
                what="a's end to close the multi-stream player",
            )
            for i in range(20):
                frame = (KEY if i == 0 else INTER) + bytes(50)
                pub_b.send_media(sid_b, MsgType.VIDEO, i * 40, frame)
            got1, got2 = await drain_media(h1, 20), await drain_media(h2, 20)
            stream = srv.ctx.hub.get("live", "b")  # type: ignore[union-attr]
            count = stream.player_count if stream is not None else -1
            await closed(srv, pub_b, h1, h2, multi)
            return got1, got2, count

        got1, got2, count = srv.run(scenario())
        expected = [i * 40 for i in range(20)]
        assert got1 == expected  # no duplicates, no gaps
        assert got2 == expected
        assert count == 2  # the ended player left b too


def test_delete_stream_while_waiting_then_publisher_arrives() -> None:
    with ServerThread(origin={"play_wait": 5.0}) as srv:

        async def scenario() -> tuple[str, list[str]]:
            quitter = await RtmpClient.open(srv.url("w"))
            sid = await quitter.play("w")
            quitting = srv.session_of(quitter)
            assert quitting is not None
            await await_until(lambda: sid in quitting.waiting, timeout=5, what="quitter waits")
            quitter.conn.delete_stream(sid)
            quitter._flush()
            patient = await RtmpClient.open(srv.url("w"))
            psid = await patient.play("w")
            waiting = srv.session_of(patient)
            assert waiting is not None
            await await_until(
                lambda: psid in waiting.waiting and not quitting.waiting,
                timeout=5,
                what="the patient to wait and the quitter's deleteStream to be handled",
            )
            pub, _ = await publisher(srv, "w")  # must not be hurt by the quitter
            status = await patient.wait_status(timeout=5)
            statuses = [status.code]
            await closed(srv, quitter, patient, pub)
            return "ok", statuses

        _, statuses = srv.run(scenario())
        assert statuses == [Status.PLAY_RESET]  # the patient waiter is served
        assert srv.call(lambda: srv.ctx.counters.protocol_errors) == 0  # type: ignore[union-attr]


def test_stray_user_control_from_a_client_is_ignored() -> None:
    with ServerThread() as srv:

        async def scenario() -> list[str]:
            pub, _sid = await publisher(srv, "u")
            client = await RtmpClient.open(srv.url("u"))
            for event in (UserControl.STREAM_BEGIN, UserControl.STREAM_EOF, UserControl.STREAM_DRY):
                client.conn._send_control(MsgType.USER_CONTROL, user_control(event, 1))
            await client.play()
            status = await client.wait_status(Status.PLAY_START, timeout=5)
            await closed(srv, client, pub)
            return [status.code]

        assert srv.run(scenario()) == [Status.PLAY_START]


def test_edge_drops_commands_after_its_refusal_closed_the_session() -> None:
    """publish (refused on an edge, which closes) and play pipelined in one read."""
    with ServerThread() as origin:
        edge = ServerThread(
            mode="edge",  # type: ignore[arg-type]
            edge={"origins": [f"rtmp://127.0.0.1:{origin.port}"], "linger": 0.2},
        ).start()
        try:

            async def scenario() -> tuple[list[str], int]:
                source, sid = await origin.run_async(publisher(origin, "pinned"))
                frame = KEY + bytes(10)
                for i in range(3):  # sent on the origin's loop, where the client lives
                    origin.call(partial(source.send_media, sid, MsgType.VIDEO, i * 40, frame))
                client = await RtmpClient.open(edge.url("x"))
                client.conn.create_stream()
                client.conn.create_stream()
                client.conn.publish(1, "x")
                client.conn.play(2, "pinned")
                client._flush()  # all four commands in one write
                # The thing under test ran: the edge answered the publish and closed.
                # A play handled after that would have opened an ingest at once.
                statuses = []
                try:
                    async with asyncio.timeout(5):
                        while True:
                            event = await client.next_event()
                            if isinstance(event, StatusReceived):
                                statuses.append(event.code)
                except ConnectionError:
                    pass
                await closed(edge, client)
                ingests = len(edge.ctx.edge.ingests)  # type: ignore[union-attr]
                origin.call(source.close)
                return statuses, ingests

            assert edge.run(scenario()) == ([Status.PUBLISH_DENIED], 0)
        finally:
            edge.stop()


def test_player_congested_by_its_first_write_is_still_dropped() -> None:
    rtmp = {"merge_ms": 20, "slow_player_timeout": 1.0, "player_buffer": 65536}
    with ServerThread(rtmp=rtmp) as srv:

        async def scenario() -> int:
            pub, sid = await publisher(srv, "big")
            pub.conn.set_chunk_size(65536)
            pub.send_media(sid, MsgType.VIDEO, 0, KEY + bytes(6_000_000))  # a huge GOP start
            stream = srv.ctx.hub.get("live", "big")  # type: ignore[union-attr]
            assert stream is not None
            await await_until(
                lambda: stream.messages_in == 1, timeout=10, what="the GOP start to arrive"
            )
            slow = RtmpClient(parse_rtmp_url(srv.url("big")))
            loop = asyncio.get_running_loop()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", srv.port))
            transport, _ = await loop.create_connection(lambda: _Protocol(slow), sock=sock)
            slow.transport = transport
            slow.conn.connect()
            slow._flush()
            await slow.next_event()
            await slow.play()
            transport.pause_reading()  # reads nothing more: the GOP start alone congests it
            counters = srv.ctx.counters  # type: ignore[union-attr]
            for i in range(1, 60):  # a live source, 20 frames a second for 3 s
                pub.send_media(sid, MsgType.VIDEO, i * 40, INTER + bytes(20_000))
                await asyncio.sleep(0.05)
            await await_until(
                lambda: counters.slow_players_dropped > 0, timeout=10, what="a slow drop"
            )
            dropped = counters.slow_players_dropped
            await closed(srv, pub, slow)
            return dropped

        assert srv.run(scenario(), timeout=60) == 1


def test_odd_receive_commands_are_harmless() -> None:
    """receiveVideo/receiveAudio with no flag, odd values, on streams never created
    or before play: no error, nothing kept for unknown ids, and the player plays."""
    with ServerThread(rtmp={"merge_ms": 0}) as srv:

        async def scenario() -> tuple[list[int], int]:
            pub, sid = await publisher(srv, "r")
            client = await RtmpClient.open(srv.url("r"))
            for stream_id in (0, 7, 65535):
                client.conn.send_command(stream_id, "receiveVideo", 0.0, None, False)
            psid = await client.create_stream()
            for args in ((), ("yes",), ({"a": 1.0},), (None,), (0.0,)):
                client.conn.send_command(psid, "receiveAudio", 0.0, None, *args)
            client.conn.send_command(psid, "receiveVideo", 0.0, None, True)
            client.conn.play(psid, "r")
            client._flush()
            await client.wait_status(Status.PLAY_START, timeout=5)
            session = next(s for s in srv.ctx.sessions.values() if s.playing)  # type: ignore[union-attr]
            assert isinstance(session, RtmpSession) and session.controller is not None
            kept = len(session.controller.receiving)
            for i in range(5):
                pub.send_media(sid, MsgType.VIDEO, i * 40, (KEY if i == 0 else INTER) + bytes(50))
            got = await drain_media(client, 5)
            await closed(srv, client, pub)
            return got, kept

        got, kept = srv.run(scenario())
        assert got == [0, 40, 80, 120, 160]  # audio off (the last receiveAudio said 0), video on
        assert kept == 1  # only the created stream's choice
