"""Self-test of tests/peers.py against nginx-rtmp, ffmpeg and ffprobe alone."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from tests import peers
from tests.peers import NginxRtmp, play_status, probe, wait_until

pytestmark = pytest.mark.interop


def _explain(nginx: NginxRtmp, *procs: subprocess.Popen[bytes]) -> str:
    """Context for an assertion message: nginx logs and the ffmpeg output."""
    parts = [nginx.logs()]
    for proc in procs:
        parts.append(f"--- {proc.args!r} (status {proc.returncode}) ---")
        parts.append(peers.process_log(proc))
    return "\n".join(parts)


def test_publish_probe_and_count_clients(tmp_path: Path) -> None:
    with NginxRtmp(tmp_path, "application live { live on; }") as nginx:
        url = nginx.url("live", "x")
        assert url == f"rtmp://127.0.0.1:{nginx.rtmp_port}/live/x"
        assert not nginx.publishing("live", "x")
        assert nginx.nclients("live", "x") == 0

        with peers.publisher(url) as pub:
            try:
                wait_until(
                    lambda: nginx.publishing("live", "x"), timeout=10, what="ffmpeg publishing"
                )
            except TimeoutError as exc:
                pytest.fail(f"{exc}\n{_explain(nginx, pub)}")
            assert pub.poll() is None, _explain(nginx, pub)

            result = probe(url, timeout=10, read_seconds=2)
            video, audio = result.video, result.audio
            assert (video.codec_name, video.width, video.height) == ("h264", 320, 240)
            assert (audio.codec_name, audio.sample_rate, audio.channels) == ("aac", 44100, 1)
            dts = [t for t in video.dts if t is not None]
            assert len(dts) >= 20, video.dts  # ~2 s at 25 fps
            assert all(a < b for a, b in itertools.pairwise(dts)), dts
            assert audio.dts, "no audio packets"

            [publisher_client] = nginx.clients("live", "x")
            assert "publishing" in publisher_client
            assert publisher_client["address"] == "127.0.0.1"
            assert publisher_client["flashver"].startswith("FMLE/3.0")

            with peers.player(url) as play:
                wait_until(
                    lambda: nginx.nclients("live", "x") == 2, timeout=10, what="player counted"
                )
                clients = nginx.clients("live", "x")
                players = [c for c in clients if "publishing" not in c]
                assert len(players) == 1, clients
                assert players[0]["flashver"] == "LNX 9,0,124,2"
                assert play.poll() is None, _explain(nginx, play)
            assert play.returncode is not None  # reaped by the context manager
            wait_until(lambda: nginx.nclients("live", "x") == 1, timeout=10, what="player gone")
        assert pub.returncode is not None
        wait_until(lambda: not nginx.publishing("live", "x"), timeout=10, what="publisher gone")
    assert nginx.proc is None
    assert "nginx.conf" in {p.name for p in tmp_path.iterdir()}


def test_missing_stream_refused_when_idle_streams_off(tmp_path: Path) -> None:
    with NginxRtmp(tmp_path, "application live { live on; idle_streams off; }") as nginx:
        outcome = play_status(nginx.url("live", "missing"), timeout=10)
    assert not outcome.timed_out, outcome.stderr
    assert outcome.returncode == 1, outcome.stderr
    assert outcome.server_error == "No such stream", outcome.stderr
    assert "Operation not permitted" in outcome.stderr
    assert outcome.elapsed < 5, outcome


def test_idle_stream_play_times_out_with_rw_timeout(tmp_path: Path) -> None:
    # Default idle_streams on: nginx accepts the play and sends nothing.
    with NginxRtmp(tmp_path, "application live { live on; }") as nginx:
        outcome = play_status(nginx.url("live", "nobody"), timeout=2)
    assert not outcome.timed_out, "-rw_timeout did not bound the rtmp read"
    assert outcome.returncode != 0
    assert outcome.server_error is None
    assert outcome.elapsed < 4, outcome


def test_pull_relay_between_two_nginx(tmp_path: Path) -> None:
    with NginxRtmp(tmp_path / "origin", "application live { live on; }") as origin:
        edge_block = (
            f"application live {{ live on; pull rtmp://127.0.0.1:{origin.rtmp_port}/live; }}"
        )
        with (
            NginxRtmp(tmp_path / "edge", edge_block) as edge,
            peers.publisher(origin.url("live", "s")) as pub,
        ):
            wait_until(lambda: origin.publishing("live", "s"), timeout=10, what="origin ingest")
            result = probe(edge.url("live", "s"), timeout=10, read_seconds=1)
            assert result.video.codec_name == "h264", _explain(edge, pub)

            with peers.player(edge.url("live", "s")):
                # The edge's pull session is one more (playing) client of the origin...
                wait_until(lambda: origin.nclients("live", "s") == 2, timeout=10, what="edge pulls")
                # ...and shows up on the edge as the stream's publisher.
                [relay] = [c for c in edge.clients("live", "s") if "publishing" in c]
                assert relay["flashver"] == "ngx-local-relay"
                assert relay["address"] == f"127.0.0.1:{origin.rtmp_port}/live"
            # nginx-rtmp drops the pull once the edge has no player left.
            wait_until(
                lambda: origin.nclients("live", "s") == 1, timeout=10, what="edge pull closed"
            )


def test_nginx_start_failure_reports_error_log(tmp_path: Path) -> None:
    nginx = NginxRtmp(tmp_path, "application live { live on; bogus_directive 1; }")
    with pytest.raises(peers.PeerError, match="bogus_directive"):
        nginx.start()
    assert nginx.proc is None


def test_wait_port_times_out() -> None:
    port = peers.free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        peers.wait_port(port, timeout=0.3)


def test_process_log_captures_ffmpeg_error(tmp_path: Path) -> None:
    # Nothing listens there: ffmpeg fails fast and its error text is kept.
    url = f"rtmp://127.0.0.1:{peers.free_port()}/live/x"
    with peers.publisher(url) as pub:
        pub.wait(timeout=10)
    assert pub.returncode != 0
    assert "Connection refused" in peers.publisher_log(pub)


def test_need_missing_binary_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        peers.need("streamgate-no-such-binary")
    assert peers.need("ffmpeg").endswith("/ffmpeg")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_need_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI"):
        peers.need("streamgate-no-such-binary")


def test_need_nginx_rtmp_missing_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(peers, "NGINX_RTMP_MODULE", tmp_path / "nope.so")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="libnginx-mod-rtmp"):
        peers.need_nginx_rtmp()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="libnginx-mod-rtmp"):
        peers.need_nginx_rtmp()
