"""What one RTMP client does: the decisions of a connection, without its I/O.

:class:`RtmpController` acts on the events of a
:class:`~streamgate.rtmp.connection.ServerConnection` core: it answers
connect, passes plays and publishes through the access gate, asks the play
source (the hub, or the edge in front of an origin) for streams, attaches
players and publishers, and says why the connection ended. It never touches
a socket: its adapter (``server/session.py``) supplies a :class:`Link`
(flush, close, a player's delivery, waiting on an auth hook) and feeds it
the core's events. That makes the whole client lifecycle testable with two
cores on an in-memory wire.

Invariants:

* A play or publish is authorised before any stream or upstream work.
* A stream id is in at most one of ``playing``, ``waiting``,
  ``authorizing``; a connection publishes at most one stream and then plays
  none.
* Once ``closed``, nothing is attached: every stream, wait list and
  publication was left (``detach``), and no event is acted on.
* The first cause of the end is the one the end line gives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from streamgate.auth import AuthDecision
from streamgate.errors import StreamgateError
from streamgate.relay.delivery import Delivery
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
from streamgate.server.clients import EndLine
from streamgate.server.gate import AccessGate, Refusal

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["Link", "RtmpController"]

log = logging.getLogger("streamgate.session")


class Link(Protocol):
    """What the controller needs from the connection's adapter."""

    paused: bool  # the socket asked us to stop writing

    def flush(self) -> None:
        """Write what the core queued."""

    def close(self) -> None:
        """Flush, then close the connection."""

    def abort(self) -> None:
        """Close at once, unflushed (its buffer is full: nobody to tell)."""

    def delivery(self) -> Delivery:
        """How a player's media reaches this connection."""

    def wait_for(
        self, decision: Awaitable[AuthDecision], then: Callable[[AuthDecision], None]
    ) -> None:
        """Run ``then`` with the decision once it is taken (then flush and re-arm)."""


class RtmpController:
    """One RTMP client's state and decisions (see the module docstring)."""

    def __init__(
        self,
        ctx: ServerContext,
        conn: ServerConnection,
        link: Link,
        client_id: int,
        ip: str,
        peer: str,
        connected_at: float,
        gate: AccessGate | None = None,
    ) -> None:
        self.ctx = ctx
        self.gate = gate or AccessGate(ctx)  # the adapter's, which admitted the connection
        self.conn = conn
        self.link = link
        self.id = client_id
        self.ip = ip
        self.peer = peer
        self.connected_at = connected_at
        self.role = "unknown"
        self.publishing: Stream | None = None
        self.publish_sid = 0
        self.playing: dict[int, tuple[Stream, Player]] = {}
        # What each stream id receives (receiveAudio / receiveVideo), when not BOTH.
        self.receiving: dict[int, int] = {}
        self.waiting: dict[int, tuple[str, str, object]] = {}
        self.authorizing: set[int] = set()  # stream ids waiting for an auth hook
        self.connect_query = ""  # a token may ride on the app/tcUrl instead of the name
        self.closed = False
        self.ended = False  # the adapter logged the end (once, at connection_lost)
        self.started = False  # played or published: a real client, not a flood
        self.end = EndLine()  # how the connection ended, for its one end line

    # ------------------------------------------------------------ from the adapter

    def handle(self, events: list[Event]) -> None:
        """Act on the core's events, in order; stops at the first that closed us."""
        handlers = self._handlers
        for event in events:
            if self.closed:
                return  # a refusal closed us: what follows is moot
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, event)

    def failed(self, exc: StreamgateError) -> None:
        """The core raised: a protocol error or a deadline. Its goodbye is queued."""
        self.ending(exc.description, failed=True)
        self.ctx.counters.protocol_errors += 1
        self.close()

    def lost(self, exc: Exception | None) -> None:
        """The transport is gone."""
        if not self.closed:
            self.ending("closed by the peer" if exc is None else f"connection lost: {exc}")
        self.closed = True
        self.detach()

    def paused(self) -> None:
        for stream, player in self.playing.values():
            stream.player_paused(player)

    def resumed(self) -> None:
        for stream, player in self.playing.values():
            stream.player_resumed(player)

    def close(self) -> None:
        """Leave everything, flush the goodbye the core queued, and close."""
        if self.closed:
            return
        self.ending("closed by the server")
        self.closed = True
        self.detach()
        self.link.close()

    def detach(self) -> None:
        """Leave every stream and wait list; safe to call more than once."""
        for stream, player in self.playing.values():
            stream.remove_player(player)
        self.playing.clear()
        for app, name, waiter in self.waiting.values():
            self.gate.source.cancel_play(app, name, waiter)
        self.waiting.clear()
        if self.publishing is not None:
            stream, self.publishing = self.publishing, None
            log.info("conn %d: publisher of %s/%s left", self.id, stream.app, stream.name)
            self.ctx.hub.unpublish(stream)

    def ending(self, detail: str, reason: str | None = None, *, failed: bool = False) -> None:
        """Remember why the connection ends (the first cause counts) for its end line."""
        self.end.note(detail, reason, failed=failed)

    def log_end(self, now: float) -> None:
        """The connection's one end line (see :class:`EndLine`)."""
        self.end.write(log, self.id, self.peer, self.role, now - self.connected_at, self.started)

    # ------------------------------------------------------------ sinks for the relay

    def write(self, data: bytes) -> None:
        """PlayerSink: unused, the delivery carries the bytes."""
        self.link.delivery().write(data)

    def stream_ended(self, code: str, description: str) -> None:
        """PlayerSink: the stream this player watches is over."""
        self.ending(f"stream ended: {description}")
        for sid in list(self.playing):
            self.conn.end_stream(sid, code, description)
        self.close()  # detaches from every stream, the ended one included

    def drop(self, reason: str) -> None:
        """PlayerSink: too slow. Its buffer is full, so there is nobody to tell."""
        self.ending(f"dropped: {reason}")
        self.ctx.counters.slow_players_dropped += 1
        self.closed = True
        self.detach()
        self.link.abort()

    def kick(self, code: str, description: str) -> None:
        """PublisherSink: the publisher is dropped (idle)."""
        self.ending(f"publisher dropped: {description}")
        self.publishing = None
        self.conn.send_status(self.publish_sid, code, description)
        self.close()

    # ------------------------------------------------------------ decisions

    def _refuse(self, sid: int, refusal: Refusal) -> None:
        """Tell the client why (a status), then close."""
        self.ending(refusal.detail, refusal.reason, failed=True)
        self.conn.refuse(sid, refusal.code, refusal.description)
        self.close()

    def _authorize(
        self, action: str, sid: int, name: str, query: str, then: Callable[[], None]
    ) -> None:
        """Decide before anything else happens; ``then`` runs only if allowed."""
        result = self.gate.authorize(
            action, self.conn.app, name, query or self.connect_query, self.ip, self.id
        )
        if isinstance(result, AuthDecision):
            self._authorized(action, sid, name, result, then)
            return
        self.authorizing.add(sid)

        def decided(decision: AuthDecision) -> None:
            self.authorizing.discard(sid)
            if self.closed or sid not in self.conn.streams:
                return  # the client left (or deleted the stream) meanwhile
            self._authorized(action, sid, name, decision, then)

        self.link.wait_for(result, decided)

    def _authorized(
        self, action: str, sid: int, name: str, decision: AuthDecision, then: Callable[[], None]
    ) -> None:
        if decision.allowed:
            then()
        else:
            refusal = self.gate.auth_refused(action, self.conn.app, name, self.ip, decision)
            self._refuse(sid, refusal)

    def _on_connect(self, event: ConnectRequested) -> None:
        self.connect_query = event.query
        self.conn.accept_connect()

    def _on_publish(self, event: PublishRequested) -> None:
        sid = event.stream_id
        if self.ctx.edge is not None:
            self._refuse(
                sid,
                self.gate.misuse(
                    "publish", Status.PUBLISH_DENIED, "this is an edge: publish to the origin"
                ),
            )
            return
        if not event.name or self.publishing is not None or self.playing or self.authorizing:
            self._refuse(
                sid,
                self.gate.misuse(
                    "publish", Status.PUBLISH_BAD_NAME, "one stream per connection, with a name"
                ),
            )
            return
        self._authorize(
            "publish", sid, event.name, event.query, lambda: self._begin_publish(sid, event.name)
        )

    def _begin_publish(self, sid: int, name: str) -> None:
        conn = self.conn
        try:
            stream = self.ctx.hub.publish(conn.app, name, self)
        except StreamBusy as exc:
            refusal = self.gate.publish_busy(exc)
            self.ending(refusal.detail, refusal.reason)  # not an attack: an honest clash
            conn.refuse(sid, refusal.code, refusal.description)
            self.close()
            return
        self.role = "publisher"
        self.started = True
        self.publishing = stream
        self.publish_sid = sid
        conn.accept_publish(sid, name)
        log.info("conn %d %s: publishing %s/%s", self.id, self.peer, conn.app, name)

    def _on_play(self, event: PlayRequested) -> None:
        sid = event.stream_id
        app, name = self.conn.app, event.name
        if (
            self.publishing is not None
            or sid in self.playing
            or sid in self.waiting
            or sid in self.authorizing
        ):
            self._refuse(
                sid, self.gate.misuse("play", Status.PLAY_FAILED, "play on a busy stream id")
            )
            return
        self.role = "player"
        self._authorize(
            "play", sid, name, event.query, lambda: self._begin_play(sid, app, name, event.query)
        )

    def _begin_play(self, sid: int, app: str, name: str, query: str) -> None:
        conn = self.conn

        def ready(stream: Stream) -> None:
            self.waiting.pop(sid, None)
            if not self.closed and sid in conn.streams:
                self._start_play(sid, stream)

        def refused(code: str, description: str) -> None:
            self.waiting.pop(sid, None)
            if not self.closed:
                self._refuse(sid, self.gate.play_refused(app, name, self.ip, code, description))

        waiter = self.gate.source.request_play(app, name, query, ready, refused)
        if waiter is not None and not self.closed and sid not in self.playing:
            self.waiting[sid] = (app, name, waiter)

    def _start_play(self, sid: int, stream: Stream) -> None:
        self.conn.accept_play(sid, stream.name)
        self.link.flush()  # Play.Start must precede the media the stream writes
        kinds = self.receiving.get(sid, BOTH)
        # The chunk size this connection announced, whatever the stream was
        # made with: a reload may have changed [rtmp] chunk_size in between.
        player = stream.add_player(self, sid, self.link.delivery(), kinds, self.conn.chunk_size)
        self.playing[sid] = (stream, player)
        self.started = True
        if self.link.paused:  # the start bytes alone filled the socket: paused early
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
            self.gate.source.cancel_play(*waiting)

    def _on_receive(self, event: ReceiveToggled) -> None:
        sid = event.stream_id
        if sid not in self.conn.streams:
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
