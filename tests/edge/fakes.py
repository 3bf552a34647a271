"""A recording connector for edge tests: links are opened, the test plays the origin."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from streamgate.edge.hub import EdgeHub, EdgeTiming
from streamgate.edge.ingest import LinkSink, PlayWaiter
from streamgate.edge.origins import Origin, OriginPool
from streamgate.relay.clock import FakeClock
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.messages import MsgType
from tests.relay.sinks import AAC_CONFIG, AVC_CONFIG, AVC_KEY, RecordingPlayer


@dataclass
class FakeLink:
    origin: Origin
    app: str
    name: str
    sink: LinkSink
    closed: bool = False

    def close(self) -> None:
        self.closed = True

    # the test acts as the origin through these
    def start_media(self, ts: int = 0) -> None:
        self.sink.link_playing()
        self.sink.link_media(MsgType.VIDEO, ts, AVC_CONFIG)
        self.sink.link_media(MsgType.AUDIO, ts, AAC_CONFIG)
        self.sink.link_media(MsgType.VIDEO, ts, AVC_KEY)


@dataclass
class FakeConnector:
    links: list[FakeLink] = field(default_factory=list)

    def open(self, origin: Origin, app: str, name: str, sink: LinkSink) -> FakeLink:
        link = FakeLink(origin, app, name, sink)
        self.links.append(link)
        return link

    @property
    def last(self) -> FakeLink:
        return self.links[-1]

    def open_links(self) -> list[FakeLink]:
        return [link for link in self.links if not link.closed]


@dataclass
class Player:
    """A player as the session sees it: ready (attached) or refused."""

    stream: Stream | None = None
    refused: tuple[str, str] | None = None
    sink: RecordingPlayer = field(default_factory=RecordingPlayer)
    handle: object = None  # the stream's player handle once attached
    wait: PlayWaiter | None = None  # the hub's wait handle while waiting

    def ready(self, stream: Stream) -> None:
        self.stream = stream
        self.handle = stream.add_player(self.sink, 1)

    def refuse(self, code: str, description: str) -> None:
        self.refused = (code, description)

    def leave(self) -> None:
        assert self.stream is not None
        self.stream.remove_player(self.handle)  # type: ignore[arg-type]

    @property
    def ended(self) -> tuple[str, str] | None:
        return self.sink.ended


class Edge:
    def __init__(
        self,
        origins: int = 1,
        *,
        max_upstreams: int = 100,
        max_connects_per_second: float = 1000,
        breaker_failures: int = 3,
        breaker_reset: float = 10.0,
        seed: int = 1,
        **timing: float,
    ) -> None:
        self.clock = FakeClock()
        self.connector = FakeConnector()
        pool = OriginPool.from_urls(
            [f"rtmp://127.0.0.1:{19350 + i}" for i in range(origins)],
            max_upstreams=max_upstreams,
            max_connects_per_second=max_connects_per_second,
            breaker_failures=breaker_failures,
            breaker_reset=breaker_reset,
            now=self.clock.now(),
        )
        self.hub = EdgeHub(
            self.clock,
            FanoutSettings(merge_ms=0),
            EdgeTiming(**timing),  # type: ignore[arg-type]
            pool,
            self.connector,
            rng=random.Random(seed),
        )

    def play(self, name: str = "x", app: str = "live", query: str = "") -> Player:
        player = Player()
        player.wait = self.hub.request_play(app, name, query, player.ready, player.refuse)
        return player

    def cancel(self, player: Player, name: str = "x") -> None:
        assert player.wait is not None, "the player is not waiting"
        self.hub.cancel_play("live", name, player.wait)
