"""Signed play URLs for load tests of deployments that check them.

Uses the token formats of :mod:`streamgate.auth.tokens` (what ``streamgate
sign`` prints): streamgate's ``signed`` (HMAC-SHA256, optional key id),
Node-Media-Server's ``nms`` and nginx's ``secure_link``. As with ``streamgate
sign``, the secret is read from an environment variable or a file, never
from the command line. Any other fixed token can be passed as a query
string (``--query``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamgate.auth.tokens import FORMATS, token_query
from streamgate.client import parse_rtmp_url
from streamgate.loadtest.flv import FLV_SCHEMES, parse_flv_url

__all__ = ["FORMATS", "UrlSigner", "add_query"]

def add_query(url: str, query: str) -> str:
    """Append ``query`` (``a=b&c=d``) to the URL's own query string, if any."""
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


@dataclass
class UrlSigner:
    """Signs play URLs, each distinct URL once per run."""

    secret: bytes = field(repr=False)
    format: str = "signed"
    ttl: float = 3600.0
    kid: str | None = None
    ip: str = ""  # for tokens bound to the client's address (127.0.0.1 on loopback)
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown token format {self.format!r}; one of {', '.join(FORMATS)}")
        if not self.secret:
            raise ValueError("empty signing secret")

    def sign(self, url: str, now: float | None = None) -> str:
        cached = self._cache.get(url)
        if cached is not None:
            return cached
        if url.partition("://")[0] in FLV_SCHEMES:  # HTTP-FLV, WebSocket-FLV
            flv = parse_flv_url(url)
            app, stream = flv.app, flv.stream
        else:
            parsed = parse_rtmp_url(url)
            app, stream = parsed.app, parsed.name.partition("?")[0]
        exp = int((time.time() if now is None else now) + self.ttl)
        query = token_query(self.format, "play", app, stream, exp, self.secret, self.kid, self.ip)
        signed = self._cache[url] = add_query(url, query)
        return signed
