"""One accepted RTMP connection: relays bytes between the socket, the core and the hub.

The session owns no protocol logic. It feeds bytes to
:class:`~streamgate.rtmp.connection.ServerConnection`, acts on its events
through a dispatch table, writes what the core queued and keeps the core's
timer armed. Media to a player bypasses the session entirely: the stream
writes shared bytes straight to the transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from streamgate.auth import AuthDecision, TokenRequest
from streamgate.errors import ProtocolError, StreamgateError
from streamgate.relay.hub import StreamBusy
from streamgate.relay.stream import AUDIO, BOTH, VIDEO, Player, Stream
from streamgate.rtmp.connection import ServerConnection
from streamgate.rtmp.events import (
    CommandIgnored,
    ConnectRequested,
    DataReceived,
    Event,
    MediaReceived,
    PlayRequested,
    PublishRequested,
    ReceiveToggled,
    StreamClosed,
)
from streamgate.rtmp.messages import Status
from streamgate.server.delivery import TransportDelivery

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["RtmpSession"]

log = logging.getLogger("streamgate.session")
refusals = logging.getLogger("streamgate.refusals")

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class RtmpSession(asyncio.Protocol):
    """A publisher or player connection (origin mode)."""

    _ids = 0

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        RtmpSession._ids += 1
        self.id = RtmpSession._ids
        self.transport: asyncio.Transport | None = None
        self.conn: ServerConnection | None = None
        self.peer = "?"
        self.role = "unknown"
        self.publishing: Stream | None = None
        self.publish_sid = 0
        self.playing: dict[int, tuple[Stream, Player]] = {}
        # What each stream id receives (receiveAudio / receiveVideo), when not BOTH.
        self.receiving: dict[int, int] = {}
        self.waiting: dict[int, tuple[str, str, object]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = False
        self.paused = False  # the transport asked us to stop writing
        self.ip = ""
        self.connected_at = 0.0  # loop time of the accept
        self.admitted = False  # counted by the admission guard
        self.connect_query = ""  # a token may ride on the app/tcUrl instead of the name
        self.authorizing: set[int] = set()  # stream ids waiting for an auth hook

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.ip = str(peer[0]) if peer else ""
        now = self.ctx.loop.time()
        self.connected_at = now
        reason = self.ctx.admission.admit(self.ip, now, self.ctx.trusted(self.ip))
        if reason is not None:
            # Before any handshake byte, with a reset: the accept loop moves on at once.
            self.ctx.counters[f"rejected:{reason}"] += 1
            log.warning("connection from %s refused at accept: %s", self.ip, reason)
            self.closed = True
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
            return
        self.admitted = True
        # One info line per connection, when it ends (a flood of refused plays
        # would otherwise pay for two); "playing"/"publishing" mark the starts.
        log.debug("conn %d %s: connected", self.id, self.peer)
        high = self.ctx.settings.rtmp.player_buffer
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self.conn = ServerConnection(self.ctx.limits, now=self.ctx.loop.time())
        self.ctx.sessions[self.id] = self
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self.closed:
            return
        try:
            events = conn.receive_data(data)
            handlers = self._handlers
            while events:
                for event in events:
                    if self.closed:
                        return  # a refusal closed us: what follows is moot
                    handler = handlers.get(type(event))
                    if handler is not None:
                        handler(self, event)
                events = conn.take_events()  # released by an answer (e.g. accept_connect)
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._flush()
        if self._timer_at != conn.get_timer():
            self._arm_timer()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.admitted:
            self.admitted = False
            self.ctx.admission.release(self.ip)
            log.info(
                "conn %d %s: disconnected (%s, %.1f s)",
                self.id,
                self.peer,
                self.role,
                self.ctx.loop.time() - self.connected_at,
            )
        self.ctx.sessions.pop(self.id, None)
        drained = self.ctx.drained
        if drained is not None and not self.ctx.sessions and not drained.done():
            drained.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
        self._detach()

    def _detach(self) -> None:
        """Leave every stream and wait list; safe to call more than once."""
        for stream, player in self.playing.values():
            stream.remove_player(player)
        self.playing.clear()
        for app, name, waiter in self.waiting.values():
            self.ctx.source.cancel_play(app, name, waiter)
        self.waiting.clear()
        if self.publishing is not None:
            stream, self.publishing = self.publishing, None
            log.info("conn %d: publisher of %s/%s left", self.id, stream.app, stream.name)
            self.ctx.hub.unpublish(stream)

    def pause_writing(self) -> None:
        self.paused = True
        for stream, player in self.playing.values():
            stream.player_paused(player)

    def resume_writing(self) -> None:
        self.paused = False
        for stream, player in self.playing.values():
            stream.player_resumed(player)

    # ------------------------------------------------------------ plumbing

    def _flush(self) -> None:
        if self.conn is not None and self.transport is not None:
            out = self.conn.data_to_send()
            if out:
                self.transport.write(out)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.conn.get_timer() if self.conn is not None else None
        self._timer_at = when
        if when is not None and not self.closed:
            self._timer = self.ctx.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.conn is None or self.closed:
            return
        try:
            self.conn.handle_timer(self.ctx.loop.time())
        except ProtocolError as exc:
            self._fail(exc)
            return
        self._arm_timer()

    def _fail(self, exc: StreamgateError) -> None:
        log.warning("conn %d %s: %s; closing", self.id, self.peer, exc.description)
        self.ctx.counters["protocol_errors"] += 1
        self.close()

    def close(self) -> None:
        """Flush what the core queued (a goodbye) and close."""
        if self.closed:
            return
        self._flush()
        self.closed = True
        self._detach()  # no more writes to a closing transport
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ sinks for the relay

    def write(self, data: bytes) -> None:  # PlayerSink; normally bypassed
        if self.transport is not None:
            self.transport.write(data)

    def stream_ended(self, code: str, description: str) -> None:
        """PlayerSink: the stream this player watches is over."""
        if self.conn is not None:
            for sid in list(self.playing):
                self.conn.end_stream(sid, code, description)
        self.close()  # detaches from every stream, the ended one included

    def drop(self, reason: str) -> None:
        """PlayerSink: too slow. Its buffer is full, so there is nobody to tell."""
        log.info("conn %d %s: dropped: %s", self.id, self.peer, reason)
        self.ctx.counters["slow_players_dropped"] += 1
        self.closed = True
        self._detach()
        if self.transport is not None:
            self.transport.abort()

    def kick(self, code: str, description: str) -> None:
        """PublisherSink: the publisher is dropped (idle)."""
        log.info("conn %d %s: publisher dropped: %s", self.id, self.peer, description)
        self.publishing = None
        if self.conn is not None:
            self.conn.send_status(self.publish_sid, code, description)
        self.close()

    # ------------------------------------------------------------ events

    def _on_connect(self, event: ConnectRequested) -> None:
        assert self.conn is not None
        self.connect_query = event.query
        self.conn.accept_connect()

    # ------------------------------------------------------------ authorisation

    def _authorize(
        self, action: str, sid: int, name: str, query: str, then: Callable[[], None]
    ) -> None:
        """Decide before anything else happens; ``then`` runs only if allowed."""
        assert self.conn is not None
        request = TokenRequest(action, self.conn.app, name, query or self.connect_query, self.ip)
        result = self.ctx.auth.check(request, self.id, time.time())
        if isinstance(result, AuthDecision):
            self._authorized(action, sid, result, then)
            return
        self.authorizing.add(sid)

        async def ask() -> None:
            decision = await result
            self.authorizing.discard(sid)
            if self.closed or self.conn is None or sid not in self.conn.streams:
                return  # the client left (or deleted the stream) meanwhile
            self._authorized(action, sid, decision, then)
            self._flush()
            if self._timer_at != self.conn.get_timer():
                self._arm_timer()

        self._auth_task = self.ctx.loop.create_task(ask())

    def _authorized(
        self, action: str, sid: int, decision: AuthDecision, then: Callable[[], None]
    ) -> None:
        if decision.allowed:
            then()
            return
        assert self.conn is not None
        counters = self.ctx.counters
        counters[f"rejected:{decision.label}"] += 1
        ban = self.ctx.bans.record_failure(self.ip, decision.label, self.ctx.loop.time())
        if ban is not None:
            counters["bans_issued"] += 1
        log.warning("conn %d %s: %s refused: %s", self.id, self.peer, action, decision.reason)
        code = Status.PLAY_FAILED if action == "play" else Status.PUBLISH_BAD_NAME
        # An explicit error status, then close: OBS-like clients stop retrying.
        self.conn.refuse(sid, code, decision.reason)
        self.close()

    def _on_publish(self, event: PublishRequested) -> None:
        conn = self.conn
        assert conn is not None
        sid = event.stream_id
        if self.ctx.edge is not None:
            conn.refuse(sid, Status.PUBLISH_DENIED, "this is an edge: publish to the origin")
            self.close()
            return
        if not event.name or self.publishing is not None or self.playing or self.authorizing:
            conn.refuse(sid, Status.PUBLISH_BAD_NAME, "one stream per connection, with a name")
            self.close()
            return
        self._authorize(
            "publish", sid, event.name, event.query, lambda: self._begin_publish(sid, event.name)
        )

    def _begin_publish(self, sid: int, name: str) -> None:
        conn = self.conn
        assert conn is not None
        try:
            stream = self.ctx.hub.publish(conn.app, name, self)
        except StreamBusy as exc:
            log.info("conn %d %s: %s", self.id, self.peer, exc.description)
            self.ctx.counters["rejected:publish_busy"] += 1
            conn.refuse(sid, exc.code, exc.description)
            self.close()
            return
        self.role = "publisher"
        self.publishing = stream
        self.publish_sid = sid
        conn.accept_publish(sid, name)
        log.info("conn %d %s: publishing %s/%s", self.id, self.peer, conn.app, name)

    def _on_play(self, event: PlayRequested) -> None:
        conn = self.conn
        assert conn is not None
        sid = event.stream_id
        app, name = conn.app, event.name
        if (
            self.publishing is not None
            or sid in self.playing
            or sid in self.waiting
            or sid in self.authorizing
        ):
            conn.refuse(sid, Status.PLAY_FAILED, "play on a busy stream id")
            self.close()
            return
        self.role = "player"
        self._authorize(
            "play", sid, name, event.query, lambda: self._begin_play(sid, app, name, event.query)
        )

    def _begin_play(self, sid: int, app: str, name: str, query: str) -> None:
        conn = self.conn
        assert conn is not None

        def ready(stream: Stream) -> None:
            self.waiting.pop(sid, None)
            if not self.closed and sid in conn.streams:
                self._start_play(sid, stream)

        def refused(code: str, description: str) -> None:
            self.waiting.pop(sid, None)
            self._refuse_play(sid, app, name, code, description)

        waiter = self.ctx.source.request_play(app, name, query, ready, refused)
        if waiter is not None and not self.closed and sid not in self.playing:
            self.waiting[sid] = (app, name, waiter)

    def _refuse_play(self, sid: int, app: str, name: str, code: str, description: str) -> None:
        if self.closed or self.conn is None:
            return
        self.ctx.counters[f"play_refused:{code}"] += 1
        if code == Status.PLAY_STREAM_NOT_FOUND:
            ban = self.ctx.bans.record_missing(self.ip, f"{app}/{name}", self.ctx.loop.time())
            if ban is not None:
                self.ctx.counters["bans_issued"] += 1
        # A flood of refusals is an attack's signature: these lines are aggregated.
        refusals.warning(
            "conn %d %s: play of %s/%s refused: %s", self.id, self.peer, app, name, description
        )
        self.conn.refuse(sid, code, description)
        self.close()

    def _start_play(self, sid: int, stream: Stream) -> None:
        assert self.conn is not None
        self.conn.accept_play(sid, stream.name)
        self._flush()  # Play.Start must precede the media the stream writes
        assert self.transport is not None
        kinds = self.receiving.get(sid, BOTH)
        # The chunk size this connection announced, whatever the stream was
        # made with: a reload may have changed [rtmp] chunk_size in between.
        player = stream.add_player(
            self, sid, TransportDelivery(self.transport), kinds, self.conn.chunk_size
        )
        self.playing[sid] = (stream, player)
        if self.paused:  # the start bytes alone filled the socket: pause_writing came early
            stream.player_paused(player)
        log.info("conn %d %s: playing %s/%s", self.id, self.peer, stream.app, stream.name)

    def _on_media(self, event: MediaReceived) -> None:
        stream = self.publishing
        if stream is not None and event.stream_id == self.publish_sid:
            stream.on_media(event.type_id, event.timestamp, event.payload)

    def _on_data(self, event: DataReceived) -> None:
        stream = self.publishing
        if stream is not None and event.stream_id == self.publish_sid:
            stream.on_metadata(event.timestamp, event.values, event.payload)

    def _on_stream_closed(self, event: StreamClosed) -> None:
        sid = event.stream_id
        self.receiving.pop(sid, None)
        if self.publishing is not None and sid == self.publish_sid:
            stream, self.publishing = self.publishing, None
            self.ctx.hub.unpublish(stream)
        entry = self.playing.pop(sid, None)
        if entry is not None:
            entry[0].remove_player(entry[1])
        waiting = self.waiting.pop(sid, None)
        if waiting is not None:
            self.ctx.source.cancel_play(*waiting)

    def _on_receive(self, event: ReceiveToggled) -> None:
        sid = event.stream_id
        if self.conn is None or sid not in self.conn.streams:
            return  # only created streams: what is kept stays bounded
        bit = AUDIO if event.kind == "audio" else VIDEO
        kinds = self.receiving.get(sid, BOTH)
        kinds = kinds | bit if event.enabled else kinds & ~bit
        self.receiving[sid] = kinds
        entry = self.playing.get(sid)
        if entry is not None:
            entry[0].set_kinds(entry[1], kinds)

    def _on_ignored(self, event: Event) -> None:
        pass

    _handlers: ClassVar[dict[type[Event], Callable[[Any, Any], None]]] = {
        ConnectRequested: _on_connect,
        PublishRequested: _on_publish,
        PlayRequested: _on_play,
        MediaReceived: _on_media,
        DataReceived: _on_data,
        StreamClosed: _on_stream_closed,
        ReceiveToggled: _on_receive,
        CommandIgnored: _on_ignored,
    }
