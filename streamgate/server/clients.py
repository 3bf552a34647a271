"""A client as the server's registry and the API see it, whatever its protocol.

``ServerContext.sessions`` holds every admitted connection; the API lists
them, kicks them and shows what they play. An RTMP session is one kind of
client; a viewer over another protocol is registered the same way by
implementing this interface.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Mapping
from typing import Protocol

from streamgate.relay.stream import Player, Stream

__all__ = ["Client", "ClientIds", "EndLine", "next_client_id", "reset_at_accept"]

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def reset_at_accept(
    logger: logging.Logger, transport: asyncio.BaseTransport, ip: str, reason: str
) -> None:
    """An address refused at accept (a ban, a cap): one aggregated line, then a reset
    before any protocol byte, so the accept loop moves on at once."""
    logger.warning(
        "connection from %s refused at accept: %s",
        ip,
        reason,
        extra={"reason": f"refused at accept: {reason}"},
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()  # type: ignore[attr-defined]


class EndLine:
    """Why a connection ends, for its one end line: what to say, the reason lines
    are grouped by (no peer-chosen names in it) and whether it was a refusal or
    an error. The first cause wins."""

    __slots__ = ("detail", "failed", "reason")

    def __init__(self) -> None:
        self.detail: str | None = None
        self.reason = ""
        self.failed = False

    def note(self, detail: str, reason: str | None = None, *, failed: bool = False) -> None:
        if self.detail is None:
            self.detail = detail
            self.reason = detail if reason is None else reason
            self.failed = failed

    def write(
        self,
        logger: logging.Logger,
        client_id: int,
        peer: str,
        role: str,
        seconds: float,
        started: bool,
    ) -> None:
        """The line. A connection that never played or published is what a flood is
        made of: its line carries its reason, so the flood filter aggregates such
        lines per reason whatever their level (refusals and errors are warnings). A
        real client's end always gets its own line."""
        args = (client_id, peer, role, seconds, self.detail or "closed")
        level = logging.WARNING if self.failed else logging.INFO
        template = "conn %d %s: disconnected (%s, %.1f s): %s"
        if started and not self.failed:
            logger.log(level, template, *args)
        else:
            logger.log(level, template, *args, extra={"reason": self.reason or "closed"})


class ClientIds:
    """Client ids, unique in the process whatever the protocol; a worker of
    several numbers its clients apart from the others' (``base``)."""

    base = 0
    issued = 0  # connections accepted so far


def next_client_id() -> int:
    ClientIds.issued += 1
    return ClientIds.base + ClientIds.issued


class Client(Protocol):
    """One admitted connection."""

    id: int
    peer: str  # "host:port"
    ip: str
    connected_at: float  # loop time of its TCP handshake
    closed: bool
    paused: bool  # its socket asked us to stop writing

    @property
    def protocol(self) -> str:
        """"rtmp", "flv" or "ws-flv"."""

    @property
    def role(self) -> str:
        """"player", "publisher" or "unknown" (not yet either)."""

    @property
    def app(self) -> str:
        """The application it connected to ("" before it said)."""

    @property
    def publishing(self) -> Stream | None: ...

    @property
    def playing(self) -> Mapping[int, tuple[Stream, Player]]: ...

    @property
    def waiting(self) -> Mapping[int, tuple[str, str, object]]:
        """Plays waiting for their stream: (app, name, wait handle) by stream id."""

    def close(self) -> None:
        """Say goodbye (what the protocol says) and close."""

    def abort(self) -> None:
        """Close at once, without a goodbye."""
