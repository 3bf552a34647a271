"""librtmp (rtmpdump) as a player: the RTMP code OBS and many Flash-era tools grew
from, with its own handshake, command sequence and end-of-stream rules."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from tests.peers import (
    need,
    probe,
    process_log,
    publisher,
    start_rtmpdump,
    stop_process,
    wait_until,
)
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop


def exited(proc: subprocess.Popen[bytes], within: float) -> int:
    try:
        return proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise AssertionError(
            f"rtmpdump still running after {within:g} s:\n{process_log(proc)}"
        ) from None


def test_rtmpdump_records_a_live_stream_and_stops_when_it_ends(
    gateway: tuple[ServerThread, ServerThread], tmp_path: Path
) -> None:
    origin, srv = gateway
    need("ffmpeg")
    out = tmp_path / "x.flv"
    with publisher(origin.url("x")) as pub:
        wait_until(lambda: origin.published("x"), timeout=15, what="ffmpeg to publish")
        dump = start_rtmpdump(srv.url("x"), out, timeout=20)
        try:
            # Three seconds and more of 320x240 H.264 + AAC (about 750 kbit/s).
            wait_until(
                lambda: out.exists() and out.stat().st_size > 300_000,
                timeout=20,
                what=f"rtmpdump to record:\n{process_log(dump)}",
            )
        finally:
            stop_process(pub)  # the publisher leaves: players are told, librtmp exits
        code = exited(dump, within=15)
    assert code in (0, 2), process_log(dump)  # RD_SUCCESS, or RD_INCOMPLETE for a live dump
    result = probe(str(out), read_seconds=60)
    assert (result.video.codec_name, result.video.width) == ("h264", 320)
    assert result.audio.codec_name == "aac"
    dts = [t for t in result.video.dts if t is not None]
    assert len(dts) == len(result.video.dts), result.video.dts[:20]  # none missing
    assert len(dts) >= 50 and all(b > a for a, b in itertools.pairwise(dts)), dts[:20]
    assert result.video.keyframes[0], "the recording does not start at a keyframe"


def test_rtmpdump_of_a_missing_stream_fails_at_once(
    gateway: tuple[ServerThread, ServerThread], tmp_path: Path
) -> None:
    _, srv = gateway
    dump = start_rtmpdump(srv.url("nobody"), tmp_path / "none.flv", timeout=30)
    code = exited(dump, within=15)  # far less than its 30 s no-data timeout
    assert code == 1, process_log(dump)  # RD_FAILED
    assert "StreamNotFound" in process_log(dump) or "NetStream.Play" in process_log(dump)
