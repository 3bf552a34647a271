"""A streamgate edge with ``[rtmp] workers`` = 2, as a real process tree, in front
of a real nginx-rtmp origin; players from several source addresses."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived, StatusReceived
from tests.peers import free_port, stop_process, wait_until

__all__ = ["Audience", "CountingProxy", "Machine", "PlayerRun", "toml"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def toml(sections: dict[str, dict[str, Any]], top: dict[str, Any]) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


class Machine:
    """``streamgate run`` with workers, from a generated config in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        origin_port: int | None,
        workers: int = 2,
        mode: str = "edge",
        **sections: Any,
    ) -> None:
        self.workdir = workdir
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.workers = workers
        merged: dict[str, dict[str, Any]] = {
            "rtmp": {
                "listen": f"127.0.0.1:{self.rtmp_port}",
                "workers": workers,
                "drain_time": 2.0,
            },
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "limits": {"connections_per_second_per_ip": 1000, "max_connections_per_ip": 1000},
        }
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        if mode == "edge":
            merged.setdefault("edge", {}).setdefault("origins", [f"rtmp://127.0.0.1:{origin_port}"])
        self.config = workdir / "edge.toml"
        self.config.write_text(toml(merged, {"mode": mode}))
        self.log = workdir / "edge.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Machine:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgate", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the edge exited:\n{self.logs()}")
            try:
                return self.get("/readyz")["ready"] is True
            except (OSError, urllib.error.URLError, ValueError):
                return False

        wait_until(ready, timeout=timeout, what="every worker ready")

    def stop(self) -> int:
        return stop_process(self.proc, timeout=15.0) if self.proc is not None else 0

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, name: str, query: str = "") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{name}{query}"

    def request(self, method: str, path: str) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method)
        try:
            with _OPENER.open(req, timeout=10) as reply:
                return int(reply.status), bytes(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str) -> Any:
        _, body = self.request("GET", path)
        if path.startswith("/metrics"):
            return body.decode()
        return json.loads(body)

    def worker_pids(self) -> dict[int, int]:
        return {w["id"]: w["pid"] for w in self.get("/api/v1/workers")["workers"]}

    def players_by_worker(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for client in self.get("/api/v1/clients")["clients"]:
            if client.get("role") == "player" and client["peer"].startswith("127."):
                counts[client["worker"]] = counts.get(client["worker"], 0) + 1
        return counts

    def metric(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


@dataclass
class PlayerRun:
    """One player: how much media it got, the statuses, whether it was closed."""

    source: str
    peer: str = ""  # our address as the edge sees it ("127.0.0.2:40000")
    media: int = 0
    statuses: list[str] = field(default_factory=list)
    error: str = ""
    closed: bool = False
    last_media: float = 0.0
    max_gap: float = 0.0

    async def run(
        self, url: str, stop: asyncio.Event, started: asyncio.Event | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            client = await RtmpClient.open(url, timeout=15.0, source=self.source)
            host, port = client.extra_info("sockname")[:2]
            self.peer = f"{host}:{port}"
        except Exception as exc:  # recorded, judged by the test
            self.error = str(exc) or type(exc).__name__
            return
        try:
            await client.play()
            while not stop.is_set():
                waiter = asyncio.ensure_future(client.next_event())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if waiter not in done:
                    waiter.cancel()
                    break
                event = waiter.result()
                if isinstance(event, MediaReceived):
                    now = loop.time()
                    if self.last_media:
                        self.max_gap = max(self.max_gap, now - self.last_media)
                    self.last_media = now
                    self.media += 1
                    if started is not None and self.media == 1:
                        started.set()
                elif isinstance(event, StatusReceived):
                    self.statuses.append(event.code)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed = True
        except Exception as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            client.close()


class CountingProxy:
    """A TCP relay in front of an origin that notes when each connection arrived
    (what the origin sees of the edge: its new connections, with their times)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.accepted: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    def most_in_any(self, window: float) -> int:
        """The most connections that arrived within any ``window`` seconds."""
        times = sorted(self.accepted)
        best, first = 0, 0
        for last, t in enumerate(times):
            while t - times[first] >= window:
                first += 1
            best = max(best, last - first + 1)
        return best


class Audience:
    """Players of ``urls`` ((url, source) pairs), started at once on the running loop."""

    def __init__(self, urls: list[tuple[str, str]]) -> None:
        self.stop = asyncio.Event()
        self.runs = [PlayerRun(source) for _, source in urls]
        self.tasks = [
            asyncio.ensure_future(run.run(url, self.stop))
            for run, (url, _) in zip(self.runs, urls, strict=True)
        ]

    async def playing(self, media: int = 3, timeout: float = 30.0) -> None:
        """Until every player got ``media`` messages; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not all(r.media >= media for r in self.runs):
            if time.monotonic() > deadline:
                late = [r for r in self.runs if r.media < media]
                raise AssertionError(f"{len(late)} players without media: {late[:3]}")
            await asyncio.sleep(0.1)

    async def end(self) -> list[PlayerRun]:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        return self.runs
