"""The WebSocket parts WebSocket-FLV needs (RFC 6455), sans-IO.

The server side only: checking a client's opening handshake and answering
it, the header of a server frame (unmasked; built once per flush of a
stream for all its WebSocket viewers, ``relay/encoding.py``), a close frame,
and a bounded reader for what a viewer sends (close, ping, pong; any data it
sends is read and dropped). Anything the RFC forbids a client to send ends
the connection with the close code it calls for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "FrameReader",
    "WebSocketError",
    "accept_key",
    "close_frame",
    "frame_head",
    "handshake_problem",
]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

_MAX_REASON = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


class WebSocketError(Exception):
    """A client broke the protocol: close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def handshake_problem(header: Callable[[str], str | None]) -> str | None:
    """Why an opening handshake (``header(name)`` gives its headers) is not one we
    accept, or ``None``. The Upgrade request itself was already recognised."""
    connection = (header("connection") or "").lower()
    if "upgrade" not in (token.strip() for token in connection.split(",")):
        return "Connection must include upgrade"
    if (header("sec-websocket-version") or "").strip() != "13":
        return "Sec-WebSocket-Version must be 13"
    key = (header("sec-websocket-key") or "").strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return "Sec-WebSocket-Key is not base64"
    if len(raw) != 16:
        return "Sec-WebSocket-Key must be 16 bytes, base64-encoded"
    return None


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()  # noqa: S324 - RFC 6455
    return base64.b64encode(digest).decode("ascii")


def frame_head(size: int, opcode: int = OP_BINARY) -> bytes:
    """The header of one whole (FIN), unmasked server frame of ``size`` payload bytes."""
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to what fits (whole UTF-8 characters)."""
    data = reason.encode("utf-8")
    if len(data) > _MAX_REASON:
        data = data[:_MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
    payload = struct.pack("!H", code) + data
    return frame_head(len(payload), OP_CLOSE) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    opcode: int
    payload: bytes


class FrameReader:
    """Frames from a client, from bytes as they arrive; holds at most one frame.

    Data frames (a viewer has nothing to say) are read and dropped, each at
    most ``max_payload`` bytes; control frames are returned whole.
    """

    def __init__(self, max_payload: int = 65536) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The control frames ``data`` completes; raises :class:`WebSocketError`."""
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        while True:
            frame_end = self._parse_one(frames)
            if frame_end == 0:
                return frames
            del buf[:frame_end]

    def _parse_one(self, frames: list[Frame]) -> int:
        """Parse one frame at the buffer's start: its length in bytes, 0 if incomplete."""
        buf = self._buffer
        if len(buf) < 2:
            return 0
        first, second = buf[0], buf[1]
        if first & 0x70:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        opcode = first & 0x0F
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if not second & 0x80:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
        size = second & 0x7F
        pos = 2
        if size == 126:
            if len(buf) < 4:
                return 0
            size = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif size == 127:
            if len(buf) < 10:
                return 0
            size = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        control = opcode >= OP_CLOSE
        if control and (size > 125 or not first & 0x80):
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "control frames must be whole and small")
        if size > self.max_payload:
            raise WebSocketError(CLOSE_TOO_BIG, f"frame of {size} bytes")
        end = pos + 4 + size
        if len(buf) < end:
            return 0
        if control:
            mask = bytes(buf[pos : pos + 4])
            body = bytes(buf[pos + 4 : end])
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(body))
            frames.append(Frame(opcode, payload))
        return end
