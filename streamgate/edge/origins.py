"""The origins an edge pulls from, and the bounds that protect each of them.

Invariants, per origin:

* at most ``max_upstreams`` links are open at once;
* at most ``max_connects_per_second`` connects start in any one-second
  window (an exact sliding window, not a bucket that adds a burst);
* after ``breaker_failures`` consecutive connect failures the breaker opens
  and no connect is attempted until a single probe succeeds;
* each link's outcome (reached or not) is told to the breaker once, by the
  pool: callers report through :class:`OriginPool`'s methods and never touch
  an origin's health themselves.

A caller that cannot get an origin gets a refusal reason at once: nothing
queues, nothing waits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from streamgate.client import RtmpUrl
from streamgate.shield import BreakerState, CircuitBreaker, RateWindow

__all__ = ["Lease", "Origin", "OriginAddress", "OriginPool", "Refusal", "parse_origin"]

# rtmps:// without a port: 443, as FFmpeg (and librtmp) use.
_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


class OriginAddress(NamedTuple):
    host: str
    port: int
    tls: bool


def parse_origin(url: str) -> OriginAddress:
    """``rtmp://host[:port]`` or ``rtmps://host[:port]`` (TLS) -> (host, port, tls);
    the app and name come from the player."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"origin must be rtmp://host[:port] or rtmps://host[:port], got {url!r}")
    if parts.path.strip("/") or parts.query:
        raise ValueError(f"origin must not have a path or query (the player's are used): {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError(f"origin has an invalid port: {url!r}") from None
    return OriginAddress(parts.hostname, port, parts.scheme == "rtmps")


@dataclass(slots=True)
class Origin:
    """One upstream origin and its health."""

    host: str
    port: int
    breaker: CircuitBreaker
    connect_rate: RateWindow
    max_upstreams: int
    links: int = 0
    connects: int = 0
    failures: int = 0
    missing: int = 0
    last_error: str = ""
    rate_limited: int = 0
    tls: bool = False  # rtmps://
    # TLS failures by reason (streamgate.tls.diagnosis.REASONS), and the last one's.
    tls_failures: Counter[str] = field(default_factory=Counter)
    last_tls_failure: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def scheme(self) -> str:
        return "rtmps" if self.tls else "rtmp"

    def count_tls_failure(self, reason: str) -> None:
        """A link's TLS handshake (or pin check) failed for ``reason``; the link
        still reports the failure to the pool, which judges the origin's health."""
        self.tls_failures[reason] += 1
        self.last_tls_failure = reason

    def url(self, app: str, name: str) -> RtmpUrl:
        return RtmpUrl(self.host, self.port, app, name)

    def healthy(self, now: float) -> bool:
        return self.breaker.current(now) is not BreakerState.OPEN


@dataclass(slots=True)
class Lease:
    """An origin granted for one link, from :meth:`OriginPool.acquire` to
    :meth:`OriginPool.release`.

    ``index``: the origin's place in the pool; ``probe``: the link is the
    breaker's half-open probe; ``judged``: the link's outcome was told to the
    breaker (the pool sets it).
    """

    origin: Origin
    index: int
    probe: bool
    judged: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no origin could be used now; ``reason`` is a metrics label."""

    reason: str
    description: str


@dataclass(slots=True)
class OriginPool:
    origins: list[Origin] = field(default_factory=list)

    @classmethod
    def from_urls(
        cls,
        urls: list[str],
        *,
        max_upstreams: int,
        max_connects_per_second: float,
        breaker_failures: int,
        breaker_reset: float,
        now: float,
    ) -> OriginPool:
        return cls(
            [
                Origin(
                    address.host,
                    address.port,
                    CircuitBreaker(breaker_failures, breaker_reset),
                    RateWindow(max_connects_per_second),
                    max_upstreams,
                    tls=address.tls,
                )
                for address in map(parse_origin, urls)
            ]
        )

    def acquire(
        self,
        now: float,
        exclude: frozenset[int] = frozenset(),
        listed: frozenset[int] = frozenset(),
    ) -> Lease | Refusal:
        """The first usable origin, skipping ``exclude`` (indexes already tried).

        Origins in ``listed`` (their directory lists the stream) come first, in
        order, and are not held back by the connect rate: the stream is live
        there and its ingest is shared, so this costs one link per live stream.
        Taking an origin counts a connect against its rate and a link against
        its cap; the caller must :meth:`release` the link when it closes.
        """
        refusal: Refusal | None = None
        if self.origins and len(exclude) >= len(self.origins):
            return Refusal("exhausted", "every origin failed")
        order: Sequence[int] = range(len(self.origins))
        if listed:  # not for a plain miss: a flood comes through here
            order = sorted(order, key=lambda i: i not in listed)
        for index in order:
            if index in exclude:
                continue
            origin = self.origins[index]
            if origin.links >= origin.max_upstreams:
                refusal = refusal or Refusal(
                    "max_upstreams", f"origin {origin.address}: upstream link limit reached"
                )
                continue
            probe = origin.breaker.current(now) is BreakerState.HALF_OPEN
            if not origin.breaker.allow(now):
                last = f": {origin.last_error}" if origin.last_error else ""
                refusal = refusal or Refusal(
                    "breaker_open", f"origin {origin.address} is failing (circuit open){last}"
                )
                continue
            if index in listed:
                origin.connect_rate.take(now)  # counted, so misses get less of the budget
            elif not origin.connect_rate.try_take(now):
                origin.rate_limited += 1
                if probe:
                    origin.breaker.release()
                refusal = refusal or Refusal(
                    "connect_rate", f"origin {origin.address}: connect rate limit reached"
                )
                continue
            origin.links += 1
            origin.connects += 1
            return Lease(origin, index, probe)
        return refusal or Refusal("no_origin", "no origin is configured")

    def record_success(self, lease: Lease) -> None:
        """The origin answered on this link (it played, refused or sent media): it is up."""
        if not lease.judged:
            lease.judged = True
            lease.origin.breaker.success()

    def record_failure(self, lease: Lease, description: str, now: float) -> None:
        """The link could not reach the origin, or the origin did not answer in time."""
        if not lease.judged:
            lease.judged = True
            origin = lease.origin
            origin.failures += 1
            origin.last_error = description
            origin.breaker.failure(now)

    def record_miss(self, lease: Lease) -> None:
        """The origin does not have the stream (it said so, or sent no media)."""
        lease.origin.missing += 1

    def release(self, lease: Lease) -> None:
        """The link is closed: its slot is free again. A probe closed before its
        outcome was known gives the probe back, or it would block the next one."""
        origin = lease.origin
        origin.links = max(0, origin.links - 1)
        if lease.probe and not lease.judged:
            origin.breaker.release()

    def any_healthy(self, now: float) -> bool:
        return any(o.healthy(now) for o in self.origins)
