"""The RTMP listener: binds, accepts into sessions, sweeps, drains on close."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streamgate.config import parse_listen
from streamgate.server.context import ServerContext
from streamgate.server.session import RtmpSession

__all__ = ["RtmpServer"]

log = logging.getLogger("streamgate.server")


class RtmpServer:
    """Accepts RTMP connections; ``start()`` binds, ``close()`` stops accepting."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def serving(self) -> bool:
        """Whether the RTMP listener accepts connections (for /readyz)."""
        return self._server is not None and self._server.is_serving()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        host, port = parse_listen(self.ctx.settings.rtmp.listen)
        self._server = await self.ctx.loop.create_server(
            lambda: RtmpSession(self.ctx),
            host,
            port,
            backlog=self.ctx.settings.rtmp.backlog,
            reuse_address=True,
        )
        self._schedule_sweep()
        if self.ctx.edge is not None and self.ctx.edge.directory is not None:
            self.ctx.edge.directory.start(self.ctx.edge.clock.now)
        log.info("RTMP listening on %s:%d", host, self.port)

    def _schedule_sweep(self) -> None:
        self._sweeper = self.ctx.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        self.ctx.admission.sweep(self.ctx.loop.time())
        if self.ctx.edge is not None:
            self.ctx.edge.sweep()
        for stream in self.ctx.hub.sweep():
            self.ctx.counters["publishers_idle_dropped"] += 1
            log.info("stream %s/%s: publisher idle, dropped", stream.app, stream.name)
        self._schedule_sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
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
            if session.transport is not None:
                session.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
