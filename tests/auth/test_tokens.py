"""Signed-URL tokens: ours, and the NMS and nginx secure_link formats, exactly."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.auth import Authorizer, MethodConfig, TokenRequest, sign_query
from streamgate.auth.tokens import (
    NmsVerifier,
    SecureLinkVerifier,
    SignedVerifier,
    nms_query,
    secure_link_query,
)

KEYS = {"k1": b"first-secret", "k2": b"second-secret"}
NOW = 1_800_000_000


def req(
    query: str, stream: str = "cam", action: str = "play", ip: str = "10.1.2.3"
) -> TokenRequest:
    return TokenRequest(action, "live", stream, query, ip)


def signed(**kw: object) -> SignedVerifier:
    return SignedVerifier(KEYS, clock_skew=kw.get("skew", 30), bind_ip=bool(kw.get("bind")))  # type: ignore[arg-type]


def test_valid_token_plays() -> None:
    query = sign_query("play", "live", "cam", NOW + 60, KEYS["k1"], "k1")
    assert signed().verify(req(query), NOW) is None


def test_any_single_character_change_is_refused() -> None:
    query = sign_query("play", "live", "cam", NOW + 60, KEYS["k1"], "k1")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    verifier = signed()
    for i in range(len(params["sig"])):  # every character, the last one's spare bits too
        for c in "ABCDw_-0":
            if params["sig"][i] == c:
                continue
            sig = params["sig"][:i] + c + params["sig"][i + 1 :]
            bad = f"exp={params['exp']}&sig={sig}&kid=k1"
            assert verifier.verify(req(bad), NOW) is not None, bad
    exp = params["exp"]
    for i in range(len(exp)):  # every digit of the expiry
        changed = exp[:i] + str((int(exp[i]) + 1) % 10) + exp[i + 1 :]
        bad = query.replace(f"exp={exp}", f"exp={changed}")
        assert verifier.verify(req(bad), NOW) == "bad signature"
    for i in range(len("cam")):  # every character of the stream name
        other = "cam"[:i] + "x" + "cam"[i + 1 :]
        assert verifier.verify(req(query, stream=other), NOW) == "bad signature"


def test_expired_token_is_refused_after_the_skew() -> None:
    query = sign_query("play", "live", "cam", NOW, KEYS["k1"], "k1")
    assert signed(skew=30).verify(req(query), NOW + 30) is None
    assert signed(skew=30).verify(req(query), NOW + 31) == "token expired"


def test_play_token_never_publishes_and_vice_versa() -> None:
    play = sign_query("play", "live", "cam", NOW + 60, KEYS["k1"], "k1")
    publish = sign_query("publish", "live", "cam", NOW + 60, KEYS["k1"], "k1")
    assert signed().verify(req(play, action="publish"), NOW) == "bad signature"
    assert signed().verify(req(publish, action="play"), NOW) == "bad signature"


def test_key_rotation_and_unknown_kid() -> None:
    old = sign_query("play", "live", "cam", NOW + 60, KEYS["k1"], "k1")
    new = sign_query("play", "live", "cam", NOW + 60, KEYS["k2"], "k2")
    unnamed = sign_query("play", "live", "cam", NOW + 60, KEYS["k2"])
    verifier = signed()
    assert verifier.verify(req(old), NOW) is None
    assert verifier.verify(req(new), NOW) is None
    assert verifier.verify(req(unnamed), NOW) is None
    wrong_kid = sign_query("play", "live", "cam", NOW + 60, KEYS["k2"], "k1")
    assert verifier.verify(req(wrong_kid), NOW) == "bad signature"
    assert verifier.verify(req(old.replace("kid=k1", "kid=k9")), NOW) == "unknown key"


def test_ip_binding() -> None:
    query = sign_query("play", "live", "cam", NOW + 60, KEYS["k1"], "k1", ip="10.1.2.3")
    assert signed(bind=True).verify(req(query, ip="10.1.2.3"), NOW) is None
    assert signed(bind=True).verify(req(query, ip="10.1.2.4"), NOW) == "bad signature"


@pytest.mark.parametrize("query", ["", "exp=1", "sig=abc", "exp=abc&sig=x", "exp=1&sig=%%%"])
def test_missing_or_malformed_tokens(query: str) -> None:
    assert signed().verify(req(query), NOW) is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_query_gets_a_verdict_never_an_exception(query: str) -> None:
    for verifier in (signed(), NmsVerifier([b"s"], 30), SecureLinkVerifier([b"s"], 30, True)):
        verdict = verifier.verify(req(query), NOW)
        assert verdict is None or isinstance(verdict, str)


def test_nms_matches_the_published_example() -> None:
    """Node-Media-Server's README: secret nodemedia2017privatekey, /live/stream, 1503458721."""
    verifier = NmsVerifier([b"nodemedia2017privatekey"], clock_skew=0)
    query = "sign=1503458721-80c1d1ad2e0c2ab63eebb50eed64201a"
    assert verifier.verify(req(query, stream="stream"), 1503458700) is None
    assert verifier.verify(req(query, stream="stream"), 1503458722) == "token expired"
    assert verifier.verify(req(query, stream="other"), 1503458700) == "bad signature"
    assert nms_query("live", "stream", 1503458721, b"nodemedia2017privatekey") == query


def test_secure_link_matches_the_nginx_documentation_example() -> None:
    """nginx docs: md5("2147483647/s/link127.0.0.1 secret") = _e4Nc3iduzkWRm01TBBNYw."""
    verifier = SecureLinkVerifier([b"secret"], clock_skew=0, bind_ip=True)
    request = TokenRequest(
        "play", "s", "link", "md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647", "127.0.0.1"
    )
    assert verifier.verify(request, NOW) is None
    other_ip = TokenRequest("play", "s", "link", request.query, "127.0.0.2")
    assert verifier.verify(other_ip, NOW) == "bad signature"
    assert secure_link_query("s", "link", 2147483647, b"secret", "127.0.0.1") == (
        "md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647"
    )


def test_authorizer_uses_separate_keys_per_action() -> None:
    auth = Authorizer(
        MethodConfig("signed", {"p": b"play-key"}),
        MethodConfig("signed", {"q": b"publish-key"}),
    )
    play = sign_query("play", "live", "cam", NOW + 60, b"play-key", "p")
    decision = auth.check(req(play), 1, NOW)
    assert getattr(decision, "allowed", None) is True
    as_publish = sign_query("publish", "live", "cam", NOW + 60, b"play-key", "p")
    refused = auth.check(req(as_publish, action="publish"), 1, NOW)
    assert getattr(refused, "allowed", None) is False
    assert getattr(refused, "label", "") == "auth_unknown_key"
