"""A small bounded HTTP/1.1 client for the gateway's own outbound calls.

The auth hook and the origin directory talk to HTTP services the operator
runs; neither needs more than one request per connection. Everything is
bounded: one deadline for the whole exchange and a cap on the response
body. Responses are parsed by h11 (the same parser as our API server), so
chunked bodies, content lengths and malformed answers are handled in one
place.

``https://`` uses the default verified context unless the caller passes its
own (the edge's directory polls pass ``[edge] tls_*``'s); a certificate that
fails verification is explained by :mod:`streamgate.tls.diagnosis`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import h11

from streamgate.tls.diagnosis import ORIGIN_HINTS, explain_ssl_error, explain_verify_error

__all__ = ["HttpError", "HttpReply", "HttpTarget", "HttpTimeout", "fetch"]


class HttpError(Exception):
    """The service could not be reached or did not answer in HTTP within bounds."""


class HttpTimeout(HttpError):
    """No complete answer before the deadline."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A parsed ``http(s)://host[:port]/path?query`` URL."""

    url: str
    host: str
    port: int
    tls: bool
    path: str

    @classmethod
    def parse(cls, url: str, what: str = "URL") -> HttpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{what} must be http(s)://host[:port]/path, got {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"{what} has an invalid port: {url!r}") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, parts.hostname, port, parts.scheme == "https", path)


async def fetch(
    target: HttpTarget,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    timeout: float,
    max_body: int,
    unix_path: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> HttpReply:
    """One request on a fresh connection; raises :class:`HttpError` on any failure.

    ``unix_path``: connect to that unix socket instead of the target's host;
    ``tls``/``server_name``: the context and the verified name (default: the
    system's trust store, the target's host) of an ``https://`` target."""
    where = f"{target.host}:{target.port}"
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(
                target, method, body, headers, max_body, unix_path, tls, server_name
            )
    except TimeoutError:
        raise HttpTimeout(f"no answer from {where} within {timeout:g} s") from None
    except ssl.SSLCertVerificationError as exc:
        name = server_name or target.host
        text = explain_verify_error(
            exc.verify_code, exc.verify_message, None, name, datetime.now(UTC), ORIGIN_HINTS
        )
        raise HttpError(f"{where}: {text}") from None
    except ssl.SSLError as exc:
        raise HttpError(f"{where}: {explain_ssl_error(exc)}") from None
    except (OSError, h11.ProtocolError) as exc:
        raise HttpError(f"{target.host}:{target.port}: {exc or type(exc).__name__}") from None


async def _exchange(
    target: HttpTarget,
    method: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    max_body: int,
    unix_path: str | None = None,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> HttpReply:
    if unix_path is not None:
        reader, writer = await asyncio.open_unix_connection(unix_path)
    elif target.tls:
        reader, writer = await asyncio.open_connection(
            target.host,
            target.port,
            ssl=tls or True,
            server_hostname=server_name or target.host,
        )
    else:
        reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
        head = [
            ("Host", f"{target.host}:{target.port}"),
            ("User-Agent", "streamgate"),
            ("Connection", "close"),
            *headers,
        ]
        if method != "GET" or body:
            head.append(("Content-Length", str(len(body))))
        out = conn.send(h11.Request(method=method, target=target.path, headers=head))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()
        status = 0
        payload = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                payload += event.data
                if len(payload) > max_body:
                    raise HttpError(f"{target.host}:{target.port}: response over {max_body} bytes")
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                if not status:
                    raise HttpError(f"{target.host}:{target.port}: closed without an answer")
                return HttpReply(status, bytes(payload))
    finally:
        writer.close()
