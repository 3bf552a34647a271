"""The built-in page on the ``[http]`` listener: ``GET /`` and ``GET /static/...``
(its files are the package data of :mod:`streamgate.web`).

``/`` is a static HTML shell; everything it shows comes from ``/api/v1/*``,
fetched by its script with ``Authorization: Bearer``. When ``[http] token`` is
set, ``/`` itself needs the token too, as ``Authorization: Bearer`` or as a
``token`` query parameter (what the little form of the 401 answer sends; the
page moves it to ``sessionStorage`` and takes it out of the address bar), so
nobody without the token learns even that a page is there. ``/static/...``
holds no state (the page's script, its style, the vendored mpegts.js) and is
open, with an ETag so a browser asks again cheaply.

Every answer carries a Content-Security-Policy that allows scripts, styles and
images from this listener only (``blob:`` images and media: thumbnails fetched
with the token, and the player's MediaSource), no inline script or style, and
connections to this listener and the ``[flv]`` one; plus ``no-referrer``, no
framing and ``nosniff``. Files are read from the package once, on first use.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from streamgate.api.http import Request, Response
from streamgate.api.playurls import listen_host, request_host
from streamgate.api.routing import PathArgs, Route, token_matches

if TYPE_CHECKING:
    from streamgate.config import Settings

__all__ = ["STATIC_TYPES", "Assets", "page_routes", "security_headers"]

STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""What ``/static/`` serves, by file name ending; any other file of the package is not served."""

_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class Assets:
    """The page's files, read from the package data once."""

    def __init__(self, root: Traversable | None = None) -> None:
        self._root = root if root is not None else resources.files("streamgate.web")
        self._static: dict[str, Asset] | None = None
        self._pages: dict[str, str] = {}

    def static(self, path: str) -> Asset | None:
        if self._static is None:
            found: dict[str, Asset] = {}
            _collect(self._root / "static", "", found)
            self._static = found
        return self._static.get(path)

    def page(self, name: str) -> str:
        text = self._pages.get(name)
        if text is None:
            text = (self._root / "pages" / name).read_text(encoding="utf-8")
            self._pages[name] = text
        return text


def _collect(folder: Traversable, prefix: str, into: dict[str, Asset]) -> None:
    for item in folder.iterdir():
        path = f"{prefix}{item.name}"
        if item.is_dir():
            _collect(item, f"{path}/", into)
            continue
        suffix = "." + item.name.rpartition(".")[2]
        content_type = STATIC_TYPES.get(suffix)
        if content_type is None:
            continue
        body = item.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        into[path] = Asset(body, content_type, etag)


def _flv_origins(settings: Settings, host: str | None) -> list[str]:
    """Origins the player connects to: the [flv] listener over HTTP and WebSocket."""
    flv = settings.flv
    if not flv.enabled:
        return []
    own, port = listen_host(flv.listen)  # the play URLs use the first address
    name = host or own
    return [f"http://{name}:{port}", *([f"ws://{name}:{port}"] if flv.websocket else [])]


def security_headers(connect: list[str] | None = None) -> tuple[tuple[str, str], ...]:
    """The headers of every page answer; ``connect``: origins scripts may reach
    besides this listener."""
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob:",
            "media-src 'self' blob:",
            "connect-src " + " ".join(["'self'", *(connect or [])]),
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
    return (
        ("content-security-policy", policy),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
    )


def _given_token(request: Request) -> str | None:
    """The token the request carries, as a bearer header or a ``token`` parameter."""
    scheme, _, credentials = (request.header("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    query = request.target.partition("?")[2]
    if query:
        values = parse_qs(query, max_num_fields=16).get("token")
        if values and values[0]:
            return values[0]
    return None


def page_routes(
    settings: Callable[[], Settings],
    token: Callable[[], str | None],
    assets: Assets | None = None,
) -> list[Route]:
    """``/`` and ``/static/**``, reading the live settings and token per request."""
    files = assets if assets is not None else Assets()

    def index(request: Request, args: PathArgs) -> Response:
        live = settings()
        headers = security_headers(_flv_origins(live, request_host(request.header("host"))))
        expected = token()
        if expected is not None:
            given = _given_token(request)
            if given is None or not token_matches(given, expected):
                text = files.page("login.html").replace(
                    "{{message}}",
                    html.escape(
                        "That token is not valid." if given is not None else "", quote=True
                    ),
                ).replace("{{rejected}}", "rejected" if given is not None else "")
                return Response(
                    401,
                    text.encode("utf-8"),
                    _HTML,
                    (("www-authenticate", 'Bearer realm="streamgate"'), *headers),
                )
        body = files.page("index.html").replace("{{mode}}", html.escape(live.mode))
        return Response(200, body.encode("utf-8"), _HTML, headers)

    def static(request: Request, args: PathArgs) -> Response:
        asset = files.static(args[0])
        headers = security_headers()
        if asset is None:
            return Response(404, b"not found\n", "text/plain; charset=utf-8", headers)
        cache = (("cache-control", "no-cache"), ("etag", asset.etag), *headers)
        if request.header("if-none-match") == asset.etag:
            return Response(304, b"", asset.content_type, cache)
        return Response(200, asset.body, asset.content_type, cache)

    return [
        Route((), {"GET": index}),
        Route(("static", "**"), {"GET": static}),
    ]
