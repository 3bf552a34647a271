"""Accept-queue overflows in /metrics, read from the kernel at scrape time."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from streamgate.api.metrics import NETSTAT, _listen_queue
from tests.api.harness import ApiThread, metric

NAMES = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n"


def test_the_counters_come_from_the_tcpext_lines(tmp_path: Path) -> None:
    netstat = tmp_path / "netstat"
    netstat.write_text(NAMES + "TcpExt: 7 12 15 99\nIpExt: InNoRoutes\nIpExt: 3\n")
    found = {m.name: m.samples[0].value for m in _listen_queue(netstat)}
    assert found == {"streamgate_listen_overflows": 12, "streamgate_listen_drops": 15}


def test_absent_without_the_file(tmp_path: Path) -> None:
    assert list(_listen_queue(tmp_path / "missing")) == []  # e.g. not Linux


def _overflows() -> int:
    lines = NETSTAT.read_text().splitlines()
    names, values = lines[0].split(), lines[1].split()
    assert names[0] == values[0] == "TcpExt:"
    return int(values[names.index("ListenOverflows")])


@pytest.mark.skipif(not NETSTAT.exists(), reason="no /proc/net/netstat (not Linux)")
def test_an_overflow_shows_in_the_scrape() -> None:
    before = _overflows()
    # A listener that never accepts, with room for one: the next connections overflow it.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    clients = []
    try:
        for _ in range(4):
            client = socket.socket()
            client.setblocking(False)
            client.bind(("127.0.0.2", 0))
            with contextlib.suppress(BlockingIOError):
                client.connect(full.getsockname())
            clients.append(client)
        deadline = time.monotonic() + 10
        while _overflows() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _overflows() > before  # the kernel saw the overflow
        with ApiThread() as gw:
            samples = gw.metrics()
        scraped = metric(samples, "streamgate_listen_overflows_total")
        assert scraped is not None and scraped > before
        drops = metric(samples, "streamgate_listen_drops_total")
        assert drops is not None and drops >= scraped
    finally:
        for client in clients:
            client.close()
        full.close()
