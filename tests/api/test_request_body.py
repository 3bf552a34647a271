"""A request is acted on only once it has been read whole and found well framed.

The endpoint under test is an authenticated ``POST /api/v1/reload`` whose
configuration file, on disk, changes the token: a reload that happened shows as
the new token being in force (and in the API's ``config_reloaded`` count).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.api.harness import ApiThread
from tests.api.test_http import read_until_closed, statuses

HEAD = b"POST /api/v1/reload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer old\r\n"

LYING = {
    "chunked-huge-size": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffff\r\n", 411),
    "content-length-huge": (HEAD + b"Content-Length: 99999999999999\r\n\r\n", 413),
    "chunked-bad-size": (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 411),
    "content-length-junk": (HEAD + b"Content-Length: 12x\r\n\r\n", 400),
    "both-framings": (
        HEAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        411,  # chunked wins over Content-Length (RFC 9112), and is refused
    ),
}


def reloads(gw: ApiThread) -> int:
    api = gw.api
    assert api is not None
    return gw.srv.call(lambda: api.api.counters["config_reloaded"])


def reloadable_gateway(**http: object) -> ApiThread:
    return ApiThread(reloadable=True, http={"token": "old", **http})


def point_at_new_token(gw: ApiThread, tmp_path: Path) -> None:
    """A configuration file on disk that, once reloaded, puts token "new" in force."""
    conf = tmp_path / "streamgate.toml"
    conf.write_text(
        '[rtmp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\ntoken = "new"\n'
    )
    srv = gw.srv
    srv.call(lambda: setattr(srv.ctx, "config_path", str(conf)))


def send(gw: ApiThread, data: bytes) -> bytes:
    with gw.raw() as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def assert_not_reloaded(gw: ApiThread) -> None:
    assert reloads(gw) == 0
    assert gw.get("/api/v1/streams", token="old").status == 200
    assert gw.get("/api/v1/streams", token="new").status == 401


def assert_reload_works(gw: ApiThread) -> None:
    """The same endpoint, asked properly, does reload: the refusals above were not
    a reload that could not have happened anyway."""
    reply = gw.request("POST", "/api/v1/reload", token="old")
    assert reply.status == 200, reply
    assert reloads(gw) == 1
    assert gw.get("/api/v1/streams", token="new").status == 200


@pytest.mark.parametrize("case", sorted(LYING))
def test_a_lying_body_is_refused_at_once_and_reloads_nothing(case: str, tmp_path: Path) -> None:
    data, status = LYING[case]
    # Deadlines far beyond the socket timeout: an answer at all is an answer "at once".
    with reloadable_gateway(header_timeout=60, body_timeout=60) as gw:
        point_at_new_token(gw, tmp_path)
        answer = send(gw, data)
        assert statuses(answer) == [status], answer[:300]
        assert b"connection: close" in answer.lower()
        assert_not_reloaded(gw)
        assert_reload_works(gw)


def test_an_unfinished_body_times_out_and_reloads_nothing(tmp_path: Path) -> None:
    with reloadable_gateway(body_timeout=0.3) as gw:
        point_at_new_token(gw, tmp_path)
        answer = send(gw, HEAD + b"Content-Length: 10\r\n\r\nabc")  # 7 bytes short
        assert statuses(answer) == [408]
        assert_not_reloaded(gw)
        assert_reload_works(gw)


def test_a_body_within_the_limit_is_read_before_the_reload(tmp_path: Path) -> None:
    with reloadable_gateway(max_body_bytes=100) as gw:
        point_at_new_token(gw, tmp_path)
        with gw.raw() as sock:
            sock.sendall(HEAD + b"Content-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            assert statuses(sock.recv(4096)) == [100]  # asked for the body; nothing done yet
            assert reloads(gw) == 0
            sock.sendall(b"{}\r\n")
            sock.shutdown(socket.SHUT_WR)
            answer = read_until_closed(sock)
        assert statuses(answer) == [200]
        assert reloads(gw) == 1
        assert gw.get("/api/v1/streams", token="new").status == 200
