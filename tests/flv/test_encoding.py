"""FLV viewers of a stream (on a fake clock): the bytes are real FLV, each
viewer's timeline starts at 0, and encodings are shared per group."""

from __future__ import annotations

import io

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.flv.server import CHUNKED, PLAIN, WEBSOCKET
from streamgate.relay.clock import FakeClock
from streamgate.relay.encoding import FlvTags, flv_header
from streamgate.relay.stream import MAX_TIMELINES, FanoutSettings, Stream
from streamgate.rtmp import amf0
from streamgate.rtmp.messages import MsgType
from tests.flv.viewer import FlvReader
from tests.relay.sinks import AAC_CONFIG, AAC_RAW, AVC_CONFIG, AVC_INTER, AVC_KEY

V, A = MsgType.VIDEO, MsgType.AUDIO


class FlvSink:
    """A viewer: unwraps its framing and parses what it gets as FLV."""

    def __init__(self, framing: str = "plain") -> None:
        self.framing = framing
        self.reader = FlvReader()
        self.writes: list[bytes] = []
        self.ended: tuple[str, str] | None = None
        self.dropped: str | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.reader.feed(unframe(self.framing, bytes(data)))

    def stream_ended(self, code: str, description: str) -> None:
        self.ended = (code, description)

    def drop(self, reason: str) -> None:
        self.dropped = reason


def unframe(framing: str, data: bytes) -> bytes:
    """One write is exactly one HTTP chunk or one WebSocket frame."""
    if framing == "chunked":
        hex_size, _, rest = data.partition(b"\r\n")
        assert rest.endswith(b"\r\n") and int(hex_size, 16) == len(rest) - 2, data[:40]
        return rest[:-2]
    if framing == "websocket":
        assert data[0] == 0x82, data[:4]
        size, pos = data[1], 2
        if size == 126:
            size, pos = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, pos = int.from_bytes(data[2:10], "big"), 10
        assert len(data) - pos == size
        return data[pos:]
    return data


FRAMINGS = {"plain": PLAIN, "chunked": CHUNKED, "websocket": WEBSOCKET}


def make(merge_ms: int = 50) -> tuple[FakeClock, Stream]:
    clock = FakeClock()
    return clock, Stream("live", "x", clock, FanoutSettings(merge_ms=merge_ms))


def publish_headers(stream: Stream, audio: bool = True, video: bool = True) -> None:
    meta: dict[str, float] = {}
    if video:
        meta["videocodecid"] = 7.0
    if audio:
        meta["audiocodecid"] = 10.0
    values = ("@setDataFrame", "onMetaData", meta)
    stream.on_metadata(0, values, amf0.encode(*values))
    if video:
        stream.on_media(V, 0, AVC_CONFIG)
    if audio:
        stream.on_media(A, 0, AAC_CONFIG)


def publish_gop(stream: Stream, start: int, inters: int = 3) -> None:
    stream.on_media(V, start, AVC_KEY)
    for i in range(inters):
        stream.on_media(A, start + 10 * i, AAC_RAW)
        stream.on_media(V, start + 40 * (i + 1), AVC_INTER + bytes([i]))


def add(stream: Stream, framing: str = "plain") -> FlvSink:
    sink = FlvSink(framing)
    stream.add_player(sink, 0, encoding=FlvTags(FRAMINGS[framing]))
    return sink


@pytest.mark.parametrize("framing", ["plain", "chunked", "websocket"])
def test_a_viewer_gets_header_metadata_configs_then_the_gop_from_zero(framing: str) -> None:
    clock, stream = make()
    publish_headers(stream)
    publish_gop(stream, 0)
    publish_gop(stream, 5000)
    clock.advance(1)
    sink = add(stream, framing)
    tags = sink.reader.tags
    assert sink.reader.flags == 0x05  # audio and video
    assert [t.type for t in tags[:3]] == [18, 9, 8]
    assert tags[1].body == AVC_CONFIG and tags[2].body == AAC_CONFIG
    assert tags[3].body == AVC_KEY and tags[3].keyframe
    assert tags[3].timestamp == 0  # 5000 on the stream's timeline
    assert all(t.timestamp >= 0 for t in tags)
    publish_gop(stream, 6000)
    clock.advance(1)
    assert sink.reader.tags[-1].timestamp == 6000 - 5000 + 120
    assert not sink.reader.buffer  # whole tags only, every write framed whole


def test_header_flags_follow_the_real_tracks() -> None:
    for audio, video, flags in ((True, False, 0x04), (False, True, 0x01)):
        _, stream = make()
        publish_headers(stream, audio=audio, video=video)
        if video:
            stream.on_media(V, 0, AVC_KEY)
        else:
            stream.on_media(A, 0, AAC_RAW)
        assert stream.described
        sink = add(stream)
        assert sink.reader.flags == flags
        assert stream.tracks() == (audio, video)
    assert flv_header(True, True)[4] == 0x05


def test_viewers_joining_one_gop_share_encoding_and_writes() -> None:
    clock, stream = make()
    publish_headers(stream)
    publish_gop(stream, 1000)
    sinks = [add(stream, "chunked") for _ in range(5)]
    assert len(stream.groups) == 1
    publish_gop(stream, 2000)
    clock.advance(1)
    last = [s.writes[-1] for s in sinks]
    assert all(w is last[0] for w in last)  # one bytes object for all: framed once
    assert stream.viewers() == {"rtmp": 0, "flv": 5, "ws-flv": 0}


def test_a_later_gop_gets_its_own_timeline_and_the_count_is_bounded() -> None:
    clock, stream = make()
    publish_headers(stream)
    sinks = []
    for gop in range(MAX_TIMELINES + 3):
        publish_gop(stream, 1000 * (gop + 1))
        clock.advance(0.1)
        sinks.append(add(stream))
    flv_groups = [g for g in stream.groups.values() if g.encoding.timeline]
    assert len(flv_groups) == MAX_TIMELINES
    for sink in sinks[:MAX_TIMELINES]:
        assert sink.reader.tags[3].timestamp == 0
    for sink in sinks[MAX_TIMELINES:]:  # joined the newest timeline: close to 0, not below
        assert 0 < sink.reader.tags[3].timestamp <= 3000
    publish_gop(stream, 100_000)
    clock.advance(1)
    for sink in sinks:  # every timeline stays increasing
        stamps = [t.timestamp for t in sink.reader.tags if t.type == 9]
        assert stamps == sorted(stamps)


def test_audio_just_before_the_base_is_clamped_to_zero() -> None:
    clock, stream = make()
    publish_headers(stream)
    stream.on_media(V, 10_000, AVC_KEY)
    sink = add(stream)
    stream.on_media(A, 9_990, AAC_RAW)  # interleaved a little behind the keyframe
    clock.advance(1)
    assert sink.reader.tags[-1].type == 8 and sink.reader.tags[-1].timestamp == 0


def test_rtmp_and_flv_viewers_of_one_stream() -> None:
    from tests.relay.sinks import RecordingPlayer

    clock, stream = make()
    publish_headers(stream)
    publish_gop(stream, 0)
    rtmp = RecordingPlayer()
    stream.add_player(rtmp, 1)
    flv = add(stream, "websocket")
    publish_gop(stream, 1000)
    clock.advance(1)
    assert stream.viewers() == {"rtmp": 1, "flv": 0, "ws-flv": 1}
    rtmp_media = [m.payload for m in rtmp.messages if m.type_id in (8, 9)]
    flv_media = [t.body for t in flv.reader.tags if t.type in (8, 9)]
    assert rtmp_media == flv_media


def test_a_skipping_viewer_resumes_at_a_keyframe_in_one_frame() -> None:
    clock, stream = make()
    publish_headers(stream)
    publish_gop(stream, 0)
    sink = add(stream, "websocket")
    (player,) = stream.groups[next(iter(stream.groups))].live
    stream.player_paused(player)
    publish_gop(stream, 1000)
    clock.advance(1)
    stream.player_resumed(player)
    publish_gop(stream, 2000)
    clock.advance(1)
    key = [t for t in sink.reader.tags if t.keyframe]
    assert key[-1].timestamp == 2000
    assert not sink.reader.buffer


def real_h264_flv_tags() -> list[tuple[int, int, bytes]]:
    """(type, ts, FLV video tag body) of a short real H.264 clip made with PyAV."""
    out = io.BytesIO()
    with av.open(out, "w", format="flv") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.options = {"g": "10"}
        for i in range(30):
            frame = av.VideoFrame(160, 120, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 8) % 256]) * plane.buffer_size)
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    reader = FlvReader()
    reader.feed(out.getvalue())
    return [(t.type, t.timestamp, t.body) for t in reader.tags]


def test_pyav_decodes_what_a_viewer_gets() -> None:
    clock, stream = make()
    tags = real_h264_flv_tags()
    for type_id, ts, body in tags:
        if type_id == 9:
            stream.on_media(V, ts + 7000, body)
    sink = add(stream)
    clock.advance(1)
    data = b"".join(sink.writes)
    with av.open(io.BytesIO(data), "r", format="flv") as container:
        frames = list(container.decode(video=0))
    assert frames and frames[0].width == 160
    assert frames[0].key_frame


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([8, 9]), st.integers(0, 2**32 - 1), st.binary(max_size=300)),
        max_size=40,
    ),
    st.sampled_from(["plain", "chunked", "websocket"]),
)
def test_any_message_sequence_gives_well_formed_flv(
    messages: list[tuple[int, int, bytes]], framing: str
) -> None:
    clock, stream = make()
    sink = add(stream, framing)
    for type_id, ts, payload in messages:
        stream.on_media(type_id, ts, payload)
    clock.advance(1)
    assert len(sink.reader.tags) == len(messages)
    assert [t.body for t in sink.reader.tags] == [m[2] for m in messages]
    assert not sink.reader.buffer


def test_enhanced_rtmp_hevc_passes_through_with_its_fourcc_headers() -> None:
    clock, stream = make()
    # Enhanced RTMP: IsExHeader | FrameType (1: key) | PacketType, then the FourCC.
    config = bytes([0x80 | 0x10 | 0]) + b"hvc1" + b"\x01" + b"C" * 30  # SequenceStart
    key = bytes([0x80 | 0x10 | 1]) + b"hvc1" + b"\x00\x00\x00" + b"K" * 200  # CodedFrames
    inter = bytes([0x80 | 0x20 | 3]) + b"hvc1" + b"P" * 80  # CodedFramesX
    stream.on_media(V, 0, config)
    stream.on_media(A, 0, AAC_CONFIG)
    stream.on_media(V, 1000, key)
    assert stream.described and stream.tracks() == (True, True)
    sink = add(stream, "chunked")
    stream.on_media(V, 1040, inter)
    clock.advance(1)
    video = [t for t in sink.reader.tags if t.type == 9]
    assert [t.body for t in video] == [config, key, inter]  # byte for byte
    assert video[1].keyframe and video[1].timestamp == 0 and video[2].timestamp == 40
    assert sink.reader.flags == 0x05
