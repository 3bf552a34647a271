"""fail2ban for RTMP: repeated auth failures or plays of distinct missing streams ban an IP.

Invariants:

* ``ban_after`` failures from one IP within ``window`` seconds ban it for
  ``ban_time * 2**(offences - 1)`` seconds, capped at ``max_ban_time``;
  offences are forgotten after ``max_ban_time`` without a ban.
* Plays of *missing* streams count once per distinct name: a viewer retrying
  one stream that is not live yet is not an attacker scanning names.
* An allow-listed IP is never banned and its failures are not recorded.
* Memory is bounded: at most ``max_tracked`` IPs are tracked (oldest first out).
* The store is one object that outlives configuration reloads
  (:meth:`configure` changes the rules, never the state), behind the
  :class:`BanStore` interface so a shared (cluster) backend can replace it.
  :class:`SafeBans` wraps any store so that its failure degrades protection,
  logged, and never breaks a play.
* A :class:`BanListener` (the cluster's replicator) hears every local failure,
  ban and lift; what it learns from other nodes comes back through
  :meth:`MemoryBanStore.merge` and ``remote=True``, which it does not hear, so
  nothing echoes. Bans merge last-writer-wins on the time of the change.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Ban", "BanListener", "BanRules", "BanStore", "MemoryBanStore", "SafeBans"]

log = logging.getLogger("streamgate.bans")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class BanRules:
    ban_after: int = 10
    window: float = 60.0
    ban_time: float = 300.0
    max_ban_time: float = 86_400.0
    allow: tuple[Network, ...] = ()
    max_tracked: int = 100_000

    @classmethod
    def parse_allow(cls, cidrs: list[str]) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@dataclass(frozen=True, slots=True)
class Ban:
    ip: str
    until: float
    offences: int
    reason: str


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    missing_names: dict[str, float] = field(default_factory=dict)
    offences: int = 0
    last_ban: float = 0.0
    banned_until: float = 0.0
    reason: str = ""
    lifted: float = 0.0  # when a ban was last lifted by hand

    @property
    def changed(self) -> float:
        return max(self.last_ban, self.lifted)


class BanStore(Protocol):
    def configure(self, rules: BanRules) -> None: ...

    def is_banned(self, ip: str, now: float) -> bool: ...

    def record_failure(self, ip: str, reason: str, now: float) -> Ban | None:
        """An auth failure; returns the ban it caused, if any."""

    def record_missing(self, ip: str, name: str, now: float) -> Ban | None:
        """A play of a missing stream; distinct names count."""

    def bans(self, now: float) -> list[Ban]: ...

    def unban(self, ip: str) -> bool: ...


class BanListener(Protocol):
    """Hears the local store's changes (the cluster replicates them); must not raise."""

    def failed(self, ip: str, kind: str, detail: str, now: float) -> None:
        """``kind`` ``"failure"`` (detail: the reason) or ``"missing"`` (the name)."""

    def banned(self, ban: Ban, now: float) -> None: ...

    def lifted(self, ip: str, offences: int, now: float) -> None: ...


class MemoryBanStore:
    """The node-local store."""

    def __init__(self, rules: BanRules | None = None) -> None:
        self.rules = rules or BanRules()
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.banned_total = 0
        # ip -> allow-listed? Asked at every accept: parsing the address each
        # time was an eighth of the cost of a connection in a flood.
        self._allowed: dict[str, bool] = {}
        self.listener: BanListener | None = None
        # Dates a lift (unban has no ``now``); the server sets its loop's clock.
        self.clock: Callable[[], float] = time.monotonic

    def configure(self, rules: BanRules) -> None:
        self.rules = rules
        self._allowed.clear()
        for ip in [ip for ip in self._records if self.allowed(ip)]:
            del self._records[ip]  # newly trusted networks are unbanned at once

    _MAX_ALLOWED_CACHED = 65_536

    def allowed(self, ip: str) -> bool:
        known = self._allowed.get(ip)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        verdict = any(addr in net for net in self.rules.allow)
        if len(self._allowed) >= self._MAX_ALLOWED_CACHED:
            self._allowed.clear()  # bounded; a flood of distinct addresses re-parses
        self._allowed[ip] = verdict
        return verdict

    def is_banned(self, ip: str, now: float) -> bool:
        record = self._records.get(ip)
        return record is not None and record.banned_until > now

    def _record(self, ip: str) -> _Record:
        record = self._records.get(ip)
        if record is None:
            record = self._records[ip] = _Record()
            while len(self._records) > self.rules.max_tracked:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(ip)
        return record

    def record_failure(
        self, ip: str, reason: str, now: float, *, remote: bool = False
    ) -> Ban | None:
        """``remote``: another node saw it (counted here, not told to the listener)."""
        if self.allowed(ip):
            return None
        if self.listener is not None and not remote:
            self.listener.failed(ip, "failure", reason, now)
        record = self._record(ip)
        cutoff = now - self.rules.window
        record.failures = [t for t in record.failures if t > cutoff]
        record.failures.append(now)
        return self._maybe_ban(ip, record, len(record.failures), reason, now)

    def record_missing(self, ip: str, name: str, now: float, *, remote: bool = False) -> Ban | None:
        if self.allowed(ip):
            return None
        if self.listener is not None and not remote:
            self.listener.failed(ip, "missing", name[:256], now)
        record = self._record(ip)
        cutoff = now - self.rules.window
        names = {n: t for n, t in record.missing_names.items() if t > cutoff}
        names[name[:256]] = now
        while len(names) > self.rules.ban_after:  # only the count matters past the limit
            names.pop(next(iter(names)))
        record.missing_names = names
        return self._maybe_ban(ip, record, len(names), "plays of distinct missing streams", now)

    def _maybe_ban(
        self, ip: str, record: _Record, count: int, reason: str, now: float
    ) -> Ban | None:
        rules = self.rules
        if count < rules.ban_after or record.banned_until > now:
            return None
        if now - record.last_ban > rules.max_ban_time:
            record.offences = 0  # a long good behaviour forgives
        record.offences += 1
        duration = min(rules.max_ban_time, rules.ban_time * 2 ** (record.offences - 1))
        record.banned_until = now + duration
        record.last_ban = now
        record.reason = reason
        record.failures.clear()
        record.missing_names.clear()
        self.banned_total += 1
        log.warning("banned %s for %g s (%s, offence %d)", ip, duration, reason, record.offences)
        ban = Ban(ip, record.banned_until, record.offences, reason)
        if self.listener is not None:  # a ban caused by remote failures is news too
            self.listener.banned(ban, now)
        return ban

    def merge(self, ban: Ban, changed: float, now: float) -> bool:
        """Take a ban (``until`` 0: a lift) another node made at ``changed``.

        Last writer wins: it applies only if it is newer than this node's own
        last change of the address. Returns whether it changed anything.
        """
        if self.allowed(ban.ip):
            return False
        record = self._records.get(ban.ip)
        # A millisecond of slack: its own change, back through a wall-clock
        # round trip, must not read as newer.
        if record is not None and record.changed >= changed - 1e-3:
            return False
        record = self._record(ban.ip)
        record.offences = ban.offences
        record.reason = ban.reason
        if ban.until > 0:
            record.banned_until = ban.until
            record.last_ban = changed
            record.failures.clear()
            record.missing_names.clear()
        else:
            record.banned_until = 0.0
            record.lifted = changed
        return True

    def changes(self) -> list[tuple[Ban, float]]:
        """Every ban and lift this node knows, with when it changed (to republish)."""
        return [
            (Ban(ip, r.banned_until, r.offences, r.reason), r.changed)
            for ip, r in self._records.items()
            if r.changed
        ]

    def bans(self, now: float) -> list[Ban]:
        return [
            Ban(ip, r.banned_until, r.offences, r.reason)
            for ip, r in self._records.items()
            if r.banned_until > now
        ]

    def unban(self, ip: str) -> bool:
        record = self._records.get(ip)
        if record is None or not record.banned_until:
            return False
        record.banned_until = 0.0
        # Strictly after the ban it lifts, so the lift wins every merge with it.
        record.lifted = max(record.last_ban + 1e-6, self.clock())
        if self.listener is not None:
            self.listener.lifted(ip, record.offences, record.lifted)
        return True


class SafeBans:
    """Any store behind a guard: if it fails, protection degrades, plays do not."""

    def __init__(self, store: BanStore) -> None:
        self.store = store
        self.failures = 0

    def _failed(self, what: str, exc: Exception) -> None:
        self.failures += 1
        log.warning("ban store failed (%s): %s; serving without it", what, exc)

    def is_banned(self, ip: str, now: float) -> bool:
        try:
            return self.store.is_banned(ip, now)
        except Exception as exc:
            self._failed("lookup", exc)
            return False

    def record_failure(self, ip: str, reason: str, now: float) -> Ban | None:
        try:
            return self.store.record_failure(ip, reason, now)
        except Exception as exc:
            self._failed("record", exc)
            return None

    def record_missing(self, ip: str, name: str, now: float) -> Ban | None:
        try:
            return self.store.record_missing(ip, name, now)
        except Exception as exc:
            self._failed("record", exc)
            return None

    def bans(self, now: float) -> list[Ban]:
        try:
            return self.store.bans(now)
        except Exception as exc:
            self._failed("list", exc)
            return []

    def unban(self, ip: str) -> bool:
        try:
            return self.store.unban(ip)
        except Exception as exc:
            self._failed("unban", exc)
            return False

    def configure(self, rules: BanRules) -> None:
        try:
            self.store.configure(rules)
        except Exception as exc:
            self._failed("configure", exc)
