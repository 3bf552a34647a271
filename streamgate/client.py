"""A small asyncio RTMP client over :class:`~streamgate.rtmp.connection.ClientConnection`.

Used by the tests, the load generator and (later) the edge's ingest. The
protocol adapter only relays; :class:`RtmpClient` turns the core's events
into awaitable steps (connect, create a stream, play or publish) and a
queue of everything that follows.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamgate.errors import ProtocolError, UpstreamError
from streamgate.rtmp.connection import ClientConnection, ConnectionLimits
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    Event,
    StatusReceived,
    StreamCreated,
)

__all__ = ["RtmpClient", "RtmpUrl", "parse_rtmp_url"]

_CLOSED = object()


@dataclass(frozen=True, slots=True)
class RtmpUrl:
    host: str
    port: int
    app: str
    name: str  # stream name, with its query string if any

    @property
    def tc_url(self) -> str:
        return f"rtmp://{self.host}:{self.port}/{self.app}"


def parse_rtmp_url(url: str) -> RtmpUrl:
    """``rtmp://host[:port]/app/name[?query]``; the app is the first path segment."""
    parts = urlsplit(url)
    if parts.scheme != "rtmp" or not parts.hostname:
        raise ValueError(f"not an rtmp:// URL: {url!r}")
    path = parts.path.lstrip("/")
    app, _, name = path.partition("/")
    if parts.query:
        name = f"{name}?{parts.query}"
    return RtmpUrl(parts.hostname, parts.port or 1935, app, name)


class _Protocol(asyncio.Protocol):
    def __init__(self, client: RtmpClient) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.client._receive(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost()


class RtmpClient:
    """One client connection; use :meth:`open` then :meth:`play` or :meth:`publish`."""

    def __init__(self, url: RtmpUrl, limits: ConnectionLimits | None = None) -> None:
        self.url = url
        self.conn = ClientConnection(url.tc_url, url.app, limits)
        self.events: asyncio.Queue[Event | object] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: ProtocolError | None = None

    @classmethod
    async def open(cls, url: str | RtmpUrl, timeout: float = 5.0) -> RtmpClient:
        """TCP connect, handshake and ``connect``; raises UpstreamError on refusal."""
        parsed = parse_rtmp_url(url) if isinstance(url, str) else url
        client = cls(parsed)
        loop = asyncio.get_running_loop()
        where = f"{parsed.host}:{parsed.port}"
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(
                    lambda: _Protocol(client), parsed.host, parsed.port
                )
        except TimeoutError:
            raise UpstreamError(f"{where}: TCP connect timed out after {timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"{where}: {exc.strerror or exc}") from None
        client.transport = transport
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

    async def create_stream(self, timeout: float = 5.0) -> int:
        self.conn.create_stream()
        self._flush()
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_event()
                if isinstance(event, StreamCreated):
                    return event.stream_id
                if isinstance(event, StatusReceived) and event.level == "error":
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
            if self.error is not None:
                raise ConnectionError(f"protocol error: {self.error.description}")
            raise ConnectionError("connection closed by the server")
        assert isinstance(item, Event)
        return item

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

    # ------------------------------------------------------------ adapter side

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _receive(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            self.error = exc
            self.close()
            return
        for event in events:
            self.events.put_nowait(event)
        self._flush()

    def _lost(self) -> None:
        self.closed = True
        self.events.put_nowait(_CLOSED)
