"""One load-test viewer of HTTP-FLV or WebSocket-FLV: parses only until its first keyframe.

The HTTP-FLV and WebSocket-FLV counterpart of :class:`~streamgate.loadtest.player.Player`,
with the same life cycle, states and record, so the worker, the controller
and the summary treat both alike. A URL ``http://host:port/{app}/{stream}.flv``
is played as HTTP-FLV (HTTP/1.1, chunked), ``ws://`` the same path as
WebSocket-FLV (RFC 6455; ``Upgrade: websocket``).

Parse mode, until the first video keyframe: the response head (a refusal's
status and body, or the 101 and its ``Sec-WebSocket-Accept``), the body's
framing (HTTP/1.1 chunks, WebSocket frames, or none for a server that
answers as HTTP/1.0) and the FLV file header and tags, until a video tag
that is a coded keyframe (not a sequence header) is complete. Then counting
mode, as lean as the RTMP player's: every read lands in the buffer the whole
worker process shares, and the player adds the byte count and the time.
Nothing is acknowledged (HTTP needs no acks), and ``SO_RCVLOWAT`` asks the
kernel to wake it only once ``RCVLOWAT`` bytes are queued.

In counting mode, unless ``status_scan`` is ``off``, the end of each read is
checked for how the server ends a stream: the chunked terminator
(``0\\r\\n\\r\\n``) or a WebSocket close frame, kept as the last status. One
comparison (``bytearray.endswith``) or a bounded ``rfind`` per read.

What the record's steps mean here: ``tcp`` the TCP connect; ``handshake``,
``connected`` and ``play_sent`` the moment the request is written (the
request is all of RTMP's handshake, connect and play); ``play_start`` the
response head (200, or 101 for WebSocket); ``keyframe`` the first keyframe
tag complete. ``last_status`` is ``HTTP <status>``, ``WS <status>`` or
``WS close <code>``, and ``end of stream`` after a chunked terminator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import urlsplit

from streamgate.loadtest.player import PlayBase, PlayerOptions, State
from streamgate.rtmp.flv import VIDEO_KEYFRAME, classify_video

__all__ = ["FLV_SCHEMES", "FlvPlayer", "FlvUrl", "parse_flv_url"]

FLV_SCHEMES: Final = ("http", "ws")

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD: Final = 16 * 1024  # a response head longer than this is not a server's answer
_MAX_BODY: Final = 4096  # of a refusal's body: what the record keeps of it
_CHUNKED_END: Final = b"0\r\n\r\n"
_WS_CLOSE: Final = b"\x88"  # FIN + close opcode, unmasked (a server's)
_FLV_HEADER: Final = 13  # the file header and PreviousTagSize0
_TAG_HEAD: Final = 11
_VIDEO_TAG: Final = 9
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# Body framings.
_CHUNKED = 0
_WEBSOCKET = 1
_PLAIN = 2


@dataclass(frozen=True, slots=True)
class FlvUrl:
    """``http://`` or ``ws://`` ``host[:port]/{app}/{stream}.flv[?query]``."""

    host: str
    port: int
    app: str
    stream: str  # without ".flv"
    target: str  # the request target: path and query, as given
    websocket: bool


def parse_flv_url(url: str) -> FlvUrl:
    parts = urlsplit(url)
    if parts.scheme not in FLV_SCHEMES or not parts.hostname:
        raise ValueError(f"not an http:// or ws:// URL: {url!r}")
    path = parts.path
    app, _, stream = path[1:-4].rpartition("/") if path.endswith(".flv") else ("", "", "")
    if not app or not stream:
        raise ValueError(f"not a /{{app}}/{{stream}}.flv URL: {url!r}")
    target = path + (f"?{parts.query}" if parts.query else "")
    return FlvUrl(parts.hostname, parts.port or 80, app, stream, target, parts.scheme == "ws")


def _ws_accept(key: bytes) -> bytes:
    digest = hashlib.sha1(key + _WS_GUID).digest()  # noqa: S324 - RFC 6455
    return base64.b64encode(digest)


class FlvPlayer(PlayBase):
    """One view of one URL; the worker owns the buffer, the clock and the schedule."""

    __slots__ = (
        "body",
        "chunk_left",
        "flv",
        "flv_header",
        "framing",
        "raw",
        "status",
        "url",
        "ws_key",
        "ws_left",
    )

    def __init__(
        self,
        index: int,
        attempt: int,
        url_text: str,
        url: FlvUrl,
        buffer: bytearray,
        view: memoryview,
        options: PlayerOptions,
        on_end: Callable[[FlvPlayer], None],
    ) -> None:
        super().__init__(index, attempt, url_text, buffer, view, options, on_end)
        self.url = url
        # Parse mode only (None from the first keyframe on):
        self.raw: bytearray | None = bytearray()  # received, not yet taken by a layer
        self.flv: bytearray | None = bytearray()  # FLV bytes out of the framing
        self.flv_header = False  # the FLV file header was read
        self.status = 0  # the response's status, 0 until its head is in
        self.framing = _PLAIN
        self.body = -1  # a refusal: the length of its body (-1: reading the head)
        self.chunk_left = 0  # chunked: payload bytes left in this chunk; -1: its CRLF
        self.ws_left = 0  # WebSocket: payload bytes left in this data frame
        self.ws_key = base64.b64encode(os.urandom(16)) if url.websocket else b""

    # ------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tcp = time.monotonic()
        transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self.sock = sock
        if sock is not None and self.options.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        if self.state is not State.CONNECTING:  # closed while connecting
            transport.close()
            return
        self.state = State.COMMANDS
        url = self.url
        lines = [
            f"GET {url.target} HTTP/1.1",
            f"Host: {url.host}:{url.port}",
            "User-Agent: streamgate-loadtest",
        ]
        if url.websocket:
            lines += [
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {self.ws_key.decode('ascii')}",
                "Sec-WebSocket-Version: 13",
            ]
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.handshake = self.connected = self.play_sent = time.monotonic()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        self.nbytes += nbytes
        self.last_rx = time.monotonic()
        if self.raw is None:
            if self.options.status_scan != "off":
                self._scan_end(nbytes)
            return
        if self.options.quickack and self.sock is not None:
            # As the RTMP player: no delayed ACK holds the server back before the keyframe.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        self.raw += self.view[:nbytes]
        try:
            self._parse()
        except ValueError as exc:
            self.fail(f"protocol error: {exc}")

    def eof_received(self) -> bool:
        if self.raw is not None and self.body >= 0 and self.state < State.CLOSED:
            self._refusal()  # an answer whose body ends with the connection
        return False  # close our side too

    # ------------------------------------------------------------ parse mode

    def _parse(self) -> None:
        raw = self.raw
        assert raw is not None
        if self.status == 0 and not self._head():
            return
        if self.body >= 0:  # a refusal: its body, then done
            if len(raw) >= self.body or len(raw) >= _MAX_BODY:
                self._refusal()
            return
        if self.framing == _CHUNKED:
            self._dechunk()
        elif self.framing == _WEBSOCKET:
            self._deframe()
        else:
            assert self.flv is not None
            self.flv += raw
            raw.clear()
        if self.state < State.CLOSED:
            self._tags()

    def _head(self) -> bool:
        """The response head: False while incomplete (or when it ended the play)."""
        raw = self.raw
        assert raw is not None
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            if len(raw) > _MAX_HEAD:
                raise ValueError("no end to the response head")
            return False
        lines = bytes(raw[:end]).decode("latin-1").split("\r\n")
        del raw[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest.partition(" ")[0]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        self.status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        kind = "WS" if self.url.websocket else "HTTP"
        self.last_status = f"{kind} {self.status}"
        wanted = 101 if self.url.websocket else 200
        if self.status != wanted:
            length = headers.get("content-length", "")
            self.body = min(int(length), _MAX_BODY) if length.isdigit() else _MAX_BODY
            if self.body == 0 or len(raw) >= self.body:
                self._refusal()
                return False
            return False
        if self.url.websocket:
            accept = headers.get("sec-websocket-accept", "").encode("latin-1")
            if accept != _ws_accept(self.ws_key):
                raise ValueError("wrong Sec-WebSocket-Accept")
            self.framing = _WEBSOCKET
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.framing = _CHUNKED
        self.play_start = self.last_rx
        self.state = State.STARTED
        return True

    def _refusal(self) -> None:
        raw = self.raw
        body = bytes(raw[: max(0, self.body)]) if raw is not None else b""
        text = body.decode("utf-8", "replace").strip().splitlines()
        self.refused(f"{self.last_status}: {text[0] if text else 'no reason given'}")

    def _dechunk(self) -> None:
        raw, flv = self.raw, self.flv
        assert raw is not None and flv is not None
        pos = 0
        size = len(raw)
        while pos < size:
            left = self.chunk_left
            if left > 0:
                take = min(left, size - pos)
                flv += raw[pos : pos + take]
                pos += take
                self.chunk_left = left - take or -1
            elif left < 0:  # the CRLF after a chunk's data
                if size - pos < 2:
                    break
                if raw[pos : pos + 2] != b"\r\n":
                    raise ValueError("an HTTP chunk not followed by CRLF")
                pos += 2
                self.chunk_left = 0
            else:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    if size - pos > 64:
                        raise ValueError("an HTTP chunk size line too long")
                    break
                line = bytes(raw[pos:eol]).split(b";", 1)[0].strip()
                try:
                    length = int(line, 16)
                except ValueError:
                    raise ValueError(f"bad HTTP chunk size {line[:20]!r}") from None
                pos = eol + 2
                if length == 0:
                    self.last_status = "end of stream"
                    self.refused("the stream ended before a keyframe (chunked terminator)")
                    break
                self.chunk_left = length
        del raw[:pos]

    def _deframe(self) -> None:
        raw, flv = self.raw, self.flv
        assert raw is not None and flv is not None
        pos = 0
        size = len(raw)
        while pos < size:
            if self.ws_left:
                take = min(self.ws_left, size - pos)
                flv += raw[pos : pos + take]
                pos += take
                self.ws_left -= take
                continue
            if size - pos < 2:
                break
            first, second = raw[pos], raw[pos + 1]
            if second & 0x80:
                raise ValueError("a masked WebSocket frame from the server")
            length = second & 0x7F
            head = 2
            if length == 126:
                head = 4
                if size - pos < head:
                    break
                length = _U16.unpack_from(raw, pos + 2)[0]
            elif length == 127:
                head = 10
                if size - pos < head:
                    break
                length = _U64.unpack_from(raw, pos + 2)[0]
            opcode = first & 0x0F
            if opcode in (0x0, 0x2):  # continuation, binary: FLV, taken as it comes
                pos += head
                self.ws_left = length
                continue
            if opcode < 0x8:
                raise ValueError(f"a WebSocket frame of opcode {opcode} (FLV is binary)")
            if size - pos < head + length:
                break  # a control frame is taken whole (at most 125 bytes)
            payload = bytes(raw[pos + head : pos + head + length])
            pos += head + length
            if opcode == 0x8:
                code = _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
                self.last_status = f"WS close {code}"
                reason = payload[2:].decode("utf-8", "replace") or "no reason given"
                self.refused(f"WS close {code}: {reason}")
                break
            if opcode == 0x9 and self.transport is not None:
                self.transport.write(_client_frame(0xA, payload))
        del raw[:pos]

    def _tags(self) -> None:
        """FLV tags out of the body, until the first keyframe."""
        flv = self.flv
        assert flv is not None
        pos = 0
        if not self.flv_header:
            if len(flv) < _FLV_HEADER:
                return
            if flv[:3] != b"FLV":
                raise ValueError(f"not an FLV header: {bytes(flv[:9])!r}")
            self.flv_header = True
            pos = _FLV_HEADER
        size = len(flv)
        while size - pos >= _TAG_HEAD:
            data = _U32.unpack_from(flv, pos)[0] & 0xFFFFFF
            end = pos + _TAG_HEAD + data + 4
            if end > size:
                break
            tag_type = flv[pos] & 0x1F
            if tag_type == _VIDEO_TAG:
                body = bytes(flv[pos + _TAG_HEAD : pos + _TAG_HEAD + data])
                if classify_video(body) == VIDEO_KEYFRAME:
                    self._first_keyframe()
                    return
            pos = end
        del flv[:pos]

    def _first_keyframe(self) -> None:
        self.keyframe = self.last_rx
        self.state = State.COUNTING
        self.raw = self.flv = None  # from here on: count bytes only
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.options.rcvlowat > 0 and self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, self.options.rcvlowat)

    # ------------------------------------------------------------ counting mode

    def _scan_end(self, nbytes: int) -> None:
        """How the server ends the stream, at the end of a read (see the module docstring)."""
        buf = self.buffer
        if self.framing == _CHUNKED:
            if buf.endswith(_CHUNKED_END, 0, nbytes):
                self.last_status = "end of stream"
            return
        if self.framing != _WEBSOCKET or nbytes < 4:
            return
        low = max(0, nbytes - 127)
        at = buf.rfind(_WS_CLOSE, low, nbytes - 3)
        while at >= 0:
            length = buf[at + 1]
            if length == nbytes - at - 2 and length >= 2:
                code = _U16.unpack_from(buf, at + 2)[0]
                if 1000 <= code < 5000:
                    self.last_status = f"WS close {code}"
                    return
            at = buf.rfind(_WS_CLOSE, low, at)

    # ------------------------------------------------------------ ending

    def _goodbye(self) -> None:
        if self.framing == _WEBSOCKET and self.transport is not None:
            self.transport.write(_client_frame(0x8, _U16.pack(1000)))

    def _drop_parser(self) -> None:
        self.raw = self.flv = None


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A whole, masked client frame (control frames only: payload <= 125 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked
