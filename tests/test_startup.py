"""Starting the gateway: listen addresses, bind failures and suspicious settings."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from streamgate.config import load_settings
from streamgate.errors import ConfigError
from streamgate.server.context import ServerContext
from streamgate.server.listener import RtmpServer
from tests.peers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _run(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamgate", *args, "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def _busy_port() -> socket.socket:
    """A socket that holds a loopback port (listening), for the gateway to collide with."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("section", ["rtmp", "http"])
def test_a_taken_listen_address_is_one_line_naming_the_setting_and_exit_2(
    tmp_path: Path, section: str
) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        listen = {"rtmp": "127.0.0.1:0", "http": "127.0.0.1:0"}
        listen[section] = f"127.0.0.1:{port}"
        conf = tmp_path / "sg.toml"
        conf.write_text(
            f'[rtmp]\nlisten = "{listen["rtmp"]}"\n[http]\nlisten = "{listen["http"]}"\n'
            "[demo]\nenabled = false\n"
        )
        result = _run(conf, "run")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if f"[{section}] listen" in line]
    assert lines == [
        f"streamgate: [{section}] listen 127.0.0.1:{port}: cannot listen: "
        "the address is already in use (is another server running?)"
    ], result.stderr


def test_edge_settings_in_origin_mode_get_a_warning_from_check_config(tmp_path: Path) -> None:
    conf = tmp_path / "sg.toml"
    conf.write_text('[edge]\norigins = ["rtmp://127.0.0.1:19350"]\n')
    result = _run(conf, "check-config")
    assert result.returncode == 0, result.stderr
    assert 'warning: [edge] is set but mode is "origin"' in result.stderr, result.stderr
    # the same file with the mode set, and a file without [edge], are quiet
    conf.write_text('mode = "edge"\n[edge]\norigins = ["rtmp://127.0.0.1:19350"]\n')
    assert "warning" not in _run(conf, "check-config").stderr
    conf.write_text('[rtmp]\nlisten = "127.0.0.1:1935"\n')
    assert "warning" not in _run(conf, "check-config").stderr


def test_edge_settings_in_origin_mode_are_warned_about_at_start(tmp_path: Path) -> None:
    conf = tmp_path / "sg.toml"
    port = free_port()
    # The RTMP port is taken so that the run ends by itself right after the warning.
    with _busy_port() as busy:
        conf.write_text(
            f'[rtmp]\nlisten = "127.0.0.1:{busy.getsockname()[1]}"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\n'
            '[edge]\norigins = ["rtmp://127.0.0.1:19350"]\n'
        )
        result = _run(conf, "run")
    assert result.returncode == 2
    assert 'configuration: [edge] is set but mode is "origin"' in result.stderr, result.stderr


def test_edge_settings_from_the_environment_count_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMGATE_EDGE__MISSING_TTL", "20")
    assert load_settings(None).warnings()
    monkeypatch.delenv("STREAMGATE_EDGE__MISSING_TTL")
    assert load_settings(None).warnings() == []


def test_rtmp_listens_on_every_address_of_a_list_ipv4_and_ipv6() -> None:
    settings = load_settings(
        None, rtmp={"listen": ["127.0.0.1:0", "[::1]:0"]}, limits={"allow": ["127.0.0.0/8", "::1"]}
    )

    async def main() -> list[tuple[str, int]]:
        ctx = ServerContext.build(settings, asyncio.get_running_loop())
        server = RtmpServer(ctx)
        await server.start()
        try:
            reached = []
            for host, port in server.addresses:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                reader, writer = await asyncio.open_connection(host, port, family=family)
                writer.write(b"\x03" + bytes(1536))  # C0 + C1: the server answers S0 S1 S2
                s0 = await asyncio.wait_for(reader.readexactly(1), 5)
                assert s0 == b"\x03"
                reached.append((host, port))
                writer.close()
            return reached
        finally:
            await server.close()

    reached = uvloop.run(main())
    assert [host for host, _ in reached] == ["127.0.0.1", "::1"]


def test_a_list_with_a_taken_address_binds_nothing() -> None:
    with _busy_port() as busy:
        taken = busy.getsockname()[1]
        settings = load_settings(None, rtmp={"listen": ["127.0.0.1:0", f"127.0.0.1:{taken}"]})

        async def main() -> None:
            server = RtmpServer(ServerContext.build(settings, asyncio.get_running_loop()))
            with pytest.raises(ConfigError, match=rf"\[rtmp\] listen 127.0.0.1:{taken}: "):
                await server.start()
            assert server.addresses == [] and not server.serving

        uvloop.run(main())


@pytest.mark.parametrize("value", [[], ["127.0.0.1"], "nope"])
def test_bad_listen_values_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError, match=r"\[rtmp\] listen"):
        load_settings(None, rtmp={"listen": value})


def test_http_listens_on_every_address_of_a_list() -> None:
    import urllib.request

    from streamgate.api import start_api

    settings = load_settings(None, http={"listen": ["127.0.0.1:0", "[::1]:0"]})

    async def main() -> list[int]:
        ctx = ServerContext.build(settings, asyncio.get_running_loop())
        api = await start_api(ctx, listening=lambda: True)
        assert api is not None
        try:
            statuses = []
            for host, port in api.http.addresses:
                shown = f"[{host}]" if ":" in host else host
                url = f"http://{shown}:{port}/healthz"
                with await asyncio.to_thread(urllib.request.urlopen, url, timeout=5) as answer:
                    statuses.append(answer.status)
            assert [h for h, _ in api.http.addresses] == ["127.0.0.1", "::1"]
            return statuses
        finally:
            await api.close()

    assert uvloop.run(main()) == [200, 200]


def test_a_changed_health_listen_is_reported_as_needing_a_restart() -> None:
    async def main() -> list[str]:
        ctx = ServerContext.build(load_settings(None), asyncio.get_running_loop())
        return ctx.apply(load_settings(None, http={"health_listen": "127.0.0.1:0"}))

    assert uvloop.run(main()) == ["[http] health_listen (None -> 127.0.0.1:0)"]
