"""A fleet of edges that protects its origin as one gateway would, through Redis.

Local-first: every play is decided from the node's own state (its ban store,
negative cache, connect limits and directory); Redis only replicates that
state between nodes. One background task per node (:mod:`.replicator`)
publishes what the node learns, applies what the others publish, and
repopulates Redis after an outage; :mod:`.budget` checks the fleet-wide
connect budget on the upstream connect path, under a small bound;
:mod:`.directory` lets one node poll the origins' listings for all.

Nothing here is imported unless ``[cluster] redis_url`` is set.
"""

from __future__ import annotations

from streamgate.cluster.settings import ClusterOptions, cluster_options, redact_url

__all__ = ["ClusterOptions", "cluster_options", "redact_url"]
