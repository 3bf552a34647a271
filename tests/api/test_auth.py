"""The bearer token: enforced on /api/*, not on health checks and metrics, and never
echoed in any answer."""

from __future__ import annotations

import pytest

from tests.api.harness import ApiThread, open_publisher, send_frames

TOKEN = "s3cret-token-value"
API_PATHS = ["/api/v1/streams", "/api/v1/clients", "/api/v1/origins", "/api/v1/streams/live/x"]
OPEN_PATHS = ["/healthz", "/readyz", "/metrics"]


@pytest.mark.parametrize("path", API_PATHS)
def test_api_needs_the_token(path: str) -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        missing = gw.get(path)
        assert missing.status == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="streamgate"'
        wrong = gw.get(path, token=TOKEN + "x")
        assert wrong.status == 401
        assert "invalid_token" in wrong.headers["www-authenticate"]
        assert gw.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status == 401
        assert gw.get(path, token=TOKEN).status in (200, 404)  # 404: no stream live/x


def test_unknown_api_paths_and_methods_are_hidden_behind_the_token() -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        assert gw.get("/api/v2/whatever").status == 401
        assert gw.request("POST", "/api/v1/streams").status == 401
        assert gw.get("/api/v2/whatever", token=TOKEN).status == 404
        assert gw.request("POST", "/api/v1/streams", token=TOKEN).status == 405


def test_kicking_needs_the_token() -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("guarded")))
        srv.call(lambda: send_frames(pub, sid, 0, 5))
        assert gw.delete("/api/v1/streams/live/guarded").status == 401
        assert gw.delete("/api/v1/streams/live/guarded", token="nope").status == 401
        assert srv.published("guarded")
        assert gw.delete("/api/v1/streams/live/guarded", token=TOKEN).status == 200
        assert not srv.published("guarded")
        srv.call(pub.close)


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_health_and_metrics_stay_open(path: str) -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        assert gw.get(path).status == 200


def test_without_a_token_the_api_is_open() -> None:
    with ApiThread() as gw:
        for path in API_PATHS[:3]:
            assert gw.get(path).status == 200


def test_the_token_is_never_in_any_answer() -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        srv = gw.srv
        pub, sid = srv.run(open_publisher(srv.url("s")))
        srv.call(lambda: send_frames(pub, sid, 0, 5))
        paths = [*OPEN_PATHS, *API_PATHS, "/api/v1/streams/live/s", "/api/v1/bans", "/nope"]
        for path in paths:
            for token in (None, TOKEN, "wrong"):
                reply = gw.get(path, token=token)
                assert TOKEN.encode() not in reply.body, path
                assert all(TOKEN not in value for value in reply.headers.values()), path
        srv.call(pub.close)
