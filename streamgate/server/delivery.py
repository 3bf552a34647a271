"""A player's delivery over an asyncio transport (see ``relay/delivery.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["TransportDelivery"]


class TransportDelivery:
    """Writes go to the transport's own ``write``; a plain TCP socket (not
    TLS) also takes large flushes by sendfile while the transport holds
    nothing unsent and is not closing."""

    __slots__ = ("_transport", "sendfile_fd", "write")

    def __init__(self, transport: asyncio.Transport | Any) -> None:
        self._transport = transport
        self.write = transport.write
        sock = transport.get_extra_info("socket")
        tls = transport.get_extra_info("sslcontext") is not None
        self.sendfile_fd = sock.fileno() if sock is not None and not tls else -1

    def sendfile_ready(self) -> bool:
        transport = self._transport
        return not transport.get_write_buffer_size() and not transport.is_closing()
