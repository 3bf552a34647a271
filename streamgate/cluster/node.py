"""One node of the fleet: its replicator, its share of the connect budget and directory.

Built by the server context when ``[cluster] redis_url`` is set, started and
stopped with the server (:meth:`ClusterNode.start`, :meth:`close`); the API
and the metrics read :meth:`view` and the counters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from streamgate.cluster.budget import FleetBudget
from streamgate.cluster.directory import FleetDirectory
from streamgate.cluster.probes import FleetProbes
from streamgate.cluster.replicator import Replicator
from streamgate.cluster.settings import ClusterOptions
from streamgate.edge.budgeted import BudgetedConnector
from streamgate.shield.bans import MemoryBanStore

if TYPE_CHECKING:
    from streamgate.edge.hub import EdgeHub
    from streamgate.relay.clock import Clock

__all__ = ["ClusterNode"]

log = logging.getLogger("streamgate.cluster")


class ClusterNode:
    """The cluster side of one server."""

    def __init__(self, options: ClusterOptions, bans: MemoryBanStore, clock: Clock) -> None:
        self.options = options
        self.clock = clock
        bans.clock = clock.now  # lifts are dated on the loop's clock, as bans are
        self.replicator = Replicator(options, bans, None, clock.now)
        self.budget: FleetBudget | None = None
        self.probes: FleetProbes | None = None
        self.directory = FleetDirectory(options, self.available)

    def available(self) -> bool:
        return self.replicator.up

    def attach_edge(self, edge: EdgeHub) -> None:
        """Share the edge's negative cache, budget its connects and its directory."""
        self.replicator.attach_negative(edge.negative)
        if edge.settings.missing_ttl > 0:
            self.probes = FleetProbes(
                self.options,
                self.replicator,
                edge.negative,
                edge.settings.start_timeout,
                self.available,
            )
            edge.name_gate = self.probes
        if self.options.fleet_rate > 0:
            self.budget = FleetBudget(
                self.options,
                self.available,
                nodes=lambda: len(self.replicator.nodes),
                now=self.clock.now,
            )
            edge.connector = BudgetedConnector(edge.connector, self.budget)
        if edge.directory is not None:
            edge.directory.share = self.directory

    def start(self) -> None:
        self.replicator.start()
        if self.budget is not None:
            self.budget.start()

    # Shutdown never waits on Redis longer than this (a slow or stopped server).
    CLOSE_BOUND = 5.0

    async def close(self) -> None:
        try:
            async with asyncio.timeout(self.CLOSE_BOUND):
                await self.replicator.close()
                if self.budget is not None:
                    await self.budget.close()
                if self.probes is not None:
                    await self.probes.close()
                await self.directory.close()
        except TimeoutError:
            log.warning("cluster: closing took over %g s; left unfinished", self.CLOSE_BOUND)

    def view(self, now: float) -> dict[str, Any]:
        """What ``/api/v1/cluster`` shows (never the password)."""
        rep = self.replicator
        wall = rep.wall()
        view: dict[str, Any] = {
            "enabled": True,
            "node": self.options.node_id,
            "redis": {
                "url": self.options.shown_url,
                "up": rep.up,
                "since_seconds": round(now - rep.changed_at, 3),
                "last_error": rep.last_error or None,
                "failed_attempts": rep.attempts_down,
            },
            "nodes": [
                {
                    "node": n.node,
                    "self": n.node == self.options.node_id,
                    "seen_seconds_ago": round(max(0.0, wall - n.seen), 3),
                    "up_seconds": round(max(0.0, wall - n.started), 3),
                }
                for n in sorted(rep.nodes.values(), key=lambda n: n.node)
            ],
            "received": rep.received(),
            "malformed": rep.malformed(),
            "sent": {
                k.partition(":")[2]: v for k, v in rep.counters.items() if k.startswith("sent:")
            },
            "dropped": rep.counters["dropped"],
            "directory": {
                "leading": self.directory.leading,
                **dict(self.directory.counters),
            },
        }
        if self.probes is not None:
            view["asks"] = {
                "last_error": self.probes.last_error or None,
                **dict(self.probes.counters),
            }
        if self.budget is not None:
            view["fleet_connect_budget"] = {
                "per_second": self.options.fleet_rate,
                "last_error": self.budget.last_error or None,
                **dict(self.budget.counters),
            }
        return view
