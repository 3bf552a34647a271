"""streamgate as an origin, against real FFmpeg, ffprobe, PyAV and nginx-rtmp."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import pytest

from streamgate.client import RtmpClient
from streamgate.errors import UpstreamError
from streamgate.rtmp.events import MediaReceived, PlayRefused
from streamgate.rtmp.messages import Status
from tests.peers import (
    NginxRtmp,
    need,
    need_nginx_rtmp,
    play_status,
    probe,
    process_log,
    publisher,
    start_player,
    stop_process,
    wait_until,
)
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop


@pytest.fixture
def srv() -> Iterator[ServerThread]:
    with ServerThread() as server:
        yield server


@pytest.fixture
def live(srv: ServerThread) -> Iterator[ServerThread]:
    """The server with ffmpeg publishing live/x (320x240, H.264 + AAC, a keyframe a second)."""
    need("ffmpeg")
    with publisher(srv.url("x")) as proc:
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish live/x")
        yield srv
        assert proc.poll() is None, process_log(proc)


def assert_increasing(values: Sequence[float | None], what: str) -> None:
    assert len(values) >= 10, f"too few {what}: {values}"
    known = [v for v in values if v is not None]
    assert len(known) == len(values), f"{what} with gaps: {values}"
    assert all(b > a for a, b in itertools.pairwise(known)), f"{what}: {values}"


def test_ffprobe_sees_h264_and_aac_with_increasing_timestamps(live: ServerThread) -> None:
    result = probe(live.url("x"), read_seconds=3)
    video, audio = result.video, result.audio
    assert (video.codec_name, video.width, video.height) == ("h264", 320, 240)
    assert (audio.codec_name, audio.sample_rate) == ("aac", 44100)
    assert len(result.streams) == 2
    assert_increasing(video.dts, "video dts")
    assert_increasing(audio.dts, "audio dts")


def test_pyav_decodes_the_stream(live: ServerThread) -> None:
    with av.open(live.url("x"), options={"rw_timeout": "10000000"}) as container:
        vstream = container.streams.video[0]
        assert vstream.codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame)
            if len(frames) >= 30:
                break
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    assert_increasing([f.pts for f in frames], "decoded frame pts")


def test_fifty_concurrent_players_all_receive(live: ServerThread) -> None:
    def one(_: int) -> tuple[int, int]:
        result = probe(live.url("x"), read_seconds=8, timeout=60)
        return len(result.video.dts), len(result.audio.dts)

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(one, i) for i in range(50)]
        # all fifty are served at the same time by the one fan-out
        wait_until(lambda: live.players("x") == 50, timeout=40, what="50 players at once")
        counts = [f.result() for f in futures]
    assert all(v >= 10 and a >= 10 for v, a in counts), counts


def test_nginx_rtmp_pulls_from_streamgate(live: ServerThread, tmp_path: Path) -> None:
    need_nginx_rtmp()
    block = f"application live {{ live on; pull rtmp://127.0.0.1:{live.port}/live; }}"
    with NginxRtmp(tmp_path, block) as nginx:
        watchers = [start_player(nginx.url("live", "x")) for _ in range(3)]
        try:
            wait_until(
                lambda: nginx.nclients("live", "x") >= 4,  # the relay and three players
                timeout=20,
                what="three players on nginx",
            )
            result = probe(nginx.url("live", "x"), read_seconds=3, timeout=30)
            assert (result.video.codec_name, result.video.width) == ("h264", 320)
            assert result.audio.codec_name == "aac"
            assert_increasing(result.video.dts, "video dts through nginx")
            # nginx keeps exactly one pull from us, however many it serves
            assert live.players("x") == 1
            assert all(w.poll() is None for w in watchers)
        finally:
            for w in watchers:
                stop_process(w)


def test_play_of_unpublished_stream_is_refused_at_once(srv: ServerThread) -> None:
    need("ffmpeg")
    outcome = play_status(srv.url("nothere"), timeout=10)
    assert outcome.returncode not in (None, 0)
    assert outcome.server_error is not None and "not published" in outcome.server_error

    async def own_client() -> tuple[str, bool]:
        client = await RtmpClient.open(srv.url("nothere"))
        await client.play()
        status = await client.wait_status(timeout=5)
        try:
            event = await asyncio.wait_for(client.next_event(), 5)
            assert event == PlayRefused(status.stream_id, status.code, status.description)
            await asyncio.wait_for(client.next_event(), 5)  # what the status means, then the end
            closed = False
        except ConnectionError:
            closed = True
        return status.code, closed

    code, closed = srv.run(own_client())
    assert code == Status.PLAY_STREAM_NOT_FOUND
    assert closed


def test_publisher_leaving_ends_players_with_unpublish_notify(srv: ServerThread) -> None:
    need("ffmpeg")
    with publisher(srv.url("y")) as pub:
        wait_until(lambda: srv.published("y"), timeout=15, what="ffmpeg to publish")
        ff_player = start_player(srv.url("y"))
        try:

            async def watch() -> tuple[int, str]:
                client = await RtmpClient.open(srv.url("y"))
                await client.play()
                await client.wait_status(Status.PLAY_START)
                media = 0
                while media < 20:
                    if isinstance(await client.next_event(), MediaReceived):
                        media += 1
                stop_process(pub)  # the publisher goes away
                status = await client.wait_status(Status.PLAY_UNPUBLISH_NOTIFY, timeout=10)
                return media, status.code

            media, code = srv.run(watch())
            assert media == 20 and code == Status.PLAY_UNPUBLISH_NOTIFY
            ff_player.wait(timeout=15)  # the real player is ended too, not left waiting
        finally:
            stop_process(ff_player)
    assert not srv.published("y")


def test_second_publisher_of_a_live_name_gets_bad_name(live: ServerThread) -> None:
    async def second() -> str:
        client = await RtmpClient.open(live.url("x"))
        await client.publish()
        status = await client.wait_status(timeout=5)
        return status.code

    assert live.run(second()) == Status.PUBLISH_BAD_NAME
    assert live.published("x")  # the first publisher is untouched


def test_frozen_publisher_is_dropped_and_players_ended() -> None:
    need("ffmpeg")
    with (
        ServerThread(origin={"publish_idle_timeout": 1.5}) as srv,
        publisher(srv.url("z")) as pub,
    ):
        wait_until(lambda: srv.published("z"), timeout=15, what="ffmpeg to publish")

        async def watch() -> str:
            client = await RtmpClient.open(srv.url("z"))
            await client.play()
            await client.wait_status(Status.PLAY_START)
            os.kill(pub.pid, signal.SIGSTOP)
            try:
                status = await client.wait_status(Status.PLAY_UNPUBLISH_NOTIFY, timeout=10)
            finally:
                os.kill(pub.pid, signal.SIGCONT)
            return status.code

        assert srv.run(watch()) == Status.PLAY_UNPUBLISH_NOTIFY
        assert not srv.published("z")
        assert srv.call(lambda: srv.ctx.counters.publishers_idle_dropped) == 1  # type: ignore[union-attr]


def test_ffmpeg_player_exits_cleanly_when_stream_ends(srv: ServerThread) -> None:
    need("ffmpeg")
    with publisher(srv.url("w"), duration=3) as pub:
        wait_until(lambda: srv.published("w"), timeout=15, what="ffmpeg to publish")
        player = start_player(srv.url("w"))
        try:
            pub.wait(timeout=20)
            assert player.wait(timeout=15) == 0, process_log(player)
        except subprocess.TimeoutExpired:
            pytest.fail("the ffmpeg player was not ended after the publisher finished")
        finally:
            stop_process(player)


def test_refused_client_gets_error_not_hang(srv: ServerThread) -> None:
    async def connect_bad_app() -> None:
        client = await RtmpClient.open(srv.url("x"))
        sid = await client.create_stream()
        client.conn.send_command(sid, "publish", 0.0, None, "", "live")  # empty name
        client._flush()
        status = await client.wait_status(timeout=5)
        assert status.code == Status.PUBLISH_BAD_NAME

    srv.run(connect_bad_app())
    with pytest.raises(UpstreamError):
        srv.run(RtmpClient.open("rtmp://127.0.0.1:1/live/x", timeout=2))


def test_real_players_decode_a_stream_sent_by_sendfile() -> None:
    """400 ms flushes of a ~3 Mbit/s stream are 150 KB: they reach players by
    sendfile. ffprobe and PyAV see the same clean stream as with writes."""
    need("ffmpeg")
    cbr = ["-b:v", "3M", "-minrate", "3M", "-maxrate", "3M", "-bufsize", "1M",
           "-x264-params", "nal-hrd=cbr"]  # fmt: skip
    with (
        ServerThread(rtmp={"merge_ms": 400}) as srv,
        publisher(srv.url("big"), extra=cbr) as proc,
    ):
        wait_until(lambda: srv.published("big"), timeout=15, what="ffmpeg to publish")
        result = probe(srv.url("big"), read_seconds=3)
        assert (result.video.codec_name, result.video.width) == ("h264", 320)
        assert result.audio.codec_name == "aac"
        assert_increasing(result.video.dts, "video dts")
        assert_increasing(result.audio.dts, "audio dts")
        with av.open(srv.url("big"), options={"rw_timeout": "10000000"}) as container:
            frames = []
            for frame in container.decode(video=0):
                frames.append(frame)
                if len(frames) >= 50:
                    break
        assert_increasing([f.pts for f in frames], "decoded frame pts")
        sent = srv.call(lambda: srv.ctx.hub.get("live", "big").bytes_sendfile)  # type: ignore[union-attr]
        assert sent > 1_000_000, f"sendfile carried {sent} bytes:\n{process_log(proc)}"
