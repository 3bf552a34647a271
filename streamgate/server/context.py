"""The state every session of a server shares, built from the settings.

One owner: :class:`ServerContext` holds the hub, the play source (the hub,
or the edge in front of an origin), the auth, bans and admission guard, and
the settings they were built from; :meth:`ServerContext.apply` is the one
place a reload changes them. The builders below map settings sections to
the plain dataclasses the sans-IO and relay code take.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from streamgate.auth import Authorizer, MethodConfig, sign_query
from streamgate.auth.hook import HookClient
from streamgate.config import Settings, load_keys
from streamgate.edge.budgeted import BudgetedConnector
from streamgate.edge.directory import OriginDirectory
from streamgate.edge.hub import EdgeHub, EdgeTiming
from streamgate.edge.origins import OriginPool
from streamgate.edge.upstream import RtmpConnector, UpstreamTimeouts, UpstreamTls
from streamgate.errors import ConfigError
from streamgate.relay.clock import Clock, LoopClock
from streamgate.relay.hub import HubSettings, StreamHub
from streamgate.relay.source import PlaySource
from streamgate.relay.stream import FanoutSettings
from streamgate.rtmp.chunk import ChunkLimits
from streamgate.rtmp.connection import ConnectionLimits
from streamgate.server.clients import Client
from streamgate.server.counters import ServerCounters
from streamgate.server.tls import ServedCertificates
from streamgate.shield.admission import AdmissionGuard, AdmissionRules
from streamgate.shield.bans import BanRules, BanStore, MemoryBanStore, SafeBans

if TYPE_CHECKING:
    from streamgate.cluster.node import ClusterNode

__all__ = ["ServerContext"]

log = logging.getLogger("streamgate.edge")


@dataclass
class ServerContext:
    """Everything a session needs, built from the settings.

    :meth:`apply` takes new settings on reload: limits, timeouts, auth keys,
    origins and log level change in place; streams, players and the ban
    store (its state) are kept. Settings that need a restart are reported.
    """

    settings: Settings
    loop: asyncio.AbstractEventLoop
    clock: Clock  # the loop's, or a fake one in tests
    hub: StreamHub
    source: PlaySource
    limits: ConnectionLimits
    auth: Authorizer
    bans: SafeBans
    admission: AdmissionGuard
    edge: EdgeHub | None = None
    cluster: ClusterNode | None = None  # [cluster] redis_url set: the fleet's replication
    # A worker of several: ``source`` routes each play to its owning worker and
    # this is the worker's own (what relays from the other workers play).
    own_source: PlaySource | None = None
    relays: list[EdgeHub] = field(default_factory=list)  # the siblings' streams, relayed
    sessions: dict[int, Client] = field(default_factory=dict)  # every admitted connection
    counters: ServerCounters = field(default_factory=ServerCounters)
    config_path: str | None = None  # what a reload re-reads
    drained: asyncio.Future[None] | None = None  # set on shutdown, done when none is left
    tls: ServedCertificates | None = None  # [rtmp] tls_listen: what RTMPS serves

    @classmethod
    def build(
        cls,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        ban_store: BanStore | None = None,
        clock: Clock | None = None,
    ) -> ServerContext:
        """The context of a server on ``loop`` (its clock unless ``clock`` is given)."""
        clock = clock or LoopClock(loop)
        hub = StreamHub(clock, _fanout(settings), _hub_settings(settings))
        bans = SafeBans(ban_store or MemoryBanStore(_ban_rules(settings)))
        admission = AdmissionGuard(_admission_rules(settings), bans)
        ctx = cls(
            settings,
            loop,
            clock,
            hub,
            hub,
            _connection_limits(settings),
            _authorizer(settings),
            bans,
            admission,
        )
        if settings.mode == "edge":
            edge = settings.edge
            upstream_tls = _upstream_tls(settings)
            connector = RtmpConnector(
                loop,
                UpstreamTimeouts(edge.connect_timeout, edge.reply_timeout, edge.max_redirects),
                ctx.limits,
                merge_delay=settings.rtmp.merge_ms / 1000,
                tls=upstream_tls,
            )
            ctx.edge = EdgeHub(
                clock, _fanout(settings), _edge_timing(settings), _pool(settings, clock), connector
            )
            ctx.edge.upstream_signer = _upstream_signer(settings)
            ctx.edge.directory = _directory(settings, upstream_tls)
            ctx.source = ctx.edge
            _warn_unverified(settings)
        ctx.cluster = _cluster(settings, bans, clock, ctx.edge)
        if settings.rtmp.tls_listen is not None:
            ctx.tls = ServedCertificates(settings.rtmp)  # a bad certificate stops the start
        return ctx

    def forget(self, client_id: int) -> None:
        """A client's connection is gone (a shutdown waits for the last one)."""
        self.sessions.pop(client_id, None)
        drained = self.drained
        if drained is not None and not self.sessions and not drained.done():
            drained.set_result(None)

    def trusted(self, ip: str) -> bool:
        store = self.bans.store
        return isinstance(store, MemoryBanStore) and store.allowed(ip)

    def apply(self, settings: Settings) -> list[str]:
        """Take new settings in place; returns the changes that need a restart."""
        old, restart = self.settings, []
        if settings.rtmp.listen != old.rtmp.listen:
            restart.append(f"[rtmp] listen ({old.rtmp.listen} -> {settings.rtmp.listen})")
        if settings.mode != old.mode:
            restart.append(f"mode ({old.mode} -> {settings.mode})")
        for name in ("listen", "health_listen"):
            before, after = getattr(old.http, name), getattr(settings.http, name)
            if before != after:
                restart.append(f"[http] {name} ({before} -> {after})")
        if _cluster_terms(settings) != _cluster_terms(old):
            restart.append("[cluster] (or [edge] fleet_max_connects_per_second)")
        before_tls, after_tls = old.rtmp.tls_listen, settings.rtmp.tls_listen
        if before_tls != after_tls:
            restart.append(f"[rtmp] tls_listen ({before_tls} -> {after_tls})")
        # A bad CA file for rtmps:// origins leaves all as it was, as a bad key file does.
        upstream_tls = _upstream_tls(settings) if settings.mode == "edge" else None
        auth = _authorizer(settings)  # first: a bad key file leaves all as it was
        if self.tls is not None and settings.rtmp.tls_listen is not None:
            self.tls.configure(settings.rtmp)  # so does a certificate that does not load
        self.auth = auth
        self.settings = settings
        self.limits = _connection_limits(settings)
        self.hub.settings = _hub_settings(settings)
        self.hub.fanout = _fanout(settings)
        self.bans.configure(_ban_rules(settings))
        self.admission.configure(_admission_rules(settings))
        if self.edge is not None and settings.mode == "edge":
            self.edge.settings = _edge_timing(settings)
            self.edge.fanout = _fanout(settings)
            connector = self.edge.connector
            while isinstance(connector, BudgetedConnector):  # the fleet's, the machine's gate
                connector = connector.inner
            if isinstance(connector, RtmpConnector):
                connector.merge_delay = settings.rtmp.merge_ms / 1000
                if upstream_tls is not None:
                    connector.tls = upstream_tls  # links opened from now on
            _warn_unverified(settings)
            self.edge.negative.ttl = settings.edge.missing_ttl
            self.edge.upstream_signer = _upstream_signer(settings)
            if settings.edge.origins != old.edge.origins:
                self.edge.pool = _pool(settings, self.edge.clock)
            if _directory_terms(settings) != _directory_terms(old):
                if self.edge.directory is not None:
                    self.edge.directory.close()
                self.edge.directory = _directory(settings, upstream_tls)
                if self.edge.directory is not None:
                    if self.cluster is not None:
                        self.edge.directory.share = self.cluster.directory
                    self.edge.directory.start(self.edge.clock.now)
        logging.getLogger().setLevel(settings.log.level.upper())
        return restart


def _cluster_terms(settings: Settings) -> tuple[object, ...]:
    """What the cluster is built from (SecretStr compares by value)."""
    return (settings.cluster, settings.edge.fleet_max_connects_per_second)


def _cluster(
    settings: Settings, bans: SafeBans, clock: Clock, edge: EdgeHub | None
) -> ClusterNode | None:
    """The fleet's side of this server, or None without ``[cluster] redis_url``."""
    if settings.cluster.redis_url is None:
        return None  # and nothing of the cluster (nor redis) is imported
    from streamgate.cluster.node import ClusterNode
    from streamgate.cluster.settings import cluster_options

    options = cluster_options(settings)
    store = bans.store
    if options is None or not isinstance(store, MemoryBanStore):
        return None
    node = ClusterNode(options, store, clock)
    if edge is not None:
        node.attach_edge(edge)
    return node


def _connection_limits(settings: Settings) -> ConnectionLimits:
    rtmp = settings.rtmp
    return ConnectionLimits(
        handshake_timeout=rtmp.handshake_timeout,
        command_timeout=rtmp.command_timeout,
        chunk_size=rtmp.chunk_size,
        window_ack_size=rtmp.window_ack_size,
        max_streams=rtmp.max_streams_per_connection,
        chunk=ChunkLimits(
            max_message_size=rtmp.max_message_size,
            max_chunk_streams=rtmp.max_chunk_streams,
        ),
    )


def _fanout(settings: Settings) -> FanoutSettings:
    rtmp, origin = settings.rtmp, settings.origin
    return FanoutSettings(
        chunk_size=rtmp.chunk_size,
        merge_ms=rtmp.merge_ms,
        gop_cache=origin.gop_cache,
        max_gop_bytes=origin.max_gop_bytes,
        slow_player_timeout=rtmp.slow_player_timeout,
        sendfile=rtmp.sendfile,
    )


def _hub_settings(settings: Settings) -> HubSettings:
    origin = settings.origin
    return HubSettings(play_wait=origin.play_wait, publish_idle_timeout=origin.publish_idle_timeout)


def _edge_timing(settings: Settings) -> EdgeTiming:
    edge = settings.edge
    return EdgeTiming(
        start_timeout=edge.start_timeout,
        idle_timeout=edge.idle_timeout,
        missing_ttl=edge.missing_ttl,
        linger=edge.linger,
        reconnect_grace=edge.reconnect_grace,
        backoff_initial=edge.backoff_initial,
        backoff_max=edge.backoff_max,
        forward_query=edge.forward_query,
    )


def _directory_terms(settings: Settings) -> tuple[object, ...]:
    """What the directory is built from (SecretStr compares by value)."""
    edge = settings.edge
    return (
        edge.origins,
        edge.directory,
        edge.directory_interval,
        edge.directory_authoritative,
        edge.directory_token,
        edge.tls_verify,
        edge.tls_ca_file,
        edge.tls_server_name,
    )


def _upstream_tls(settings: Settings) -> UpstreamTls:
    """The TLS of rtmps:// origins and https:// directories, from ``[edge] tls_*``."""
    edge = settings.edge
    ca_file = str(edge.tls_ca_file) if edge.tls_ca_file is not None else None
    try:
        return UpstreamTls.build(
            verify=edge.tls_verify,
            ca_file=ca_file,
            server_name=edge.tls_server_name,
            pins=tuple(edge.tls_pin_sha256),
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[edge] tls_ca_file {ca_file}: cannot load it: {exc}") from None


def _warn_unverified(settings: Settings) -> None:
    """``tls_verify = false`` is said loudly, at start and at each reload."""
    edge = settings.edge
    if edge.tls_verify:
        return
    secure = [u for u in edge.origins if u.startswith("rtmps:")]
    secure += [u for u in edge.directory if u.startswith("https:")]
    log.warning(
        "[edge] tls_verify = false: the certificates of rtmps:// origins and https:// "
        "directories are NOT verified (%s)%s",
        ", ".join(secure) or "none configured yet",
        "; tls_pin_sha256 is still checked" if edge.tls_pin_sha256 else "",
    )


def _directory(settings: Settings, tls: UpstreamTls | None) -> OriginDirectory | None:
    edge = settings.edge
    if not any(edge.directory):
        return None
    return OriginDirectory.from_urls(
        edge.directory,
        interval=edge.directory_interval,
        authoritative=edge.directory_authoritative,
        token=edge.directory_token.get_secret_value() if edge.directory_token else None,
        tls=tls.context if tls is not None else None,
        server_name=edge.tls_server_name,
    )


def _pool(settings: Settings, clock: Clock) -> OriginPool:
    edge = settings.edge
    return OriginPool.from_urls(
        edge.origins,
        max_upstreams=edge.max_upstreams,
        max_connects_per_second=edge.max_connects_per_second,
        breaker_failures=edge.breaker_failures,
        breaker_reset=edge.breaker_reset,
        now=clock.now(),
    )


def _authorizer(settings: Settings) -> Authorizer:
    auth = settings.auth
    play_keys, publish_keys = load_keys(auth)
    hook = None
    if auth.hook_url:
        hook = HookClient(auth.hook_url, auth.hook_timeout, auth.hook_cache, auth.hook_failure)
    lifetime = auth.max_token_lifetime
    return Authorizer(
        MethodConfig(auth.play, play_keys, auth.clock_skew, auth.bind_ip, lifetime),
        MethodConfig(auth.publish, publish_keys, auth.clock_skew, auth.bind_ip, lifetime),
        hook,
    )


def _ban_rules(settings: Settings) -> BanRules:
    limits = settings.limits
    return BanRules(
        ban_after=limits.ban_after_failures,
        window=limits.ban_window,
        ban_time=limits.ban_time,
        max_ban_time=limits.ban_max_time,
        allow=BanRules.parse_allow(limits.allow),
    )


def _admission_rules(settings: Settings) -> AdmissionRules:
    limits = settings.limits
    return AdmissionRules(
        max_connections=limits.max_connections,
        max_connections_per_ip=limits.max_connections_per_ip,
        connections_per_second_per_ip=limits.connections_per_second_per_ip,
        # Nobody could use a reserve without an allow list: all of the cap is open.
        reserved_connections=limits.reserved_connections if limits.allow else 0,
    )


def _upstream_signer(settings: Settings) -> Callable[[str, str], str] | None:
    """Signs the edge's upstream plays, once per link, for the origin to verify."""
    edge = settings.edge
    if edge.upstream_secret is None:
        return None
    secret = edge.upstream_secret.get_secret_value().encode()
    kid, ttl = edge.upstream_kid, edge.upstream_token_ttl

    def sign(app: str, stream: str) -> str:
        return sign_query("play", app, stream, int(time.time() + ttl), secret, kid)

    return sign
