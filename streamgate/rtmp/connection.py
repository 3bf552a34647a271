"""The RTMP connection: handshake, chunk stream and NetConnection/NetStream commands.

:class:`ServerConnection` is what a publisher or player talks to;
:class:`ClientConnection` is what we use toward an origin (and in tests and
the load generator). Both are sans-IO: ``receive_data(bytes)`` returns
events, ``data_to_send()`` returns bytes, ``get_timer()`` / ``handle_timer(now)``
carry the deadlines; nothing here reads a clock or touches a socket.

Invariants:

* States only move forward: HANDSHAKE -> CONNECTING -> CONNECTED -> CLOSED.
  The transitions are in ``_TRANSITIONS``; anything else is a protocol error.
* Before ``connect`` is accepted (server) only ``connect`` is accepted; a
  client may pipeline commands, they are answered in order.
* An error the peer should hear about is queued (``_error``/``onStatus``)
  before the exception is raised, so the adapter flushes and closes.
* Inbound acknowledgements: we ack every time the peer's window is crossed,
  otherwise servers such as SRS stop sending.
* The state of each message stream (created, play requested, playing, ...)
  lives in :mod:`streamgate.rtmp.netstream`, for both roles; this module feeds
  it and never keeps a second copy.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Final

from streamgate.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from streamgate.rtmp import amf0
from streamgate.rtmp.chunk import ChunkDecoder, ChunkEncoder, ChunkLimits, Message
from streamgate.rtmp.events import (
    CommandIgnored,
    Connected,
    ConnectRejected,
    ConnectRequested,
    DataReceived,
    Event,
    MediaReceived,
    PlayRequested,
    PublishRequested,
    ReceiveToggled,
    StatusReceived,
    StreamBegan,
    StreamClosed,
    StreamCreated,
    StreamCreateFailed,
    StreamEnded,
)
from streamgate.rtmp.handshake import ClientHandshake, ServerHandshake
from streamgate.rtmp.messages import (
    CSID_COMMAND,
    CSID_CONTROL,
    CSID_DATA,
    MsgType,
    Status,
    UserControl,
    user_control,
)
from streamgate.rtmp.netstream import (
    STREAM_DRY,
    STREAM_EOF,
    NetStreamInput,
    NetStreams,
    NetStreamState,
    classify_status,
)

__all__ = [
    "ClientConnection",
    "ConnState",
    "ConnectionLimits",
    "ServerConnection",
    "name_problem",
    "split_query",
]

_U32 = struct.Struct(">I")
_PEER_BW = struct.Struct(">IB")
_UC_HEAD = struct.Struct(">HI")

FMS_VERSION: Final = "FMS/3,5,7,7009"
FLASH_VERSION: Final = "LNX 9,0,124,2"


class ConnState(Enum):
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"  # handshake done, waiting for / sending connect
    CONNECTED = "connected"
    CLOSED = "closed"


_TRANSITIONS: Final = {
    ConnState.HANDSHAKE: {ConnState.CONNECTING, ConnState.CLOSED},
    ConnState.CONNECTING: {ConnState.CONNECTED, ConnState.CLOSED},
    ConnState.CONNECTED: {ConnState.CLOSED},
    ConnState.CLOSED: set(),
}


class ConnectionLimits:
    """Limits and timeouts of one connection (seconds, bytes)."""

    __slots__ = (
        "chunk",
        "chunk_size",
        "command_timeout",
        "handshake_timeout",
        "max_streams",
        "window_ack_size",
    )

    def __init__(
        self,
        *,
        handshake_timeout: float = 5.0,
        command_timeout: float = 10.0,
        chunk_size: int = 4096,
        window_ack_size: int = 2_500_000,
        max_streams: int = 8,
        chunk: ChunkLimits | None = None,
    ) -> None:
        self.handshake_timeout = handshake_timeout
        self.command_timeout = command_timeout
        self.chunk_size = chunk_size
        self.window_ack_size = window_ack_size
        self.max_streams = max_streams
        self.chunk = chunk or ChunkLimits()


def split_query(name: str) -> tuple[str, str]:
    """``"live?token=x"`` -> ``("live", "token=x")``."""
    base, _, query = name.partition("?")
    return base, query


def _num(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


MAX_NAME: Final = 1024  # app and stream names, query strings included

# C0, DEL, C1, line/paragraph separators, bidi controls (U+202E can make a
# log line or a listing read backwards) and lone surrogates (bytes that were
# not UTF-8): none has a place in a stream key, a URL or a file name.
_UNPRINTABLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)


def name_problem(text: str) -> str | None:
    """Why an app or stream name is refused, or ``None``.

    Names end up in keys, logs, URLs, API answers and file names: a peer may
    not make them huge, nor hide control characters in them.
    """
    if len(text) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if _UNPRINTABLE.search(text) is not None:
        return "control or bidi characters"
    return None


class _Connection:
    """Machinery both roles share: chunking, protocol control, acks, timers."""

    role: ClassVar[str]

    def __init__(self, limits: ConnectionLimits | None, now: float) -> None:
        self.limits = limits or ConnectionLimits()
        self.state = ConnState.HANDSHAKE
        self._decoder = ChunkDecoder(self.limits.chunk)
        self._encoder = ChunkEncoder()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        # Media straight to its consumer, skipping the event objects: the hot
        # path of a relay. Used only while no event is queued ahead of the
        # message, so the consumer sees everything in wire order.
        self.media_sink: Callable[[int, int, int, bytes], None] | None = None
        self._streams = NetStreams()
        self._started = now
        self._bytes_in = 0
        self._last_ack = 0
        self._peer_window = 0
        self.peer_chunk_size = self._decoder.chunk_size
        self._handlers: dict[int, Callable[[Message], None]] = {
            MsgType.ACKNOWLEDGEMENT: self._ignore,
            MsgType.SET_CHUNK_SIZE: self._on_set_chunk_size,
            MsgType.ABORT: self._ignore,
            MsgType.USER_CONTROL: self._on_user_control,
            MsgType.WINDOW_ACK_SIZE: self._on_window_ack_size,
            MsgType.SET_PEER_BANDWIDTH: self._on_set_peer_bandwidth,
            MsgType.AUDIO: self._on_media,
            MsgType.VIDEO: self._on_media,
            MsgType.DATA_AMF0: self._on_data,
            MsgType.DATA_AMF3: self._on_data,
            MsgType.COMMAND_AMF0: self._on_command,
            MsgType.COMMAND_AMF3: self._on_command,
            MsgType.AGGREGATE: self._on_aggregate,
            MsgType.SHARED_OBJECT_AMF0: self._ignore,
            MsgType.SHARED_OBJECT_AMF3: self._ignore,
        }

    # ---------------------------------------------------------- I/O surface

    @property
    def chunk_size(self) -> int:
        """The chunk size we send with."""
        return self._encoder.chunk_size

    @property
    def streams(self) -> set[int]:
        """Ids of the message streams created and not deleted (a copy)."""
        return self._streams.ids()

    @property
    def active(self) -> set[int]:
        """Ids of the streams playing or publishing (a copy)."""
        return self._streams.active()

    def stream_state(self, stream_id: int) -> NetStreamState | None:
        """The state of one message stream, None if it does not exist."""
        return self._streams.state(stream_id)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete.

        Raises :class:`ProtocolError` on bad input; whatever the peer should
        be told has been queued by then.
        """
        if self.state is ConnState.CLOSED:
            return []
        if self.state is ConnState.HANDSHAKE:
            data = self._receive_handshake(data)
            if self.state is ConnState.HANDSHAKE or not data:
                return self._take_events()
        self._bytes_in += len(data)
        try:
            messages = self._decoder.receive_data(data)
        except ProtocolError as exc:
            self._fatal(exc)
            raise
        handlers = self._handlers
        for message in messages:
            handler = handlers.get(message.type_id)
            if handler is None:
                continue  # unknown types are skipped, as the spec allows
            try:
                handler(message)
            except ProtocolError as exc:
                self._fatal(exc)
                raise
        window = self._peer_window
        if window and self._bytes_in - self._last_ack >= window:
            self._last_ack = self._bytes_in
            self._send_control(MsgType.ACKNOWLEDGEMENT, _U32.pack(self._bytes_in & 0xFFFFFFFF))
        return self._take_events()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or ``None``."""
        if self.state is ConnState.HANDSHAKE:
            return self._started + self.limits.handshake_timeout
        if self._awaiting_commands():
            return self._started + self.limits.command_timeout
        return None

    def handle_timer(self, now: float) -> None:
        """Raises :class:`RemoteProtocolError` if a deadline has passed."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        stage = "handshake" if self.state is ConnState.HANDSHAKE else "commands"
        exc = RemoteProtocolError(f"timed out waiting for the {stage}")
        self._fatal(exc)
        raise exc

    def close(self) -> None:
        self._set_state(ConnState.CLOSED)

    def _fatal(self, exc: ProtocolError) -> None:
        """The conversation is over: queue what the peer should be told of
        ``exc`` (when there is a conversation to tell it in and nothing was
        said yet, e.g. by a refusal), then close."""
        if self.state is not ConnState.CLOSED:
            self._goodbye(exc)
        self.state = ConnState.CLOSED

    def _goodbye(self, exc: ProtocolError) -> None:
        """Queue the last words for ``exc``; a client says nothing (its server
        needs no reason to be left)."""

    # ---------------------------------------------------------- helpers

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _set_state(self, state: ConnState) -> None:
        if state is self.state:
            return
        if state not in _TRANSITIONS[self.state]:
            raise LocalProtocolError(f"cannot go from {self.state.value} to {state.value}")
        self.state = state

    def _awaiting_commands(self) -> bool:
        raise NotImplementedError

    def _receive_handshake(self, data: bytes) -> bytes:
        raise NotImplementedError

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, ts: int = 0) -> None:
        self._out.append(self._encoder.encode(csid, ts, type_id, stream_id, payload))

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._send(CSID_CONTROL, type_id, 0, payload)

    def send_command(self, stream_id: int, *values: Any) -> None:
        self._send(CSID_COMMAND, MsgType.COMMAND_AMF0, stream_id, amf0.encode(*values))

    def send_data(self, stream_id: int, *values: Any, timestamp: int = 0) -> None:
        self._send(CSID_DATA, MsgType.DATA_AMF0, stream_id, amf0.encode(*values), timestamp)

    def set_chunk_size(self, size: int) -> None:
        if not 1 <= size <= 0x7FFFFFFF:
            raise LocalProtocolError(f"invalid chunk size {size}")
        self._send_control(MsgType.SET_CHUNK_SIZE, _U32.pack(size))
        self._encoder.chunk_size = size

    def send_ping(self, timestamp: int) -> None:
        self._send_control(MsgType.USER_CONTROL, user_control(UserControl.PING_REQUEST, timestamp))

    def _ignore(self, message: Message) -> None:
        pass

    # ---------------------------------------------------------- protocol control

    def _on_set_chunk_size(self, message: Message) -> None:
        self.peer_chunk_size = self._decoder.chunk_size

    def _on_window_ack_size(self, message: Message) -> None:
        if len(message.payload) < 4:
            raise RemoteProtocolError("Window Acknowledgement Size message shorter than 4 bytes")
        self._peer_window = _U32.unpack_from(message.payload)[0]

    def _on_set_peer_bandwidth(self, message: Message) -> None:
        if len(message.payload) < 5:
            raise RemoteProtocolError("Set Peer Bandwidth message shorter than 5 bytes")

    def _on_user_control(self, message: Message) -> None:
        payload = message.payload
        if len(payload) < 6:
            raise RemoteProtocolError("User Control message shorter than 6 bytes")
        event, value = _UC_HEAD.unpack_from(payload)
        if event == UserControl.PING_REQUEST:
            self._send_control(
                MsgType.USER_CONTROL, user_control(UserControl.PING_RESPONSE, value)
            )
        elif event == UserControl.STREAM_BEGIN:
            self._events.append(StreamBegan(value))
        elif event in (UserControl.STREAM_EOF, UserControl.STREAM_DRY):
            self._events.append(StreamEnded(value))
            self._stream_eof(value, STREAM_EOF if event == UserControl.STREAM_EOF else STREAM_DRY)

    def _stream_eof(self, stream_id: int, code: str) -> None:
        pass  # only a client plays what a peer ends this way

    # ---------------------------------------------------------- media and data

    def _on_media(self, message: Message) -> None:
        sink = self.media_sink
        if sink is not None and not self._events:
            sink(message.stream_id, message.type_id, message.timestamp, message.payload)
            return
        self._events.append(
            MediaReceived(message.stream_id, message.type_id, message.timestamp, message.payload)
        )

    def _on_data(self, message: Message) -> None:
        payload = message.payload
        if message.type_id == MsgType.DATA_AMF3 and payload[:1] == b"\x00":
            payload = payload[1:]
        values = amf0.decode_all(payload)
        self._events.append(
            DataReceived(message.stream_id, message.timestamp, tuple(values), bytes(payload))
        )

    def _on_aggregate(self, message: Message) -> None:
        payload = message.payload
        pos = 0
        base: int | None = None
        while len(payload) - pos >= 11:
            type_id = payload[pos]
            size = int.from_bytes(payload[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(payload[pos + 4 : pos + 7], "big") | (payload[pos + 7] << 24)
            body = payload[pos + 11 : pos + 11 + size]
            if len(body) != size:
                raise RemoteProtocolError("aggregate message: sub-message overruns the payload")
            if base is None:
                base = ts
            pos += 11 + size + 4  # the trailing previous-tag-size
            sub = Message(
                type_id,
                message.stream_id,
                (message.timestamp + ts - base) & 0xFFFFFFFF,
                body,
                message.csid,
            )
            if type_id in (MsgType.AUDIO, MsgType.VIDEO):
                self._on_media(sub)
            elif type_id == MsgType.DATA_AMF0:
                self._on_data(sub)

    # ---------------------------------------------------------- commands

    def _on_command(self, message: Message) -> None:
        payload = message.payload
        if message.type_id == MsgType.COMMAND_AMF3 and payload[:1] == b"\x00":
            payload = payload[1:]
        values = amf0.decode_all(payload)
        if len(values) < 2 or not isinstance(values[0], str):
            raise RemoteProtocolError("command message without a name and transaction id")
        name: str = values[0]
        self._dispatch(message.stream_id, name, _num(values[1], 0.0), values[2:])

    def _dispatch(self, stream_id: int, name: str, tid: float, args: list[Any]) -> None:
        handler = self._commands.get(name)
        if handler is None:
            self._on_unknown_command(stream_id, name, tid, args)
        else:
            handler(self, stream_id, tid, args)

    def take_events(self) -> list[Event]:
        """Events produced outside ``receive_data`` (commands released by an answer)."""
        return self._take_events()

    _commands: ClassVar[dict[str, Callable[[Any, int, float, list[Any]], None]]] = {}

    def _on_unknown_command(self, stream_id: int, name: str, tid: float, args: list[Any]) -> None:
        self._events.append(CommandIgnored(stream_id, name))


def _status_info(code: str, description: str, level: str | None = None) -> dict[str, Any]:
    if level is None:
        level = "error" if code in _ERROR_CODES else "status"
    return {"level": level, "code": code, "description": description}


_ERROR_CODES: Final = frozenset(
    {
        Status.CONNECT_REJECTED,
        Status.PLAY_FAILED,
        Status.PLAY_STREAM_NOT_FOUND,
        Status.PUBLISH_BAD_NAME,
        Status.PUBLISH_DENIED,
    }
)


class ServerConnection(_Connection):
    """The server side of one RTMP connection (a publisher or a player)."""

    role = "server"

    def __init__(
        self,
        limits: ConnectionLimits | None = None,
        now: float = 0.0,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        super().__init__(limits, now)
        self._handshake = (
            ServerHandshake(random_bytes) if random_bytes is not None else ServerHandshake()
        )
        self._connect_tid: float | None = None
        self.app = ""
        self.tc_url = ""
        self._was_active = False  # the first-commands deadline no longer applies
        # Commands pipelined behind connect, answered once connect is.
        self._deferred: list[tuple[int, str, float, list[Any]]] = []

    def _receive_handshake(self, data: bytes) -> bytes:
        try:
            rest = self._handshake.receive_data(data)
        except ProtocolError:
            self.state = ConnState.CLOSED
            raise
        out = self._handshake.data_to_send()
        if out:
            self._out.append(out)
        if self._handshake.complete:
            self._set_state(ConnState.CONNECTING)
        return rest

    def _awaiting_commands(self) -> bool:
        return not self._was_active and self.state is not ConnState.CLOSED

    def _goodbye(self, exc: ProtocolError) -> None:
        # Commands may only follow connect: before it there is nobody to tell.
        if self._connect_tid is None:
            return
        if self.state is ConnState.CONNECTING:  # connect unanswered: refuse it with the reason
            self.send_command(
                0, "_error", self._connect_tid, None,
                _status_info(Status.CONNECT_REJECTED, exc.description, "error"),
            )
            self._deferred.clear()
            return
        self.send_command(
            0, "onStatus", 0.0, None, _status_info(exc.code, exc.description, "error")
        )

    _MAX_DEFERRED: ClassVar[int] = 16

    def _dispatch(self, stream_id: int, name: str, tid: float, args: list[Any]) -> None:
        """Only connect before connect; what follows it waits for its answer."""
        if name != "connect":
            if self._connect_tid is None:
                raise RemoteProtocolError(f"{name[:64]!r} before connect")
            if self.state is ConnState.CONNECTING:
                if len(self._deferred) >= self._MAX_DEFERRED:
                    raise RemoteProtocolError("too many commands pipelined behind connect")
                self._deferred.append((stream_id, name, tid, args))
                return
        super()._dispatch(stream_id, name, tid, args)

    # ---------------------------------------------------------- answers

    def accept_connect(self) -> None:
        if self._connect_tid is None or self.state is not ConnState.CONNECTING:
            raise LocalProtocolError("no connect to accept")
        lim = self.limits
        self._send_control(MsgType.WINDOW_ACK_SIZE, _U32.pack(lim.window_ack_size))
        self._send_control(MsgType.SET_PEER_BANDWIDTH, _PEER_BW.pack(lim.window_ack_size, 2))
        self.set_chunk_size(lim.chunk_size)
        self.send_command(
            0,
            "_result",
            self._connect_tid,
            {"fmsVer": FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
            {
                **_status_info(Status.CONNECT_SUCCESS, "Connection succeeded."),
                "objectEncoding": 0.0,
            },
        )
        self._set_state(ConnState.CONNECTED)
        deferred, self._deferred = self._deferred, []
        for stream_id, name, tid, args in deferred:
            super()._dispatch(stream_id, name, tid, args)

    def reject_connect(self, description: str, code: str = Status.CONNECT_REJECTED) -> None:
        """Queue the refusal; the adapter should flush and close."""
        tid = self._connect_tid if self._connect_tid is not None else 1.0
        self.send_command(0, "_error", tid, None, _status_info(code, description, "error"))
        self._deferred.clear()
        self._set_state(ConnState.CLOSED)

    def send_status(self, stream_id: int, code: str, description: str) -> None:
        self.send_command(stream_id, "onStatus", 0.0, None, _status_info(code, description))

    def _answer(self, stream_id: int, answer: NetStreamInput) -> bool:
        """Apply our answer; False when the peer closed the stream before it came."""
        was = self._streams.state(stream_id)
        self._streams.apply(stream_id, answer)
        return was is not NetStreamState.CLOSED

    def accept_publish(self, stream_id: int, name: str) -> None:
        """Publish.Start. Raises LocalProtocolError unless a publish was requested."""
        if not self._answer(stream_id, NetStreamInput.ACCEPT_PUBLISH):
            return
        self._was_active = True
        self.send_status(stream_id, Status.PUBLISH_START, f"{name} is now published.")

    def accept_play(self, stream_id: int, name: str) -> None:
        """StreamBegin, Play.Reset, Play.Start and |RtmpSampleAccess, as players expect.

        Raises LocalProtocolError unless a play was requested on ``stream_id``.
        """
        if not self._answer(stream_id, NetStreamInput.ACCEPT_PLAY):
            return
        self._was_active = True
        self._send_control(MsgType.USER_CONTROL, user_control(UserControl.STREAM_BEGIN, stream_id))
        self.send_status(stream_id, Status.PLAY_RESET, f"Playing and resetting {name}.")
        self.send_status(stream_id, Status.PLAY_START, f"Started playing {name}.")
        self.send_data(stream_id, "|RtmpSampleAccess", True, True)

    def refuse(self, stream_id: int, code: str, description: str) -> None:
        """Refuse a play or publish; the connection is over once this is flushed."""
        if stream_id in self._streams:  # a stream deleted meanwhile still hears why
            self._streams.apply(stream_id, NetStreamInput.REFUSE)
        self.send_status(stream_id, code, description)
        self._set_state(ConnState.CLOSED)

    def end_stream(self, stream_id: int, code: str, description: str) -> None:
        """Tell a player its stream is over (StreamEOF + status)."""
        self._streams.apply(stream_id, NetStreamInput.END)
        self._send_control(MsgType.USER_CONTROL, user_control(UserControl.STREAM_EOF, stream_id))
        self.send_status(stream_id, code, description)

    # ---------------------------------------------------------- commands

    def _cmd_connect(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if self._connect_tid is not None:
            raise RemoteProtocolError("connect sent twice")
        props = args[0] if args and isinstance(args[0], dict) else {}
        self._connect_tid = tid
        raw = _text(props.get("app"))
        problem = name_problem(raw)
        if problem is not None:
            self.reject_connect(f"invalid app name: {problem}")
            raise RemoteProtocolError(f"invalid app name: {problem}")
        app, query = split_query(raw.strip("/"))
        self.app = app
        self.tc_url = _text(props.get("tcUrl"))
        if not query and "?" in self.tc_url:
            query = self.tc_url.partition("?")[2]
        self._events.append(ConnectRequested(app, query, self.tc_url, dict(props)))

    def _cmd_create_stream(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if len(self._streams) >= self.limits.max_streams:
            self.send_command(
                0, "_error", tid, None,
                _status_info("NetConnection.Call.Failed", "too many streams", "error"),
            )
            return
        new_id = self._streams.lowest_free_id()  # players share encodings by id
        self._streams.create(new_id)
        self.send_command(0, "_result", tid, None, float(new_id))

    def _cmd_ack_only(self, stream_id: int, tid: float, args: list[Any]) -> None:
        """releaseStream, FCPublish, FCUnpublish: answered, nothing to do."""
        if tid:
            self.send_command(0, "_result", tid, None, amf0.UNDEFINED)

    def _stream_name(self, stream_id: int, args: list[Any], command: str, code: str) -> str:
        """The name argument of publish or play; a bad one is refused with a status."""
        raw = _text(args[1]) if len(args) > 1 else ""
        problem = name_problem(raw)
        if problem is not None:
            self.refuse(stream_id, code, f"invalid stream name: {problem}")
            raise RemoteProtocolError(f"{command} refused: invalid stream name: {problem}")
        return raw

    def _cmd_publish(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if stream_id not in self.streams:
            raise RemoteProtocolError(f"publish on stream id {stream_id} that was not created")
        self._streams.apply(stream_id, NetStreamInput.PUBLISH_RECEIVED)
        raw = self._stream_name(stream_id, args, "publish", Status.PUBLISH_BAD_NAME)
        name, query = split_query(raw)
        kind = _text(args[2]) if len(args) > 2 else "live"
        self._events.append(PublishRequested(stream_id, name, query, kind or "live"))

    def _cmd_play(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if stream_id not in self.streams:
            raise RemoteProtocolError(f"play on stream id {stream_id} that was not created")
        self._streams.apply(stream_id, NetStreamInput.PLAY_RECEIVED)
        raw = self._stream_name(stream_id, args, "play", Status.PLAY_FAILED)
        name, query = split_query(raw)
        start = _num(args[2], -2.0) if len(args) > 2 else -2.0
        duration = _num(args[3], -1.0) if len(args) > 3 else -1.0
        reset = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else True
        self._events.append(PlayRequested(stream_id, name, query, start, duration, reset))

    def _cmd_delete_stream(self, stream_id: int, tid: float, args: list[Any]) -> None:
        value = _num(args[1], 0.0) if len(args) > 1 else 0.0
        target = int(value) if math.isfinite(value) else 0  # NaN/inf name no stream
        self._close_stream(target, "deleteStream")

    def _cmd_close_stream(self, stream_id: int, tid: float, args: list[Any]) -> None:
        self._close_stream(stream_id, "closeStream")

    def _close_stream(self, stream_id: int, command: str) -> None:
        if stream_id in self._streams:
            if command == "deleteStream":
                self._streams.delete(stream_id)
            else:
                self._streams.apply(stream_id, NetStreamInput.CLOSE_RECEIVED)
            self._events.append(StreamClosed(stream_id, command))

    def _cmd_get_stream_length(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if tid:
            self.send_command(0, "_result", tid, None, 0.0)

    def _cmd_receive(self, stream_id: int, tid: float, args: list[Any]) -> None:
        # args[0] is the null command object; the flag follows.
        enabled = bool(args[1]) if len(args) > 1 else True
        self._events.append(ReceiveToggled(stream_id, "audio", enabled))

    def _cmd_receive_video(self, stream_id: int, tid: float, args: list[Any]) -> None:
        enabled = bool(args[1]) if len(args) > 1 else True
        self._events.append(ReceiveToggled(stream_id, "video", enabled))

    def _cmd_result(self, stream_id: int, tid: float, args: list[Any]) -> None:
        pass  # answers to our pings or onBWDone; nothing waits on them

    def _on_unknown_command(self, stream_id: int, name: str, tid: float, args: list[Any]) -> None:
        self._events.append(CommandIgnored(stream_id, name))

    _commands: ClassVar[dict[str, Callable[[Any, int, float, list[Any]], None]]] = {
        "connect": _cmd_connect,
        "createStream": _cmd_create_stream,
        "releaseStream": _cmd_ack_only,
        "FCPublish": _cmd_ack_only,
        "FCUnpublish": _cmd_ack_only,
        "FCSubscribe": _cmd_ack_only,
        "publish": _cmd_publish,
        "play": _cmd_play,
        "deleteStream": _cmd_delete_stream,
        "closeStream": _cmd_close_stream,
        "getStreamLength": _cmd_get_stream_length,
        "receiveAudio": _cmd_receive,
        "receiveVideo": _cmd_receive_video,
        "_result": _cmd_result,
        "_error": _cmd_result,
        "_checkbw": _cmd_result,
    }


class ClientConnection(_Connection):
    """The client side: toward an origin, in tests and in the load generator.

    ``connect()`` may be called at once; commands wait until the handshake
    is done.
    """

    role = "client"

    def __init__(
        self,
        tc_url: str,
        app: str,
        limits: ConnectionLimits | None = None,
        now: float = 0.0,
        random_bytes: Callable[[int], bytes] | None = None,
        flash_ver: str = FLASH_VERSION,
    ) -> None:
        super().__init__(limits, now)
        self.tc_url = tc_url
        self.app = app
        self.flash_ver = flash_ver
        self._handshake = (
            ClientHandshake(random_bytes) if random_bytes is not None else ClientHandshake()
        )
        self._out.append(self._handshake.data_to_send())
        self._pending: list[bytes] = []  # commands queued before the handshake completed
        self._next_tid = 1.0
        self._create_tids: set[float] = set()
        self._ahead: set[int] = set()  # ids used before the createStream answer named them
        self._connect_tid: float | None = None
        self._requested: int | None = None  # the stream of the latest play or publish

    def _receive_handshake(self, data: bytes) -> bytes:
        try:
            rest = self._handshake.receive_data(data)
        except ProtocolError:
            self.state = ConnState.CLOSED
            raise
        if self._handshake.complete:
            self._out.append(self._handshake.data_to_send())
            self._set_state(ConnState.CONNECTING)
            self._out.extend(self._pending)
            self._pending.clear()
        return rest

    def _awaiting_commands(self) -> bool:
        return self.state is ConnState.CONNECTING

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, ts: int = 0) -> None:
        data = self._encoder.encode(csid, ts, type_id, stream_id, payload)
        if self.state is ConnState.HANDSHAKE:
            self._pending.append(data)
        else:
            self._out.append(data)

    def _tid(self) -> float:
        tid = self._next_tid
        self._next_tid += 1.0
        return tid

    # ---------------------------------------------------------- requests

    def connect(self, extra: dict[str, Any] | None = None) -> None:
        self._connect_tid = self._tid()
        props: dict[str, Any] = {
            "app": self.app,
            "flashVer": self.flash_ver,
            "tcUrl": self.tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
        }
        if extra:
            props.update(extra)
        self.send_command(0, "connect", self._connect_tid, props)

    def create_stream(self) -> float:
        tid = self._tid()
        self._create_tids.add(tid)
        self.send_command(0, "createStream", tid, None)
        return tid

    def _request(self, stream_id: int, request: NetStreamInput) -> None:
        if stream_id not in self._streams:
            # An id the server has not handed out (yet): a client pipelining
            # its play behind createStream (the server gives the lowest free
            # id), or a test of a server on purpose; it is the server's to refuse.
            self._streams.create(stream_id)
            self._ahead.add(stream_id)
        self._streams.apply(stream_id, request)
        self._requested = stream_id

    def play(self, stream_id: int, name: str, start: float = -2.0) -> None:
        self._request(stream_id, NetStreamInput.PLAY_SENT)
        self.send_command(stream_id, "play", 0.0, None, name, start)
        self._send_control(
            MsgType.USER_CONTROL, user_control(UserControl.SET_BUFFER_LENGTH, stream_id, 3000)
        )

    def publish(self, stream_id: int, name: str, kind: str = "live") -> None:
        self._request(stream_id, NetStreamInput.PUBLISH_SENT)
        self.send_command(0, "releaseStream", self._tid(), None, name)
        self.send_command(0, "FCPublish", self._tid(), None, name)
        self.send_command(stream_id, "publish", 0.0, None, name, kind)

    def delete_stream(self, stream_id: int) -> None:
        self._streams.delete(stream_id)
        self._ahead.discard(stream_id)
        self.send_command(0, "deleteStream", 0.0, None, float(stream_id))

    def note_media(self, stream_id: int) -> None:
        """Media arrived for ``stream_id`` before Play.Start: the play is under way.

        The core does not watch media per message (the hot path); an adapter
        that does calls this once.
        """
        if stream_id in self._streams:
            self._streams.apply(stream_id, NetStreamInput.MEDIA_SEEN)

    def send_media(self, stream_id: int, type_id: int, timestamp: int, payload: bytes) -> None:
        csid = 6 if type_id == MsgType.AUDIO else 7
        self._send(csid, type_id, stream_id, payload, timestamp)

    # ---------------------------------------------------------- answers

    def _on_set_peer_bandwidth(self, message: Message) -> None:
        super()._on_set_peer_bandwidth(message)
        size = _U32.unpack_from(message.payload)[0]
        self._send_control(MsgType.WINDOW_ACK_SIZE, _U32.pack(size))

    def _cmd_result(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if tid == self._connect_tid:
            self._connect_tid = None
            props = args[0] if args and isinstance(args[0], dict) else {}
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            self._set_state(ConnState.CONNECTED)
            self._events.append(Connected(dict(props), dict(info)))
        elif tid in self._create_tids:
            self._create_tids.discard(tid)
            sid = args[1] if len(args) > 1 else None
            if isinstance(sid, bool) or not isinstance(sid, int | float) or not 0 < sid < 2**31:
                raise RemoteProtocolError(f"createStream answered with stream id {sid!r}")
            if int(sid) in self._ahead:
                self._ahead.discard(int(sid))  # already played or published, pipelined
            elif int(sid) in self._streams:
                raise RemoteProtocolError(f"createStream answered with stream id {sid!r} in use")
            else:
                self._streams.create(int(sid))
            self._events.append(StreamCreated(tid, int(sid)))

    def _cmd_error(self, stream_id: int, tid: float, args: list[Any]) -> None:
        info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        code = _text(info.get("code")) or "NetConnection.Call.Failed"
        description = _text(info.get("description"))
        if tid == self._connect_tid:
            self._connect_tid = None
            ex = info.get("ex")
            redirect = None
            if isinstance(ex, dict):
                redirect = _text(ex.get("redirect")) or None
            redirect = redirect or _text(info.get("redirect")) or None
            self._set_state(ConnState.CLOSED)
            self._events.append(ConnectRejected(code, description, redirect))
        elif tid in self._create_tids:
            self._create_tids.discard(tid)
            self._events.append(StatusReceived(0, "error", code, description))
            self._events.append(StreamCreateFailed(tid, code, description))

    def _cmd_on_status(self, stream_id: int, tid: float, args: list[Any]) -> None:
        info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
        level, code = _text(info.get("level")), _text(info.get("code"))
        description = _text(info.get("description"))
        self._events.append(StatusReceived(stream_id, level, code, description))
        meaning = classify_status(code, level)
        if meaning is None:
            return
        if stream_id not in self._streams:
            # A status on the NetConnection (0) or an id of the server's own
            # numbering: it is about the play or publish we asked for last.
            if self._requested is None or self._requested not in self._streams:
                return
            stream_id = self._requested
        told = self._streams.apply(stream_id, meaning, code, description)
        if told is not None:
            self._events.append(told)

    def _stream_eof(self, stream_id: int, code: str) -> None:
        if stream_id in self._streams:
            told = self._streams.apply(stream_id, NetStreamInput.EOF_RECEIVED, code)
            if told is not None:
                self._events.append(told)

    def _cmd_ignore(self, stream_id: int, tid: float, args: list[Any]) -> None:
        pass

    def _cmd_answer_null(self, stream_id: int, tid: float, args: list[Any]) -> None:
        if tid:
            self.send_command(0, "_result", tid, None)

    _commands: ClassVar[dict[str, Callable[[Any, int, float, list[Any]], None]]] = {
        "_result": _cmd_result,
        "_error": _cmd_error,
        "onStatus": _cmd_on_status,
        "onBWDone": _cmd_ignore,
        "onFCPublish": _cmd_ignore,
        "onFCUnpublish": _cmd_ignore,
        "_onbwcheck": _cmd_answer_null,
        "_onbwdone": _cmd_ignore,
        "close": _cmd_ignore,
    }
