"""A streamgate edge with ``[rtmp] workers`` = 2, as a real process tree, in front
of a real nginx-rtmp origin; players from several source addresses."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived, StatusReceived
from tests.peers import wait_until
from tests.processes import GatewayProcess

__all__ = ["Audience", "Machine", "PlayerRun"]


class Machine(GatewayProcess):
    """``streamgate run`` with ``[rtmp] workers``: a supervisor and its workers."""

    def __init__(
        self,
        workdir: Path,
        origin_port: int | None,
        workers: int = 2,
        mode: str = "edge",
        **sections: dict[str, Any],
    ) -> None:
        settings: dict[str, Any] = {
            "mode": mode,
            "rtmp": {"workers": workers, "drain_time": 2.0},
            "limits": {"connections_per_second_per_ip": 1000, "max_connections_per_ip": 1000},
        }
        for name, values in sections.items():
            settings.setdefault(name, {}).update(values)
        if mode == "edge":
            settings.setdefault("edge", {}).setdefault(
                "origins", [f"rtmp://127.0.0.1:{origin_port}"]
            )
        super().__init__(workdir, settings)

    def start(self, timeout: float = 30.0) -> Self:
        super().start(timeout)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the machine exited:\n{self.log()}")
            try:
                status, body = self.request("GET", "/readyz")
            except OSError:
                return False
            return status == 200 and body["ready"] is True

        wait_until(ready, timeout=timeout, what="every worker ready")

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

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
        for line in self.text("/metrics").splitlines():
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
