"""``streamgate run`` for the benchmarks, plus a statistics dump on SIGUSR1.

Runs exactly what ``streamgate run -c FILE`` runs (:func:`streamgate.app.run`);
the only addition is a SIGUSR1 handler that writes, to ``--stats FILE``, the
process's RSS, a garbage-collected object count (with the commonest types)
and the server context's counters: the churn scenario compares them before
and after, the flood scenario reads the origin's accepted-connection count.
The handler runs on the main thread between two callbacks of the event
loop, so what it reads is consistent.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from streamgate.config import load_settings
from streamgate.log import setup_logging


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stats() -> dict[str, Any]:
    from streamgate.server.clients import ClientIds
    from streamgate.server.context import ServerContext

    gc.collect()
    objects = gc.get_objects()
    types = Counter(type(o).__name__ for o in objects)
    out: dict[str, Any] = {
        "pid": os.getpid(),
        "rss_kb": _rss_kb(),
        "objects": len(objects),
        "top_types": dict(types.most_common(12)),
        "sessions_total": ClientIds.issued,  # connections accepted so far
        "sessions_alive": types.get("RtmpSession", 0) + types.get("FlvViewer", 0),
    }
    contexts = [o for o in objects if isinstance(o, ServerContext)]
    del objects
    if contexts:
        ctx = contexts[0]
        out["sessions"] = len(ctx.sessions)
        # Not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs,
        # which counts the pairs.
        out["counters"] = {
            f.name: dict(value) if isinstance(value, Counter) else value
            for f in dataclasses.fields(ctx.counters)
            for value in (getattr(ctx.counters, f.name),)
        }
        out["streams"] = len(list(ctx.hub))
        # The fan-out's state per stream (an edge's are its ingests'): groups
        # (encodings), players live and skipping (congested, waiting for a
        # keyframe), drops, bytes by sendfile.
        streams = list(ctx.hub)
        if ctx.edge is not None:
            streams += [ingest.stream for ingest in ctx.edge.ingests.values()]
        out["fanout"] = {
            f"{stream.app}/{stream.name}": {
                "groups": len(stream.groups),
                "live": sum(len(g.live) for g in stream.groups.values()),
                "skipping": sum(len(g.skipping) for g in stream.groups.values()),
                "dropped_players": stream.dropped_players,
                "bytes_sendfile": stream.bytes_sendfile,
            }
            for stream in streams
        }
        if ctx.edge is not None:
            out["edge_refusals"] = dict(ctx.edge.refusals)
            out["ingests"] = len(ctx.edge.ingests)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--stats", required=True, help="where SIGUSR1 writes its JSON")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    target = Path(args.stats)

    def dump(signum: int, frame: FrameType | None) -> None:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats()))
        tmp.replace(target)

    signal.signal(signal.SIGUSR1, dump)
    from streamgate.app import run

    run(settings, config_path=args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
