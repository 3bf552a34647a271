"""The gateway's state as JSON-ready dicts, for the HTTP API and the metrics.

Read-only, and called on the event loop that owns the state (the API server
runs there), so nothing is locked or copied beyond what a listing needs.
The one edge-only subtlety: with ``forward_query`` an edge keys streams by
name *and* query string, and a query may carry a player's token, so only
parameter names are shown, never values, and stream names are shown without
their query.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from streamgate.edge.directory import Listing
from streamgate.edge.ingest import Ingest, IngestState
from streamgate.edge.origins import Origin
from streamgate.relay.stream import Stream
from streamgate.rtmp.connection import split_query

if TYPE_CHECKING:
    from streamgate.server.clients import Client
    from streamgate.server.context import ServerContext

__all__ = [
    "IDLE_AFTER",
    "MAX_MISSING_LISTED",
    "StreamRef",
    "bans_listing",
    "client_view",
    "clients_listing",
    "cluster_view",
    "find_missing",
    "find_streams",
    "missing_cached",
    "missing_keys",
    "origin_view",
    "origins_listing",
    "publishers_by_stream",
    "readiness",
    "redact",
    "stream_refs",
    "stream_view",
    "streams_listing",
]

IDLE_AFTER = 2.0
"""Seconds without media after which a published (origin) stream reads ``idle``."""

MAX_MISSING_LISTED = 1000
"""Most negative-cache entries a stream listing shows (the cache holds up to 100k)."""

_MAX_RETRY_DELAYS_SHOWN = 10
_QUERY = re.compile(r"\?[^\s'\"]*")

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamRef:
    """One stream the gateway carries: published here (origin), pulled (edge) or relayed."""

    app: str
    name: str  # without any query string
    query_params: tuple[str, ...]  # names only (edge ``forward_query`` keys)
    role: str  # "published" | "pulled" | "relayed" (a worker: from the owning sibling)
    state: str  # origin: live/idle; edge: starting/live/linger/reconnecting/backing-off
    stream: Stream
    ingest: Ingest | None = None


def redact(text: str) -> str:
    """Drop query strings (where tokens travel) from text shown to API users."""
    return _QUERY.sub("?<redacted>", text)


def _secs(value: float | None) -> float | None:
    return None if value is None else round(max(value, 0.0), 3)


def _param_names(query: str) -> tuple[str, ...]:
    return tuple(p.partition("=")[0] for p in query.split("&") if p)


def _origin_state(stream: Stream, now: float) -> str:
    live = stream.messages_in > 0 and now - stream.last_media <= IDLE_AFTER
    return "live" if live else "idle"


def _edge_state(ingest: Ingest) -> str:
    if ingest.state is IngestState.RECONNECTING and ingest.link is None:
        return "backing-off"  # between attempts: the link is closed, a retry is due
    return ingest.state.value


def stream_refs(ctx: ServerContext, now: float) -> list[StreamRef]:
    """Every stream, published ones first, in (app, name) order within each role."""
    refs = [
        StreamRef(s.app, s.name, (), "published", _origin_state(s, now), s)
        for s in sorted(ctx.hub, key=lambda s: (s.app, s.name))
    ]
    sources = [("pulled", ctx.edge)] if ctx.edge is not None else []
    sources += [("relayed", relay) for relay in ctx.relays]  # a worker: its siblings' streams
    for role, hub in sources:
        for ingest in sorted(hub, key=lambda i: i.key):
            if ingest.state is IngestState.ENDED:
                continue
            name, query = split_query(ingest.key[1])
            refs.append(
                StreamRef(
                    ingest.key[0],
                    name,
                    _param_names(query),
                    role,
                    _edge_state(ingest),
                    ingest.stream,
                    ingest,
                )
            )
    return refs


def publishers_by_stream(ctx: ServerContext) -> dict[int, Client]:
    """``id(stream)`` -> the session publishing it (origin mode)."""
    return {
        id(session.publishing): session
        for session in ctx.sessions.values()
        if session.publishing is not None
    }


def stream_view(
    ref: StreamRef, now: float, publishers: Mapping[int, Client] | None = None
) -> JsonObject:
    """One stream: who feeds it, its players, rates, codecs and ages."""
    stream = ref.stream
    players = stream.player_count
    bitrate_in = stream.bitrate_in.bitrate(now)
    video, audio = stream.video, stream.audio
    view: JsonObject = {
        "app": ref.app,
        "name": ref.name,
        "role": ref.role,
        "state": ref.state,
        "players": players,
        "viewers": stream.viewers(),  # players by protocol: rtmp, flv, ws-flv
        "age_seconds": _secs(now - stream.created),
        "bitrate_in_bps": round(bitrate_in),
        # Not measured: what players actually take may be less (skipped GOPs).
        "bitrate_out_bps_estimate": round(bitrate_in * players),
        "bytes_in": stream.bytes_in,
        "messages_in": stream.messages_in,
        "last_media_age_seconds": _secs(now - stream.last_media) if stream.messages_in else None,
        "last_keyframe_age_seconds": (
            _secs(now - stream.last_keyframe) if stream.last_keyframe is not None else None
        ),
        "video": asdict(video) if video is not None else None,
        "audio": asdict(audio) if audio is not None else None,
        "dropped_players": stream.dropped_players,
        # Of what players were sent, the bytes handed over by sendfile (no copy).
        "bytes_sendfile": stream.bytes_sendfile,
    }
    ingest = ref.ingest
    if ingest is not None:
        origin = ingest.origin
        started = ingest.link_started if ingest.link is not None else None
        view["query_params"] = list(ref.query_params)
        view["upstream"] = {
            "origin": origin.address if origin is not None else None,
            "link_age_seconds": _secs(now - started) if started is not None else None,
            "links_opened": ingest.links_opened,
            "waiting_players": len(ingest.waiters),
            "retry_delays_seconds": [
                round(d, 3) for d in ingest.retry_delays[-_MAX_RETRY_DELAYS_SHOWN:]
            ],
        }
    else:
        publisher = (publishers or {}).get(id(stream))
        view["publisher"] = (
            None
            if publisher is None
            else {
                "client_id": publisher.id,
                "peer": publisher.peer,
                "connected_seconds": _secs(_age(publisher, now)),
            }
        )
        # The publisher's connection is this stream's upstream link.
        view["upstream"] = {"link_age_seconds": _secs(now - stream.created)}
    return view


def _negative_entries(ctx: ServerContext, now: float) -> Iterator[tuple[str, str, float, str]]:
    """(app, name with query, expires, reason) of negative-cache entries still in force."""
    if ctx.edge is None:
        return
    for key, expires, reason in ctx.edge.negative.items(now):
        if isinstance(key, tuple) and len(key) == 2:
            yield str(key[0]), str(key[1]), expires, reason


def _missing_view(app: str, key_name: str, expires: float, reason: str, now: float) -> JsonObject:
    name, query = split_query(key_name)
    return {
        "app": app,
        "name": name,
        "query_params": list(_param_names(query)),
        "role": "pulled",
        "state": "missing-cached",
        "expires_in_seconds": _secs(expires - now),
        "reason": redact(reason),
    }


def missing_cached(
    ctx: ServerContext, now: float, limit: int = MAX_MISSING_LISTED
) -> tuple[list[JsonObject], int]:
    """Edge negative-cache entries still in force (at most ``limit``) and the cache size."""
    if ctx.edge is None:
        return [], 0
    listed = [
        _missing_view(*entry, now) for entry in itertools.islice(_negative_entries(ctx, now), limit)
    ]
    return listed, len(ctx.edge.negative)


def find_missing(ctx: ServerContext, app: str, name: str, now: float) -> list[JsonObject]:
    """Negative-cache entries in force for ``app``/``name`` (any query)."""
    return [
        _missing_view(*entry, now)
        for entry in _negative_entries(ctx, now)
        if entry[0] == app and split_query(entry[1])[0] == name
    ]


def streams_listing(ctx: ServerContext, now: float) -> JsonObject:
    """``GET /api/v1/streams``."""
    publishers = publishers_by_stream(ctx)
    streams = [stream_view(ref, now, publishers) for ref in stream_refs(ctx, now)]
    missing, cached = missing_cached(ctx, now)
    return {
        "mode": ctx.settings.mode,
        "streams": streams + missing,
        "missing_cached_total": cached,
        "missing_cached_listed": len(missing),
    }


def find_streams(ctx: ServerContext, app: str, name: str, now: float) -> list[StreamRef]:
    """The streams named ``app``/``name`` (an edge may key one name by several queries)."""
    return [ref for ref in stream_refs(ctx, now) if ref.app == app and ref.name == name]


def missing_keys(ctx: ServerContext, app: str, name: str, now: float) -> list[tuple[str, str]]:
    """The negative-cache keys in force for ``app``/``name`` (any query)."""
    return [
        (entry[0], entry[1])
        for entry in _negative_entries(ctx, now)
        if entry[0] == app and split_query(entry[1])[0] == name
    ]


def _age(session: Client, now: float) -> float | None:
    return now - session.connected_at if session.connected_at else None


def _label(stream: Stream) -> str:
    return f"{stream.app}/{split_query(stream.name)[0]}"


def client_view(session: Client, now: float) -> JsonObject:
    """One client connection: who, over what, what it does, for how long."""
    return {
        "id": session.id,
        "peer": session.peer,
        "protocol": session.protocol,
        "role": session.role,
        "app": session.app or None,
        "publishing": _label(session.publishing) if session.publishing is not None else None,
        "playing": sorted(_label(stream) for stream, _ in session.playing.values()),
        "waiting": sorted(
            f"{app}/{split_query(name)[0]}" for app, name, _ in session.waiting.values()
        ),
        "congested": session.paused,
        "connected_seconds": _secs(_age(session, now)),
    }


def clients_listing(ctx: ServerContext, now: float) -> JsonObject:
    """``GET /api/v1/clients``."""
    sessions = sorted(ctx.sessions.values(), key=lambda s: s.id)
    return {"clients": [client_view(s, now) for s in sessions if not s.closed]}


def origin_view(origin: Origin, now: float, tls: JsonObject | None = None) -> JsonObject:
    """One origin an edge pulls from, with its breaker and counters.

    ``tls``: how rtmps:// origins are verified (``verify``, ``ca_file``,
    ``server_name``, ``pins``), shown under ``"tls"`` for an rtmps:// origin with
    its TLS failures by reason; a plain rtmp:// origin has ``"tls": null``."""
    breaker = origin.breaker
    tls_view: JsonObject | None = None
    if origin.tls:
        settings = tls or {"verify": True, "ca_file": None, "server_name": None, "pins": 0}
        tls_view = {
            **settings,
            "server_name": settings.get("server_name") or origin.host,
            "failures": dict(sorted(origin.tls_failures.items())),
            "last_failure": origin.last_tls_failure or None,
        }
    return {
        "address": origin.address,
        "scheme": origin.scheme,
        "healthy": origin.healthy(now),
        "breaker": breaker.current(now).value,
        "breaker_consecutive_failures": breaker.failures,
        "breaker_opens": breaker.opens,
        "links": origin.links,
        "max_upstreams": origin.max_upstreams,
        "connects": origin.connects,
        "failures": origin.failures,
        "missing": origin.missing,
        "rate_limited": origin.rate_limited,
        "last_error": redact(origin.last_error) or None,
        "tls": tls_view,
    }


def _directory_view(listing: Listing, now: float, stale_after: float) -> JsonObject:
    return {
        "url": redact(listing.target.url) if listing.target is not None else None,
        "fresh": listing.fresh(now, stale_after),
        "streams": len(listing.names),
        "age_seconds": _secs(now - listing.fetched_at) if listing.fetched_at is not None else None,
        "fetches": listing.fetches,
        "failures": listing.failures,
        "last_error": listing.last_error or None,
    }


def origins_listing(ctx: ServerContext, now: float) -> JsonObject:
    """``GET /api/v1/origins``: empty in origin mode."""
    if ctx.edge is None:
        return {"mode": ctx.settings.mode, "origins": []}
    edge = ctx.settings.edge
    tls: JsonObject = {
        "verify": edge.tls_verify,
        "ca_file": str(edge.tls_ca_file) if edge.tls_ca_file is not None else None,
        "server_name": edge.tls_server_name,
        "pins": len(edge.tls_pin_sha256),
    }
    views = [origin_view(o, now, tls) for o in ctx.edge.pool.origins]
    directory = ctx.edge.directory
    if directory is not None:
        for view, listing in zip(views, directory.listings, strict=False):
            view["directory"] = _directory_view(listing, now, directory.stale_after)
    return {"mode": ctx.settings.mode, "origins": views}


def directory_listing(ctx: ServerContext) -> JsonObject:
    """``GET /api/v1/directory``: the streams a player can play here now, for edges.

    Published streams with a publisher, and an edge's live (or lingering) pulls;
    no waiting, missing or reconnecting names.
    """
    playable = [{"app": s.app, "name": s.name} for s in ctx.hub if ctx.hub.publisher(s) is not None]
    if ctx.edge is not None:
        playable += [
            {"app": i.key[0], "name": split_query(i.key[1])[0]}
            for i in ctx.edge
            if i.state in (IngestState.LIVE, IngestState.LINGER)
        ]
    return {"mode": ctx.settings.mode, "playable": playable}


def bans_listing(ctx: ServerContext, now: float) -> list[JsonObject]:
    """Bans in force, soonest to expire first."""
    bans = sorted(ctx.bans.bans(now), key=lambda b: (b.until, b.ip))
    return [
        {
            "ip": ban.ip,
            "reason": redact(ban.reason),
            "offences": ban.offences,
            "expires_in_seconds": _secs(ban.until - now),
        }
        for ban in bans
    ]


def cluster_view(ctx: ServerContext, now: float) -> JsonObject:
    """The fleet as this node sees it (``{"enabled": false}`` without ``[cluster]``)."""
    if ctx.cluster is None:
        return {"enabled": False}
    return ctx.cluster.view(now)


def readiness(ctx: ServerContext, listening: bool, now: float) -> tuple[bool, JsonObject]:
    """Ready: the RTMP listener is serving and, on an edge, some origin is usable."""
    view: JsonObject = {"mode": ctx.settings.mode, "listening": listening}
    ready = listening
    if ctx.edge is not None:
        origins = ctx.edge.pool.origins
        healthy = sum(1 for o in origins if o.healthy(now))
        view["origins_healthy"] = healthy
        view["origins_total"] = len(origins)
        ready = ready and healthy > 0
    view["ready"] = ready
    return ready, view
