"""The machine bus between a supervisor and its workers: JSON lines over a unix socket.

Each message is one JSON object on one line, with its kind in ``"t"``. The
socket lives in the supervisor's private run directory (mode 0700), so only
this machine's user can reach it; what arrives is still checked for its
shape before use (:func:`decode`), and a line over :data:`MAX_LINE` ends the
link.

Worker -> supervisor: ``hello`` (its id), ``ev`` (bans, lifts, failures and
misses, in the fleet's entry format), ``conns`` (its connection counts per
address), ``take`` / ``done`` (the machine's connect budget per origin).
Supervisor -> worker: ``ev`` and ``conns`` from the other workers (``w``
names which), ``gone`` (a worker's link ended), ``grant`` (the answer to a
``take``).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_LINE", "Backlog", "BusError", "batches", "counts", "decode", "encode"]

MAX_LINE = 4 << 20
"""Bytes in one message, at most (a full replay is sent in several)."""


_BATCH_EVENTS = 1000  # events in one message, at most (the fleet decoder's bound)
_BATCH_BYTES = 256 * 1024  # encoded bytes of events in one message, about (under 1 MB)


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``events`` in messages under the fleet decoder's bounds (1 MB, 1000 events)."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        length = len(encode(event))
        if current and (size + length > _BATCH_BYTES or len(current) >= _BATCH_EVENTS):
            out.append(current)
            current, size = [], 0
        current.append(event)
        size += length
    if current:
        out.append(current)
    return out


class BusError(ValueError):
    """A message that is not what the bus carries."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One received line as a message with a string ``"t"``; BusError otherwise."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BusError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise BusError("not a message object")
    return message


def counts(value: object) -> dict[str, int]:
    """A ``conns`` message's per-address counts (non-negative ints), or BusError."""
    if not isinstance(value, dict):
        raise BusError("conns: ips must be an object")
    out: dict[str, int] = {}
    for ip, n in value.items():
        if not isinstance(ip, str) or len(ip) > 64 or not isinstance(n, int) or n < 0:
            raise BusError("conns: bad entry")
        out[ip] = n
    return out


class Backlog:
    """Tells a peer that stopped reading from one that got a burst (a replay).

    A link whose send buffer stays over ``limit`` bytes for ``patience``
    seconds is stalled (cut it: memory stays bounded); a burst that drains
    meanwhile is not."""

    __slots__ = ("limit", "patience", "since")

    def __init__(self, limit: int = 16 << 20, patience: float = 5.0) -> None:
        self.limit = limit
        self.patience = patience
        self.since: float | None = None

    def stalled(self, queued: int, now: float) -> bool:
        if queued <= self.limit:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since > self.patience
