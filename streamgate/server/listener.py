"""The RTMP listener and the context its sessions share."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from streamgate.config import Settings, parse_listen
from streamgate.edge.hub import EdgeHub, EdgeTiming
from streamgate.edge.origins import OriginPool
from streamgate.edge.upstream import RtmpConnector, UpstreamTimeouts
from streamgate.relay.clock import LoopClock
from streamgate.relay.hub import HubSettings, StreamHub
from streamgate.relay.source import PlaySource
from streamgate.relay.stream import FanoutSettings
from streamgate.rtmp.connection import ConnectionLimits
from streamgate.server.session import RtmpSession, make_limits

__all__ = ["RtmpServer", "ServerContext"]

log = logging.getLogger("streamgate.server")


@dataclass
class ServerContext:
    """Everything a session needs, built once from the settings."""

    settings: Settings
    loop: asyncio.AbstractEventLoop
    hub: StreamHub
    source: PlaySource
    limits: ConnectionLimits
    edge: EdgeHub | None = None
    sessions: dict[int, RtmpSession] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)

    @classmethod
    def build(cls, settings: Settings, loop: asyncio.AbstractEventLoop) -> ServerContext:
        rtmp, origin = settings.rtmp, settings.origin
        fanout = FanoutSettings(
            chunk_size=rtmp.chunk_size,
            merge_ms=rtmp.merge_ms,
            gop_cache=origin.gop_cache,
            max_gop_bytes=origin.max_gop_bytes,
            slow_player_timeout=rtmp.slow_player_timeout,
        )
        clock = LoopClock(loop)
        hub = StreamHub(
            clock,
            fanout,
            HubSettings(
                play_wait=origin.play_wait, publish_idle_timeout=origin.publish_idle_timeout
            ),
        )
        limits = make_limits(settings)
        if settings.mode != "edge":
            return cls(settings, loop, hub, hub, limits)
        edge = settings.edge
        pool = OriginPool.from_urls(
            edge.origins,
            max_upstreams=edge.max_upstreams,
            max_connects_per_second=edge.max_connects_per_second,
            breaker_failures=edge.breaker_failures,
            breaker_reset=edge.breaker_reset,
            now=clock.now(),
        )
        timing = EdgeTiming(
            start_timeout=edge.start_timeout,
            idle_timeout=edge.idle_timeout,
            missing_ttl=edge.missing_ttl,
            linger=edge.linger,
            reconnect_grace=edge.reconnect_grace,
            backoff_initial=edge.backoff_initial,
            backoff_max=edge.backoff_max,
            forward_query=edge.forward_query,
        )
        connector = RtmpConnector(
            loop,
            UpstreamTimeouts(edge.connect_timeout, edge.reply_timeout, edge.max_redirects),
            limits,
        )
        edge_hub = EdgeHub(clock, fanout, timing, pool, connector)
        return cls(settings, loop, hub, edge_hub, limits, edge=edge_hub)


class RtmpServer:
    """Accepts RTMP connections; ``start()`` binds, ``close()`` stops accepting."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

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
        log.info("RTMP listening on %s:%d", host, self.port)

    def _schedule_sweep(self) -> None:
        self._sweeper = self.ctx.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
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
        if self._server is not None:
            await self._server.wait_closed()
