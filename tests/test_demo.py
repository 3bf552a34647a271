"""The demo source: a real PyAV-encoded clip, looped on a fake clock."""

from __future__ import annotations

import functools

import pytest

from streamgate.demo import DemoClip, DemoSource, encode_clip, parse_flv
from streamgate.relay.clock import FakeClock
from streamgate.relay.hub import HubSettings, StreamHub
from streamgate.relay.stream import FanoutSettings
from streamgate.rtmp.flv import VIDEO_CONFIG, VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import MsgType
from tests.relay.sinks import RecordingPlayer


@functools.cache
def clip() -> DemoClip:
    return encode_clip(seconds=2, size="320x240", rate=25, bitrate=300_000)


def test_the_clip_is_real_h264_and_aac_starting_with_headers_and_a_keyframe() -> None:
    c = clip()
    videos = [p for t, _, p in c.messages if t == MsgType.VIDEO]
    assert classify_video(videos[0]) == VIDEO_CONFIG
    assert classify_video(videos[1]) == VIDEO_KEYFRAME
    assert any(t == MsgType.AUDIO for t, _, _ in c.messages)
    assert c.metadata is not None and c.metadata[0][0] == "onMetaData"
    assert 1900 <= c.duration_ms <= 2100


def test_the_loop_keeps_timestamps_monotonic_and_real_time() -> None:
    clock = FakeClock()
    hub = StreamHub(clock, FanoutSettings(merge_ms=0), HubSettings())
    source = DemoSource(hub, clock, clip())
    source.start()
    stream = hub.get("live", "demo")
    assert stream is not None
    player = RecordingPlayer()
    stream.add_player(player, 1)
    clock.advance(5.0)  # two and a half loops
    stamps = [m.timestamp for m in player.messages if m.type_id == MsgType.VIDEO]
    assert stamps == sorted(stamps)
    assert 4500 <= stamps[-1] <= 5000
    assert stream.video is not None and (stream.video.width, stream.video.height) == (320, 240)
    source.close()
    assert hub.get("live", "demo") is None and player.ended is not None


def test_parse_flv_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        parse_flv(b"not flv at all")
