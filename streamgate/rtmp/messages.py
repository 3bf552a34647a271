"""RTMP message type ids, user control events and the status codes we speak."""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "CSID_AUDIO",
    "CSID_COMMAND",
    "CSID_CONTROL",
    "CSID_DATA",
    "CSID_RELAY_AUDIO",
    "CSID_RELAY_DATA",
    "CSID_RELAY_VIDEO",
    "CSID_VIDEO",
    "MEDIA_TYPES",
    "MsgType",
    "Status",
    "UserControl",
    "user_control",
]


class MsgType:
    """Message type ids (RTMP spec section 5.4 and 7.1)."""

    SET_CHUNK_SIZE: Final = 1
    ABORT: Final = 2
    ACKNOWLEDGEMENT: Final = 3
    USER_CONTROL: Final = 4
    WINDOW_ACK_SIZE: Final = 5
    SET_PEER_BANDWIDTH: Final = 6
    AUDIO: Final = 8
    VIDEO: Final = 9
    DATA_AMF3: Final = 15
    SHARED_OBJECT_AMF3: Final = 16
    COMMAND_AMF3: Final = 17
    DATA_AMF0: Final = 18
    SHARED_OBJECT_AMF0: Final = 19
    COMMAND_AMF0: Final = 20
    AGGREGATE: Final = 22


MEDIA_TYPES: Final = frozenset({MsgType.AUDIO, MsgType.VIDEO})


class UserControl:
    """User control event types (spec section 7.1.7)."""

    STREAM_BEGIN: Final = 0
    STREAM_EOF: Final = 1
    STREAM_DRY: Final = 2
    SET_BUFFER_LENGTH: Final = 3
    STREAM_IS_RECORDED: Final = 4
    PING_REQUEST: Final = 6
    PING_RESPONSE: Final = 7


class Status:
    """The NetConnection/NetStream status codes streamgate sends."""

    CONNECT_SUCCESS: Final = "NetConnection.Connect.Success"
    CONNECT_REJECTED: Final = "NetConnection.Connect.Rejected"
    CONNECT_CLOSED: Final = "NetConnection.Connect.Closed"
    PLAY_RESET: Final = "NetStream.Play.Reset"
    PLAY_START: Final = "NetStream.Play.Start"
    PLAY_STOP: Final = "NetStream.Play.Stop"
    PLAY_FAILED: Final = "NetStream.Play.Failed"
    PLAY_STREAM_NOT_FOUND: Final = "NetStream.Play.StreamNotFound"
    PLAY_UNPUBLISH_NOTIFY: Final = "NetStream.Play.UnpublishNotify"
    PLAY_PUBLISH_NOTIFY: Final = "NetStream.Play.PublishNotify"
    PUBLISH_START: Final = "NetStream.Publish.Start"
    PUBLISH_BAD_NAME: Final = "NetStream.Publish.BadName"
    PUBLISH_DENIED: Final = "NetStream.Publish.Denied"
    PUBLISH_IDLE: Final = "NetStream.Publish.Idle"
    UNPUBLISH_SUCCESS: Final = "NetStream.Unpublish.Success"
    DELETE_STREAM_SUCCESS: Final = "NetStream.DeleteStream.Suceeded"


# The default chunk stream ids: 2 is fixed by the spec for protocol control;
# the others follow common practice (FFmpeg, nginx-rtmp).
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_DATA: Final = 5
CSID_AUDIO: Final = 6
CSID_VIDEO: Final = 7

# The chunk streams the relay writes to a player: shared encodings with
# type-0 headers, put on the player's socket beside what its connection core
# writes. A connection core never encodes on them (its header compression
# would be decoded against the relay's last header, and the other way round),
# and the relay never writes on the core's (CSID_CONTROL, CSID_COMMAND,
# CSID_DATA). Media keeps the usual ids: no connection core sends media to
# a player.
CSID_RELAY_DATA: Final = 4
CSID_RELAY_AUDIO: Final = CSID_AUDIO
CSID_RELAY_VIDEO: Final = CSID_VIDEO

_UC = struct.Struct(">HI")
_UC_BUFFER = struct.Struct(">HII")


def user_control(event: int, value: int, extra: int | None = None) -> bytes:
    """A user control message body."""
    if extra is None:
        return _UC.pack(event, value & 0xFFFFFFFF)
    return _UC_BUFFER.pack(event, value & 0xFFFFFFFF, extra & 0xFFFFFFFF)
