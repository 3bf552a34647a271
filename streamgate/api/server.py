"""The HTTP API server: binds ``[http] listen`` on the gateway's own event loop.

It runs on the loop that owns the gateway's state, so every endpoint and
every scrape reads that state directly, with no locks and no copies; the
only writes are the DELETE actions. :func:`start_api` is what ``app.serve()``
calls; :meth:`ApiServer.close` goes before the RTMP listener's close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector

from streamgate.api.http import HttpLimits, HttpServer
from streamgate.api.metrics import DEFAULT_STREAM_SERIES, LoopLagMonitor, StreamgateCollector
from streamgate.api.routes import ApiContext, build_routes
from streamgate.api.routing import Router
from streamgate.config import parse_listen

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["ApiServer", "start_api"]

log = logging.getLogger("streamgate.api")


class ApiServer:
    """The HTTP API, /metrics and health checks for one :class:`ServerContext`.

    ``listening`` tells /readyz whether the RTMP listener is serving;
    ``reload`` (``functools.partial(app.reload, ctx)``) backs ``POST /api/v1/reload``.
    """

    def __init__(
        self,
        ctx: ServerContext,
        *,
        listening: Callable[[], bool],
        limits: HttpLimits | None = None,
        reload: Callable[[], list[str]] | None = None,
        max_stream_series: int = DEFAULT_STREAM_SERIES,
        lag_interval: float = 0.5,
    ) -> None:
        self.ctx = ctx
        self.lag = LoopLagMonitor(ctx.loop, lag_interval)
        self.registry = CollectorRegistry()
        self.api = ApiContext(ctx, listening, self.registry, reload)
        router = Router(build_routes(self.api), token=self._token)
        self.http = HttpServer(router, limits or HttpLimits(), ctx.loop)
        self.registry.register(
            StreamgateCollector(
                ctx,
                listening=listening,
                lag=self.lag,
                http=self.http,
                api_counters=self.api.counters,
                max_stream_series=max_stream_series,
            )
        )
        # process_* series (CPU, memory, fds, start time) under our prefix.
        ProcessCollector(namespace="streamgate", registry=self.registry)

    def _token(self) -> str | None:
        # Read from the live settings: a configuration reload replaces them.
        token = self.ctx.settings.http.token
        return token.get_secret_value() if token is not None else None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self.http.port

    async def start(self) -> None:
        """Bind ``[http] listen`` and start sampling event-loop lag."""
        host, port = parse_listen(self.ctx.settings.http.listen)
        await self.http.start(host, port)
        self.lag.start()
        auth = "no token" if self._token() is None else "bearer token required on /api"
        log.info("HTTP API listening on %s:%d (%s)", host, self.port, auth)

    async def close(self) -> None:
        """Stop listening, drop HTTP connections, stop the lag timer."""
        self.lag.stop()
        await self.http.close()


async def start_api(
    ctx: ServerContext,
    *,
    listening: Callable[[], bool],
    reload: Callable[[], list[str]] | None = None,
    limits: HttpLimits | None = None,
) -> ApiServer | None:
    """Start the API when ``[http] enabled``; returns it (to close later) or None."""
    if not ctx.settings.http.enabled:
        return None
    api = ApiServer(ctx, listening=listening, reload=reload, limits=limits)
    await api.start()
    return api
