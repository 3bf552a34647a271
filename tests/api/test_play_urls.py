"""Play URLs from the API: built from the asker's Host and the [flv]/[rtmp] ports,
signed as ``streamgate sign`` signs (and accepted by the gateway's own verifier),
plain without auth, and saying so where the page cannot sign."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from streamgate.api.playurls import TTL, PlayKeys, play_urls, request_host
from streamgate.auth.tokens import NmsVerifier, SecureLinkVerifier, SignedVerifier, TokenRequest
from streamgate.config import load_settings
from tests.api.harness import ApiThread
from tests.peers import free_port

TOKEN = "urls-token"


def urls(**sections: Any) -> dict[str, Any]:
    settings = load_settings(None, **sections)
    return play_urls(settings, PlayKeys(), "live", "cam", host="gw.example", peer="192.0.2.7")


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("gw.example:8080", "gw.example"),
        ("gw.example", "gw.example"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "[::1]"),
        ("[2001:db8::1]", "[2001:db8::1]"),
        (None, None),
        ("", None),
        ("evil.example/path", None),
        ("a b:80", None),
        ("[not-v6]:80", None),
        ("x\r\ny: z", None),
        ("[::1", None),
    ],
)
def test_the_host_comes_from_the_host_header_when_it_is_plain(
    header: str | None, host: str | None
) -> None:
    assert request_host(header) == host


def test_without_auth_the_urls_are_plain() -> None:
    view = urls(rtmp={"listen": "0.0.0.0:1936"}, flv={"enabled": True, "listen": "[::]:8090"})
    assert view["rtmp"] == "rtmp://gw.example:1936/live/cam"
    assert view["flv"] == "http://gw.example:8090/live/cam.flv"
    assert view["ws"] == "ws://gw.example:8090/live/cam.flv"
    assert (view["auth"], view["signed"], view["note"], view["expires"]) == (
        "none",
        False,
        None,
        None,
    )


def test_flv_off_leaves_those_urls_null() -> None:
    assert urls()["flv"] is None and urls()["ws"] is None
    view = urls(flv={"enabled": True, "websocket": False})
    assert view["flv"] == "http://gw.example:8088/live/cam.flv" and view["ws"] is None


def test_without_a_host_the_listen_address_is_used() -> None:
    settings = load_settings(None, rtmp={"listen": "[::]:1937"}, flv={"enabled": True})
    view = play_urls(settings, PlayKeys(), "live", "a b/c", host=None)
    assert view["rtmp"] == "rtmp://127.0.0.1:1937/live/a b/c"
    assert view["flv"] == "http://127.0.0.1:8088/live/a%20b%2Fc.flv"


def _query(url: str) -> str:
    return urlsplit(url).query


def test_signed_urls_verify_with_the_gateway_verifier() -> None:
    keys = {"old": "old-secret", "new": "new-secret"}
    now = time.time()
    view = urls(auth={"play": "signed", "keys": keys}, flv={"enabled": True})
    assert view["signed"] is True and view["note"] is None
    assert now + TTL - 2 <= view["expires"] <= now + TTL + 2
    verifier = SignedVerifier({k: v.encode() for k, v in keys.items()}, 0.0, False, 86400)
    for url in (view["flv"], view["ws"], view["rtmp"]):
        query = _query(url)
        assert "kid=new" in query  # the newest key, the last listed
        assert verifier.verify(TokenRequest("play", "live", "cam", query, "x"), now) is None
        assert verifier.verify(TokenRequest("publish", "live", "cam", query, "x"), now)
        assert verifier.verify(TokenRequest("play", "live", "other", query, "x"), now)


def test_a_short_max_lifetime_shortens_the_ttl() -> None:
    view = urls(auth={"play": "signed", "keys": {"k": "s"}, "max_token_lifetime": 60})
    assert view["expires"] <= time.time() + 61


def test_bind_ip_binds_to_the_asking_address() -> None:
    view = urls(auth={"play": "signed", "keys": {"k": "s"}, "bind_ip": True})
    verifier = SignedVerifier({"k": b"s"}, 0.0, True)
    query = _query(view["rtmp"])
    now = time.time()
    assert verifier.verify(TokenRequest("play", "live", "cam", query, "192.0.2.7"), now) is None
    assert verifier.verify(TokenRequest("play", "live", "cam", query, "192.0.2.8"), now)
    assert "192.0.2.7" in view["note"]


def test_nms_and_secure_link_are_signed_too() -> None:
    now = time.time()
    nms = urls(auth={"play": "nms", "keys": {"k": "nms-secret"}})
    assert NmsVerifier([b"nms-secret"], 0.0).verify(
        TokenRequest("play", "live", "cam", _query(nms["rtmp"]), ""), now
    ) is None
    link = urls(auth={"play": "secure_link", "keys": {"k": "link-secret"}})
    assert SecureLinkVerifier([b"link-secret"], 0.0, False).verify(
        TokenRequest("play", "live", "cam", _query(link["rtmp"]), ""), now
    ) is None


def test_a_hook_cannot_be_signed_here() -> None:
    view = urls(auth={"play": "hook", "hook_url": "http://127.0.0.1:9/hook"})
    assert view["signed"] is False
    assert view["rtmp"] == "rtmp://gw.example:1935/live/cam"
    assert "cannot sign" in view["note"]


def test_the_endpoint() -> None:
    port, flv_port = free_port(), free_port()  # the URLs carry the configured ports: not 0
    with ApiThread(
        rtmp={"listen": f"127.0.0.1:{port}"},
        http={"token": TOKEN},
        auth={"play": "signed", "keys": {"k1": "play-secret"}},
        flv={"enabled": True, "listen": f"127.0.0.1:{flv_port}"},
    ) as gw:
        path = "/api/v1/streams/live/some%2Fcam/play-urls"
        assert gw.get(path).status == 401
        reply = gw.get(path, token=TOKEN, headers={"Host": "viewer.example:1234"})
        assert reply.status == 200
        view = reply.json()
        assert view["name"] == "some/cam"
        assert view["flv"].startswith(f"http://viewer.example:{flv_port}/live/some%2Fcam.flv?exp=")
        assert view["ws"].startswith(f"ws://viewer.example:{flv_port}/live/some%2Fcam.flv?exp=")
        assert view["rtmp"].startswith(f"rtmp://viewer.example:{port}/live/some/cam?exp=")
        verifier = SignedVerifier({"k1": b"play-secret"}, 0.0, False)
        request = TokenRequest("play", "live", "some/cam", _query(view["flv"]), "")
        assert verifier.verify(request, time.time()) is None
