"""How a player's bytes reach it: the interface a server hands the relay.

The relay never touches sockets or transports. For each player the server
supplies a :class:`Delivery`: its ``write`` (normally the transport's own
bound method, so the fan-out's per-player work is one call), and, when the
player sits on a plain TCP socket, the descriptor large flushes may be
handed to by ``sendfile`` (``relay/shared.py``) with the check that says
when that keeps the wire order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Delivery", "WriteOnly"]


class Delivery(Protocol):
    """What a stream needs to send to one player."""

    write: Callable[[bytes], None]
    sendfile_fd: int  # -1: writes only

    def sendfile_ready(self) -> bool:
        """True when the socket may be written directly: nothing is queued
        ahead in the player's own buffers (the wire order holds) and it is
        not closing (the descriptor is still the player's)."""


class WriteOnly:
    """A delivery by writes alone (in-process players, TLS, tests)."""

    __slots__ = ("write",)

    sendfile_fd = -1

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write

    def sendfile_ready(self) -> bool:
        return False
