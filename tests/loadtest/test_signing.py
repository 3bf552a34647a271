"""Signed URLs are what streamgate's own verifiers accept."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from streamgate.auth.tokens import NmsVerifier, SecureLinkVerifier, SignedVerifier, TokenRequest
from streamgate.loadtest.run import LoadConfig, player_urls
from streamgate.loadtest.signing import UrlSigner, add_query

SECRET = b"s3cret"
NOW = 1_800_000_000.0


def _request(url: str) -> TokenRequest:
    parts = urlsplit(url)
    app, _, stream = parts.path.lstrip("/").partition("/")
    return TokenRequest("play", app, stream, parts.query, "127.0.0.1")


@pytest.mark.parametrize(
    ("fmt", "verifier"),
    [
        ("signed", SignedVerifier({"k1": SECRET}, 30.0, bind_ip=False)),
        ("nms", NmsVerifier([SECRET], 30.0)),
        ("secure_link", SecureLinkVerifier([SECRET], 30.0, bind_ip=True)),
    ],
)
def test_each_format_verifies(fmt: str, verifier: object) -> None:
    bound = fmt == "secure_link"  # that verifier covers the client address
    signer = UrlSigner(
        SECRET,
        fmt,
        ttl=60.0,
        kid="k1" if fmt == "signed" else None,
        ip="127.0.0.1" if bound else "",
    )
    url = signer.sign("rtmp://127.0.0.1:1935/live/cam7", now=NOW)
    assert verifier.verify(_request(url), NOW) is None  # type: ignore[attr-defined]
    assert verifier.verify(_request(url), NOW + 1000) == "token expired"  # type: ignore[attr-defined]
    other = url.replace("cam7", "cam8")
    assert verifier.verify(_request(other), NOW) == "bad signature"  # type: ignore[attr-defined]


def test_urls_distinct_names_query_and_signing() -> None:
    config = LoadConfig(
        url="rtmp://127.0.0.1:1935/live/s{i}",
        players=5,
        streams=2,
        query="tag=lt",
        signer=UrlSigner(SECRET, "nms"),
    )
    urls = player_urls(config)
    assert len(urls) == 5
    assert [urlsplit(u).path for u in urls] == ["/live/s0", "/live/s1"] * 2 + ["/live/s0"]
    assert all("tag=lt&sign=" in u for u in urls)
    assert urls[0] == urls[2]  # each distinct URL is signed once
    assert add_query("rtmp://h/a/b?x=1", "y=2") == "rtmp://h/a/b?x=1&y=2"
    with pytest.raises(ValueError):
        UrlSigner(SECRET, "md5")
