"""What the RTMP server counts: one typed record, read by ``/metrics`` at scrape time.

The session and the access gate increment fields; the metrics collector
maps each field to its series (``api/metrics.py``). A counter is a field
here, never a string key two modules must spell alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ServerCounters"]


@dataclass(slots=True)
class ServerCounters:
    """Events of the RTMP server since it started."""

    protocol_errors: int = 0
    """Connections closed for a protocol error (timeouts included)."""
    slow_players_dropped: int = 0
    """Players dropped because they could not keep up (or their socket failed)."""
    bans_issued: int = 0
    """IP bans issued (repeated auth failures or plays of distinct missing streams)."""
    publishers_idle_dropped: int = 0
    """Publishers dropped for sending no media for publish_idle_timeout."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Connections, plays and publishes refused by policy, by reason (admission
    limits, bans, auth labels, ``publish_busy``)."""
    plays_refused: Counter[str] = field(default_factory=Counter)
    """Plays refused, by the NetStream status code sent."""
