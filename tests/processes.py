"""Real ``streamgate run -c conf.toml`` processes, and a relay that counts connections.

A :class:`GatewayProcess` is its own process, started from a TOML file
written into its own directory under the test's temp dir, on free loopback
ports (RTMP and HTTP API), logging to a file there; it is stopped (SIGTERM,
then SIGKILL) and reaped by whoever started it. A :class:`ConnectCounter`
in front of an origin stamps every connection the gateways open to it;
:func:`missing_origin` is nginx-rtmp refusing missing names at once
(``idle_streams off``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

from tests.peers import NginxRtmp, PeerError, free_port, stop_process, wait_port

__all__ = ["ConnectCounter", "GatewayProcess", "missing_origin", "toml_text"]

REPO = Path(__file__).resolve().parents[1]


def _value(value: Any) -> str:
    if isinstance(value, bool | int | float | str):
        return json.dumps(value)  # TOML's basic strings, numbers and booleans are JSON's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(settings: dict[str, Any]) -> str:
    """The TOML of ``settings``: top-level scalars, then one table per dict."""
    lines = [f"{k} = {_value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for name, table in settings.items():
        if isinstance(table, dict):
            lines.append(f"\n[{name}]")
            lines.extend(f"{k} = {_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def missing_origin(workdir: Path) -> NginxRtmp:
    """nginx-rtmp that refuses a play of a stream nobody publishes at once."""
    return NginxRtmp(workdir, "application live { live on; idle_streams off; }")


class GatewayProcess:
    """One ``streamgate run`` process (an edge, an origin, a supervisor of workers);
    restartable on the same ports and config."""

    def __init__(
        self,
        workdir: Path,
        settings: dict[str, Any],
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.http_port = free_port()
        sections = {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}
        sections.setdefault("rtmp", {})["listen"] = f"127.0.0.1:{self.port}"
        sections.setdefault("http", {})["listen"] = f"127.0.0.1:{self.http_port}"
        self.flv_port = 0  # [flv] enabled: the HTTP-FLV listener's port
        if sections.get("flv", {}).get("enabled"):
            self.flv_port = free_port()
            sections["flv"]["listen"] = f"127.0.0.1:{self.flv_port}"
        self.settings = sections
        self.config = workdir / "conf.toml"
        self.config.write_text(toml_text(sections))
        self.log_path = workdir / "streamgate.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def name(self) -> str:
        return str(self.settings.get("cluster", {}).get("node_id", self.workdir.name))

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{name}"

    def start(self, timeout: float = 20.0) -> Self:
        assert self.proc is None, "already running"
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgate", "run", "-c", str(self.config)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_port(self.port, timeout, proc=self.proc)
            wait_port(self.http_port, timeout, proc=self.proc)
        except (PeerError, TimeoutError) as exc:
            self.stop()
            raise PeerError(f"{self.name} did not start: {exc}\n{self.log()[-3000:]}") from None
        return self

    def stop(self) -> int:
        """Stop it (if running); its exit status (0 if it was not running)."""
        proc, self.proc = self.proc, None
        return stop_process(proc, timeout=10.0) if proc is not None else 0

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ the HTTP API

    def request(self, method: str, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def text(self, path: str) -> str:
        with self._opener.open(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as resp:
            body: bytes = resp.read()
        return body.decode()

    def cluster(self) -> dict[str, Any]:
        body: dict[str, Any] = self.get("/api/v1/cluster")
        return body

    def cluster_up(self) -> bool:
        try:
            view = self.cluster()
        except (OSError, AssertionError):
            return False
        return bool(view.get("enabled") and view["redis"]["up"])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ConnectCounter:
    """A TCP relay in front of the origin, in a thread of its own, that stamps
    (monotonic) every connection it accepts: what the origin's port sees."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stamps: list[float] = []
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="connect-counter")
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.stamps.append(time.monotonic())
            try:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

        self._stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    def count(self) -> int:
        return len(self.stamps)

    def most_within(self, window: float = 1.0) -> int:
        """The most connections whose stamps fall in any window [t, t + ``window``)."""
        stamps = sorted(self.stamps)
        best, lo = 0, 0
        for hi, t in enumerate(stamps):
            while stamps[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10), "the counting relay did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
