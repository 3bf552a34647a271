"""A small, bounded HTTP/1.1 server on asyncio, driven by h11 (sans-IO).

The protocol adapter only relays, as the RTMP session does: bytes go into the
h11 connection, its events come out, a synchronous handler turns each whole
request into a :class:`Response`, and the bytes h11 renders go to the transport.
Handlers run on the event loop, so they may read the gateway's state directly.

A connection is in one phase at a time, each with its own deadline (one timer,
re-armed on a phase change, never per byte):

=========  ==========================================  ======================
phase      waiting for                                 deadline
=========  ==========================================  ======================
``head``   the whole request line and headers          ``header_timeout``
``body``   the whole body (after a head that has one)  ``body_timeout``
``idle``   the first byte of the next request          ``keepalive_timeout``
=========  ==========================================  ======================

A request is handed to the handler only once it has been read whole and found
well framed, so a lying or unfinished body makes nothing happen. Bounds, per
:class:`HttpLimits`: head and body bytes, the three deadlines, requests per
connection, and connections in all and per IP address. At the global cap a new
connection takes the slot of the one that has waited longest in ``head`` or
``idle`` (slow-header clients sort first), so a trickle of slow heads cannot keep
health checks out. Whatever a client does wrong ends only its own connection,
with a JSON error where one can still be sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import h11

from streamgate.server.binding import bind_listen, bound_addresses

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
    """What one HTTP client may cost the gateway (``[http]`` settings of the same names)."""

    max_connections: int = 64
    """Concurrent connections; at the cap the longest-waiting one without a whole request
    head gives up its slot, and with none such the new one is answered 503."""
    max_connections_per_ip: int = 16
    """Concurrent connections from one address; one more is answered 503."""
    header_timeout: float = 5.0
    """Seconds for the whole request head, from the connection (or the first byte of the
    next request on a kept-alive one); then 408, or a silent close if nothing came."""
    body_timeout: float = 10.0
    """Seconds for the whole body once the head is in; then 408."""
    keepalive_timeout: float = 10.0
    """Seconds a kept-alive connection may sit idle between requests; then closed."""
    max_header_bytes: int = 16384
    """Request line plus headers; more is answered 431 (h11's incomplete-event bound)."""
    max_body_bytes: int = 65536
    """Request body bytes read (and ignored: no endpoint takes a body). A larger
    Content-Length is answered 413; a chunked body (size unknown up front) 411."""
    max_requests_per_connection: int = 100
    """Keep-alive cap: the last response carries ``Connection: close``."""
    max_headers: int = 100
    """Header lines in one request; more is answered 431."""
    backlog: int = 128
    """Listen backlog."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request head; header names are lower case, values decoded as Latin-1.

    ``peer`` is the client's address ("" on a unix socket)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    version: str = "1.1"  # the HTTP version the client spoke ("1.0" or "1.1")
    peer: str = ""

    @property
    def path(self) -> str:
        """The target without its query string (which may carry a token: log this)."""
        return self.target.partition("?")[0][:200]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, body and any headers beyond the framing ones.

    ``Cache-Control: no-store`` is added unless ``headers`` name a cache-control."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Response | Awaitable[Response]]


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


def _busy_bytes(message: str) -> bytes:
    """A whole 503 for a connection the server will not serve (rendered once, no h11)."""
    body = error_response(503, message).body
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"content-type: {JSON}\r\ncontent-length: {len(body)}\r\n"
        "retry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_BUSY = _busy_bytes("too many HTTP connections; try again later")
_BUSY_IP = _busy_bytes("too many HTTP connections from your address; try again later")
_EVICTED = _busy_bytes("the server is busy and this request was too slow to arrive")
_BUSY_WHY = {_BUSY: "too many connections", _BUSY_IP: "too many connections from the address"}
_MAX_REASON = 120

Phase = Literal["head", "body", "idle"]


class HttpServer:
    """Listens, admits connections within the caps and serves them with ``handler``.

    ``limits`` is fixed, or a callable read as each connection arrives (so a
    configuration reload applies to new connections). ``counters`` may be
    shared by several servers (the main and the health listener).
    """

    def __init__(
        self,
        handler: Handler,
        limits: HttpLimits | Callable[[], HttpLimits],
        loop: asyncio.AbstractEventLoop,
        *,
        counters: Counter[str] | None = None,
        connection: Callable[[HttpServer], HttpConnection] | None = None,
        exempt: Callable[[str], bool] | None = None,
    ) -> None:
        self.handler = handler
        # Addresses the per-address cap does not apply to (an allow-list).
        self._exempt = exempt
        # What serves each connection: an HttpConnection, or a subclass that takes
        # the connection over once a request's head is in (a media stream).
        self._connection = connection or HttpConnection
        self._limits = limits
        self.loop = loop
        self.connections: set[HttpConnection] = set()
        # Outcomes for metrics: "status:<code>", "rejected_busy" (either cap),
        # "rejected_per_ip", "evicted", "timeouts", "bad_requests".
        self.counters: Counter[str] = counters if counters is not None else Counter()
        # Admitted connections without a whole request head (phases head and
        # idle), oldest wait first: the eviction order at the cap. A dict keeps
        # insertion order and moves and removes in O(1).
        self._waiting: dict[HttpConnection, None] = {}
        self._per_ip: Counter[str] = Counter()
        self._servers: list[asyncio.Server] = []

    @property
    def limits(self) -> HttpLimits:
        """The limits in force for a connection arriving now."""
        return self._limits if isinstance(self._limits, HttpLimits) else self._limits()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) bound (with the ports the kernel chose for port 0)."""
        return bound_addresses(self._servers)

    @property
    def port(self) -> int:
        """The first bound port (useful after binding port 0)."""
        return self.addresses[0][1]

    @property
    def serving(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    async def start(
        self, setting: str, listen: str | list[str], *, reuse_port: bool = False
    ) -> None:
        """Bind every address of ``listen`` (the ``setting`` named in errors) and accept;
        ``reuse_port``: shared with other worker processes (SO_REUSEPORT)."""
        self._servers = await bind_listen(
            self.loop,
            lambda: self._connection(self),
            setting,
            listen,
            backlog=self.limits.backlog,
            reuse_port=reuse_port,
        )

    def stop_accepting(self) -> None:
        """Close the listening sockets; connections already made go on."""
        for server in self._servers:
            server.close()

    async def start_unix(self, path: str) -> None:
        """Accept on the unix socket ``path`` (a worker's API, for its supervisor)."""
        self._servers = [
            await self.loop.create_unix_server(
                lambda: self._connection(self), path, backlog=self.limits.backlog
            )
        ]

    async def close(self) -> None:
        """Stop accepting and drop every connection."""
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()
        for server in self._servers:
            await server.wait_closed()

    def admit(self, conn: HttpConnection) -> bytes | None:
        """Take ``conn`` in, or return the 503 to send it instead.

        The per-address cap goes first, so an address at its cap displaces
        nobody. At the global cap the longest-waiting connection without a
        whole request head is evicted: a slow-header flood then only churns
        its own connections, and a client that sends its request at once
        (a health probe) gets in and is served.
        """
        limits = conn.limits
        # A unix-socket peer (no address: a worker's API, asked by its supervisor)
        # is one local process, not an address to cap.
        if (
            conn.ip
            and self._per_ip[conn.ip] >= limits.max_connections_per_ip
            and not (self._exempt is not None and self._exempt(conn.ip))
        ):
            self.counters["rejected_busy"] += 1
            self.counters["rejected_per_ip"] += 1
            return _BUSY_IP
        while len(self.connections) >= limits.max_connections:
            victim = next(iter(self._waiting), None)
            if victim is None:
                self.counters["rejected_busy"] += 1
                return _BUSY
            self.counters["evicted"] += 1
            victim.evict()
        self.connections.add(conn)
        self._per_ip[conn.ip] += 1
        return None

    def waiting(self, conn: HttpConnection, waiting: bool) -> None:
        """``conn`` starts (to the back of the eviction order) or stops waiting."""
        self._waiting.pop(conn, None)
        if waiting and conn in self.connections:
            self._waiting[conn] = None

    def forget(self, conn: HttpConnection) -> None:
        """``conn`` no longer holds a slot (idempotent)."""
        self._waiting.pop(conn, None)
        if conn in self.connections:
            self.connections.discard(conn)
            self._per_ip[conn.ip] -= 1
            if self._per_ip[conn.ip] <= 0:
                del self._per_ip[conn.ip]


class HttpConnection(asyncio.Protocol):
    """One HTTP client connection: relays between the socket and an h11 server core."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits  # fixed for the connection's life
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.ip = ""  # the client's address ("" on a unix socket)
        self.closed = False
        self.requests = 0
        self.phase: Phase = "head"
        self._request: Request | None = None  # the head, while its body is read
        self._method = b""
        self._body_bytes = 0
        self._got_bytes = False  # part of a request arrived in this cycle
        self._write_paused = False
        self._yielding = False  # a pipelined request waits for the next loop turn
        self._answering: asyncio.Task[None] | None = None  # a handler's awaited answer
        # A subclass took the connection over after a request's head (it streams
        # its own response): h11 and the deadlines here are done with it.
        self.detached = False
        self._timer: asyncio.TimerHandle | None = None

    def _error(self, status: int, message: str) -> Response:
        """The answer to a request that fails (the API's JSON error shape)."""
        return error_response(status, message)

    @property
    def write_paused(self) -> bool:
        """The client is not reading its responses: nothing is read from it either."""
        return self._write_paused

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self.server.admit(self)
        if refusal is not None:
            self._closing(f"answered 503: {_BUSY_WHY[refusal]}", "http 503 busy", quiet=True)
            self.closed = True
            self.transport.write(refusal)
            self.transport.close()
            return
        self._enter("head")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.phase == "idle":
            self._enter("head")  # the next request began: its head deadline runs from now
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
        if self._answering is not None:  # nobody to answer any more
            self._answering.cancel()
            self._answering = None

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
        while (
            not self.closed
            and not self._write_paused
            and not self._yielding
            and self._answering is None  # one answer at a time, in order
            and not self.detached
        ):
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
                if self._body_bytes > self.limits.max_body_bytes:  # h11 enforces the length
                    self._refuse(
                        413, f"the request body is over {self.limits.max_body_bytes} bytes"
                    )
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
                if self._answering is not None or self.detached:
                    return  # the answer comes later (an aggregated API asks its workers)
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return
            if self.closed:
                return
            # The answer is out once the request is over (EndOfMessage), so both
            # sides are done: start the next exchange now, so the keep-alive
            # deadline counts from here.
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

    def _on_head(self, event: h11.Request) -> None:
        """Check the framing of a new request; nothing is acted on until its end."""
        self.requests += 1
        self._method = event.method
        limits = self.limits
        if len(event.headers) > limits.max_headers:
            self._refuse(431, f"more than {limits.max_headers} header lines")
            return
        # h11 bounds a head only while it is incomplete: one that arrived whole in
        # a single read is measured here.
        size = len(event.method) + len(event.target) + 12
        for name, value in event.headers:
            size += len(name) + len(value) + 4
        if size > limits.max_header_bytes:
            self._refuse(431, f"the request head is over {limits.max_header_bytes} bytes")
            return
        self._request = Request(
            event.method.decode("ascii", "replace"),
            event.target.decode("ascii", "replace"),
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers),
            event.http_version.decode("ascii", "replace"),
            self.ip,
        )
        # h11 has validated the framing headers (one numeric Content-Length, or
        # Transfer-Encoding: chunked, never both): only their values are judged here.
        length = 0
        for name, value in event.headers:
            if name == b"transfer-encoding":
                # The size of a chunked body is known only as it arrives, and a
                # lying chunk size could hold the request open: no endpoint takes
                # a body, so ask for a Content-Length instead of reading it.
                self._refuse(411, "chunked request bodies are not accepted; send Content-Length")
                return
            if name == b"content-length":
                length = int(value)
        if length > self.limits.max_body_bytes:
            self._refuse(413, f"the request body is over {self.limits.max_body_bytes} bytes")
            return
        if length == 0:  # EndOfMessage comes next, from what is already in
            self.server.waiting(self, False)
            return
        self._enter("body")
        if self.h11.they_are_waiting_for_100_continue and self.transport is not None:
            self.transport.write(
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )

    def _dispatch(self) -> None:
        """The whole request is in and well framed: answer it."""
        request, self._request = self._request, None
        if request is None:  # h11 yields EndOfMessage only after a Request
            self.abort()
            return
        try:
            response = self.server.handler(request)
        except Exception:
            log.exception("http: %s %s failed", request.method, request.path)
            response = self._error(500, "internal error; see the gateway's log")
        last = self.requests >= self.limits.max_requests_per_connection
        if isinstance(response, Response):
            self._send(response, close=last)
            return
        # An awaitable: nothing more is read until it is answered, within the
        # body deadline (a handler that never answers costs a 504, not a slot).
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self._answering = self.server.loop.create_task(self._answer(request, response, last))

    async def _answer(
        self, request: Request, pending: Awaitable[Response], last: bool
    ) -> None:
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                response = await pending
        except TimeoutError:
            response = self._error(504, "no answer in time")
        except Exception:
            log.exception("http: %s %s failed", request.method, request.path)
            response = self._error(500, "internal error; see the gateway's log")
        self._answering = None
        if self.closed:
            return
        self._send(response, close=last)
        if self.closed or self.transport is None:
            return
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self._next_cycle()
        if not self._write_paused:
            self.transport.resume_reading()
        self._process()

    def _next_cycle(self) -> None:
        self.h11.start_next_cycle()
        self._body_bytes = 0
        self._method = b""
        self._request = None
        self._got_bytes = bool(self.h11.trailing_data[0])  # pipelined bytes: a request began
        self._enter("head" if self._got_bytes else "idle")

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that will not be served, and close: what follows its head
        cannot be trusted to frame a next request."""
        self.server.counters["bad_requests"] += 1
        # Aggregated per status (a flood of them costs a few lines per window).
        self._closing(f"{status} {message}", f"http {status}")
        self._request = None
        self._send(self._error(status, message), close=True)
        if not self.closed:
            self.abort()

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        self.server.counters["bad_requests"] += 1
        status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        # h11 may quote what the client sent: keep it short in the log and the answer.
        reason = str(exc)[:_MAX_REASON]
        self._closing(f"bad request ({reason})", "http bad request")
        self._request = None
        self._send(self._error(status, f"bad request: {reason}"), close=True)

    def _closing(self, detail: str, reason: str, *, quiet: bool = False) -> None:
        """Why the server ends this connection: one line, grouped by ``reason``
        (none if ``quiet``). A subclass with an end line of its own (an FLV
        viewer) puts the words there instead: one line per connection."""
        if not quiet:
            log.info("http: %s; closing", detail, extra={"reason": reason})

    def evict(self) -> None:
        """Give up this connection's slot to a newcomer (see :meth:`HttpServer.admit`)."""
        self.server.forget(self)
        self._closing("evicted at the connection cap", "http evicted", quiet=True)
        if self._got_bytes or self.requests == 0:
            self.closed = True
            self._cancel_timer()
            if self.transport is not None:
                self.transport.write(_EVICTED)
                self.transport.close()
        else:  # idle keep-alive: closing it is what its client expects sooner or later
            self.abort()

    # ------------------------------------------------------------ output

    def _send(self, response: Response, *, close: bool) -> None:
        conn = self.h11
        if self.transport is None or conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.abort()  # nothing sensible can be said any more
            return
        cached = any(name == "cache-control" for name, _ in response.headers)
        headers = [
            (b"content-type", response.content_type.encode("ascii")),
            (b"content-length", str(len(response.body)).encode("ascii")),
            *(() if cached else ((b"cache-control", b"no-store"),)),
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

    # ------------------------------------------------------------ deadlines

    def _enter(self, phase: Phase) -> None:
        """Start ``phase``: its deadline runs from now, and the head and idle phases
        queue the connection (at the back) for eviction at the cap."""
        self.phase = phase
        self.server.waiting(self, phase != "body")
        limits = self.limits
        timeout = {
            "head": limits.header_timeout,
            "body": limits.body_timeout,
            "idle": limits.keepalive_timeout,
        }[phase]
        self._cancel_timer()
        self._timer = self.server.loop.call_later(timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.server.counters["timeouts"] += 1
        if self.phase == "idle" or not self._got_bytes:
            self._closing("no request in time", "no request", quiet=True)
            self.abort()  # nothing of a request came: nobody to answer
            return
        what, seconds = (
            ("request head", self.limits.header_timeout)
            if self.phase == "head"
            else ("request body", self.limits.body_timeout)
        )
        self._closing(f"{what} not received within {seconds:g} s", what)
        self._send(self._error(408, f"{what} not received in time"), close=True)

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
