"""A negative cache: names known to be missing, for ``ttl`` seconds.

Bounded: past ``max_entries`` the oldest entries go first, so a flood of
distinct names costs a fixed amount of memory.

``on_add`` (the cluster's replicator) hears every entry this node adds;
entries learned from other nodes come in through :meth:`learn`, unheard.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

__all__ = ["NegativeCache"]


class NegativeCache:
    __slots__ = ("_entries", "hits", "max_entries", "on_add", "ttl")

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()
        self.hits = 0
        # (key, expires, reason) of each local add; must not raise.
        self.on_add: Callable[[Hashable, float, str], None] | None = None

    def add(self, key: Hashable, now: float, reason: str = "") -> None:
        if self.ttl <= 0:
            return
        self._store(key, now + self.ttl, reason)
        if self.on_add is not None:
            self.on_add(key, now + self.ttl, reason)

    def learn(self, key: Hashable, expires: float, reason: str, now: float) -> bool:
        """An entry another node found, until ``expires`` (capped at ``ttl`` from now).

        Returns whether it was new here (not already cached as missing).
        """
        if self.ttl <= 0 or expires <= now:
            return False
        known = self._entries.get(key)
        if known is not None and known[0] > now:
            return False
        self._store(key, min(expires, now + self.ttl), reason)
        return True

    def _store(self, key: Hashable, expires: float, reason: str) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (expires, reason)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def get(self, key: Hashable, now: float) -> str | None:
        """The reason the key is cached as missing, or None if it is not (any more)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry[0]:
            del self._entries[key]
            return None
        self.hits += 1
        return entry[1]

    def holds(self, key: Hashable, now: float) -> str | None:
        """What :meth:`get` answers, without counting a hit or dropping anything."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and now < entry[0] else None

    def items(self, now: float) -> Iterator[tuple[Hashable, float, str]]:
        """(key, expires, reason) of the entries still in force, oldest first."""
        for key, (expires, reason) in list(self._entries.items()):
            if expires > now:
                yield key, expires, reason

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def purge(self, now: float) -> None:
        """Drop expired entries (entries are in insertion order, so expiry order)."""
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                break
            del self._entries[key]
