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

__all__ = ["MAX_LINE", "BusError", "counts", "decode", "encode"]

MAX_LINE = 4 << 20
"""Bytes in one message, at most (a full replay is sent in several)."""


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
