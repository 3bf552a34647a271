"""Signed-URL tokens: streamgate's own scheme and two compatibility formats.

streamgate (``signed``): the query carries ``exp`` (unix seconds), ``sig`` and
optionally ``kid``. ``sig`` is the unpadded base64url HMAC-SHA256, under the
key ``kid`` names, of the canonical string::

    "<action>\\n<app>\\n<stream>\\n<exp>\\n<client ip or empty>"

``action`` is ``play`` or ``publish``, so a token for one never grants the
other even under a shared key; app and stream are covered, so a token for
one stream never plays another; the client IP is covered only when
``bind_ip`` is on.

Node-Media-Server (``nms``): ``sign=<exp>-<md5hex("/<app>/<stream>-<exp>-<secret>")>``.

nginx ``secure_link`` (``secure_link``): ``md5=<base64url md5>&expires=<exp>``
with the md5 over ``"<exp>/<app>/<stream><client ip> <secret>"`` (nginx's
``secure_link_md5 "$secure_link_expires$uri$remote_addr secret"``).

Every comparison is constant-time. A verifier returns ``None`` when the
token is good and a short reason (``"token expired"``, ...) when it is not;
the reason is what the client is told.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

__all__ = [
    "FORMATS",
    "NmsVerifier",
    "SecureLinkVerifier",
    "SignedVerifier",
    "TokenRequest",
    "Verifier",
    "canonical",
    "nms_query",
    "secure_link_query",
    "sign_query",
    "token_query",
]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a token must grant: who asks to do what."""

    action: str  # "play" or "publish"
    app: str
    stream: str
    query: str
    ip: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _params(query: str) -> dict[str, str]:
    """The first value of each parameter; a malformed query simply has none."""
    parsed = parse_qs(query, keep_blank_values=True, max_num_fields=32)
    return {key: values[0] for key, values in parsed.items() if values}


def _unix(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 12:
        return None
    return int(value)


def canonical(action: str, app: str, stream: str, exp: int, ip: str) -> bytes:
    return f"{action}\n{app}\n{stream}\n{exp}\n{ip}".encode()


def sign_query(
    action: str,
    app: str,
    stream: str,
    exp: int,
    secret: bytes,
    kid: str | None = None,
    ip: str = "",
) -> str:
    """The query string granting ``action`` on ``app/stream`` until ``exp``."""
    sig = _b64url(hmac.new(secret, canonical(action, app, stream, exp, ip), "sha256").digest())
    params = {"exp": str(exp), "sig": sig}
    if kid is not None:
        params["kid"] = kid
    return urlencode(params)


def nms_query(app: str, stream: str, exp: int, secret: bytes) -> str:
    """Node-Media-Server's ``sign=<exp>-<md5hex("/app/stream-exp-secret")>``."""
    text = f"/{app}/{stream}-{exp}-".encode() + secret
    return urlencode({"sign": f"{exp}-{hashlib.md5(text).hexdigest()}"})  # noqa: S324


def secure_link_query(app: str, stream: str, exp: int, secret: bytes, ip: str = "") -> str:
    """nginx ``secure_link``: ``md5=<base64url md5("<exp>/app/stream<ip> <secret>")>&expires=``."""
    text = f"{exp}/{app}/{stream}{ip} ".encode() + secret
    return urlencode({"md5": _b64url(hashlib.md5(text).digest()), "expires": str(exp)})  # noqa: S324


FORMATS = ("signed", "nms", "secure_link")


def token_query(
    fmt: str,
    action: str,
    app: str,
    stream: str,
    exp: int,
    secret: bytes,
    kid: str | None = None,
    ip: str = "",
) -> str:
    """The query granting ``action`` in any of the three formats (nms signs no action)."""
    if fmt == "nms":
        return nms_query(app, stream, exp, secret)
    if fmt == "secure_link":
        return secure_link_query(app, stream, exp, secret, ip)
    if fmt == "signed":
        return sign_query(action, app, stream, exp, secret, kid, ip)
    raise ValueError(f"unknown token format {fmt!r}; one of {', '.join(FORMATS)}")


class Verifier:
    """Checks one request's token; ``None`` means granted."""

    def verify(self, request: TokenRequest, now: float) -> str | None:
        raise NotImplementedError


def _verdict(expected: list[bytes], given: bytes, exp: int, now: float, skew: float) -> str | None:
    """Constant-time match against every candidate, then the expiry: an expired
    forgery is reported as a forgery."""
    good = False
    for candidate in expected:
        good |= hmac.compare_digest(candidate, given)
    if not good:
        return "bad signature"
    if now > exp + skew:
        return "token expired"
    return None


class SignedVerifier(Verifier):
    """streamgate's HMAC-SHA256 tokens, with key rotation by ``kid``."""

    def __init__(self, keys: Mapping[str, bytes], clock_skew: float, bind_ip: bool) -> None:
        self.keys = dict(keys)
        self.clock_skew = clock_skew
        self.bind_ip = bind_ip

    def verify(self, request: TokenRequest, now: float) -> str | None:
        params = _params(request.query)
        exp = _unix(params.get("exp"))
        sig = params.get("sig")
        if exp is None or not sig:
            return "token missing"
        kid = params.get("kid")
        if kid is not None:
            secret = self.keys.get(kid)
            candidates = [secret] if secret is not None else []
        else:
            candidates = list(self.keys.values())  # no kid: any active key may have signed
        if not candidates:
            return "unknown key"
        message = canonical(
            request.action, request.app, request.stream, exp, request.ip if self.bind_ip else ""
        )
        # Compare the encoded text, not decoded bytes: base64 decoders ignore the
        # spare bits of the last character, so a changed last character could pass.
        # The signature is checked before the expiry: an expired forgery is a forgery.
        expected = [
            _b64url(hmac.new(secret, message, "sha256").digest()).encode() for secret in candidates
        ]
        return _verdict(expected, sig.encode("ascii", "replace"), exp, now, self.clock_skew)


class NmsVerifier(Verifier):
    """Node-Media-Server's ``sign=<exp>-<md5hex>`` (one secret; extra keys are tried too)."""

    def __init__(self, secrets: list[bytes], clock_skew: float) -> None:
        self.secrets = secrets
        self.clock_skew = clock_skew

    def verify(self, request: TokenRequest, now: float) -> str | None:
        sign = _params(request.query).get("sign")
        if not sign or "-" not in sign:
            return "token missing"
        exp_text, _, digest = sign.partition("-")
        exp = _unix(exp_text)
        if exp is None:
            return "bad signature"
        prefix = f"/{request.app}/{request.stream}-{exp}-".encode()
        expected = [
            hashlib.md5(prefix + secret).hexdigest().encode()  # noqa: S324 - the format's hash
            for secret in self.secrets
        ]
        return _verdict(expected, digest.encode("ascii", "replace"), exp, now, self.clock_skew)


class SecureLinkVerifier(Verifier):
    """nginx ``secure_link``: ``md5=<base64url md5>&expires=<exp>``."""

    def __init__(self, secrets: list[bytes], clock_skew: float, bind_ip: bool) -> None:
        self.secrets = secrets
        self.clock_skew = clock_skew
        self.bind_ip = bind_ip

    def verify(self, request: TokenRequest, now: float) -> str | None:
        params = _params(request.query)
        exp = _unix(params.get("expires"))
        given = params.get("md5")
        if exp is None or not given:
            return "token missing"
        ip = request.ip if self.bind_ip else ""
        prefix = f"{exp}/{request.app}/{request.stream}{ip} ".encode()
        expected = [
            _b64url(hashlib.md5(prefix + secret).digest()).encode()  # noqa: S324 - the format's
            for secret in self.secrets
        ]
        return _verdict(expected, given.encode("ascii", "replace"), exp, now, self.clock_skew)
