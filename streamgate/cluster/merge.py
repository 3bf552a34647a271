"""Applying a replicated change to this process's shield state.

One place for what a ban, a lift, a miss or a failure learned from elsewhere
does locally, whether it came from the fleet (Redis) or from another worker
of this machine: bans merge last-writer-wins, misses join the negative cache
with their own expiry, failures count toward a ban without being sent on.
"""

from __future__ import annotations

from collections.abc import Callable

from streamgate.cluster.entries import BanEntry, Event, FailureEntry, MissEntry
from streamgate.shield.bans import Ban, MemoryBanStore
from streamgate.shield.negcache import NegativeCache

__all__ = ["apply_event"]


def apply_event(
    event: Event,
    bans: MemoryBanStore,
    negative: NegativeCache | None,
    to_local: Callable[[float], float],
    now: float,
) -> str | None:
    """Apply ``event`` (its times on the wall clock); returns what it was, if it
    changed anything ("ban", "lift", "miss", "failure"), for the counters."""
    if isinstance(event, BanEntry):
        until = to_local(event.until) if event.until else 0.0
        ban = Ban(event.ip, until, event.offences, event.reason)
        if bans.merge(ban, to_local(event.changed), now):
            return "ban" if event.until else "lift"
        return None
    if isinstance(event, MissEntry):
        if negative is not None and negative.learn(
            (event.app, event.name), to_local(event.expires), event.reason, now
        ):
            return "miss"
        return None
    if isinstance(event, FailureEntry):
        record = bans.record_failure if event.kind == "failure" else bans.record_missing
        record(event.ip, event.detail, now, remote=True)
        return "failure"
    return None  # a kind this replication does not carry
