"""A flood of bad HTTP requests costs the log a bounded number of lines."""

from __future__ import annotations

import socket

from tests.api.harness import ApiThread
from tests.logs import accounted, lines_since, real_log
from tests.waiting import wait_until

BAD = [
    b"\x16\x03\x01\x02\x00garbage\r\n\r\n",  # TLS to the plain port
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
    b"POST /api/v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n",
]


def test_bad_request_lines_are_aggregated_per_reason() -> None:
    count = 300
    with real_log() as log, ApiThread() as gw:
        mark = len(log.getvalue())
        for n in range(count):
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(BAD[n % len(BAD)])
                sock.settimeout(10)
                while sock.recv(65536):
                    pass  # read the answer until the server closes
        lines = lines_since(log, mark)
        wait_until(
            lambda: gw.srv.call(lambda: len(gw.api.http.connections)) == 0,  # type: ignore[union-attr]
            timeout=10,
            what="every HTTP connection ended",
        )
        http_lines = [line for line in lines if "http:" in line]
        assert 0 < len(http_lines) <= 2 * len(BAD) + 3, "\n".join(http_lines)
    # After the flush at the end, every refused request is accounted for.
    everything = lines_since(log, mark)
    assert accounted(everything, "http:") == count, "\n".join(everything)
