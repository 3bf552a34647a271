"""One stream pulled from an origin: the single upstream link its players share.

States and what moves them (all transitions are in this class, timers on
the injected clock):

============  ======================================  =========================
state         meaning                                 leaves on
============  ======================================  =========================
STARTING      link requested, players wait            first media -> LIVE;
                                                      missing/timeout -> ENDED
                                                      (negative cache);
                                                      every origin down -> ENDED
LIVE          media flows to attached players         last player left -> LINGER;
                                                      no media for idle_timeout
                                                      or unpublished -> ENDED;
                                                      link lost -> RECONNECTING
LINGER        no players, link kept ``linger`` s      player -> LIVE; timer -> ENDED
RECONNECTING  link lost, players kept                 media on a new link -> LIVE;
                                                      ``reconnect_grace`` over or
                                                      no player left -> ENDED
ENDED         link closed, removed from the hub       (terminal)
============  ======================================  =========================

Invariants:

* At most one link at a time; every link is closed exactly once.
* Players that wait have not been told ``Play.Start``; each gets exactly
  one answer (ready or refused).
* Retries are bounded: a never-started stream fails over across origins once
  and gives up; a lost stream retries with jittered exponential backoff only
  within ``reconnect_grace`` and only while a player is left.
* Timestamps seen by players never go back: a new link is rebased to
  continue after the last timestamp sent.

An ingest knows its owner only as an :class:`IngestHost` (the edge hub is
one), and reports each link's outcome to the origin pool, which keeps the
origins' health.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from streamgate.edge.origins import Lease, Origin, OriginPool, Refusal
from streamgate.relay.clock import Clock, TimerHandle, notify
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.messages import Status
from streamgate.shield import Backoff

__all__ = [
    "Connector",
    "Ingest",
    "IngestHost",
    "IngestState",
    "IngestTiming",
    "Link",
    "LinkSink",
    "PlayWaiter",
]


class IngestState(Enum):
    STARTING = "starting"
    LIVE = "live"
    LINGER = "linger"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


class LinkSink(Protocol):
    """What an upstream link reports; nothing is reported after ``close()``."""

    def link_playing(self) -> None:
        """The origin accepted the play (``Play.Start``/``Play.Reset``)."""

    def link_media(self, type_id: int, timestamp: int, payload: bytes) -> None: ...

    def link_media_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        """Media messages in order, as ``link_media`` would have had them one by one."""

    def link_data(self, timestamp: int, values: tuple[Any, ...], payload: bytes) -> None: ...

    def link_flush(self) -> None:
        """A merged read was delivered: write it out to the players now."""

    def link_missing(self, code: str, description: str) -> None:
        """The origin answered: no such stream, or refused us."""

    def link_known_missing(self, code: str, description: str) -> None:
        """The link never reached the origin: the stream is known missing elsewhere
        (another edge's verdict, through the fleet). No word on the origin's health."""

    def link_ended(self, description: str) -> None:
        """The origin says the stream was unpublished."""

    def link_failed(self, description: str, *, connect: bool) -> None:
        """``connect``: the origin could not be reached or did not answer in time;
        otherwise an established link was lost."""

    def link_refused(self, reason: str, description: str) -> None:
        """The link was held back before it reached the origin (the fleet's connect
        budget): a refusal like the pool's, no verdict on the origin."""


class Link(Protocol):
    def close(self) -> None: ...


class Connector(Protocol):
    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Link: ...


class IngestTiming(Protocol):
    """The timeouts and retry bounds an ingest runs on, in seconds."""

    @property
    def start_timeout(self) -> float: ...
    @property
    def idle_timeout(self) -> float: ...
    @property
    def linger(self) -> float: ...
    @property
    def reconnect_grace(self) -> float: ...
    @property
    def backoff_initial(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...


class IngestHost(Protocol):
    """What an ingest needs from the edge that owns it (the edge hub implements it)."""

    @property
    def clock(self) -> Clock: ...
    @property
    def fanout(self) -> FanoutSettings: ...
    @property
    def settings(self) -> IngestTiming: ...
    @property
    def rng(self) -> random.Random:
        """Backoff jitter."""

    @property
    def pool(self) -> OriginPool:
        """The origins to lease links from and report their outcomes to."""

    def listed_by(self, app: str, name: str) -> frozenset[int]:
        """Indexes of the origins whose directory lists ``app``/``name`` now."""

    def open_link(self, origin: Origin, app: str, name: str, sink: LinkSink) -> Link:
        """Open a link to ``origin`` to play ``app``/``name`` (the host may sign the name)."""

    def remember_missing(self, key: tuple[str, str], description: str) -> None:
        """The stream ``key`` is missing upstream: refuse its plays for a while."""

    def count_refusal(self, reason: str) -> None:
        """A play was refused for ``reason`` (a metrics label)."""

    def ingest_ended(self, ingest: Ingest, reason: str) -> None:
        """``ingest`` ended: it must no longer be handed players."""


@dataclass(slots=True)
class PlayWaiter:
    on_ready: Callable[[Stream], None]
    on_refused: Callable[[str, str], None]
    ingest: Ingest | None = None


class Ingest:
    """The upstream side of one edge stream."""

    def __init__(
        self, host: IngestHost, key: tuple[str, str], app: str, upstream_name: str
    ) -> None:
        self.host = host
        self.key = key
        self.app = app
        self.upstream_name = upstream_name
        self.clock = host.clock
        self.settings = host.settings
        self.stream = Stream(app, key[1], host.clock, host.fanout)
        self.stream.on_empty = self._players_gone
        self.state = IngestState.STARTING
        self.waiters: list[PlayWaiter] = []
        # The last one leased (the API shows it; a refusal quotes its error).
        self.origin: Origin | None = None
        self._lease: Lease | None = None  # the open link's hold on its origin
        self.link: Link | None = None
        self.links_opened = 0
        self.link_started: float | None = None
        self._open_link = 0  # number of the link reports are accepted from; 0: none
        self._outage_since: float | None = None  # first loss not yet followed by stability
        self._tried: set[int] = set()
        self._link_has_media = False
        self._offset = 0
        self._last_out: int | None = None
        self.backoff = Backoff(
            self.settings.backoff_initial, self.settings.backoff_max, uniform=host.rng.uniform
        )
        self.retry_delays: list[float] = []  # the schedule actually used, for the API and tests
        self._start_timer: TimerHandle | None = None
        self._idle_timer: TimerHandle | None = None
        self._linger_timer: TimerHandle | None = None
        self._grace_timer: TimerHandle | None = None
        self._retry_timer: TimerHandle | None = None
        self._stable_timer: TimerHandle | None = None

    # ------------------------------------------------------------ players

    def add_waiter(self, waiter: PlayWaiter) -> None:
        """A player for this stream: served now if live, else when the link is."""
        if self.state is IngestState.LINGER:
            self._cancel("_linger_timer")
            self.state = IngestState.LIVE
        if self.state is IngestState.LIVE:
            waiter.on_ready(self.stream)
            return
        waiter.ingest = self
        self.waiters.append(waiter)

    def remove_waiter(self, waiter: PlayWaiter) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        if self.state is IngestState.STARTING and not self.waiters:
            self._end("no player is waiting any more")
        elif self.state is IngestState.RECONNECTING and not self._has_audience():
            self._end("no player is left")

    def _has_audience(self) -> bool:
        return bool(self.waiters) or self.stream.player_count > 0

    def _players_gone(self) -> None:
        if self.state is IngestState.LIVE and not self.waiters:
            self.state = IngestState.LINGER
            self._linger_timer = self.clock.call_later(self.settings.linger, self._linger_over)
        elif self.state is IngestState.RECONNECTING and not self.waiters:
            self._end("no player is left")

    def _linger_over(self) -> None:
        self._linger_timer = None
        if self.state is IngestState.LINGER:
            self._end("the last player left")

    # ------------------------------------------------------------ linking

    def start(self) -> None:
        """Open the first link. Reaching the origin is bounded by the link's own
        connect/reply timeouts (a failure that fails over); the start timer
        runs from the origin's answer to the first media."""
        self._attempt()

    def _attempt(self) -> None:
        listed = self.host.listed_by(self.app, self.upstream_name)
        choice = self.host.pool.acquire(self.clock.now(), frozenset(self._tried), listed)
        if isinstance(choice, Refusal):
            self.host.count_refusal(choice.reason)
            self._no_origin(choice)
            return
        self.origin = choice.origin
        self._lease = choice
        self._tried.add(choice.index)
        self._link_has_media = False
        self.links_opened += 1
        self._open_link = self.links_opened
        self.link_started = self.clock.now()
        self.link = self.host.open_link(
            choice.origin, self.app, self.upstream_name, _Sink(self, self.links_opened)
        )

    def _no_origin(self, refusal: Refusal) -> None:
        if self.state is IngestState.STARTING:
            description = refusal.description
            if refusal.reason == "exhausted" and self.origin is not None:
                description = f"origin unavailable: {self.origin.last_error}"
            self._refuse_waiters(Status.PLAY_FAILED, description)
            self._end(description)
        elif self.state is IngestState.RECONNECTING:
            self._schedule_retry()

    def _close_link(self) -> None:
        link, self.link = self.link, None
        self._open_link = 0
        if link is None:
            return
        link.close()
        lease, self._lease = self._lease, None
        if lease is not None:
            self.host.pool.release(lease)

    def _origin_ok(self) -> None:
        if self._lease is not None:
            self.host.pool.record_success(self._lease)

    # ------------------------------------------------------------ link events

    def link_playing(self) -> None:
        self._origin_ok()
        if not self._link_has_media and self.state in (
            IngestState.STARTING,
            IngestState.RECONNECTING,
        ):
            # The origin took the play: now it has start_timeout to send media
            # (SRS answers Play.Start for a missing stream and then says nothing).
            self._cancel("_start_timer")
            self._start_timer = self.clock.call_later(
                self.settings.start_timeout, self._start_timeout
            )

    def link_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        if not self._link_has_media:
            self._first_media(timestamp)
        out = (timestamp + self._offset) & 0xFFFFFFFF
        self._last_out = out
        self.stream.on_media(type_id, out, payload)
        if self.waiters:
            self._serve_waiters()

    def link_media_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        if not self._link_has_media:
            self.link_media(*items[0])
            items = items[1:]
        if items:
            self._last_out = self.stream.on_media_batch(items, self._offset)
            if self.waiters:
                self._serve_waiters()

    def link_data(self, timestamp: int, values: tuple[Any, ...], payload: bytes) -> None:
        self.stream.on_metadata((timestamp + self._offset) & 0xFFFFFFFF, values, payload)

    def _first_media(self, timestamp: int) -> None:
        self._link_has_media = True
        self._origin_ok()
        self._cancel("_start_timer")
        self._cancel("_retry_timer")
        self._tried.clear()
        if self._outage_since is not None:
            # Back, but a flapping origin must not reset the backoff and the
            # grace with every brief link: only a link that stays does.
            self._stable_timer = self.clock.call_later(_STABLE_AFTER, self._link_stable)
        if self._last_out is not None:
            # A new link starts its own clock: continue after what players saw.
            self._offset = self._last_out + 1 - timestamp
        self.state = IngestState.LIVE
        self._arm_idle()

    def _link_stable(self) -> None:
        self._stable_timer = None
        if self.state in (IngestState.LIVE, IngestState.LINGER):
            self._outage_since = None
            self.backoff.reset()
            self._cancel("_grace_timer")

    def _serve_waiters(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.ingest = None
            notify(waiter.on_ready, self.stream)
        if self.state is IngestState.LIVE and self.stream.player_count == 0:
            self._players_gone()  # every waiter had left by now: linger, then close

    def link_missing(self, code: str, description: str) -> None:
        if self._lease is not None:
            self.host.pool.record_miss(self._lease)
        self._origin_ok()  # it answered: the origin itself is fine
        if self.state in (IngestState.STARTING, IngestState.RECONNECTING):
            self.host.remember_missing(self.key, description)
        if self.state is IngestState.STARTING:
            self._refuse_waiters(code, description)
            self._end(description)
        else:
            self._finish(Status.PLAY_UNPUBLISH_NOTIFY, description)

    def link_known_missing(self, code: str, description: str) -> None:
        # Another edge's answer: this origin's breaker and counters move only on
        # this edge's own answers from it. Closing the link gives an unused
        # half-open probe back (the lease was never judged).
        if self.state in (IngestState.STARTING, IngestState.RECONNECTING):
            self.host.remember_missing(self.key, description)
        if self.state is IngestState.STARTING:
            self._refuse_waiters(code, description)
            self._end(description)
        else:
            self._finish(Status.PLAY_UNPUBLISH_NOTIFY, description)

    def link_ended(self, description: str) -> None:
        if self.state is IngestState.STARTING:
            self.host.remember_missing(self.key, description)
            self._refuse_waiters(Status.PLAY_STREAM_NOT_FOUND, description)
            self._end(description)
        else:
            self._finish(Status.PLAY_UNPUBLISH_NOTIFY, description)

    def link_failed(self, description: str, *, connect: bool) -> None:
        if connect and self._lease is not None:
            self.host.pool.record_failure(self._lease, description, self.clock.now())
        self._close_link()
        if self.state is IngestState.STARTING:
            if connect:
                self._attempt()  # fail over to the next origin, each tried once
            else:
                # The origin took the play and hung up before any media.
                self.host.remember_missing(self.key, description)
                self._refuse_waiters(Status.PLAY_STREAM_NOT_FOUND, description)
                self._end(description)
        elif self.state in (IngestState.LIVE, IngestState.RECONNECTING):
            if not self._has_audience():
                self._end(description)
                return
            if self.state is IngestState.LIVE:
                now = self.clock.now()
                if self._outage_since is None:
                    self._outage_since = now
                left = self.settings.reconnect_grace - (now - self._outage_since)
                if left <= 0:  # it keeps coming back only to drop again
                    self._finish(
                        Status.PLAY_FAILED,
                        f"origin unstable for {self.settings.reconnect_grace:g} s",
                    )
                    return
                self.state = IngestState.RECONNECTING
                self._cancel("_idle_timer")
                self._cancel("_stable_timer")
                if self._grace_timer is None:
                    self._grace_timer = self.clock.call_later(left, self._grace_over)
            self._schedule_retry()
        elif self.state is IngestState.LINGER:
            self._end(description)

    def link_refused(self, reason: str, description: str) -> None:
        self._close_link()  # releases the pool's link and an unused probe
        self.host.count_refusal(reason)
        self._no_origin(Refusal(reason, description))

    # ------------------------------------------------------------ timers

    def _start_timeout(self) -> None:
        self._start_timer = None
        if self.state is IngestState.RECONNECTING:
            self._schedule_retry()  # this link came up silent; the grace bounds the tries
            return
        if self.state is not IngestState.STARTING:
            return
        description = (
            f"origin sent no media within {self.settings.start_timeout:g} s: stream missing or idle"
        )
        if self._lease is not None:
            self.host.pool.record_miss(self._lease)
        self.host.remember_missing(self.key, description)
        self._refuse_waiters(Status.PLAY_STREAM_NOT_FOUND, description)
        self._end(description)

    def _arm_idle(self) -> None:
        self._cancel("_idle_timer")
        due = self.stream.last_media + self.settings.idle_timeout - self.clock.now()
        self._idle_timer = self.clock.call_later(max(due, 0.0), self._idle_check)

    def _idle_check(self) -> None:
        """Fires once per idle period, not per message: re-armed from the last media time."""
        self._idle_timer = None
        if self.state not in (IngestState.LIVE, IngestState.LINGER):
            return
        if self.clock.now() - self.stream.last_media >= self.settings.idle_timeout:
            self._finish(
                Status.PLAY_UNPUBLISH_NOTIFY,
                f"no media from the origin for {self.settings.idle_timeout:g} s",
            )
        else:
            self._arm_idle()

    def _schedule_retry(self) -> None:
        self._close_link()
        self._cancel("_start_timer")  # that link is gone: its start deadline with it
        self._cancel("_retry_timer")
        delay = self.backoff.next_delay()
        self.retry_delays.append(delay)
        self._retry_timer = self.clock.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        if self.state is not IngestState.RECONNECTING:
            return
        if not self._has_audience():
            self._end("no player is left")
            return
        self._tried.clear()
        self._attempt()

    def _grace_over(self) -> None:
        self._grace_timer = None
        if self.state is IngestState.RECONNECTING:
            self._finish(
                Status.PLAY_FAILED,
                f"origin lost for {self.settings.reconnect_grace:g} s",
            )

    # ------------------------------------------------------------ ending

    def _refuse_waiters(self, code: str, description: str) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.ingest = None
            notify(waiter.on_refused, code, description)

    def _finish(self, code: str, description: str) -> None:
        """End for everyone: waiting players refused, attached players told ``code``."""
        self._refuse_waiters(
            Status.PLAY_STREAM_NOT_FOUND if code == Status.PLAY_UNPUBLISH_NOTIFY else code,
            description,
        )
        self.stream.end(code, description)
        self._end(description)

    def _end(self, reason: str) -> None:
        if self.state is IngestState.ENDED:
            return
        self.state = IngestState.ENDED
        for timer in _TIMERS:
            self._cancel(timer)
        self._close_link()
        self.host.ingest_ended(self, reason)
        if self.stream.player_count:
            self.stream.end(Status.PLAY_UNPUBLISH_NOTIFY, reason)

    def _cancel(self, name: str) -> None:
        timer: TimerHandle | None = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def end(self, code: str, description: str) -> None:
        """Ended from outside (API, shutdown)."""
        self._finish(code, description)


_TIMERS = (
    "_start_timer",
    "_idle_timer",
    "_linger_timer",
    "_grace_timer",
    "_retry_timer",
    "_stable_timer",
)

# Seconds a re-established link must carry media before the outage is over
# (backoff and grace reset): a flapping origin is not a recovered one.
_STABLE_AFTER = 5.0


class _Sink:
    """Binds one link to the ingest: reports from a link that was closed or
    replaced are dropped, whatever the connector still delivers."""

    __slots__ = ("_ingest", "_link_no")

    def __init__(self, ingest: Ingest, link_no: int) -> None:
        self._ingest = ingest
        self._link_no = link_no

    def _current(self) -> Ingest | None:
        ingest = self._ingest
        return ingest if ingest._open_link == self._link_no else None

    def link_playing(self) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_playing()

    def link_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        ingest = self._ingest  # _current(), inlined: once per media message
        if ingest._open_link == self._link_no:
            ingest.link_media(type_id, timestamp, payload)

    def link_media_batch(self, items: list[tuple[int, int, bytes]]) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_media_batch(items)

    def link_data(self, timestamp: int, values: tuple[Any, ...], payload: bytes) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_data(timestamp, values, payload)

    def link_flush(self) -> None:
        if (ingest := self._current()) is not None:
            ingest.stream.flush_now()

    def link_missing(self, code: str, description: str) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_missing(code, description)

    def link_known_missing(self, code: str, description: str) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_known_missing(code, description)

    def link_ended(self, description: str) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_ended(description)

    def link_failed(self, description: str, *, connect: bool) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_failed(description, connect=connect)

    def link_refused(self, reason: str, description: str) -> None:
        if (ingest := self._current()) is not None:
            ingest.link_refused(reason, description)
