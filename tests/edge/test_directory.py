"""The origin directory: listings parsed, and what the hub does with them (fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamgate.edge.directory import DirectoryError, Listing, OriginDirectory, parse_listing
from streamgate.http_client import HttpTarget
from streamgate.rtmp.messages import Status
from tests.edge.fakes import Edge

NOT_FOUND = Status.PLAY_STREAM_NOT_FOUND

# nginx-rtmp's rtmp_stat page, as 1.2.x writes it (abridged: one publisher, one
# pulled stream that is still connecting, one stream with only players).
NGINX_STAT = b"""<?xml version="1.0" encoding="utf-8" ?>
<?xml-stylesheet type="text/xsl" href="stat.xsl" ?>
<rtmp>
<nginx_version>1.22.1</nginx_version>
<nginx_rtmp_version>1.1.4</nginx_rtmp_version>
<server>
<application>
<name>live</name>
<live>
<stream>
<name>cam1</name>
<time>5020</time><bw_in>2500000</bw_in><bytes_in>1562500</bytes_in>
<client><id>3</id><address>127.0.0.1</address><flashver>FMLE/3.0</flashver>
<publishing/><active/></client>
<meta><video><width>320</width><height>240</height></video></meta>
<nclients>1</nclients>
<publishing/>
<active/>
</stream>
<stream>
<name>waiting</name>
<time>120</time>
<client><id>7</id><address>127.0.0.1</address></client>
<nclients>1</nclients>
</stream>
<nclients>2</nclients>
</live>
</application>
<application>
<name>other</name>
<live>
<stream><name>cam2</name><active/></stream>
</live>
</application>
</server>
</rtmp>
"""

# SRS 5's GET /api/v1/streams/ (abridged to the fields we read, plus neighbours).
SRS_STREAMS = {
    "code": 0,
    "server": "vid-0xk989d",
    "service": "3n81k0w6",
    "pid": "1",
    "streams": [
        {
            "id": "vid-7pu8b0b",
            "name": "livestream",
            "vhost": "vid-0xk989d",
            "app": "live",
            "tcUrl": "rtmp://127.0.0.1/live",
            "url": "/live/livestream",
            "clients": 1,
            "publish": {"active": True, "cid": "7y8p6k2w"},
        },
        {
            "id": "vid-1",
            "name": "gone",
            "app": "live",
            "url": "/live/gone",
            "publish": {"active": False},
        },
    ],
}


def test_streamgate_listing() -> None:
    body = json.dumps(
        {"mode": "origin", "playable": [{"app": "live", "name": "a"}, {"app": "x", "name": "b"}]}
    ).encode()
    assert parse_listing(body) == {("live", "a"), ("x", "b")}


def test_nginx_rtmp_stat_lists_published_and_active_streams_only() -> None:
    assert parse_listing(NGINX_STAT) == {("live", "cam1"), ("other", "cam2")}


def test_srs_streams_lists_active_publishers_only() -> None:
    assert parse_listing(json.dumps(SRS_STREAMS).encode()) == {("live", "livestream")}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "neither JSON nor XML"),
        (b"[1, 2]", "JSON without"),
        (b'{"code": 1002, "streams": []}', "SRS answered code 1002"),
        (b"<html><body>nginx</body></html>", "not nginx-rtmp's <rtmp>"),
        (b"<rtmp><server>", "bad XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rtmp>&a;</rtmp>',
            "DTD is not accepted",
        ),
    ],
)
def test_bad_listings_are_refused_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(DirectoryError, match=why):
        parse_listing(body)


def test_entries_of_the_wrong_type_are_skipped() -> None:
    body = json.dumps(
        {"playable": [{"app": "live", "name": 3}, "x", {"app": "", "name": "b"}, {"app": "l"}]}
    ).encode()
    assert parse_listing(body) == frozenset()


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_directory_error(body: bytes) -> None:
    try:
        result = parse_listing(body)
    except DirectoryError:
        return
    assert all(isinstance(a, str) and isinstance(n, str) for a, n in result)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["playable", "streams", "app", "name", "publish", "active", "code"]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_parses_or_raises_directory_error(document: object) -> None:
    with contextlib.suppress(DirectoryError):
        parse_listing(json.dumps(document).encode())


# ---------------------------------------------------------------- the hub


def _directory(
    edge: Edge, *listed: tuple[str, str], origins: int = 1, **kw: object
) -> OriginDirectory:
    target = HttpTarget.parse("http://127.0.0.1:1/api/v1/directory")
    directory = OriginDirectory([Listing(target) for _ in range(origins)], 1.0, 1.0, **kw)  # type: ignore[arg-type]
    for listing in directory.listings:
        listing.names = frozenset(listed)
        listing.fetched_at = edge.clock.now()
    edge.hub.directory = directory
    return directory


def test_listed_stream_starts_although_misses_spent_the_connect_rate() -> None:
    edge = Edge(max_connects_per_second=5)
    _directory(edge, ("live", "real"))
    flood = [edge.play(f"miss{i}") for i in range(50)]
    assert sum(p.refused is None for p in flood) == 5  # the budget is spent
    player = edge.play("real")
    assert player.refused is None
    edge.connector.last.start_media()
    assert player.stream is not None
    # ... and it counted: the next miss in the same second is still refused
    assert edge.play("miss-late").refused is not None
    assert len(edge.connector.links) == 6


def test_misses_stay_within_the_rate_when_listed_streams_start() -> None:
    edge = Edge(max_connects_per_second=5)
    _directory(edge, *(("live", f"real{i}") for i in range(20)))
    for i in range(20):
        edge.play(f"real{i}")
        edge.play(f"miss{i}")
    unlisted = [link for link in edge.connector.links if link.name.startswith("miss")]
    assert len(unlisted) <= 5
    assert sum(link.name.startswith("real") for link in edge.connector.links) == 20


def test_without_a_directory_the_listed_name_would_be_refused() -> None:
    """The test above can fail: the same flood without a directory refuses the name."""
    edge = Edge(max_connects_per_second=5)
    for i in range(50):
        edge.play(f"miss{i}")
    player = edge.play("real")
    assert player.refused is not None and "connect rate" in player.refused[1]


def test_stale_listing_gives_no_priority() -> None:
    edge = Edge(max_connects_per_second=5)
    directory = _directory(edge, ("live", "real"))
    edge.clock.advance(directory.stale_after + 0.1)
    for i in range(50):
        edge.play(f"miss{i}")
    assert edge.play("real").refused is not None


def test_listed_stream_goes_to_the_origin_that_lists_it() -> None:
    edge = Edge(origins=2)
    directory = _directory(edge, origins=2)
    directory.listings[1].names = frozenset({("live", "cam")})
    edge.play("cam")
    assert edge.connector.last.origin is edge.hub.pool.origins[1]
    edge.play("other")
    assert edge.connector.last.origin is edge.hub.pool.origins[0]


def test_listing_overrides_the_negative_cache() -> None:
    edge = Edge(missing_ttl=10.0)
    directory = _directory(edge)
    first = edge.play("late")
    edge.connector.last.sink.link_missing(NOT_FOUND, "No such stream")
    assert first.refused is not None
    assert edge.play("late").refused is not None  # cached
    assert len(edge.connector.links) == 1
    directory.listings[0].names = frozenset({("live", "late")})  # published since
    player = edge.play("late")
    assert player.refused is None
    assert len(edge.connector.links) == 2


def test_authoritative_directory_refuses_unlisted_names_without_connecting() -> None:
    edge = Edge()
    _directory(edge, ("live", "real"), authoritative=True)
    player = edge.play("nope")
    assert player.refused is not None and player.refused[0] == NOT_FOUND
    assert "no origin lists it" in player.refused[1]
    assert edge.connector.links == []
    assert edge.hub.refusals["missing_listed"] == 1
    assert edge.play("real").refused is None
    assert len(edge.connector.links) == 1


def test_authoritative_directory_connects_when_a_listing_is_stale_or_missing() -> None:
    edge = Edge(origins=2)
    directory = _directory(edge, ("live", "real"), origins=2, authoritative=True)
    directory.listings[1].fetched_at = None  # never answered
    assert edge.play("nope").refused is None  # unknown: ask the origins
    assert len(edge.connector.links) == 1


# ---------------------------------------------------------------- polling, real sockets


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _poll_once(handler: Handler, interval: float = 0.3) -> Listing:
    """One refresh of a listing served by ``handler`` on loopback."""

    async def scenario() -> Listing:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/list"
        directory = OriginDirectory.from_urls([url], interval=interval)  # timeout: <= 2 s
        listing = directory.listings[0]
        await directory.refresh(listing, lambda: 100.0)
        server.close()
        return listing

    return asyncio.run(scenario())


def test_a_silent_directory_times_out_and_is_not_trusted() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(5)  # silent for longer than the poll's timeout: under test
        finally:
            writer.close()

    listing = _poll_once(silent)
    assert listing.failures == 1 and listing.fetched_at is None
    assert "no answer" in listing.last_error


def test_an_oversized_or_garbled_directory_is_refused() -> None:
    async def huge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n" + b"[" * 17_000_000)
        await writer.drain()
        writer.close()

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        writer.close()

    listing = _poll_once(huge, interval=5.0)  # 16 MB read before the cap: not a timeout
    assert listing.failures == 1 and "over" in listing.last_error
    listing = _poll_once(garbled)
    assert listing.failures == 1 and listing.fetched_at is None and listing.last_error


def test_a_closed_port_is_a_failed_poll() -> None:
    async def scenario() -> Listing:
        directory = OriginDirectory.from_urls(["http://127.0.0.1:9/list"], interval=0.3)
        await directory.refresh(directory.listings[0], lambda: 100.0)
        return directory.listings[0]

    listing = asyncio.run(scenario())
    assert listing.failures == 1 and listing.fetched_at is None and listing.last_error
