"""The origins' live-stream directory, polled by one node for the whole fleet.

The node holding a short lease in Redis polls the origins (the lease is
renewed on every poll, so it moves only when its holder stops) and writes
each listing, with when it was fetched, under the origin's directory URL;
the other nodes read those instead of polling, so N edges cost the origins
one poll per interval. A listing keeps its ``stale_after`` meaning: a copy
older than that is unknown. Redis unreachable or answering garbage: the
node polls the origins itself, as without a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamgate.cluster.settings import ClusterOptions

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from streamgate.edge.directory import OriginDirectory

__all__ = ["FleetDirectory", "decode_listing"]

_MAX_LISTING = 16 * 1024 * 1024
_MAX_NAMES = 200_000

# ARGV: this node, lease (ms). 1: this node polls. Garbage in the key is replaced.
_LEAD = """
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'table' and cur['err'] then
  redis.call('DEL', KEYS[1])
  cur = false
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def decode_listing(raw: object) -> tuple[frozenset[tuple[str, str]], float, str]:
    """(names, fetched wall time, last error) of a shared listing; ValueError if malformed."""
    if not isinstance(raw, bytes | str) or len(raw) > _MAX_LISTING:
        raise ValueError("not a string of at most 16 MiB")
    value: Any = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    names, fetched, error = value.get("names"), value.get("fetched"), value.get("error", "")
    if not isinstance(names, list) or len(names) > _MAX_NAMES:
        raise ValueError("names must be a list")
    if isinstance(fetched, bool) or not isinstance(fetched, int | float):
        raise ValueError("fetched must be a number")
    if not isinstance(error, str):
        raise ValueError("error must be a string")
    pairs = set()
    for item in names:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(p, str) and p for p in item)
        ):
            raise ValueError("a name is not [app, name]")
        pairs.add((item[0], item[1]))
    return frozenset(pairs), float(fetched), error[:200]


class FleetDirectory:
    """:class:`~streamgate.edge.directory.SharedListings` through Redis."""

    def __init__(
        self,
        options: ClusterOptions,
        available: Callable[[], bool] = lambda: True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.available = available
        self.wall = wall
        self.leading = False
        self.counters: Counter[str] = Counter()
        self._client: Redis | None = None

    def _redis(self) -> Redis:
        if self._client is None:
            self._client = self.options.client()
        return self._client

    async def poll(self, directory: OriginDirectory, now: Callable[[], float]) -> bool:
        if not self.available():
            self.leading = False
            self.counters["local"] += 1
            return False
        try:
            return await self._poll(directory, now)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis slow or gone: poll here, as a lone edge would
            self.leading = False
            self.counters["local"] += 1
            return False

    async def _poll(self, directory: OriginDirectory, now: Callable[[], float]) -> bool:
        client, keys, timeout = self._redis(), self.options.keys, self.options.command_timeout
        lease = int(max(2 * directory.interval, 1.0) * 1000)
        lead = await asyncio.wait_for(
            client.eval(_LEAD, 1, keys.directory_leader, self.options.node_id, lease),
            timeout,
        )
        targets = [ls for ls in directory.listings if ls.target is not None]
        if lead == 1:
            self.leading = True
            await directory.poll_origins(now)
            ttl = int(directory.stale_after * 1000)
            pipe = client.pipeline(transaction=False)
            local_now, wall = now(), self.wall()
            for ls in targets:
                assert ls.target is not None
                if ls.fetched_at is None:
                    continue
                value = {
                    "names": sorted([app, name] for app, name in ls.names),
                    "fetched": ls.fetched_at - local_now + wall,
                    "error": ls.last_error,
                }
                pipe.set(keys.directory(ls.target.url), json.dumps(value), px=ttl)
            await asyncio.wait_for(pipe.execute(), timeout)
            self.counters["polled"] += 1
            return True
        self.leading = False
        urls = [ls.target.url for ls in targets if ls.target is not None]
        values = (
            await asyncio.wait_for(client.mget([keys.directory(u) for u in urls]), timeout)
            if urls
            else []
        )
        local_now, wall = now(), self.wall()
        for ls, raw in zip(targets, values, strict=True):
            if raw is None:
                continue
            try:
                names, fetched, error = decode_listing(raw)
            except (ValueError, RecursionError):
                self.counters["malformed"] += 1
                continue
            fetched_at = fetched - wall + local_now
            if ls.fetched_at is None or fetched_at > ls.fetched_at:
                ls.names, ls.fetched_at, ls.last_error = names, fetched_at, error
        self.counters["read"] += 1
        return True

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a pool that is already gone
                await asyncio.wait_for(client.aclose(), self.options.command_timeout)
