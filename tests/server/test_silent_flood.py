"""Thousands of silent connections at once: every one ends, and nothing is held after.

A connection the kernel completed but the server never accepted (its accept
queue was full) is one the client sees established and the server never
ends: the listen backlog must hold a burst. Every connection the server
accepted must end within ``handshake_timeout`` (+ 1 s, seen by the client),
and once the attacker is gone the session table and the admission count
are back to 0.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.harness import ServerThread

HANDSHAKE_TIMEOUT = 1.0
ROOT = Path(__file__).resolve().parents[2]


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 4096


# A burst the default backlog holds (the kernel caps it at somaxconn).
COUNT = min(3000, _somaxconn() * 3 // 4)


@pytest.fixture
def enough_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = COUNT + 256
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))


def test_every_silent_connection_ends_within_the_handshake_timeout(enough_files: None) -> None:
    # Loopback is allow-listed by the harness: no per-IP limit refuses any of them.
    with ServerThread(rtmp={"handshake_timeout": HANDSHAKE_TIMEOUT}) as srv:
        assert srv.ctx is not None
        ctx = srv.ctx
        flood = subprocess.Popen(
            [sys.executable, "-m", "tests.server.silent_flood", str(srv.port), str(COUNT), "3"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            out, _ = flood.communicate(timeout=90)
        finally:
            flood.kill()
        lines = out.splitlines()
        assert lines[-1:] == ["closed"], out
        figures = json.loads(lines[0])
        assert figures["established"] == COUNT  # the flood ran in full
        # Every connection the client saw established was ended by the server ...
        assert figures["ended"] == COUNT, figures
        # ... within the handshake timeout (and a little for a loop busy with the flood).
        assert figures["max_lifetime"] <= HANDSHAKE_TIMEOUT + 1.0, figures
        timed_out = srv.call(lambda: ctx.counters.protocol_errors)
        assert timed_out >= COUNT * 0.9  # ended by the handshake deadline, not by luck

        def held() -> tuple[int, int]:
            return len(ctx.sessions), ctx.admission.connections

        deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 3.0
        while srv.call(held) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.call(held) == (0, 0)
