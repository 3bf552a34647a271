"""Play URLs of a stream, signed when the gateway's play auth takes tokens.

``GET /api/v1/streams/{app}/{name}/play-urls`` answers::

    {"app", "name", "auth", "signed", "expires", "note",
     "flv": "http://HOST:FLVPORT/app/name.flv?...",   (null: [flv] off)
     "ws":  "ws://HOST:FLVPORT/app/name.flv?...",     (null: [flv] off or websocket off)
     "rtmp": "rtmp://HOST:RTMPPORT/app/name?..."}

HOST is the host part of the request's ``Host`` header (what the asking
browser reached the API by), else the listener's own address; the ports are
the first of ``[flv] listen`` and ``[rtmp] listen``. The token is made by the
same code as ``streamgate sign`` (:func:`~streamgate.auth.tokens.token_query`)
with the newest play key (the last one listed) and lives :data:`TTL` seconds
(less if ``[auth] max_token_lifetime`` is shorter): ``signed``, ``nms`` and
``secure_link`` are signed (bound to the asking address with ``bind_ip``),
``none`` needs no token and ``hook`` cannot be signed here (``note`` says so).
Nothing is looked up: the URLs of a stream not live yet are made the same way.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any
from urllib.parse import quote

from streamgate.auth.tokens import token_query
from streamgate.config import Settings, listen_addresses, load_keys
from streamgate.errors import ConfigError

__all__ = ["TTL", "PlayKeys", "listen_host", "play_urls", "request_host"]

TTL = 300.0
"""Seconds a signed play URL from the API stays valid (it is needed only to start)."""

_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}")
# Wildcard listen addresses: not something to put in a URL.
_ANY = {"0.0.0.0", "::", ""}  # noqa: S104


def request_host(host_header: str | None) -> str | None:
    """The host part of a ``Host`` header, made safe for a URL; None if it is not
    a plain name, IPv4 or bracketed IPv6 address."""
    if not host_header:
        return None
    value = host_header.strip()
    if value.startswith("["):
        inside, sep, _ = value[1:].partition("]")
        try:
            return f"[{ipaddress.IPv6Address(inside)}]" if sep else None
        except ValueError:
            return None
    name = value.rpartition(":")[0] if ":" in value else value
    return name if _HOSTNAME.fullmatch(name) else None


def listen_host(listen: str | list[str]) -> tuple[str, int]:
    """The first address of a ``listen`` setting as a URL's host and port (a
    wildcard address as loopback, IPv6 in brackets)."""
    host, port = listen_addresses(listen)[0]
    if host in _ANY:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return host, port


class PlayKeys:
    """The play keys of the settings in force, read once per settings object
    (a reload replaces the object, so rotated keys are picked up)."""

    def __init__(self) -> None:
        self._for: tuple[Settings, dict[str, bytes] | ConfigError] | None = None

    def get(self, settings: Settings) -> dict[str, bytes]:
        if self._for is None or self._for[0] is not settings:
            try:
                keys: dict[str, bytes] | ConfigError = load_keys(settings.auth)[0]
            except ConfigError as exc:
                keys = exc
            self._for = (settings, keys)
        found = self._for[1]
        if isinstance(found, ConfigError):
            raise found
        return found


def play_urls(
    settings: Settings,
    keys: PlayKeys,
    app: str,
    name: str,
    *,
    host: str | None,
    peer: str = "",
    now: float | None = None,
) -> dict[str, Any]:
    """The play URLs of ``app``/``name`` for a viewer that reached the API at ``host``."""
    auth = settings.auth
    method = auth.play
    now = time.time() if now is None else now
    query, note, expires = "", None, None
    if method in ("signed", "nms", "secure_link"):
        play_keys = keys.get(settings)
        kid = list(play_keys)[-1]
        ttl = TTL
        if auth.max_token_lifetime:
            ttl = min(ttl, auth.max_token_lifetime)
        expires = int(now + ttl)
        ip = peer if auth.bind_ip else ""
        if auth.bind_ip:
            note = (
                f"bound to {peer}, the address this request came from"
                if peer
                else "[auth] bind_ip is on but the asking address is unknown: "
                "these URLs will be refused"
            )
        query = token_query(
            method,
            "play",
            app,
            name,
            expires,
            play_keys[kid],
            kid if method == "signed" else None,
            ip,
        )
    elif method != "none":
        note = f"[auth] play = {method!r}: the page cannot sign play URLs; these carry no token"
    suffix = f"?{query}" if query else ""
    rtmp_host, rtmp_port = listen_host(settings.rtmp.listen)
    view: dict[str, Any] = {
        "app": app,
        "name": name,
        "auth": method,
        "signed": bool(query),
        "expires": expires,
        "note": note,
        "flv": None,
        "ws": None,
        "rtmp": f"rtmp://{host or rtmp_host}:{rtmp_port}/{app}/{name}{suffix}",
    }
    flv = settings.flv
    if flv.enabled:
        flv_host, flv_port = listen_host(flv.listen)
        # The listener takes the app up to the last slash: a name holding one cannot
        # be played over FLV (its slash is sent encoded all the same).
        path = f"/{quote(app, safe='/')}/{quote(name, safe='')}.flv{suffix}"
        view["flv"] = f"http://{host or flv_host}:{flv_port}{path}"
        if flv.websocket:
            view["ws"] = f"ws://{host or flv_host}:{flv_port}{path}"
    return view
