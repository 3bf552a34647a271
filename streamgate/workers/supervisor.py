"""The supervisor of ``[rtmp] workers`` > 1: starts and keeps the workers, serves no traffic.

It owns the machine's run directory (a private temporary directory with
the bus, relay and API sockets), the :class:`~.exchange.Exchange` on the
bus, the aggregated API on ``[http] listen`` (:mod:`.api`), and one child
process per worker (``streamgate worker``), each of which accepts on the
RTMP listen addresses itself.

Lifecycle:

* a worker that exits while the supervisor runs is logged and restarted
  after a backoff that doubles while it keeps dying young (bounded, with
  jitter); its players are lost, no other worker's;
* SIGHUP: the configuration file is checked here first (an invalid file
  changes nothing anywhere), then every worker reloads it;
* SIGTERM / SIGINT: every worker drains (``drain_time``), stragglers are
  killed after it, and the supervisor exits 0;
* the supervisor killed outright: the kernel sends each worker SIGTERM
  (PR_SET_PDEATHSIG), so none is left holding the port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from streamgate.api.http import HttpServer
from streamgate.api.metrics import http_exposition
from streamgate.api.routing import Router
from streamgate.api.server import http_limits
from streamgate.config import Settings, listen_addresses, load_settings
from streamgate.errors import ConfigError
from streamgate.log import flush_floods
from streamgate.server.binding import cannot_listen
from streamgate.shield.backoff import Backoff
from streamgate.workers.api import build_routes
from streamgate.workers.exchange import Exchange
from streamgate.workers.worker import bus_socket

__all__ = ["Supervisor", "supervise"]

log = logging.getLogger("streamgate.workers")

_EXIT_CONFIG = 2  # what a worker exits with on a configuration error (as the command)
_YOUNG = 10.0  # a worker that dies sooner than this after its start counts as crashing
_READY_WAIT = 30.0  # seconds the workers get to join the bus before the start is logged


class _Child:
    __slots__ = ("backoff", "id", "process", "restarts", "started")

    def __init__(self, wid: int) -> None:
        self.id = wid
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.restarts = 0
        self.backoff = Backoff(0.2, 10.0)


class Supervisor:
    def __init__(self, settings: Settings, config_path: str) -> None:
        self.settings = settings
        self.config_path = config_path
        self.count = settings.rtmp.worker_count
        self.run_dir = tempfile.mkdtemp(prefix="streamgate-")  # mode 0700
        self.exchange = Exchange(bus_socket(self.run_dir), limits=self._origin_limits)
        self.children = [_Child(w) for w in range(self.count)]
        self.stopping = False
        self.failed = False  # a worker could not start: the exit status says so
        self._stop_event = asyncio.Event()
        self.http: HttpServer | None = None
        self._watchers: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------ children

    async def _spawn(self, child: _Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamgate",
            "worker",
            "-c",
            self.config_path,
            "--id",
            str(child.id),
            "--count",
            str(self.count),
            "--run-dir",
            self.run_dir,
        )
        child.started = time.monotonic()
        log.info("worker %d started (pid %d)", child.id, child.process.pid)

    async def _watch(self, child: _Child) -> None:
        while not self.stopping:
            if child.process is None:
                await self._spawn(child)
            assert child.process is not None
            code = await child.process.wait()
            if self.stopping:
                return
            lived = time.monotonic() - child.started
            if code == _EXIT_CONFIG and child.restarts == 0 and lived < _YOUNG:
                # Its first start failed on the configuration (a port in use): every
                # restart would too. The whole machine stops and says so.
                log.error("worker %d could not start (see its error above); stopping", child.id)
                self.failed = True
                self._stop_event.set()
                return
            if lived > _YOUNG:
                child.backoff.reset()
            delay = child.backoff.next_delay()
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            log.error(
                "worker %d (pid %d) ended after %.1f s (%s); restarting in %.2f s",
                child.id,
                child.process.pid,
                lived,
                how,
                delay,
            )
            child.process = None
            child.restarts += 1
            await asyncio.sleep(delay)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                child.process.send_signal(signum)

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = self._stop_event
        hup = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, hup.set)
        _check_free(self.settings)
        await self.exchange.start()
        try:
            if self.settings.http.enabled:
                self.http = HttpServer(
                    Router(build_routes(self), token=self._token), self._limits, loop
                )
                await self.http.start("[http] listen", self.settings.http.listen)
            self._watchers = [loop.create_task(self._watch(c)) for c in self.children]
            await self._wait_ready(stop)
            while not stop.is_set():
                waiter = loop.create_task(hup.wait())
                stopper = loop.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if hup.is_set():
                    hup.clear()
                    self.reload()
            log.info("shutting down %d workers", self.count)
        finally:
            await self._stop()

    async def _wait_ready(self, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + _READY_WAIT
        while len(self.exchange.connected()) < self.count and not stop.is_set():
            if time.monotonic() > deadline:
                log.warning(
                    "only workers %s joined within %g s", self.exchange.connected(), _READY_WAIT
                )
                return
            await asyncio.sleep(0.05)
        if stop.is_set():
            return
        host, port = listen_addresses(self.settings.rtmp.listen)[0]
        api = ""
        if self.http is not None:
            h, p = self.http.addresses[0]
            api = f"\n  api:     curl http://{h}:{p}/api/v1/workers"
        print(
            f"streamgate {self.settings.mode} ready on {host}:{port} with {self.count} workers, "
            f"pulling from {', '.join(self.settings.edge.origins)}{api}",
            flush=True,
        )

    def reread(self) -> str | None:
        """Take the configuration file's settings here (not the workers); the error."""
        try:
            self.settings = load_settings(self.config_path)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration:\n%s", exc.description)
            return exc.description
        return None

    def reload(self) -> None:
        """SIGHUP: check the file here, then have every worker reload it."""
        if self.reread() is None:
            log.info("configuration checked; reloading %d workers", self.count)
            self._signal_all(signal.SIGHUP)

    async def _stop(self) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        bound = self.settings.rtmp.drain_time + 10.0
        procs = [c.process for c in self.children if c.process is not None]
        try:
            async with asyncio.timeout(bound):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            log.warning("workers still running %g s after SIGTERM; killing them", bound)
            self._signal_all(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in procs))
        for task in self._watchers:
            task.cancel()
        if self.http is not None:
            await self.http.close()
        await self.exchange.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        flush_floods()

    # ------------------------------------------------------------ what the API reads

    def _origin_limits(self) -> tuple[float, int]:
        """The machine's connect rate and link cap per origin, from the live settings."""
        edge = self.settings.edge
        return edge.max_connects_per_second, edge.max_upstreams

    def _token(self) -> str | None:
        token = self.settings.http.token
        return token.get_secret_value() if token is not None else None

    def _limits(self) -> Any:
        return http_limits(self.settings.http)

    def connected(self) -> list[int]:
        return self.exchange.connected()

    def workers_view(self) -> dict[str, Any]:
        connected = set(self.exchange.connected())
        now = time.monotonic()
        return {
            "count": self.count,
            "supervisor_pid": os.getpid(),
            "workers": [
                {
                    "id": c.id,
                    "pid": c.process.pid if c.process is not None else None,
                    "running": c.process is not None and c.process.returncode is None,
                    "on_bus": c.id in connected,
                    "restarts": c.restarts,
                    "up_seconds": round(now - c.started, 3) if c.process is not None else 0.0,
                }
                for c in self.children
            ],
            "bus": self.exchange.view(),
        }

    def listener_metrics(self) -> str:
        return http_exposition(self.http) if self.http is not None else ""

    def own_metrics(self) -> str:
        connected = set(self.exchange.connected())
        lines = [
            "# HELP streamgate_worker_up Whether the worker is running and on the bus.",
            "# TYPE streamgate_worker_up gauge",
            *(
                f'streamgate_worker_up{{worker="{c.id}"}} {int(c.id in connected)}'
                for c in self.children
            ),
            "# HELP streamgate_worker_restarts_total Times the supervisor restarted the worker.",
            "# TYPE streamgate_worker_restarts_total counter",
            *(
                f'streamgate_worker_restarts_total{{worker="{c.id}"}} {c.restarts}'
                for c in self.children
            ),
        ]
        return "\n".join(lines) + "\n"


def _check_free(settings: Settings) -> None:
    """The RTMP addresses must be free before the workers share them: the workers
    bind with SO_REUSEPORT, which would let a second machine's workers (the same
    user's) join the first's silently instead of failing."""
    shared = [("[rtmp] listen", a) for a in listen_addresses(settings.rtmp.listen)]
    if settings.flv.enabled:
        shared += [("[flv] listen", a) for a in listen_addresses(settings.flv.listen)]
    if settings.rtmp.tls_listen is not None:
        shared += [("[rtmp] tls_listen", a) for a in listen_addresses(settings.rtmp.tls_listen)]
    for setting, (host, port) in shared:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as exc:
            raise cannot_listen(setting, host, port, exc) from None
        finally:
            probe.close()


def supervise(settings: Settings, config_path: str) -> None:
    """Run a supervisor of ``[rtmp] workers`` workers until SIGTERM/SIGINT.

    A worker that cannot start (its listen address is taken) stops the machine
    with a ConfigError, as one process would."""
    import uvloop

    supervisor = Supervisor(settings, config_path)
    uvloop.run(supervisor.run())
    if supervisor.failed:
        raise ConfigError("a worker could not start; see its error above")
