"""HTTP-FLV and WebSocket-FLV viewers: the ``[flv]`` listener.

A viewer asks ``GET /{app}/{stream}.flv?<query>`` (the same URL with
``Upgrade: websocket`` for WebSocket-FLV) and gets the stream as FLV. The
request head is read by the bounded HTTP server the API uses
(``api/http.py``: connection caps, head size, header count and deadline);
from there the :class:`FlvViewer` takes the connection over and passes the
one play path every protocol shares: the access gate (admission and bans at
accept, auth of the token in the query string) and the play source (the
hub, the edge's single ingest per stream with its negative cache and origin
protection, or another worker). Its media is written by the stream, as for
RTMP players: encoded once per group of viewers as FLV tags, framed once per
flush (``relay/encoding.py``).

What a viewer is told:

==================================  =======================  ======================
outcome                             HTTP                     WebSocket (after 101)
==================================  =======================  ======================
playing                             200, chunked (1.1) or    binary frames of FLV
                                    until close (1.0)
token missing / bad                 401 / 403                close 4401 / 4403
stream missing                      404                      close 4404
over a limit, origin unavailable    503 + Retry-After        close 4503
malformed request                   400 (431 for the head,   400 before the upgrade
                                    505 for HTTP/2+)
stream ended (unpublish, idle)      chunked terminator       close 1000 with reason
==================================  =======================  ======================

A refusal has a short text body (or close reason) saying why. ``HEAD`` is
answered with the status and headers a ``GET`` would get, and no body.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import urllib.parse
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from streamgate.api.http import HttpConnection, HttpLimits, HttpServer, Request, Response
from streamgate.auth import AuthDecision
from streamgate.flv import websocket as ws
from streamgate.relay.encoding import FlvTags, Framing
from streamgate.relay.stream import BOTH, Player, Stream
from streamgate.rtmp.connection import name_problem
from streamgate.rtmp.messages import Status
from streamgate.server.clients import EndLine, next_client_id, reset_at_accept
from streamgate.server.delivery import TransportDelivery
from streamgate.server.gate import AccessGate, Refusal

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["CHUNKED", "PLAIN", "WEBSOCKET", "FlvServer", "FlvViewer"]

log = logging.getLogger("streamgate.flv")

CHUNKED = Framing("chunked", "flv", lambda size: b"%x\r\n" % size, b"\r\n")
WEBSOCKET = Framing("websocket", "ws-flv", ws.frame_head)
PLAIN = Framing("plain", "flv", None)  # HTTP/1.0: the body ends with the connection

_TEXT = "text/plain; charset=utf-8"
_RETRY_AFTER = "2"  # seconds, on a 503: an origin or a limit may let it through soon
# A viewer whose stream has not said yet what tracks it carries (no metadata,
# no keyframe) waits this long before its FLV header is sent with what is known.
_DESCRIBE_WAIT = 1.0
_MAX_TARGET = 4096


class FlvServer:
    """The ``[flv]`` listener: admits connections, each served by a :class:`FlvViewer`."""

    def __init__(self, ctx: ServerContext, *, reuse_port: bool = False) -> None:
        self.ctx = ctx
        self.reuse_port = reuse_port  # a worker: the address is shared with the others
        self.http = HttpServer(
            _no_handler,
            self._limits,
            ctx.loop,
            connection=lambda server: FlvViewer(server, ctx),
            exempt=ctx.trusted,  # [limits] allow: as for RTMP, no per-address cap
            text_errors=True,
        )

    def _limits(self) -> HttpLimits:
        flv = self.ctx.settings.flv
        return HttpLimits(
            max_connections=flv.max_connections,
            max_connections_per_ip=flv.max_connections_per_ip,
            header_timeout=flv.header_timeout,
            max_header_bytes=flv.max_header_bytes,
            max_headers=flv.max_headers,
            max_requests_per_connection=1,
            backlog=self.ctx.settings.rtmp.backlog,
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return self.http.addresses

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        listen = self.ctx.settings.flv.listen
        await self.http.start("[flv] listen", listen, reuse_port=self.reuse_port)
        for host, port in self.addresses:
            log.info("HTTP-FLV listening on %s:%d", host, port)

    def stop_accepting(self) -> None:
        self.http.stop_accepting()

    async def close(self) -> None:
        """Stop accepting and cut whoever is still connected (viewers were told
        the end with the other clients, by the RTMP server's drain)."""
        await self.http.close()


def _no_handler(request: Request) -> Response:
    raise AssertionError("FLV viewers answer their own requests")


def _text(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, message.encode("utf-8") + b"\n", _TEXT, headers)


def parse_target(target: str) -> tuple[str, str, str] | str:
    """``/{app}/{stream}.flv?query`` -> (app, stream, query), or why it is not one."""
    if len(target) > _MAX_TARGET:
        return "the URL is too long"
    path, _, query = target.partition("?")
    if not path.startswith("/") or not path.endswith(".flv"):
        return "not found: streams are at /{app}/{stream}.flv"
    try:
        path = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return "the URL is not valid UTF-8"
    app, _, stem = path[1:-4].rpartition("/")
    if not app or not stem:
        return "not found: streams are at /{app}/{stream}.flv"
    for part in (app, stem):
        problem = name_problem(part)
        if problem is not None:
            return f"invalid stream name: {problem}"
    return app, stem, query


class FlvViewer(HttpConnection):
    """One viewer connection (see the module docstring); a :class:`Client` for the
    API and a :class:`PlayerSink` for its stream."""

    def __init__(self, server: HttpServer, ctx: ServerContext) -> None:
        super().__init__(server)
        self.ctx = ctx
        self.id = next_client_id()
        self.peer = "?"
        self.connected_at = 0.0
        self.paused = False
        self.gate = AccessGate(ctx)
        self.admitted = False  # counted by the gate: released when it ends
        self.framing = CHUNKED
        self.app = ""
        self.name = ""
        self.head_only = False  # HEAD: the status a GET would get, no body
        self.playing: dict[int, tuple[Stream, Player]] = {}
        self.waiting: dict[int, tuple[str, str, object]] = {}
        self.requested = False  # asked for a stream (passed the request checks)
        self.played = False  # was sent a stream
        self._reader: ws.FrameReader | None = None  # WebSocket: what the viewer sends
        self._describe_timer: asyncio.TimerHandle | None = None
        self._stream: Stream | None = None  # ready, waiting to be described
        self._tasks: set[asyncio.Task[None]] = set()
        self._cors_headers: tuple[tuple[str, str], ...] = ()  # sent with the response
        self.end = EndLine()

    # ------------------------------------------------------------ Client

    @property
    def role(self) -> str:
        return "player" if self.requested else "unknown"

    @property
    def protocol(self) -> str:
        return self.framing.protocol

    @property
    def publishing(self) -> Stream | None:
        return None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and peer else "?"
        now = self.ctx.loop.time()
        reason = self.gate.admit(ip, now)
        if reason is not None:  # a banned or over-limit address costs no HTTP parsing
            self.closed = True
            reset_at_accept(log, transport, ip, reason)
            return
        self.admitted = True
        self.connected_at = now
        high = self.ctx.settings.rtmp.player_buffer
        transport.set_write_buffer_limits(high=high, low=high // 4)
        super().connection_made(transport)
        if not self.closed:
            self.ctx.sessions[self.id] = self

    def data_received(self, data: bytes) -> None:
        if not self.detached:
            super().data_received(data)
            return
        reader = self._reader
        if reader is None or self.closed:
            return  # HTTP: a viewer has nothing more to say (reading is paused)
        try:
            frames = reader.feed(data)
        except ws.WebSocketError as exc:
            self.ending(f"WebSocket error: {exc.reason}", "websocket protocol error", failed=True)
            self._close_ws(exc.code, exc.reason)
            return
        for frame in frames:
            if frame.opcode == ws.OP_CLOSE:
                self.ending("closed by the viewer")
                self._close_ws(ws.CLOSE_NORMAL, "")
                return
            if frame.opcode == ws.OP_PING and self.transport is not None:
                self.transport.write(ws.frame_head(len(frame.payload), ws.OP_PONG) + frame.payload)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.admitted:
            return
        self.admitted = False
        if exc is None or isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            self.ending("closed by the viewer")  # how a player that is done leaves
        else:
            self.ending(f"connection lost: {exc}")
        self._detach()
        self.gate.release(self.ip)
        self.ctx.forget(self.id)
        self._log_end()

    def pause_writing(self) -> None:
        if not self.detached:
            super().pause_writing()
            return
        self.paused = True
        # Nor is it read from: a WebSocket viewer's pings cannot queue pongs
        # without bound while it reads nothing (nor while its stream is idle).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        for stream, player in self.playing.values():
            stream.player_paused(player)

    def resume_writing(self) -> None:
        if not self.detached:
            super().resume_writing()
            return
        self.paused = False
        transport = self.transport
        if self._reader is not None and transport is not None and not transport.is_closing():
            transport.resume_reading()  # WebSocket only: HTTP viewers have nothing to say
        for stream, player in self.playing.values():
            stream.player_resumed(player)

    # ------------------------------------------------------------ the request

    def _error(self, status: int, message: str) -> Response:
        return _text(status, message)

    def _closing(self, detail: str, reason: str, *, quiet: bool = False) -> None:
        self.ending(detail, reason, failed=True)  # said once, by the end line

    def _dispatch(self) -> None:
        """The request head is in (the HTTP server checked its framing): play."""
        request, self._request = self._request, None
        if request is None:
            self.abort()
            return
        self._cancel_timer()  # the head deadline is met
        self.server.waiting(self, False)
        method = request.method
        if request.version not in ("1.0", "1.1"):  # h11 takes any HTTP/x.y
            self._reply(_text(505, f"HTTP/{request.version[:8]} is not spoken here; use 1.1"))
            return
        if method == "OPTIONS":
            self._reply(Response(204, b"", _TEXT, self._cors(request, preflight=True) or ()))
            return
        if method not in ("GET", "HEAD"):
            self._reply(
                _text(405, f"{method} is not served here", (("allow", "GET, HEAD, OPTIONS"),))
            )
            return
        parsed = parse_target(request.target)
        if isinstance(parsed, str):
            status = 404 if parsed.startswith("not found") else 400
            self._reply(_text(status, parsed))
            return
        self.app, self.name, query = parsed
        self.head_only = method == "HEAD"
        upgrade = (request.header("upgrade") or "").strip().lower()
        if upgrade:
            if upgrade != "websocket" or method != "GET":
                self._reply(_text(400, "only a GET may upgrade, and only to websocket"))
                return
            if not self.ctx.settings.flv.websocket:
                self._reply(_text(400, "WebSocket-FLV is turned off here ([flv] websocket)"))
                return
            problem = ws.handshake_problem(request.header)
            if problem is not None:
                detail = f"bad WebSocket handshake: {problem}"
                self.ending(detail, "bad websocket handshake", failed=True)  # its end line
                self._reply(_text(400, f"bad WebSocket handshake: {problem}"))
                return
        cors = self._cors(request)
        if cors is None:
            self._reply(_text(403, "this page's origin may not play from here"))
            return
        self._cors_headers = cors
        self.detached = True  # from here the response is ours, not h11's
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        if upgrade:
            self._upgrade(request)
        elif request.version == "1.0":
            self.framing = PLAIN
        self.requested = True
        self._authorize(query)

    def _cors(
        self, request: Request, *, preflight: bool = False
    ) -> tuple[tuple[str, str], ...] | None:
        """The CORS headers for ``request`` (None: its Origin may not play)."""
        allowed = self.ctx.settings.flv.cors_origins
        origin = request.header("origin")
        if origin is None:
            return ()  # not a browser page asking
        if "*" in allowed:
            headers: tuple[tuple[str, str], ...] = (("access-control-allow-origin", "*"),)
        elif origin in allowed:
            headers = (("access-control-allow-origin", origin), ("vary", "Origin"))
        else:
            return None if request.header("upgrade") else ()
        if preflight:
            headers += (
                ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
                ("access-control-max-age", "600"),
            )
        return headers

    def _reply(self, response: Response) -> None:
        """A whole answer through h11 (before the connection was taken over), then close."""
        status = response.status
        self.ending(f"answered {status}", f"http {status}", failed=status >= 400)
        self._send(response, close=True)
        if not self.closed:
            self.close()

    def _upgrade(self, request: Request) -> None:
        self.framing = WEBSOCKET
        self._reader = ws.FrameReader()
        key = request.header("sec-websocket-key") or ""
        head = (
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            f"sec-websocket-accept: {ws.accept_key(key)}\r\n\r\n"
        )
        if self.transport is not None:
            self.transport.write(head.encode("ascii"))
            self.transport.resume_reading()  # a WebSocket viewer may close or ping

    # ------------------------------------------------------------ the play path

    def _authorize(self, query: str) -> None:
        result = self.gate.authorize("play", self.app, self.name, query, self.ip, self.id)
        if isinstance(result, AuthDecision):
            self._authorized(query, result)
            return
        self._wait_for(result, query)

    def _wait_for(self, decision: Awaitable[AuthDecision], query: str) -> None:
        async def ask() -> None:
            result = await decision
            if not self.closed:
                self._authorized(query, result)

        task = self.ctx.loop.create_task(ask())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _authorized(self, query: str, decision: AuthDecision) -> None:
        if not decision.allowed:
            refusal = self.gate.auth_refused("play", self.app, self.name, self.ip, decision)
            self._deny(401 if decision.reason == "token missing" else 403, refusal)
            return
        app, name = self.app, self.name
        waiter = self.gate.source.request_play(app, name, query, self._ready, self._play_refused)
        if waiter is not None and not self.closed and not self.playing and self._stream is None:
            self.waiting[0] = (app, name, waiter)

    def _play_refused(self, code: str, description: str) -> None:
        self.waiting.clear()
        if self.closed:
            return
        refusal = self.gate.play_refused(self.app, self.name, self.ip, code, description)
        self._deny(404 if code == Status.PLAY_STREAM_NOT_FOUND else 503, refusal)

    def _ready(self, stream: Stream) -> None:
        self.waiting.clear()
        if self.closed:
            return
        if stream.ended:
            refusal = self.gate.misuse("play", Status.PLAY_STREAM_NOT_FOUND, "the stream ended")
            self._deny(404, refusal)
            return
        if stream.described:
            self._start(stream)
            return
        # Its FLV header must state the tracks (players stall on a false one):
        # wait for the metadata or a keyframe, a little.
        self._stream = stream
        stream.describe_waiters.append(self._described)
        self._describe_timer = self.ctx.loop.call_later(_DESCRIBE_WAIT, self._described)

    def _described(self) -> None:
        stream, self._stream = self._stream, None
        if self._describe_timer is not None:
            self._describe_timer.cancel()
            self._describe_timer = None
        if stream is None or self.closed:
            return
        if self._described in stream.describe_waiters:
            stream.describe_waiters.remove(self._described)
        if stream.ended:
            self.stream_ended(Status.PLAY_UNPUBLISH_NOTIFY, "the stream ended")
            return
        self._start(stream)

    def _start(self, stream: Stream) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.framing is not WEBSOCKET:
            transport.write(self._head(200))
            if self.head_only:
                self.ending("answered 200 (HEAD)")
                self.close()
                return
        player = stream.add_player(
            self, 0, TransportDelivery(transport), BOTH, encoding=FlvTags(self.framing)
        )
        self.playing[0] = (stream, player)
        self.played = True
        if self.paused:
            stream.player_paused(player)
        log.info(
            "conn %d %s: playing %s/%s (%s)",
            self.id,
            self.peer,
            stream.app,
            stream.name,
            self.framing.protocol,
        )

    def _head(self, status: int, *, body: bytes = b"", retry: bool = False) -> bytes:
        """A response head (and a short body) written as is: the stream's bytes follow."""
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
        if status == 200:
            lines.append("content-type: video/x-flv")
            if self.framing is CHUNKED:
                lines.append("transfer-encoding: chunked")
            else:
                lines.append("connection: close")
            lines.append("cache-control: no-cache, no-store")
        else:
            lines += [f"content-type: {_TEXT}", f"content-length: {len(body)}"]
            lines += ["connection: close", "cache-control: no-store"]
            if retry:
                lines.append(f"retry-after: {_RETRY_AFTER}")
        lines.append("x-content-type-options: nosniff")
        lines.append(f"date: {email.utils.formatdate(usegmt=True)}")
        lines += [f"{k}: {v}" for k, v in self._cors_headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if self.head_only else head + body

    def _deny(self, status: int, refusal: Refusal) -> None:
        """Tell the viewer why (a status and a line, or a close code and reason)."""
        self.ending(refusal.detail, refusal.reason, failed=True)
        self._detach()
        if self.transport is None or self.closed:
            return
        if self.framing is WEBSOCKET:
            self._close_ws(4000 + status, refusal.description)
            return
        body = refusal.description.encode("utf-8", "replace")[:1024] + b"\n"
        self.transport.write(self._head(status, body=body, retry=status == 503))
        self.close()

    # ------------------------------------------------------------ PlayerSink

    def write(self, data: bytes) -> None:
        """PlayerSink: unused, the delivery carries the bytes."""
        if self.transport is not None:
            self.transport.write(data)

    def stream_ended(self, code: str, description: str) -> None:
        """The stream is over: end the response (or close the WebSocket) saying so."""
        self.ending(f"stream ended: {description}")
        self.playing.clear()
        self._detach()
        if self.transport is None or self.closed:
            return
        if self.framing is WEBSOCKET:
            self._close_ws(ws.CLOSE_NORMAL, f"stream ended: {description}")
            return
        if self.framing is CHUNKED:
            self.transport.write(b"0\r\n\r\n")
        self.close()

    def drop(self, reason: str) -> None:
        """Too slow: its buffer is full, so there is nobody to tell."""
        self.ending(f"dropped: {reason}")
        self.ctx.counters.slow_players_dropped += 1
        self.playing.clear()
        self._detach()
        self.abort()

    # ------------------------------------------------------------ ending

    def close(self) -> None:
        """Say goodbye (the API's kick, a shutdown) and close after what is queued."""
        if self.closed:
            return
        if self.detached and (self.playing or self.waiting or self._stream is not None):
            self.ending("closed by the server")
            self._detach()
            if self.framing is WEBSOCKET:
                self._close_ws(ws.CLOSE_GOING_AWAY, "closed by the server")
                return
            if self.framing is CHUNKED and self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
        super().close()

    def _close_ws(self, code: int, reason: str) -> None:
        self._detach()
        if self.transport is not None and not self.closed:
            self.transport.write(ws.close_frame(code, reason))
        super().close()

    def _detach(self) -> None:
        """Leave the stream or its wait list; safe to call more than once."""
        for stream, player in self.playing.values():
            stream.remove_player(player)
        self.playing.clear()
        for app, name, waiter in self.waiting.values():
            self.gate.source.cancel_play(app, name, waiter)
        self.waiting.clear()
        described, self._stream = self._stream, None
        if described is not None and self._described in described.describe_waiters:
            described.describe_waiters.remove(self._described)
        if self._describe_timer is not None:
            self._describe_timer.cancel()
            self._describe_timer = None

    def ending(self, detail: str, reason: str | None = None, *, failed: bool = False) -> None:
        """Remember why the connection ends (the first cause counts) for its end line."""
        self.end.note(detail, reason, failed=failed)

    def _log_end(self) -> None:
        """The connection's one end line (see :class:`EndLine`)."""
        role = f"{self.framing.protocol} viewer"
        seconds = self.ctx.loop.time() - self.connected_at
        self.end.write(log, self.id, self.peer, role, seconds, self.played)

