"""The streamgate HTTP API: its endpoints and what each answers.

=================================================  ===========================================
``GET /healthz``                                   200 while the process serves HTTP
``GET /readyz``                                    200 ready / 503 not (listening; edge: an
                                                   origin up)
``GET /metrics``                                   Prometheus text format
``GET /``, ``GET /static/...``                     the built-in page (:mod:`streamgate.web`)
``GET /api/v1/streams``                            every stream (+ an edge's cached misses)
``GET|DELETE /api/v1/streams/{app}/{name}``        one stream / end it (or forget a miss)
``GET /api/v1/streams/{app}/{name}/thumbnail.jpg`` its last keyframe as a small JPEG
``GET /api/v1/streams/{app}/{name}/play-urls``     its play URLs, signed for a viewer
``GET /api/v1/clients``                            RTMP connections
``GET|DELETE /api/v1/clients/{id}``                one connection / kick it
``GET /api/v1/origins``                            an edge's origins (empty on an origin)
``GET /api/v1/directory``                          playable streams (polled by edges in front)
``GET|DELETE /api/v1/bans``                        bans in force / lift them all
``GET|DELETE /api/v1/bans/{ip}``                   one ban / lift it
``GET /api/v1/cluster``                            the fleet: Redis state, nodes seen, what
                                                   came in
``POST /api/v1/reload``                            re-read the configuration file
=================================================  ===========================================

``/api/*`` needs ``Authorization: Bearer <[http] token>`` when a token is set,
and so does ``/`` (or its ``?token=``; ``/static/`` holds no state and is
open). Every answer but ``/metrics``, the page and thumbnails is JSON; errors
are ``{"error": {...}}``. A stream whose name ends in ``/thumbnail.jpg`` or
``/play-urls`` is reached with that last slash percent-encoded (``%2F``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from streamgate.api import actions, views
from streamgate.api.http import Request, Response, error_response, json_response
from streamgate.api.page import page_routes
from streamgate.api.playurls import PlayKeys, play_urls, request_host
from streamgate.api.routing import PathArgs, Route
from streamgate.api.thumbnails import Thumbnailer, ThumbnailError
from streamgate.errors import ConfigError

if TYPE_CHECKING:
    from streamgate.config import Settings
    from streamgate.server.clients import Client
    from streamgate.server.context import ServerContext

__all__ = ["JPEG", "ApiContext", "build_routes", "play_urls_response"]

JPEG = "image/jpeg"


@dataclass(slots=True)
class ApiContext:
    """What the endpoints read: the gateway's context plus the API's own parts."""

    ctx: ServerContext
    listening: Callable[[], bool]
    registry: CollectorRegistry
    # Hook: re-read and apply the configuration file (``app.reload``), returning
    # the changes that need a restart; raises ConfigError. None: answers 501.
    reload: Callable[[], list[str]] | None = None
    counters: Counter[str] = field(default_factory=Counter)  # actions taken
    thumbnails: Thumbnailer = field(init=False)
    play_keys: PlayKeys = field(default_factory=PlayKeys)

    def __post_init__(self) -> None:
        self.thumbnails = Thumbnailer(self.ctx.loop)

    def now(self) -> float:
        return self.ctx.loop.time()


def build_routes(api: ApiContext) -> list[Route]:
    """The route table, bound to ``api``."""

    def healthz(request: Request, args: PathArgs) -> Response:
        return json_response(200, {"status": "ok", "mode": api.ctx.settings.mode})

    def readyz(request: Request, args: PathArgs) -> Response:
        ready, view = views.readiness(api.ctx, api.listening(), api.now())
        return json_response(200 if ready else 503, view)

    def metrics(request: Request, args: PathArgs) -> Response:
        return Response(200, generate_latest(api.registry), CONTENT_TYPE_PLAIN_0_0_4)

    def list_streams(request: Request, args: PathArgs) -> Response:
        return json_response(200, views.streams_listing(api.ctx, api.now()))

    def get_stream(request: Request, args: PathArgs) -> Response:
        app, name = args
        now = api.now()
        refs = views.find_streams(api.ctx, app, name, now)
        if refs:
            publishers = views.publishers_by_stream(api.ctx)
            view = views.stream_view(refs[0], now, publishers)
            if len(refs) > 1:  # an edge keying one name by several query strings
                view["variants"] = len(refs)
            return json_response(200, view)
        missing = views.find_missing(api.ctx, app, name, now)
        if missing:
            return json_response(200, missing[0])
        return error_response(404, f"no stream {app}/{name}")

    def delete_stream(request: Request, args: PathArgs) -> Response:
        app, name = args
        now = api.now()
        refs = views.find_streams(api.ctx, app, name, now)
        if refs:
            done = [actions.end_stream(api.ctx, ref) for ref in refs]
            api.counters["stream_ended"] += len(done)
            return json_response(200, {"app": app, "name": name, "ended": done})
        forgotten = actions.forget_missing(api.ctx, app, name, now)
        if forgotten:
            api.counters["miss_forgotten"] += forgotten
            return json_response(200, {"app": app, "name": name, "forgotten": forgotten})
        return error_response(404, f"no stream {app}/{name}")

    async def thumbnail(request: Request, args: PathArgs) -> Response:
        app, name = args
        refs = views.find_streams(api.ctx, app, name, api.now())
        if not refs:
            return error_response(404, f"no stream {app}/{name}")
        try:
            jpeg = await api.thumbnails.jpeg(refs[0].stream)
        except ThumbnailError as exc:
            return error_response(exc.status, exc.message)
        return Response(200, jpeg, JPEG)

    def stream_play_urls(request: Request, args: PathArgs) -> Response:
        return play_urls_response(api.ctx.settings, api.play_keys, request, args)

    def list_clients(request: Request, args: PathArgs) -> Response:
        return json_response(200, views.clients_listing(api.ctx, api.now()))

    def _session(raw: str) -> Client | Response:
        if not raw.isdigit() or len(raw) > 18:
            return error_response(400, "client ids are positive integers")
        session = api.ctx.sessions.get(int(raw))
        if session is None or session.closed:
            return error_response(404, f"no client {raw}")
        return session

    def get_client(request: Request, args: PathArgs) -> Response:
        found = _session(args[0])
        if isinstance(found, Response):
            return found
        return json_response(200, views.client_view(found, api.now()))

    def delete_client(request: Request, args: PathArgs) -> Response:
        found = _session(args[0])
        if isinstance(found, Response):
            return found
        actions.kick_client(found)
        api.counters["client_kicked"] += 1
        return json_response(200, {"id": found.id, "kicked": True})

    def list_origins(request: Request, args: PathArgs) -> Response:
        return json_response(200, views.origins_listing(api.ctx, api.now()))

    def directory(request: Request, args: PathArgs) -> Response:
        return json_response(200, views.directory_listing(api.ctx))

    def list_bans(request: Request, args: PathArgs) -> Response:
        return json_response(200, {"bans": views.bans_listing(api.ctx, api.now())})

    def lift_all_bans(request: Request, args: PathArgs) -> Response:
        lifted = actions.lift_bans(api.ctx, api.now())
        api.counters["ban_lifted"] += lifted
        return json_response(200, {"lifted": lifted})

    def get_ban(request: Request, args: PathArgs) -> Response:
        for ban in views.bans_listing(api.ctx, api.now()):
            if ban["ip"] == args[0]:
                return json_response(200, ban)
        return error_response(404, f"no ban on {args[0]}")

    def delete_ban(request: Request, args: PathArgs) -> Response:
        if not api.ctx.bans.unban(args[0]):
            return error_response(404, f"no ban on {args[0]}")
        api.counters["ban_lifted"] += 1
        return json_response(200, {"ip": args[0], "lifted": True})

    def cluster(request: Request, args: PathArgs) -> Response:
        return json_response(200, views.cluster_view(api.ctx, api.now()))

    def reload(request: Request, args: PathArgs) -> Response:
        if api.reload is None:
            return error_response(501, "this gateway was started without a reloadable config")
        try:
            restart = api.reload()
        except ConfigError as exc:
            return error_response(422, f"configuration not reloaded: {exc.description}")
        api.counters["config_reloaded"] += 1
        return json_response(200, {"reloaded": True, "restart_needed": restart})

    def token() -> str | None:
        secret = api.ctx.settings.http.token
        return secret.get_secret_value() if secret is not None else None

    v1 = ("api", "v1")
    return [
        *page_routes(lambda: api.ctx.settings, token),
        Route(("healthz",), {"GET": healthz}),
        Route(("readyz",), {"GET": readyz}),
        Route(("metrics",), {"GET": metrics}),
        Route((*v1, "streams"), {"GET": list_streams}),
        # Before the stream's own route, whose name would take these suffixes.
        Route((*v1, "streams", "*", "**", "thumbnail.jpg"), {"GET": thumbnail}),
        Route((*v1, "streams", "*", "**", "play-urls"), {"GET": stream_play_urls}),
        Route((*v1, "streams", "*", "**"), {"GET": get_stream, "DELETE": delete_stream}),
        Route((*v1, "clients"), {"GET": list_clients}),
        Route((*v1, "clients", "*"), {"GET": get_client, "DELETE": delete_client}),
        Route((*v1, "origins"), {"GET": list_origins}),
        Route((*v1, "directory"), {"GET": directory}),
        Route((*v1, "bans"), {"GET": list_bans, "DELETE": lift_all_bans}),
        Route((*v1, "bans", "*"), {"GET": get_ban, "DELETE": delete_ban}),
        Route((*v1, "cluster"), {"GET": cluster}),
        Route((*v1, "reload"), {"POST": reload}),
    ]


def play_urls_response(
    settings: Settings, keys: PlayKeys, request: Request, args: PathArgs
) -> Response:
    """``GET .../play-urls`` (the supervisor of workers answers it the same way)."""
    app, name = args
    try:
        view = play_urls(
            settings, keys, app, name, host=request_host(request.header("host")), peer=request.peer
        )
    except ConfigError as exc:
        return error_response(503, f"the play keys cannot be read: {exc.description}")
    return json_response(200, view)
