"""Token expiries: a malformed one is named as such, and lifetimes are bounded.

Every format that carries an expiry (signed, nms, secure_link) refuses an
``exp`` that is not plain unix seconds with "malformed exp" (not "token
missing"), counted under its own label, and a token that would stay valid
for longer than ``max_token_lifetime`` (plus the clock skew).
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest

from streamgate import cli
from streamgate.auth import AuthDecision, Authorizer, MethodConfig, TokenRequest
from streamgate.auth.tokens import (
    NmsVerifier,
    SecureLinkVerifier,
    SignedVerifier,
    Verifier,
    token_query,
)
from streamgate.client import RtmpClient
from streamgate.config import load_settings
from streamgate.rtmp.messages import Status
from streamgate.server.context import _authorizer
from tests.server.harness import ServerThread

MALFORMED_EXP = "malformed exp"
LIFETIME_EXCEEDED = "token lifetime exceeds max_token_lifetime"
SECRET = b"play-secret"
NOW = 1_800_000_000
SKEW = 30
DAY = 86_400
FORMATS = ("signed", "nms", "secure_link")
# What the hostile run sent, and a few more that are not plain unix seconds.
BAD_EXPIRIES = ["1.5", "-5", "9" * 40, "1e400", "", "+5", " 5", "\u00b2", "0x10"]


def verifier(fmt: str, max_lifetime: float = 0.0) -> Verifier:
    if fmt == "signed":
        return SignedVerifier({"k1": SECRET}, SKEW, False, max_lifetime)
    if fmt == "nms":
        return NmsVerifier([SECRET], SKEW, max_lifetime)
    return SecureLinkVerifier([SECRET], SKEW, False, max_lifetime)


def query(fmt: str, exp: int) -> str:
    return token_query(fmt, "play", "live", "cam", exp, SECRET, "k1" if fmt == "signed" else None)


def with_exp(fmt: str, exp_text: str) -> str:
    """A token of ``fmt`` whose expiry field reads ``exp_text`` (the rest well formed)."""
    params = {k: v[0] for k, v in parse_qs(query(fmt, NOW + 60)).items()}
    if fmt == "signed":
        params["exp"] = exp_text
    elif fmt == "nms":
        params["sign"] = exp_text + "-" + params["sign"].partition("-")[2]
    else:
        params["expires"] = exp_text
    return urlencode(params)


def req(q: str) -> TokenRequest:
    return TokenRequest("play", "live", "cam", q, "10.0.0.1")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("exp_text", BAD_EXPIRIES)
def test_a_malformed_exp_is_named(fmt: str, exp_text: str) -> None:
    assert verifier(fmt).verify(req(with_exp(fmt, exp_text)), NOW) == MALFORMED_EXP


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_token_without_exp_is_still_missing(fmt: str) -> None:
    params = parse_qs(query(fmt, NOW + 60))
    params.pop({"signed": "exp", "nms": "sign", "secure_link": "expires"}[fmt])
    assert verifier(fmt).verify(req(urlencode(params, doseq=True)), NOW) == "token missing"


@pytest.mark.parametrize("fmt", FORMATS)
def test_lifetime_is_bounded_by_max_lifetime_plus_skew(fmt: str) -> None:
    bounded = verifier(fmt, max_lifetime=DAY)
    assert bounded.verify(req(query(fmt, NOW + DAY + SKEW)), NOW) is None
    assert bounded.verify(req(query(fmt, NOW + DAY + SKEW + 1)), NOW) == LIFETIME_EXCEEDED
    three_thousand_years = NOW + 10**11
    assert bounded.verify(req(query(fmt, three_thousand_years)), NOW) == LIFETIME_EXCEEDED
    # 0: no maximum, as before.
    assert verifier(fmt).verify(req(query(fmt, three_thousand_years)), NOW) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_long_lived_forgery_is_still_a_forgery(fmt: str) -> None:
    forged = token_query(fmt, "play", "live", "cam", NOW + 10**9, b"wrong", "k1")
    assert verifier(fmt, max_lifetime=DAY).verify(req(forged), NOW) == "bad signature"


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_refusal_has_its_own_label(fmt: str) -> None:
    auth = Authorizer(
        MethodConfig(fmt, {"k1": SECRET}, SKEW, max_lifetime=DAY), MethodConfig("none", {})
    )
    malformed = auth.check(req(with_exp(fmt, "1e400")), 1, NOW)
    assert malformed == AuthDecision(False, MALFORMED_EXP, "auth_malformed_exp")
    too_long = auth.check(req(query(fmt, NOW + 2 * DAY)), 1, NOW)
    assert too_long == AuthDecision(False, LIFETIME_EXCEEDED, "auth_lifetime_exceeded")


def test_the_setting_reaches_the_verifiers() -> None:
    default = _authorizer(load_settings(None, auth={"play": "signed", "keys": {"k1": "s"}}))
    two_days = token_query("signed", "play", "live", "cam", NOW + 2 * DAY, b"s", "k1")
    decision = default.check(req(two_days), 1, NOW)
    assert isinstance(decision, AuthDecision) and decision.reason == LIFETIME_EXCEEDED
    unbounded = _authorizer(
        load_settings(
            None, auth={"play": "signed", "keys": {"k1": "s"}, "max_token_lifetime": 0}
        )
    )
    assert unbounded.check(req(two_days), 1, NOW) == AuthDecision(True)


def test_a_server_tells_and_counts_a_malformed_exp() -> None:
    settings = {"play": "signed", "keys": {"k1": SECRET.decode()}}
    with ServerThread(auth=settings) as srv:

        async def play() -> str:
            client = await RtmpClient.open(srv.url("cam"))
            try:
                await client.play("cam?" + with_exp("signed", "1e400"))
                status = await client.wait_status(Status.PLAY_FAILED)
                return status.description
            finally:
                client.close()

        assert srv.run(play()) == MALFORMED_EXP
        rejected = srv.call(lambda: dict(srv.ctx.counters.rejected) if srv.ctx else {})
        assert rejected.get("auth_malformed_exp") == 1
        assert "auth_token_missing" not in rejected


# ------------------------------------------------------------ streamgate sign


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMGATE_SIGN_SECRET", SECRET.decode())
    monkeypatch.delenv("STREAMGATE_AUTH__MAX_TOKEN_LIFETIME", raising=False)


URL = "rtmp://127.0.0.1:1935/live/cam"


def test_sign_refuses_a_ttl_over_the_maximum(
    secret_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sign", URL, "--ttl", str(2 * DAY)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "exceeds max_token_lifetime" in err and "86400" in err


def test_sign_makes_tokens_the_server_accepts(
    secret_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sign", URL, "--ttl", str(DAY)]) == 0
    signed_url = capsys.readouterr().out.strip()
    q = signed_url.partition("?")[2]
    check = SignedVerifier({"": SECRET}, SKEW, False, DAY)
    assert check.verify(req(q), time.time()) is None


def test_sign_maximum_from_the_option_or_the_configuration(
    secret_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sign", URL, "--ttl", str(2 * DAY), "--max-lifetime", "0"]) == 0
    assert cli.main(["sign", URL, "--ttl", "700", "--max-lifetime", "600"]) == 2
    conf = tmp_path / "sg.toml"
    conf.write_text('[auth]\nmax_token_lifetime = 600\nkeys = { k1 = "play-secret" }\n')
    assert cli.main(["sign", URL, "--ttl", "700", "-c", str(conf), "--kid", "k1"]) == 2
    assert cli.main(["sign", URL, "--ttl", "600", "-c", str(conf), "--kid", "k1"]) == 0


@pytest.mark.parametrize("ttl", ["inf", "nan", "0", "-60"])
def test_sign_refuses_a_ttl_that_is_not_a_positive_number(
    secret_env: None, ttl: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sign", URL, f"--ttl={ttl}"]) == 2
    assert "--ttl must be a positive number" in capsys.readouterr().err
