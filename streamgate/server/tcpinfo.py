"""How long an accepted connection waited in the kernel before we saw it.

Under a connection flood the accept queue holds established connections for
a while before the gateway accepts them. A deadline counted from the accept
would give each of them that wait on top of ``handshake_timeout``; counted
from the TCP handshake, one that already waited too long is closed as soon
as it is accepted, which is also the cheapest way to drain the queue.

Linux's TCP_INFO says how long ago the socket last received data
(``tcpi_last_data_recv``, milliseconds): for a connection that has sent
nothing yet it is the time since the handshake completed. For one that did
send something it is the time since then, an underestimate of the wait,
which only makes the deadline more lenient. Elsewhere, 0.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

__all__ = ["queued_for"]

_TCP_INFO = getattr(socket, "TCP_INFO", None)
# struct tcp_info: 8 one-byte fields, then u32s; tcpi_last_data_recv is the 12th u32.
_LAST_DATA_RECV = struct.Struct("=I")
_OFFSET = 8 + 11 * 4
_SIZE = _OFFSET + 4


def queued_for(sock: Any) -> float:
    """Seconds since ``sock`` (an accepted TCP socket) last received data; 0 if unknown."""
    if _TCP_INFO is None or sock is None:
        return 0.0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _SIZE)
    except (OSError, ValueError):
        return 0.0
    if len(info) < _SIZE:
        return 0.0
    return float(_LAST_DATA_RECV.unpack_from(info, _OFFSET)[0]) / 1000.0
