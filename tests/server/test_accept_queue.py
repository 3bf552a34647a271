"""A connection that waited in the accept queue gets no extra time for its handshake.

The server's loop is held busy while silent clients connect, so the kernel
completes their handshakes and queues them. Counted from the TCP handshake,
their ``handshake_timeout`` has passed by the time the server accepts them:
they are closed at once, not ``handshake_timeout`` later.
"""

from __future__ import annotations

import socket
import time

from streamgate.server.tcpinfo import queued_for
from tests.server.harness import ServerThread
from tests.waiting import wait_until

TIMEOUT = 1.0
BUSY = 2.5  # longer than TIMEOUT: every queued connection is overdue when accepted


def test_queued_for_measures_the_wait_of_a_silent_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        start = time.monotonic()
        wait_until(lambda: time.monotonic() - start >= 0.3, timeout=5, what="0.3 s to pass")
        accepted, _ = listener.accept()
        with client, accepted:
            waited = queued_for(accepted)
        assert 0.25 <= waited <= time.monotonic() - start + 0.05


def test_connections_overdue_in_the_accept_queue_are_closed_when_accepted() -> None:
    with ServerThread(rtmp={"handshake_timeout": TIMEOUT}) as srv:
        ctx = srv.ctx
        assert ctx is not None
        busy = srv.loop.call_soon_threadsafe  # the loop thread sleeps: nothing is accepted
        held = []
        busy(time.sleep, BUSY)
        connected = time.monotonic()
        for n in range(20):
            sock = socket.socket()
            sock.bind((f"127.0.0.{2 + n % 5}", 0))
            sock.connect(("127.0.0.1", srv.port))  # the kernel completes it: queued
            held.append(sock)
        ended = []
        for sock in held:
            sock.settimeout(BUSY + 3 * TIMEOUT)
            try:
                got = sock.recv(1)
            except OSError:
                got = b""
            assert got == b""  # the server said nothing and closed
            ended.append(time.monotonic() - connected)
            sock.close()
        timed_out = srv.call(lambda: ctx.counters.protocol_errors)
    assert timed_out == len(held)  # every one ended by the handshake deadline
    # Closed at accept, right after the loop woke, not a whole TIMEOUT later.
    assert max(ended) < BUSY + TIMEOUT / 2, ended
