"""The log under attack, counted from the real log handler: bounded, escaped, with reasons.

A real server (the test harness), real sockets on loopback from several
127.0.0.x addresses, and the handler ``setup_logging`` installs in
production writing to a buffer the test reads.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from streamgate.errors import ProtocolError
from streamgate.log import flush_floods
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.connection import ClientConnection
from streamgate.rtmp.events import StatusReceived
from streamgate.rtmp.messages import MsgType, Status
from tests.logs import WINDOW, accounted, lines_since, real_log
from tests.peers import wait_until
from tests.server.harness import ServerThread
from tests.server.test_hostile import closed_by_server, handshake

ATTACKERS = [f"127.0.0.{i}" for i in range(2, 10)]
BAD_TOKEN = "x?exp=4000000000&sig=" + "A" * 43 + "&kid=k1"
AUTH = {"play": "signed", "keys": {"k1": "play-secret"}}


def idle(srv: ServerThread) -> None:
    """Wait until every connection has ended, so every end line was logged."""
    assert srv.ctx is not None
    ctx = srv.ctx
    wait_until(lambda: srv.call(lambda: len(ctx.sessions)) == 0, timeout=60, what="no sessions")


async def attempt(port: int, ip: str, command: str = "play", name: str = BAD_TOKEN) -> str | None:
    """One RTMP client from ``ip``: connect, createStream, play or publish, pipelined.

    Returns the error status the server answered, or None if it just closed.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    conn = ClientConnection(f"rtmp://127.0.0.1:{port}/live", "live")
    conn.connect()
    conn.create_stream()  # the first stream id is 1
    if command == "play":
        conn.play(1, name)
    else:
        conn.publish(1, name)
    writer.write(conn.data_to_send())
    try:
        async with asyncio.timeout(30):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, StatusReceived) and event.level == "error":
                        return event.code
                writer.write(conn.data_to_send())
    except (ConnectionError, ProtocolError):
        pass
    finally:
        writer.close()
    return None


async def silent(port: int, ip: str) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
    try:
        return await closed_by_server(reader, within=30)
    finally:
        writer.close()


def flood(count: int, one: Callable[[str], Awaitable[object]], at_once: int) -> list[object]:
    async def run() -> list[object]:
        gate = asyncio.Semaphore(at_once)

        async def each(i: int) -> object:
            async with gate:
                return await one(ATTACKERS[i % len(ATTACKERS)])

        return await asyncio.gather(*(each(i) for i in range(count)))

    return asyncio.run(run())


def test_a_flood_of_1000_refused_plays_writes_a_bounded_number_of_lines() -> None:
    with real_log() as out, ServerThread(auth=AUTH) as srv:
        mark = len(out.getvalue())
        started = time.monotonic()
        answers = flood(1000, lambda ip: attempt(srv.port, ip), at_once=50)
        idle(srv)
        elapsed = time.monotonic() - started
        assert answers == [Status.PLAY_FAILED] * 1000  # the flood ran: every play was refused
        lines = lines_since(out, mark)
        # One group (one reason): its first line, then at most one per window.
        assert 1 <= len(lines) <= 2 + elapsed / WINDOW + 1, lines
        for line in lines:  # each says why the connection ended
            assert "disconnected (player, " in line, line
            assert "play of live/x refused: bad signature" in line, line
        flush_floods()  # what the gateway does at shutdown
        lines = lines_since(out, mark)
        assert len(lines) <= 3 + elapsed / WINDOW + 1
        assert accounted(lines, "refused: bad signature") == 1000  # no refusal unaccounted


def test_a_flood_of_silent_connections_writes_a_bounded_number_of_lines() -> None:
    with real_log() as out, ServerThread(rtmp={"handshake_timeout": 0.5}) as srv:
        mark = len(out.getvalue())
        started = time.monotonic()
        closed = flood(600, lambda ip: silent(srv.port, ip), at_once=600)
        idle(srv)
        elapsed = time.monotonic() - started
        assert closed == [True] * 600  # the server ended every one
        lines = lines_since(out, mark)
        assert 1 <= len(lines) <= 2 + elapsed / WINDOW + 1, lines
        assert all("timed out waiting for the handshake" in line for line in lines), lines
        flush_floods()
        lines = lines_since(out, mark)
        assert accounted(lines, "timed out waiting for the handshake") == 600


def test_the_count_is_written_after_the_flood_ends_without_another_line() -> None:
    with real_log(window=0.5) as out, ServerThread(auth=AUTH) as srv:
        mark = len(out.getvalue())
        answers = flood(40, lambda ip: attempt(srv.port, ip), at_once=10)
        assert answers == [Status.PLAY_FAILED] * 40
        idle(srv)
        # Nothing else happens: the filter's timer alone writes what it held back.
        wait_until(
            lambda: accounted(lines_since(out, mark), "refused: bad signature") == 40,
            timeout=10,
            what="the held-back count",
        )


def set_chunk_size(size: int) -> bytes:
    return encode_message(2, 0, MsgType.SET_CHUNK_SIZE, 0, struct.pack(">I", size), 128)


def many_chunk_streams() -> bytes:
    ack = struct.pack(">I", 2_500_000)
    return b"".join(
        bytes([0, i]) + b"\x00\x00\x00" + b"\x00\x00\x04" + b"\x05" + bytes(4) + ack
        for i in range(70)
    )


PROTOCOL_ERRORS = [
    (set_chunk_size(0), "invalid chunk size 0 "),
    (set_chunk_size(1), "invalid chunk size 1 "),
    (set_chunk_size(0xFFFFFFFF), "invalid chunk size 4294967295"),
    (b"\x03" + b"\x00\x00\x00" + b"\xff\xff\xff" + b"\x14" + bytes(4), "16777215 bytes"),
    (many_chunk_streams(), "chunk streams in use"),
    (b"\x83" + b"\x00", "header type 2 before any full header"),
]


def test_every_protocol_error_is_logged_with_its_own_reason() -> None:
    async def send(port: int, garbage: bytes) -> bool:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(ATTACKERS[0], 0)
        )
        try:
            await handshake(reader, writer)
            writer.write(garbage)
            return await closed_by_server(reader)
        finally:
            writer.close()

    with real_log() as out, ServerThread() as srv:
        mark = len(out.getvalue())
        for garbage, _ in PROTOCOL_ERRORS:
            assert asyncio.run(send(srv.port, garbage))
        code = asyncio.run(attempt(srv.port, ATTACKERS[1], "publish", "p" * 65535))
        assert code == Status.PUBLISH_BAD_NAME  # the peer is told, then closed
        idle(srv)
        lines = lines_since(out, mark)
        assert len(lines) == len(PROTOCOL_ERRORS) + 1, lines  # one line per connection
        for (_, reason), line in zip(PROTOCOL_ERRORS, lines[:-1], strict=True):
            assert reason in line and "disconnected (unknown, " in line, (reason, line)
        assert "publish refused: invalid stream name: longer than 1024 characters" in lines[-1]
        assert "ppp" not in lines[-1]  # the name itself is not echoed


@pytest.mark.parametrize("command", ["play", "publish"])
def test_a_forged_line_in_a_name_is_refused_and_cannot_reach_the_log(command: str) -> None:
    forged = "x\nFAKE-INJECTED-LINE ERROR streamgate: forged\x00\u202e"
    with real_log() as out, ServerThread() as srv:
        mark = len(out.getvalue())
        code = asyncio.run(attempt(srv.port, ATTACKERS[0], command, forged))
        assert code == (Status.PLAY_FAILED if command == "play" else Status.PUBLISH_BAD_NAME)
        idle(srv)
        lines = lines_since(out, mark)
        assert len(lines) == 1, lines
        assert "invalid stream name: control or bidi characters" in lines[0]
        assert not any(line.startswith("FAKE") for line in lines)
        assert "\x00" not in out.getvalue() and "\u202e" not in out.getvalue()


def test_printable_names_reach_the_log_as_they_are() -> None:
    with real_log() as out, ServerThread(auth=AUTH) as srv:
        mark = len(out.getvalue())
        code = asyncio.run(attempt(srv.port, ATTACKERS[0], "play", "café-стрим?token=1"))
        assert code == Status.PLAY_FAILED
        idle(srv)
        (line,) = lines_since(out, mark)
        assert "play of live/café-стрим refused: " in line
