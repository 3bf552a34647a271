"""The RTMP chunk stream: messages split into chunks and interleaved.

Invariants of :class:`ChunkDecoder`:

* The receive buffer is a ``bytearray`` with a read offset; a chunk is
  consumed only once all of it is there, so feeding the same bytes whole,
  byte by byte or in pieces yields the same messages.
* Memory is bounded by the limits, never by what the peer announces: the
  chunk size only says how to split (and may not go below
  ``min_chunk_size``), a message may not exceed ``max_message_size``,
  unfinished messages together may not exceed ``max_partial_bytes``, and at
  most ``max_chunk_streams`` chunk streams may carry state at once.
* Set Chunk Size and Abort are applied here, the moment they complete,
  because the very next chunk depends on them; they are still returned as
  messages so the layers above can see them.

:func:`encode_message` writes a message with a type-0 header and type-3
continuations only. That output depends on nothing but its arguments, so
one encoding of a media message can be shared by every player.
:class:`ChunkEncoder` compresses headers (types 1-3) for a connection's
own control and command traffic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from streamgate.errors import RemoteProtocolError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkDecoder",
    "ChunkEncoder",
    "ChunkLimits",
    "Message",
    "encode_message",
]

DEFAULT_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0x7FFFFFFF
EXTENDED: Final = 0xFFFFFF

MSG_SET_CHUNK_SIZE: Final = 1
MSG_ABORT: Final = 2

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


@dataclass(slots=True)  # not frozen: its __init__ runs once per message received
class Message:
    """One complete RTMP message."""

    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes
    csid: int = 0


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """What one peer may make us hold.

    ``max_partial_bytes`` bounds the unfinished messages of all chunk streams
    together (otherwise 64 streams x one almost-complete 8 MiB message each
    would hold 512 MiB); ``min_chunk_size`` keeps the per-chunk cost sane
    (SRS refuses below 128 too).
    """

    max_message_size: int = 8 << 20
    max_chunk_streams: int = 64
    max_partial_bytes: int = 8 << 20
    min_chunk_size: int = 128


class _ChunkStream:
    """Header state of one chunk stream id, for header compression."""

    __slots__ = (
        "delta",
        "extended",
        "length",
        "parts",
        "received",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = -1  # -1: no header yet
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.received = 0
        self.parts = bytearray()  # the unfinished message, grown as chunks arrive


class ChunkDecoder:
    """Bytes in, complete :class:`Message` objects out."""

    def __init__(self, limits: ChunkLimits | None = None) -> None:
        self.limits = limits or ChunkLimits()
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _ChunkStream] = {}
        self._partial = 0  # bytes held in unfinished messages, all chunk streams

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (a partial chunk)."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Feed bytes; returns every message they complete."""
        buf = self._buf
        if self._pos and self._pos == len(buf):
            buf.clear()
            self._pos = 0
        buf += data
        out: list[Message] = []
        while self._read_chunk(out):
            pass
        # Compact only when the consumed prefix is large: this keeps the
        # amortised cost linear without rebuilding the buffer per chunk.
        if self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[: self._pos]
            self._pos = 0
        return out

    def _read_chunk(self, out: list[Message]) -> bool:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 1:
            return False
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        hlen = 1
        if csid == 0:
            if avail < 2:
                return False
            csid = 64 + buf[pos + 1]
            hlen = 2
        elif csid == 1:
            if avail < 3:
                return False
            csid = 64 + buf[pos + 1] + (buf[pos + 2] << 8)
            hlen = 3

        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0 and fmt != 1:
                # Types 2 and 3 need a prior header on this chunk stream.
                raise RemoteProtocolError(
                    f"chunk stream {csid}: header type {fmt} before any full header"
                )
            if len(self._streams) >= self.limits.max_chunk_streams:
                raise RemoteProtocolError(
                    f"more than {self.limits.max_chunk_streams} chunk streams in use"
                )
            # A type-1 header on a new chunk stream is accepted, as FFmpeg does:
            # stream id 0 and the delta as timestamp. Not stored until the
            # chunk is complete, so a partial read leaves no trace.
            cs = _ChunkStream()

        mlen = (11, 7, 3, 0)[fmt]
        hpos = pos + hlen
        if avail < hlen + mlen:
            return False
        new_message = cs.received == 0
        if fmt == 3:
            extended = cs.extended
            field = 0
        else:
            field = (buf[hpos] << 16) | (buf[hpos + 1] << 8) | buf[hpos + 2]
            extended = field == EXTENDED
        hend = hpos + mlen
        if extended:
            if avail < hlen + mlen + 4:
                return False
            ext = _U32.unpack_from(buf, hend)[0]
            if fmt == 3 and not new_message and ext != cs.delta and ext != cs.timestamp:
                # Some encoders omit the extended timestamp on continuation
                # chunks; the 4 bytes are then payload.
                pass
            else:
                field = ext
                hend += 4

        if fmt == 0 or fmt == 1:
            length = (buf[hpos + 3] << 16) | (buf[hpos + 4] << 8) | buf[hpos + 5]
            type_id = buf[hpos + 6]
            if not new_message:
                raise RemoteProtocolError(
                    f"chunk stream {csid}: new message header inside an unfinished message"
                )
            if length > self.limits.max_message_size:
                raise RemoteProtocolError(
                    f"message of {length} bytes exceeds the limit of {self.limits.max_message_size}"
                )
        else:
            length = cs.length
            type_id = cs.type_id
            if fmt == 2 and not new_message:
                raise RemoteProtocolError(
                    f"chunk stream {csid}: new message header inside an unfinished message"
                )

        remaining = length - cs.received if not new_message else length
        take = min(remaining, self.chunk_size)
        if len(buf) - hend < take:
            return False

        # The whole chunk is here: commit the header state.
        if new_message:
            if fmt == 0:
                cs.stream_id = _U32LE.unpack_from(buf, hpos + 7)[0]
                cs.timestamp = field
                cs.delta = field
            elif fmt == 3:
                cs.timestamp = (cs.timestamp + cs.delta) & 0xFFFFFFFF
            else:
                cs.delta = field
                cs.timestamp = (cs.timestamp + field) & 0xFFFFFFFF
            cs.extended = extended
            cs.length = length
            cs.type_id = type_id
        if csid not in self._streams:
            self._streams[csid] = cs
        end = hend + take
        self._pos = end
        if cs.received + take < length:
            self._partial += take
            if self._partial > self.limits.max_partial_bytes:
                raise RemoteProtocolError(
                    f"more than {self.limits.max_partial_bytes} bytes in unfinished messages"
                )
            cs.parts += buf[hend:end]
            cs.received += take
            return True
        if cs.parts:
            cs.parts += buf[hend:end]
            payload = bytes(cs.parts)
            self._partial -= cs.received
            cs.parts = bytearray()
        else:
            payload = bytes(buf[hend:end])
        cs.received = 0
        message = Message(cs.type_id, cs.stream_id, cs.timestamp, payload, csid)
        if message.type_id == MSG_SET_CHUNK_SIZE and message.stream_id == 0:
            self._apply_chunk_size(payload)
        elif message.type_id == MSG_ABORT and message.stream_id == 0:
            self._apply_abort(payload)
        out.append(message)
        return True

    def _apply_chunk_size(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise RemoteProtocolError("Set Chunk Size message shorter than 4 bytes")
        size = _U32.unpack_from(payload)[0]
        if size & 0x80000000 or size < self.limits.min_chunk_size:
            raise RemoteProtocolError(
                f"invalid chunk size {size} (at least {self.limits.min_chunk_size})"
            )
        # A chunk size only says how payload is split; memory stays bounded
        # by max_message_size whatever the peer announces (2^31-1 included).
        self.chunk_size = size

    def _apply_abort(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise RemoteProtocolError("Abort message shorter than 4 bytes")
        cs = self._streams.get(_U32.unpack_from(payload)[0])
        if cs is not None and cs.received:
            self._partial -= cs.received
            cs.parts = bytearray()
            cs.received = 0


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid < 64:
        return bytes([(fmt << 6) | csid])
    if 64 <= csid < 320:
        return bytes([fmt << 6, csid - 64])
    if 320 <= csid < 65600:
        rest = csid - 64
        return bytes([(fmt << 6) | 1, rest & 0xFF, rest >> 8])
    raise ValueError(f"chunk stream id {csid} out of range")


# Type-0 basic headers of the one-byte chunk stream ids, ready made.
_BASIC0 = tuple(bytes([csid]) if csid >= 2 else b"" for csid in range(64))


def encode_message(
    csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int
) -> bytes:
    """Encode one message with a type-0 header and type-3 continuations.

    On every relayed message's path: the header is built in one piece and the
    payload copied once.
    """
    timestamp &= 0xFFFFFFFF
    length = len(payload)
    if timestamp < EXTENDED:
        fields = ((timestamp << 32) | (length << 8) | type_id).to_bytes(7, "big")
        ext = b""
    else:
        fields = ((EXTENDED << 32) | (length << 8) | type_id).to_bytes(7, "big")
        ext = _U32.pack(timestamp)
    basic = _BASIC0[csid] if 2 <= csid < 64 else _basic_header(0, csid)
    header = basic + fields + stream_id.to_bytes(4, "little") + ext
    if length <= chunk_size:
        return header + payload
    continuation = _basic_header(3, csid) + ext
    parts = [header, payload[:chunk_size]]
    for offset in range(chunk_size, length, chunk_size):
        parts.append(continuation)
        parts.append(payload[offset : offset + chunk_size])
    return b"".join(parts)


class ChunkEncoder:
    """Encodes a connection's own messages, compressing headers per chunk stream."""

    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        # csid -> (timestamp, delta, length, type_id, stream_id)
        self._last: dict[int, tuple[int, int, int, int, int]] = {}

    def encode(
        self, csid: int, timestamp: int, type_id: int, stream_id: int, payload: bytes
    ) -> bytes:
        timestamp &= 0xFFFFFFFF
        length = len(payload)
        last = self._last.get(csid)
        if last is None or last[4] != stream_id or timestamp < last[0]:
            data = encode_message(csid, timestamp, type_id, stream_id, payload, self.chunk_size)
            # Decoders disagree on the delta a type-3 header implies after a
            # type-0 one, so the delta is left unknown and never reused.
            self._last[csid] = (timestamp, -1, length, type_id, stream_id)
            return data
        delta = timestamp - last[0]
        if last[2] != length or last[3] != type_id:
            fmt, fields = 1, (length.to_bytes(3, "big") + bytes([type_id]))
        elif delta != last[1]:
            fmt, fields = 2, b""
        else:
            fmt, fields = 3, b""
        extended = delta >= EXTENDED
        header = bytearray(_basic_header(fmt, csid))
        if fmt != 3:
            header += (EXTENDED if extended else delta).to_bytes(3, "big")
            header += fields
        ext = _U32.pack(delta) if extended else b""
        header += ext
        self._last[csid] = (timestamp, delta, length, type_id, stream_id)
        chunk_size = self.chunk_size
        if length <= chunk_size:
            return bytes(header) + payload
        continuation = _basic_header(3, csid) + ext
        parts = [bytes(header), payload[:chunk_size]]
        for offset in range(chunk_size, length, chunk_size):
            parts.append(continuation)
            parts.append(payload[offset : offset + chunk_size])
        return b"".join(parts)
