"""The asyncio connector: one RTMP play link to an origin per ingest.

A link reports to its :class:`~streamgate.edge.ingest.LinkSink` and holds
nothing else. Every step toward the origin is bounded: the TCP connect by
``connect_timeout``, and everything from the handshake to the answer to
``play`` by ``reply_timeout`` (an origin that accepts TCP and never speaks
counts as a connect failure). An RTMP redirect (``NetConnection.Connect.Rejected``
with ``ex.redirect``, as SRS origin clusters send) is followed at most
``max_redirects`` times.

An ``rtmps://`` origin gets TLS over the TCP connection before the RTMP
handshake (:class:`UpstreamTls`: verified against the system trust store or
only ``[edge] tls_ca_file``, TLS 1.2 at least, SNI and host name check on the
origin's name or ``tls_server_name``, then the optional ``tls_pin_sha256``).
``connect_timeout`` bounds the TCP connect and the TLS handshake together:
one deadline from the first SYN to the verified handshake. A TLS failure is
explained (:func:`streamgate.tls.client.diagnose`, which may look at the
port once more), logged as a warning, counted on the origin by reason, and
reported like an unreachable origin.

Outcomes, as the sink hears them:

* connect refused or timed out, TLS failed, no answer in time, closed
  before ``play`` was sent -> ``link_failed(connect=True)`` (the origin's
  health: its breaker, failover to the next origin; never the negative cache);
* the play refused (``PlayRefused``: ``Play.StreamNotFound``, ``Play.Failed``
  or any error status), createStream answered with ``_error``, or a refused
  ``connect`` -> ``link_missing``;
* the play ended (``PlayEnded``: ``Play.UnpublishNotify``/``Stop``/``Complete``,
  StreamEOF) -> ``link_ended``;
* the connection lost once playing -> ``link_failed(connect=False)``.

What a status means is decided by the core (:mod:`streamgate.rtmp.netstream`);
the link only maps it to the sink. The bytes go through the shared
:class:`~streamgate.client.ClientDriver`, one call per read.

Merged reads: once a keyframe went through, what the origin sends is held for at most
``merge_delay`` seconds (the edge's ``merge_ms``) and decoded in one go, then
``link_flush`` tells the sink to write it out. Players get their merged
writes exactly as before, and the edge wakes up to do Python work a few times
a second per stream instead of on every read (SRS's "merged read"). On Linux
the kernel does the holding: SO_RCVLOWAT keeps the socket quiet until 512 KB
are queued or a tick at the merge interval lowers the mark (which wakes the
reader at once); elsewhere a timer releases what was read.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

from streamgate.client import ClientDriver
from streamgate.edge.ingest import LinkSink
from streamgate.edge.origins import Origin
from streamgate.errors import ProtocolError
from streamgate.rtmp.connection import ClientConnection, ConnectionLimits
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    DataReceived,
    Event,
    MediaReceived,
    PlayEnded,
    PlayRefused,
    PlayStarted,
    StreamCreated,
    StreamCreateFailed,
)
from streamgate.rtmp.flv import VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import MsgType, Status
from streamgate.tls.client import diagnose, origin_context
from streamgate.tls.diagnosis import ORIGIN_HINTS, TlsFailure
from streamgate.tls.pins import pin_mismatch

__all__ = ["RtmpConnector", "UpstreamLink", "UpstreamTimeouts", "UpstreamTls"]

log = logging.getLogger("streamgate.upstream")

# Held bytes decoded at once beyond this, however young (a high-bitrate stream).
_MAX_HELD = 1 << 20
# Merged reads with the kernel's help: SO_RCVLOWAT keeps the socket from
# waking us until this much arrived, or a tick lowers it again.
_GATE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    connect_timeout: float = 3.0
    reply_timeout: float = 5.0
    max_redirects: int = 2


# The second look after a TLS failure (certificate fetch, RTMP sniff) is bounded by this.
_LOOK_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """How ``rtmps://`` origins are dialled (the ``[edge] tls_*`` settings).

    ``server_name``: the SNI and the name checked in the certificate, instead
    of each origin's host (no SNI is sent for an IP literal); ``pins``: SHA-256
    fingerprints (64 lowercase hex digits) of the certificate or its public key,
    one of which the origin must present (checked with or without ``verify``)."""

    context: ssl.SSLContext
    verify: bool = True
    server_name: str | None = None
    pins: tuple[str, ...] = ()
    ca_file: str | None = None

    @classmethod
    def build(
        cls,
        *,
        verify: bool = True,
        ca_file: str | None = None,
        server_name: str | None = None,
        pins: tuple[str, ...] = (),
    ) -> UpstreamTls:
        """Raises ``OSError``/``ssl.SSLError`` when ``ca_file`` cannot be loaded."""
        context = origin_context(verify=verify, ca_file=ca_file)
        return cls(context, verify, server_name, pins, ca_file)


class RtmpConnector:
    """Connector for the ingest: opens :class:`UpstreamLink` objects on the running loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeouts: UpstreamTimeouts,
        limits: ConnectionLimits | None = None,
        merge_delay: float = 0.0,
        unix_path: str | None = None,
        tls: UpstreamTls | None = None,
    ) -> None:
        self.loop = loop
        self.timeouts = timeouts
        self.limits = limits
        self.merge_delay = merge_delay  # seconds; 0: decode every read at once
        # Dial this unix socket instead of the origin's address (a worker
        # relaying the stream another worker of the machine pulls).
        self.unix_path = unix_path
        self._tls = tls

    @property
    def tls(self) -> UpstreamTls:
        """For rtmps:// origins (verified with the system trust store unless set)."""
        if self._tls is None:
            self._tls = UpstreamTls.build()
        return self._tls

    @tls.setter
    def tls(self, value: UpstreamTls) -> None:
        self._tls = value

    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> UpstreamLink:
        return UpstreamLink(self, origin.host, origin.port, app, name, sink, origin)


class _PendingTls(asyncio.Protocol):
    """The protocol of a connection while its TLS handshake runs: holds what
    arrives until the link takes the TLS transport over."""

    __slots__ = ("data", "lost")

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (exc,)


class _Connection(asyncio.Protocol):
    """One TCP connection of a link. A redirect starts a new one; reports from
    an older connection (its connection_lost, late data) are dropped."""

    __slots__ = ("generation", "link")

    def __init__(self, link: UpstreamLink, generation: int) -> None:
        self.link = link
        self.generation = generation

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.generation == self.link.generation:
            self.link.connection_made(transport)
        else:
            cast(asyncio.Transport, transport).abort()

    def data_received(self, data: bytes) -> None:
        if self.generation == self.link.generation:
            self.link.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.generation == self.link.generation:
            self.link.connection_lost(exc)


class UpstreamLink:
    """One play link; :meth:`close` is final and silences the sink."""

    def __init__(
        self,
        connector: RtmpConnector,
        host: str,
        port: int,
        app: str,
        name: str,
        sink: LinkSink,
        origin: Origin | None = None,
    ) -> None:
        self.connector = connector
        self.loop = connector.loop
        self.timeouts = connector.timeouts
        self.origin = origin  # TLS failures are counted on it
        self.tls = origin is not None and origin.tls and connector.unix_path is None
        self.host = host
        self.port = port
        self.app = app
        self.name = name
        self.sink = sink
        self.redirects = 0
        self.generation = 0  # which TCP connection is current
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self.conn: ClientConnection | None = None
        self.driver: ClientDriver | None = None
        self.stream_id = 0
        self.play_sent = False
        self.playing = False
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = self.loop.create_task(self._connect())
        # Merged reads: bytes held until _release, once a keyframe went through
        # (so a cold start's first keyframe is never held).
        self._holding = False
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._release_timer: asyncio.TimerHandle | None = None
        # The socket whose SO_RCVLOWAT gates our wake-ups while holding, if any.
        self._gate: Any = None
        self._release_soon = False
        # While a merged read is decoded: its media, handed over in one call.
        self._batch: list[tuple[int, int, bytes]] | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.app}/{self.name}"

    async def _connect(self) -> None:
        handshaking = False  # TCP is up, the TLS handshake runs
        try:
            async with asyncio.timeout(self.timeouts.connect_timeout):
                generation = self.generation
                path = self.connector.unix_path
                if path is not None:
                    await self.loop.create_unix_connection(
                        lambda: _Connection(self, generation), path
                    )
                elif not self.tls:
                    await self.loop.create_connection(
                        lambda: _Connection(self, generation), self.host, self.port
                    )
                else:
                    raw, pending = await self.loop.create_connection(
                        _PendingTls, self.host, self.port
                    )
                    handshaking = True
                    await self._start_tls(raw, pending, generation)
        except TimeoutError as exc:
            if handshaking:
                await self._tls_failed(exc)
            else:
                self._fail(f"TCP connect to {self.host}:{self.port} timed out", connect=True)
        except OSError as exc:  # ssl.SSLError included
            if handshaking:
                await self._tls_failed(exc)
            else:
                self._fail(f"{self.host}:{self.port}: {exc.strerror or exc}", connect=True)
        except (ValueError, UnicodeError) as exc:  # an address the resolver refuses
            self._fail(f"{self.host}:{self.port}: {exc}", connect=True)
        finally:
            self._task = None

    @property
    def server_name(self) -> str:
        """The name verified in the origin's certificate (and sent as SNI, unless an IP)."""
        return self.connector.tls.server_name or self.host

    async def _start_tls(
        self, base: asyncio.BaseTransport, pending: _PendingTls, generation: int
    ) -> None:
        tls = self.connector.tls
        raw = cast(asyncio.Transport, base)  # uvloop's do not subclass it
        try:
            transport = await self.loop.start_tls(
                raw,
                pending,
                tls.context,
                server_hostname=self.server_name,
                ssl_handshake_timeout=self.timeouts.connect_timeout,
            )
        except BaseException:
            raw.abort()
            raise
        if transport is None:  # the loop gave up on the connection meanwhile
            raw.abort()
            raise ConnectionResetError("connection lost during the TLS handshake")
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        mismatch = pin_mismatch(der, tls.pins)
        if mismatch is not None:
            transport.abort()
            self._fail_tls(TlsFailure("pin_mismatch", mismatch))
            return
        connection = _Connection(self, generation)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        for data in pending.data:
            connection.data_received(data)
        if pending.lost is not None:
            connection.connection_lost(pending.lost[0])

    async def _tls_failed(self, exc: BaseException) -> None:
        if self.closed:
            return
        failure = await diagnose(
            exc,
            host=self.host,
            port=self.port,
            server_hostname=self.server_name,
            handshake_timeout=self.timeouts.connect_timeout,
            look_timeout=min(self.timeouts.connect_timeout, _LOOK_TIMEOUT),
            hints=ORIGIN_HINTS,
        )
        self._fail_tls(failure)

    def _fail_tls(self, failure: TlsFailure) -> None:
        if self.closed:
            return
        if self.origin is not None:
            self.origin.count_tls_failure(failure.reason)
        log.warning(
            "upstream %s: %s (tls_failure=%s)", self.where, failure.description, failure.reason
        )
        self.close()
        self.sink.link_failed(failure.description, connect=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._cancel_deadline()
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        self._held.clear()
        if self.transport is not None:
            self.transport.abort()  # no goodbye owed to an origin we leave

    def _fail(self, description: str, *, connect: bool) -> None:
        if self.closed:
            return
        log.info("upstream %s: %s", self.where, description)
        self.close()
        self.sink.link_failed(description, connect=connect)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        stage = "play" if self.play_sent else "connect"
        self._fail(
            f"origin accepted TCP but did not answer {stage} within "
            f"{self.timeouts.reply_timeout:g} s",
            connect=True,
        )

    # ------------------------------------------------------------ from the current connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's do not subclass it
        if self.closed:
            transport.abort()
            return
        self.transport = transport
        scheme = "rtmps" if self.tls else "rtmp"
        tc_url = f"{scheme}://{self.host}:{self.port}/{self.app}"
        self.conn = ClientConnection(
            tc_url, self.app, self.connector.limits, now=self.loop.time()
        )
        self.conn.media_sink = self._media
        self.conn.connect()
        self.driver = ClientDriver(self.conn, self._on_events, self._on_protocol_error)
        self._deadline = self.loop.call_later(self.timeouts.reply_timeout, self._on_deadline)
        self.driver.attach(transport)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        delay = self.connector.merge_delay
        if self._holding and delay > 0:
            self._held.append(data)
            self._held_bytes += len(data)
            if self._gate is not None:
                # The kernel woke us: the gate was lowered by the tick, or a lot came.
                if not self._release_soon:
                    self._release_soon = True
                    self.loop.call_soon(self._release)
            elif self._held_bytes >= _MAX_HELD:
                self._release()
            elif self._release_timer is None:
                self._release_timer = self.loop.call_later(delay, self._release)
            return
        self._decode(data)

    def _release(self) -> None:
        """Decode what was held, then have it written out."""
        self._release_soon = False
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._gate is not None and not self.closed:
            self._shut_gate()
        if not self._held or self.closed:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        self._batch = []
        self._decode(data)
        if not self.closed:
            self.sink.link_flush()

    def _start_gate(self) -> None:
        """Holding starts: from now on the kernel holds the bytes for us."""
        if self.connector.merge_delay <= 0 or self.transport is None:
            return
        self._gate = self.transport.get_extra_info("socket")
        if self._gate is not None:
            self._shut_gate()

    def _shut_gate(self) -> None:
        """Quiet until a lot arrives or the next tick, one merge interval away."""
        if self._set_gate(_GATE_BYTES):
            self._release_timer = self.loop.call_later(self.connector.merge_delay, self._tick)

    def _set_gate(self, nbytes: int) -> bool:
        try:
            self._gate.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
        except (OSError, AttributeError) as exc:
            log.debug("upstream %s: no SO_RCVLOWAT (%s); timer-merged reads", self.where, exc)
            self._gate = None
            return False
        return True

    def _tick(self) -> None:
        """A merge interval passed: let whatever is queued wake us (Linux wakes
        the reader at once when the low-water mark drops below what is there)."""
        self._release_timer = None
        if self._gate is not None and not self.closed:
            self._set_gate(1)

    def _decode(self, data: bytes) -> None:
        if self.driver is not None and not self.closed:
            self.driver.feed(data)  # -> _on_events or _on_protocol_error

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        self._batch = None
        self._fail(f"protocol error from origin: {exc.description}", connect=not self.playing)

    def _on_events(self, events: list[Event]) -> None:
        batch, self._batch = self._batch, None
        if batch:  # all of it came before any event of this read
            self.sink.link_media_batch(batch)
            if self.closed:
                return
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, event)
            if self.closed:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()  # what the origin said last (e.g. UnpublishNotify) comes first
        if self.closed:
            return
        if self.playing:
            self._fail("origin connection lost", connect=False)
        elif self.play_sent:
            # It took our play and hung up: that is the origin's answer.
            self.close()
            self.sink.link_failed("origin closed the connection after play", connect=False)
        else:
            self._fail("origin closed the connection before answering", connect=True)

    # ------------------------------------------------------------ events

    def _on_connected(self, event: Connected) -> None:
        assert self.conn is not None
        self.conn.create_stream()

    def _on_rejected(self, event: ConnectRejected) -> None:
        if event.redirect and self.redirects < self.timeouts.max_redirects:
            self._follow(event.redirect)
            return
        description = event.description or event.code
        if event.redirect:
            description = f"too many redirects (last to {event.redirect})"
        self.close()
        self.sink.link_missing(Status.PLAY_FAILED, f"origin refused: {description}")

    def _follow(self, redirect: str) -> None:
        # Validate everything before changing any state: a bad redirect must end
        # the link with an answer, not leave it half-switched and silent.
        try:
            parts = urlsplit(redirect)
            host = parts.hostname
            tls = parts.scheme == "rtmps"
            port = parts.port or (443 if tls else 1935)
            if parts.scheme not in ("rtmp", "rtmps") or not host:
                raise ValueError("not rtmp(s)://host")
            host.encode("idna")
        except (ValueError, UnicodeError):
            self.close()
            self.sink.link_missing(
                Status.PLAY_FAILED, f"origin redirect unusable: {redirect[:200]!r}"
            )
            return
        if self.tls and not tls:
            self.close()
            self.sink.link_missing(
                Status.PLAY_FAILED, f"origin redirect would leave TLS: {redirect[:200]!r}"
            )
            return
        log.info("upstream %s: redirected to %s", self.where, redirect)
        if self.transport is not None:
            self.transport.abort()
        self._cancel_deadline()
        self.transport = None
        self.conn = None
        self.driver = None
        self.generation += 1
        self.redirects += 1
        self.tls = tls and self.connector.unix_path is None
        self.host = host
        self.port = port
        self.app = parts.path.strip("/").split("/")[0] or self.app
        self._task = self.loop.create_task(self._connect())

    def _on_stream_created(self, event: StreamCreated) -> None:
        assert self.conn is not None
        self.stream_id = event.stream_id
        self.conn.play(event.stream_id, self.name)
        self.play_sent = True

    def _on_play_started(self, event: PlayStarted) -> None:
        self._playing()

    def _on_play_refused(self, event: PlayRefused) -> None:
        # The edge's players hear StreamNotFound as such, any other refusal as Play.Failed.
        code = event.code
        if code != Status.PLAY_STREAM_NOT_FOUND:
            code = Status.PLAY_FAILED
        self.close()
        self.sink.link_missing(code, event.description or event.code)

    def _on_create_failed(self, event: StreamCreateFailed) -> None:
        self.close()
        self.sink.link_missing(Status.PLAY_FAILED, event.description or event.code)

    def _on_play_ended(self, event: PlayEnded) -> None:
        self.close()
        self.sink.link_ended(f"origin: {event.code}")

    def _playing(self) -> None:
        if not self.playing:
            self.playing = True
            self._cancel_deadline()
            if self.conn is not None:
                self.conn.note_media(self.stream_id)  # media may have come first
            self.sink.link_playing()

    def _on_media(self, event: MediaReceived) -> None:
        self._media(event.stream_id, event.type_id, event.timestamp, event.payload)

    def _media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        # Also the connection's media_sink: called while it decodes, so it checks
        # that nothing earlier in the same read closed the link.
        if self.closed:
            return
        if not self.playing:
            self._playing()
        if self._batch is not None:
            self._batch.append((type_id, timestamp, payload))
            return
        if not self._holding and type_id == MsgType.VIDEO:
            self._holding = classify_video(payload) == VIDEO_KEYFRAME
            if self._holding:
                self._start_gate()
        self.sink.link_media(type_id, timestamp, payload)

    def _on_data(self, event: DataReceived) -> None:
        self.sink.link_data(event.timestamp, event.values, event.payload)

    _handlers: ClassVar[dict[type[Event], Callable[[Any, Any], None]]] = {
        Connected: _on_connected,
        ConnectRejected: _on_rejected,
        StreamCreated: _on_stream_created,
        StreamCreateFailed: _on_create_failed,
        PlayStarted: _on_play_started,
        PlayRefused: _on_play_refused,
        PlayEnded: _on_play_ended,
        MediaReceived: _on_media,
        DataReceived: _on_data,
    }
