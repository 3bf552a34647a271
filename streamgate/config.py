"""Settings: one pydantic-settings model tree, from a TOML file and the environment.

Precedence, highest first: ``STREAMGATE_<SECTION>__<NAME>`` environment
variables, then the TOML file given with ``-c``, then the defaults here.
Every field's description is its entry in the configuration reference.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streamgate.errors import ConfigError

__all__ = [
    "AuthSettings",
    "ClusterSettings",
    "DemoSettings",
    "EdgeSettings",
    "FlvSettings",
    "HttpSettings",
    "LimitsSettings",
    "LogSettings",
    "OriginSettings",
    "RtmpSettings",
    "Settings",
    "TlsCertificate",
    "listen_addresses",
    "load_keys",
    "load_settings",
    "parse_listen",
]


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:1935"`` or ``"[::1]:1935"`` -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - an explicit ":port" means all
    return host, int(port)


def listen_addresses(value: str | list[str]) -> list[tuple[str, int]]:
    """A ``listen`` setting (one HOST:PORT or a list of them) -> [(host, port), ...]."""
    items = [value] if isinstance(value, str) else value
    return [parse_listen(item) for item in items]


def _check_listen_value(value: str | list[str]) -> str | list[str]:
    if not isinstance(value, str) and not value:
        raise ValueError("expected HOST:PORT or a non-empty list of them")
    listen_addresses(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TlsCertificate(_Section):
    """One served certificate, chosen by the name a client asks for (SNI)."""

    names: list[str] = Field(
        min_length=1,
        description='Host names this certificate serves ("*.example.com" for a wildcard).',
    )
    cert: Path = Field(description="PEM file: the certificate and its chain (full chain).")
    key: Path = Field(description="PEM file: its private key.")


class RtmpSettings(_Section):
    """The RTMP listener and what every connection may do."""

    listen: str | list[str] = Field(
        "127.0.0.1:1935",
        description=(
            "Address and port the RTMP listener binds, HOST:PORT ([::1]:PORT for IPv6), or a "
            'list of them (e.g. ["0.0.0.0:1935", "[::]:1935"]). Needs a restart.'
        ),
    )
    backlog: int = Field(
        4096,
        ge=1,
        description=(
            "Listen backlog (accept queue length; the kernel caps it at net.core.somaxconn). "
            "A burst beyond it overflows the queue: such clients believe they are connected "
            "while the gateway never sees them (streamgate_listen_overflows_total counts it)."
        ),
    )
    chunk_size: int = Field(
        60000,
        ge=128,
        le=65536,
        description=(
            "Chunk size we send with (announced to every peer). SRS's 60000: a message is "
            "mostly one chunk, so every receiver parses fewer headers (nginx-rtmp: 4096)."
        ),
    )
    window_ack_size: int = Field(
        2_500_000, ge=4096, description="Window acknowledgement size we ask peers to ack at."
    )
    handshake_timeout: float = Field(
        5.0, gt=0, description="Seconds a new connection has to complete the handshake."
    )
    command_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds from accept until the connection must be playing or publishing.",
    )
    max_message_size: int = Field(
        8 << 20,
        ge=65536,
        le=64 << 20,
        description="Largest RTMP message accepted from a peer, in bytes; larger is an error.",
    )
    max_chunk_streams: int = Field(
        64, ge=8, le=65599, description="Most chunk stream ids one peer may keep state for."
    )
    max_streams_per_connection: int = Field(
        8, ge=1, le=1024, description="Most createStream ids one connection may hold."
    )
    merge_ms: int = Field(
        50,
        ge=0,
        le=2000,
        description=(
            "Merged writes: media accumulates for this many milliseconds and each player "
            "gets one write per flush. 0 writes every message at once; SRS uses 350. An "
            "edge also reads its upstream merged: what a live origin sends is decoded in "
            "one go per interval, then written out at once."
        ),
    )
    sendfile: bool = Field(
        True,
        description=(
            "Send flushes of 64 KB and more to players with sendfile(2) from one in-memory "
            "file (Linux): the kernel shares the pages instead of copying them per player "
            "(35-45 % less CPU per byte). Off: every flush is written. A reload "
            "applies it, like the other fan-out settings, to streams that start after it."
        ),
    )
    player_buffer: int = Field(
        1 << 20,
        ge=65536,
        description=(
            "Bytes buffered for a player beyond what its socket takes before it is treated "
            "as congested and skips to the next keyframe."
        ),
    )
    slow_player_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a congested player may stay congested before it is dropped.",
    )

    drain_time: float = Field(
        5.0,
        ge=0,
        le=300,
        description=(
            "On shutdown, seconds players and publishers get to receive their goodbye "
            "(UnpublishNotify) before the remaining connections are cut."
        ),
    )
    workers: int | Literal["auto"] = Field(
        1,
        description=(
            'Worker processes: 1 (one process, no supervisor), N, or "auto" (the CPUs this '
            "process may run on). With more than one, a supervisor starts them, each accepts "
            "on the same listen addresses (SO_REUSEPORT) and every stream is pulled by one "
            "owning worker; bans, misses, per-IP counts and the connect budget hold for the "
            "whole machine. Ports must be fixed (not 0). Needs a restart."
        ),
    )

    tls_listen: str | list[str] | None = Field(
        None,
        description=(
            "RTMPS: address and port (or a list) where players and publishers connect over "
            "TLS 1.2+ (e.g. 127.0.0.1:1936). Unset: no RTMPS. Admission and bans apply "
            "before the TLS handshake; the handshake counts against handshake_timeout. "
            "Needs a restart."
        ),
    )
    tls_cert: Path | None = Field(
        None,
        description=(
            "PEM file with the served certificate and its chain (full chain). Reloaded on "
            "SIGHUP, POST /api/v1/reload and when the file changes; a replacement that "
            "does not load (wrong key, expired, unreadable) is refused and the old one "
            "stays in use."
        ),
    )
    tls_key: Path | None = Field(None, description="PEM file with tls_cert's private key.")
    tls_certs: list[TlsCertificate] = Field(
        default_factory=list,
        description=(
            "More certificates, chosen by the host name a client asks for (SNI), as "
            "[[rtmp.tls_certs]] tables with names, cert and key; tls_cert serves the rest."
        ),
    )

    @field_validator("workers")
    @classmethod
    def _check_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 256:
            raise ValueError('expected 1 to 256 or "auto"')
        return value

    @property
    def worker_count(self) -> int:
        """``workers`` as a number ("auto": the CPUs this process may run on)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return int(self.workers)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | list[str]) -> str | list[str]:
        return _check_listen_value(value)

    @field_validator("tls_listen")
    @classmethod
    def _check_tls_listen(cls, value: str | list[str] | None) -> str | list[str] | None:
        return None if value is None else _check_listen_value(value)

    @model_validator(mode="after")
    def _check_tls(self) -> RtmpSettings:
        if self.tls_listen is None:
            return self
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is None and not self.tls_certs:
            raise ValueError("tls_listen needs tls_cert and tls_key (or [[rtmp.tls_certs]])")
        plain = {a for a in listen_addresses(self.listen) if a[1] != 0}
        if plain & set(listen_addresses(self.tls_listen)):
            raise ValueError("tls_listen must differ from listen")
        return self


class OriginSettings(_Section):
    """Origin mode: publishers push here, players play from here."""

    play_wait: float = Field(
        0.0,
        ge=0,
        le=60,
        description=(
            "Seconds a play of an unpublished stream waits for a publisher before it is "
            "answered NetStream.Play.StreamNotFound. 0 answers at once (nginx-rtmp's "
            "idle_streams off)."
        ),
    )
    publish_idle_timeout: float = Field(
        10.0, gt=0, description="Seconds without media after which a publisher is dropped."
    )
    gop_cache: bool = Field(
        True, description="Start new players at the last keyframe, with metadata and headers."
    )
    max_gop_bytes: int = Field(
        16 << 20,
        ge=1 << 20,
        description="Largest GOP kept in the cache; beyond it, new players start live.",
    )


class EdgeSettings(_Section):
    """Edge mode: pull streams on demand from origins, one upstream link per stream."""

    origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins to pull from, rtmp://host[:port] or rtmps://host[:port] (TLS, port 443 "
            "by default, verified with the tls_* settings), tried in order (failover); the "
            "player's app and stream name select the upstream stream."
        ),
    )
    start_timeout: float = Field(
        5.0,
        gt=0,
        description=(
            "Seconds a new stream has to deliver its first media; otherwise its players get "
            "NetStream.Play.StreamNotFound (the only signal from an SRS origin)."
        ),
    )
    idle_timeout: float = Field(
        10.0, gt=0, description="Seconds without media after which a live stream is ended."
    )
    missing_ttl: float = Field(
        10.0,
        ge=0,
        description="Seconds a missing stream stays in the negative cache (refused at once).",
    )
    linger: float = Field(
        5.0, ge=0, description="Seconds the upstream link stays open after the last player left."
    )
    reconnect_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds players wait for a lost upstream to come back before Play.Failed.",
    )
    backoff_initial: float = Field(
        0.5, gt=0, description="First reconnect delay ceiling; doubles per attempt, full jitter."
    )
    backoff_max: float = Field(30.0, gt=0, description="Largest reconnect delay ceiling.")
    max_upstreams: int = Field(
        1000, ge=1, description="Most concurrent upstream links per origin; beyond, plays fail."
    )
    max_connects_per_second: float = Field(
        20.0,
        gt=0,
        description="New upstream connects in any one second, per origin (sliding window).",
    )
    fleet_max_connects_per_second: float = Field(
        0.0,
        ge=0,
        description=(
            "New upstream connects per second per origin for the whole fleet ([cluster] "
            "edges sharing one Redis), on top of max_connects_per_second; 0: off. Checked "
            "with an atomic Redis script, waiting at most [cluster] budget_wait; an answer "
            "later than that refuses the connect (the bound fails closed). While Redis is "
            "found down, the local limit and this edge's share of the fleet rate apply "
            "(refused if the budget was found spent a moment ago)."
        ),
    )
    connect_timeout: float = Field(
        3.0,
        gt=0,
        description=(
            "Seconds for the TCP connect toward an origin and, for rtmps://, the TLS "
            "handshake with it (one deadline for both)."
        ),
    )
    reply_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds an origin has for the handshake and its connect/play replies.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive connect failures that open an origin's circuit."
    )
    breaker_reset: float = Field(
        10.0, gt=0, description="Seconds an open circuit waits before one probe connect."
    )
    max_redirects: int = Field(
        2, ge=0, le=5, description="RTMP redirects (ex.redirect) followed per link."
    )
    forward_query: bool = Field(
        False,
        description="Pass the player's query string upstream (and key streams by it).",
    )
    upstream_secret: SecretStr | None = Field(
        None,
        description=(
            "Sign each upstream play (once per stream, not per player) with this secret, "
            "in streamgate's signed format, so the origin can verify the edge."
        ),
    )
    upstream_kid: str | None = Field(None, description="Key id sent with upstream signatures.")
    upstream_token_ttl: float = Field(
        3600.0, gt=0, description="Seconds an upstream signature is valid (re-signed per link)."
    )
    directory: list[str] = Field(
        default_factory=list,
        description=(
            "HTTP URLs of the origins' stream listings, one per origin in the same order "
            "('' for none): streamgate http://host:port/api/v1/directory, nginx-rtmp's "
            "rtmp_stat page, SRS http://host:1985/api/v1/streams/?count=10000. Listed "
            "streams start even when the connect rate is spent on misses, from the origin "
            "that has them, and override the negative cache."
        ),
    )
    directory_interval: float = Field(
        1.0, ge=0.1, le=60, description="Seconds between polls of each directory URL."
    )
    directory_authoritative: bool = Field(
        False,
        description=(
            "Refuse a name no origin lists (every listing fresh) without connecting: misses "
            "cost the origin nothing, but a stream published within the last poll interval "
            "is not found yet."
        ),
    )
    directory_token: SecretStr | None = Field(
        None,
        description="Bearer token sent with directory polls (a streamgate origin's [http] token).",
    )
    tls_verify: bool = Field(
        True,
        description=(
            "Verify rtmps:// origins (and https:// directory URLs): chain, dates and host "
            "name. false is logged as a warning at start and shown in /api/v1/origins."
        ),
    )
    tls_ca_file: Path | None = Field(
        None,
        description=(
            "PEM file of the CAs trusted for rtmps:// origins and https:// directories "
            "(only these). Unset: the system's trust store."
        ),
    )
    tls_server_name: str | None = Field(
        None,
        description=(
            "The name sent as SNI and checked in the origins' certificates, for origins "
            "addressed by IP. Unset: each origin's host name."
        ),
    )
    tls_pin_sha256: list[str] = Field(
        default_factory=list,
        description=(
            "SHA-256 fingerprints (hex, colons allowed) of an origin certificate or of its "
            "public key (SubjectPublicKeyInfo); when set, an rtmps:// origin must present "
            "one of them, besides passing verification (unless tls_verify = false: then the "
            "pin alone is checked). Not used for https:// directories."
        ),
    )

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        from streamgate.edge.origins import parse_origin

        for url in value:
            parse_origin(url)
        return value

    @field_validator("directory")
    @classmethod
    def _check_directory(cls, value: list[str]) -> list[str]:
        from streamgate.http_client import HttpTarget

        for url in value:
            if url:
                HttpTarget.parse(url, "directory URL")
        return value

    @field_validator("tls_pin_sha256")
    @classmethod
    def _check_pins(cls, value: list[str]) -> list[str]:
        pins = []
        for pin in value:
            digits = pin.replace(":", "").strip().lower()
            if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
                raise ValueError(f"{pin!r} is not a SHA-256 fingerprint (64 hex digits)")
            pins.append(digits)
        return pins

    @model_validator(mode="after")
    def _check_backoff(self) -> EdgeSettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        if self.directory and len(self.directory) != len(self.origins):
            raise ValueError(
                f"directory has {len(self.directory)} URLs for {len(self.origins)} origins "
                "(one per origin, '' for none)"
            )
        if self.directory_authoritative and not any(self.directory):
            raise ValueError("directory_authoritative needs directory URLs")
        return self


AuthMethod = Literal["none", "signed", "hook", "nms", "secure_link"]


class AuthSettings(_Section):
    """Play and publish authorisation, checked before any upstream or stream work."""

    play: AuthMethod = Field(
        "none",
        description=(
            "How plays are authorised: none, signed (streamgate HMAC-SHA256 URLs), hook "
            "(HTTP), nms (Node-Media-Server sign=), secure_link (nginx md5=&expires=)."
        ),
    )
    publish: AuthMethod = Field("none", description="How publishes are authorised (as play).")
    keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Play keys, key id -> secret; several at once for rotation.",
    )
    keys_file: Path | None = Field(
        None, description='TOML file of play keys (kid = "secret"), re-read on reload.'
    )
    publish_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Publish keys, key id -> secret; never used for plays.",
    )
    publish_keys_file: Path | None = Field(
        None, description="TOML file of publish keys, re-read on reload."
    )
    clock_skew: float = Field(
        30.0, ge=0, le=3600, description="Seconds a token is still accepted after its expiry."
    )
    bind_ip: bool = Field(
        False, description="Tokens cover the client's IP address (signed and secure_link)."
    )
    max_token_lifetime: float = Field(
        86_400.0,
        ge=0,
        description=(
            "Longest a token may still be valid, in seconds (plus clock_skew): a token "
            "(signed, nms, secure_link) whose expiry is further ahead is refused with "
            '"token lifetime exceeds max_token_lifetime", and streamgate sign refuses to '
            "make one. 0: no maximum. An edge's upstream_token_ttl must stay within its "
            "origin's maximum."
        ),
    )
    hook_url: str | None = Field(
        None, description="URL the auth hook POSTs to (JSON: action, client_id, ip, app, ...)."
    )
    hook_timeout: float = Field(2.0, gt=0, le=30, description="Seconds the hook has to answer.")
    hook_cache: float = Field(
        5.0, ge=0, description="Seconds a hook decision is reused for the same request."
    )
    hook_failure: Literal["deny", "allow"] = Field(
        "deny", description="What an unreachable or slow hook means."
    )


class LimitsSettings(_Section):
    """Abuse protection: connection limits, rates and fail2ban-style bans."""

    max_connections: int = Field(
        10_000,
        ge=1,
        description=(
            "Most connections at once, in all: a hard ceiling, allow-listed addresses "
            "included (size it to the file descriptors the process may open)."
        ),
    )
    reserved_connections: int = Field(
        50,
        ge=0,
        description=(
            "Connections of max_connections kept for allow-listed networks (allow): other "
            "addresses are refused once max_connections - reserved_connections are open, so "
            "monitoring, edges and the origin still get in while a flood has taken the rest. "
            "Allow-listed addresses may use all of max_connections, never more. Must be less "
            "than max_connections; unused (0) while allow is empty."
        ),
    )
    max_connections_per_ip: int = Field(
        200, ge=1, description="Most connections at once from one IP (allow-listed: no limit)."
    )
    connections_per_second_per_ip: float = Field(
        20.0, gt=0, description="New connections per second from one IP (token bucket)."
    )
    ban_after_failures: int = Field(
        10,
        ge=1,
        description="Auth failures, or plays of distinct missing streams, that ban an IP.",
    )
    ban_window: float = Field(60.0, gt=0, description="Seconds those failures are counted over.")
    ban_time: float = Field(
        300.0, gt=0, description="First ban's length in seconds; doubles on each repeat offence."
    )
    ban_max_time: float = Field(86_400.0, gt=0, description="Longest ban in seconds.")
    allow: list[str] = Field(
        default_factory=list,
        description=(
            "Trusted networks (CIDR): never banned, no per-IP limits (monitoring, the "
            "origin, other edges)."
        ),
    )

    @field_validator("allow")
    @classmethod
    def _check_allow(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @model_validator(mode="after")
    def _check_reserve(self) -> LimitsSettings:
        if self.allow and self.reserved_connections >= self.max_connections:
            raise ValueError(
                f"reserved_connections ({self.reserved_connections}) must be less than "
                f"max_connections ({self.max_connections}): others need room too"
            )
        return self


class HttpSettings(_Section):
    """The HTTP API and Prometheus metrics."""

    enabled: bool = Field(True, description="Serve the HTTP API, /metrics and health checks.")
    listen: str | list[str] = Field(
        "127.0.0.1:8080",
        description=(
            "Address and port of the HTTP API, HOST:PORT (loopback by default), or a list "
            "of them. Needs a restart."
        ),
    )
    token: SecretStr | None = Field(
        None,
        description=(
            "Bearer token the API requires (Authorization: Bearer ...); /healthz, /readyz "
            "and /metrics stay open. Unset: no token."
        ),
    )
    health_listen: str | list[str] | None = Field(
        None,
        description=(
            "A second, small listener, HOST:PORT (or a list), that serves only /healthz, "
            "/readyz and /metrics, with its own connection caps: probes and scrapes "
            "pointed at it are answered whatever clients of the main API port do. "
            "Unset: none. Changing it takes effect after a restart."
        ),
    )
    max_connections: int = Field(
        64,
        ge=1,
        le=100_000,
        description=(
            "HTTP connections at once, per listener. At the cap a new connection takes the "
            "place of the one that has waited longest without sending a whole request head "
            "(a slow or idle client, answered 503 or closed); when every connection is past "
            "its head, the new one is answered 503."
        ),
    )
    max_connections_per_ip: int = Field(
        16,
        ge=1,
        le=100_000,
        description=(
            "HTTP connections at once from one IP address; one more is answered 503 at once "
            "and displaces nobody. Behind a reverse proxy all clients share its address."
        ),
    )
    header_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description=(
            "Seconds a client has to send a whole request line and headers, counted from "
            "the connection (or, on a kept-alive connection, from the first byte of the "
            "next request), however the bytes trickle in; then 408 and closed."
        ),
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "Seconds a client has to send a request body once its head is in; then 408 "
            "and closed. No request is acted on before its whole body is read."
        ),
    )
    keepalive_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a kept-alive connection may stay idle between requests.",
    )
    max_header_bytes: int = Field(
        16384,
        ge=1024,
        le=1 << 20,
        description="Bytes of request line plus headers; more is answered 431.",
    )
    max_body_bytes: int = Field(
        65536,
        ge=0,
        le=1 << 24,
        description=(
            "Bytes of request body read (and discarded: no endpoint takes one). A larger "
            "Content-Length is answered 413 before anything is done; a chunked body, whose "
            "size is not known in advance, is answered 411."
        ),
    )
    max_requests_per_connection: int = Field(
        100,
        ge=1,
        description="Requests on one kept-alive connection; the last answer says close.",
    )

    @field_validator("listen", "health_listen")
    @classmethod
    def _check_listen(cls, value: str | list[str] | None) -> str | list[str] | None:
        return None if value is None else _check_listen_value(value)

    @model_validator(mode="after")
    def _check_health_listen(self) -> HttpSettings:
        if self.health_listen is None:
            return self
        main = {a for a in listen_addresses(self.listen) if a[1] != 0}
        if main & set(listen_addresses(self.health_listen)):
            raise ValueError("health_listen must differ from listen (it is a second listener)")
        return self


class FlvSettings(_Section):
    """HTTP-FLV and WebSocket-FLV viewers: a public listener of its own."""

    enabled: bool = Field(
        False,
        description=(
            "Serve GET /{app}/{stream}.flv (HTTP-FLV) and the same URL with Upgrade: "
            "websocket (WebSocket-FLV) on [flv] listen. Viewers pass the same auth, "
            "admission, bans and play path as RTMP players. The shipped configurations "
            "turn it on."
        ),
    )
    listen: str | list[str] = Field(
        "127.0.0.1:8088",
        description=(
            "Address and port of the viewer listener, HOST:PORT, or a list of them. It is "
            "public, unlike [http] listen (the API), which stays private. Needs a restart."
        ),
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description=(
            "Origins a web page may play from (Access-Control-Allow-Origin; GET and HEAD "
            'only, no credentials). ["*"]: any page; []: no CORS header.'
        ),
    )
    websocket: bool = Field(
        True, description="Accept WebSocket-FLV (the .flv URL with Upgrade: websocket)."
    )
    max_connections: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description=(
            "Viewer connections at once on this listener. At the cap a new connection "
            "takes the place of the one that has waited longest without sending a whole "
            "request head; when every connection is playing, the new one is answered 503."
        ),
    )
    max_connections_per_ip: int = Field(
        64,
        ge=1,
        le=1_000_000,
        description=(
            "Viewer connections at once from one IP address; one more is answered 503. "
            "[limits] caps and bans apply too, shared with RTMP; addresses in [limits] "
            "allow are exempt, as they are from RTMP's per-address caps."
        ),
    )
    header_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description=(
            "Seconds a viewer has to send its whole request line and headers, however "
            "the bytes trickle in; then 408 (or a silent close if nothing came)."
        ),
    )
    max_header_bytes: int = Field(
        8192,
        ge=1024,
        le=1 << 20,
        description="Bytes of request line plus headers; more is answered 431.",
    )
    max_headers: int = Field(
        64, ge=8, le=10_000, description="Header lines in one request; more is answered 431."
    )

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | list[str]) -> str | list[str]:
        return _check_listen_value(value)


class ClusterSettings(_Section):
    """A fleet of edges sharing bans, the negative cache, a connect budget and the
    origins' directory through Redis. Every play is decided from local state; Redis
    only replicates it, so a slow or lost Redis never fails a play."""

    redis_url: SecretStr | None = Field(
        None,
        description=(
            "redis://[user:password@]host[:port][/db] or rediss:// (TLS). Unset: no cluster, "
            "the edge runs alone. Shown with its password redacted."
        ),
    )
    password: SecretStr | None = Field(
        None,
        description=(
            "Redis AUTH password, if not in the URL (environment: STREAMGATE_CLUSTER__PASSWORD)."
        ),
    )
    password_file: Path | None = Field(
        None, description="File holding the Redis AUTH password (trailing newline ignored)."
    )
    tls_ca_file: Path | None = Field(
        None, description="CA bundle to verify a rediss:// server with (default: the system's)."
    )
    node_id: str = Field(
        "",
        max_length=128,
        description="This node's name in the fleet; '' means host name and RTMP port.",
    )
    key_prefix: str = Field(
        "streamgate:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key and channel (one fleet per prefix).",
    )
    connect_timeout: float = Field(
        1.0, gt=0, le=30, description="Seconds to connect to Redis before retrying with backoff."
    )
    command_timeout: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Seconds a Redis command of the replicator may take.",
    )
    claim_wait: float = Field(
        0.25,
        gt=0,
        le=30,
        description=(
            "Most seconds a cold play waits for a name's claim answered later than "
            "budget_wait (Redis slow, or this edge's loop behind under a flood), so that "
            "a slow answer does not make a second asker; past it Redis counts as "
            "unavailable and the link opens under this edge's own limits. The most a "
            "play ever waits on Redis."
        ),
    )
    budget_wait: float = Field(
        0.05,
        gt=0,
        le=1,
        description=(
            "Most seconds an upstream connect waits for the fleet connect budget "
            "([edge] fleet_max_connects_per_second); later, the connect is refused (keep it "
            "above the Redis round trip under load). A name's claim answered later is late "
            "(see claim_wait)."
        ),
    )
    heartbeat_interval: float = Field(
        2.0,
        ge=0.1,
        le=60,
        description="Seconds between heartbeats; a node unseen for 3 of them is gone.",
    )
    reconcile_interval: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="Seconds between full reads of the shared state (pub/sub carries changes).",
    )
    backoff_initial: float = Field(
        0.5, gt=0, description="First reconnect delay ceiling toward Redis; doubles, full jitter."
    )
    backoff_max: float = Field(30.0, gt=0, description="Largest reconnect delay ceiling.")

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from urllib.parse import urlsplit

            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("redis", "rediss") or not parts.hostname:
                raise ValueError("expected redis://host[:port][/db] or rediss://...")
            try:
                parts.port  # noqa: B018 - raises on a bad port
            except ValueError:
                raise ValueError("redis_url has an invalid port") from None
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if any(c in value for c in "*?[]\\ ") or not value.isprintable():
            raise ValueError("key_prefix must be printable, without spaces or glob characters")
        return value

    @model_validator(mode="after")
    def _check_cluster(self) -> ClusterSettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        return self


class DemoSettings(_Section):
    """A built-in test source (origin mode): a test pattern with a tone, made with PyAV."""

    enabled: bool = Field(False, description="Publish the demo stream at start-up.")
    app: str = Field("live", min_length=1, description="App the demo is published under.")
    name: str = Field("demo", min_length=1, description="Stream name of the demo.")
    size: str = Field(
        "640x360", pattern=r"^\d{2,4}x\d{2,4}$", description="Picture size, WIDTHxHEIGHT."
    )
    rate: int = Field(30, ge=1, le=60, description="Frames per second.")
    bitrate: int = Field(1_000_000, ge=50_000, le=20_000_000, description="Video bits per second.")
    seconds: int = Field(
        4, ge=2, le=60, description="Length of the clip encoded once at start and looped."
    )


class LogSettings(_Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    format: Literal["text", "json"] = Field(
        "text", description="text for people, json for one JSON object per line."
    )


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    mode: Literal["origin", "edge"] = Field(
        "origin",
        description=(
            "origin: accept publishers and serve players. edge: serve players from "
            "streams pulled from [edge] origins."
        ),
    )
    rtmp: RtmpSettings = Field(default_factory=RtmpSettings)
    origin: OriginSettings = Field(default_factory=OriginSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    flv: FlvSettings = Field(default_factory=FlvSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    _toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    def warnings(self) -> list[str]:
        """Settings that are valid but most likely not what was meant."""
        found = []
        if self.mode == "origin" and "edge" in self.model_fields_set:
            found.append(
                '[edge] is set but mode is "origin", so it is ignored: this runs as an '
                'origin (set mode = "edge" to pull from [edge] origins)'
            )
        return found

    @model_validator(mode="after")
    def _check_mode(self) -> Settings:
        if self.mode == "edge" and not self.edge.origins:
            raise ValueError("edge mode needs at least one origin in [edge] origins")
        auth = self.auth
        for action, method in (("play", auth.play), ("publish", auth.publish)):
            if method == "hook" and not auth.hook_url:
                raise ValueError(f"[auth] {action} = 'hook' needs [auth] hook_url")
        if self.rtmp.workers != 1:
            fixed = [("[rtmp] listen", self.rtmp.listen)]
            if self.http.enabled:
                fixed.append(("[http] listen", self.http.listen))
            if self.flv.enabled:
                fixed.append(("[flv] listen", self.flv.listen))
            if self.rtmp.tls_listen is not None:
                fixed.append(("[rtmp] tls_listen", self.rtmp.tls_listen))
            for setting, value in fixed:
                if any(port == 0 for _, port in listen_addresses(value)):
                    raise ValueError(
                        f"{setting}: port 0 cannot be shared by workers; give a fixed port "
                        "(or set [rtmp] workers = 1)"
                    )
        return self


def _where(loc: tuple[int | str, ...]) -> str:
    if len(loc) >= 2:
        return f"[{loc[0]}] {'.'.join(str(p) for p in loc[1:])}"
    return ".".join(str(p) for p in loc) or "(top level)"


def load_settings(path: str | Path | None, **overrides: Any) -> Settings:
    """Load and validate; raises :class:`ConfigError` with file, key and reason."""
    source = str(path) if path is not None else "(defaults)"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: no such file")
        try:
            tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read: {exc}") from None
    Settings._toml_file = Path(path) if path is not None else None
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown setting"
            problems.append(f"{source}: {_where(err['loc'])}: {msg}")
        raise ConfigError("\n".join(problems)) from None
    finally:
        Settings._toml_file = None


def _read_keys(inline: Mapping[str, SecretStr], path: Path | None, what: str) -> dict[str, bytes]:
    keys = {kid: secret.get_secret_value().encode() for kid, secret in inline.items()}
    if path is not None:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
        for kid, secret in table.items():
            if not isinstance(secret, str) or not secret:
                raise ConfigError(f"{path}: {what} {kid!r} must be a non-empty string")
            keys[kid] = secret.encode()
    return keys


def load_keys(auth: AuthSettings) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(play keys, publish keys), inline and from their files; checked for safety.

    Raises :class:`ConfigError` when a token method has no key, or when the
    nms/secure_link formats (which do not sign the action) share a secret
    between play and publish: that would let a play URL publish.
    """
    play = _read_keys(auth.keys, auth.keys_file, "play key")
    publish = _read_keys(auth.publish_keys, auth.publish_keys_file, "publish key")
    for action, method, keys in (("play", auth.play, play), ("publish", auth.publish, publish)):
        if method in ("signed", "nms", "secure_link") and not keys:
            where = "keys" if action == "play" else "publish_keys"
            raise ConfigError(f"[auth] {action} = {method!r} needs [auth] {where}")
    unbound = {"nms", "secure_link"}
    if auth.play in unbound or auth.publish in unbound:
        shared = set(play.values()) & set(publish.values())
        if shared:
            raise ConfigError(
                "[auth] a secret is both a play and a publish key; with nms or secure_link "
                "tokens that would let a play URL publish"
            )
    return play, publish
