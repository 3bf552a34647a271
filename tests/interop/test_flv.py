"""HTTP-FLV and WebSocket-FLV against real peers: ffprobe and ffmpeg read the
stream from an origin and through edges (in front of streamgate's own origin
and of nginx-rtmp), signed auth, a silent origin's missing stream, and RTMP
players and HTTP viewers of one stream sharing one upstream link."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamgate.auth import sign_query
from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived
from tests.flv.viewer import ViewerResult, view
from tests.interop.test_edge import CountingConnector
from tests.interop.test_origin import assert_increasing
from tests.peers import NginxRtmp, PeerError, need, need_nginx_rtmp, probe, publisher
from tests.server.harness import ServerThread
from tests.waiting import await_until, wait_until

pytestmark = pytest.mark.interop

FLV = {"enabled": True, "listen": "127.0.0.1:0"}
SECRET = "play-secret"


def edge(origin_port: int, **sections: Any) -> tuple[ServerThread, CountingConnector]:
    edge_settings = {"origins": [f"rtmp://127.0.0.1:{origin_port}"], **sections.pop("edge", {})}
    srv = ServerThread(mode="edge", edge=edge_settings, flv=FLV, **sections).start()  # type: ignore[arg-type]
    assert srv.ctx is not None and srv.ctx.edge is not None
    counting = CountingConnector(srv.ctx.edge.connector)
    srv.ctx.edge.connector = counting
    return srv, counting


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    """A streamgate origin with the FLV listener, ffmpeg publishing live/x."""
    need("ffmpeg")
    with ServerThread(flv=FLV) as srv, publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish live/x")
        yield srv


def check_probe(url: str) -> None:
    """ffprobe reads H.264 + AAC with increasing timestamps, starting on a keyframe."""
    result = probe(url, read_seconds=3)
    assert result.video.codec_name == "h264" and result.video.width == 320
    assert result.audio.codec_name == "aac" and result.audio.sample_rate == 44100
    assert result.video.keyframes[0], "the first video packet is not a keyframe"
    assert_increasing(result.video.dts, "video dts")
    assert_increasing(result.audio.dts, "audio dts")
    # The viewer's timeline starts at 0 (an edge's first viewer of a link with no
    # GOP cache behind it gets audio from then and video from the next keyframe).
    first = min(d for d in (result.video.dts[0], result.audio.dts[0]) if d is not None)
    assert first < 0.5, f"the viewer's timeline starts at {first}"


def test_ffprobe_reads_http_flv_from_the_origin(origin: ServerThread) -> None:
    check_probe(origin.flv_url("x"))


def test_ffmpeg_decodes_http_flv_from_the_origin(origin: ServerThread, tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "frames.txt"
    done = subprocess.run(
        [need("ffmpeg"), "-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "10000000",
         "-i", origin.flv_url("x"), "-t", "2", "-f", "framemd5", str(out)],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    frames = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert len(frames) > 40  # 2 s of 25 fps video plus audio frames, decoded


def test_ffprobe_through_an_edge_in_front_of_streamgate(origin: ServerThread) -> None:
    srv, connects = edge(origin.port)
    try:
        check_probe(srv.flv_url("x"))
        check_probe(srv.flv_url("x"))
        assert connects.count("x") == 1  # the second viewer shared the ingest (linger)
    finally:
        srv.stop()


def test_ffprobe_through_an_edge_in_front_of_nginx_rtmp(tmp_path: Path) -> None:
    need("ffmpeg")
    need_nginx_rtmp()
    with (
        NginxRtmp(tmp_path, "application live { live on; }") as nginx,
        publisher(nginx.url("live", "x")),
    ):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="nginx publish")
        srv, connects = edge(nginx.rtmp_port)
        try:
            check_probe(srv.flv_url("x"))
            assert connects.count("x") == 1
        finally:
            srv.stop()


def test_signed_urls_through_an_edge_no_token_401_bad_403_good_plays(origin: ServerThread) -> None:
    srv, connects = edge(origin.port, auth={"play": "signed", "keys": {"k1": SECRET}})
    try:
        good = sign_query("play", "live", "x", int(time.time() + 300), SECRET.encode(), "k1")
        bad = good.replace("sig=", "sig=ff")
        results = {
            label: asyncio.run(view("127.0.0.1", srv.flv_port, f"/live/x.flv{query}", until_tags=5))
            for label, query in (("none", ""), ("bad", f"?{bad}"))
        }
        assert results["none"].status == 401, results["none"].body
        assert results["bad"].status == 403, results["bad"].body
        assert connects.count() == 0  # refused before any upstream work
        check_probe(srv.flv_url("x") + f"?{good}")
        with pytest.raises(PeerError):
            probe(srv.flv_url("x"), timeout=5)  # ffprobe itself is refused without a token
    finally:
        srv.stop()


def test_missing_stream_behind_a_silent_origin_404_after_start_timeout_then_at_once(
    tmp_path: Path,
) -> None:
    """nginx-rtmp with idle_streams on (as SRS): the origin accepts the play and
    sends nothing, so only the edge's start_timeout can say the stream is missing."""
    need_nginx_rtmp()
    start_timeout = 1.5
    with NginxRtmp(tmp_path, "application live { live on; idle_streams on; }") as nginx:
        srv, connects = edge(
            nginx.rtmp_port, edge={"start_timeout": start_timeout, "missing_ttl": 30}
        )
        try:

            def timed(**kw: Any) -> tuple[ViewerResult, float]:
                started = time.monotonic()
                result = asyncio.run(view("127.0.0.1", srv.flv_port, "/live/ghost.flv", **kw))
                return result, time.monotonic() - started

            first, first_took = timed()
            assert first.status == 404, first.body
            assert start_timeout <= first_took <= start_timeout + 0.5, first_took
            again, again_took = timed()
            head, _ = timed(method="HEAD")
            ws, _ = timed(websocket=True)
            assert again.status == 404 and head.status == 404 and head.body == b""
            assert ws.close_code == 4404
            assert again_took < start_timeout  # the negative cache: no waiting
            assert connects.count("ghost") == 1  # and no new origin connect
        finally:
            srv.stop()


async def rtmp_bytes(url: str, counts: list[int], index: int) -> None:
    client = await RtmpClient.open(url)
    try:
        await client.play()
        while True:
            event = await client.next_event()
            if isinstance(event, MediaReceived):
                counts[index] += len(event.payload)
    finally:
        client.close()


def test_fifty_rtmp_players_and_fifty_http_viewers_share_one_upstream_link(
    tmp_path: Path,
) -> None:
    need("ffmpeg")
    need_nginx_rtmp()
    with (
        NginxRtmp(tmp_path, "application live { live on; }") as nginx,
        publisher(nginx.url("live", "x")),
    ):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="nginx publish")
        srv, connects = edge(nginx.rtmp_port)
        assert srv.ctx is not None
        ctx = srv.ctx

        def stream_bytes() -> int:
            assert ctx.edge is not None
            ingest = ctx.edge.ingests.get(("live", "x"))
            return ingest.stream.bytes_in if ingest is not None else 0

        async def crowd() -> tuple[list[float], list[float], list[int]]:
            rtmp = [0] * 50
            views = [ViewerResult() for _ in range(50)]
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(rtmp_bytes(srv.url("x"), rtmp, i)) for i in range(50)
            ]
            tasks += [
                asyncio.create_task(
                    view("127.0.0.1", srv.flv_port, "/live/x.flv", timeout=60, result=v)
                )
                for v in views
            ]
            seen: list[int] = []
            try:
                await await_until(
                    lambda: all(rtmp) and all(v.flv.tags for v in views),
                    timeout=30,
                    what="every viewer receiving",
                )
                await asyncio.sleep(1)  # past the GOP burst of the start
                src0 = srv.call(stream_bytes)
                r0, h0 = list(rtmp), [v.flv.bytes for v in views]
                for _ in range(12):  # a 6 s window, the origin's clients sampled meanwhile
                    await asyncio.sleep(0.5)
                    seen.append(await asyncio.to_thread(nginx.nclients, "live", "x"))
                src = srv.call(stream_bytes) - src0
                r_share = [(b - a) / src for a, b in zip(r0, rtmp, strict=True)]
                h_share = [(v.flv.bytes - a) / src for a, v in zip(h0, views, strict=True)]
                return r_share, h_share, seen
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        try:
            r_share, h_share, seen = asyncio.run(crowd())
        finally:
            srv.stop()
        assert connects.count("x") == 1
        assert max(seen) == 2  # nginx sees its publisher and the edge, nothing more
        assert min(r_share) >= 0.99, sorted(r_share)[:5]
        assert min(h_share) >= 0.99, sorted(h_share)[:5]
