"""One accepted RTMP connection: relays bytes, events and timers, decides nothing.

The session is the asyncio adapter of a connection. It feeds the socket's
bytes to the :class:`~streamgate.rtmp.connection.ServerConnection` core,
hands the core's events to the connection's
:class:`~streamgate.server.controller.RtmpController` (which takes every
decision), writes what the core queued and keeps the core's timer armed.
It is the controller's :class:`~streamgate.server.controller.Link`: flush,
close, a player's delivery over this transport, and waiting on an auth
hook. Media to a player bypasses it entirely: the stream writes shared
bytes straight to the transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, cast

from streamgate.auth import AuthDecision
from streamgate.errors import ProtocolError
from streamgate.relay.stream import Player, Stream
from streamgate.rtmp.connection import ServerConnection
from streamgate.server.clients import next_client_id, reset_at_accept
from streamgate.server.controller import RtmpController
from streamgate.server.delivery import TransportDelivery
from streamgate.server.gate import AccessGate
from streamgate.server.tcpinfo import queued_for

if TYPE_CHECKING:
    from streamgate.server.context import ServerContext

__all__ = ["RtmpSession"]

log = logging.getLogger("streamgate.session")



class RtmpSession(asyncio.Protocol):
    """An RTMP connection's adapter: socket <-> core <-> controller."""

    protocol = "rtmp"

    def __init__(self, ctx: ServerContext, gate: type[AccessGate] = AccessGate) -> None:
        self.ctx = ctx
        self._gate = gate
        self.id = next_client_id()
        self.transport: asyncio.Transport | None = None
        self.conn: ServerConnection | None = None
        self.controller: RtmpController | None = None
        self.peer = "?"
        self.ip = ""
        self.connected_at = 0.0  # loop time of the TCP handshake
        self.paused = False  # the transport asked us to stop writing
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ what the API sees

    @property
    def role(self) -> str:
        return self.controller.role if self.controller is not None else "unknown"

    @property
    def publishing(self) -> Stream | None:
        return self.controller.publishing if self.controller is not None else None

    @property
    def playing(self) -> dict[int, tuple[Stream, Player]]:
        return self.controller.playing if self.controller is not None else {}

    @property
    def waiting(self) -> dict[int, tuple[str, str, object]]:
        return self.controller.waiting if self.controller is not None else {}

    @property
    def app(self) -> str:
        return self.conn.app if self.conn is not None else ""

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        # No TCP_NODELAY here: uvloop and asyncio set it on every TCP transport, and
        # under a connection flood each syscall in this method delays every deadline.
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.ip = str(peer[0]) if peer else ""
        now = self.ctx.loop.time()
        gate = self._gate(self.ctx)
        if not peer and gate.peer_label is not None:
            self.peer = gate.peer_label
        reason = gate.admit(self.ip, now)
        if reason is not None:
            self.closed = True
            reset_at_accept(log, transport, self.ip, reason)
            return
        # One line per connection, when it ends, saying why (a flood of refused
        # plays would otherwise pay for two); "playing"/"publishing" mark the starts.
        log.debug("conn %d %s: connected", self.id, self.peer)
        high = self.ctx.settings.rtmp.player_buffer
        transport.set_write_buffer_limits(high=high, low=high // 4)
        # Deadlines run from the TCP handshake, not from the accept: under a
        # flood a connection may have waited in the accept queue (one overdue
        # already is closed at once, which also drains the queue fastest).
        self.connected_at = now - queued_for(transport.get_extra_info("socket"))
        self.conn = ServerConnection(self.ctx.limits, now=self.connected_at)
        self.controller = RtmpController(
            self.ctx, self.conn, self, self.id, self.ip, self.peer, self.connected_at, gate
        )
        self.ctx.sessions[self.id] = self
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        conn, controller = self.conn, self.controller
        if conn is None or controller is None or self.closed:
            return
        try:
            events = conn.receive_data(data)
            while events and not self.closed:
                controller.handle(events)
                events = conn.take_events()  # released by an answer (e.g. accept_connect)
        except ProtocolError as exc:
            controller.failed(exc)
            return
        self._settle()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        controller = self.controller
        if controller is not None and not controller.ended:
            controller.ended = True
            controller.lost(exc)
            controller.gate.release(self.ip)
            controller.log_end(self.ctx.loop.time())
        self.ctx.forget(self.id)
        if self._timer is not None:
            self._timer.cancel()

    def pause_writing(self) -> None:
        self.paused = True
        if self.controller is not None:
            self.controller.paused()

    def resume_writing(self) -> None:
        self.paused = False
        if self.controller is not None:
            self.controller.resumed()

    # ------------------------------------------------------------ Link, for the controller

    def flush(self) -> None:
        if self.conn is not None and self.transport is not None:
            out = self.conn.data_to_send()
            if out:
                self.transport.write(out)

    def close(self) -> None:
        """Flush what the core queued (a goodbye) and close."""
        if self.controller is not None and not self.controller.closed:
            self.controller.close()  # leaves every stream, then calls back here
            return
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def delivery(self) -> TransportDelivery:
        assert self.transport is not None
        return TransportDelivery(self.transport)

    def wait_for(
        self, decision: Awaitable[AuthDecision], then: Callable[[AuthDecision], None]
    ) -> None:
        async def ask() -> None:
            result = await decision
            if self.closed:
                return
            then(result)
            self._settle()

        task = self.ctx.loop.create_task(ask())
        self._tasks.add(task)  # a reference until done, or the loop may drop it
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ plumbing

    def _settle(self) -> None:
        """After the controller acted: write what it queued, follow the core's timer."""
        if self.closed or self.conn is None:
            return
        self.flush()
        if self._timer_at != self.conn.get_timer():
            self._arm_timer()

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
        if self.conn is None or self.controller is None or self.closed:
            return
        try:
            self.conn.handle_timer(self.ctx.loop.time())
        except ProtocolError as exc:
            self.controller.failed(exc)
            return
        self._arm_timer()
