"""The API against real FFmpeg peers: what it reports about a stream ffmpeg publishes
and plays, and a kick that ffmpeg notices."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.harness import ApiThread, metric, wait_for
from tests.peers import need, player, process_log, publisher

pytestmark = pytest.mark.interop


def stream_of(gw: ApiThread, name: str) -> dict[str, Any] | None:
    reply = gw.get(f"/api/v1/streams/live/{name}")
    return reply.json() if reply.status == 200 else None


def test_ffmpeg_publisher_and_players_as_the_api_sees_them() -> None:
    need("ffmpeg")
    with ApiThread() as gw:
        srv = gw.srv
        with publisher(srv.url("ff"), size="320x240") as pub:
            wait_for(
                lambda: (s := stream_of(gw, "ff")) is not None and s["video"] is not None,
                "ffmpeg's stream with its video header",
                timeout=15,
            )
            with player(srv.url("ff")) as one, player(srv.url("ff")) as two:
                wait_for(
                    lambda: (s := stream_of(gw, "ff")) is not None and s["players"] == 2,
                    "two ffmpeg players",
                    timeout=15,
                )
                stream = stream_of(gw, "ff")
                assert stream is not None
                assert stream["state"] == "live"
                assert (stream["video"]["codec"], stream["video"]["width"]) == ("h264", 320)
                assert stream["video"]["height"] == 240
                assert stream["audio"]["codec"] == "aac"
                assert stream["audio"]["sample_rate"] == 44100
                assert stream["last_keyframe_age_seconds"] is not None
                wait_for(
                    lambda: (s := stream_of(gw, "ff")) is not None and s["bitrate_in_bps"] > 0,
                    "a measured bitrate",
                )
                samples = gw.metrics()
                assert metric(samples, "streamgate_stream_players", app="live", stream="ff") == 2
                assert metric(samples, "streamgate_connections", role="player") == 2

                # Kick one player: that ffmpeg ends, the other plays on.
                clients = gw.get("/api/v1/clients").json()["clients"]
                victim = min(c["id"] for c in clients if c["role"] == "player")
                assert gw.delete(f"/api/v1/clients/{victim}").status == 200
                wait_for(
                    lambda: one.poll() is not None or two.poll() is not None,
                    "the kicked ffmpeg exits",
                    timeout=20,
                )
                assert one.poll() is None or two.poll() is None, process_log(one)
                assert (s := stream_of(gw, "ff")) is not None and s["players"] == 1
            assert pub.poll() is None, process_log(pub)

            # Ending the stream drops ffmpeg's publish too.
            assert gw.delete("/api/v1/streams/live/ff").status == 200
            wait_for(lambda: pub.poll() is not None, "the ffmpeg publisher exits", timeout=20)
