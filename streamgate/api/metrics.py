"""Prometheus metrics: one collector that reads the gateway's state at scrape time.

Nothing on the media path touches a metric. The numbers already exist
(``ServerContext.counters``, per-stream and per-origin counters, the hub and
ingest tables); :class:`StreamgateCollector` turns them into ``streamgate_``
series when Prometheus scrapes, on the event loop that owns them.

Cardinality is bounded: per-stream series (labels ``app``, ``stream``) exist
only for the ``max_stream_series`` streams with the most players (ties by
name), ``streamgate_stream_series_omitted`` counts the rest, and every family
labelled from a counter key keeps at most ``MAX_LABEL_VALUES`` values (the
rest are summed under ``(other)``). Origins are labelled by address, which the
configuration bounds.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from streamgate import __version__
from streamgate.api.views import StreamRef, stream_refs
from streamgate.relay.stream import Stream
from streamgate.shield import BreakerState
from streamgate.tls.diagnosis import REASONS as TLS_REASONS

if TYPE_CHECKING:
    from streamgate.api.http import HttpServer
    from streamgate.api.thumbnails import Thumbnailer
    from streamgate.edge.directory import OriginDirectory
    from streamgate.edge.origins import Origin
    from streamgate.server.context import ServerContext

__all__ = [
    "BREAKER_VALUES",
    "DEFAULT_STREAM_SERIES",
    "LAG_BUCKETS",
    "MAX_LABEL_VALUES",
    "LoopLagMonitor",
    "StreamgateCollector",
]

DEFAULT_STREAM_SERIES = 100
"""Streams (top by players) that get per-stream series."""

MAX_LABEL_VALUES = 100
"""Most label values one counter-derived family carries; the rest sum into ``(other)``."""

BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
"""``streamgate_upstream_breaker_state``: 0 closed, 1 half-open, 2 open."""

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the event-loop lag histogram."""

# ServerCounters fields -> (metric, help).
_PLAIN_COUNTERS = {
    "protocol_errors": (
        "streamgate_protocol_errors",
        "RTMP connections closed for a protocol error.",
    ),
    "slow_players_dropped": (
        "streamgate_slow_players_dropped",
        "Players dropped because they could not keep up (or their socket failed).",
    ),
    "bans_issued": (
        "streamgate_bans_issued",
        "IP bans issued (repeated auth failures or plays of distinct missing streams).",
    ),
    "publishers_idle_dropped": (
        "streamgate_publishers_idle_dropped",
        "Publishers dropped for sending no media for publish_idle_timeout.",
    ),
}

# ServerCounters fields counted by a label -> (metric, help, label).
_LABELLED_COUNTERS = {
    "plays_refused": (
        "streamgate_plays_refused",
        "Plays refused, by the NetStream status code sent (the reason).",
        "reason",
    ),
    "rejected": (
        "streamgate_rejected",
        "Connections, plays and publishes refused by policy (admission limits, bans, auth, "
        "a name already published), by reason.",
        "reason",
    ),
}

_ORIGIN_STATES = ("live", "idle")
_EDGE_STATES = ("starting", "live", "linger", "reconnecting", "backing-off")
_ROLES = ("publisher", "player", "unknown")
_PROTOCOLS = ("rtmp", "flv", "ws-flv")


class LoopLagMonitor:
    """Event-loop lag: a timer due every ``interval`` s notes how late it ran.

    Lag is how long ready callbacks (a slow handler, a huge write, a blocking
    call) kept the loop from running a timer that was due.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.5,
        buckets: tuple[float, ...] = LAG_BUCKETS,
    ) -> None:
        self.loop = loop
        self.interval = interval
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket, the last is +Inf
        self.samples = 0
        self.total = 0.0
        self.last = 0.0
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start sampling (on the loop's thread)."""
        if self._handle is None:
            self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        self._due = self.loop.time() + self.interval
        self._handle = self.loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        self.observe(self.loop.time() - self._due)
        self._schedule()

    def observe(self, lag: float) -> None:
        """Record one lag sample (seconds; negative reads as 0)."""
        lag = max(lag, 0.0)
        self.last = lag
        self.samples += 1
        self.total += lag
        self.counts[bisect.bisect_left(self.buckets, lag)] += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """Histogram buckets as Prometheus wants them: (le, cumulative count)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


@dataclass(slots=True)
class _BytesTotal:
    """``streamgate_bytes_in_total`` without a hook on the media path.

    Live streams contribute their ``bytes_in``; a stream gone since the last
    scrape contributes what it had then. So the total is monotonic and exact
    for streams that lived across a scrape, and misses only what a stream
    received after the last scrape before it ended.
    """

    retired: int = 0
    seen: dict[tuple[int, float, str, str], int] = field(default_factory=dict)

    def update(self, streams: Iterable[Stream]) -> int:
        current = {(id(s), s.created, s.app, s.name): s.bytes_in for s in streams}
        for key, count in self.seen.items():
            if key not in current:
                self.retired += count
        self.seen = current
        return self.retired + sum(current.values())


@dataclass(slots=True)
class _StreamRow:
    players: int = 0
    viewers: Counter[str] = field(default_factory=Counter)  # players by protocol
    publishers: int = 0
    bytes_in: int = 0


class StreamgateCollector:
    """Reads a :class:`ServerContext` at scrape time; register it on a
    ``CollectorRegistry`` and call only on the context's event loop."""

    def __init__(
        self,
        ctx: ServerContext,
        *,
        listening: Callable[[], bool],
        lag: LoopLagMonitor | None = None,
        http: HttpServer | None = None,
        api_counters: Mapping[str, int] | None = None,
        max_stream_series: int = DEFAULT_STREAM_SERIES,
        thumbnails: Thumbnailer | None = None,
    ) -> None:
        self.ctx = ctx
        self.thumbnails = thumbnails
        self.listening = listening
        self.lag = lag
        self.http = http
        self.api_counters = api_counters if api_counters is not None else Counter()
        self.max_stream_series = max_stream_series
        self._bytes = _BytesTotal()

    def collect(self) -> Iterator[Metric]:
        """One scrape: every family, from the current state."""
        ctx = self.ctx
        now = ctx.loop.time()
        refs = stream_refs(ctx, now)
        yield from self._process(now)
        yield from self._connections()
        yield from self._streams(refs)
        yield from self._counters()
        yield from self._protection(now)
        if ctx.edge is not None:
            yield from self._edge(now)
        if ctx.cluster is not None:
            yield from self._cluster()
        if ctx.tls is not None:
            yield from self._tls()
        yield from self._loop_lag()
        yield from self._http()
        yield from _listen_queue()

    # ------------------------------------------------------------ families

    def _process(self, now: float) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "streamgate_info",
            "The gateway's mode and version (always 1).",
            labels=["mode", "version"],
        )
        info.add_metric([self.ctx.settings.mode, __version__], 1)
        yield info
        ready = self.listening()
        if self.ctx.edge is not None:
            ready = ready and self.ctx.edge.pool.any_healthy(now)
        yield GaugeMetricFamily(
            "streamgate_ready", "1 when /readyz answers 200, else 0.", value=int(ready)
        )

    def _connections(self) -> Iterator[Metric]:
        roles = Counter(dict.fromkeys(_ROLES, 0))
        for session in self.ctx.sessions.values():
            roles[session.role] += 1
        family = GaugeMetricFamily(
            "streamgate_connections", "Open RTMP connections, by role.", labels=["role"]
        )
        for role, count in sorted(roles.items()):
            family.add_metric([role], count)
        yield family

    def _streams(self, refs: list[StreamRef]) -> Iterator[Metric]:
        ctx = self.ctx
        states = Counter({("published", s): 0 for s in _ORIGIN_STATES})
        if ctx.edge is not None:
            states.update({("pulled", s): 0 for s in _EDGE_STATES})
        rows: dict[tuple[str, str], _StreamRow] = {}
        players = 0
        viewers: Counter[str] = Counter(dict.fromkeys(_PROTOCOLS, 0))
        for ref in refs:
            states[(ref.role, ref.state)] += 1
            row = rows.setdefault((ref.app, ref.name), _StreamRow())
            count = ref.stream.player_count
            players += count
            row.players += count
            by_protocol = ref.stream.viewers()
            viewers.update(by_protocol)
            row.viewers.update(by_protocol)
            row.publishers += 1 if ref.ingest is None or ref.ingest.link is not None else 0
            row.bytes_in += ref.stream.bytes_in
        family = GaugeMetricFamily(
            "streamgate_streams", "Streams, by role and state.", labels=["role", "state"]
        )
        for (role, state), count in sorted(states.items()):
            family.add_metric([role, state], count)
        yield family
        yield GaugeMetricFamily(
            "streamgate_players", "Players attached to streams (all streams).", value=players
        )
        viewer_family = GaugeMetricFamily(
            "streamgate_viewers",
            "Players attached to streams, by protocol (rtmp, flv, ws-flv).",
            labels=["protocol"],
        )
        for protocol, count in sorted(viewers.items()):
            viewer_family.add_metric([protocol], count)
        yield viewer_family
        waiting = ctx.hub.waiting + sum(len(i.waiters) for i in (ctx.edge or ()))
        yield GaugeMetricFamily(
            "streamgate_waiting_players", "Players waiting for a stream to start.", value=waiting
        )
        yield CounterMetricFamily(
            "streamgate_bytes_in",
            "Media payload bytes received from publishers and origins (see docs: a stream's "
            "bytes after the last scrape before it ended are not counted).",
            value=self._bytes.update(ref.stream for ref in refs),
        )

        top = sorted(rows.items(), key=lambda kv: (-kv[1].players, kv[0]))
        shown = top[: self.max_stream_series]
        labels = ["app", "stream"]
        per_players = GaugeMetricFamily(
            "streamgate_stream_players", "Players per stream (top streams only).", labels=labels
        )
        per_publishers = GaugeMetricFamily(
            "streamgate_stream_publishers",
            "Publishers per stream: the publisher (origin) or an open upstream link (edge).",
            labels=labels,
        )
        per_bytes = CounterMetricFamily(
            "streamgate_stream_bytes_in",
            "Media payload bytes received per stream (top streams only; resets with the stream).",
            labels=labels,
        )
        per_viewers = GaugeMetricFamily(
            "streamgate_stream_viewers",
            "Players per stream by protocol (top streams only).",
            labels=[*labels, "protocol"],
        )
        for (app, name), row in shown:
            per_players.add_metric([app, name], row.players)
            for protocol, count in sorted(row.viewers.items()):
                if count:
                    per_viewers.add_metric([app, name, protocol], count)
            per_publishers.add_metric([app, name], row.publishers)
            per_bytes.add_metric([app, name], row.bytes_in)
        yield per_players
        yield per_viewers
        yield per_publishers
        yield per_bytes
        yield GaugeMetricFamily(
            "streamgate_stream_series_omitted",
            f"Streams left out of per-stream series (only the top {self.max_stream_series} "
            "by players get them).",
            value=len(rows) - len(shown),
        )

    def _counters(self) -> Iterator[Metric]:
        counters = self.ctx.counters
        for attr, (name, doc) in _PLAIN_COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=getattr(counters, attr))
        for attr, (name, doc, label) in _LABELLED_COUNTERS.items():
            yield _labelled_counter(name, doc, label, dict(getattr(counters, attr)))

    def _protection(self, now: float) -> Iterator[Metric]:
        ctx = self.ctx
        yield GaugeMetricFamily(
            "streamgate_bans_active", "IPs banned right now.", value=len(ctx.bans.bans(now))
        )
        yield CounterMetricFamily(
            "streamgate_ban_store_failures",
            "Ban store calls that failed (protection degraded, plays went on).",
            value=ctx.bans.failures,
        )
        yield GaugeMetricFamily(
            "streamgate_admitted_connections",
            "RTMP connections counted by the admission guard.",
            value=ctx.admission.connections,
        )
        yield GaugeMetricFamily(
            "streamgate_admission_tracked_ips",
            "IPs the admission guard keeps per-IP state for.",
            value=ctx.admission.tracked_ips,
        )

    def _cluster(self) -> Iterator[Metric]:
        cluster = self.ctx.cluster
        assert cluster is not None
        rep = cluster.replicator
        yield GaugeMetricFamily(
            "streamgate_cluster_up", "1 while this node reaches the cluster's Redis.", value=rep.up
        )
        yield GaugeMetricFamily(
            "streamgate_cluster_nodes",
            "Nodes of the fleet with a live heartbeat (as of the last read).",
            value=len(rep.nodes),
        )
        yield CounterMetricFamily(
            "streamgate_cluster_redis_errors",
            "Failed Redis sessions or connects (each followed by a backoff and a retry).",
            value=rep.counters["errors"],
        )
        yield _labelled_counter(
            "streamgate_cluster_received",
            "Changes learned from other nodes and applied here, by kind.",
            "kind",
            rep.received(),
        )
        sent = {k.partition(":")[2]: v for k, v in rep.counters.items() if k.startswith("sent:")}
        yield _labelled_counter(
            "streamgate_cluster_sent",
            "Local changes written to the cluster, by kind.",
            "kind",
            sent,
        )
        yield _labelled_counter(
            "streamgate_cluster_malformed",
            "Entries read from Redis that were not what a node writes (ignored), by kind.",
            "kind",
            rep.malformed(),
        )
        yield CounterMetricFamily(
            "streamgate_cluster_dropped",
            "Local changes dropped because the write queue was full.",
            value=rep.counters["dropped"],
        )
        if cluster.budget is not None:
            yield _labelled_counter(
                "streamgate_cluster_budget",
                "Fleet connect budget checks: granted, refused, fallback (local limits only).",
                "result",
                cluster.budget.counters,
            )

    def _edge(self, now: float) -> Iterator[Metric]:
        edge = self.ctx.edge
        assert edge is not None
        labels = ["origin"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "links": GaugeMetricFamily(
                "streamgate_upstream_links", "Open upstream links, per origin.", labels=labels
            ),
            "breaker": GaugeMetricFamily(
                "streamgate_upstream_breaker_state",
                "Circuit breaker per origin: 0 closed, 1 half-open, 2 open.",
                labels=labels,
            ),
            "connects": CounterMetricFamily(
                "streamgate_upstream_connects",
                "Upstream connect attempts started, per origin.",
                labels=labels,
            ),
            "failures": CounterMetricFamily(
                "streamgate_upstream_connect_failures",
                "Upstream connects that failed (unreachable, or no answer in time), per origin.",
                labels=labels,
            ),
            "missing": CounterMetricFamily(
                "streamgate_upstream_missing",
                "Upstream plays the origin answered as missing (or sent no media), per origin.",
                labels=labels,
            ),
            "rate_limited": CounterMetricFamily(
                "streamgate_upstream_rate_limited",
                "Connects not attempted because of the per-origin connect rate, per origin.",
                labels=labels,
            ),
            "opens": CounterMetricFamily(
                "streamgate_upstream_breaker_opens",
                "Times the origin's circuit breaker opened.",
                labels=labels,
            ),
        }
        tls_failures = CounterMetricFamily(
            "streamgate_edge_tls_failures",
            "TLS handshakes (or pin checks) toward rtmps:// origins that failed, per origin "
            "and reason: expired, not_yet_valid, self_signed, unknown_issuer, "
            "hostname_mismatch, pin_mismatch, protocol, timeout, not_tls, other.",
            labels=["origin", "reason"],
        )
        for origin in edge.pool.origins:
            address = [origin.address]
            if origin.tls:
                for reason in TLS_REASONS:
                    tls_failures.add_metric([origin.address, reason], origin.tls_failures[reason])
            families["links"].add_metric(address, origin.links)
            families["breaker"].add_metric(address, BREAKER_VALUES[origin.breaker.current(now)])
            families["connects"].add_metric(address, origin.connects)
            families["failures"].add_metric(address, origin.failures)
            families["missing"].add_metric(address, origin.missing)
            families["rate_limited"].add_metric(address, origin.rate_limited)
            families["opens"].add_metric(address, origin.breaker.opens)
        yield from families.values()
        yield tls_failures
        if edge.directory is not None:
            yield from self._directory(edge.directory, edge.pool.origins, now)
        refusals = dict(edge.refusals)
        yield _labelled_counter(
            "streamgate_edge_plays_refused",
            "Edge plays refused before any origin was asked (negative cache, breaker, "
            "rate, link cap), by reason.",
            "reason",
            refusals,
        )
        yield GaugeMetricFamily(
            "streamgate_negative_cache_entries",
            "Stream names the edge currently refuses as missing.",
            value=len(edge.negative),
        )
        yield CounterMetricFamily(
            "streamgate_negative_cache_hits",
            "Plays answered from the negative cache.",
            value=edge.negative.hits,
        )

    @staticmethod
    def _directory(
        directory: OriginDirectory, origins: list[Origin], now: float
    ) -> Iterator[Metric]:
        labels = ["origin"]
        listed = GaugeMetricFamily(
            "streamgate_origin_directory_streams",
            "Streams the origin's directory lists (last good poll).",
            labels=labels,
        )
        fresh = GaugeMetricFamily(
            "streamgate_origin_directory_fresh",
            "1 while the origin's directory listing is fresh enough to act on.",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "streamgate_origin_directory_poll_failures",
            "Directory polls that failed (unreachable, HTTP error, unreadable listing).",
            labels=labels,
        )
        for origin, listing in zip(origins, directory.listings, strict=False):
            if listing.target is None:
                continue
            address = [origin.address]
            listed.add_metric(address, len(listing.names))
            fresh.add_metric(address, 1 if listing.fresh(now, directory.stale_after) else 0)
            failures.add_metric(address, listing.failures)
        yield from (listed, fresh, failures)

    def _tls(self) -> Iterator[Metric]:
        tls = self.ctx.tls
        assert tls is not None
        expiry = GaugeMetricFamily(
            "streamgate_tls_certificate_expiry_days",
            "Days until each served RTMPS certificate expires (negative: expired).",
            labels=["certificate"],
        )
        for path, days in tls.expiry_days():
            expiry.add_metric([path], round(days, 3))
        yield expiry
        yield _labelled_counter(
            "streamgate_tls_handshake_failures",
            "RTMPS handshakes that failed, by reason (plain_rtmp, not_tls, closed, or "
            "OpenSSL's reason in lower case).",
            "reason",
            dict(tls.failures),
        )

    def _loop_lag(self) -> Iterator[Metric]:
        lag = self.lag
        if lag is None:
            return
        histogram = HistogramMetricFamily(
            "streamgate_event_loop_lag_seconds",
            f"How late a timer due every {lag.interval:g} s ran on the event loop.",
            buckets=lag.cumulative(),
            sum_value=lag.total,
        )
        yield histogram
        yield GaugeMetricFamily(
            "streamgate_event_loop_lag_last_seconds",
            "The most recent event-loop lag sample.",
            value=lag.last,
        )

    def _http(self) -> Iterator[Metric]:
        if self.http is not None:
            yield from http_families(self.http)
        if self.thumbnails is not None:
            yield CounterMetricFamily(
                "streamgate_thumbnails_made",
                "Stream thumbnails decoded (JPEGs and undecodable keyframes); the API serves "
                "the cached one in between.",
                value=self.thumbnails.made,
            )
        yield _labelled_counter(
            "streamgate_api_actions",
            "Changes made through the HTTP API (streams ended, clients kicked, misses forgotten).",
            "action",
            dict(self.api_counters),
        )


def http_families(http: HttpServer) -> Iterator[Metric]:
    """An HTTP listener's connections, answers, refusals, evictions and timeouts."""
    yield GaugeMetricFamily(
        "streamgate_http_connections", "Open HTTP API connections.", value=len(http.connections)
    )
    statuses = {
        k.partition(":")[2]: v for k, v in http.counters.items() if k.startswith("status:")
    }
    yield _labelled_counter(
        "streamgate_http_responses", "HTTP API responses, by status code.", "code", statuses
    )
    yield CounterMetricFamily(
        "streamgate_http_connections_rejected",
        "HTTP connections refused (503) at the global or the per-address cap.",
        value=http.counters.get("rejected_busy", 0),
    )
    yield CounterMetricFamily(
        "streamgate_http_connections_evicted",
        "HTTP connections closed at the cap to admit a newcomer (slow or idle ones).",
        value=http.counters.get("evicted", 0),
    )
    yield CounterMetricFamily(
        "streamgate_http_timeouts",
        "HTTP connections closed for not sending a request in time.",
        value=http.counters.get("timeouts", 0),
    )


def http_exposition(http: HttpServer) -> str:
    """:func:`http_families` as exposition text (a supervisor's, merged with its workers')."""

    class _One:
        def collect(self) -> Iterator[Metric]:
            return http_families(http)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_One())
    return generate_latest(registry).decode("utf-8")

NETSTAT = Path("/proc/net/netstat")
_LISTEN_SERIES = {
    "ListenOverflows": (
        "streamgate_listen_overflows",
        "Connections the kernel could not queue for accept because an accept queue was "
        "full (TcpExt ListenOverflows: the whole network namespace, every listener). "
        "Such a client may believe it is connected while the gateway never saw it: "
        "raise [rtmp] backlog and net.core.somaxconn.",
    ),
    "ListenDrops": (
        "streamgate_listen_drops",
        "Connection attempts the kernel dropped at a listening socket, overflows included "
        "(TcpExt ListenDrops, the whole network namespace).",
    ),
}


def _listen_queue(path: Path = NETSTAT) -> Iterator[Metric]:
    """Accept-queue overflows, read from the kernel at scrape time (Linux only:
    absent where the file is missing or unreadable)."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    # Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if not names.startswith("TcpExt:") or not values.startswith("TcpExt:"):
            continue
        table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
        for key, (name, doc) in _LISTEN_SERIES.items():
            value = table.get(key)
            if value is not None and value.isdigit():
                yield CounterMetricFamily(name, doc, value=int(value))
        return


def _labelled_counter(name: str, doc: str, label: str, values: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ranked[: MAX_LABEL_VALUES - 1] if len(ranked) > MAX_LABEL_VALUES else ranked
    for value, count in sorted(kept):
        family.add_metric([value], count)
    if len(kept) < len(ranked):
        family.add_metric(["(other)"], sum(count for _, count in ranked[len(kept) :]))
    return family
