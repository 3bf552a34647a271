"""Edge mode: pull streams on demand from origins, one link per stream, shielded.

:mod:`~streamgate.edge.hub` decides per play (negative cache, protection,
one ingest per stream), :mod:`~streamgate.edge.ingest` runs one stream's
link state machine, :mod:`~streamgate.edge.origins` holds the per-origin
bounds, :mod:`~streamgate.edge.directory` polls the origins' lists of live
streams, and :mod:`~streamgate.edge.upstream` is the asyncio connector.
"""

from __future__ import annotations

__all__: list[str] = []
