"""What the cluster writes to Redis and publishes, and the checks on what it reads back.

Nothing from Redis is trusted beyond its shape: another node, an operator
or an attacker with access may have written anything into the keys. Every
decoder takes bytes and returns a checked entry or raises
:class:`Malformed` (whose ``what`` is a metrics label); none raises
anything else, whatever the input. Times are wall-clock seconds (nodes do
not share a monotonic clock), so the fleet's clocks should be in NTP sync.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_EVENTS",
    "MAX_MESSAGE",
    "MAX_VALUE",
    "BanEntry",
    "Event",
    "FailureEntry",
    "LiveEntry",
    "Malformed",
    "MissEntry",
    "NodeEntry",
    "ReleaseEntry",
    "decode_ban",
    "decode_message",
    "decode_miss",
    "decode_node",
    "encode_message",
    "encode_node",
]

MAX_VALUE = 4096
"""Largest key value read back (bytes); anything bigger is garbage."""

MAX_MESSAGE = 1 << 20
"""Largest pub/sub message (bytes)."""

MAX_EVENTS = 1000
"""Most events in one message."""

_MAX_TEXT = 256
_MAX_NAME = 1024
_MAX_OFFENCES = 64
_MAX_SPAN = 10 * 365 * 86_400.0  # a time further than this from now is nonsense


class Malformed(ValueError):
    """An entry that is not what a streamgate node writes; ``what`` names its kind."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")
        self.what = what


@dataclass(frozen=True, slots=True)
class BanEntry:
    """A ban (``until`` > 0) or a lift (``until`` 0), made at ``changed``."""

    ip: str
    until: float
    offences: int
    reason: str
    changed: float

    def to_json(self) -> dict[str, Any]:
        return {
            "k": "ban",
            "ip": self.ip,
            "until": self.until,
            "offences": self.offences,
            "reason": self.reason,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class MissEntry:
    """A name found missing, refused until ``expires``."""

    app: str
    name: str
    expires: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "k": "miss",
            "app": self.app,
            "name": self.name,
            "expires": self.expires,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class FailureEntry:
    """One failure of an address on another node: ``kind`` failure or missing."""

    ip: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"k": "fail", "ip": self.ip, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """A name another node's origin is playing: what it asked the fleet to wait for."""

    app: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"k": "live", "app": self.app, "name": self.name}


@dataclass(frozen=True, slots=True)
class ReleaseEntry:
    """A node gave up its claim on a name without a verdict (its link failed, was
    refused or closed first): whoever waited on that claim may ask again now.

    ``claim`` is the value the node claimed with (only the claim made with it is
    deleted); it stays local, the wire carries the name alone."""

    app: str
    name: str
    claim: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"k": "free", "app": self.app, "name": self.name}


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """A node's heartbeat."""

    node: str
    started: float
    seen: float


Event = BanEntry | MissEntry | FailureEntry | LiveEntry | ReleaseEntry


def _load(raw: object, what: str, limit: int) -> dict[str, Any]:
    if not isinstance(raw, bytes | str):
        raise Malformed(what, f"not a string value ({type(raw).__name__})")
    if len(raw) > limit:
        raise Malformed(what, f"{len(raw)} bytes (at most {limit})")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise Malformed(what, "not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(what, "not a JSON object")
    return value


def _text(d: dict[str, Any], key: str, what: str, limit: int = _MAX_TEXT) -> str:
    value = d.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise Malformed(what, f"{key} must be a string of at most {limit} characters")
    return value


def _time(d: dict[str, Any], key: str, what: str, now: float, zero: bool = False) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(what, f"{key} must be a number")
    value = float(value)
    if zero and value == 0:
        return 0.0
    if not math.isfinite(value) or abs(value - now) > _MAX_SPAN:
        raise Malformed(what, f"{key} is not a plausible time")
    return value


def _ip(d: dict[str, Any], what: str) -> str:
    raw = d.get("ip")
    if not isinstance(raw, str) or len(raw) > 64:
        raise Malformed(what, "ip must be a string")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise Malformed(what, f"not an IP address: {raw[:64]!r}") from None


def _ban(d: dict[str, Any], now: float) -> BanEntry:
    offences = d.get("offences")
    if isinstance(offences, bool) or not isinstance(offences, int):
        raise Malformed("ban", "offences must be an integer")
    if not 0 <= offences <= _MAX_OFFENCES:
        raise Malformed("ban", f"offences out of range: {offences}")
    until = _time(d, "until", "ban", now, zero=True)
    if until and not offences:
        raise Malformed("ban", "a ban with no offence")
    return BanEntry(
        _ip(d, "ban"), until, offences, _text(d, "reason", "ban"), _time(d, "changed", "ban", now)
    )


def _miss(d: dict[str, Any], now: float) -> MissEntry:
    app = _text(d, "app", "miss", _MAX_NAME)
    name = _text(d, "name", "miss", _MAX_NAME)
    if not app or not name:
        raise Malformed("miss", "empty app or name")
    return MissEntry(app, name, _time(d, "expires", "miss", now), _text(d, "reason", "miss"))


def _failure(d: dict[str, Any], now: float) -> FailureEntry:
    kind = d.get("kind")
    if kind not in ("failure", "missing"):
        raise Malformed("failure", f"unknown kind {str(kind)[:32]!r}")
    return FailureEntry(_ip(d, "failure"), kind, _text(d, "detail", "failure"))


def _live(d: dict[str, Any], now: float) -> LiveEntry:
    app = _text(d, "app", "live", _MAX_NAME)
    name = _text(d, "name", "live", _MAX_NAME)
    if not app or not name:
        raise Malformed("live", "empty app or name")
    return LiveEntry(app, name)


def _free(d: dict[str, Any], now: float) -> ReleaseEntry:
    app = _text(d, "app", "free", _MAX_NAME)
    name = _text(d, "name", "free", _MAX_NAME)
    if not app or not name:
        raise Malformed("free", "empty app or name")
    return ReleaseEntry(app, name)


_DECODERS: dict[str, Callable[[dict[str, Any], float], Event]] = {
    "ban": _ban,
    "miss": _miss,
    "fail": _failure,
    "live": _live,
    "free": _free,
}


def decode_ban(raw: object, now: float) -> BanEntry:
    """A ban key's value."""
    return _ban(_load(raw, "ban", MAX_VALUE), now)


def decode_miss(raw: object, now: float) -> MissEntry:
    """A miss key's value."""
    return _miss(_load(raw, "miss", MAX_VALUE), now)


def decode_node(raw: object, now: float) -> NodeEntry:
    """A heartbeat key's value."""
    d = _load(raw, "node", MAX_VALUE)
    node = _text(d, "node", "node", 128)
    return NodeEntry(node, _time(d, "started", "node", now), _time(d, "seen", "node", now))


def encode_node(node: str, started: float, seen: float) -> str:
    return json.dumps({"node": node, "started": started, "seen": seen})


def encode_message(node: str, events: list[Event]) -> str:
    """One pub/sub message: the sending node and its events, in order."""
    return json.dumps({"node": node, "events": [e.to_json() for e in events]})


def decode_message(raw: object, now: float) -> tuple[str, list[Event | Malformed]]:
    """(sender, events): a malformed event is returned as its :class:`Malformed`,
    in place, so the good ones around it still apply."""
    d = _load(raw, "message", MAX_MESSAGE)
    node = _text(d, "node", "message", 128)
    items = d.get("events")
    if not isinstance(items, list) or len(items) > MAX_EVENTS:
        raise Malformed("message", f"events must be a list of at most {MAX_EVENTS}")
    events: list[Event | Malformed] = []
    for item in items:
        if not isinstance(item, dict) or item.get("k") not in _DECODERS:
            events.append(Malformed("event", "unknown event"))
            continue
        try:
            events.append(_DECODERS[item["k"]](item, now))
        except Malformed as exc:
            events.append(exc)
    return node, events
