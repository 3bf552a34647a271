"""The ``[cluster]`` settings, mapped to what the cluster code takes, and the Redis client.

The password comes from the URL, ``[cluster] password`` (or its environment
variable) or ``password_file``, in that order of precedence reversed: a file
or setting overrides the URL's. It is never logged: :func:`redact_url` is
what any message or API answer shows.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from streamgate.config import Settings, listen_addresses
from streamgate.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["ClusterOptions", "Keys", "cluster_options", "redact_url"]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (what logs and the API show)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key and channel of one fleet, under its prefix."""

    prefix: str

    @property
    def channel(self) -> str:
        return f"{self.prefix}events"

    def ban(self, ip: str) -> str:
        return f"{self.prefix}ban:{ip}"

    @property
    def ban_pattern(self) -> str:
        return f"{self.prefix}ban:*"

    def miss(self, app: str, name: str) -> str:
        # app may hold a "/", so the pair is length-prefixed, not joined.
        return f"{self.prefix}miss:{len(app)}:{app}/{name}"

    def probe(self, app: str, name: str) -> str:
        """The claim of the node asking the origin for a name now."""
        return f"{self.prefix}probe:{len(app)}:{app}/{name}"

    @property
    def miss_pattern(self) -> str:
        return f"{self.prefix}miss:*"

    def node(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    @property
    def node_pattern(self) -> str:
        return f"{self.prefix}node:*"

    def budget(self, origin: str) -> str:
        return f"{self.prefix}budget:{origin}"

    @property
    def directory_leader(self) -> str:
        return f"{self.prefix}directory:leader"

    def directory(self, url: str) -> str:
        return f"{self.prefix}directory:{url}"


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """``[cluster]`` resolved: the password read, the node named."""

    url: str
    password: str | None
    node_id: str
    keys: Keys
    connect_timeout: float
    command_timeout: float
    budget_wait: float
    claim_wait: float  # a late claim answer is waited for this long in all
    heartbeat_interval: float
    reconcile_interval: float
    backoff_initial: float
    backoff_max: float
    tls_ca_file: str | None = None
    fleet_rate: float = 0.0

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    @property
    def node_ttl(self) -> float:
        return 3 * self.heartbeat_interval

    def client(self, *, timeout: float | None = None, max_connections: int | None = None) -> Redis:
        """A new redis-py asyncio client (a pool; connects on first use).

        ``max_connections``: a small pool that callers queue for (up to ``timeout``)
        rather than each opening a connection of its own under a burst.
        """
        from redis.asyncio import BlockingConnectionPool, Redis

        parts = urlsplit(self.url)
        extra: dict[str, Any] = {}
        if parts.scheme == "rediss":
            extra["ssl_cert_reqs"] = ssl.CERT_REQUIRED
            if self.tls_ca_file is not None:
                extra["ssl_ca_certs"] = self.tls_ca_file
        if self.password is not None:
            extra["password"] = self.password
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": timeout or self.command_timeout,
            "health_check_interval": 0,
            "retry_on_timeout": False,
            "client_name": f"streamgate-{self.node_id}"[:64].replace(" ", "_"),
            **extra,
        }
        if max_connections is not None:
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=max_connections,
                timeout=timeout or self.command_timeout,
                **kwargs,
            )
            return Redis(connection_pool=pool)
        client: Redis = Redis.from_url(self.url, **kwargs)
        return client


def _password(settings: Settings) -> str | None:
    cluster = settings.cluster
    if cluster.password_file is not None:
        try:
            text = cluster.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"[cluster] password_file {cluster.password_file}: cannot read: {exc}"
            ) from None
        return text.rstrip("\r\n")
    if cluster.password is not None:
        return cluster.password.get_secret_value()
    return None  # from the URL, if any


def cluster_options(settings: Settings) -> ClusterOptions | None:
    """The resolved ``[cluster]``, or ``None`` when ``redis_url`` is unset."""
    cluster = settings.cluster
    if cluster.redis_url is None:
        return None
    node_id = cluster.node_id
    if not node_id:
        port = listen_addresses(settings.rtmp.listen)[0][1]
        node_id = f"{socket.gethostname()}:{port}"
    return ClusterOptions(
        url=cluster.redis_url.get_secret_value(),
        password=_password(settings),
        node_id=node_id,
        keys=Keys(cluster.key_prefix),
        connect_timeout=cluster.connect_timeout,
        command_timeout=cluster.command_timeout,
        budget_wait=cluster.budget_wait,
        claim_wait=max(cluster.claim_wait, cluster.budget_wait),
        heartbeat_interval=cluster.heartbeat_interval,
        reconcile_interval=cluster.reconcile_interval,
        backoff_initial=cluster.backoff_initial,
        backoff_max=cluster.backoff_max,
        tls_ca_file=str(cluster.tls_ca_file) if cluster.tls_ca_file else None,
        fleet_rate=settings.edge.fleet_max_connects_per_second if settings.mode == "edge" else 0,
    )
