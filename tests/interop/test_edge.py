"""streamgate as an edge in front of real origins: streamgate's own and nginx-rtmp.

Players are in-process RTMP clients (100 ffprobe processes would measure the
2-core machine, not the edge) plus ffprobe where a real decoder matters.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop

from streamgate.client import RtmpClient
from streamgate.edge.ingest import IngestState, LinkSink
from streamgate.edge.origins import Origin
from streamgate.errors import UpstreamError
from streamgate.rtmp.events import MediaReceived, StatusReceived
from streamgate.rtmp.flv import VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import MsgType, Status
from tests.peers import (
    NginxRtmp,
    free_port,
    need,
    need_nginx_rtmp,
    probe,
    publisher,
    start_publisher,
    stop_process,
    wait_port,
)
from tests.server.harness import ServerThread
from tests.waiting import await_until, wait_until

pytestmark = pytest.mark.interop

END_CODES = (
    Status.PLAY_STREAM_NOT_FOUND,
    Status.PLAY_FAILED,
    Status.PLAY_UNPUBLISH_NOTIFY,
)


class CountingConnector:
    """Wraps the edge's real connector and records every upstream connect.

    Each connect is stamped with the time the edge's connect-rate window counted
    it (``counted``), read on the edge's own thread: a stamp taken here with
    time.monotonic() could lag the decision by a GC pause or a GIL hand-over in
    another thread of this test process. A connect that bypassed the window
    would repeat an earlier stamp and break the rate check.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.opens: list[tuple[float, str]] = []
        self.counted: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Any:
        counted = origin.connect_rate.newest
        with self.lock:
            self.opens.append((time.monotonic(), name))
            self.counted.append((-1.0 if counted is None else counted, name))
        return self.inner.open(origin, app, name, sink)

    def count(self, name: str | None = None) -> int:
        with self.lock:
            return sum(1 for _, n in self.opens if name is None or n == name)


def ingest_state(edge: ServerThread, name: str, app: str = "live") -> IngestState | None:
    """The state of the edge's ingest of ``app``/``name`` (None: there is none)."""

    def read() -> IngestState | None:
        assert edge.ctx is not None and edge.ctx.edge is not None
        ingest = edge.ctx.edge.ingests.get((app, name))
        return None if ingest is None else ingest.state

    return edge.call(read)


def edge_server(origin_port: int, **edge: Any) -> tuple[ServerThread, CountingConnector]:
    settings = {"origins": [f"rtmp://127.0.0.1:{origin_port}"], **edge}
    srv = ServerThread(mode="edge", edge=settings).start()  # type: ignore[arg-type]
    assert srv.ctx is not None and srv.ctx.edge is not None
    counting = CountingConnector(srv.ctx.edge.connector)
    srv.ctx.edge.connector = counting  # set before any play reaches the edge
    return srv, counting


@dataclass
class PlayResult:
    statuses: list[str] = field(default_factory=list)
    media: int = 0
    video_stamps: list[int] = field(default_factory=list)
    first_video_key: bool | None = None
    closed: bool = False


async def play(
    url: str,
    media: int,
    timeout: float = 20.0,
    stop_on_end: bool = True,
    result: PlayResult | None = None,
) -> PlayResult:
    """Play until ``media`` messages arrived, the stream ended, or the timeout.

    Pass ``result`` to watch it fill while the play runs."""
    result = PlayResult() if result is None else result
    client = await RtmpClient.open(url)
    try:
        await client.play()
        async with asyncio.timeout(timeout):
            while result.media < media:
                event = await client.next_event()
                if isinstance(event, StatusReceived):
                    result.statuses.append(event.code)
                    if stop_on_end and event.code in END_CODES:
                        break
                elif isinstance(event, MediaReceived):
                    result.media += 1
                    if event.type_id == MsgType.VIDEO:
                        if result.first_video_key is None and len(event.payload) > 1:
                            kind = classify_video(event.payload)
                            if kind in (0, 1):
                                result.first_video_key = kind == VIDEO_KEYFRAME
                        result.video_stamps.append(event.timestamp)
    except ConnectionError:
        result.closed = True
    except TimeoutError:
        pass
    finally:
        client.close()
    return result


@pytest.fixture
def origin() -> Iterator[ServerThread]:
    """A streamgate origin with ffmpeg publishing live/x."""
    need("ffmpeg")
    with ServerThread() as srv, publisher(srv.url("x")):
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish")
        yield srv


def test_hundred_players_one_upstream_from_streamgate_origin(origin: ServerThread) -> None:
    edge, connects = edge_server(origin.port)
    try:

        async def crowd() -> list[PlayResult]:
            return list(await asyncio.gather(*(play(edge.url("x"), 30) for _ in range(100))))

        results = edge.run(crowd(), timeout=90)
        assert all(r.media >= 30 for r in results), [r.media for r in results]
        assert all(Status.PLAY_START in r.statuses for r in results)
        assert connects.count("x") == 1
        # and a real decoder agrees, through the edge
        result = probe(edge.url("x"), read_seconds=2)
        assert (result.video.codec_name, result.video.width) == ("h264", 320)
        assert result.audio.codec_name == "aac"
        assert origin.players("x") == 1  # the edge's one link, still lingering
        assert connects.count("x") == 1
    finally:
        edge.stop()


def test_hundred_players_one_upstream_from_nginx_origin(tmp_path: Path) -> None:
    need("ffmpeg")
    need_nginx_rtmp()
    with NginxRtmp(tmp_path, "application live { live on; }") as nginx, publisher(
        nginx.url("live", "x")
    ):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="nginx publish")
        edge, connects = edge_server(nginx.rtmp_port)
        try:
            seen: list[int] = []

            async def crowd() -> list[PlayResult]:
                tasks = [asyncio.ensure_future(play(edge.url("x"), 30)) for _ in range(100)]
                while not all(t.done() for t in tasks):  # a sample every 0.2 s until done
                    await asyncio.wait(tasks, timeout=0.2)
                    seen.append(await asyncio.to_thread(nginx.nclients, "live", "x"))
                return [t.result() for t in tasks]

            results = edge.run(crowd(), timeout=90)
            assert all(r.media >= 30 for r in results), [r.media for r in results]
            assert connects.count("x") == 1
            assert max(seen) == 2  # nginx sees its publisher and the edge, nothing more
        finally:
            edge.stop()


def test_nginx_idle_streams_off_missing_is_refused_promptly(tmp_path: Path) -> None:
    need_nginx_rtmp()
    block = "application live { live on; idle_streams off; }"
    with NginxRtmp(tmp_path, block) as nginx:
        edge, connects = edge_server(nginx.rtmp_port, start_timeout=20)
        try:
            started = time.monotonic()
            result = edge.run(play(edge.url("nothere"), 1))
            elapsed = time.monotonic() - started
            assert result.statuses == [Status.PLAY_STREAM_NOT_FOUND]
            # answered by nginx, not by our (20 s) start timeout
            assert elapsed < 10, elapsed
            again = edge.run(play(edge.url("nothere"), 1))
            assert again.statuses == [Status.PLAY_STREAM_NOT_FOUND]
            assert connects.count("nothere") == 1  # the second one hit the negative cache
        finally:
            edge.stop()


def test_nginx_idle_streams_on_missing_after_start_timeout(tmp_path: Path) -> None:
    """Like SRS: the origin accepts the play and sends nothing."""
    need_nginx_rtmp()
    with NginxRtmp(tmp_path, "application live { live on; }") as nginx:
        edge, connects = edge_server(nginx.rtmp_port, start_timeout=1.5, missing_ttl=30)
        try:
            started = time.monotonic()
            result = edge.run(play(edge.url("ghost"), 1))
            elapsed = time.monotonic() - started
            assert result.statuses[-1] == Status.PLAY_STREAM_NOT_FOUND
            assert elapsed >= 1.5
            wait_until(lambda: nginx.nclients("live", "ghost") == 0, timeout=10, what="link closed")
            again = edge.run(play(edge.url("ghost"), 1))
            assert again.statuses == [Status.PLAY_STREAM_NOT_FOUND]
            assert connects.count("ghost") == 1  # no new upstream connection
        finally:
            edge.stop()


def test_flood_of_missing_names_is_bounded_and_origin_stays_responsive() -> None:
    need("ffmpeg")
    duration, ttl, rate, names = 30.0, 10.0, 20, 500
    with ServerThread() as origin, publisher(origin.url("real")):
        wait_until(lambda: origin.published("real"), timeout=15, what="ffmpeg to publish")
        edge, connects = edge_server(
            origin.port, missing_ttl=ttl, max_connects_per_second=rate, start_timeout=5
        )
        try:
            outcomes: Counter[str] = Counter()
            direct_media: list[int] = []
            edge_media: list[int] = []

            async def flooder(name: str, stop_at: float) -> None:
                while time.monotonic() < stop_at:
                    try:
                        result = await play(edge.url(name), 1, timeout=15)
                    except (UpstreamError, OSError):
                        outcomes["connect-error"] += 1
                        await asyncio.sleep(0.05)  # a retrying client's pause
                        continue
                    outcomes[result.statuses[-1] if result.statuses else "no-status"] += 1

            async def legitimate(stop_at: float) -> None:
                while time.monotonic() < stop_at:
                    started = time.monotonic()
                    direct = await play(origin.url("real"), 10, timeout=10)
                    through = await play(edge.url("real"), 10, timeout=10)
                    direct_media.append(direct.media)
                    edge_media.append(through.media)
                    await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - started)))  # 1 per 3 s

            async def flood() -> None:
                # Someone is already watching "real" through the edge, as viewers of
                # a real stream usually are: its link is shared, no connect needed.
                watching = PlayResult()
                watcher = asyncio.ensure_future(
                    play(edge.url("real"), 1_000_000, timeout=duration + 20, result=watching)
                )
                await await_until(lambda: watching.media > 0, timeout=15, what="the watcher")
                stop_at = time.monotonic() + duration
                await asyncio.gather(
                    legitimate(stop_at),
                    *(flooder(f"missing{i}", stop_at) for i in range(names)),
                )
                watcher.cancel()

            # The flood's clients run on their own loop, beside the edge's.
            uvloop.run(flood())

            assert outcomes["no-status"] == 0 and outcomes["connect-error"] == 0, outcomes
            assert set(outcomes) <= {Status.PLAY_STREAM_NOT_FOUND, Status.PLAY_FAILED}
            per_name = Counter(n for _, n in connects.opens if n.startswith("missing"))
            assert max(per_name.values()) <= math.ceil(duration / ttl) + 1, per_name.most_common(3)
            # Every connect, the watched stream's too, shares the one window.
            stamps = sorted(t for t, _ in connects.counted)
            assert len(set(stamps)) == len(stamps), "a connect bypassed the rate window"
            for i in range(len(stamps) - rate):
                assert stamps[i + rate] - stamps[i] >= 1.0, "connect rate cap exceeded"
            # The origin answers a real player every time, all through the flood.
            assert len(direct_media) >= 5 and all(m >= 10 for m in direct_media), direct_media
            # New viewers of a live stream start through the edge all along. (A stream
            # nobody watches yet competes with the flood for the connect budget: all
            # of this comes from one IP, which per-IP limits will tell apart.)
            assert len(edge_media) >= 5 and all(m >= 10 for m in edge_media), edge_media
        finally:
            edge.stop()


def test_frozen_publisher_ends_edge_players_and_closes_link() -> None:
    need("ffmpeg")
    idle = 2.0
    with (
        ServerThread(origin={"publish_idle_timeout": 60}) as origin,
        publisher(origin.url("z")) as pub,
    ):
        wait_until(lambda: origin.published("z"), timeout=15, what="ffmpeg to publish")
        edge, _ = edge_server(origin.port, idle_timeout=idle)
        try:

            async def watch() -> tuple[float, PlayResult]:
                result = PlayResult()
                task = asyncio.ensure_future(play(edge.url("z"), 10_000, timeout=30, result=result))
                await await_until(lambda: result.media > 10, timeout=15, what="media flowing")
                os.kill(pub.pid, signal.SIGSTOP)
                frozen = time.monotonic()
                result = await task
                return time.monotonic() - frozen, result

            try:
                waited, result = edge.run(watch(), timeout=60)
            finally:
                os.kill(pub.pid, signal.SIGCONT)
            assert result.statuses[-1] == Status.PLAY_UNPUBLISH_NOTIFY
            assert result.media > 10
            assert waited < idle + 5, waited  # the fake-clock tests pin the exact bound
            wait_until(lambda: origin.players("z") == 0, timeout=10, what="upstream link closed")
        finally:
            edge.stop()


class OriginProcess:
    """A streamgate origin as its own process, so it can be killed like a real one."""

    def __init__(self, port: int, workdir: Path, play_wait: float = 0.0) -> None:
        self.port = port
        conf = workdir / "origin.toml"
        # No HTTP API: the default port (8080) may be anyone's, a developer's gateway's too.
        conf.write_text(
            f'[rtmp]\nlisten = "127.0.0.1:{port}"\n[http]\nenabled = false\n'
            f"[origin]\nplay_wait = {play_wait}\n"
            '[demo]\nenabled = false\n[log]\nlevel = "warning"\n'
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamgate", "run", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, timeout=15, proc=self.proc)
        except BaseException:
            self.kill()  # never left behind, whatever the test does next
            raise

    def url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye to anyone
        self.proc.wait(10)


def wait_playable(url: str) -> None:
    def ok() -> bool:
        try:
            return uvloop.run(play(url, 1, timeout=3)).media >= 1
        except (UpstreamError, OSError):
            return False

    wait_until(ok, timeout=20, what=f"{url} to play")


def test_origin_killed_and_restarted_within_grace_players_continue(tmp_path: Path) -> None:
    need("ffmpeg")
    port = free_port()
    # The restarted origin holds a play that comes before its publisher (on-demand
    # publishing): the edge may well reconnect before ffmpeg has published again.
    origin = OriginProcess(port, tmp_path, play_wait=4.0)
    edge, connects = edge_server(
        port, reconnect_grace=20, backoff_initial=0.2, backoff_max=1.0, idle_timeout=30
    )
    pubs = [start_publisher(origin.url("r"))]
    try:
        wait_playable(origin.url("r"))

        async def scenario() -> tuple[PlayResult, int]:
            nonlocal origin
            result = PlayResult()
            task = asyncio.ensure_future(play(edge.url("r"), 10_000, timeout=25, result=result))
            await await_until(lambda: len(result.video_stamps) >= 50, timeout=15, what="video")
            origin.kill()
            await asyncio.to_thread(stop_process, pubs[0])
            # Down until the edge has seen the loss and tried again (and failed).
            await await_until(lambda: connects.count("r") >= 2, timeout=10, what="a retry")
            before_restart = len(result.video_stamps)
            origin = await asyncio.to_thread(OriginProcess, port, tmp_path, 4.0)
            pubs.append(start_publisher(origin.url("r")))
            return await task, before_restart

        result, before_restart = edge.run(scenario(), timeout=60)
        assert not any(code in result.statuses for code in END_CODES), result.statuses
        assert connects.count("r") >= 3  # it reconnected
        stamps = result.video_stamps
        assert stamps == sorted(stamps), "timestamps went back across the reconnect"
        assert len(stamps) > 200  # media before and after the outage
        assert len(stamps) > before_restart + 50  # ... after it, from the restarted origin
    finally:
        edge.stop()
        origin.kill()
        for pub in pubs:
            stop_process(pub)


def test_origin_killed_not_back_within_grace_players_get_play_failed(tmp_path: Path) -> None:
    need("ffmpeg")
    port = free_port()
    origin = OriginProcess(port, tmp_path)
    edge, connects = edge_server(port, reconnect_grace=2, backoff_initial=0.2, backoff_max=0.5)
    pub = start_publisher(origin.url("g"))
    try:
        wait_playable(origin.url("g"))

        async def scenario() -> PlayResult:
            result = PlayResult()
            task = asyncio.ensure_future(play(edge.url("g"), 10_000, timeout=30, result=result))
            await await_until(lambda: result.media > 0, timeout=15, what="media flowing")
            origin.kill()
            return await task

        result = edge.run(scenario(), timeout=60)
        assert result.statuses[-1] == Status.PLAY_FAILED
        assert result.media > 0
        wait_until(lambda: ingest_state(edge, "g") is None, timeout=5, what="the ingest to end")
        attempts = connects.count("g")
        assert attempts >= 2  # it did retry within the grace: there was something to stop
        # Nothing may follow: watched for four times the longest backoff (0.5 s).
        time.sleep(2)
        assert connects.count("g") == attempts  # retrying stopped with the players
    finally:
        edge.stop()
        origin.kill()
        stop_process(pub)


def test_closed_origin_port_fails_fast_and_breaker_stops_connects() -> None:
    port = free_port()  # nobody listens here
    edge, connects = edge_server(port, breaker_failures=3, breaker_reset=60)
    try:
        timings = []
        for i in range(3):
            started = time.monotonic()
            result = edge.run(play(edge.url(f"s{i}"), 1))
            timings.append(time.monotonic() - started)
            assert result.statuses == [Status.PLAY_FAILED]
        assert connects.count() == 3
        for i in range(20):
            result = edge.run(play(edge.url(f"t{i}"), 1))
            assert result.statuses == [Status.PLAY_FAILED]
        assert connects.count() == 3  # breaker open: no connect attempt per player
        print(f"closed-port play refusal times: {[f'{t:.3f}' for t in timings]} s")
    finally:
        edge.stop()


def test_linger_reuses_the_link_with_instant_start(origin: ServerThread) -> None:
    edge, connects = edge_server(origin.port, linger=5)
    try:
        first = edge.run(play(edge.url("x"), 20))
        assert first.media >= 20
        wait_until(
            lambda: ingest_state(edge, "x") is IngestState.LINGER,
            timeout=5,
            what="the last player to leave; the link lingers",
        )
        second = edge.run(play(edge.url("x"), 5))
        assert second.media >= 5 and second.first_video_key is True
        assert connects.count("x") == 1
        assert origin.players("x") == 1
    finally:
        edge.stop()


def test_directory_from_nginx_rtmp_stat(tmp_path: Path) -> None:
    """An authoritative directory read from nginx-rtmp's rtmp_stat page: the live
    stream plays, a missing name is refused without a single upstream connect."""
    need("ffmpeg")
    need_nginx_rtmp()
    with NginxRtmp(tmp_path, "application live { live on; }") as nginx, publisher(
        nginx.url("live", "x")
    ):
        wait_until(lambda: nginx.publishing("live", "x"), timeout=15, what="nginx publish")
        edge, connects = edge_server(
            nginx.rtmp_port,
            directory=[f"http://127.0.0.1:{nginx.http_port}/stat"],
            directory_interval=0.2,
            directory_authoritative=True,
        )
        try:
            directory = edge.ctx.edge.directory  # type: ignore[union-attr]
            assert directory is not None
            wait_until(
                lambda: ("live", "x") in directory.listings[0].names,
                timeout=10,
                what="the edge to read nginx's rtmp_stat",
            )
            missing = edge.run(play(edge.url("nope"), 1, timeout=10))
            assert missing.statuses[-1] == Status.PLAY_STREAM_NOT_FOUND, missing.statuses
            assert connects.count() == 0
            live = edge.run(play(edge.url("x"), 30))
            assert live.media >= 30 and Status.PLAY_START in live.statuses
            assert connects.count() == 1
        finally:
            edge.stop()
