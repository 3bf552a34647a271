"""Health checks and scrapes under a slow-header flood, over real loopback sockets.

Attackers from 127.0.0.2 and up open many more connections than the per-address and
the global caps, send the start of a request head and then one byte per second, and
reopen whatever the server closes; a prober from 127.0.0.1 meanwhile asks for
/healthz and /metrics, one fresh connection per probe, as an orchestrator does.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

from streamgate.api.http import HttpServer
from tests.api.harness import ApiThread, wait_for
from tests.api.test_http import HEALTHZ, read_until_closed, statuses

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: "


class SlowHeaderFlood:
    """``per_source`` slow-header connections from each of ``sources``, in one thread.

    Every ``tick`` each live connection gets one more header byte; one the server has
    answered or closed is reopened, within ``budget`` connection attempts in all.
    Stops when told to, or after ``max_seconds`` whatever happens.
    """

    def __init__(
        self,
        port: int,
        sources: list[str],
        per_source: int,
        *,
        tick: float = 1.0,
        budget: int = 5000,
        max_seconds: float = 60.0,
    ) -> None:
        self.port = port
        self.sources = sources
        self.per_source = per_source
        self.tick = tick
        self.budget = budget
        self.max_seconds = max_seconds
        self.attempts = 0
        self.opened = 0
        self.started = threading.Event()  # every first connection attempted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-header-flood", daemon=True)
        self._live: list[tuple[str, socket.socket]] = []

    def __enter__(self) -> SlowHeaderFlood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

    def _open(self, source: str) -> None:
        if self.attempts >= self.budget:
            return
        self.attempts += 1
        sock = socket.socket()
        try:
            sock.settimeout(2)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(SLOW_HEAD)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        self.opened += 1
        self._live.append((source, sock))

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            for source in self.sources:
                for _ in range(self.per_source):
                    self._open(source)
            self.started.set()
            while not self._stop.wait(self.tick) and time.monotonic() < deadline:
                live, self._live = self._live, []
                reopen: list[str] = []
                for source, sock in live:
                    try:
                        if sock.recv(4096) is not None:  # an answer or EOF: it is over
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    except OSError:
                        sock.close()
                        reopen.append(source)
                        continue
                    try:
                        sock.send(b"a")
                    except BlockingIOError:
                        pass
                    except OSError:
                        sock.close()
                        reopen.append(source)
                        continue
                    self._live.append((source, sock))
                for source in reopen:
                    self._open(source)
        finally:
            self.started.set()
            for _, sock in self._live:
                sock.close()
            self._live = []


def probe(port: int, path: str) -> int:
    """One probe from 127.0.0.1 on a fresh connection: the status it got (0: none)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=10, source_address=("127.0.0.1", 0)
    )
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def flood_probes(gw: ApiThread, server: HttpServer, port: int) -> list[tuple[str, int]]:
    """Flood the port ``server`` listens on; probe ``port`` during it."""
    sources = [f"127.0.0.{i}" for i in range(2, 22)]  # 20 attacking addresses
    results: list[tuple[str, int]] = []
    with SlowHeaderFlood(gw.port, sources, per_source=25) as flood:  # 500 connections
        assert flood.started.wait(60)
        assert flood.opened >= 400, flood.opened
        cap = gw.srv.call(lambda: server.limits.max_connections)
        # The flood is in force: every slot is taken and newcomers are turned away.
        wait_for(
            lambda: (
                gw.srv.call(lambda: len(server.connections)) >= cap
                and gw.srv.call(lambda: server.counters["rejected_busy"]) > 0
            ),
            "the slow-header flood holding the API at its cap",
        )
        for i in range(40):
            path = "/healthz" if i % 2 == 0 else "/metrics"
            results.append((path, probe(port, path)))
        # Still in force after the probes: they were answered during the flood.
        wait_for(
            lambda: gw.srv.call(lambda: len(server.connections)) >= cap - 2,
            "the flood still holding the API after the probes",
        )
    return results


def test_health_probes_are_answered_during_a_slow_header_flood() -> None:
    with ApiThread() as gw:  # the default [http] limits
        api = gw.api
        assert api is not None
        results = flood_probes(gw, api.http, gw.port)
        failed = [(path, status) for path, status in results if status != 200]
        assert not failed, f"{len(failed)} of {len(results)} probes failed: {failed[:5]}"
        counters = gw.srv.call(lambda: dict(api.http.counters))
        # Both caps were exceeded: addresses were refused, slow heads gave up slots.
        assert counters["rejected_per_ip"] > 0, counters
        assert counters["evicted"] > 0, counters
        samples = gw.metrics()
        assert samples[("streamgate_http_connections_evicted_total", ())] > 0


def test_the_health_listener_answers_while_the_api_port_is_flooded() -> None:
    with ApiThread(http={"health_listen": "127.0.0.1:0"}) as gw:
        api = gw.api
        assert api is not None and api.health_port is not None
        results = flood_probes(gw, api.http, api.health_port)
        assert all(status == 200 for _, status in results), results
        # It serves the health checks and metrics only: nothing of /api.
        conn = http.client.HTTPConnection("127.0.0.1", api.health_port, timeout=10)
        try:
            conn.request("GET", "/api/v1/streams")
            assert conn.getresponse().status == 404
        finally:
            conn.close()


def test_at_the_cap_the_longest_waiting_slow_head_gives_up_its_slot() -> None:
    with ApiThread(http={"max_connections": 3, "header_timeout": 60}) as gw:
        api = gw.api
        assert api is not None
        slow: list[socket.socket] = []
        try:
            for count in range(1, 4):  # one at a time: the first has waited longest
                slow.append(gw.raw())
                slow[-1].sendall(SLOW_HEAD)

                def admitted(n: int = count) -> bool:
                    return gw.srv.call(lambda: len(api.http.connections)) == n

                wait_for(admitted, "the slow head admitted")
            with gw.raw() as newcomer:
                newcomer.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                assert statuses(read_until_closed(newcomer)) == [200]
            evicted = read_until_closed(slow[0])
            assert statuses(evicted) == [503]
            assert b"too slow" in evicted
            for sock in slow[1:]:  # the others kept their slots and may finish
                sock.sendall(b"1\r\n\r\n")
                assert statuses(sock.recv(65536)) == [200]
        finally:
            for sock in slow:
                sock.close()
        assert gw.srv.call(lambda: api.http.counters["evicted"]) == 1


def test_a_reload_applies_new_limits_to_new_connections(tmp_path: Path) -> None:
    conf = tmp_path / "streamgate.toml"
    conf.write_text(
        '[rtmp]\nlisten = "127.0.0.1:0"\n'
        '[http]\nlisten = "127.0.0.1:0"\nmax_connections_per_ip = 1\n'
    )
    with ApiThread(reloadable=True) as gw:
        api = gw.api
        assert api is not None
        srv = gw.srv
        with gw.raw() as first, gw.raw() as second:  # two from one address: allowed
            for sock in (first, second):
                sock.sendall(HEALTHZ)
                assert statuses(sock.recv(65536)) == [200]
        srv.call(lambda: setattr(srv.ctx, "config_path", str(conf)))
        assert gw.request("POST", "/api/v1/reload").status == 200
        with gw.raw() as first:
            first.sendall(HEALTHZ)
            assert statuses(first.recv(65536)) == [200]
            with gw.raw() as second:  # now one too many
                assert statuses(read_until_closed(second)) == [503]
        assert srv.call(lambda: api.http.counters["rejected_per_ip"]) == 1
