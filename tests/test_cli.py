"""The command line, as an operator runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import need, probe, process_log, publisher, wait_until

ROOT = Path(__file__).resolve().parent.parent


def streamgate(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = subprocess.run(
        [sys.executable, "-m", "streamgate", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        **kw,  # type: ignore[call-overload]
    )
    return result


def test_check_config_accepts_the_default() -> None:
    result = streamgate("check-config", "-c", "conf/streamgate.toml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_rejects_with_exit_2_and_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rtmp]\nmerge_ms = -1\n")
    result = streamgate("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}: [rtmp] merge_ms: Input should be greater than or equal to 0" in result.stderr


def test_run_with_invalid_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "relay"\n')
    result = streamgate("run", "-c", str(bad))
    assert result.returncode == 2
    assert "mode" in result.stderr


def test_config_reference_prints_markdown() -> None:
    result = streamgate("config-reference")
    assert result.returncode == 0
    assert result.stdout.startswith("# Configuration reference")


@pytest.mark.interop
def test_run_serves_ffmpeg_and_stops_on_sigterm(tmp_path: Path) -> None:
    """What `make run` does, on a free port: publish with ffmpeg, play with ffprobe."""
    need("ffmpeg")
    conf = tmp_path / "sg.toml"
    default = (ROOT / "conf" / "streamgate.toml").read_text()
    conf.write_text(default.replace(":1935", ":0").replace(":8080", ":0"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgate", "run", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        banner = ""
        for _ in range(20):
            line = proc.stdout.readline()
            banner += line
            if "metrics: curl" in line:
                break
        match = re.search(r"ready on 127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        port = int(match.group(1))
        assert "ffmpeg " in banner and "ffplay rtmp://127.0.0.1" in banner
        api = re.search(r"curl (http://127\.0\.0\.1:\d+)/api/v1/streams", banner)
        assert api, banner
        # the embedded default's demo source plays at once ...
        demo = probe(f"rtmp://127.0.0.1:{port}/live/demo", read_seconds=2, timeout=20)
        assert (demo.video.codec_name, demo.video.width, demo.video.height) == ("h264", 640, 360)
        assert demo.audio.codec_name == "aac"
        import json
        import urllib.request

        with urllib.request.urlopen(f"{api.group(1)}/api/v1/streams", timeout=5) as response:
            listed = json.load(response)
        assert any(s.get("name") == "demo" for s in listed["streams"]), listed
        # ... and ffmpeg can publish beside it
        url = f"rtmp://127.0.0.1:{port}/live/mystream"
        with publisher(url) as pub:
            result = None

            def playable() -> bool:
                nonlocal result
                try:
                    result = probe(url, read_seconds=1, timeout=15)
                except Exception:
                    return False
                return True

            wait_until(playable, timeout=30, what="the stream to play")
            assert result is not None and result.video.codec_name == "h264"
            assert pub.poll() is None, process_log(pub)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.interop
def test_sighup_reload_keeps_players_and_sigterm_says_goodbye(tmp_path: Path) -> None:
    import asyncio

    import uvloop

    from streamgate.client import RtmpClient
    from streamgate.rtmp.events import MediaReceived, StatusReceived
    from streamgate.rtmp.messages import Status

    need("ffmpeg")
    conf = tmp_path / "sg.toml"
    base = (
        '[rtmp]\nlisten = "127.0.0.1:0"\ndrain_time = 3.0\n[http]\nlisten = "127.0.0.1:0"\n'
        "[origin]\npublish_idle_timeout = 10.0\n"
    )
    conf.write_text(base)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamgate", "run", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        while not (match := re.search(r"ready on 127\.0\.0\.1:(\d+)", "".join(output))):
            output.append(proc.stdout.readline())
        url = f"rtmp://127.0.0.1:{match.group(1)}/live/cam"
        with publisher(url):

            async def watch() -> tuple[int, int, list[str]]:
                client = None
                for _ in range(100):
                    try:
                        client = await RtmpClient.open(url)
                        await client.play()
                        await client.wait_status(Status.PLAY_START, timeout=5)
                        break
                    except Exception:
                        if client is not None:
                            client.close()
                        client = None
                        await asyncio.sleep(0.2)  # not playable yet: try again, 100 times
                assert client is not None

                async def count(seconds: float) -> tuple[int, list[str]]:
                    media, codes = 0, []
                    try:
                        async with asyncio.timeout(seconds):
                            while True:
                                event = await client.next_event()
                                if isinstance(event, MediaReceived):
                                    media += 1
                                elif isinstance(event, StatusReceived):
                                    codes.append(event.code)
                    except (TimeoutError, ConnectionError):
                        pass
                    return media, codes

                before, _ = await count(2)
                conf.write_text(base.replace("10.0", "20.0"))  # a reloadable change
                proc.send_signal(signal.SIGHUP)
                after, codes = await count(2)
                proc.send_signal(signal.SIGTERM)
                _, goodbye = await count(5)
                client.close()
                return before, after, codes + goodbye

            before, after, codes = uvloop.run(watch())
        assert before > 20 and after > 20, (before, after)
        assert codes == [Status.PLAY_UNPUBLISH_NOTIFY]  # only at shutdown, not at reload
        assert proc.wait(timeout=10) == 0
        output.append(proc.stdout.read())
        log = "".join(output)
        assert "configuration reloaded" in log and "received SIGTERM" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_probe_is_wired_with_its_help() -> None:
    result = streamgate("probe", "--help")
    assert result.returncode == 0
    assert "--media-timeout" in result.stdout and "exit status" in result.stdout


def test_probe_of_a_closed_port_fails_with_a_diagnosis() -> None:
    from tests.peers import free_port

    result = streamgate("probe", f"rtmp://127.0.0.1:{free_port()}/live/x")
    assert result.returncode == 1
    assert "refused" in result.stdout.lower()
