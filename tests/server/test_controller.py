"""The RTMP controller without sockets: two cores on an in-memory wire, a fake clock.

Every decision a connection takes (auth, refusals and their bookkeeping,
publish, play, waiting on a hook, the end line's cause) is driven here by a
real client core talking to a real server core; only the adapter (the
:class:`Link`) is a recording stand-in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streamgate.auth import AuthDecision, sign_query
from streamgate.config import load_settings
from streamgate.relay.clock import FakeClock
from streamgate.relay.delivery import WriteOnly
from streamgate.rtmp.events import Event, MediaReceived, StatusReceived, StreamCreated
from streamgate.rtmp.messages import MsgType, Status
from streamgate.server.context import ServerContext
from streamgate.server.controller import RtmpController
from tests.relay.sinks import AVC_CONFIG, AVC_KEY
from tests.rtmp.pair import ConnectionPair, events_of

SECRET = "play-secret"


class RecordingLink:
    """The adapter's side, recorded: what was flushed, whether it closed."""

    def __init__(self, pair: ConnectionPair) -> None:
        self.pair = pair
        self.paused = False
        self.closed = False
        self.aborted = False
        self.pending: list[tuple[Awaitable[AuthDecision], Callable[[AuthDecision], None]]] = []

    def flush(self) -> None:
        out = self.pair.server.data_to_send()
        if out:
            self.pair.deliver_to_client(out)

    def close(self) -> None:
        self.flush()
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def delivery(self) -> WriteOnly:
        def write(data: bytes) -> None:
            self.pair.deliver_to_client(bytes(data))

        return WriteOnly(write)

    def wait_for(
        self, decision: Awaitable[AuthDecision], then: Callable[[AuthDecision], None]
    ) -> None:
        self.pending.append((decision, then))


class Client:
    """One client core, its server core and the controller between them."""

    _ids = 0

    def __init__(self, ctx: ServerContext, ip: str = "192.0.2.1") -> None:
        Client._ids += 1
        self.pair = ConnectionPair()
        self.link = RecordingLink(self.pair)
        self.ctl = RtmpController(
            ctx, self.pair.server, self.link, Client._ids, ip, f"{ip}:1", ctx.clock.now()
        )

    def step(self) -> None:
        """Deliver what the client queued; the controller acts; its answers go back."""
        while not self.link.closed:
            to_server = self.pair.client.data_to_send()
            if not to_server:
                return
            events: list[Event] = self.pair.deliver_to_server(to_server)
            while events and not self.ctl.closed:
                self.ctl.handle(events)
                events = self.pair.server.take_events()
            self.link.flush()

    def connect(self) -> int:
        self.pair.client.connect()
        self.step()
        self.pair.client.create_stream()
        self.step()
        created = events_of(self.pair.client_events, StreamCreated)
        return int(created[-1].stream_id)

    def play(self, name: str) -> int:
        sid = self.connect()
        self.pair.client.play(sid, name)
        self.step()
        return sid

    def publish(self, name: str) -> int:
        sid = self.connect()
        self.pair.client.publish(sid, name)
        self.step()
        return sid

    def statuses(self) -> list[str]:
        return [e.code for e in events_of(self.pair.client_events, StatusReceived)]

    def media(self) -> list[bytes]:
        return [e.payload for e in events_of(self.pair.client_events, MediaReceived)]


def context(**sections: Any) -> ServerContext:
    sections.setdefault("limits", {"ban_after_failures": 3})
    settings = load_settings(None, **sections)
    # An event loop object that never runs: origin mode only stores it.
    loop = asyncio.AbstractEventLoop()  # type: ignore[abstract]
    return ServerContext.build(settings, loop, clock=FakeClock())


def test_play_of_a_missing_stream_is_refused_counted_and_held_against_the_address() -> None:
    ctx = context()
    names = ["a", "b", "c"]
    for name in names:
        client = Client(ctx)
        client.play(name)
        assert client.statuses() == [Status.PLAY_STREAM_NOT_FOUND]
        assert client.link.closed and client.ctl.closed
        assert client.ctl.end.failed and client.ctl.end.reason == (
            f"play refused: {Status.PLAY_STREAM_NOT_FOUND}"
        )
    assert ctx.counters.plays_refused[Status.PLAY_STREAM_NOT_FOUND] == len(names)
    assert ctx.counters.bans_issued == 1  # three distinct missing names: banned
    assert ctx.bans.is_banned("192.0.2.1", ctx.clock.now())


def test_a_player_gets_the_publishers_media_through_its_delivery() -> None:
    ctx = context()
    publisher = Client(ctx)
    psid = publisher.publish("cam")
    assert publisher.statuses() == [Status.PUBLISH_START]
    assert publisher.ctl.role == "publisher" and publisher.ctl.started
    for payload in (AVC_CONFIG, AVC_KEY):
        publisher.pair.client.send_media(psid, MsgType.VIDEO, 0, payload)
    publisher.step()

    player = Client(ctx)
    player.play("cam")
    assert player.statuses()[-2:] == [Status.PLAY_RESET, Status.PLAY_START]
    assert player.media() == [AVC_CONFIG, AVC_KEY]  # the GOP cache, at once
    assert not player.link.closed


def test_a_second_publisher_of_a_name_is_told_bad_name() -> None:
    ctx = context()
    Client(ctx).publish("cam")
    second = Client(ctx)
    second.publish("cam")
    assert second.statuses() == [Status.PUBLISH_BAD_NAME]
    assert second.link.closed and not second.ctl.end.failed  # a clash, not an attack
    assert ctx.counters.rejected["publish_busy"] == 1


def test_a_refused_play_never_reaches_the_play_source() -> None:
    # With play_wait, a play that reaches the hub waits there for a publisher.
    ctx = context(auth={"play": "signed", "keys": {"k1": SECRET}}, origin={"play_wait": 5.0})
    client = Client(ctx)
    client.play("cam?exp=4000000000&sig=" + "A" * 43 + "&kid=k1")
    assert client.statuses() == [Status.PLAY_FAILED]
    assert client.link.closed
    assert ctx.counters.rejected["auth_bad_signature"] == 1
    assert ctx.hub.waiting == 0
    # ... and a good token does reach it (so the check above could fail).
    good = Client(ctx)
    token = sign_query("play", "live", "cam", int(time.time()) + 60, SECRET.encode(), "k1")
    good.play(f"cam?{token}")
    assert ctx.hub.waiting == 1 and good.statuses() == []


def test_an_auth_hook_answer_for_a_client_that_left_does_nothing() -> None:
    ctx = context(auth={"play": "hook", "hook_url": "http://127.0.0.1:9/hook"})
    client = Client(ctx)
    sid = client.play("cam")
    assert len(client.link.pending) == 1  # waiting on the hook: nothing said yet
    assert client.statuses() == []
    decision, then = client.link.pending[0]
    getattr(decision, "close", lambda: None)()  # the hook is never asked here
    client.pair.client.delete_stream(sid)
    client.step()
    then(AuthDecision(True))
    assert client.statuses() == [] and client.ctl.playing == {} and client.ctl.waiting == {}
    assert not client.link.closed


def test_an_auth_hook_refusal_is_told_when_it_comes() -> None:
    ctx = context(auth={"play": "hook", "hook_url": "http://127.0.0.1:9/hook"})
    client = Client(ctx)
    client.play("cam")
    decision, then = client.link.pending[0]
    getattr(decision, "close", lambda: None)()
    then(AuthDecision(False, "not today", "auth_hook_denied"))
    assert client.statuses() == [Status.PLAY_FAILED]
    assert client.link.closed and ctx.counters.rejected["auth_hook_denied"] == 1


def test_play_on_a_stream_id_already_playing_is_refused() -> None:
    ctx = context()
    Client(ctx).publish("cam")
    client = Client(ctx)
    sid = client.play("cam")
    # A raw command: the client core itself refuses to send a play on a busy stream.
    client.pair.client.send_command(sid, "play", 0.0, None, "cam")
    client.step()
    assert client.statuses()[-1] == Status.PLAY_FAILED
    assert client.link.closed and client.ctl.playing == {}


def test_a_publisher_leaving_ends_its_players_with_unpublish_notify() -> None:
    ctx = context()
    publisher = Client(ctx)
    publisher.publish("cam")
    player = Client(ctx)
    player.play("cam")
    publisher.ctl.lost(None)
    assert player.statuses()[-1] == Status.PLAY_UNPUBLISH_NOTIFY
    assert player.link.closed
    assert publisher.ctl.end.detail == "closed by the peer"
    assert ctx.hub.get("live", "cam") is None
