"""Events the RTMP connection core hands to the layer above.

All are frozen, slotted and named in the past tense. ``stream_id`` is the
RTMP message stream id on this connection (what ``createStream`` returned).

On the client side a status arrives twice: as the raw :class:`StatusReceived`
and, when it changes the stream's state, right after it as what it means
(:class:`PlayStarted`, :class:`PlayRefused`, :class:`PlayEnded`,
:class:`PublishStarted`, :class:`PublishRefused`), classified once in
:mod:`streamgate.rtmp.netstream`. Act on the meaning; the raw status is for
display and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CommandIgnored",
    "ConnectRejected",
    "ConnectRequested",
    "Connected",
    "DataReceived",
    "Event",
    "MediaReceived",
    "PlayEnded",
    "PlayRefused",
    "PlayRequested",
    "PlayStarted",
    "PublishRefused",
    "PublishRequested",
    "PublishStarted",
    "ReceiveToggled",
    "StatusReceived",
    "StreamBegan",
    "StreamClosed",
    "StreamCreateFailed",
    "StreamCreated",
    "StreamEnded",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every connection event."""


# ------------------------------------------------------------- server side


@dataclass(frozen=True, slots=True)
class ConnectRequested(Event):
    """The client sent ``connect``; answer with accept_connect or reject_connect."""

    app: str
    query: str
    tc_url: str
    properties: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class PublishRequested(Event):
    stream_id: int
    name: str
    query: str
    publish_type: str


@dataclass(frozen=True, slots=True)
class PlayRequested(Event):
    stream_id: int
    name: str
    query: str
    start: float
    duration: float
    reset: bool


@dataclass(frozen=True, slots=True)
class StreamClosed(Event):
    """deleteStream / closeStream: the client is done with this stream id."""

    stream_id: int
    command: str


@dataclass(frozen=True, slots=True)
class ReceiveToggled(Event):
    """receiveAudio / receiveVideo."""

    stream_id: int
    kind: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class CommandIgnored(Event):
    """A command we understood but do not act on (play2, pause, unknown names)."""

    stream_id: int
    name: str


# ------------------------------------------------------------- both sides


@dataclass(frozen=True, slots=True)
class MediaReceived(Event):
    """An audio (8) or video (9) message."""

    stream_id: int
    type_id: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """A data message (onMetaData, @setDataFrame, |RtmpSampleAccess, ...).

    ``payload`` is the AMF0 body as the peer sent it: relay it, never
    re-encode ``values`` (AMF references make re-encoding exponential).
    """

    stream_id: int
    timestamp: int
    values: tuple[Any, ...]
    payload: bytes = field(default=b"", compare=False, repr=False)  # the raw form of values


# ------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True)
class Connected(Event):
    properties: dict[str, Any] = field(hash=False)
    info: dict[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class ConnectRejected(Event):
    code: str
    description: str
    redirect: str | None


@dataclass(frozen=True, slots=True)
class StreamCreated(Event):
    transaction_id: float
    stream_id: int


@dataclass(frozen=True, slots=True)
class StatusReceived(Event):
    stream_id: int
    level: str
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class StreamBegan(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEnded(Event):
    """User control StreamEOF / StreamDry from the server."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamCreateFailed(Event):
    """createStream was answered with ``_error`` (too many streams, ...)."""

    transaction_id: float
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PlayStarted(Event):
    """NetStream.Play.Start for a play we requested."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PlayRefused(Event):
    """The play is refused (StreamNotFound, Failed, BadName, Denied, an error status)."""

    stream_id: int
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PlayEnded(Event):
    """The played stream is over (UnpublishNotify, Stop, Complete, StreamEOF)."""

    stream_id: int
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class PublishStarted(Event):
    """NetStream.Publish.Start for a publish we requested."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishRefused(Event):
    """The publish is refused (BadName, Denied, an error status)."""

    stream_id: int
    code: str
    description: str
