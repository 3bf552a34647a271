"""A load-test worker process: a uvloop event loop running a share of the players.

A player is an RTMP play (:mod:`streamgate.loadtest.player`) for an ``rtmp://``
or ``rtmps://`` URL (RTMP over TLS: every such play of the worker uses one SSL
context, made from the run's :class:`PlayerOptions`), an HTTP-FLV or
WebSocket-FLV view (:mod:`streamgate.loadtest.flv`) for ``http://`` or
``ws://``; the same run may mix them.

The controller (:mod:`streamgate.loadtest.engine`) talks to each worker over
a ``multiprocessing`` pipe with small tuples:

=========================================  ======================================
command                                    answer
=========================================  ======================================
``("add", [(index, url, start_at)], opts)``  none; each player connects at
                                           ``start_at`` (monotonic seconds)
``("snapshot",)``                          ``[(index, attempt, state, bytes,
                                           last_rx)]`` of the current plays
``("remove", count)``                      none; the ``count`` newest plays leave
``("stop",)``                              every record (finished and current),
                                           then the worker exits
=========================================  ======================================

``opts`` carries per-batch behaviour: ``hold`` (each play leaves after that
many seconds), ``reconnect`` (a play the server ended or refused starts
again after ``reconnect_delay``) and ``until`` (no reconnect after that
time). The pipe closing (the controller died) ends the worker too, so a
worker never outlives its run.
"""

from __future__ import annotations

import asyncio
import os
import resource
import ssl
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from streamgate.client import RtmpUrl, parse_rtmp_url
from streamgate.loadtest.flv import FLV_SCHEMES, FlvPlayer, FlvUrl, parse_flv_url
from streamgate.loadtest.player import Player, PlayerOptions, State

__all__ = ["BUFFER_SIZE", "AnyPlayer", "Worker", "parse_url", "raise_fd_limit", "worker_main"]

AnyPlayer = Player | FlvPlayer


def parse_url(url: str) -> RtmpUrl | FlvUrl:
    """An ``rtmp://`` / ``rtmps://`` URL for an RTMP player, ``http://`` / ``ws://`` for
    an FLV viewer."""
    if url.partition("://")[0] in FLV_SCHEMES:
        return parse_flv_url(url)
    return parse_rtmp_url(url)

BUFFER_SIZE = 256 * 1024  # one read drains a whole merged write


def raise_fd_limit(want: int = 1 << 20) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (want, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), max(hard, target)))
            return max(soft, target)
        except (ValueError, OSError):
            continue
    return soft


class Batch:
    """What one ``add`` asked for, beyond when each player starts."""

    __slots__ = ("hold", "reconnect", "reconnect_delay", "until")

    def __init__(self, opts: dict[str, Any]) -> None:
        self.hold: float | None = opts.get("hold")
        self.reconnect: bool = bool(opts.get("reconnect", False))
        self.reconnect_delay: float = float(opts.get("reconnect_delay", 0.0))
        self.until: float = float(opts.get("until", float("inf")))


class Worker:
    """The players of one process, the shared read buffer and the command pipe."""

    def __init__(self, pipe: Connection, options: PlayerOptions) -> None:
        self.pipe = pipe
        self.options = options
        self.buffer = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.current: dict[int, AnyPlayer] = {}  # index -> its current attempt
        self.order: list[int] = []  # indexes in the order they were added (for remove)
        self.batches: dict[int, Batch] = {}
        self.records: list[tuple[Any, ...]] = []
        self.urls: dict[str, RtmpUrl | FlvUrl] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._ssl: ssl.SSLContext | None = None  # made at the first rtmps:// play

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = self.options.ssl_context()
        return self._ssl

    async def run(self) -> None:
        # A blocking reader thread, not loop.add_reader: the loop would make the
        # pipe non-blocking, and a large command then arrives in pieces.
        reader = threading.Thread(target=self._read_pipe, name="commands", daemon=True)
        reader.start()
        await self.done

    def _read_pipe(self) -> None:
        while True:
            try:
                message = self.pipe.recv()
            except (EOFError, OSError):
                message = None  # the controller is gone
            try:
                self.loop.call_soon_threadsafe(self._on_message, message)
            except RuntimeError:  # the loop is closed
                return
            if message is None or message[0] == "stop":
                return

    # ------------------------------------------------------------ commands

    def _on_message(self, message: tuple[Any, ...] | None) -> None:
        if message is None:
            self._end()
            return
        command = message[0]
        if command == "add":
            self.add(message[1], Batch(message[2]))
        elif command == "snapshot":
            self.pipe.send(self.snapshot())
        elif command == "remove":
            self.remove(message[1])
        elif command == "stop":
            self.stop()

    def add(self, entries: list[tuple[int, str, float]], batch: Batch) -> None:
        now = time.monotonic()
        for index, url, start_at in entries:
            self.batches[index] = batch
            self.order.append(index)
            self.loop.call_later(max(0.0, start_at - now), self._launch, index, url, 0)

    def snapshot(self) -> list[tuple[int, int, int, int, float]]:
        return [
            (p.index, p.attempt, int(p.state), p.nbytes, p.last_rx) for p in self.current.values()
        ]

    def remove(self, count: int) -> None:
        while count > 0 and self.order:
            index = self.order.pop()
            self.batches.pop(index, None)  # no reconnect for it
            player = self.current.get(index)
            if player is not None:
                player.leave()
            count -= 1

    def stop(self) -> None:
        self.batches.clear()  # nothing reconnects or starts any more
        for player in list(self.current.values()):
            player.leave()
        self.records.extend(p.record() for p in self.current.values())
        self.current.clear()
        try:
            self.pipe.send(self.records)
        finally:
            self._end()

    def _end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # ------------------------------------------------------------ players

    def _launch(self, index: int, url: str, attempt: int) -> None:
        batch = self.batches.get(index)
        if batch is None or self.done.done():
            return  # removed or stopped meanwhile
        parsed = self.urls.get(url)
        if parsed is None:
            parsed = self.urls[url] = parse_url(url)
        player: AnyPlayer
        if isinstance(parsed, FlvUrl):
            player = FlvPlayer(
                index, attempt, url, parsed, self.buffer, self.view, self.options, self._ended
            )
        else:
            player = Player(
                index, attempt, url, parsed, self.buffer, self.view, self.options, self._ended
            )
        self.current[index] = player
        player.start_timer(self.loop)
        task = self.loop.create_task(self._connect(player))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if batch.hold is not None:
            self.loop.call_later(batch.hold, self._hold_over, player)

    async def _connect(self, player: AnyPlayer) -> None:
        url = player.url
        limit = self.options.start_timeout if self.options.start_timeout > 0 else 30.0
        try:
            async with asyncio.timeout(limit):
                if isinstance(url, RtmpUrl) and url.tls:
                    await self.loop.create_connection(
                        lambda: player,
                        url.host,
                        url.port,
                        ssl=self.ssl_context(),
                        server_hostname=url.host,
                    )
                else:
                    await self.loop.create_connection(lambda: player, url.host, url.port)
        except TimeoutError:
            player.fail(f"TCP connect took over {limit:g} s")
        except ssl.SSLError as exc:  # an OSError too: say it is TLS
            player.fail(f"TLS: {getattr(exc, 'verify_message', None) or exc.reason or exc}")
        except OSError as exc:
            player.fail(f"connect: {exc.strerror or exc}")
        except ValueError as exc:  # the CA file (checked by the controller first)
            player.fail(f"TLS: {exc}")

    def _hold_over(self, player: AnyPlayer) -> None:
        player.leave()

    def _ended(self, player: AnyPlayer) -> None:
        """A play is over (either side): keep its record, maybe start it again."""
        if self.current.get(player.index) is player:
            del self.current[player.index]
        self.records.append(player.record())
        batch = self.batches.get(player.index)
        if (
            batch is not None
            and batch.reconnect
            and player.state in (State.CLOSED, State.FAILED)
            and time.monotonic() + batch.reconnect_delay < batch.until
        ):
            again = (player.index, player.url_text, player.attempt + 1)
            self.loop.call_later(batch.reconnect_delay, self._launch, *again)


async def _amain(pipe: Connection, options: PlayerOptions) -> None:
    worker = Worker(pipe, options)
    await worker.run()


def worker_main(pipe: Connection, options: PlayerOptions, cpus: list[int] | None) -> None:
    """Entry point of a worker process."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_fd_limit()
    try:
        import uvloop

        uvloop.run(_amain(pipe, options))
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(_amain(pipe, options))
