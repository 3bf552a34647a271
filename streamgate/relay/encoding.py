"""How a group of players' bytes are made: RTMP chunks, or FLV tags for HTTP viewers.

A stream encodes each message once per *group* of players that decode the
same bytes (``relay/stream.py``). An :class:`Encoding` is what a group's
players have in common on the wire:

* :class:`RtmpChunks`: RTMP players of one message stream id and chunk size
  (type-0 headers on the relay's own chunk streams, absolute timestamps);
* :class:`FlvTags`: FLV viewers (HTTP-FLV, WebSocket-FLV) of one *framing*
  (HTTP/1.1 chunks, WebSocket binary frames, or none for HTTP/1.0) and one
  *timeline*: FLV tags carry absolute timestamps, so viewers see theirs
  start at 0 by sharing a base, the first timestamp they were sent. Viewers
  who start at the same keyframe share a timeline; the stream bounds how
  many it keeps (see ``Stream.add_player``).

A framing wraps a whole flush once for the group (one chunk or one frame per
flush, never per viewer or per tag).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.messages import CSID_RELAY_AUDIO, CSID_RELAY_DATA, CSID_RELAY_VIDEO, MsgType

__all__ = [
    "FLV_AUDIO",
    "FLV_VIDEO",
    "Encoding",
    "FlvTags",
    "Framing",
    "RtmpChunks",
    "flv_header",
]

_CSID = {
    int(MsgType.AUDIO): CSID_RELAY_AUDIO,
    int(MsgType.VIDEO): CSID_RELAY_VIDEO,
    int(MsgType.DATA_AMF0): CSID_RELAY_DATA,
}

# FLV file header flags (the audio and video "present" bits).
FLV_AUDIO = 0x04
FLV_VIDEO = 0x01


class Encoding(Protocol):
    """What a group's players share on the wire (see the module docstring)."""

    @property
    def key(self) -> Hashable:
        """Groups are keyed by this and the kinds of media received."""

    @property
    def family(self) -> Hashable:
        """The key without the timeline."""

    @property
    def protocol(self) -> str:
        """What its players are counted as: "rtmp", "flv" or "ws-flv"."""

    @property
    def timeline(self) -> bool:
        """FLV: the stream picks a base timestamp (``at``)."""

    @property
    def framed(self) -> bool:
        """``frame`` wraps each flush."""

    def encode(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        """One audio, video or data message."""

    def preamble(self, tracks: Callable[[], tuple[bool, bool]]) -> bytes:
        """What a new player gets before anything else (the FLV file header, from
        the stream's ``tracks()``: (audio, video), asked only when needed)."""

    def frame(self, parts: Sequence[bytes]) -> bytes:
        """``parts`` joined and wrapped for the wire (only when ``framed``)."""

    def at(self, base: int) -> Encoding:
        """The same encoding on the timeline that starts at ``base``."""


class RtmpChunks:
    """RTMP players of one message stream id and chunk size."""

    __slots__ = ("chunk_size", "family", "key", "stream_id")

    protocol = "rtmp"
    timeline = False
    framed = False

    def __init__(self, stream_id: int, chunk_size: int) -> None:
        self.stream_id = stream_id
        self.chunk_size = chunk_size
        self.key = self.family = ("rtmp", stream_id, chunk_size)

    def encode(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        return encode_message(
            _CSID[type_id], timestamp, type_id, self.stream_id, payload, self.chunk_size
        )

    def preamble(self, tracks: Callable[[], tuple[bool, bool]]) -> bytes:
        return b""

    def frame(self, parts: Sequence[bytes]) -> bytes:
        return b"".join(parts)

    def at(self, base: int) -> RtmpChunks:
        return self


@dataclass(frozen=True, slots=True)
class Framing:
    """How a flush of FLV bytes is wrapped for one transport."""

    name: str  # "chunked", "websocket" or "plain"
    protocol: str  # what its viewers are counted as: "flv" or "ws-flv"
    head: Callable[[int], bytes] | None  # the size of the flush -> what goes before it
    tail: bytes = b""


def flv_header(audio: bool, video: bool) -> bytes:
    """The FLV file header and PreviousTagSize0."""
    flags = (FLV_AUDIO if audio else 0) | (FLV_VIDEO if video else 0)
    return b"FLV\x01" + bytes((flags,)) + b"\x00\x00\x00\x09\x00\x00\x00\x00"


class FlvTags:
    """FLV viewers of one framing and one timeline (see the module docstring)."""

    __slots__ = ("base", "family", "framed", "framing", "key", "protocol")

    timeline = True

    def __init__(self, framing: Framing, base: int = 0) -> None:
        self.framing = framing
        self.base = base
        self.framed = framing.head is not None
        self.protocol = framing.protocol
        self.family = ("flv", framing.name)
        self.key = ("flv", framing.name, base)

    def encode(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        ts = (timestamp - self.base) & 0xFFFFFFFF
        if ts & 0x80000000:  # just before the base (audio interleaved with a keyframe)
            ts = 0
        size = len(payload)
        # TagType, DataSize (24), Timestamp (24), TimestampExtended (8), StreamID (24: 0).
        head = ((type_id << 56) | (size << 32) | ((ts & 0xFFFFFF) << 8) | (ts >> 24)).to_bytes(
            8, "big"
        )
        return b"".join((head, b"\x00\x00\x00", payload, (size + 11).to_bytes(4, "big")))

    def preamble(self, tracks: Callable[[], tuple[bool, bool]]) -> bytes:
        return flv_header(*tracks())

    def frame(self, parts: Sequence[bytes]) -> bytes:
        head = self.framing.head
        if head is None:
            return b"".join(parts)
        size = 0
        for part in parts:
            size += len(part)
        return b"".join((head(size), *parts, self.framing.tail))

    def at(self, base: int) -> FlvTags:
        return FlvTags(self.framing, base & 0xFFFFFFFF)
