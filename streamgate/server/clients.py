"""A client as the server's registry and the API see it, whatever its protocol.

``ServerContext.sessions`` holds every admitted connection; the API lists
them, kicks them and shows what they play. An RTMP session is one kind of
client; a viewer over another protocol is registered the same way by
implementing this interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from streamgate.relay.stream import Player, Stream

__all__ = ["Client", "ClientIds", "next_client_id"]


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
