"""A client core wired to a server core in memory, for connection tests.

:class:`ConnectionPair` moves bytes between a :class:`ClientConnection` and a
:class:`ServerConnection` until both are quiet, optionally cutting every
transfer into random (seeded) pieces to show that nothing depends on how the
network splits the stream. A wire tap decodes, with an independent
:class:`ChunkDecoder`, every message each side put on the wire after the
handshake, so tests can check what was sent and not only what the peer made
of it.
"""

from __future__ import annotations

import random
from typing import Any

from streamgate.rtmp import amf0
from streamgate.rtmp.chunk import ChunkDecoder, Message, encode_message
from streamgate.rtmp.connection import ClientConnection, ConnectionLimits, ServerConnection
from streamgate.rtmp.events import (
    Connected,
    ConnectRequested,
    Event,
    PlayRequested,
    PublishRequested,
    StreamCreated,
)
from streamgate.rtmp.handshake import HANDSHAKE_SIZE
from streamgate.rtmp.messages import MsgType

__all__ = ["HANDSHAKE_BYTES", "ConnectionPair", "Tap", "command_values", "events_of"]

# C0+C1+C2 and S0+S1+S2 are the same length.
HANDSHAKE_BYTES = 1 + 2 * HANDSHAKE_SIZE

# The pair injects hand-made messages on a chunk stream neither core uses, so
# the cores' own header compression state is not disturbed.
RAW_CSID = 40


def events_of(events: list[Event], kind: type[Any]) -> list[Any]:
    """The events of one class, in order."""
    return [event for event in events if isinstance(event, kind)]


def command_values(message: Message) -> list[Any]:
    """The AMF values of a command message (AMF3 commands lose their leading 0)."""
    payload = message.payload
    if message.type_id == MsgType.COMMAND_AMF3 and payload[:1] == b"\x00":
        payload = payload[1:]
    return amf0.decode_all(payload)


class Tap:
    """What one side put on the wire: raw byte count and decoded messages."""

    def __init__(self) -> None:
        self.handshake = bytearray()
        self.total = 0  # every byte, handshake included
        self.messages: list[Message] = []
        self._decoder = ChunkDecoder()

    @property
    def after_handshake(self) -> int:
        """Bytes sent after the handshake (what RTMP acknowledgements count)."""
        return max(0, self.total - HANDSHAKE_BYTES)

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        missing = HANDSHAKE_BYTES - len(self.handshake)
        if missing > 0:
            self.handshake += data[:missing]
            data = data[missing:]
        if data:
            self.messages.extend(self._decoder.receive_data(data))

    def of_type(self, type_id: int) -> list[Message]:
        return [m for m in self.messages if m.type_id == type_id]

    def commands(self) -> list[list[Any]]:
        """The AMF values of every command message, in order."""
        return [
            command_values(m)
            for m in self.messages
            if m.type_id in (MsgType.COMMAND_AMF0, MsgType.COMMAND_AMF3)
        ]


class ConnectionPair:
    """A client and a server core joined by an in-memory, lossless wire.

    With ``seed`` set, every transfer is delivered in random pieces of
    1..``max_piece`` bytes; without it, each side's output is delivered whole.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        max_piece: int = 700,
        tc_url: str = "rtmp://localhost/live",
        app: str = "live",
        now: float = 0.0,
        server_limits: ConnectionLimits | None = None,
        client_limits: ConnectionLimits | None = None,
    ) -> None:
        # The handshakes draw their random bytes from seeded generators so a
        # failing example replays byte for byte.
        base = 0 if seed is None else seed
        client_rng = random.Random(base * 2 + 1)
        server_rng = random.Random(base * 2 + 2)
        self.client = ClientConnection(
            tc_url, app, limits=client_limits, now=now, random_bytes=client_rng.randbytes
        )
        self.server = ServerConnection(
            limits=server_limits, now=now, random_bytes=server_rng.randbytes
        )
        self._pieces = random.Random(seed) if seed is not None else None
        self.max_piece = max_piece
        self.client_wire = Tap()  # what the client sent
        self.server_wire = Tap()  # what the server sent
        self.server_events: list[Event] = []  # every event the server produced
        self.client_events: list[Event] = []  # every event the client produced

    # ------------------------------------------------------------ moving bytes

    def _split(self, data: bytes) -> list[bytes]:
        if self._pieces is None or not data:
            return [data] if data else []
        pieces = []
        pos = 0
        while pos < len(data):
            size = self._pieces.randint(1, self.max_piece)
            pieces.append(data[pos : pos + size])
            pos += size
        return pieces

    def deliver_to_server(self, data: bytes) -> list[Event]:
        """Hand bytes to the server as if the client had sent them."""
        self.client_wire.feed(data)
        events: list[Event] = []
        for piece in self._split(data):
            events.extend(self.server.receive_data(piece))
        self.server_events.extend(events)
        return events

    def deliver_to_client(self, data: bytes) -> list[Event]:
        """Hand bytes to the client as if the server had sent them."""
        self.server_wire.feed(data)
        events: list[Event] = []
        for piece in self._split(data):
            events.extend(self.client.receive_data(piece))
        self.client_events.extend(events)
        return events

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until neither side has anything to send.

        Returns the (server_events, client_events) produced meanwhile.
        """
        server_events: list[Event] = []
        client_events: list[Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return server_events, client_events
            if to_server:
                server_events.extend(self.deliver_to_server(to_server))
            if to_client:
                client_events.extend(self.deliver_to_client(to_client))

    def send_raw_to_server(
        self, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0
    ) -> list[Event]:
        """Send a hand-made message to the server, after what the client has queued."""
        server_events, _ = self.pump()
        data = encode_message(
            RAW_CSID, timestamp, type_id, stream_id, payload, self.client.chunk_size
        )
        server_events.extend(self.deliver_to_server(data))
        more, _ = self.pump()
        return server_events + more

    def send_raw_to_client(
        self, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0
    ) -> list[Event]:
        """Send a hand-made message to the client, after what the server has queued."""
        _, client_events = self.pump()
        data = encode_message(
            RAW_CSID, timestamp, type_id, stream_id, payload, self.server.chunk_size
        )
        client_events.extend(self.deliver_to_client(data))
        _, more = self.pump()
        return client_events + more

    # ------------------------------------------------------------ getting somewhere

    def handshake(self) -> None:
        """Exchange the handshakes and nothing else."""
        self.pump()

    def connect(self, extra: dict[str, Any] | None = None) -> Connected:
        """Handshake, connect, accept; returns the client's Connected event."""
        self.client.connect(extra)
        server_events, _ = self.pump()
        assert events_of(server_events, ConnectRequested), server_events
        self.server.accept_connect()
        _, client_events = self.pump()
        (connected,) = events_of(client_events, Connected)
        return connected  # type: ignore[no-any-return]

    def create_stream(self) -> int:
        """createStream; returns the stream id the server handed out."""
        tid = self.client.create_stream()
        _, client_events = self.pump()
        created = [e for e in events_of(client_events, StreamCreated) if e.transaction_id == tid]
        assert len(created) == 1, client_events
        return int(created[0].stream_id)

    def playing(self, name: str = "stream") -> int:
        """Connected, a stream created, play requested and accepted; returns the stream id."""
        self.connect()
        stream_id = self.create_stream()
        self.client.play(stream_id, name)
        server_events, _ = self.pump()
        requested = events_of(server_events, PlayRequested)
        assert [r.stream_id for r in requested] == [stream_id], server_events
        self.server.accept_play(stream_id, name)
        self.pump()
        return stream_id

    def publishing(self, name: str = "stream") -> int:
        """Connected, a stream created, publish requested and accepted; returns the stream id."""
        self.connect()
        stream_id = self.create_stream()
        self.client.publish(stream_id, name)
        server_events, _ = self.pump()
        requested = events_of(server_events, PublishRequested)
        assert [r.stream_id for r in requested] == [stream_id], server_events
        self.server.accept_publish(stream_id, name)
        self.pump()
        return stream_id
