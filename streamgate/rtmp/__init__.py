"""The sans-IO RTMP protocol core.

Layers, bottom up: :mod:`~streamgate.rtmp.handshake`, :mod:`~streamgate.rtmp.chunk`,
:mod:`~streamgate.rtmp.connection` (NetConnection/NetStream commands), with
:mod:`~streamgate.rtmp.amf0` for command bodies, :mod:`~streamgate.rtmp.flv` for
FLV tag classification and :mod:`~streamgate.rtmp.codecs` for codec configuration.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from streamgate.rtmp.chunk import ChunkDecoder, ChunkEncoder, ChunkLimits, Message, encode_message
from streamgate.rtmp.connection import (
    ClientConnection,
    ConnectionLimits,
    ConnState,
    ServerConnection,
)
from streamgate.rtmp.messages import MsgType, Status

__all__ = [
    "ChunkDecoder",
    "ChunkEncoder",
    "ChunkLimits",
    "ClientConnection",
    "ConnState",
    "ConnectionLimits",
    "Message",
    "MsgType",
    "ServerConnection",
    "Status",
    "encode_message",
]
