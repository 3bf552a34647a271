"""What each origin says it is serving, learned by polling its HTTP API.

An edge that knows the origin's live streams can tell a real viewer from a
flood of made-up names without asking the origin: a name the origin lists
is started even when the connect budget is spent on misses (its ingest is
shared, so this costs at most one link per live stream), and it goes to the
origin that has it. With ``authoritative`` set, a name that no origin lists
is refused at once, so misses cost the origin nothing at all; the price is
that a stream published in the last poll interval is not found until the
next poll.

Three listings are understood, recognised by their content:

* streamgate: ``GET /api/v1/directory`` (``{"playable": [{"app", "name"}]}``);
* nginx-rtmp: the ``rtmp_stat`` XML page (streams with ``<publishing/>``
  or ``<active/>``);
* SRS: ``GET /api/v1/streams/?count=N`` (streams whose ``publish.active``).

A listing is trusted for ``stale_after`` seconds after it was fetched; an
origin whose listing is older (or never fetched) is "unknown", and plays of
it behave as if there were no directory.

In a fleet, ``share`` (the cluster's) brings the listings up to date from
the one node that polls for all; when it cannot, this node polls itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from streamgate.http_client import HttpError, HttpTarget, fetch

__all__ = ["DirectoryError", "Listing", "OriginDirectory", "SharedListings", "parse_listing"]

log = logging.getLogger("streamgate.edge")

_MAX_LISTING = 16 * 1024 * 1024
_MAX_NAMES = 200_000

StreamKey = tuple[str, str]


class DirectoryError(ValueError):
    """A listing that is not one of the understood formats."""


def parse_listing(body: bytes) -> frozenset[StreamKey]:
    """The (app, name) pairs a listing says are playable."""
    text = body.lstrip()
    if text.startswith(b"<"):
        return _parse_nginx(text)
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise DirectoryError(f"neither JSON nor XML: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("playable"), list):
        return _pairs(
            (item.get("app"), item.get("name"))
            for item in document["playable"]
            if isinstance(item, dict)
        )
    if isinstance(document, dict) and isinstance(document.get("streams"), list):
        if document.get("code", 0) != 0:
            raise DirectoryError(f"SRS answered code {document.get('code')}")
        return _pairs(
            (item.get("app"), item.get("name"))
            for item in document["streams"]
            if isinstance(item, dict)
            and isinstance(item.get("publish"), dict)
            and item["publish"].get("active") is True
        )
    raise DirectoryError("JSON without 'playable' (streamgate) or 'streams' (SRS)")


def _pairs(items: Iterable[tuple[object, object]]) -> frozenset[StreamKey]:
    pairs = set()
    for app, name in items:
        if isinstance(app, str) and isinstance(name, str) and app and name:
            pairs.add((app, name))
            if len(pairs) > _MAX_NAMES:
                raise DirectoryError(f"more than {_MAX_NAMES} streams listed")
    return frozenset(pairs)


def _parse_nginx(body: bytes) -> frozenset[StreamKey]:
    # nginx-rtmp's page has no DTD; refusing one rules out entity expansion and
    # external entities, which are the XML attacks (defusedxml's checks, inline).
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise DirectoryError("XML with a DTD is not accepted")
    try:
        root = ET.fromstring(body)  # noqa: S314 (no DTD, checked above)
    except ET.ParseError as exc:
        raise DirectoryError(f"bad XML: {exc}") from None
    if root.tag != "rtmp":
        raise DirectoryError(f"XML root is <{root.tag}>, not nginx-rtmp's <rtmp>")

    def live_streams() -> Iterable[tuple[object, object]]:
        for application in root.iter("application"):
            app = application.findtext("name")
            for stream in application.iterfind("live/stream"):
                if stream.find("publishing") is not None or stream.find("active") is not None:
                    yield app, stream.findtext("name")

    return _pairs(live_streams())


@dataclass(slots=True)
class Listing:
    """One origin's last good listing."""

    target: HttpTarget | None
    names: frozenset[StreamKey] = frozenset()
    fetched_at: float | None = None
    fetches: int = 0
    failures: int = 0
    last_error: str = ""

    def fresh(self, now: float, stale_after: float) -> bool:
        return self.fetched_at is not None and now - self.fetched_at <= stale_after


class SharedListings(Protocol):
    async def poll(self, directory: OriginDirectory, now: Callable[[], float]) -> bool:
        """Bring the listings up to date for this node; False: poll the origins here."""


@dataclass(slots=True)
class OriginDirectory:
    """Listings of the origins, by the origin's index in the pool."""

    listings: list[Listing]
    interval: float
    timeout: float
    authoritative: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    # https:// URLs: [edge] tls_verify/tls_ca_file's context and tls_server_name.
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    server_name: str | None = None
    share: SharedListings | None = field(default=None, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def from_urls(
        cls,
        urls: list[str],
        *,
        interval: float,
        authoritative: bool = False,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> OriginDirectory:
        targets = [HttpTarget.parse(u, "directory URL") if u else None for u in urls]
        return cls(
            [Listing(t) for t in targets],
            interval,
            timeout=min(interval, 2.0),
            authoritative=authoritative,
            headers=(("Authorization", f"Bearer {token}"),) if token else (),
            tls=tls,
            server_name=server_name,
        )

    @property
    def stale_after(self) -> float:
        return 3 * self.interval

    def listing(self, key: StreamKey, now: float) -> frozenset[int]:
        """Indexes of the origins that currently list ``key``."""
        stale = self.stale_after
        return frozenset(
            i for i, ls in enumerate(self.listings) if key in ls.names and ls.fresh(now, stale)
        )

    def known_missing(self, key: StreamKey, now: float) -> bool:
        """Every origin has a fresh listing and none has ``key`` (authoritative mode only)."""
        if not self.authoritative or not self.listings:
            return False
        stale = self.stale_after
        return all(
            ls.target is not None and ls.fresh(now, stale) and key not in ls.names
            for ls in self.listings
        )

    # ------------------------------------------------------------ polling

    def start(self, now: Callable[[], float]) -> None:
        if self._task is None and any(ls.target is not None for ls in self.listings):
            self._task = asyncio.get_running_loop().create_task(self._poll(now))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll(self, now: Callable[[], float]) -> None:
        while True:
            if self.share is None or not await self.share.poll(self, now):
                await self.poll_origins(now)
            await asyncio.sleep(self.interval)

    async def poll_origins(self, now: Callable[[], float]) -> None:
        """Fetch every origin's listing once."""
        await asyncio.gather(
            *(self.refresh(ls, now) for ls in self.listings if ls.target is not None)
        )

    async def refresh(self, listing: Listing, now: Callable[[], float]) -> None:
        assert listing.target is not None
        listing.fetches += 1
        try:
            reply = await fetch(
                listing.target,
                headers=self.headers,
                timeout=self.timeout,
                max_body=_MAX_LISTING,
                tls=self.tls,
                server_name=self.server_name,
            )
            if reply.status != 200:
                raise DirectoryError(f"HTTP {reply.status}")
            names = parse_listing(reply.body)
        except (HttpError, DirectoryError) as exc:
            listing.failures += 1
            if not listing.last_error:  # log the change, not every poll
                log.warning("origin directory %s: %s", listing.target.url, exc)
            listing.last_error = str(exc)
            return
        if listing.last_error:
            log.info("origin directory %s: answering again", listing.target.url)
        listing.last_error = ""
        listing.names = names
        listing.fetched_at = now()
