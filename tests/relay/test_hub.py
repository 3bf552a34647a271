"""The hub: one publisher per name, bounded waits, idle publishers dropped."""

from __future__ import annotations

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


def test_no_wait_by_default() -> None:
    _, hub = make()
    assert hub.wait_for("live", "x", lambda s: None, lambda: None) is None


def test_waiter_is_served_when_publisher_arrives() -> None:
    clock, hub = make(play_wait=5.0)
    got: list[Stream] = []
    missing: list[bool] = []
    hub.wait_for("live", "x", got.append, lambda: missing.append(True))
    clock.advance(2)
    stream = hub.publish("live", "x", RecordingPublisher())
    assert got == [stream]
    clock.advance(10)
    assert missing == []
    assert hub.waiting == 0


def test_waiter_times_out_with_missing() -> None:
    clock, hub = make(play_wait=3.0)
    missing: list[bool] = []
    hub.wait_for("live", "x", lambda s: None, lambda: missing.append(True))
    clock.advance(2.9)
    assert missing == []
    clock.advance(0.2)
    assert missing == [True]
    assert hub.waiting == 0 and clock.pending == 0


def test_cancelled_waiter_never_fires() -> None:
    clock, hub = make(play_wait=3.0)
    fired: list[str] = []
    waiter = hub.wait_for("live", "x", lambda s: fired.append("ready"), lambda: fired.append("m"))
    assert waiter is not None
    hub.cancel_wait("live", "x", waiter)
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
