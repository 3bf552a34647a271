"""One load-test player: an RTMP play that parses only until its first keyframe.

A player goes through the real client core
(:class:`~streamgate.rtmp.connection.ClientConnection`, fed by the shared
:class:`~streamgate.client.ClientDriver`) for the handshake, ``connect``,
``createStream``, ``play`` and the first media messages, and records when
each step completed; what a status means (``PlayStarted``, ``PlayRefused``)
the core decides. Once the first video keyframe is in it
drops the core and only counts bytes: every read lands in one buffer the
whole worker process shares (``asyncio.BufferedProtocol``, so there is no
allocation per read), and the player adds the byte count and the time.

What counting mode still does, because servers need it or the record does:

* it acknowledges received bytes (an RTMP Acknowledgement every
  ``ACK_EVERY`` bytes), as the core would; SRS stops sending to a player
  that never acks, and nginx-rtmp counts acks as the activity its ``ping``
  check looks for;
* it asks the kernel to wake it only once ``RCVLOWAT`` bytes are queued
  (``SO_RCVLOWAT``), so a server that writes every message separately does
  not cost a wake-up per message; the server sees the same ACKs either way;
* it looks for an AMF0 ``onStatus`` command with ``bytes.find`` (C speed,
  no parsing) to keep the last status code the server sent, such as
  ``NetStream.Play.UnpublishNotify`` before a close. By default ("tail")
  only the last ``SCAN_TAIL`` bytes of each read are searched: a status
  the server sends just before it goes quiet or closes ends a read, while
  scanning every byte ("full") costs as much as the rest of the player
  together (a memory pass at the full bitrate); a status followed by more
  media within one read is then missed. The 11-byte marker is also looked
  for across the boundary of two reads, and a status whose body is cut by
  a read boundary is completed from the next read.

Times are ``time.monotonic()``, which on Linux is one clock for every
process, so a controller can line up the records of several workers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final

from streamgate.client import ClientDriver, RtmpUrl
from streamgate.errors import ProtocolError
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.connection import ClientConnection, ConnState
from streamgate.rtmp.events import (
    Connected,
    ConnectRejected,
    Event,
    MediaReceived,
    PlayRefused,
    PlayStarted,
    StatusReceived,
    StreamCreated,
    StreamCreateFailed,
)
from streamgate.rtmp.flv import VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import CSID_CONTROL, MsgType

__all__ = [
    "ACK_EVERY",
    "RCVLOWAT",
    "RECORD_FIELDS",
    "SCAN_MODES",
    "Player",
    "PlayerOptions",
    "State",
    "find_status_code",
]

ACK_EVERY: Final = 1_000_000
"""Counting mode acknowledges every this many bytes (below any server's window)."""

SCAN_MODES: Final = ("tail", "full", "off")
SCAN_TAIL: Final = 4096  # "tail": bytes at the end of each read that are scanned

RCVLOWAT: Final = 32 * 1024
"""Counting mode wakes up once this many bytes are queued (SO_RCVLOWAT), not per segment."""

HANDSHAKE_BYTES: Final = 1 + 2 * 1536  # S0 S1 S2: not counted in acknowledgements

STATUS_MARK: Final = b"\x02\x00\x08onStatus"  # AMF0 string "onStatus"
_CODE_KEY: Final = b"\x00\x04code\x02"  # object key "code", then a string marker
_STATUS_SPAN: Final = 1024  # an onStatus body is far shorter than this
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class State(IntEnum):
    """Where a player is; the order is the order of progress."""

    CONNECTING = 0  # TCP connect under way
    COMMANDS = 1  # handshake, connect, createStream, play
    STARTED = 2  # NetStream.Play.Start received, no keyframe yet
    COUNTING = 3  # first keyframe received: counting bytes only
    CLOSED = 4  # the server closed the connection
    FAILED = 5  # refused, protocol error, connect error or start timeout
    LEFT = 6  # we closed it (end of run or end of its lifetime)


class PlayerOptions:
    """Settings every player of a run shares (picklable: sent to the workers).

    ``ca_file`` and ``insecure`` are for ``rtmps://`` URLs: verify the server
    against the CA certificates of that PEM file only (default: the system's), or
    not at all. Each worker makes one SSL context of them (:meth:`ssl_context`)."""

    __slots__ = ("ca_file", "insecure", "quickack", "rcvlowat", "start_timeout", "status_scan")

    def __init__(
        self,
        *,
        start_timeout: float = 10.0,
        status_scan: str = "tail",
        quickack: bool = True,
        rcvlowat: int = RCVLOWAT,
        ca_file: str | None = None,
        insecure: bool = False,
    ) -> None:
        if status_scan not in SCAN_MODES:
            raise ValueError(f"status_scan must be one of {', '.join(SCAN_MODES)}")
        if ca_file is not None and insecure:
            raise ValueError("a CA file and no verification (insecure) exclude each other")
        self.start_timeout = start_timeout
        self.status_scan = status_scan
        self.quickack = quickack
        self.rcvlowat = rcvlowat
        self.ca_file = ca_file
        self.insecure = insecure

    def ssl_context(self) -> ssl.SSLContext:
        """The client context for ``rtmps://`` plays; ValueError for an unusable CA file."""
        if self.insecure:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if self.ca_file is None:
            return ssl.create_default_context()
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{self.ca_file}: not a usable CA file: {exc}") from None

    def __getstate__(self) -> tuple[float, str, bool, int, str | None, bool]:
        return (
            self.start_timeout,
            self.status_scan,
            self.quickack,
            self.rcvlowat,
            self.ca_file,
            self.insecure,
        )

    def __setstate__(self, state: tuple[float, str, bool, int, str | None, bool]) -> None:
        (
            self.start_timeout,
            self.status_scan,
            self.quickack,
            self.rcvlowat,
            self.ca_file,
            self.insecure,
        ) = state


# What Player.record() returns, in order. Times are monotonic seconds
# (absolute); the controller turns them into durations.
RECORD_FIELDS: Final = (
    "index",
    "attempt",
    "url",
    "state",
    "started",  # connect() called
    "tcp",  # TCP connected
    "handshake",  # S0S1S2 received
    "connected",  # NetConnection.Connect.Success
    "play_sent",  # play command written
    "play_start",  # NetStream.Play.Start received
    "keyframe",  # first video keyframe complete
    "ended",  # refused with an error status, or the connection gone (either side)
    "closed_by_server",  # the server closed or refused it
    "last_status",
    "error",
    "bytes",
)


def find_status_code(data: bytes | bytearray, start: int = 0, end: int | None = None) -> str | None:
    """The ``code`` of an AMF0 ``onStatus`` whose marker is at ``start``, or None.

    None also when the body is incomplete within ``data[start:end]``.
    """
    end = len(data) if end is None else end
    key = data.find(_CODE_KEY, start, min(end, start + _STATUS_SPAN))
    if key < 0 or key + len(_CODE_KEY) + 2 > end:
        return None
    pos = key + len(_CODE_KEY)
    length = _U16.unpack_from(data, pos)[0]
    if pos + 2 + length > end:
        return None
    return bytes(data[pos + 2 : pos + 2 + length]).decode("utf-8", "replace")


class PlayBase(asyncio.BufferedProtocol):
    """What every load-test player has, whatever its protocol: its identity, the
    times of its steps, its byte count, and how a play ends (the worker owns the
    buffer, the clock and the schedule). A subclass parses its protocol and
    releases its parser in :meth:`_drop_parser`."""

    __slots__ = (
        "attempt",
        "buffer",
        "closed_by_server",
        "connected",
        "done",
        "ended",
        "error",
        "handshake",
        "index",
        "keyframe",
        "last_rx",
        "last_status",
        "nbytes",
        "on_end",
        "options",
        "play_sent",
        "play_start",
        "sock",
        "started",
        "state",
        "tcp",
        "timer",
        "transport",
        "url_text",
        "view",
    )

    def __init__(
        self,
        index: int,
        attempt: int,
        url_text: str,
        buffer: bytearray,
        view: memoryview,
        options: PlayerOptions,
        on_end: Callable[[Any], None],
    ) -> None:
        self.index = index
        self.attempt = attempt
        self.url_text = url_text
        self.buffer = buffer  # shared by every player of the worker
        self.view = view
        self.options = options
        self.on_end = on_end
        self.state = State.CONNECTING
        self.transport: asyncio.Transport | None = None
        self.sock: Any = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = time.monotonic()
        self.tcp = self.handshake = self.connected = 0.0
        self.play_sent = self.play_start = self.keyframe = self.ended = 0.0
        self.last_rx = 0.0
        self.nbytes = 0
        self.closed_by_server = False  # closed, or refused with an error status
        self.done = False
        self.last_status = ""
        self.error = ""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state < State.CLOSED:
            self.state = State.CLOSED
            self.closed_by_server = True
            if exc is not None and not self.error:
                self.error = f"connection lost: {exc}"
        self._finish()

    # ------------------------------------------------------------ ending

    def start_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.options.start_timeout > 0:
            self.timer = loop.call_later(self.options.start_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if self.state < State.COUNTING:
            self.fail(f"no keyframe within {self.options.start_timeout:g} s")

    def fail(self, reason: str) -> None:
        """Give up on this play (refused, bad input, no keyframe in time)."""
        if self.state >= State.CLOSED:
            return
        self.state = State.FAILED
        self.error = reason
        self._close()

    def refused(self, reason: str) -> None:
        """The server said no (an error status, or the end before a keyframe): it ends
        the play, we close at once."""
        if self.state >= State.CLOSED:
            return
        self.closed_by_server = True
        self.ended = self.last_rx
        self.fail(reason)

    def leave(self) -> None:
        """Close the play on our side (end of run or of its lifetime)."""
        if self.state >= State.CLOSED:
            return
        self._goodbye()
        self.state = State.LEFT
        self._close()

    def _goodbye(self) -> None:
        """What the protocol says when we leave (nothing, for RTMP)."""

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # connection_lost follows and finishes
        else:
            self._finish()

    def _drop_parser(self) -> None:
        """Let go of the parse-mode state."""

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if not self.ended:
            self.ended = time.monotonic()
        self._drop_parser()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.on_end(self)

    def record(self) -> tuple[Any, ...]:
        """The fields of :data:`RECORD_FIELDS`, in order."""
        return (
            self.index,
            self.attempt,
            self.url_text,
            int(self.state),
            self.started,
            self.tcp,
            self.handshake,
            self.connected,
            self.play_sent,
            self.play_start,
            self.keyframe,
            self.ended,
            self.closed_by_server,
            self.last_status,
            self.error,
            self.nbytes,
        )


class Player(PlayBase):
    """One play of one URL; the worker owns the buffer, the clock and the schedule."""

    __slots__ = (
        "conn",
        "driver",
        "next_ack",
        "pending_status",
        "tail",
        "url",
    )

    def __init__(
        self,
        index: int,
        attempt: int,
        url_text: str,
        url: RtmpUrl,
        buffer: bytearray,
        view: memoryview,
        options: PlayerOptions,
        on_end: Callable[[Player], None],
    ) -> None:
        super().__init__(index, attempt, url_text, buffer, view, options, on_end)
        self.url = url
        self.conn: ClientConnection | None = ClientConnection(url.tc_url, url.app)
        self.conn.connect()
        # Parse mode only: dropped with the core at the first keyframe.
        self.driver: ClientDriver | None = ClientDriver(self.conn, self._on_events, self._on_error)
        self.next_ack = 0
        self.tail = b""  # the last bytes of the previous read (status marker across reads)
        self.pending_status = b""  # an onStatus body cut by the end of a read

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = time.monotonic()
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.sock = sock
        if sock is not None and self.options.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.state is not State.CONNECTING or self.driver is None:  # closed while connecting
            transport.close()
            return
        self.state = State.COMMANDS
        self.driver.attach(transport)  # TCP_NODELAY, then C0+C1 and connect

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.nbytes += nbytes
        self.last_rx = time.monotonic()
        if self.conn is None:
            if self.nbytes >= self.next_ack:
                self._ack()
            mode = self.options.status_scan
            if mode == "tail":
                self._scan(nbytes, max(0, nbytes - SCAN_TAIL))
            elif mode == "full":
                self._scan(nbytes, 0)
            return
        self._parse(nbytes)

    def eof_received(self) -> bool:
        return False  # close our side too

    # ------------------------------------------------------------ parse mode

    def _parse(self, nbytes: int) -> None:
        conn, driver = self.conn, self.driver
        assert conn is not None and driver is not None
        if self.options.quickack and self.sock is not None:
            # Linux leaves quick-ack mode by itself; ask again after every read
            # so no delayed ACK holds the server back before the first keyframe.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        driver.feed(bytes(self.view[:nbytes]))  # -> _on_events or _on_error
        if not self.handshake and conn.state is not ConnState.HANDSHAKE:
            self.handshake = self.last_rx

    def _on_error(self, exc: ProtocolError) -> None:
        self.fail(f"protocol error: {exc.description}")

    def _on_events(self, events: list[Event]) -> None:
        handlers = self._handlers
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None and handler(self, event):
                return  # counting from here, or over

    # Each returns True when the rest of the read is not the core's any more.

    def _on_media(self, event: MediaReceived) -> bool:
        if event.type_id == MsgType.VIDEO and classify_video(event.payload) == VIDEO_KEYFRAME:
            self._first_keyframe()
            return True
        return False

    def _on_status(self, event: StatusReceived) -> bool:
        self.last_status = event.code  # kept for the record, whatever it means
        return False

    def _on_play_started(self, event: PlayStarted) -> bool:
        self.play_start = self.last_rx
        self.state = State.STARTED
        return False

    def _on_play_refused(self, event: PlayRefused) -> bool:
        self.refused(f"{event.code}: {event.description}")
        return True

    def _on_create_failed(self, event: StreamCreateFailed) -> bool:
        self.refused(f"{event.code}: {event.description}")
        return True

    def _on_connected(self, event: Connected) -> bool:
        self.connected = self.last_rx
        assert self.conn is not None
        self.conn.create_stream()
        return False

    def _on_stream_created(self, event: StreamCreated) -> bool:
        assert self.conn is not None
        self.conn.play(event.stream_id, self.url.name)
        self.play_sent = time.monotonic()
        return False

    def _on_rejected(self, event: ConnectRejected) -> bool:
        self.last_status = event.code
        self.refused(f"connect rejected: {event.code}: {event.description}")
        return True

    _handlers: Final[dict[type[Event], Callable[[Any, Any], bool]]] = {
        MediaReceived: _on_media,
        StatusReceived: _on_status,
        PlayStarted: _on_play_started,
        PlayRefused: _on_play_refused,
        StreamCreateFailed: _on_create_failed,
        Connected: _on_connected,
        StreamCreated: _on_stream_created,
        ConnectRejected: _on_rejected,
    }

    def _first_keyframe(self) -> None:
        driver = self.driver
        assert driver is not None
        driver.flush()  # an ack the core queued for this very read
        self.keyframe = self.last_rx
        self.state = State.COUNTING
        self.conn = self.driver = None  # from here on: count bytes only
        self.next_ack = self.nbytes + ACK_EVERY
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.options.rcvlowat > 0 and self.sock is not None:
            # A server that writes every message (nginx-rtmp) would otherwise wake
            # us for each one; a close or reset still wakes us at once.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, self.options.rcvlowat)

    # ------------------------------------------------------------ counting mode

    def _ack(self) -> None:
        self.next_ack = self.nbytes + ACK_EVERY
        if self.transport is not None:
            value = (self.nbytes - HANDSHAKE_BYTES) & 0xFFFFFFFF
            self.transport.write(
                encode_message(CSID_CONTROL, 0, MsgType.ACKNOWLEDGEMENT, 0, _U32.pack(value), 128)
            )

    def _scan(self, nbytes: int, start: int) -> None:
        buf = self.buffer
        keep = len(STATUS_MARK) - 1
        if self.pending_status:  # a status body cut by the previous read
            self._complete(self.pending_status + bytes(buf[: min(nbytes, _STATUS_SPAN)]))
        elif self.tail:  # a marker cut in two by the read boundary
            joined = self.tail + bytes(buf[: min(nbytes, keep)])
            at = joined.find(STATUS_MARK)
            if 0 <= at < len(self.tail):
                self._complete(self.tail[at:] + bytes(buf[: min(nbytes, _STATUS_SPAN)]))
        at = buf.find(STATUS_MARK, start, nbytes)
        while at >= 0:
            if not self._take_status(buf, at, nbytes):
                self.pending_status = bytes(buf[at:nbytes])
                break
            at = buf.find(STATUS_MARK, at + 1, nbytes)
        if nbytes >= keep:
            self.tail = bytes(buf[nbytes - keep : nbytes])
        else:
            self.tail = (self.tail + bytes(buf[:nbytes]))[-keep:]

    def _complete(self, data: bytes) -> None:
        """``data`` starts with a marker: take its code, or wait for more (within bounds)."""
        if self._take_status(data, 0):
            self.pending_status = b""
        else:
            self.pending_status = data if len(data) < _STATUS_SPAN else b""

    def _take_status(self, data: bytes | bytearray, at: int, end: int | None = None) -> bool:
        code = find_status_code(data, at, end)
        if code is None:
            return False
        self.last_status = code
        return True

    def _drop_parser(self) -> None:
        self.conn = self.driver = None
