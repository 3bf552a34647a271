"""Admission at accept time: who may even start a handshake.

A connection over a limit is closed at once with a reset, before any
handshake byte: the accept loop keeps draining the kernel's queue and an
attacker costs one accept and one close. Checked in order: banned IP (unless
allow-listed), the global cap, ``max_connections_per_ip``, and the per-IP
new-connection rate (token bucket). Per-IP state is dropped as soon as an IP
has no connection and a full bucket, so memory follows the live
connections, not the history.

The global cap keeps headroom for allow-listed networks, as PostgreSQL's
``superuser_reserved_connections`` does: other addresses are refused once
``max_connections - reserved_connections`` are open, so a flood from them
never shuts out monitoring, other edges or the origin; ``max_connections``
itself binds everyone, allow-listed or not, so file descriptors stay bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streamgate.shield.bans import SafeBans
from streamgate.shield.ratelimit import TokenBucket

__all__ = ["AdmissionGuard", "AdmissionRules"]


@dataclass(frozen=True, slots=True)
class AdmissionRules:
    """Limits at accept time; ``reserved_connections`` of ``max_connections``
    are for allow-listed addresses only (0: no reserve)."""

    max_connections: int = 10_000
    max_connections_per_ip: int = 200
    connections_per_second_per_ip: float = 20.0
    reserved_connections: int = 0


class _PerIp:
    __slots__ = ("bucket", "connections")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.connections = 0


class AdmissionGuard:
    def __init__(self, rules: AdmissionRules, bans: SafeBans) -> None:
        self.rules = rules
        self.bans = bans
        self.connections = 0
        self._ips: dict[str, _PerIp] = {}
        # A worker of several: the connections the machine's other workers hold
        # (kept by the worker's link to its supervisor), counted against the caps.
        self.elsewhere: dict[str, int] = {}
        self.elsewhere_total = 0
        # Told an address's count here after each change (for the other workers).
        self.on_change: Callable[[str, int], None] | None = None

    def configure(self, rules: AdmissionRules) -> None:
        self.rules = rules
        self._ips = {ip: s for ip, s in self._ips.items() if s.connections}  # new buckets

    def admit(self, ip: str, now: float, allowed: bool = False) -> str | None:
        """``None`` to admit (and count) the connection, else the rejection reason."""
        rules = self.rules
        if not allowed and self.bans.is_banned(ip, now):
            return "banned"
        cap = rules.max_connections
        if not allowed:
            cap -= rules.reserved_connections  # the reserve is for trusted networks
        if self.connections + self.elsewhere_total >= cap:
            return "max_connections"
        state = self._ips.get(ip)
        if state is None:
            rate = rules.connections_per_second_per_ip
            state = self._ips[ip] = _PerIp(TokenBucket(rate, max(rate, 1.0), now))
        if not allowed:
            if state.connections + self.elsewhere.get(ip, 0) >= rules.max_connections_per_ip:
                return "max_connections_per_ip"
            if not state.bucket.try_take(now):
                return "connection_rate"
        state.connections += 1
        self.connections += 1
        if self.on_change is not None:
            self.on_change(ip, state.connections)
        return None

    def release(self, ip: str) -> None:
        self.connections = max(0, self.connections - 1)
        state = self._ips.get(ip)
        if state is not None:
            state.connections -= 1
            if self.on_change is not None:
                self.on_change(ip, state.connections)

    def sweep(self, now: float) -> None:
        """Forget idle IPs whose bucket has refilled (nothing to remember)."""
        burst = max(self.rules.connections_per_second_per_ip, 1.0)
        self._ips = {
            ip: s
            for ip, s in self._ips.items()
            if s.connections > 0 or s.bucket.available(now) < burst
        }

    def counts(self) -> dict[str, int]:
        """The open connections per address (those with any)."""
        return {ip: s.connections for ip, s in self._ips.items() if s.connections > 0}

    @property
    def tracked_ips(self) -> int:
        return len(self._ips)
