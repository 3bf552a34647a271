"""A small, bounded HTTP/1.1 server on asyncio, driven by h11 (sans-IO).

The protocol adapter only relays, as the RTMP session does: bytes go into the
h11 connection, its events come out, a synchronous handler turns each request
into a :class:`Response`, and the bytes h11 renders go to the transport.
Handlers run on the event loop, so they may read the gateway's state directly.

Bounds, per :class:`HttpLimits`: request line plus headers, body bytes, the
time a client has to send one request (idle keep-alive included), requests
per connection and concurrent connections. Whatever a client does wrong ends
only its own connection, with a JSON error where one can still be sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import h11

__all__ = [
    "Handler",
    "HttpLimits",
    "HttpServer",
    "Request",
    "Response",
    "error_response",
    "json_response",
]

log = logging.getLogger("streamgate.api")

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one HTTP client may cost the gateway."""

    max_connections: int = 64
    """Concurrent connections; one more is answered 503 and closed."""
    max_header_bytes: int = 16384
    """Request line plus headers; more is answered 431 (h11's incomplete-event bound)."""
    max_body_bytes: int = 65536
    """Request body bytes read (and ignored: no endpoint takes a body); more closes."""
    read_timeout: float = 10.0
    """Seconds a client has to send a whole request, counted from the connection or the
    previous response (so it bounds idle keep-alive too); then 408 or a silent close."""
    max_requests_per_connection: int = 100
    """Keep-alive cap: the last response carries ``Connection: close``."""
    backlog: int = 128
    """Listen backlog."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request head; header names are lower case, values decoded as Latin-1."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, body and any headers beyond the framing ones."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response]


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """``payload`` as a JSON response (ASCII-only, so any stream name is safe to send)."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")
    return Response(status, body + b"\n", JSON, headers)


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """The one error shape every endpoint uses: ``{"error": {"status", "reason", "message"}}``."""
    reason = http.HTTPStatus(status).phrase
    return json_response(
        status, {"error": {"status": status, "reason": reason, "message": message}}, headers
    )


def _busy_bytes() -> bytes:
    """The whole 503 sent to a connection over the cap (rendered once, no h11 state)."""
    body = error_response(503, "too many HTTP connections; try again later").body
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"content-type: {JSON}\r\ncontent-length: {len(body)}\r\n"
        "retry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_BUSY = _busy_bytes()
_MAX_REASON = 120


class HttpServer:
    """Listens, admits at most ``limits.max_connections`` and serves them with ``handler``."""

    def __init__(
        self, handler: Handler, limits: HttpLimits, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.loop = loop
        self.connections: set[HttpConnection] = set()
        # Outcomes for metrics: "status:<code>", "rejected_busy", "timeouts", "bad_requests".
        self.counters: Counter[str] = Counter()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting."""
        self._server = await self.loop.create_server(
            lambda: HttpConnection(self),
            host,
            port,
            backlog=self.limits.backlog,
            reuse_address=True,
        )

    async def close(self) -> None:
        """Stop accepting and drop every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def admit(self, conn: HttpConnection) -> bool:
        if len(self.connections) >= self.limits.max_connections:
            self.counters["rejected_busy"] += 1
            return False
        self.connections.add(conn)
        return True

    def forget(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)


class HttpConnection(asyncio.Protocol):
    """One HTTP client connection: relays between the socket and an h11 server core."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=server.limits.max_header_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests = 0
        self._method = b""
        self._body_bytes = 0
        self._got_bytes = False  # part of a request arrived in this cycle
        self._write_paused = False
        self._yielding = False  # a pipelined request waits for the next loop turn
        self._timer: asyncio.TimerHandle | None = None

    @property
    def write_paused(self) -> bool:
        """The client is not reading its responses: nothing is read from it either."""
        return self._write_paused

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if not self.server.admit(self):
            self.closed = True
            self.transport.write(_BUSY)
            self.transport.close()
            return
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._got_bytes = True
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        if not self.closed:
            self.h11.receive_data(b"")
            self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
        self._cancel_timer()

    def pause_writing(self) -> None:
        # A client that does not read its responses stops being read from.
        self._write_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._process()

    # ------------------------------------------------------------ h11 events

    def _process(self) -> None:
        conn = self.h11
        while not self.closed and not self._write_paused and not self._yielding:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
                if self._body_bytes > self.limits.max_body_bytes:
                    log.info(
                        "http: request body over %d bytes; closing", self.limits.max_body_bytes
                    )
                    self.abort()
                    return
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return
            # The answer went out with the request head, so once the request is
            # over (EndOfMessage) both sides are done: start the next exchange
            # now, so the read timeout counts idle keep-alive from here.
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                self._next_cycle()
                if conn.trailing_data[0]:
                    self._yield()  # one request per loop turn: RTMP work goes first
                    return
            elif event is h11.PAUSED:  # e.g. an HTTP/1.0 client: nothing more to read
                self.close()
                return

    def _yield(self) -> None:
        """Serve the next pipelined request on a later loop turn, reading nothing
        meanwhile: a client pipelining thousands of requests cannot hold the loop."""
        self._yielding = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.server.loop.call_soon(self._resume_pipeline)

    def _resume_pipeline(self) -> None:
        self._yielding = False
        if self.closed or self.transport is None:
            return
        if not self._write_paused:
            self.transport.resume_reading()
        self._process()

    def _on_request(self, event: h11.Request) -> None:
        # No endpoint takes a body, so the answer goes out as soon as the head is
        # in; a body (or a client waiting for 100-continue) is then read and dropped.
        self.requests += 1
        self._method = event.method
        request = Request(
            event.method.decode("ascii", "replace"),
            event.target.decode("ascii", "replace"),
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers),
        )
        try:
            response = self.server.handler(request)
        except Exception:
            log.exception("http: %s %s failed", request.method, request.target[:200])
            response = error_response(500, "internal error; see the gateway's log")
        last = self.requests >= self.limits.max_requests_per_connection
        self._send(response, close=last)

    def _next_cycle(self) -> None:
        self.h11.start_next_cycle()
        self._body_bytes = 0
        self._method = b""
        self._got_bytes = bool(self.h11.trailing_data[0])  # pipelined bytes: a request began
        self._arm_timer()

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        self.server.counters["bad_requests"] += 1
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        # h11 may quote what the client sent: keep it short in the log and the answer.
        reason = str(exc)[:_MAX_REASON]
        log.info("http: bad request (%s); closing", reason)
        self._send(error_response(status, f"bad request: {reason}"), close=True)

    # ------------------------------------------------------------ output

    def _send(self, response: Response, *, close: bool) -> None:
        conn = self.h11
        if self.transport is None or conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.abort()  # nothing sensible can be said any more
            return
        headers = [
            (b"content-type", response.content_type.encode("ascii")),
            (b"content-length", str(len(response.body)).encode("ascii")),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
            (b"date", email.utils.formatdate(usegmt=True).encode("ascii")),
            *((k.encode("ascii"), v.encode("ascii")) for k, v in response.headers),
        ]
        if close:
            headers.append((b"connection", b"close"))
        try:
            parts = [
                conn.send(
                    h11.Response(
                        status_code=response.status,
                        headers=headers,
                        reason=http.HTTPStatus(response.status).phrase.encode("ascii"),
                    )
                )
            ]
            if response.body and self._method != b"HEAD":
                parts.append(conn.send(h11.Data(data=response.body)))
            parts.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            log.exception("http: could not render a %d response", response.status)
            self.abort()
            return
        out = b"".join(part for part in parts if part)
        self.server.counters[f"status:{response.status}"] += 1
        self.transport.write(out)
        if self.h11.our_state is h11.MUST_CLOSE:  # re-read: sending moved the state on
            self.close()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        self._timer = self.server.loop.call_later(self.limits.read_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.server.counters["timeouts"] += 1
        if self._got_bytes and self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            log.info("http: request not received within %g s; closing", self.limits.read_timeout)
            self._send(error_response(408, "request not received in time"), close=True)
            return  # _send closes once the 408 is flushed
        self.abort()

    def close(self) -> None:
        """Close after what was written has been sent."""
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, dropping anything still buffered."""
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()
