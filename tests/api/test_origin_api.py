"""The API of an origin with real RTMP publishers and players over loopback:
listings, stream ends, kicks, and the not-yet-available bans."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamgate.client import RtmpClient
from streamgate.errors import UpstreamError
from streamgate.rtmp.messages import Status
from tests.api.harness import (
    ApiThread,
    metric,
    open_player,
    open_publisher,
    send_frames,
    wait_for,
)


async def refused_play(url: str) -> str:
    client = await RtmpClient.open(url)
    await client.play()
    status = await client.wait_status()
    client.close()
    return status.code


async def closed_by_server(client: RtmpClient, timeout: float = 10.0) -> bool:
    """Skip events until the server closes the connection."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await client.next_event()
    except ConnectionError:
        return True


def test_streams_listing_shows_players_codecs_and_publisher() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("demo")))
        srv.call(lambda: send_frames(pub, sid, 0, 30))
        players = [srv.run(open_player(srv.url("demo"))) for _ in range(2)]
        wait_for(lambda: srv.players("demo") == 2, "two players attached")

        listing = gw.get("/api/v1/streams").json()
        assert listing["mode"] == "origin"
        assert listing["missing_cached_total"] == 0
        [stream] = listing["streams"]
        assert (stream["app"], stream["name"], stream["role"]) == ("live", "demo", "published")
        assert stream["state"] == "live"
        assert stream["players"] == 2
        assert stream["video"] == {
            "codec": "h264",
            "width": 320,
            "height": 240,
            "profile": "Constrained Baseline",
            "level": "1.3",
        }
        assert stream["audio"] == {"codec": "aac", "sample_rate": 44100, "channels": 2}
        assert stream["bytes_in"] > 30 * 200
        assert stream["messages_in"] == 32
        assert stream["bitrate_in_bps"] > 0
        assert stream["bitrate_out_bps_estimate"] == stream["bitrate_in_bps"] * 2
        assert stream["last_keyframe_age_seconds"] is not None
        assert stream["upstream"]["link_age_seconds"] >= 0
        publisher = stream["publisher"]
        clients = {c["id"]: c for c in gw.get("/api/v1/clients").json()["clients"]}
        assert clients[publisher["client_id"]]["peer"] == publisher["peer"]

        single = gw.get("/api/v1/streams/live/demo").json()
        assert single.keys() == stream.keys()
        for key in ("app", "name", "role", "players", "video", "audio", "bytes_in"):
            assert single[key] == stream[key]
        assert gw.get("/api/v1/streams/live/other").status == 404
        srv.call(lambda: [c.close() for c in (pub, *players)])


def test_clients_listing_shows_roles_and_streams() -> None:
    with ApiThread(origin={"play_wait": 30.0}) as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("a")))
        srv.call(lambda: send_frames(pub, sid, 0, 3))
        player = srv.run(open_player(srv.url("a")))
        waiter = srv.run(RtmpClient.open(srv.url("later")))
        srv.run(waiter.play())
        wait_for(lambda: srv.call(lambda: srv.ctx.hub.waiting) == 1, "a waiting player")  # type: ignore[union-attr]

        clients = gw.get("/api/v1/clients").json()["clients"]
        by_role = {
            (c["role"], c["publishing"], tuple(c["playing"]), tuple(c["waiting"])) for c in clients
        }
        assert by_role == {
            ("publisher", "live/a", (), ()),
            ("player", None, ("live/a",), ()),
            ("player", None, (), ("live/later",)),
        }
        for client in clients:
            assert client["app"] == "live"
            assert client["peer"].startswith("127.0.0.1:")
            assert client["connected_seconds"] >= 0
        one = clients[0]
        assert gw.get(f"/api/v1/clients/{one['id']}").json()["id"] == one["id"]
        assert gw.get("/api/v1/clients/424242").status == 404
        assert gw.get("/api/v1/clients/abc").status == 400
        srv.call(lambda: [c.close() for c in (pub, player, waiter)])


def test_deleting_a_stream_ends_its_players_and_drops_the_publisher() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("doomed")))
        srv.call(lambda: send_frames(pub, sid, 0, 10))
        players = [srv.run(open_player(srv.url("doomed"))) for _ in range(2)]

        reply = gw.delete("/api/v1/streams/live/doomed")
        assert reply.status == 200
        assert reply.json() == {"app": "live", "name": "doomed", "ended": ["unpublished"]}
        for player in players:
            status = srv.run(player.wait_status(Status.PLAY_UNPUBLISH_NOTIFY))
            assert "operator" in status.description
            assert srv.run(closed_by_server(player))
        told = srv.run(pub.wait_status(Status.PUBLISH_DENIED))
        assert "operator" in told.description
        assert srv.run(closed_by_server(pub))
        assert not srv.published("doomed")
        assert gw.get("/api/v1/streams").json()["streams"] == []
        assert gw.delete("/api/v1/streams/live/doomed").status == 404
        wait_for(lambda: gw.get("/api/v1/clients").json()["clients"] == [], "all gone")


def test_kicking_a_player_disconnects_only_it() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("k")))
        srv.call(lambda: send_frames(pub, sid, 0, 5))
        victim = srv.run(open_player(srv.url("k")))
        bystander = srv.run(open_player(srv.url("k")))
        clients = gw.get("/api/v1/clients").json()["clients"]
        players = sorted(c["id"] for c in clients if c["role"] == "player")

        reply = gw.delete(f"/api/v1/clients/{players[0]}")
        assert reply.json() == {"id": players[0], "kicked": True}
        assert srv.run(closed_by_server(victim))
        wait_for(lambda: srv.players("k") == 1, "one player left")
        ids = [c["id"] for c in gw.get("/api/v1/clients").json()["clients"]]
        assert players[0] not in ids
        assert players[1] in ids
        assert gw.delete(f"/api/v1/clients/{players[0]}").status == 404
        srv.call(lambda: [c.close() for c in (pub, bystander)])


def test_kicking_the_publisher_ends_the_stream_for_players() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("p")))
        srv.call(lambda: send_frames(pub, sid, 0, 5))
        player = srv.run(open_player(srv.url("p")))
        stream = gw.get("/api/v1/streams/live/p").json()
        assert gw.delete(f"/api/v1/clients/{stream['publisher']['client_id']}").status == 200
        srv.run(player.wait_status(Status.PLAY_UNPUBLISH_NOTIFY))
        assert srv.run(closed_by_server(pub))
        assert gw.get("/api/v1/streams/live/p").status == 404
        srv.call(player.close)


def test_origins_is_empty_on_an_origin_and_ready_while_listening() -> None:
    with ApiThread() as gw:
        assert gw.get("/api/v1/origins").json() == {"mode": "origin", "origins": []}
        assert gw.get("/readyz").json() == {"mode": "origin", "listening": True, "ready": True}
        assert gw.get("/healthz").json()["status"] == "ok"
        srv = gw.srv
        srv.call(lambda: srv.server.stop_accepting())  # type: ignore[union-attr]
        wait_for(lambda: gw.get("/readyz").status == 503, "not ready once not listening")
        assert gw.get("/readyz").json()["listening"] is False
        assert gw.get("/healthz").status == 200


def test_bans_are_listed_and_lifted() -> None:
    """Plays of two distinct missing streams ban the IP (ban_after_failures = 2);
    the ban shows in the API, keeps new connections out, and lifting it lets them in."""
    with ApiThread(limits={"ban_after_failures": 2}) as gw:
        srv = gw.srv
        assert gw.get("/api/v1/bans").json() == {"bans": []}
        for name in ("nope1", "nope2"):
            assert srv.run(refused_play(srv.url(name))) == Status.PLAY_STREAM_NOT_FOUND
        [ban] = gw.get("/api/v1/bans").json()["bans"]
        assert ban["ip"] == "127.0.0.1"
        assert ban["offences"] == 1
        assert ban["expires_in_seconds"] > 0
        assert "missing" in ban["reason"]
        one = gw.get("/api/v1/bans/127.0.0.1").json()
        assert (one["ip"], one["reason"], one["offences"]) == ("127.0.0.1", ban["reason"], 1)
        assert gw.get("/api/v1/bans/10.0.0.1").status == 404
        samples = gw.metrics()
        assert metric(samples, "streamgate_bans_active") == 1
        assert metric(samples, "streamgate_bans_issued_total") == 1

        with pytest.raises((UpstreamError, ConnectionError)):
            srv.run(open_player(srv.url("any")))  # refused at accept: banned
        assert metric(gw.metrics(), "streamgate_rejected_total", reason="banned") == 1

        assert gw.delete("/api/v1/bans/127.0.0.1").json() == {"ip": "127.0.0.1", "lifted": True}
        assert gw.delete("/api/v1/bans/127.0.0.1").status == 404
        assert gw.get("/api/v1/bans").json() == {"bans": []}
        pub, _ = srv.run(open_publisher(srv.url("back")))  # welcome again
        srv.call(pub.close)


def test_lifting_every_ban() -> None:
    with ApiThread(limits={"ban_after_failures": 1}) as gw:
        srv = gw.srv
        srv.run(refused_play(srv.url("nope")))
        assert len(gw.get("/api/v1/bans").json()["bans"]) == 1
        assert gw.delete("/api/v1/bans").json() == {"lifted": 1}
        assert gw.get("/api/v1/bans").json() == {"bans": []}
        assert metric(gw.metrics(), "streamgate_api_actions_total", action="ban_lifted") == 1


def test_reload_applies_the_file_and_reports_errors(tmp_path: Path) -> None:
    conf = tmp_path / "streamgate.toml"
    conf.write_text('[rtmp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n')
    with ApiThread(reloadable=True) as gw:
        srv = gw.srv
        assert gw.request("POST", "/api/v1/reload").status == 422  # no file known yet
        srv.call(lambda: setattr(srv.ctx, "config_path", str(conf)))
        conf.write_text(conf.read_text() + 'token = "fresh"\n')
        reply = gw.request("POST", "/api/v1/reload")
        assert reply.json() == {"reloaded": True, "restart_needed": []}
        # The new token is in force at once, for every /api request after the reload.
        assert gw.get("/api/v1/streams").status == 401
        assert gw.get("/api/v1/streams", token="fresh").status == 200

        conf.write_text("[rtmp]\nbogus = 1\n")
        bad = gw.request("POST", "/api/v1/reload", token="fresh")
        assert bad.status == 422
        assert "bogus" in bad.json()["error"]["message"]
        assert gw.get("/api/v1/streams", token="fresh").status == 200  # nothing changed


def test_reload_without_a_hook_is_501() -> None:
    with ApiThread() as gw:
        assert gw.request("POST", "/api/v1/reload").status == 501
        assert gw.get("/api/v1/reload").status == 405


def test_stream_names_are_percent_decoded() -> None:
    with ApiThread() as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("a b/c")))
        srv.call(lambda: send_frames(pub, sid, 0, 3))
        assert gw.get("/api/v1/streams/live/a%20b/c").json()["name"] == "a b/c"
        assert gw.get("/api/v1/streams/live/a%20b%2Fc").json()["name"] == "a b/c"
        assert gw.get("/api/v1/streams/live/%ff").status == 400
        srv.call(pub.close)
