"""The hub: one publisher per name, bounded waits, idle publishers dropped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamgate.relay.clock import FakeClock
from streamgate.relay.hub import HubSettings, StreamBusy, StreamHub
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.messages import MsgType, Status
from tests.relay.sinks import AVC_KEY, RecordingPlayer, RecordingPublisher


def make(**kw: float) -> tuple[FakeClock, StreamHub]:
    clock = FakeClock()
    return clock, StreamHub(clock, FanoutSettings(), HubSettings(**kw))


def test_second_publisher_of_a_name_is_refused() -> None:
    _, hub = make()
    hub.publish("live", "x", RecordingPublisher())
    with pytest.raises(StreamBusy) as err:
        hub.publish("live", "x", RecordingPublisher())
    assert err.value.code == Status.PUBLISH_BAD_NAME
    hub.publish("live", "y", RecordingPublisher())
    hub.publish("other", "x", RecordingPublisher())
    assert len(hub) == 3


def refused_to(log: list[str]) -> Callable[[str, str], None]:
    return lambda code, description: log.append(code)


def test_play_of_missing_stream_is_refused_at_once_by_default() -> None:
    _, hub = make()
    refused: list[str] = []
    assert hub.request_play("live", "x", "", lambda s: None, refused_to(refused)) is None
    assert refused == [Status.PLAY_STREAM_NOT_FOUND]


def test_play_of_live_stream_is_served_at_once() -> None:
    _, hub = make()
    stream = hub.publish("live", "x", RecordingPublisher())
    got: list[Stream] = []
    assert hub.request_play("live", "x", "", got.append, refused_to([])) is None
    assert got == [stream]


def test_waiter_is_served_when_publisher_arrives() -> None:
    clock, hub = make(play_wait=5.0)
    got: list[Stream] = []
    refused: list[str] = []
    hub.request_play("live", "x", "", got.append, refused_to(refused))
    clock.advance(2)
    stream = hub.publish("live", "x", RecordingPublisher())
    assert got == [stream]
    clock.advance(10)
    assert refused == []
    assert hub.waiting == 0


def test_waiter_times_out_with_stream_not_found() -> None:
    clock, hub = make(play_wait=3.0)
    refused: list[str] = []
    hub.request_play("live", "x", "", lambda s: None, refused_to(refused))
    clock.advance(2.9)
    assert refused == []
    clock.advance(0.2)
    assert refused == [Status.PLAY_STREAM_NOT_FOUND]
    assert hub.waiting == 0 and clock.pending == 0


def test_cancelled_waiter_never_fires() -> None:
    clock, hub = make(play_wait=3.0)
    fired: list[str] = []
    waiter = hub.request_play("live", "x", "", lambda s: fired.append("ready"), refused_to(fired))
    assert waiter is not None
    hub.cancel_play("live", "x", waiter)
    hub.publish("live", "x", RecordingPublisher())
    clock.advance(5)
    assert fired == []


def test_idle_publisher_is_dropped_and_players_ended() -> None:
    clock, hub = make(publish_idle_timeout=10.0)
    publisher = RecordingPublisher()
    stream = hub.publish("live", "x", publisher)
    player = RecordingPlayer()
    stream.add_player(player, 1)
    clock.advance(5)
    stream.on_media(MsgType.VIDEO, 0, AVC_KEY)
    clock.advance(9)
    assert hub.sweep() == []
    clock.advance(1.5)
    assert hub.sweep() == [stream]
    assert publisher.kicked is not None and publisher.kicked[0] == Status.PUBLISH_IDLE
    assert player.ended is not None and player.ended[0] == Status.PLAY_UNPUBLISH_NOTIFY
    assert hub.get("live", "x") is None


def test_unpublish_frees_the_name() -> None:
    _, hub = make()
    stream = hub.publish("live", "x", RecordingPublisher())
    hub.unpublish(stream)
    assert hub.get("live", "x") is None
    hub.publish("live", "x", RecordingPublisher())
