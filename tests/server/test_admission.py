"""Admission at the global cap: allow-listed networks still get in.

Attackers from 127.0.0.2.. fill the connections open to everyone; the
operator's own player, from the allow-listed 127.0.0.1, still starts
playing a live stream while they hold them, within the hard ceiling.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.messages import MsgType, Status
from tests.server.harness import ServerThread

KEY = b"\x17\x01\x00\x00\x00" + bytes(100)
CAP = 20
RESERVED = 5
ATTACKERS = 60


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    limits = {
        "allow": ["127.0.0.1/32"],
        "max_connections": CAP,
        "reserved_connections": RESERVED,
        # Per-IP limits out of the way: the global cap is what is under test.
        "max_connections_per_ip": ATTACKERS,
        "connections_per_second_per_ip": 10_000.0,
    }
    # Silent attackers hold their connections for the whole test.
    with ServerThread(rtmp={"handshake_timeout": 60.0}, limits=limits) as srv:
        yield srv


def counts(srv: ServerThread) -> tuple[int, int]:
    """(admitted connections, refusals at the cap)."""

    def read() -> tuple[int, int]:
        assert srv.ctx is not None
        return srv.ctx.admission.connections, srv.ctx.counters.rejected["max_connections"]

    return srv.call(read)


def test_allow_listed_player_starts_while_others_exhaust_the_cap(server: ServerThread) -> None:
    srv = server

    async def publish() -> tuple[RtmpClient, int]:
        pub = await RtmpClient.open(srv.url("cam"))
        sid = await pub.publish()
        await pub.wait_status(Status.PUBLISH_START)
        pub.send_media(sid, MsgType.VIDEO, 0, KEY)
        return pub, sid

    pub, sid = srv.run(publish())
    attackers: list[socket.socket] = []
    try:
        for i in range(ATTACKERS):
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + i % 5}", 0))
            sock.connect(("127.0.0.1", srv.port))  # the kernel accepts; the server decides
            attackers.append(sock)
        # Every attacker has been decided: those over the open part of the cap were reset.
        admitted = CAP - RESERVED - 1  # the publisher holds one
        wait_for(
            lambda: counts(srv) == (CAP - RESERVED, ATTACKERS - admitted),
            "the attackers to fill the connections open to them",
        )

        async def play() -> tuple[str, int, int]:
            player = await RtmpClient.open(srv.url("cam"))  # from 127.0.0.1
            try:
                await player.play()
                start = await player.wait_status(Status.PLAY_START)
                assert srv.ctx is not None  # on the server's loop: read it directly
                held = srv.ctx.admission.connections
                pub.send_media(sid, MsgType.VIDEO, 40, KEY)
                async with asyncio.timeout(10):
                    while True:
                        event = await player.next_event()
                        if isinstance(event, MediaReceived):
                            return start.code, held, event.timestamp
            finally:
                player.close()

        code, held, ts = srv.run(play())
        assert code == Status.PLAY_START and ts in (0, 40)
        assert held == CAP - RESERVED + 1  # the attackers', the publisher's and the player's
        # ... and the attackers still held their connections meanwhile.
        assert counts(srv)[1] == ATTACKERS - admitted
        wait_for(
            lambda: sum(_alive(sock) for sock in attackers) == admitted, "the resets to land"
        )
    finally:
        for sock in attackers:
            sock.close()
        pub.close()


def test_allow_listed_addresses_stop_at_the_hard_ceiling(server: ServerThread) -> None:
    srv = server
    socks: list[socket.socket] = []
    try:
        for _ in range(CAP + 5):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.1", srv.port))
            socks.append(sock)
        wait_for(lambda: counts(srv) == (CAP, 5), "every connection to be decided")
        wait_for(lambda: sum(_alive(sock) for sock in socks) == CAP, "the resets to land")
    finally:
        for sock in socks:
            sock.close()


def _alive(sock: socket.socket) -> bool:
    """Still open from the server's side: no reset or EOF waiting to be read."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
