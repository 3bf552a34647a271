"""The benchmark's statistics dump reads a live server's state (a rename there breaks it)."""

from __future__ import annotations

import json

from bench.sgserver import stats
from tests.server.harness import ServerThread


def test_stats_of_a_live_server_are_json_with_its_counters() -> None:
    with ServerThread() as srv:
        assert srv.ctx is not None
        ctx = srv.ctx

        def count() -> None:
            ctx.counters.rejected["banned"] += 2
            ctx.counters.plays_refused["NetStream.Play.StreamNotFound"] += 1

        srv.call(count)
        out = srv.call(stats)
    assert out["streams"] == 0 and out["sessions"] == 0
    assert out["counters"]["protocol_errors"] == 0
    assert out["counters"]["rejected"] == {"banned": 2}
    assert out["counters"]["plays_refused"] == {"NetStream.Play.StreamNotFound": 1}
    json.dumps(out)  # what SIGUSR1 writes
