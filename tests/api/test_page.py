"""The built-in page: ``/`` behind the API token (bearer or ``?token=``), a 401 token
form, open static files with ETags, a strict Content-Security-Policy, and package
data that an installed streamgate carries."""

from __future__ import annotations

import fnmatch
import html.parser
import tomllib
from pathlib import Path

import pytest

from streamgate.api.page import STATIC_TYPES, Assets
from tests.api.harness import ApiThread, Reply

TOKEN = "page-token-value"
ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "streamgate" / "web"


def csp(reply: Reply) -> dict[str, list[str]]:
    policy = reply.headers["content-security-policy"]
    directives = [part.split() for part in policy.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


def check_security_headers(reply: Reply) -> None:
    policy = csp(reply)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in reply.headers["content-security-policy"]
    assert "'unsafe-eval'" not in reply.headers["content-security-policy"]
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_the_page_needs_the_token_and_asks_for_it() -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        bare = gw.get("/")
        assert bare.status == 401
        assert bare.headers["content-type"] == "text/html; charset=utf-8"
        assert bare.headers["www-authenticate"] == 'Bearer realm="streamgate"'
        assert bare.headers["cache-control"] == "no-store"
        check_security_headers(bare)
        text = bare.body.decode()
        assert '<form id="login" method="get" action="/"' in text
        assert 'name="token"' in text and 'type="password"' in text
        assert "page.js" not in text  # nothing of the page itself
        assert "not valid" not in text

        wrong = gw.get("/?token=" + TOKEN + "x")
        assert wrong.status == 401
        assert 'class="rejected"' in wrong.body.decode()
        assert "That token is not valid." in wrong.body.decode()
        assert TOKEN not in wrong.body.decode()
        assert gw.get("/", token="nope").status == 401
        assert gw.get("/", headers={"Authorization": f"Basic {TOKEN}"}).status == 401

        for reply in (gw.get("/", token=TOKEN), gw.get(f"/?token={TOKEN}")):
            assert reply.status == 200, reply
            assert reply.headers["content-type"] == "text/html; charset=utf-8"
            check_security_headers(reply)
            page = reply.body.decode()
            assert '<script src="/static/page.js" defer></script>' in page
            assert TOKEN not in page
        # Percent-encoded, as the form sends it.
        assert gw.get("/?token=page%2Dtoken%2Dvalue").status == 200
        # The API itself still wants the header: a query token opens only the page.
        assert gw.get(f"/api/v1/streams?token={TOKEN}").status == 401
        assert gw.request("HEAD", "/", token=TOKEN).status == 200
        assert gw.request("POST", "/", token=TOKEN).status == 405


def test_without_a_token_the_page_is_open() -> None:
    with ApiThread() as gw:
        reply = gw.get("/")
        assert reply.status == 200
        check_security_headers(reply)
        assert 'id="stream-cards"' in reply.body.decode()
        assert gw.get("/?token=anything").status == 200


def test_static_files_are_open_with_etags() -> None:
    with ApiThread(http={"token": TOKEN}) as gw:
        script = gw.get("/static/page.js")
        assert script.status == 200
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert script.body == (WEB / "static" / "page.js").read_bytes()
        assert script.headers["cache-control"] == "no-cache"
        check_security_headers(script)
        etag = script.headers["etag"]
        again = gw.get("/static/page.js", headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b""
        assert gw.get("/static/page.js", headers={"If-None-Match": '"other"'}).status == 200

        style = gw.get("/static/page.css")
        assert (style.status, style.headers["content-type"]) == (200, "text/css; charset=utf-8")
        vendored = gw.get("/static/vendor/mpegts/mpegts.js")
        assert vendored.status == 200
        assert vendored.body.startswith(b"/*! For license information please see mpegts.js")
        assert gw.get("/static/login.js").status == 200
        assert gw.request("HEAD", "/static/page.css").status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/nothing.js",
        "/static/vendor/mpegts/README.md",  # not a type the page loads
        "/static/vendor/mpegts/LICENSE",
        "/static/../pages/index.html",
        "/static/%2E%2E/pages/index.html",
        "/static/vendor/../../page.py",
        "/static",
    ],
)
def test_nothing_else_is_served_from_static(path: str) -> None:
    with ApiThread() as gw:
        assert gw.get(path).status == 404


class _Inline(html.parser.HTMLParser):
    """Collects what a strict CSP would block: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.problems.append("a script without src")
        if tag == "style":
            self.problems.append("a style element")
        if "style" in names:
            self.problems.append(f"a style attribute on {tag}")
        self.problems += [f"{name} on {tag}" for name in names if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")


@pytest.mark.parametrize("name", ["index.html", "login.html"])
def test_the_html_has_nothing_inline(name: str) -> None:
    parser = _Inline()
    parser.feed((WEB / "pages" / name).read_text())
    assert parser.problems == []


def test_the_package_data_holds_every_file_of_the_page() -> None:
    """pyproject's package-data globs take every file under streamgate/web, so an
    installed streamgate serves the same page."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["streamgate.web"]
    files = [
        p.relative_to(WEB).as_posix()
        for p in WEB.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]
    assert files
    missed = [f for f in files if not any(fnmatch.fnmatchcase(f, g) for g in globs)]
    assert missed == []
    assert (WEB / "static" / "vendor" / "mpegts" / "LICENSE").read_text().startswith(
        "\n                                 Apache License"
    )


def test_assets_are_read_once_and_typed() -> None:
    assets = Assets()
    first = assets.static("page.js")
    assert first is not None and first.content_type == STATIC_TYPES[".js"]
    assert assets.static("page.js") is first
    assert assets.static("vendor/mpegts/mpegts.js") is not None
    assert assets.static("vendor/mpegts/README.md") is None
