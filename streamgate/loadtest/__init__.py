"""A load generator for RTMP servers (``streamgate loadtest``), like srs-bench.

N players, optionally on distinct stream names and with signed URLs, ramped
at a given rate and held for a duration; per player it records the time to
the TCP connect, the handshake, ``NetStream.Play.Start`` and the first
keyframe, the received bitrate, whether the server closed it and the last
status code. Players run in several processes on uvloop and stop parsing
after their first keyframe (see :mod:`streamgate.loadtest.player`), so the
generator costs far less per player than the server under test.
"""

from __future__ import annotations

from streamgate.loadtest.engine import LoadGenerator, PlayerRecord, Snapshot, window_rates
from streamgate.loadtest.player import PlayerOptions, State
from streamgate.loadtest.run import LoadConfig, LoadResult, run_load
from streamgate.loadtest.stats import describe, percentile, summarize

__all__ = [
    "LoadConfig",
    "LoadGenerator",
    "LoadResult",
    "PlayerOptions",
    "PlayerRecord",
    "Snapshot",
    "State",
    "describe",
    "percentile",
    "run_load",
    "summarize",
    "window_rates",
]
