"""A reload that changes ``[rtmp] chunk_size`` under a live stream, seen by real FFmpeg.

A stream is encoded for its players; a reload changes the chunk size new
connections are told. A player told one size, watching a stream made with
the other, must still be sent chunks of the size it was told.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamgate.config import Settings, load_settings
from tests.peers import need, process_log, publisher, start_player, stop_process, wait_until
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop


def _settings(chunk_size: int) -> Settings:
    return load_settings(
        None,
        rtmp={"listen": "127.0.0.1:0", "chunk_size": chunk_size},
        limits={"allow": ["127.0.0.0/8"]},
    )


@pytest.fixture(params=[(4096, 60000), (60000, 4096)], ids=["4096-then-60000", "60000-then-4096"])
def reloaded(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """A stream published at one chunk size, then the server reloaded to the other."""
    need("ffmpeg")
    before, after = request.param
    with ServerThread(_settings(before)) as srv, publisher(srv.url("x"), size="640x360") as pub:
        wait_until(lambda: srv.published("x"), timeout=15, what="ffmpeg to publish live/x")
        assert srv.ctx is not None
        new = _settings(after)  # what SIGHUP would read: only the chunk size differs
        assert srv.call(lambda: srv.ctx.apply(new)) == []  # type: ignore[union-attr]
        assert srv.call(lambda: srv.ctx.limits.chunk_size) == after  # type: ignore[union-attr]
        yield srv
        assert pub.poll() is None, process_log(pub)


def test_ffmpeg_plays_a_stream_made_before_a_chunk_size_reload(reloaded: ServerThread) -> None:
    proc = start_player(reloaded.url("x"), duration=3, rw_timeout=5)
    try:
        assert proc.wait(timeout=20) == 0, process_log(proc)
    finally:
        stop_process(proc)
    log = process_log(proc)
    # FFmpeg says "RTMP packet size mismatch" and decodes garbage when the
    # chunks are not the size it was told; -loglevel error shows any of it.
    assert log.strip() == "", log
