"""The state one probe's steps share, and its connection: the one asyncio client.

:class:`ProbeRun` carries what a step leaves for the next (addresses, the
connected socket, the stream id, the media watch). Its connection is a
:class:`~streamgate.client.RtmpClient` that also keeps the first bytes the
server sent (to tell TLS or HTTP from RTMP) and feeds media to the
:class:`~streamgate.probe.watch.MediaWatch` as it arrives. :meth:`ProbeRun.next_event`
turns the end of the connection into :class:`PeerClosed` or the
:class:`ProtocolError` that caused it, which is what the steps diagnose.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from streamgate.client import RtmpClient, RtmpUrl
from streamgate.probe.report import PeerClosed, ProbeOptions, ProbeTarget
from streamgate.probe.watch import MediaWatch
from streamgate.rtmp.connection import ConnectionLimits
from streamgate.rtmp.events import DataReceived, Event, MediaReceived

__all__ = ["ProbeClient", "ProbeRun"]

_SNIFF = 16  # bytes of the server's first answer kept for the diagnosis


class ProbeClient(RtmpClient):
    """An RtmpClient that remembers the server's first bytes and watches media."""

    def __init__(self, target: ProbeTarget) -> None:
        super().__init__(
            RtmpUrl(target.host, target.port, target.app, target.name),
            # We keep our own step deadlines; the core's must not fire first.
            ConnectionLimits(handshake_timeout=3600.0, command_timeout=3600.0),
            tc_url=target.tc_url,
        )
        self.received = bytearray()
        self.watch: MediaWatch | None = None

    def _receive(self, data: bytes) -> None:
        if len(self.received) < _SNIFF:
            self.received += data[:_SNIFF]
        super()._receive(data)

    def _on_events(self, events: list[Event]) -> None:
        watch = self.watch
        if watch is not None and events:
            now = asyncio.get_running_loop().time()
            for event in events:
                if isinstance(event, MediaReceived | DataReceived):
                    watch.feed(event, now)
        super()._on_events(events)


class ProbeRun:
    """What the steps of one probe share."""

    def __init__(self, target: ProbeTarget, options: ProbeOptions) -> None:
        self.target = target
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.addresses: list[tuple[int, tuple[Any, ...]]] = []
        self.peer: tuple[int, tuple[Any, ...]] | None = None
        self.sock: socket.socket | None = None  # connected by the tcp step, not yet attached
        self.client = ProbeClient(target)
        self.stream_id = 0
        self.statuses: list[str] = []

    @property
    def conn(self) -> Any:
        return self.client.conn

    @property
    def watch(self) -> MediaWatch | None:
        return self.client.watch

    @property
    def received(self) -> bytes:
        return bytes(self.client.received)

    def flush(self) -> None:
        self.client._flush()

    async def attach(self, **tls: Any) -> None:
        """Run the client over the socket the tcp step connected (TLS when given)."""
        sock, self.sock = self.sock, None
        assert sock is not None
        try:
            await self.loop.create_connection(self.client.protocol, sock=sock, **tls)
        except BaseException:
            sock.close()
            raise

    def _gone(self, exc: ConnectionError) -> Exception:
        if self.client.error is not None:
            return self.client.error
        return PeerClosed(self.client.lost or "connection closed by the server")

    async def handshake(self) -> None:
        try:
            await self.client.handshake()
        except ConnectionError as exc:
            raise self._gone(exc) from None

    async def next_event(self) -> Event:
        """The next event; PeerClosed or the ProtocolError once the connection is gone."""
        try:
            return await self.client.next_event()
        except ConnectionError as exc:
            raise self._gone(exc) from None

    @property
    def event_at(self) -> float:
        return self.client.event_at

    async def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        await self.client.wait_closed(timeout=1.0)
