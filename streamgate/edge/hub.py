"""The edge hub: the play decision and one ingest per stream.

A play is answered, in this order, without touching the origin unless it
must: a live or starting ingest of the same stream is shared; a name in the
negative cache is refused with ``NetStream.Play.StreamNotFound`` (unless an
origin's directory lists it now), as is, with an authoritative directory, a
name no origin lists; otherwise an origin is chosen under its bounds
(breaker, connect rate, link cap; origins listing the name first, outside
the connect rate) or the play is refused at once with
``NetStream.Play.Failed``. Nothing queues without bound.

The hub is each ingest's :class:`~streamgate.edge.ingest.IngestHost`: the
ingest depends on that interface, never on this module.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streamgate.edge.budgeted import NameGate
from streamgate.edge.directory import OriginDirectory
from streamgate.edge.ingest import Connector, Ingest, IngestState, Link, LinkSink, PlayWaiter
from streamgate.edge.origins import Origin, OriginPool
from streamgate.relay.clock import Clock
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.messages import Status
from streamgate.shield import NegativeCache

__all__ = ["EdgeHub", "EdgeTiming"]


@dataclass(frozen=True, slots=True)
class EdgeTiming:
    """The edge's timeouts and retry bounds (seconds)."""

    start_timeout: float = 5.0
    idle_timeout: float = 10.0
    missing_ttl: float = 10.0
    linger: float = 5.0
    reconnect_grace: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    forward_query: bool = False


class EdgeHub:
    """PlaySource for edge mode, and the host of its ingests."""

    def __init__(
        self,
        clock: Clock,
        fanout: FanoutSettings,
        settings: EdgeTiming,
        pool: OriginPool,
        connector: Connector,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.fanout = fanout
        self.settings = settings
        self.pool = pool
        self.connector = connector
        self.rng = rng or random.Random()  # backoff jitter; seeded in tests
        # Signs upstream plays (app, stream) -> query, so the origin can verify
        # the edge: once per link, never once per player.
        self.upstream_signer: Callable[[str, str], str] | None = None
        self.negative = NegativeCache(settings.missing_ttl)
        # Asked before an upstream connect for a name (the fleet's one asker per name).
        self.name_gate: NameGate | None = None
        # The origins' own stream listings, when configured ([edge] directory).
        self.directory: OriginDirectory | None = None
        self.ingests: dict[tuple[str, str], Ingest] = {}
        # Plays refused before any origin was asked, by reason (a metrics label);
        # connects are counted by each origin (Origin.connects).
        self.refusals: Counter[str] = Counter()

    def __iter__(self) -> Iterator[Ingest]:
        return iter(list(self.ingests.values()))

    def _key(self, app: str, name: str, query: str) -> tuple[tuple[str, str], str]:
        if self.settings.forward_query and query:
            upstream = f"{name}?{query}"
            return (app, upstream), upstream
        return (app, name), name

    def request_play(
        self,
        app: str,
        name: str,
        query: str,
        on_ready: Callable[[Stream], None],
        on_refused: Callable[[str, str], None],
    ) -> PlayWaiter | None:
        key, upstream = self._key(app, name, query)
        ingest = self.ingests.get(key)
        waiter = PlayWaiter(on_ready, on_refused)
        if ingest is not None:
            ingest.add_waiter(waiter)
            return waiter if waiter.ingest is not None else None
        now = self.clock.now()
        reason = self.negative.get(key, now)
        if reason is not None and not self.listed_by(app, name):
            self.count_refusal("missing_cached")
            on_refused(Status.PLAY_STREAM_NOT_FOUND, f"{app}/{name}: {reason or 'not found'}")
            return None
        if self.directory is not None and self.directory.known_missing((app, name), now):
            self.count_refusal("missing_listed")
            on_refused(Status.PLAY_STREAM_NOT_FOUND, f"{app}/{name}: no origin lists it")
            return None
        ingest = Ingest(self, key, app, upstream)
        self.ingests[key] = ingest
        ingest.add_waiter(waiter)
        ingest.start()
        return waiter if waiter.ingest is not None else None

    def cancel_play(self, app: str, name: str, handle: PlayWaiter) -> None:
        if handle.ingest is not None:
            handle.ingest.remove_waiter(handle)
            handle.ingest = None

    # ------------------------------------------------------------ IngestHost

    def open_link(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Link:
        """Open a link to ``origin`` to play ``app``/``name`` (signed, when the edge signs)."""
        target = self.upstream_target(app, name)
        if self.name_gate is None:
            return self.connector.open(origin, app, target, sink)
        return self.name_gate.open(
            (app, name), lambda gated: self.connector.open(origin, app, target, gated), sink
        )

    def remember_missing(self, key: tuple[str, str], description: str) -> None:
        """Refuse plays of ``key`` from the negative cache for ``missing_ttl``; an
        entry already in force (the fleet's verdict, learned meanwhile) is kept as
        it is, so the fleet's miss expires when it was found, not later."""
        now = self.clock.now()
        if self.negative.holds(key, now) is None:
            self.negative.add(key, now, description)

    def upstream_target(self, app: str, name: str) -> str:
        """The stream name to play upstream, signed when the edge signs its plays."""
        if self.upstream_signer is None:
            return name
        base = name.partition("?")[0]
        return f"{name}{'&' if '?' in name else '?'}{self.upstream_signer(app, base)}"

    def listed_by(self, app: str, name: str) -> frozenset[int]:
        """Indexes of the origins whose directory lists ``app``/``name`` now."""
        if self.directory is None:
            return frozenset()
        return self.directory.listing((app, name.partition("?")[0]), self.clock.now())

    def ingest_ended(self, ingest: Ingest, reason: str) -> None:
        if self.ingests.get(ingest.key) is ingest:
            del self.ingests[ingest.key]

    def count_refusal(self, reason: str) -> None:
        self.refusals[reason] += 1

    # ------------------------------------------------------------ upkeep

    def sweep(self) -> None:
        self.negative.purge(self.clock.now())

    def close(self) -> None:
        if self.directory is not None:
            self.directory.close()
        for ingest in list(self.ingests.values()):
            ingest.end(Status.PLAY_UNPUBLISH_NOTIFY, "the edge is shutting down")

    def live(self) -> int:
        return sum(1 for i in self.ingests.values() if i.state is IngestState.LIVE)
