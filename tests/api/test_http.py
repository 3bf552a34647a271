"""The HTTP server itself over real sockets: framing, errors, keep-alive, and hostile
clients (garbage, oversized heads, slowloris, connection floods), each of which
must cost only its own connection."""

from __future__ import annotations

import re
import select
import socket

from streamgate.api import HttpLimits
from tests.api.harness import ApiThread, wait_for

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (socket timeout bounds each read)."""
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the server kept sending")


def statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def assert_still_serving(gw: ApiThread) -> None:
    reply = gw.get("/healthz")
    assert reply.status == 200
    assert reply.json()["status"] == "ok"


def test_unknown_path_is_404_json() -> None:
    with ApiThread() as gw:
        reply = gw.get("/nope")
        assert reply.status == 404
        assert reply.json()["error"]["status"] == 404
        assert gw.get("/api/v1/streams/live").status == 404  # app without a name


def test_wrong_method_is_405_with_allow() -> None:
    with ApiThread() as gw:
        reply = gw.request("POST", "/api/v1/streams")
        assert reply.status == 405
        assert reply.headers["allow"] == "GET, HEAD"
        assert reply.json()["error"]["reason"] == "Method Not Allowed"
        assert gw.request("PUT", "/api/v1/clients/1").headers["allow"] == "DELETE, GET, HEAD"


def test_head_has_headers_and_no_body() -> None:
    with ApiThread() as gw:
        with gw.raw() as sock:
            sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = read_until_closed(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        assert statuses(head) == [200]
        assert b"content-length: " in head.lower()
        assert body == b""


def test_keep_alive_pipelining_and_request_cap() -> None:
    with ApiThread(http_limits=HttpLimits(max_requests_per_connection=3)) as gw:
        with gw.raw() as sock:
            sock.sendall(HEALTHZ * 5)  # pipelined: answered in order, at most 3
            data = read_until_closed(sock)
        assert statuses(data) == [200, 200, 200]
        assert data.lower().count(b"connection: close") == 1  # on the last one only
        assert_still_serving(gw)


def test_garbage_request_line_gets_400_and_only_that_connection_closes() -> None:
    with ApiThread() as gw:
        with gw.raw() as bystander:
            bystander.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # half a request
            with gw.raw() as sock:
                sock.sendall(b"\x16\x03\x01\x02\x00garbage \x00\r\n\r\n")
                data = read_until_closed(sock)
            assert statuses(data) == [400]
            assert b'"status":400' in data
            bystander.sendall(b"\r\n")  # the bystander finishes its request
            assert statuses(bystander.recv(65536)) == [200]
        assert_still_serving(gw)


def test_missing_host_is_400() -> None:
    with ApiThread() as gw, gw.raw() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert statuses(read_until_closed(sock)) == [400]


def test_oversized_headers_get_431() -> None:
    with ApiThread(http_limits=HttpLimits(max_header_bytes=4096)) as gw:
        with gw.raw() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000)
            data = read_until_closed(sock)
        assert statuses(data) == [431]
        assert_still_serving(gw)


def test_an_oversized_head_that_arrives_whole_in_one_read_gets_431_too() -> None:
    # h11 bounds only an incomplete head; one read holding all of it is measured apart.
    with ApiThread(http_limits=HttpLimits(max_header_bytes=4096)) as gw:
        with gw.raw() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
            assert statuses(read_until_closed(sock)) == [431]
        with gw.raw() as sock:
            many = b"".join(b"X-%d: y\r\n" % i for i in range(200))  # over max_headers (100)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + many + b"\r\n")
            assert statuses(read_until_closed(sock)) == [431]
        assert_still_serving(gw)


def test_oversized_body_closes_the_connection() -> None:
    with ApiThread(http_limits=HttpLimits(max_body_bytes=1000)) as gw:
        with gw.raw() as sock:
            sock.sendall(
                b"DELETE /api/v1/clients/999 HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
                + b"x" * 2000
            )
            data = read_until_closed(sock)
        assert statuses(data) == [413]  # refused on the head, never dispatched
        assert_still_serving(gw)


def test_slowloris_is_closed_after_the_read_timeout() -> None:
    with ApiThread(http_limits=HttpLimits(header_timeout=0.5)) as gw:
        with gw.raw() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            closed_by_server = False
            for _ in range(400):  # trickle a header byte at a time, bounded
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    closed_by_server = True
                    break
                try:
                    sock.sendall(b"X")
                except OSError:
                    closed_by_server = True
                    break
            assert closed_by_server
            data = read_until_closed(sock)
        assert statuses(data) == [408]
        assert_still_serving(gw)
        samples = gw.metrics()
        assert samples[("streamgate_http_timeouts_total", ())] >= 1


def test_idle_keep_alive_is_closed_silently() -> None:
    with ApiThread(http_limits=HttpLimits(keepalive_timeout=0.3)) as gw:
        with gw.raw() as sock:
            sock.sendall(HEALTHZ)
            data = read_until_closed(sock)  # the response, then the idle close
        assert statuses(data) == [200]
        assert b"408" not in data.split(b"\r\n\r\n", 1)[1]


def test_connections_beyond_the_cap_get_503_and_only_they_close() -> None:
    """At the cap with every connection past its request head (none may be evicted
    for a newcomer), newcomers get 503 and the admitted ones are untouched."""
    limits = HttpLimits(max_connections=3)
    with ApiThread(http_limits=limits) as gw:
        api = gw.api
        assert api is not None
        held = [gw.raw() for _ in range(3)]
        try:
            for sock in held:  # a head whose one-byte body is still to come
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n")
            wait_for(
                lambda: (
                    gw.srv.call(lambda: sorted(c.phase for c in api.http.connections))
                    == ["body"] * 3
                ),
                "three HTTP connections admitted, reading their bodies",
            )
            for _ in range(5):
                with gw.raw() as extra:
                    data = read_until_closed(extra)
                assert statuses(data) == [503]
                assert b"retry-after: 1" in data.lower()
            for sock in held:  # the admitted ones are untouched
                sock.sendall(b"x")
                assert statuses(sock.recv(65536)) == [200]
                sock.sendall(HEALTHZ)
                assert statuses(sock.recv(65536)) == [200]
        finally:
            for sock in held:
                sock.close()
        wait_for(
            lambda: gw.srv.call(lambda: len(api.http.connections)) == 0,
            "held connections gone",
        )
        assert_still_serving(gw)
        samples = gw.metrics()
        assert samples[("streamgate_http_connections_rejected_total", ())] == 5


def test_a_client_that_never_reads_is_not_read_from() -> None:
    """Pipelined requests from a client that reads nothing stop being processed once
    its responses back up; the server stays responsive to everyone else."""
    limits = HttpLimits(
        max_requests_per_connection=1_000_000, header_timeout=60, keepalive_timeout=60
    )
    with ApiThread(http_limits=limits) as gw:
        api = gw.api
        assert api is not None
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
            sock.settimeout(10)
            sock.connect(("127.0.0.1", gw.port))
            wait_for(lambda: gw.srv.call(lambda: len(api.http.connections)) == 1, "admitted")
            [conn] = gw.srv.call(lambda: list(api.http.connections))
            sock.setblocking(False)
            batch = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" * 64
            pending = memoryview(batch)
            blocked = False
            for _ in range(20_000):  # bounded; partial sends keep requests whole
                try:
                    sent = sock.send(pending)
                except BlockingIOError:
                    blocked = True  # the server stopped reading us
                    break
                pending = pending[sent:] or memoryview(batch)
            assert blocked
            wait_for(lambda: gw.srv.call(lambda: conn.write_paused), "writes paused")
            assert conn.transport is not None
            buffered = gw.srv.call(conn.transport.get_write_buffer_size)
            assert buffered < 1 << 20  # responses did not pile up without bound
            assert_still_serving(gw)
