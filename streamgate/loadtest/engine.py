"""The load-test controller: worker processes, the ramp, snapshots and records.

:class:`LoadGenerator` spreads players over worker processes (player ``i``
goes to worker ``i % workers``, so a ramp is even across them), starts each
at its own time, and can take a snapshot of every play's byte counter at
any moment; the benchmark harness reads the server's CPU time at the same
moments. :func:`window_rates` turns two snapshots into per-player received
bitrates.

A received bitrate is measured between *arrivals*: the bytes that came
after the last read before the window opened, up to the last read before
it closed, over the time between those two reads. Media reaches players in
bursts (one per merged write), so a plain "bytes in the window / window
length" would be off by up to one burst at each end; arrival to arrival it
is exact to within a read.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, Self

from streamgate.loadtest.player import RECORD_FIELDS, PlayerOptions, State
from streamgate.loadtest.worker import worker_main

__all__ = [
    "LoadGenerator",
    "PlayerRecord",
    "Snapshot",
    "WorkerError",
    "default_workers",
    "delivered_bytes",
    "window_rates",
]


class WorkerError(RuntimeError):
    """A worker process died or did not answer in time."""


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True, slots=True)
class PlayerRecord:
    """One play attempt. Times are monotonic seconds; 0.0 means "never got there"."""

    index: int
    attempt: int
    url: str
    state: int
    started: float
    tcp: float
    handshake: float
    connected: float
    play_sent: float
    play_start: float
    keyframe: float
    ended: float
    closed_by_server: bool
    last_status: str
    error: str
    bytes: int

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> PlayerRecord:
        return cls(*row)

    def since_start(self, when: float) -> float | None:
        """Seconds from the connect to ``when``, None if that step never happened."""
        return when - self.started if when else None

    @property
    def state_name(self) -> str:
        return State(self.state).name.lower()

    def as_dict(self) -> dict[str, Any]:
        """Durations in milliseconds from the connect (None when not reached)."""

        def ms(when: float) -> float | None:
            return round((when - self.started) * 1000, 3) if when else None

        return {
            "index": self.index,
            "attempt": self.attempt,
            "url": self.url,
            "state": self.state_name,
            "tcp_ms": ms(self.tcp),
            "handshake_ms": ms(self.handshake),
            "connected_ms": ms(self.connected),
            "play_start_ms": ms(self.play_start),
            "keyframe_ms": ms(self.keyframe),
            "keyframe_after_play_ms": (
                round((self.keyframe - self.play_sent) * 1000, 3)
                if self.keyframe and self.play_sent
                else None
            ),
            "ended_ms": ms(self.ended),
            "closed_by_server": self.closed_by_server,
            "last_status": self.last_status or None,
            "error": self.error or None,
            "bytes": self.bytes,
        }


assert tuple(PlayerRecord.__dataclass_fields__) == RECORD_FIELDS


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Byte counters of every current play at ``taken`` (monotonic seconds)."""

    taken: float
    # index -> (attempt, state, bytes, last_rx)
    plays: dict[int, tuple[int, int, int, float]]

    @property
    def total_bytes(self) -> int:
        return sum(p[2] for p in self.plays.values())

    def count(self, *states: State) -> int:
        wanted = {int(s) for s in states}
        return sum(1 for p in self.plays.values() if p[1] in wanted)


def window_rates(before: Snapshot, after: Snapshot) -> dict[int, float | None]:
    """Received bits per second of each play between two snapshots.

    None for a play that was not counting at both snapshots (not started,
    ended, or a different attempt), or received nothing in between.
    """
    counting = int(State.COUNTING)
    rates: dict[int, float | None] = {}
    for index, (attempt, state, nbytes, last_rx) in after.plays.items():
        prior = before.plays.get(index)
        rate: float | None = None
        if (
            prior is not None
            and prior[0] == attempt
            and prior[1] == counting
            and state == counting
            and last_rx > prior[3]
        ):
            rate = (nbytes - prior[2]) * 8 / (last_rx - prior[3])
        rates[index] = rate
    return rates


def delivered_bytes(before: Snapshot, after: Snapshot) -> int:
    """Bytes every play received between two snapshots (plays present in both)."""
    total = 0
    for index, (attempt, _state, nbytes, _rx) in after.plays.items():
        prior = before.plays.get(index)
        if prior is not None and prior[0] == attempt:
            total += nbytes - prior[2]
    return total


class LoadGenerator:
    """Worker processes running players; use as a context manager."""

    def __init__(
        self,
        options: PlayerOptions | None = None,
        *,
        workers: int | None = None,
        cpus: Iterable[int] | None = None,
        reply_timeout: float = 60.0,
    ) -> None:
        self.options = options or PlayerOptions()
        self.nworkers = workers or default_workers()
        self.cpus = sorted(cpus) if cpus is not None else None
        self.reply_timeout = reply_timeout
        self.pipes: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.next_index = 0
        self.added = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        ctx = multiprocessing.get_context("spawn")  # no inherited loop or sockets
        try:
            for _ in range(self.nworkers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=worker_main,
                    args=(child, self.options, self.cpus),
                    name="streamgate-loadtest-worker",
                    daemon=True,
                )
                proc.start()
                child.close()
                self.pipes.append(parent)
                self.procs.append(proc)
            self.snapshot()  # every worker is up and listening before a ramp is timed
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """End every worker (politely, then by force) and reap it."""
        for pipe in self.pipes:
            pipe.close()  # a worker ends when its pipe closes
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.pipes.clear()
        self.procs.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ commands

    def add(
        self,
        urls: Sequence[str],
        rate: float,
        *,
        start_at: float | None = None,
        hold: float | None = None,
        reconnect: bool = False,
        reconnect_delay: float = 0.0,
        until: float | None = None,
    ) -> float:
        """Start one player per URL, ``rate`` per second from ``start_at`` (default: now).

        Returns the monotonic time the last one is due to connect.
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        begin = time.monotonic() + 0.05 if start_at is None else start_at
        per_worker: list[list[tuple[int, str, float]]] = [[] for _ in self.pipes]
        last = begin
        for k, url in enumerate(urls):
            index = self.next_index
            self.next_index += 1
            last = begin + k / rate
            per_worker[index % len(self.pipes)].append((index, url, last))
        opts: dict[str, Any] = {
            "hold": hold,
            "reconnect": reconnect,
            "reconnect_delay": reconnect_delay,
            "until": until if until is not None else float("inf"),
        }
        for pipe, entries in zip(self.pipes, per_worker, strict=True):
            if entries:
                pipe.send(("add", entries, opts))
        self.added += len(urls)
        return last

    def remove(self, count: int) -> None:
        """The ``count`` newest players leave (spread over the workers)."""
        n = len(self.pipes)
        for k, pipe in enumerate(self.pipes):
            share = count // n + (1 if k < count % n else 0)
            if share:
                pipe.send(("remove", share))

    def snapshot(self) -> Snapshot:
        taken = time.monotonic()
        for pipe in self.pipes:
            pipe.send(("snapshot",))
        plays: dict[int, tuple[int, int, int, float]] = {}
        for rows in self._replies():
            for index, attempt, state, nbytes, last_rx in rows:
                plays[index] = (attempt, state, nbytes, last_rx)
        return Snapshot(taken, plays)

    def stop(self) -> list[PlayerRecord]:
        """Every play leaves; returns the record of every attempt, by index then attempt."""
        for pipe in self.pipes:
            pipe.send(("stop",))
        records = [PlayerRecord.from_tuple(row) for rows in self._replies() for row in rows]
        records.sort(key=lambda r: (r.index, r.attempt))
        return records

    def _replies(self) -> list[Any]:
        pending = {id(p): p for p in self.pipes}
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + self.reply_timeout
        while pending:
            left = deadline - time.monotonic()
            ready = wait(list(pending.values()), timeout=max(0.0, left))
            if not ready:
                raise WorkerError(f"{len(pending)} worker(s) did not answer in time")
            for pipe in ready:
                assert isinstance(pipe, Connection)
                try:
                    answers[id(pipe)] = pipe.recv()
                except (EOFError, OSError) as exc:
                    raise WorkerError(f"a worker process died: {exc!r}") from None
                del pending[id(pipe)]
        return [answers[id(p)] for p in self.pipes]
