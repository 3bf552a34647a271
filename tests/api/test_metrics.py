"""/metrics as Prometheus parses it, with counters moved by real RTMP peers."""

from __future__ import annotations

import time

from streamgate.client import RtmpClient
from streamgate.rtmp.messages import Status
from tests.api.harness import ApiThread, metric, open_player, open_publisher, send_frames, wait_for

NOT_FOUND = Status.PLAY_STREAM_NOT_FOUND


async def refused_play(url: str) -> str:
    client = await RtmpClient.open(url)
    await client.play()
    status = await client.wait_status()
    client.close()
    return status.code


def test_metrics_parse_and_carry_every_family() -> None:
    with ApiThread() as gw:
        samples = gw.metrics()
        names = {name for name, _ in samples}
        for expected in (
            "streamgate_info",
            "streamgate_ready",
            "streamgate_connections",
            "streamgate_streams",
            "streamgate_players",
            "streamgate_waiting_players",
            "streamgate_bytes_in_total",
            "streamgate_stream_series_omitted",
            "streamgate_protocol_errors_total",
            "streamgate_slow_players_dropped_total",
            "streamgate_bans_issued_total",
            "streamgate_bans_active",
            "streamgate_admitted_connections",
            "streamgate_publishers_idle_dropped_total",
            "streamgate_event_loop_lag_seconds_count",
            "streamgate_event_loop_lag_seconds_bucket",
            "streamgate_event_loop_lag_last_seconds",
            "streamgate_http_connections",
            "streamgate_process_start_time_seconds",
        ):
            assert expected in names, expected
        assert metric(samples, "streamgate_info", mode="origin", version="0.1.0") == 1
        assert metric(samples, "streamgate_ready") == 1
        for role in ("publisher", "player", "unknown"):
            assert metric(samples, "streamgate_connections", role=role) == 0
        # Edge-only families are absent on an origin.
        assert not any(name.startswith("streamgate_upstream_") for name in names)


def test_refused_play_counts_by_reason() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        before = metric(gw.metrics(), "streamgate_plays_refused_total", reason=NOT_FOUND)
        assert before is None  # nothing refused yet: no series
        assert srv.run(refused_play(srv.url("nothere"))) == NOT_FOUND
        assert metric(gw.metrics(), "streamgate_plays_refused_total", reason=NOT_FOUND) == 1
        assert srv.run(refused_play(srv.url("nothere2"))) == NOT_FOUND
        assert metric(gw.metrics(), "streamgate_plays_refused_total", reason=NOT_FOUND) == 2


def test_connections_streams_players_and_bytes() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("m")))
        srv.call(lambda: send_frames(pub, sid, 0, 20))
        players = [srv.run(open_player(srv.url("m"))) for _ in range(3)]
        wait_for(lambda: srv.players("m") == 3, "three players")
        samples = gw.metrics()
        assert metric(samples, "streamgate_connections", role="publisher") == 1
        assert metric(samples, "streamgate_connections", role="player") == 3
        assert metric(samples, "streamgate_streams", role="published", state="live") == 1
        assert metric(samples, "streamgate_players") == 3
        assert metric(samples, "streamgate_stream_players", app="live", stream="m") == 3
        assert metric(samples, "streamgate_stream_publishers", app="live", stream="m") == 1
        bytes_in = metric(samples, "streamgate_bytes_in_total")
        assert bytes_in is not None
        assert bytes_in > 20 * 200
        assert (
            metric(samples, "streamgate_stream_bytes_in_total", app="live", stream="m") == bytes_in
        )

        srv.call(lambda: send_frames(pub, sid, 20, 20))
        wait_for(
            lambda: (metric(gw.metrics(), "streamgate_bytes_in_total") or 0) > bytes_in,
            "bytes_in grows",
        )
        grown = metric(gw.metrics(), "streamgate_bytes_in_total")
        srv.call(pub.close)  # the stream ends; its bytes stay in the total
        wait_for(lambda: not srv.published("m"), "stream gone")
        after = gw.metrics()
        assert metric(after, "streamgate_bytes_in_total") == grown
        assert metric(after, "streamgate_stream_players", app="live", stream="m") is None
        assert metric(after, "streamgate_streams", role="published", state="live") == 0
        srv.call(lambda: [p.close() for p in players])


def test_per_stream_series_are_capped_to_the_top_streams_by_players() -> None:
    with ApiThread(max_stream_series=2) as gw:
        srv = gw.srv

        async def scenario() -> list[RtmpClient]:
            clients: list[RtmpClient] = []
            for name, audience in (("big", 3), ("mid", 2), ("small", 1), ("empty", 0)):
                pub, sid = await open_publisher(srv.url(name))
                send_frames(pub, sid, 0, 2)
                clients.append(pub)
                for _ in range(audience):
                    clients.append(await open_player(srv.url(name)))
            return clients

        clients = srv.run(scenario())
        samples = gw.metrics()
        shown = {
            dict(labels)["stream"]: value
            for (name, labels), value in samples.items()
            if name == "streamgate_stream_players"
        }
        assert shown == {"big": 3, "mid": 2}
        assert metric(samples, "streamgate_stream_series_omitted") == 2
        assert metric(samples, "streamgate_players") == 6  # totals are not capped
        srv.call(lambda: [c.close() for c in clients])


def test_event_loop_lag_is_sampled() -> None:
    with ApiThread(lag_interval=0.02) as gw:
        srv = gw.srv
        wait_for(
            lambda: (metric(gw.metrics(), "streamgate_event_loop_lag_seconds_count") or 0) >= 3,
            "three lag samples",
        )

        def slow(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
            """Samples that saw more than 0.1 s of lag."""
            total = metric(samples, "streamgate_event_loop_lag_seconds_count") or 0
            return total - (
                metric(samples, "streamgate_event_loop_lag_seconds_bucket", le="0.1") or 0
            )

        before = slow(gw.metrics())
        srv.call(lambda: time.sleep(0.3))  # blocks the loop: the next tick is late
        wait_for(lambda: slow(gw.metrics()) > before, "the blocking call shows as lag")
        samples = gw.metrics()
        count = metric(samples, "streamgate_event_loop_lag_seconds_count")
        assert metric(samples, "streamgate_event_loop_lag_seconds_bucket", le="+Inf") == count


def test_api_actions_and_http_responses_are_counted() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("x")))
        srv.call(lambda: send_frames(pub, sid, 0, 2))
        gw.delete("/api/v1/streams/live/x")
        gw.get("/nope")
        samples = gw.metrics()
        assert metric(samples, "streamgate_api_actions_total", action="stream_ended") == 1
        assert metric(samples, "streamgate_http_responses_total", code="404") == 1
        assert (metric(samples, "streamgate_http_responses_total", code="200") or 0) >= 1
        srv.call(pub.close)
