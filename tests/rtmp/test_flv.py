"""Tests for streamgate.rtmp.flv: what kind of media a tag carries.

Real streams come from encoders through PyAV (tests/rtmp/samples.py); the
corners no encoder writes (ModEx, multitrack, reserved values) are built by hand.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamgate.rtmp.flv import (
    AUDIO_CONFIG,
    AUDIO_FRAME,
    AUDIO_OTHER,
    VIDEO_CONFIG,
    VIDEO_FRAME,
    VIDEO_KEYFRAME,
    VIDEO_OTHER,
    classify_audio,
    classify_video,
)
from tests.rtmp.samples import (
    AUDIO_PREFIXES,
    OPUS_HEAD,
    VIDEO_PREFIXES,
    audio_configs,
    config_record,
    ex_audio,
    ex_video,
    first_available,
    legacy_avc_config,
    make_asc,
    modex,
    multitrack,
    real_video_configs,
    video_tags,
)

VIDEO_KINDS = {VIDEO_FRAME, VIDEO_KEYFRAME, VIDEO_CONFIG, VIDEO_OTHER}
AUDIO_KINDS = {AUDIO_FRAME, AUDIO_CONFIG, AUDIO_OTHER}


# --- real streams ----------------------------------------------------------------------------


def test_h264_legacy_stream_classification() -> None:
    tags = video_tags("libx264", 320, 240)
    kinds = [classify_video(tag) for tag in tags]
    assert kinds[0] == VIDEO_CONFIG
    assert kinds[1] == VIDEO_KEYFRAME
    assert kinds[2:-1] == [VIDEO_FRAME] * (len(tags) - 3)
    assert tags[-1][:2] == b"\x17\x02"  # FFmpeg ends with an AVC end-of-sequence tag
    assert kinds[-1] == VIDEO_OTHER


def test_h264_over_enhanced_rtmp_avc1() -> None:
    record = config_record(video_tags("libx264", 642, 362))
    assert classify_video(ex_video(1, 0, b"avc1", record)) == VIDEO_CONFIG
    assert classify_video(ex_video(1, 1, b"avc1", b"\0\0\0" + b"\0\0\0\x02\x65\x88")) == (
        VIDEO_KEYFRAME
    )
    assert classify_video(ex_video(2, 3, b"avc1", b"\0\0\0\x02\x41\x9a")) == VIDEO_FRAME


def test_hevc_enhanced_stream_classification() -> None:
    tags = video_tags("libx265", 320, 240)
    kinds = [classify_video(tag) for tag in tags]
    assert kinds[0] == VIDEO_CONFIG
    assert kinds[1] == VIDEO_OTHER  # FFmpeg's colorInfo Metadata packet
    assert kinds[2] == VIDEO_KEYFRAME
    assert set(kinds[3:]) == {VIDEO_FRAME}


def test_hevc_legacy_codec_id_12() -> None:
    record = config_record(video_tags("libx265", 642, 362))
    assert classify_video(legacy_avc_config(record, codec_id=12)) == VIDEO_CONFIG
    assert classify_video(b"\x1c\x01\x00\x00\x00\x00\x00\x00\x01\x26") == VIDEO_KEYFRAME
    assert classify_video(b"\x2c\x01\x00\x00\x00\x00\x00\x00\x01\x02") == VIDEO_FRAME
    assert classify_video(b"\x1c\x02\x00\x00\x00") == VIDEO_OTHER


def test_av1_enhanced_stream_classification() -> None:
    codec = first_available("libaom-av1", "libsvtav1", "librav1e")
    tags = video_tags(codec, 320, 240)
    assert tags[0][:5] == b"\x90av01"
    kinds = [classify_video(tag) for tag in tags]
    assert kinds[:3] == [VIDEO_CONFIG, VIDEO_OTHER, VIDEO_KEYFRAME]
    assert set(kinds[3:]) == {VIDEO_FRAME}


def test_vp9_enhanced_stream_classification() -> None:
    tags = video_tags("libvpx-vp9", 320, 240)
    assert tags[0][:5] == b"\x90vp09"
    kinds = [classify_video(tag) for tag in tags]
    assert kinds[:3] == [VIDEO_CONFIG, VIDEO_OTHER, VIDEO_KEYFRAME]
    assert set(kinds[3:]) == {VIDEO_FRAME}


# --- video header edge cases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"", VIDEO_OTHER),
        (b"\x17", VIDEO_OTHER),
        (b"\x17\x00\x00\x00\x00", VIDEO_OTHER),  # config header with no record
        (b"\x17\x02\x00\x00\x00", VIDEO_OTHER),  # AVC end of sequence
        (b"\x17\x05\x00\x00\x00\x00", VIDEO_OTHER),  # unknown AVCPacketType
        (b"\x57\x00", VIDEO_OTHER),  # video info / command frame
        (b"\x57\x00\x00\x00\x00\x01", VIDEO_OTHER),
        (b"\x47\x01\x00\x00\x00\x01", VIDEO_FRAME),  # server-generated keyframe
        (b"\x07\x01\x00\x00\x00\x01", VIDEO_OTHER),  # reserved frame type 0
        (b"\x12\x00\x00", VIDEO_KEYFRAME),  # Sorenson H.263, no packet type byte
        (b"\x22\x00\x00", VIDEO_FRAME),
        (b"\x32\x00\x00", VIDEO_FRAME),  # disposable inter frame
        (b"\x24\x00\x00", VIDEO_FRAME),  # VP6
        (b"\x12", VIDEO_OTHER),
        (ex_video(1, 0, b"av0"), VIDEO_OTHER),  # truncated FourCC
        (ex_video(1, 0, b"av01"), VIDEO_CONFIG),
        (ex_video(1, 5, b"av01", b"\x80\x04"), VIDEO_CONFIG),  # MPEG2TSSequenceStart
        (ex_video(1, 2, b"av01"), VIDEO_OTHER),  # SequenceEnd
        (ex_video(1, 4, b"hvc1", b"\x02"), VIDEO_OTHER),  # Metadata, frame type ignored
        (ex_video(5, 4, b"hvc1", b"\x02"), VIDEO_OTHER),
        (bytes([0xD1, 0x00]), VIDEO_OTHER),  # E-RTMP command frame: no FourCC
        (ex_video(1, 1, b"vp09", b"\x82"), VIDEO_KEYFRAME),
        (ex_video(2, 1, b"vp09", b"\x86"), VIDEO_FRAME),
        (ex_video(1, 3, b"hvc1", b"\x00"), VIDEO_KEYFRAME),  # CodedFramesX
        (ex_video(3, 3, b"hvc1", b"\x00"), VIDEO_FRAME),
        (ex_video(0, 1, b"hvc1", b"\x00"), VIDEO_OTHER),  # reserved frame type
        (ex_video(1, 9, b"hvc1", b"\x00"), VIDEO_OTHER),  # reserved packet type
    ],
)
def test_classify_video_headers(payload: bytes, kind: int) -> None:
    assert classify_video(payload) == kind


def test_enhanced_video_modex() -> None:
    nano = b"\x00\x01\x02"
    keyframe = bytes([0x80 | 1 << 4 | 7]) + modex(1, nano) + b"hvc1" + b"\0\0\0\x01"
    assert classify_video(keyframe) == VIDEO_KEYFRAME
    # 16-bit ModEx size and a chain of two ModEx blocks.
    chained = bytes([0x80 | 2 << 4 | 7]) + modex(7, b"\x00" * 300, large=True)
    chained += modex(3, nano) + b"av01" + b"\x12\x00"
    assert classify_video(chained) == VIDEO_FRAME
    record = config_record(video_tags("libx264", 320, 240))
    config = bytes([0x80 | 1 << 4 | 7]) + modex(0, nano) + b"avc1" + record
    assert classify_video(config) == VIDEO_CONFIG
    for cut in range(1, len(chained) - 6):
        assert classify_video(chained[:cut]) == VIDEO_OTHER


def test_enhanced_video_multitrack() -> None:
    record = config_record(video_tags("libx264", 642, 362))
    small = config_record(video_tags("libx264", 320, 240))
    one = bytes([0x80 | 1 << 4 | 6]) + multitrack(0, 1, [(b"avc1", b"\0\0\0\0\0\0\x02\x65\x88")])
    assert classify_video(one) == VIDEO_KEYFRAME
    inter = bytes([0x80 | 2 << 4 | 6]) + multitrack(1, 3, [(b"hvc1", b"\x01"), (b"hvc1", b"")])
    assert classify_video(inter) == VIDEO_FRAME
    many = bytes([0x80 | 1 << 4 | 6]) + multitrack(1, 0, [(b"avc1", record), (b"avc1", small)])
    assert classify_video(many) == VIDEO_CONFIG
    nested = bytes([0x80 | 1 << 4 | 6]) + multitrack(0, 6, [(b"avc1", b"\x00")])
    assert classify_video(nested) == VIDEO_OTHER
    assert classify_video(bytes([0x80 | 1 << 4 | 6])) == VIDEO_OTHER
    assert classify_video(one[:6]) == VIDEO_OTHER


# --- audio headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"", AUDIO_OTHER),  # RTMP "audio silence"
        (b"\xaf", AUDIO_OTHER),
        (b"\xaf\x00", AUDIO_OTHER),
        (b"\xaf\x00\x12\x10", AUDIO_CONFIG),
        (b"\xaf\x01\x21", AUDIO_FRAME),
        (b"\xaf\x02\x21", AUDIO_OTHER),
        (b"\x2f", AUDIO_OTHER),
        (b"\x2f\xff\xfb", AUDIO_FRAME),
        (b"\xdf\x00" + OPUS_HEAD, AUDIO_CONFIG),  # SRS-style legacy Opus
        (b"\xdf\x02\xfc", AUDIO_FRAME),
        (ex_audio(0, b"Opu"), AUDIO_OTHER),
        (ex_audio(0, b"ac-3"), AUDIO_CONFIG),
        (ex_audio(1, b"Opus", b"\xfc"), AUDIO_FRAME),
        (ex_audio(2, b"Opus"), AUDIO_OTHER),  # SequenceEnd
        (ex_audio(4, b"Opus", b"\x00\x02"), AUDIO_OTHER),  # MultichannelConfig
        (ex_audio(3, b"Opus", b"\x00"), AUDIO_OTHER),  # reserved
    ],
)
def test_classify_audio_headers(payload: bytes, kind: int) -> None:
    assert classify_audio(payload) == kind


def test_enhanced_audio_modex_and_multitrack() -> None:
    modexed = bytes([0x97]) + modex(1, b"\x00\x00\x10") + b"Opus" + b"\xfc\xff"
    assert classify_audio(modexed) == AUDIO_FRAME
    config = bytes([0x97]) + modex(0, b"\x00\x00\x10") + b"Opus" + OPUS_HEAD
    assert classify_audio(config) == AUDIO_CONFIG
    assert classify_audio(bytes([0x97, 0x05])) == AUDIO_OTHER

    tracks = [(b"mp4a", make_asc(2, 3, 6)), (b"mp4a", make_asc(2, 4, 2))]
    many = bytes([0x95]) + multitrack(1, 0, tracks)
    assert classify_audio(many) == AUDIO_CONFIG
    frames = bytes([0x95]) + multitrack(0, 1, [(b"Opus", b"\xfc")])
    assert classify_audio(frames) == AUDIO_FRAME
    assert classify_audio(bytes([0x95]) + multitrack(0, 5, [(b"Opus", b"")])) == AUDIO_OTHER
    assert classify_audio(bytes([0x95])) == AUDIO_OTHER
    assert classify_audio(frames[:7]) == AUDIO_FRAME
    assert classify_audio(frames[:6]) == AUDIO_OTHER  # no track id yet


# --- never raise ---------------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_video_never_raises_on_any_bytes(payload: bytes) -> None:
    assert classify_video(payload) in VIDEO_KINDS


@given(st.binary(max_size=64))
def test_audio_never_raises_on_any_bytes(payload: bytes) -> None:
    assert classify_audio(payload) in AUDIO_KINDS


@given(st.sampled_from(VIDEO_PREFIXES), st.binary(max_size=96))
def test_video_never_raises_behind_plausible_headers(prefix: bytes, tail: bytes) -> None:
    assert classify_video(prefix + tail) in VIDEO_KINDS


@given(st.sampled_from(AUDIO_PREFIXES), st.binary(max_size=96))
def test_audio_never_raises_behind_plausible_headers(prefix: bytes, tail: bytes) -> None:
    assert classify_audio(prefix + tail) in AUDIO_KINDS


@pytest.fixture(scope="module")
def real_configs() -> list[bytes]:
    return real_video_configs()


def test_truncated_real_sequence_headers_never_raise(real_configs: list[bytes]) -> None:
    for config in real_configs:
        for cut in range(len(config)):
            assert classify_video(config[:cut]) in VIDEO_KINDS


@given(st.data())
def test_corrupted_real_sequence_headers_never_raise(
    real_configs: list[bytes], data: st.DataObject
) -> None:
    config = bytearray(data.draw(st.sampled_from(real_configs)))
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(5, len(config) - 1))
        config[index] = data.draw(st.integers(0, 255))
    assert classify_video(bytes(config)) in VIDEO_KINDS


@given(st.data())
def test_corrupted_audio_configs_never_raise(data: st.DataObject) -> None:
    config = bytearray(data.draw(st.sampled_from(audio_configs())))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(1, len(config) - 1))
        config[index] = data.draw(st.integers(0, 255))
    assert classify_audio(bytes(config)) in AUDIO_KINDS
