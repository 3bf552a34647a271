"""A worker's play source: streams it owns from its own source, the rest from their owner.

The owner of a name is the only worker that plays it from the origin (an
edge: :func:`~.ownership.owner_of`) or holds its publisher's stream (an
origin: whichever worker the publisher landed on, as the supervisor tells;
a name published nowhere is played from this worker's own hub). Every
other worker plays it from the owner, over the owner's unix socket, with
one :class:`~streamgate.edge.hub.EdgeHub` per owner: the same ingest that
pulls from an origin, so one local link per stream per worker however many
of its players watch, reconnects with backoff if the owner restarts, idle
and linger as toward an origin.

A name the machine knows to be missing (this worker's negative cache, fed
by the owner's misses over the bus) is refused here at once, without the
local hop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from streamgate.edge.hub import EdgeHub, EdgeTiming
from streamgate.edge.origins import Origin, OriginPool
from streamgate.edge.upstream import RtmpConnector, UpstreamTimeouts
from streamgate.relay.clock import Clock
from streamgate.relay.hub import StreamHub
from streamgate.relay.source import PlaySource
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.connection import ConnectionLimits
from streamgate.rtmp.messages import Status
from streamgate.shield import NegativeCache
from streamgate.shield.breaker import CircuitBreaker
from streamgate.shield.window import RateWindow
from streamgate.workers.ownership import owner_of

__all__ = ["WorkerRouter", "relay_socket", "relay_timing"]

_LOCAL_RATE = 10_000.0  # connects per second to a sibling worker: not a limit
_LOCAL_LINKS = 1_000_000


def relay_socket(run_dir: str, worker: int) -> str:
    """The unix socket worker ``worker`` serves its streams to its siblings on."""
    return os.path.join(run_dir, f"relay-{worker}.sock")


def relay_timing(timing: EdgeTiming) -> EdgeTiming:
    """A relay's timing from the edge's: the owner decides when a stream is missing
    or idle, and the relay waits a little longer, so the owner's answer (its
    reason) is what players hear; a restarting owner is retried soon and often."""
    return EdgeTiming(
        start_timeout=timing.start_timeout + 1.0,
        idle_timeout=timing.idle_timeout + 1.0,
        missing_ttl=0.0,  # the owner's negative cache is the one that counts
        linger=timing.linger,
        reconnect_grace=max(timing.reconnect_grace, 5.0),
        backoff_initial=0.05,
        backoff_max=1.0,
    )


class WorkerRouter:
    """PlaySource of a worker of ``count``: routes each play to its owner."""

    def __init__(
        self,
        worker: int,
        count: int,
        own: PlaySource,
        relays: dict[int, EdgeHub],
        negative: NegativeCache | None,
        clock: Clock,
    ) -> None:
        self.worker = worker
        self.count = count
        self.own = own
        self.relays = relays
        self.negative = negative
        self.clock = clock
        # Counts a play refused here from the negative cache, as the edge hub counts
        # its own (streamgate_edge_plays_refused{reason="missing_cached"}).
        self.count_refusal: Callable[[str], None] | None = None
        # Origin mode: the worker publishing each name owns it (None: the hash decides).
        self.holders: dict[tuple[str, str], int] | None = None

    @classmethod
    def build(
        cls,
        worker: int,
        count: int,
        own: PlaySource,
        negative: NegativeCache | None,
        *,
        run_dir: str,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        fanout: FanoutSettings,
        timing: EdgeTiming,
        limits: ConnectionLimits,
        merge_delay: float,
    ) -> WorkerRouter:
        relays = {}
        for other in range(count):
            if other == worker:
                continue
            origin = Origin(
                f"worker{other}",
                0,
                CircuitBreaker(1_000_000, 1.0),
                RateWindow(_LOCAL_RATE),
                _LOCAL_LINKS,
            )
            connector = RtmpConnector(
                loop,
                UpstreamTimeouts(timing.start_timeout, timing.start_timeout + 1.0, 0),
                limits,
                merge_delay=merge_delay,
                unix_path=relay_socket(run_dir, other),
            )
            relays[other] = EdgeHub(
                clock, fanout, relay_timing(timing), OriginPool([origin]), connector
            )
        return cls(worker, count, own, relays, negative, clock)

    def owner(self, app: str, name: str) -> int:
        if self.holders is not None:  # an origin: where it is published, else here
            return self.holders.get((app, name.partition("?")[0]), self.worker)
        return owner_of(app, name, self.count)

    def request_play(
        self,
        app: str,
        name: str,
        query: str,
        on_ready: Callable[[Stream], None],
        on_refused: Callable[[str, str], None],
    ) -> Any:
        owner = self.owner(app, name)
        if owner == self.worker:
            handle = self.own.request_play(app, name, query, on_ready, on_refused)
            return None if handle is None else (self.own, handle)
        if self.negative is not None:
            reason = self.negative.get((app, name), self.clock.now())
            if reason is not None:
                if self.count_refusal is not None:
                    self.count_refusal("missing_cached")
                on_refused(Status.PLAY_STREAM_NOT_FOUND, f"{app}/{name}: {reason or 'not found'}")
                return None
        relay = self.relays[owner]
        handle = relay.request_play(app, name, "", on_ready, on_refused)
        return None if handle is None else (relay, handle)

    def held_elsewhere(self, app: str, name: str, owner: int) -> None:
        """Origin mode: ``owner`` got the publisher of a name players wait for here;
        they are played from its relay now (their waits restart there, bounded)."""
        own = self.own
        if owner == self.worker or owner not in self.relays or not isinstance(own, StreamHub):
            return
        for waiter in own.take_waiters(app, name):
            self.relays[owner].request_play(app, name, "", waiter.on_ready, waiter.on_refused)

    def cancel_play(self, app: str, name: str, handle: Any) -> None:
        source, inner = handle
        source.cancel_play(app, name, inner)

    def sweep(self) -> None:
        for relay in self.relays.values():
            relay.sweep()

    def close(self) -> None:
        for relay in self.relays.values():
            relay.close()
