"""A negative cache: names known to be missing, for ``ttl`` seconds.

Bounded: past ``max_entries`` the oldest entries go first, so a flood of
distinct names costs a fixed amount of memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator

__all__ = ["NegativeCache"]


class NegativeCache:
    __slots__ = ("_entries", "hits", "max_entries", "ttl")

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, str]] = OrderedDict()
        self.hits = 0

    def add(self, key: Hashable, now: float, reason: str = "") -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl, reason)
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
