"""The [flv] listener of a real server: statuses, framings, the stream's end,
auth and bans, read by the spec-written test viewer (``tests/flv/viewer.py``)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from streamgate.auth import sign_query
from streamgate.client import RtmpClient
from streamgate.rtmp.messages import MsgType, Status
from tests.flv.viewer import ViewerResult, view
from tests.relay.sinks import AAC_CONFIG, AAC_RAW, AVC_CONFIG
from tests.server.harness import ServerThread
from tests.server.test_hostile import INTER, KEY
from tests.waiting import await_until, wait_until

SECRET = b"play-secret"
FLV = {"enabled": True, "listen": "127.0.0.1:0"}


def token(stream: str, ttl: float = 300) -> str:
    return sign_query("play", "live", stream, int(time.time() + ttl), SECRET, "k1")


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread(flv=FLV) as server:
        yield server


class Publisher:
    """An RTMP publisher of synthetic media: AVC/AAC headers, a keyframe every 10 frames."""

    def __init__(self, client: RtmpClient, sid: int) -> None:
        self.client = client
        self.sid = sid
        self.ts = 0
        self.task: asyncio.Task[None] | None = None

    def frame(self) -> None:
        key = self.ts % 400 == 0
        self.client.send_media(
            self.sid, MsgType.VIDEO, self.ts, (KEY if key else INTER) + b"v" * 200
        )
        self.client.send_media(self.sid, MsgType.AUDIO, self.ts, AAC_RAW)
        self.ts += 40

    async def run(self) -> None:
        while True:
            self.frame()
            await asyncio.sleep(0.04)


@asynccontextmanager
async def publishing(srv: ServerThread, name: str = "x") -> AsyncIterator[Publisher]:
    client = await RtmpClient.open(srv.url(name))
    sid = await client.publish()
    await client.wait_status(Status.PUBLISH_START)
    client.send_media(sid, MsgType.VIDEO, 0, AVC_CONFIG)
    client.send_media(sid, MsgType.AUDIO, 0, AAC_CONFIG)
    pub = Publisher(client, sid)
    pub.frame()  # a keyframe: the stream is described
    await await_until(
        lambda: srv.call(lambda: _gop(srv, name)), timeout=10, what="the first keyframe"
    )
    pub.task = asyncio.get_running_loop().create_task(pub.run())
    try:
        yield pub
    finally:
        pub.task.cancel()
        client.close()


def _gop(srv: ServerThread, name: str) -> bool:
    assert srv.ctx is not None
    stream = srv.ctx.hub.get("live", name)
    return stream is not None and bool(stream.gop)


def get(srv: ServerThread, path: str, **kw: Any) -> ViewerResult:
    return asyncio.run(view("127.0.0.1", srv.flv_port, path, **kw))


@pytest.mark.parametrize(
    ("websocket", "http10"),
    [(False, False), (True, False), (False, True)],
    ids=["chunked", "ws", "http10"],
)
def test_a_viewer_plays_from_a_keyframe_at_zero_and_is_told_the_end(
    srv: ServerThread, websocket: bool, http10: bool
) -> None:
    async def scenario() -> tuple[ViewerResult, ViewerResult]:
        async with publishing(srv):
            await asyncio.sleep(0.5)  # a GOP is cached: the viewer starts from its keyframe
            result = ViewerResult()
            watching = asyncio.create_task(
                view("127.0.0.1", srv.flv_port, "/live/x.flv", websocket=websocket,
                     http10=http10, timeout=30, result=result)
            )  # fmt: skip
            await await_until(lambda: len(result.flv.tags) >= 30, timeout=15, what="30 tags")
            first = ViewerResult(result.status, dict(result.headers))
            first.flv = result.flv
        # The publisher left: the viewer is told.
        return first, await watching

    first, ended = asyncio.run(scenario())
    assert first.status == (101 if websocket else 200)
    if not websocket:
        assert first.headers["content-type"] == "video/x-flv"
        assert ("transfer-encoding" in first.headers) == (not http10)
    tags = ended.flv.tags
    assert ended.flv.flags == 0x05
    assert tags[0].config and tags[1].config  # the sequence headers first
    media = [t for t in tags if t.type in (8, 9) and not t.config]
    assert media[0].keyframe and media[0].timestamp == 0
    video = [t.timestamp for t in tags if t.type == 9 and not t.config]
    assert video == sorted(video) and len(set(video)) == len(video)
    assert ended.ended, "the stream's end was not told (chunked terminator or close frame)"
    if websocket:
        assert ended.close_code == 1000 and "stream ended" in ended.close_reason


def test_a_missing_stream_is_404_with_a_reason_and_head_says_the_same(srv: ServerThread) -> None:
    got = get(srv, "/live/nope.flv")
    assert got.status == 404 and b"not published" in got.body
    head = get(srv, "/live/nope.flv", method="HEAD")
    assert head.status == 404 and head.body == b""
    ws = get(srv, "/live/nope.flv", websocket=True)
    assert ws.status == 101 and ws.close_code == 4404 and "not published" in ws.close_reason


def test_head_of_a_live_stream_is_200_without_a_body(srv: ServerThread) -> None:
    async def scenario() -> ViewerResult:
        async with publishing(srv):
            return await view("127.0.0.1", srv.flv_port, "/live/x.flv", method="HEAD")

    head = asyncio.run(scenario())
    assert head.status == 200 and head.headers["content-type"] == "video/x-flv"
    assert head.flv.bytes == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /live/x.flv HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /live/x.mp4 HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        (b"GET /x.flv HTTP/1.1\r\nHost: a\r\n\r\n", 404),
        (b"GET /live/%ff.flv HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /live/a%0ab.flv HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 100 + b"\r\n", 431),
        (b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 20000 + b"\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-base64!\r\n\r\n", 400),
        (b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 400),
        (b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
         400),
    ],
    ids=["post", "not-flv", "no-app", "bad-utf8", "control-char", "10k-headers", "huge-header",
         "garbage", "ws-bad-key", "ws-version", "upgrade-h2c"],
)  # fmt: skip
def test_a_malformed_request_gets_its_status_and_a_text_reason(
    srv: ServerThread, request_bytes: bytes, status: int
) -> None:
    with socket.create_connection(("127.0.0.1", srv.flv_port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"text/plain" in head and body.strip(), answer[:300]
    # Nothing was attached or left waiting, and the server serves on.
    wait_until(
        lambda: srv.call(lambda: not srv.ctx or not srv.ctx.sessions),
        timeout=10,
        what="no client left",
    )


def test_signed_auth_401_without_token_403_with_a_bad_one_and_a_good_one_plays() -> None:
    with ServerThread(
        flv=FLV,
        auth={"play": "signed", "keys": {"k1": SECRET.decode()}},
    ) as srv:

        async def scenario() -> dict[str, ViewerResult]:
            async with publishing(srv):
                results = {}
                for label, query in (
                    ("none", ""),
                    ("bad", token("x").replace("sig=", "sig=00")),
                    ("expired", token("x", ttl=-100)),
                    ("other-stream", token("y")),
                    ("good", token("x")),
                ):
                    results[label] = await view(
                        "127.0.0.1", srv.flv_port, f"/live/x.flv?{query}", until_tags=10, timeout=10
                    )
                results["ws-none"] = await view(
                    "127.0.0.1", srv.flv_port, "/live/x.flv", websocket=True, timeout=10
                )
                return results

        results = asyncio.run(scenario())
    assert results["none"].status == 401 and b"token missing" in results["none"].body
    for label in ("bad", "expired", "other-stream"):
        assert results[label].status == 403, (label, results[label].body)
    assert results["good"].status == 200 and len(results["good"].flv.tags) >= 10
    assert results["ws-none"].close_code == 4401


def test_viewers_by_protocol_in_the_api_views_and_a_kick_ends_the_response(
    srv: ServerThread,
) -> None:
    from streamgate.api.views import clients_listing, streams_listing

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], ViewerResult]:
        async with publishing(srv):
            http = ViewerResult()
            ws = ViewerResult()
            port = srv.flv_port
            tasks = [
                asyncio.create_task(view("127.0.0.1", port, "/live/x.flv", result=http)),
                asyncio.create_task(
                    view("127.0.0.1", port, "/live/x.flv", websocket=True, result=ws, timeout=30)
                ),
            ]
            await await_until(
                lambda: bool(http.flv.tags and ws.flv.tags), timeout=10, what="both viewers playing"
            )
            assert srv.ctx is not None
            ctx = srv.ctx
            streams = srv.call(lambda: streams_listing(ctx, ctx.loop.time()))
            clients = srv.call(lambda: clients_listing(ctx, ctx.loop.time()))["clients"]
            viewer = next(c for c in clients if c["protocol"] == "flv")
            srv.call(lambda: ctx.sessions[viewer["id"]].close())
            kicked = await tasks[0]
            tasks[1].cancel()
            return streams["streams"][0], clients, kicked

    stream, clients, kicked = asyncio.run(scenario())
    assert stream["viewers"] == {"rtmp": 0, "flv": 1, "ws-flv": 1}
    assert sorted(c["protocol"] for c in clients) == ["flv", "rtmp", "ws-flv"]
    assert kicked.ended  # the chunked terminator: a clean end, not a cut


def test_a_banned_address_is_reset_at_accept_on_the_flv_listener() -> None:
    limits = {"allow": [], "ban_after_failures": 3, "ban_time": 60}
    with ServerThread(flv=FLV, limits=limits, auth={"play": "signed", "keys": {"k1": "s"}}) as srv:
        for _ in range(3):
            result = asyncio.run(view("127.0.0.1", srv.flv_port, "/live/x.flv", source="127.0.0.2"))
            assert result.status == 401
        refused = asyncio.run(view("127.0.0.1", srv.flv_port, "/live/x.flv", source="127.0.0.2"))
        other = asyncio.run(view("127.0.0.1", srv.flv_port, "/live/x.flv", source="127.0.0.3"))
    assert refused.status == 0 and refused.closed  # reset: not a byte of HTTP
    assert other.status == 401  # only the offender


def test_the_per_address_cap_spares_allow_listed_addresses() -> None:
    flv = {**FLV, "max_connections_per_ip": 2}
    with ServerThread(flv=flv, limits={"allow": ["127.0.0.1"]}) as srv:
        held = []
        try:
            for source in ("127.0.0.1", "127.0.0.2"):
                for _ in range(2):  # at the cap: two idle connections each
                    held.append(
                        socket.create_connection(
                            ("127.0.0.1", srv.flv_port), source_address=(source, 0)
                        )
                    )
            capped = get(srv, "/live/x.flv", source="127.0.0.2")
            allowed = get(srv, "/live/x.flv", source="127.0.0.1")
        finally:
            for sock in held:
                sock.close()
    assert capped.status == 503 and b"your address" in capped.body
    assert allowed.status == 404  # served: the allow-listed address has no cap
