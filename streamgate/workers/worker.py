"""One worker process of several: what it adds to a server (``app.serve``).

Started by the supervisor (``streamgate worker``, never by hand) with its id,
the worker count and the supervisor's run directory. On top of the server
every single process runs, a worker

* binds the RTMP listen addresses with SO_REUSEPORT (the kernel spreads
  connections over the workers);
* routes each play to the stream's owning worker (:class:`~.routing.WorkerRouter`)
  and serves the streams it owns to its siblings on its relay socket, with
  a :class:`~streamgate.server.gate.TrustedGate` (they did admission and
  auth);
* keeps its protection state machine-wide over the bus (:class:`~.peer.MachinePeer`);
* serves its HTTP API on a unix socket of the run directory, for the
  supervisor's aggregated API;
* numbers its clients from ``worker * 10**12``, so ids are unique on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import signal
from dataclasses import dataclass

from streamgate.edge.budgeted import BudgetedConnector
from streamgate.rtmp.messages import Status
from streamgate.server.binding import cannot_listen
from streamgate.server.clients import ClientIds
from streamgate.server.context import ServerContext, _edge_timing, _fanout
from streamgate.server.gate import TrustedGate
from streamgate.server.session import RtmpSession
from streamgate.shield.bans import MemoryBanStore
from streamgate.workers.peer import MachinePeer
from streamgate.workers.routing import WorkerRouter, relay_socket, relay_timing

__all__ = ["ID_SPAN", "WorkerRole", "api_socket", "bus_socket", "die_with_parent"]

log = logging.getLogger("streamgate.workers")

ID_SPAN = 10**12
"""Client ids of worker ``w`` are ``w * ID_SPAN + n``."""


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its supervisor dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's stop must do
        pass
    if os.getppid() == 1:  # the supervisor died before the call
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def _publish_clash(ctx: ServerContext, app: str, name: str) -> None:
    """Another worker already publishes ``app``/``name``: ours goes (the first holds)."""
    stream = ctx.hub.get(app, name)
    if stream is None:
        return
    publisher = ctx.hub.publisher(stream)
    ctx.hub.unpublish(stream)
    if publisher is not None:
        publisher.kick(
            Status.PUBLISH_BAD_NAME, f"{app}/{name} is already being published on this machine"
        )


def api_socket(run_dir: str, worker: int) -> str:
    return os.path.join(run_dir, f"api-{worker}.sock")


def bus_socket(run_dir: str) -> str:
    return os.path.join(run_dir, "bus.sock")


@dataclass
class WorkerRole:
    """Worker ``id`` of ``count``, in the supervisor's ``run_dir``."""

    id: int
    count: int
    run_dir: str
    router: WorkerRouter | None = None
    peer: MachinePeer | None = None
    _relay: asyncio.Server | None = None

    def attach(self, ctx: ServerContext) -> None:
        """Route the context's plays and make its protection machine-wide."""
        ClientIds.base = self.id * ID_SPAN
        settings = ctx.settings
        negative = ctx.edge.negative if ctx.edge is not None else None
        self.router = WorkerRouter.build(
            self.id,
            self.count,
            ctx.source,
            negative,
            run_dir=self.run_dir,
            loop=ctx.loop,
            clock=ctx.clock,
            fanout=_fanout(settings),
            timing=_edge_timing(settings),
            limits=ctx.limits,
            merge_delay=settings.rtmp.merge_ms / 1000,
        )
        if ctx.edge is not None:
            self.router.count_refusal = ctx.edge.count_refusal
        ctx.own_source = ctx.source
        ctx.source = self.router
        ctx.relays = list(self.router.relays.values())
        store = ctx.bans.store
        if isinstance(store, MemoryBanStore):
            self.peer = MachinePeer(
                self.id, bus_socket(self.run_dir), store, ctx.admission, ctx.clock.now
            )
            self.configure(ctx)
            if ctx.edge is None:  # an origin: a name is owned where it is published
                self.router.holders = self.peer.holders
                ctx.hub.on_change = self.peer.published
                self.peer.on_busy = functools.partial(_publish_clash, ctx)
                self.peer.on_held = self.router.held_elsewhere

    def configure(self, ctx: ServerContext) -> None:
        """The relays' timing and the machine's budget, from the (re)loaded settings."""
        if self.router is not None:
            timing = relay_timing(_edge_timing(ctx.settings))
            for relay in self.router.relays.values():
                relay.settings = timing
        if self.peer is None or ctx.edge is None:
            return
        edge = ctx.settings.edge
        self.peer.budget_rate = edge.max_connects_per_second
        self.peer.budget_cap = edge.max_upstreams
        if not isinstance(ctx.edge.connector, BudgetedConnector) or (
            ctx.edge.connector.budget is not self.peer
        ):
            ctx.edge.connector = BudgetedConnector(ctx.edge.connector, self.peer)

    # Seconds a starting worker waits for the machine's bans and misses before it
    # accepts players anyway (the supervisor unreachable: it starts on its own).
    REPLAY_WAIT = 3.0

    async def join(self, ctx: ServerContext) -> None:
        """Before accepting anyone: join the bus and take the machine's state."""
        if self.peer is None:
            return
        self.peer.connect(ctx.edge.negative if ctx.edge is not None else None)
        try:
            await asyncio.wait_for(self.peer.replayed.wait(), self.REPLAY_WAIT)
        except TimeoutError:
            log.warning(
                "worker %d: no machine state from the supervisor within %g s; "
                "starting with this worker's own",
                self.id,
                self.REPLAY_WAIT,
            )

    async def start(self, ctx: ServerContext) -> None:
        """Serve the owned streams to the siblings; hear the local changes."""
        path = relay_socket(self.run_dir, self.id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's previous life
        try:
            self._relay = await ctx.loop.create_unix_server(
                lambda: RtmpSession(ctx, TrustedGate), path, backlog=ctx.settings.rtmp.backlog
            )
        except OSError as exc:
            raise cannot_listen("worker relay socket", path, 0, exc) from None
        if self.peer is not None:
            self.peer.listen()

    async def close(self) -> None:
        if self.router is not None:
            self.router.close()
        if self._relay is not None:
            self._relay.close()
        if self.peer is not None:
            await self.peer.close()
