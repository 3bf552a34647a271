"""The RTMP listener: binds, accepts into sessions, sweeps, drains on close."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streamgate.server.binding import bind_listen, bound_addresses
from streamgate.server.context import ServerContext
from streamgate.server.session import RtmpSession
from streamgate.server.tls import TlsConnection

__all__ = ["RtmpServer"]

log = logging.getLogger("streamgate.server")


class RtmpServer:
    """Accepts RTMP connections; ``start()`` binds, ``close()`` stops accepting."""

    def __init__(self, ctx: ServerContext, *, reuse_port: bool = False) -> None:
        self.ctx = ctx
        self.reuse_port = reuse_port  # a worker: the address is shared with the others
        self._servers: list[asyncio.Server] = []
        self._tls_servers: list[asyncio.Server] = []  # [rtmp] tls_listen
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweeps = 0

    @property
    def serving(self) -> bool:
        """Whether the RTMP listener accepts connections (for /readyz)."""
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    @property
    def port(self) -> int:
        """The port of the first address bound (the one hints and tests use)."""
        return self.addresses[0][1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) bound, with the ports the kernel chose for port 0."""
        return bound_addresses(self._servers)

    @property
    def tls_addresses(self) -> list[tuple[str, int]]:
        """Every RTMPS (host, port) bound."""
        return bound_addresses(self._tls_servers)

    @property
    def tls_port(self) -> int:
        return self.tls_addresses[0][1]

    async def start(self) -> None:
        """Bind every ``[rtmp] listen`` address; a failed bind is a ConfigError."""
        settings = self.ctx.settings.rtmp
        self._servers = await bind_listen(
            self.ctx.loop,
            lambda: RtmpSession(self.ctx),
            "[rtmp] listen",
            settings.listen,
            backlog=settings.backlog,
            reuse_port=self.reuse_port,
        )
        tls = self.ctx.tls
        if tls is not None and settings.tls_listen is not None:
            try:
                self._tls_servers = await bind_listen(
                    self.ctx.loop,
                    lambda: TlsConnection(tls, RtmpSession(self.ctx)),
                    "[rtmp] tls_listen",
                    settings.tls_listen,
                    backlog=settings.backlog,
                    reuse_port=self.reuse_port,
                )
            except BaseException:
                for server in self._servers:
                    server.close()
                raise
        self._schedule_sweep()
        if self.ctx.edge is not None and self.ctx.edge.directory is not None:
            self.ctx.edge.directory.start(self.ctx.edge.clock.now)
        for host, port in self.addresses:
            log.info("RTMP listening on %s:%d", host, port)
        for host, port in self.tls_addresses:
            log.info("RTMPS listening on %s:%d", host, port)

    def stop_accepting(self) -> None:
        """Close the listening sockets; connections already made go on."""
        for server in (*self._servers, *self._tls_servers):
            server.close()

    def _schedule_sweep(self) -> None:
        self._sweeper = self.ctx.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        self.ctx.admission.sweep(self.ctx.loop.time())
        self._sweeps += 1
        if self.ctx.tls is not None and self._sweeps % 2 == 0:
            self.ctx.tls.check_files()  # a certificate renewed on disk: served from now
        if self.ctx.edge is not None:
            self.ctx.edge.sweep()
        for stream in self.ctx.hub.sweep():
            self.ctx.counters.publishers_idle_dropped += 1
            log.info("stream %s/%s: publisher idle, dropped", stream.app, stream.name)
        self._schedule_sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in (*self._servers, *self._tls_servers):
            server.close()
        if self.ctx.edge is not None:
            self.ctx.edge.close()
        for stream in list(self.ctx.hub):
            self.ctx.hub.unpublish(stream)
        for session in list(self.ctx.sessions.values()):
            session.close()
        # Let the goodbyes (UnpublishNotify, queued media) reach the peers, for at
        # most drain_time; whoever is still connected then is cut off.
        if self.ctx.sessions:
            self.ctx.drained = self.ctx.loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.drained, self.ctx.settings.rtmp.drain_time)
        for session in list(self.ctx.sessions.values()):
            session.abort()
        for server in (*self._servers, *self._tls_servers):
            await server.wait_closed()
