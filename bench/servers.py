"""The processes a benchmark measures: streamgate and nginx-rtmp, as origins and edges.

Every server is a separate process on 127.0.0.1, started from a config
written into the run's work directory, and always stopped and reaped
(:class:`Procs` is a context manager that owns them). CPU time comes from
``/proc/<pid>/stat`` (utime + stime, every thread), memory from
``/proc/<pid>/status`` (VmRSS).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.peers import NginxRtmp, free_port, stop_process, wait_port

__all__ = [
    "AcceptQueue",
    "Procs",
    "Reading",
    "Server",
    "cpu_seconds",
    "listen_overflows",
    "pin",
    "read",
    "rss_kb",
    "tcp_counters",
]

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it if the bench dies (even by SIGKILL)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a supervisor and its workers), now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # gone meanwhile
            continue
    return found


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every thread of ``pid`` and of its descendants
    so far (a server with workers is its whole process tree)."""
    user = system = 0.0
    for one in process_tree(pid):
        try:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            if one == pid:
                raise
            continue
        user += int(fields[11]) / CLK_TCK
        system += int(fields[12]) / CLK_TCK
    return user, system


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    user, system = cpu_times(pid)
    return user + system


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, summed."""
    total = 0
    for one in process_tree(pid):
        try:
            with open(f"/proc/{one}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


@dataclass(frozen=True)
class Reading:
    taken: float
    cpu: float  # user + system
    rss_kb: int
    system: float = 0.0  # the kernel's share of cpu


def read(pid: int) -> Reading:
    user, system = cpu_times(pid)
    return Reading(time.monotonic(), user + system, rss_kb(pid), system)


def pin(pid: int, cpus: Iterable[int]) -> None:
    """Pin every thread of ``pid`` (taskset -a -p)."""
    wanted = set(cpus)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), wanted)


TCP_COUNTERS = (
    "ListenOverflows",  # connections dropped on a full accept queue
    "TCPMemoryPressures",  # times TCP entered memory pressure (tcp_mem)
    "TCPRcvQDrop",  # segments dropped: a receive queue over its buffer
    "PruneCalled",
    "TCPAbortOnMemory",
)


def tcp_counters() -> dict[str, int]:
    """TcpExt counters of the whole machine (other users' traffic included)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], values.split()[1:], strict=True))
            return {k: int(table.get(k, 0)) for k in TCP_COUNTERS}
    return dict.fromkeys(TCP_COUNTERS, 0)


def listen_overflows() -> int:
    """TcpExt ListenOverflows (whole machine): SYNs/ACKs dropped on a full accept queue."""
    return tcp_counters()["ListenOverflows"]


@dataclass
class Server:
    """A running server process."""

    kind: str  # "streamgate" or "nginx-rtmp"
    role: str  # "origin" or "edge"
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    stats_path: Path | None = None
    nginx: NginxRtmp | None = None
    label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    http_port: int | None = None
    flv_port: int | None = None  # streamgate with its [flv] listener
    tls_port: int | None = None  # streamgate with its RTMPS listener ([rtmp] tls_listen)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{name}"

    def rtmps_url(self, name: str, app: str = "live") -> str:
        """The RTMPS URL of a stream (the [rtmp] tls_listen port)."""
        assert self.tls_port is not None, f"{self.label}: no RTMPS listener"
        return f"rtmps://127.0.0.1:{self.tls_port}/{app}/{name}"

    def flv_url(self, name: str, app: str = "live", scheme: str = "http") -> str:
        """The HTTP-FLV URL of a stream (``scheme="ws"``: WebSocket-FLV)."""
        assert self.flv_port is not None, f"{self.label}: no [flv] listener"
        return f"{scheme}://127.0.0.1:{self.flv_port}/{app}/{name}.flv"

    def reading(self) -> Reading:
        return read(self.pid)

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        """streamgate only: ask for a statistics dump (SIGUSR1) and return it."""
        if self.stats_path is None:
            return {}
        before = self.stats_path.stat().st_mtime_ns if self.stats_path.exists() else 0
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats_path.exists() and self.stats_path.stat().st_mtime_ns != before:
                return dict(json.loads(self.stats_path.read_text()))
            time.sleep(0.02)
        raise TimeoutError(f"{self.label}: no statistics dump within {timeout:g} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        else:
            stop_process(self.proc)


class BenchNginx(NginxRtmp):
    """nginx-rtmp sized for thousands of players (tests/peers.py's, with more connections)."""

    def config_text(self) -> str:
        text = super().config_text()
        for old, new in (
            ("worker_connections 256;", "worker_connections 65536;\n    multi_accept on;"),
            ("daemon off;", "daemon off;\nworker_rlimit_nofile 200000;"),
            (
                f"error_log {self.workdir}/error.log info;",
                f"error_log {self.workdir}/error.log warn;",
            ),
        ):
            if old not in text:
                raise RuntimeError(f"tests/peers.py nginx config changed: no {old!r}")
            text = text.replace(old, new)
        return text


class Procs:
    """Owns every process of a scenario; stops and reaps them all on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.others: list[subprocess.Popen[bytes]] = []
        self._files: list[Any] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.others):
            stop_process(proc)
        for server in reversed(self.servers):
            server.stop()
        for f in self._files:
            f.close()
        self.others.clear()
        self.servers.clear()
        self._files.clear()

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """A helper process (publisher) with its output in the work directory."""
        log = (self.workdir / log_name).open("wb")
        self._files.append(log)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self.others.append(proc)
        return proc

    def stop_other(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        if proc in self.others:
            self.others.remove(proc)

    # ------------------------------------------------------------ streamgate

    def streamgate(
        self,
        label: str,
        *,
        mode: str,
        origin_port: int | None = None,
        merge_ms: int = 50,
        edge: dict[str, Any] | None = None,
        rtmp: dict[str, Any] | None = None,
        log_level: str = "info",
        cpus: Iterable[int] | None = None,
        http: bool = False,
        cluster: dict[str, Any] | None = None,
        flv: bool = False,
        tls: tuple[Path, Path] | None = None,
    ) -> Server:
        """A streamgate server (origin or edge) on a free port, via bench/sgserver.py;
        ``http``: with its HTTP API on another free port (``Server.http_port``);
        ``flv``: with its [flv] listener (HTTP-FLV, WebSocket-FLV) on another one
        (``Server.flv_port``); ``tls``: (certificate, key) of its RTMPS listener on
        another one (``Server.tls_port``)."""
        port = free_port()
        http_port = free_port() if http else None
        flv_port = free_port() if flv else None
        tls_port = free_port() if tls else None
        wd = self.workdir / label
        wd.mkdir(parents=True, exist_ok=True)
        lines = [
            f'mode = "{mode}"',
            "[rtmp]",
            f'listen = "127.0.0.1:{port}"',
            f"merge_ms = {merge_ms}",
            *(f"{k} = {json.dumps(v)}" for k, v in (rtmp or {}).items()),
            *(
                [
                    f'tls_listen = "127.0.0.1:{tls_port}"',
                    f"tls_cert = {json.dumps(str(tls[0]))}",
                    f"tls_key = {json.dumps(str(tls[1]))}",
                ]
                if tls
                else []
            ),
            "[http]",
            f"enabled = {'true' if http_port else 'false'}",
            *([f'listen = "127.0.0.1:{http_port}"'] if http_port else []),
            # Every load-test player comes from 127.0.0.1: a real audience comes from many
            # addresses, so the per-address limits and bans would measure the wrong thing.
            "[limits]",
            'allow = ["127.0.0.1/32"]',
            "max_connections = 100000",
            "[log]",
            f'level = "{log_level}"',
        ]
        if flv_port:
            # Its own connection caps (not [limits]', nor lifted by their allow list).
            lines += [
                "[flv]",
                "enabled = true",
                f'listen = "127.0.0.1:{flv_port}"',
                "max_connections = 100000",
                "max_connections_per_ip = 100000",
            ]
        if mode == "edge":
            assert origin_port is not None
            lines += ["[edge]", f'origins = ["rtmp://127.0.0.1:{origin_port}"]']
            lines += [f"{k} = {json.dumps(v)}" for k, v in (edge or {}).items()]
        if cluster:
            lines += ["[cluster]", *(f"{k} = {json.dumps(v)}" for k, v in cluster.items())]
        conf = wd / "streamgate.toml"
        conf.write_text("\n".join(lines) + "\n")
        stats = wd / "stats.json"
        log = (wd / "streamgate.log").open("wb")
        self._files.append(log)
        prefix = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "bench.sgserver",
            "-c",
            str(conf),
            "--stats",
            str(stats),
        ]
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        server = Server(
            "streamgate",
            mode,
            port,
            proc,
            wd,
            stats_path=stats,
            label=label,
            settings={"merge_ms": merge_ms, **(edge or {})},
            http_port=http_port,
            flv_port=flv_port,
            tls_port=tls_port,
        )
        self.servers.append(server)
        try:
            wait_port(port, timeout=15, proc=proc)
            for other in (flv_port, tls_port):
                if other:
                    wait_port(other, timeout=15, proc=proc)
            workers = (rtmp or {}).get("workers", 1)
            if workers != 1:  # the port opens with the first worker: wait for them all
                deadline = time.monotonic() + 30
                while b"workers, pulling from" not in (wd / "streamgate.log").read_bytes():
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"{label}: the workers did not all start")
                    time.sleep(0.05)
        except BaseException:
            self.stop(server)
            raise
        return server

    # ------------------------------------------------------------ nginx-rtmp

    def nginx(
        self,
        label: str,
        *,
        origin_port: int | None = None,
        cpus: Iterable[int] | None = None,
    ) -> Server:
        """nginx-rtmp: an origin (``idle_streams off``) or an edge pulling from ``origin_port``."""
        wd = self.workdir / label
        if origin_port is None:
            block = "application live { live on; idle_streams off; }"
            role = "origin"
        else:
            block = f"application live {{ live on; pull rtmp://127.0.0.1:{origin_port}/live; }}"
            role = "edge"
        nginx = BenchNginx(wd, block)
        nginx.start()
        assert nginx.proc is not None
        server = Server(
            "nginx-rtmp", role, nginx.rtmp_port, nginx.proc, wd, nginx=nginx, label=label
        )
        self.servers.append(server)
        if cpus:
            pin(server.pid, cpus)
        return server


class AcceptQueue:
    """Samples a listening socket's accept queue (``ss -lnt``: Recv-Q of Send-Q) in a thread."""

    _LINE = re.compile(r"LISTEN\s+(\d+)\s+(\d+)\s")

    def __init__(self, port: int, interval: float = 0.05) -> None:
        self.port = port
        self.interval = interval
        self.high = 0
        self.limit = 0
        self.samples = 0
        self.full_samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accept-queue", daemon=True)

    def _run(self) -> None:
        argv = ["ss", "-Hlnt", f"sport = :{self.port}"]
        while not self._stop.is_set():
            out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
            m = self._LINE.search(out.stdout)
            if m:
                queued, limit = int(m.group(1)), int(m.group(2))
                self.high = max(self.high, queued)
                self.limit = limit
                self.samples += 1
                if limit and queued >= limit:
                    self.full_samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
