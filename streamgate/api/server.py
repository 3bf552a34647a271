"""The HTTP API server: binds ``[http] listen`` on the gateway's own event loop.

It runs on the loop that owns the gateway's state, so every endpoint and
every scrape reads that state directly, with no locks and no copies; the
only writes are the DELETE actions. :func:`start_api` is what ``app.serve()``
calls; :meth:`ApiServer.close` goes before the RTMP listener's close.

With ``[http] health_listen`` set, a second :class:`HttpServer` serves only
/healthz, /readyz and /metrics with connection caps of its own: an orchestrator
pointed at it is answered whatever crowds the main port. The limits of both come
from ``[http]`` and are re-read for each new connection, so a reload applies them.
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
from streamgate.config import HttpSettings

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["ApiServer", "http_limits", "start_api"]

log = logging.getLogger("streamgate.api")

# What the health listener serves: probes and scrapes, nothing that changes state.
_HEALTH_PATHS = frozenset({("healthz",), ("readyz",), ("metrics",)})


def http_limits(http: HttpSettings) -> HttpLimits:
    """The ``[http]`` settings as the server's limits."""
    return HttpLimits(
        max_connections=http.max_connections,
        max_connections_per_ip=http.max_connections_per_ip,
        header_timeout=http.header_timeout,
        body_timeout=http.body_timeout,
        keepalive_timeout=http.keepalive_timeout,
        max_header_bytes=http.max_header_bytes,
        max_body_bytes=http.max_body_bytes,
        max_requests_per_connection=http.max_requests_per_connection,
    )


class ApiServer:
    """The HTTP API, /metrics and health checks for one :class:`ServerContext`.

    ``listening`` tells /readyz whether the RTMP listener is serving;
    ``reload`` (``functools.partial(app.reload, ctx)``) backs ``POST /api/v1/reload``.
    ``limits``, when given, replaces the ``[http]`` ones (tests).
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
        routes = build_routes(self.api)
        router = Router(routes, token=self._token)
        self._settings_limits: tuple[HttpSettings, HttpLimits] | None = None
        self._limits = limits if limits is not None else self._limits_from_settings
        self.http = HttpServer(router, self._limits, ctx.loop)
        # Shares the counters, so /metrics counts its answers with the main port's.
        self.health: HttpServer | None = None
        if ctx.settings.http.health_listen is not None:
            health_routes = [route for route in routes if route.pattern in _HEALTH_PATHS]
            self.health = HttpServer(
                Router(health_routes, token=self._token, protected=()),
                self._limits,
                ctx.loop,
                counters=self.http.counters,
            )
        self.registry.register(
            StreamgateCollector(
                ctx,
                listening=listening,
                lag=self.lag,
                http=self.http,
                api_counters=self.api.counters,
                max_stream_series=max_stream_series,
                thumbnails=self.api.thumbnails,
            )
        )
        # process_* series (CPU, memory, fds, start time) under our prefix.
        ProcessCollector(namespace="streamgate", registry=self.registry)

    def _limits_from_settings(self) -> HttpLimits:
        # Built once per settings object: a reload replaces the object.
        http = self.ctx.settings.http
        if self._settings_limits is None or self._settings_limits[0] is not http:
            self._settings_limits = (http, http_limits(http))
        return self._settings_limits[1]

    def _token(self) -> str | None:
        # Read from the live settings: a configuration reload replaces them.
        token = self.ctx.settings.http.token
        return token.get_secret_value() if token is not None else None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self.http.port

    @property
    def health_port(self) -> int | None:
        """The health listener's bound port, if there is one (after :meth:`start`)."""
        return self.health.port if self.health is not None else None

    async def start(self, unix_path: str | None = None) -> None:
        """Bind ``[http] listen`` (and ``health_listen``) and start sampling event-loop lag.

        ``unix_path``: serve there instead (a worker, behind its supervisor's API)."""
        settings = self.ctx.settings.http
        if unix_path is not None:
            await self.http.start_unix(unix_path)
            self.lag.start()
            return
        await self.http.start("[http] listen", settings.listen)
        if self.health is not None and settings.health_listen is not None:
            try:
                await self.health.start("[http] health_listen", settings.health_listen)
            except BaseException:
                await self.http.close()
                raise
            for host, port in self.health.addresses:
                log.info("health checks and metrics also on %s:%d", host, port)
        self.lag.start()
        auth = "no token" if self._token() is None else "bearer token required on /api"
        for host, port in self.http.addresses:
            log.info("HTTP API listening on %s:%d (%s)", host, port, auth)

    async def close(self) -> None:
        """Stop listening, drop HTTP connections, stop the lag timer and the thumbnails."""
        self.lag.stop()
        self.api.thumbnails.close()
        if self.health is not None:
            await self.health.close()
        await self.http.close()


async def start_api(
    ctx: ServerContext,
    *,
    listening: Callable[[], bool],
    reload: Callable[[], list[str]] | None = None,
    limits: HttpLimits | None = None,
    unix_path: str | None = None,
) -> ApiServer | None:
    """Start the API when ``[http] enabled``; returns it (to close later) or None."""
    if not ctx.settings.http.enabled:
        return None
    api = ApiServer(ctx, listening=listening, reload=reload, limits=limits)
    await api.start(unix_path)
    return api
