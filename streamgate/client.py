"""The one asyncio client over :class:`~streamgate.rtmp.connection.ClientConnection`.

Two layers, so that a hot consumer pays for nothing it does not use:

* :class:`ClientDriver` is the plumbing every client shares: it feeds the
  bytes of one transport to the core, hands the events of each read to its
  owner in one call, reports a protocol error, and writes what the core
  queued. Per read, never per message. The edge's upstream link (merged reads,
  ``media_sink``) and the load tester's players (which drop the core after the
  first keyframe and count bytes) sit directly on it with their own policies.
* :class:`RtmpClient` puts the driver behind awaitable steps (connect, create
  a stream, play or publish) and a queue of everything that follows; the
  tests and ``streamgate probe`` use it.

What a status means (started, refused, ended) is decided once, in the core
(:mod:`streamgate.rtmp.netstream`); nothing here classifies status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from streamgate.errors import ProtocolError, UpstreamError
from streamgate.rtmp.connection import ClientConnection, ConnectionLimits, ConnState
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    Event,
    StatusReceived,
    StreamCreated,
    StreamCreateFailed,
)

__all__ = ["ClientDriver", "RtmpClient", "RtmpUrl", "parse_rtmp_url"]

_CLOSED = object()


_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}


@dataclass(frozen=True, slots=True)
class RtmpUrl:
    host: str
    port: int
    app: str
    name: str  # stream name, with its query string if any
    tls: bool = False  # rtmps://

    @property
    def scheme(self) -> str:
        return "rtmps" if self.tls else "rtmp"

    @property
    def tc_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{self.app}"


def parse_rtmp_url(url: str) -> RtmpUrl:
    """``rtmp://host[:port]/app/name[?query]`` or ``rtmps://...`` (TLS, port 443 by
    default); the app is the first path segment."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an rtmp:// or rtmps:// URL: {url!r}")
    path = parts.path.lstrip("/")
    app, _, name = path.partition("/")
    if parts.query:
        name = f"{name}?{parts.query}"
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    return RtmpUrl(parts.hostname, port, app, name, tls=parts.scheme == "rtmps")


class ClientDriver:
    """Relays between one :class:`ClientConnection` and one asyncio transport.

    ``on_events`` gets the events of each read (possibly none: media may
    have gone to the core's ``media_sink`` meanwhile), ``on_error`` the
    :class:`ProtocolError` that ends the connection; the driver writes what
    the core queued after either. Closing the transport is the owner's call.
    """

    __slots__ = ("conn", "on_error", "on_events", "transport")

    def __init__(
        self,
        conn: ClientConnection,
        on_events: Callable[[list[Event]], None],
        on_error: Callable[[ProtocolError], None],
    ) -> None:
        self.conn = conn
        self.on_events = on_events
        self.on_error = on_error
        self.transport: asyncio.Transport | None = None

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """The TCP connection is up: no Nagle delay on commands, and send what is queued."""
        self.transport = transport  # type: ignore[assignment]  # uvloop's do not subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # not on a unix socket
        self.flush()

    def feed(self, data: bytes) -> None:
        """One read from the peer."""
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            self.flush()  # the goodbye the core queued, if any
            self.on_error(exc)
            return
        self.on_events(events)
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            out = self.conn.data_to_send()
            if out:
                transport.write(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: RtmpClient) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client._attach(transport)

    def data_received(self, data: bytes) -> None:
        self.client._receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(exc)


class RtmpClient:
    """One client connection; use :meth:`open` then :meth:`play` or :meth:`publish`.

    The steps can also be taken one by one (``streamgate probe`` does, to
    time and diagnose each): ``loop.create_connection(client.protocol, ...)``
    (TLS included), :meth:`handshake`, ``conn.connect()`` and :meth:`next_event`.
    """

    def __init__(
        self, url: RtmpUrl, limits: ConnectionLimits | None = None, *, tc_url: str | None = None
    ) -> None:
        self.url = url
        self.conn = ClientConnection(tc_url or url.tc_url, url.app, limits)
        self.driver = ClientDriver(self.conn, self._on_events, self._on_error)
        self.events: asyncio.Queue[tuple[float, Event] | object] = asyncio.Queue()
        self.closed = False
        self.error: ProtocolError | None = None
        self.lost: str = ""  # why the connection ended, when the transport said
        self.event_at = 0.0  # loop time at which the last event from next_event() arrived
        self._progress = asyncio.Event()  # set after every read and at the end
        self._gone = asyncio.Event()  # connection_lost came

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.driver.transport

    @transport.setter
    def transport(self, transport: asyncio.Transport | None) -> None:
        self.driver.transport = transport

    @classmethod
    async def open(
        cls,
        url: str | RtmpUrl,
        timeout: float = 5.0,
        source: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> RtmpClient:
        """TCP connect, handshake and ``connect``; raises UpstreamError on refusal.

        ``source``: the local address to connect from (e.g. 127.0.0.2); ``tls``:
        RTMPS with this context (the URL's host is the name checked and sent); an
        ``rtmps://`` URL without one is verified against the system's CAs."""
        parsed = parse_rtmp_url(url) if isinstance(url, str) else url
        if tls is None and parsed.tls:
            tls = ssl.create_default_context()
        client = cls(parsed)
        loop = asyncio.get_running_loop()
        where = f"{parsed.host}:{parsed.port}"
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: _Protocol(client),
                    parsed.host,
                    parsed.port,
                    local_addr=(source, 0) if source is not None else None,
                    ssl=tls,
                    server_hostname=parsed.host if tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamError(f"{where}: TCP connect timed out after {timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"{where}: {exc.strerror or exc}") from None
        async with asyncio.timeout(timeout):
            client.conn.connect()
            client._flush()
            try:
                event = await client.next_event()
            except ConnectionError as exc:
                raise UpstreamError(f"{where}: {exc}") from None
            if isinstance(event, ConnectRejected):
                client.close()
                raise UpstreamError(event.description or event.code, code=event.code)
            if not isinstance(event, Connected):
                client.close()
                raise UpstreamError(f"unexpected answer to connect: {event!r}")
        return client

    def protocol(self) -> asyncio.Protocol:
        """A protocol to run this client over: ``create_connection(client.protocol, ...)``."""
        return _Protocol(self)

    def extra_info(self, name: str) -> Any:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds, checked after every read; ConnectionError at the end."""
        while not condition():
            if self.closed and self._gone.is_set():
                raise self._ended()
            self._progress.clear()
            await self._progress.wait()

    async def handshake(self) -> None:
        """Until the RTMP handshake is done."""
        await self.wait_for(lambda: self.conn.state is not ConnState.HANDSHAKE)

    async def create_stream(self, timeout: float = 5.0) -> int:
        self.conn.create_stream()
        self._flush()
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if isinstance(event, StreamCreated):
                    return event.stream_id
                if isinstance(event, StreamCreateFailed):
                    raise UpstreamError(event.description, code=event.code)

    async def play(self, name: str | None = None) -> int:
        """createStream + play; returns the stream id. Statuses arrive as events."""
        sid = await self.create_stream()
        self.conn.play(sid, name if name is not None else self.url.name)
        self._flush()
        return sid

    async def publish(self, name: str | None = None) -> int:
        sid = await self.create_stream()
        self.conn.publish(sid, name if name is not None else self.url.name)
        self._flush()
        return sid

    async def next_event(self) -> Event:
        """The next event; raises ConnectionError once the connection is gone."""
        item = await self.events.get()
        if item is _CLOSED:
            self.events.put_nowait(_CLOSED)  # later callers see the end too
            raise self._ended()
        assert isinstance(item, tuple)
        self.event_at, event = item
        return event  # type: ignore[no-any-return]

    def pending(self) -> bool:
        """Whether an event (or the end) is queued, so next_event() returns at once."""
        return not self.events.empty()

    async def wait_status(self, *codes: str, timeout: float = 10.0) -> StatusReceived:
        """Skip events until an onStatus with one of ``codes`` (any status if none given)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if isinstance(event, StatusReceived) and (not codes or event.code in codes):
                    return event

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        self.conn.send_media(stream_id, type_id, timestamp, payload)
        self._flush()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    async def wait_closed(self, timeout: float = 1.0) -> None:
        """Close and wait (bounded) until the transport is gone; a TLS goodbye may hang."""
        self.close()
        if self.transport is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._gone.wait()

    # ------------------------------------------------------------ adapter side

    def _ended(self) -> ConnectionError:
        if self.error is not None:
            return ConnectionError(f"protocol error: {self.error.description}")
        return ConnectionError(self.lost or "connection closed by the server")

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        self.driver.attach(transport)

    def _flush(self) -> None:
        self.driver.flush()

    def _receive(self, data: bytes) -> None:
        self.driver.feed(data)
        self._progress.set()

    def _on_events(self, events: list[Event]) -> None:
        if events:
            now = asyncio.get_running_loop().time()
            for event in events:
                self.events.put_nowait((now, event))

    def _on_error(self, exc: ProtocolError) -> None:
        self.error = exc
        self.close()

    def _lost(self, exc: Exception | None = None) -> None:
        self.closed = True
        if exc is not None and not self.lost:
            self.lost = str(exc) or type(exc).__name__
        self.events.put_nowait(_CLOSED)
        self._gone.set()
        self._progress.set()
