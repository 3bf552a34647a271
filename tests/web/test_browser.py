"""The built-in page in a real browser: headless Chromium (the Debian package),
driven by Playwright, against real ``streamgate run`` processes fed by ffmpeg.

It checks what a person would: the token form, the token leaving the address
bar, the stream listed with its live thumbnail, a ban shown; on an edge in
front, its origin's health and the pulled stream with its upstream link; no
Content-Security-Policy violation or script error; and the player playing
the stream over HTTP-FLV and over WebSocket-FLV with URLs the API signed.
A screenshot of each page is saved under ``build/test-artefacts/``.

Playwright for Python drives the system's Chromium (``executable_path``; it
never downloads a browser): it is Microsoft's maintained binding of the
DevTools protocol, with auto-waiting, and needs nothing but its wheel. The
page's CSP stays in force (no ``bypass_csp``): conditions are waited on as
arrow functions, which the protocol calls without ``eval`` in the page.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamgate.client import RtmpClient
from streamgate.errors import UpstreamError
from tests.peers import (
    _in_ci,
    _missing,
    free_port,
    need,
    player,
    process_log,
    publisher,
    wait_until,
)
from tests.processes import REPO, GatewayProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.interop

TOKEN = "page-browser-token"
PLAY_KEY = "page-play-secret"
ARTEFACTS = REPO / "build" / "test-artefacts"
BANNED = "127.0.0.9"  # the address that earns a ban (the browser's is 127.0.0.1)


def need_chromium() -> str:
    """The Debian ``chromium`` binary; skip (locally) or fail (CI) without it."""
    found = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin")
    if found is None:
        _missing("executable 'chromium' not found on PATH", "chromium")
    return os.path.abspath(found)


def need_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        message = (
            "python package 'playwright' missing: pip install -e '.[dev]' "
            "(the tests use the system's Chromium, no browser download)"
        )
        if _in_ci():
            pytest.fail(f"INTEROP PEER MISSING IN CI: {message}", pytrace=False)
        pytest.skip(f"INTEROP PEER MISSING: {message}")


def api(gw: GatewayProcess, path: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{gw.http_port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=5) as reply:
        return json.loads(reply.read())


def stream_view(gw: GatewayProcess, name: str) -> dict[str, Any] | None:
    try:
        view: dict[str, Any] = api(gw, f"/api/v1/streams/live/{name}")
    except urllib.error.HTTPError:
        return None
    return view


def origin_settings(flv_port: int) -> dict[str, Any]:
    return {
        "mode": "origin",
        "http": {"token": TOKEN},
        "auth": {"play": "signed", "keys": {"k1": PLAY_KEY}},
        "limits": {"ban_after_failures": 2, "ban_time": 600},
        "flv": {"enabled": True, "listen": f"127.0.0.1:{flv_port}"},
        "log": {"level": "info"},
    }


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[GatewayProcess]:
    need("ffmpeg")
    with GatewayProcess(tmp_path / "origin", origin_settings(free_port())) as gw:
        yield gw


@pytest.fixture
def browser() -> Iterator[Browser]:
    chromium = need_chromium()
    need_playwright()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"],
        )
        try:
            yield launched
        finally:
            launched.close()


class Problems:
    """Script errors and CSP violations a page reports."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        page.on("pageerror", lambda exc: self.found.append(f"page error: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = str(message.text)
        if "Content Security Policy" in text or (
            message.type == "error" and "Failed to load resource" not in text
        ):
            self.found.append(f"console {message.type}: {text}")


def screenshot(page: Page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def earn_a_ban(gw: GatewayProcess) -> None:
    """Plays with a bad token from :data:`BANNED` until the address is banned."""

    async def bad_plays() -> None:
        for _ in range(4):
            try:
                client = await RtmpClient.open(gw.url("cam") + "?exp=1&sig=bad", source=BANNED)
            except (UpstreamError, OSError):
                continue  # banned already: refused at accept
            try:
                await client.play()
                async with asyncio.timeout(5):
                    while True:
                        await client.next_event()
            except (ConnectionError, TimeoutError, UpstreamError):
                pass
            finally:
                client.close()

    # Playwright's sync API runs a loop in this thread: the RTMP clients get their own.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, bad_plays()).result(timeout=60)
    wait_until(
        lambda: any(b["ip"] == BANNED for b in api(gw, "/api/v1/bans")["bans"]),
        timeout=15,
        what=f"a ban on {BANNED}",
    )


def open_page(page: Page, gw: GatewayProcess) -> None:
    """Through the token form, as a person would."""
    page.goto(f"http://127.0.0.1:{gw.http_port}/")
    assert page.locator("#login").is_visible()
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert "token" not in page.url, page.url  # moved to sessionStorage
    assert page.evaluate("sessionStorage.getItem('streamgate-token')") == TOKEN


CARD = 'article[data-key="live/cam"]'


def test_the_page_shows_streams_thumbnails_bans_and_origins(
    tmp_path: Path, origin: GatewayProcess, browser: Browser
) -> None:
    with publisher(origin.url("cam"), size="640x360") as pub:
        wait_until(
            lambda: (s := stream_view(origin, "cam")) is not None
            and s["last_keyframe_age_seconds"] is not None,
            timeout=20,
            what="ffmpeg's keyframe at the origin",
        )
        earn_a_ban(origin)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = Problems(page)
        open_page(page, origin)

        page.wait_for_selector(CARD, timeout=20_000)
        page.wait_for_function(
            f"""() => {{
                const img = document.querySelector('{CARD} img');
                return img !== null && img.complete && img.naturalWidth > 0;
            }}""",
            timeout=30_000,
        )
        width = page.evaluate(f"document.querySelector('{CARD} img').naturalWidth")
        assert width == 320
        card = page.locator(CARD)
        assert card.locator('[data-field="size"]').inner_text() == "640\u00d7360"
        assert card.locator('[data-field="video"]').inner_text().startswith("h264")
        assert card.locator('[data-field="audio"]').inner_text().startswith("aac")
        assert "RTMP" in card.locator('[data-field="viewers"]').inner_text()
        assert "published by 127.0.0.1" in card.locator('[data-field="upstream"]').inner_text()

        bans = page.locator("#bans-table tbody tr")
        page.wait_for_function("() => document.querySelectorAll('#bans-table tbody tr').length > 0")
        assert BANNED in bans.first.inner_text()
        assert page.locator("#origins-empty").is_visible()  # an origin has no origins
        assert page.locator("#mode").text_content() == "origin"
        screenshot(page, "page-origin")

        # A reload keeps the tab's token: the form sends it again by itself.
        page.reload()
        page.wait_for_selector(CARD, timeout=20_000)
        assert "token" not in page.url

        # An edge in front of the origin (signing its upstream plays): its page shows
        # the origin's health and, once an ffmpeg player makes it pull the stream, the
        # stream with its upstream link and a thumbnail made on the edge.
        edge_settings = {
            "mode": "edge",
            "http": {"token": TOKEN},
            "edge": {
                "origins": [f"rtmp://127.0.0.1:{origin.port}"],
                "upstream_secret": PLAY_KEY,
                "upstream_kid": "k1",
            },
            "flv": {"enabled": True, "listen": f"127.0.0.1:{free_port()}"},
        }
        with GatewayProcess(tmp_path / "edge", edge_settings) as edge:
            edge_page = browser.new_page(viewport={"width": 1280, "height": 900})
            edge_problems = Problems(edge_page)
            open_page(edge_page, edge)
            row = edge_page.locator("#origins-table tbody tr")
            edge_page.wait_for_function(
                "() => document.querySelectorAll('#origins-table tbody tr').length === 1"
            )
            assert f"127.0.0.1:{origin.port}" in row.first.inner_text()
            assert "healthy" in row.first.inner_text()
            assert edge_page.locator("#mode").text_content() == "edge"
            with player(edge.url("cam")) as watcher:
                edge_page.wait_for_selector(CARD, timeout=30_000)
                edge_page.wait_for_function(
                    f"""() => {{
                        const img = document.querySelector('{CARD} img');
                        return img !== null && img.complete && img.naturalWidth > 0;
                    }}""",
                    timeout=30_000,
                )
                upstream = edge_page.locator(f'{CARD} [data-field="upstream"]')
                edge_page.wait_for_function(
                    f"""() => document.querySelector('{CARD} [data-field="upstream"]')
                        .textContent.includes('origin healthy')""",
                    timeout=20_000,
                )
                text = upstream.inner_text()
                assert text.startswith(f"127.0.0.1:{origin.port} \u00b7 live"), text
                screenshot(edge_page, "page-edge")
                assert watcher.poll() is None, process_log(watcher)
            assert edge_problems.found == []
        assert problems.found == []
        assert pub.poll() is None, process_log(pub)


def viewers_are(gw: GatewayProcess, protocol: str, count: int) -> Callable[[], bool]:
    """Whether the stream has ``count`` viewers over ``protocol`` ("flv", "ws-flv"), as
    the API counts them."""

    def check() -> bool:
        counts = (stream_view(gw, "cam") or {}).get("viewers") or {}
        return bool(counts.get(protocol, 0) == count)

    return check


def _play(page: Page, transport: str) -> dict[str, Any]:
    card = page.locator(CARD)
    card.locator("select.transport").select_option(transport)
    card.locator("button.play").click()
    page.wait_for_function(
        f"""() => {{
            const v = document.querySelector('{CARD} video');
            return v !== null && v.videoWidth > 0 && v.currentTime > 1.0;
        }}""",
        timeout=40_000,
    )
    state: dict[str, Any] = page.evaluate(
        f"""() => {{
            const v = document.querySelector('{CARD} video');
            return {{width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
                     transport: document.querySelector('{CARD}').dataset.transport}};
        }}"""
    )
    return state


def test_the_player_plays_over_http_flv_and_websocket_flv(
    origin: GatewayProcess, browser: Browser
) -> None:
    with publisher(origin.url("cam"), size="640x360") as pub:
        wait_until(
            lambda: (s := stream_view(origin, "cam")) is not None
            and s["last_keyframe_age_seconds"] is not None,
            timeout=20,
            what="ffmpeg's keyframe at the origin",
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        problems = Problems(page)
        open_page(page, origin)
        page.wait_for_selector(CARD, timeout=20_000)

        for transport, protocol in (("flv", "flv"), ("ws", "ws-flv")):
            state = _play(page, transport)
            assert (state["width"], state["height"]) == (640, 360), state
            assert state["transport"] == transport
            # The gateway counts the viewer under its protocol (a signed play got in).
            wait_until(
                viewers_are(origin, protocol, 1),
                timeout=15,
                what=f"one {protocol} viewer in the API",
            )
            mark = state["time"]
            page.wait_for_function(
                f"() => document.querySelector('{CARD} video').currentTime > {mark} + 1.0",
                timeout=20_000,
            )
            screenshot(page, f"page-playing-{transport}")
            page.locator(f"{CARD} button.play").click()  # Stop
            wait_until(
                viewers_are(origin, protocol, 0),
                timeout=15,
                what=f"the {protocol} viewer gone after Stop",
            )
        assert page.locator(f"{CARD} .player-error").inner_text() == ""
        assert problems.found == []
        assert pub.poll() is None, process_log(pub)
