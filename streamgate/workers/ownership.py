"""Which worker of the machine owns a stream: a stable hash of its app and name.

Every worker computes the same owner for a name without asking anyone, so
two first players of a cold stream on two workers both end up at the one
owner, and only the owner ever opens an origin link for it. The owner is
fixed by the worker count; a restarted worker takes its streams back.
"""

from __future__ import annotations

import zlib

__all__ = ["owner_of"]


def owner_of(app: str, name: str, workers: int) -> int:
    """The id (0 .. workers-1) of the worker that owns ``app``/``name``.

    The query string is not part of the name: every variant of a stream has
    one owner.
    """
    key = f"{app}/{name.partition('?')[0]}".encode("utf-8", "surrogatepass")
    return zlib.crc32(key) % workers
