"""Binding a ``listen`` setting: every address it names, or one clear error.

Shared by the RTMP listener and the HTTP API. A bind that fails (the port is
taken, a low port without permission, an address this host does not have)
is a configuration problem: it is reported as a :class:`ConfigError` that
names the setting, the address and the reason, and whatever was already
bound is closed again.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

from streamgate.config import listen_addresses
from streamgate.errors import ConfigError

__all__ = ["bind_listen", "bound_addresses", "cannot_listen"]

_REASONS = {
    errno.EADDRINUSE: "the address is already in use (is another server running?)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "this host has no such address",
}


def cannot_listen(setting: str, host: str, port: int, exc: OSError) -> ConfigError:
    """The one-line error for a failed bind of ``setting``'s ``host:port``."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ConfigError(f"{setting} {shown}: cannot listen: {reason}")


def bound_addresses(servers: list[asyncio.Server]) -> list[tuple[str, int]]:
    """Every (host, port) ``servers`` listen on, with the ports the kernel chose for 0."""
    return [
        (str(name[0]), int(name[1]))
        for server in servers
        for name in (sock.getsockname() for sock in server.sockets)
    ]


async def bind_listen(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], asyncio.BaseProtocol],
    setting: str,
    value: str | list[str],
    *,
    backlog: int = 100,
    reuse_port: bool = False,
) -> list[asyncio.Server]:
    """One server per address of ``value`` (the ``setting`` named, e.g. "[rtmp] listen").

    ``reuse_port``: SO_REUSEPORT, so worker processes share the address and
    the kernel spreads new connections over them."""
    servers: list[asyncio.Server] = []
    try:
        for host, port in listen_addresses(value):
            try:
                server = await loop.create_server(
                    factory,
                    host,
                    port,
                    backlog=backlog,
                    reuse_address=True,
                    reuse_port=reuse_port or None,
                )
            except OSError as exc:
                raise cannot_listen(setting, host, port, exc) from None
            servers.append(server)
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
