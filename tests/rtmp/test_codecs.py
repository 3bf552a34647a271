"""Tests for streamgate.rtmp.codecs: codec, resolution, profile, level, rate, channels.

Real streams come from encoders through PyAV (tests/rtmp/samples.py), with
the tag kind checked where the description depends on it; hand-built
bitstreams reach the syntax no encoder writes by default.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamgate.rtmp.codecs import (
    AudioDescription,
    VideoDescription,
    describe_audio,
    describe_video,
)
from streamgate.rtmp.flv import (
    AUDIO_CONFIG,
    AUDIO_FRAME,
    AUDIO_OTHER,
    classify_audio,
)
from tests.rtmp.samples import (
    AUDIO_PREFIXES,
    OPUS_HEAD,
    VIDEO_PREFIXES,
    BitWriter,
    audio_configs,
    audio_tags,
    avcc,
    config_record,
    escape_rbsp,
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

# --- H.264 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options", "profile"),
    [
        (320, 240, "yuv420p", "", "High"),
        # Odd size: the SPS codes 656x368 and crops in 2-pixel chroma units.
        (642, 362, "yuv420p", "profile=baseline", "Constrained Baseline"),
        # Field coding (frame_mbs_only_flag = 0) doubles the vertical crop
        # unit; cqm=jvt puts scaling matrices in the SPS.
        (320, 240, "yuv420p", "x264-params=cqm=jvt:interlaced=1", "High"),
        (642, 362, "yuv420p10le", "", "High 10"),
        (642, 361, "yuv422p", "", "High 4:2:2"),
        # 4:4:4 crops in 1-pixel units, so both dimensions can be odd.
        (641, 361, "yuv444p", "", "High 4:4:4 Predictive"),
    ],
)
def test_h264_sequence_header_from_libx264(
    width: int, height: int, pix_fmt: str, options: str, profile: str
) -> None:
    tags = video_tags("libx264", width, height, pix_fmt, options)
    desc = describe_video(tags[0])
    assert desc is not None
    assert (desc.codec, desc.width, desc.height, desc.profile) == ("h264", width, height, profile)
    assert desc.level is not None


def test_h264_monochrome_crop_units() -> None:
    tags = video_tags("libx264", 641, 361, "gray")
    desc = describe_video(tags[0])
    assert desc is not None
    assert (desc.width, desc.height) == (641, 361)


def test_h264_frames_describe_the_codec_only() -> None:
    tags = video_tags("libx264", 320, 240)
    # Non-config packets describe the codec only.
    assert describe_video(tags[1]) == VideoDescription("h264", None, None, None, None)


def test_h264_sps_with_poc_type_1_and_cropping() -> None:
    rbsp = (
        BitWriter()
        .u(8, 66)  # profile_idc: Baseline
        .u(8, 0xC0)  # constraint_set0/1
        .u(8, 30)  # level_idc
        .ue(0)  # seq_parameter_set_id
        .ue(0)  # log2_max_frame_num_minus4
        .ue(1)  # pic_order_cnt_type
        .u(1, 0)
        .se(-2)
        .se(1)
        .ue(2)
        .se(3)
        .se(-4)
        .ue(1)  # max_num_ref_frames
        .u(1, 0)
        .ue(39)  # 40 MBs wide = 640
        .ue(29)  # 30 map units = 480
        .u(1, 1)  # frame_mbs_only_flag
        .u(1, 1)
        .u(1, 1)  # frame_cropping_flag
        .ue(1)
        .ue(2)
        .ue(0)
        .ue(3)
        .u(1, 0)  # vui_parameters_present_flag
        .trailing()
        .tobytes()
    )
    desc = describe_video(legacy_avc_config(avcc(b"\x67" + escape_rbsp(rbsp))))
    assert desc == VideoDescription("h264", 640 - 3 * 2, 480 - 3 * 2, "Constrained Baseline", "3")


def test_h264_sps_emulation_prevention_bytes_are_removed() -> None:
    writer = BitWriter().u(8, 77).u(8, 0).u(8, 11).ue(0).ue(0).ue(2).ue(1).u(1, 0)
    # A huge width makes long zero runs, which encoders must escape.
    rbsp = writer.ue(2**21 - 1).ue(17).u(1, 1).u(1, 1).u(1, 0).u(1, 0).trailing().tobytes()
    escaped = escape_rbsp(rbsp)
    assert escaped != rbsp
    desc = describe_video(legacy_avc_config(avcc(bytes([0x67]) + escaped)))
    assert desc is not None
    assert (desc.width, desc.height, desc.profile, desc.level) == (2**21 * 16, 288, "Main", "1.1")


def test_h264_level_1b() -> None:
    sps = b"\x67" + BitWriter().u(8, 66).u(8, 0x10).u(8, 11).trailing().tobytes()
    desc = describe_video(legacy_avc_config(avcc(sps)))
    assert desc is not None
    assert (desc.profile, desc.level, desc.width) == ("Baseline", "1b", None)


def test_h264_truncated_sps_keeps_record_profile() -> None:
    record = config_record(video_tags("libx264", 320, 240))
    sps_len = int.from_bytes(record[6:8], "big")
    broken = bytearray(record)
    broken[8 + 4 : 8 + sps_len] = bytes(sps_len - 4)  # endless Exp-Golomb prefixes
    desc = describe_video(legacy_avc_config(bytes(broken)))
    assert desc is not None
    assert (desc.codec, desc.profile, desc.width, desc.height) == ("h264", "High", None, None)


def test_h264_over_enhanced_rtmp_avc1() -> None:
    record = config_record(video_tags("libx264", 642, 362))
    desc = describe_video(ex_video(1, 0, b"avc1", record))
    assert desc is not None
    assert (desc.codec, desc.width, desc.height) == ("h264", 642, 362)


# --- HEVC -------------------------------------------------------------------------------


def _hvcc_sps_sub_layers(record: bytes) -> int:
    pos = 23
    for _ in range(record[22]):
        nal_type, count = record[pos] & 0x3F, int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(record[pos : pos + 2], "big")
            if nal_type == 33:
                return (record[pos + 2 + 2] >> 1) & 0x07
            pos += 2 + length
    raise AssertionError("no SPS")


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options", "profile"),
    [
        (320, 240, "yuv420p", "", "Main"),
        (642, 362, "yuv420p", "", "Main"),
        (320, 240, "yuv420p10le", "", "Main 10"),
        (641, 361, "yuv444p", "", "Range Extensions"),
    ],
)
def test_hevc_sequence_header_from_libx265(
    width: int, height: int, pix_fmt: str, options: str, profile: str
) -> None:
    tags = video_tags("libx265", width, height, pix_fmt, options)
    assert tags[0][:5] == b"\x90hvc1"  # FFmpeg sends HEVC as Enhanced RTMP
    desc = describe_video(tags[0])
    assert desc is not None
    assert (desc.codec, desc.width, desc.height, desc.profile) == ("hevc", width, height, profile)
    assert desc.level is not None


def test_hevc_sps_with_temporal_sub_layers() -> None:
    tags = video_tags("libx265", 642, 362, "yuv420p", "x265-params=temporal-layers=3")
    assert _hvcc_sps_sub_layers(config_record(tags)) > 0  # the case this test is about
    desc = describe_video(tags[0])
    assert desc is not None
    assert (desc.width, desc.height) == (642, 362)


def test_hevc_legacy_codec_id_12() -> None:
    record = config_record(video_tags("libx265", 642, 362))
    desc = describe_video(legacy_avc_config(record, codec_id=12))
    assert desc is not None
    assert (desc.codec, desc.width, desc.height) == ("hevc", 642, 362)


def _hevc_sps_nal(layer_id: int, width: int, height: int) -> bytes:
    bits = BitWriter().u(4, 0).u(3, 2).u(1, 1)  # vps id, max_sub_layers_minus1 = 2
    bits.u(2, 0).u(1, 0).u(5, 1).u(32, 0x60000000).u(48, 0).u(8, 93)  # general PTL
    bits.u(1, 1).u(1, 1).u(1, 0).u(1, 1)  # sub-layer 0: profile+level, 1: level only
    bits.u(2 * (8 - 2), 0)
    bits.u(88, (1 << 87) | 0x1234).u(8, 90)  # sub-layer 0 profile and level
    bits.u(8, 60)  # sub-layer 1 level
    bits.ue(0).ue(1).ue(width).ue(height + 8)  # sps id, chroma 4:2:0, coded size
    bits.u(1, 1).ue(0).ue(0).ue(0).ue(4)  # conformance window: 8 rows off the bottom
    rbsp = bits.u(4, 0).trailing().tobytes()
    header = bytes([33 << 1 | layer_id >> 5, (layer_id & 0x1F) << 3 | 1])
    escaped = escape_rbsp(rbsp)
    assert escaped != rbsp  # the all-zero constraint flags must get escaped
    return header + escaped


def test_hevc_hand_built_sps_with_sub_layer_profiles() -> None:
    vps = b"\x40\x01\x0c\x01"
    header = bytes([1, 0x01]) + b"\x60\0\0\0" + b"\x90\0\0\0\0\0" + bytes([93])
    header += b"\xf0\x00\xfc\xfd\xf8\xf8\x00\x00\x0f"
    arrays = bytes([0x20]) + b"\x00\x01" + len(vps).to_bytes(2, "big") + vps
    # A higher-layer SPS first: its syntax differs, so it must be skipped.
    sps_layer1, sps = _hevc_sps_nal(1, 640, 480), _hevc_sps_nal(0, 1920, 1080)
    arrays += bytes([0x21]) + b"\x00\x02"
    arrays += len(sps_layer1).to_bytes(2, "big") + sps_layer1 + len(sps).to_bytes(2, "big") + sps
    record = header + bytes([2]) + arrays
    assert len(header) == 22
    desc = describe_video(ex_video(1, 0, b"hvc1", record))
    assert desc == VideoDescription("hevc", 1920, 1080, "Main", "3.1")


# --- AV1, VP9 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(320, 240), (642, 362)])
def test_av1_sequence_header_from_encoder(width: int, height: int) -> None:
    codec = first_available("libaom-av1", "libsvtav1", "librav1e")
    tags = video_tags(codec, width, height)
    assert tags[0][:5] == b"\x90av01"
    desc = describe_video(tags[0])
    assert desc is not None
    assert (desc.codec, desc.width, desc.height, desc.profile) == ("av1", width, height, "Main")


def _obu(obu_type: int, payload: bytes, extension: bool = False) -> bytes:
    header = bytes([obu_type << 3 | (0x04 if extension else 0) | 0x02])
    return header + (b"\x28" if extension else b"") + bytes([len(payload)]) + payload


def _av1c(seq_profile: int, seq_level_idx: int, obus: bytes) -> bytes:
    return bytes([0x81, seq_profile << 5 | seq_level_idx, 0x0C, 0x00]) + obus


def test_av1_reduced_still_picture_header() -> None:
    seq = BitWriter().u(3, 0).u(1, 1).u(1, 1).u(5, 8)  # still, reduced header, level 4.0
    seq.u(4, 10).u(4, 10).u(11, 1919).u(11, 1079)
    record = _av1c(0, 8, _obu(1, seq.trailing().tobytes()))
    desc = describe_video(ex_video(1, 0, b"av01", record))
    assert desc == VideoDescription("av1", 1920, 1080, "Main", "4.0")


def test_av1_timing_decoder_model_and_operating_points() -> None:
    seq = BitWriter().u(3, 1).u(1, 0).u(1, 0)
    seq.u(1, 1).u(32, 1001).u(32, 60000).u(1, 1).u(2, 0).u(1, 1).u(2, 3)  # timing, uvlc(4)
    seq.u(1, 1).u(5, 9).u(32, 1).u(5, 31).u(5, 31)  # decoder model info: 10-bit delays
    seq.u(1, 1).u(5, 1)  # initial display delay present, two operating points
    seq.u(12, 0x103).u(5, 12).u(1, 1)  # level 5.0 has a tier bit
    seq.u(1, 1).u(10, 500).u(10, 300).u(1, 0)  # operating parameters
    seq.u(1, 1).u(4, 9)  # initial display delay
    seq.u(12, 0x001).u(5, 5).u(1, 0).u(1, 0)  # level 3.1: no tier bit, no extras
    seq.u(4, 11).u(4, 11).u(12, 3839).u(12, 2159)
    obus = _obu(5, b"\x01\x02") + _obu(1, seq.trailing().tobytes(), extension=True)
    desc = describe_video(ex_video(1, 0, b"av01", _av1c(1, 12, obus)))
    assert desc == VideoDescription("av1", 3840, 2160, "High", "5.0")


def test_av1_without_sequence_header_obu() -> None:
    desc = describe_video(ex_video(1, 0, b"av01", _av1c(0, 31, b"")))
    assert desc == VideoDescription("av1", None, None, "Main", None)


def test_vp9_enhanced_rtmp() -> None:
    tags = video_tags("libvpx-vp9", 320, 240)
    assert tags[0][:5] == b"\x90vp09"
    desc = describe_video(tags[0])
    assert desc is not None
    # vpcC carries no resolution.
    assert (desc.codec, desc.width, desc.height, desc.profile) == ("vp9", None, None, "Profile 0")


# --- video header edge cases ------------------------------------------------------------------


def test_enhanced_video_modex() -> None:
    nano = b"\x00\x01\x02"
    chained = bytes([0x80 | 2 << 4 | 7]) + modex(7, b"\x00" * 300, large=True)
    chained += modex(3, nano) + b"av01" + b"\x12\x00"
    assert describe_video(chained) == VideoDescription("av1", None, None, None, None)
    record = config_record(video_tags("libx264", 320, 240))
    config = bytes([0x80 | 1 << 4 | 7]) + modex(0, nano) + b"avc1" + record
    desc = describe_video(config)
    assert desc is not None
    assert (desc.width, desc.height) == (320, 240)
    for cut in range(1, len(chained) - 6):
        assert describe_video(chained[:cut]) is None


def test_enhanced_video_multitrack() -> None:
    record = config_record(video_tags("libx264", 642, 362))
    small = config_record(video_tags("libx264", 320, 240))
    many = bytes([0x80 | 1 << 4 | 6]) + multitrack(1, 0, [(b"avc1", record), (b"avc1", small)])
    desc = describe_video(many)
    assert desc is not None
    assert (desc.codec, desc.width, desc.height) == ("h264", 642, 362)
    codecs = bytes([0x80 | 1 << 4 | 6]) + multitrack(2, 0, [(b"avc1", small), (b"av01", b"")])
    desc = describe_video(codecs)
    assert desc is not None
    assert (desc.codec, desc.width, desc.height) == ("h264", 320, 240)


def test_describe_video_codec_names() -> None:
    assert describe_video(b"") is None
    assert describe_video(bytes([0xD1, 0x00])) is None
    assert describe_video(b"\x22\x00\x00") == VideoDescription("h263", None, None, None, None)
    assert describe_video(b"\x1f\x00") == VideoDescription("unknown(15)", None, None, None, None)
    assert describe_video(ex_video(1, 0, b"vp08")) == VideoDescription(
        "vp8", None, None, None, None
    )
    assert describe_video(ex_video(1, 1, b"xyz\xff")) == VideoDescription(
        "unknown(xyz\\xff)", None, None, None, None
    )
    assert describe_video(ex_video(1, 0, b"avc1", b"\x01\x64")) == VideoDescription(
        "h264", None, None, None, None
    )


# --- audio: real encoders ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "layout", "channels"), [(44100, "stereo", 2), (48000, "5.1", 6), (22050, "mono", 1)]
)
def test_aac_legacy_from_encoder(rate: int, layout: str, channels: int) -> None:
    tags = audio_tags("aac", rate, layout)
    assert tags[0][:2] == b"\xaf\x00"
    assert classify_audio(tags[0]) == AUDIO_CONFIG
    assert describe_audio(tags[0]) == AudioDescription("aac", rate, channels)
    raw = [tag for tag in tags if tag[:2] == b"\xaf\x01"]
    assert raw
    assert {classify_audio(tag) for tag in raw} == {AUDIO_FRAME}
    assert describe_audio(raw[0]) == AudioDescription("aac", None, None)


def test_aac_multichannel_config_is_not_a_sequence_header() -> None:
    # FFmpeg follows a legacy 5.1 AAC header with an E-RTMP MultichannelConfig.
    tags = audio_tags("aac", 48000, "5.1")
    assert tags[1][:5] == b"\x94mp4a"
    assert classify_audio(tags[1]) == AUDIO_OTHER
    assert describe_audio(tags[1]) == AudioDescription("aac", None, 6)


@pytest.mark.parametrize(("rate", "layout", "channels"), [(48000, "stereo", 2), (24000, "mono", 1)])
def test_opus_enhanced_from_encoder(rate: int, layout: str, channels: int) -> None:
    tags = audio_tags("libopus", rate, layout)
    assert tags[0][:13] == b"\x90OpusOpusHead"
    assert classify_audio(tags[0]) == AUDIO_CONFIG
    assert describe_audio(tags[0]) == AudioDescription("opus", rate, channels)
    assert [classify_audio(tag) for tag in tags[1:3]] == [AUDIO_OTHER, AUDIO_FRAME]
    assert describe_audio(tags[2]) == AudioDescription("opus", None, None)


@pytest.mark.parametrize(("rate", "layout", "channels"), [(44100, "stereo", 2), (96000, "mono", 1)])
def test_flac_enhanced_from_encoder(rate: int, layout: str, channels: int) -> None:
    tags = audio_tags("flac", rate, layout)
    assert classify_audio(tags[0]) == AUDIO_CONFIG
    assert describe_audio(tags[0]) == AudioDescription("flac", rate, channels)
    # The spec's layout: "fLaC", a STREAMINFO metadata block header, STREAMINFO.
    streaminfo = tags[0][5:]
    spec_style = ex_audio(0, b"fLaC", b"fLaC" + b"\x80\x00\x00\x22" + streaminfo)
    assert describe_audio(spec_style) == AudioDescription("flac", rate, channels)


@pytest.mark.parametrize(
    ("codec", "rate", "layout", "channels"),
    [("ac3", 48000, "5.1", 6), ("ac3", 44100, "stereo", 2), ("eac3", 44100, "stereo", 2)],
)
def test_dolby_enhanced_from_encoder(codec: str, rate: int, layout: str, channels: int) -> None:
    tags = audio_tags(codec, rate, layout)
    # The SequenceStart is empty, so the description comes from the syncframes.
    assert classify_audio(tags[0]) == AUDIO_CONFIG
    assert describe_audio(tags[0]) == AudioDescription(codec, None, None)
    frames = [tag for tag in tags if classify_audio(tag) == AUDIO_FRAME]
    assert frames
    assert describe_audio(frames[0]) == AudioDescription(codec, rate, channels)


def test_eac3_reduced_sample_rate() -> None:
    bits = BitWriter().u(16, 0x0B77).u(2, 0).u(3, 0).u(11, 100).u(2, 3).u(2, 1)  # fscod2: 22050
    frame = bits.u(3, 1).u(1, 1).u(5, 16).trailing().tobytes() + bytes(8)
    assert describe_audio(ex_audio(1, b"ec-3", frame)) == AudioDescription("eac3", 22050, 2)


@pytest.mark.parametrize(
    ("rate", "layout", "channels"), [(48000, "stereo", 2), (22050, "mono", 1), (11025, "mono", 1)]
)
def test_mp3_legacy_frame_header_wins_over_flv_flags(rate: int, layout: str, channels: int) -> None:
    tags = audio_tags("libmp3lame", rate, layout)
    assert {classify_audio(tag) for tag in tags} == {AUDIO_FRAME}
    assert describe_audio(tags[0]) == AudioDescription("mp3", rate, channels)


@pytest.mark.parametrize(
    ("codec", "rate", "layout", "expected"),
    [
        ("pcm_s16le", 22050, "stereo", AudioDescription("pcm", 22050, 2)),
        ("pcm_u8", 11025, "mono", AudioDescription("pcm", 11025, 1)),
        ("pcm_alaw", 8000, "mono", AudioDescription("g711a", 8000, 1)),
        ("pcm_mulaw", 8000, "mono", AudioDescription("g711u", 8000, 1)),
        ("nellymoser", 16000, "mono", AudioDescription("nellymoser", 16000, 1)),
        ("nellymoser", 8000, "mono", AudioDescription("nellymoser", 8000, 1)),
        ("nellymoser", 44100, "mono", AudioDescription("nellymoser", 44100, 1)),
    ],
)
def test_legacy_audio_header_from_encoder(
    codec: str, rate: int, layout: str, expected: AudioDescription
) -> None:
    tags = audio_tags(codec, rate, layout)
    assert classify_audio(tags[0]) == AUDIO_FRAME
    assert describe_audio(tags[0]) == expected


# --- audio: hand-built ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asc", "expected"),
    [
        (make_asc(2, 4, 2), AudioDescription("aac", 44100, 2)),
        (make_asc(2, 15, 1, explicit=37800), AudioDescription("aac", 37800, 1)),
        (make_asc(2, 13, 2), AudioDescription("aac", None, 2)),  # reserved index
        (make_asc(2, 3, 0), AudioDescription("aac", 48000, None)),  # layout in a PCE
        (make_asc(2, 3, 7), AudioDescription("aac", 48000, 8)),
        (make_asc(5, 6, 2, ext=3), AudioDescription("aac", 48000, 2)),  # HE-AAC: SBR doubles
        (make_asc(29, 7, 1, ext=4), AudioDescription("aac", 44100, 2)),  # HE-AACv2: PS
        (make_asc(42, 3, 2), AudioDescription("aac", 48000, 2)),  # escaped object type
        (b"\x12", AudioDescription("aac", None, None)),  # truncated
    ],
)
def test_aac_audio_specific_config(asc: bytes, expected: AudioDescription) -> None:
    assert describe_audio(b"\xaf\x00" + asc) == expected
    assert describe_audio(ex_audio(0, b"mp4a", asc)) == expected
    assert classify_audio(ex_audio(0, b"mp4a", asc)) == AUDIO_CONFIG


def test_enhanced_audio_modex_and_multitrack() -> None:
    config = bytes([0x97]) + modex(0, b"\x00\x00\x10") + b"Opus" + OPUS_HEAD
    assert describe_audio(config) == AudioDescription("opus", 48000, 2)
    assert describe_audio(bytes([0x97, 0x05])) is None

    tracks = [(b"mp4a", make_asc(2, 3, 6)), (b"mp4a", make_asc(2, 4, 2))]
    many = bytes([0x95]) + multitrack(1, 0, tracks)
    assert describe_audio(many) == AudioDescription("aac", 48000, 6)
    mixed = bytes([0x95]) + multitrack(2, 0, [(b"Opus", OPUS_HEAD), (b"mp4a", make_asc(2, 4, 2))])
    assert describe_audio(mixed) == AudioDescription("opus", 48000, 2)


def test_describe_audio_odds_and_ends() -> None:
    assert describe_audio(b"") is None
    assert describe_audio(ex_audio(0, b"Op")) is None
    assert describe_audio(b"\xdf\x00" + OPUS_HEAD) == AudioDescription("opus", 48000, 2)
    assert describe_audio(b"\xdf\x01\xfc") == AudioDescription("opus", None, None)
    assert describe_audio(ex_audio(0, b"Opus", b"OpusHea")) == AudioDescription("opus", None, None)
    assert describe_audio(ex_audio(1, b"zzzz", b"\x00")) == AudioDescription(
        "unknown(zzzz)", None, None
    )
    assert describe_audio(b"\xc2\x00") == AudioDescription("unknown(12)", 5512, 1)
    assert describe_audio(b"\xb2\x00") == AudioDescription("speex", 16000, 1)
    assert describe_audio(b"\xe2\x00") == AudioDescription("mp3", 8000, 1)  # "MP3 8 kHz"
    # MP3 with an unusable frame header falls back to the FLV header bits.
    assert describe_audio(b"\x2f\x00\x00\x00\x00") == AudioDescription("mp3", 44100, 2)
    assert describe_audio(ex_audio(1, b".mp3", b"\xff\xf3\x40\xc4")) == AudioDescription(
        "mp3", 22050, 1
    )
    assert describe_audio(ex_audio(1, b"ac-3", b"\x0b\x77")) == AudioDescription("ac3", None, None)


# --- never raise ---------------------------------------------------------------------------------


def _check_video(payload: bytes) -> None:
    desc = describe_video(payload)
    assert desc is None or isinstance(desc, VideoDescription)


def _check_audio(payload: bytes) -> None:
    desc = describe_audio(payload)
    assert desc is None or isinstance(desc, AudioDescription)


@given(st.binary(max_size=64))
def test_video_never_raises_on_any_bytes(payload: bytes) -> None:
    _check_video(payload)


@given(st.binary(max_size=64))
def test_audio_never_raises_on_any_bytes(payload: bytes) -> None:
    _check_audio(payload)


@given(st.sampled_from(VIDEO_PREFIXES), st.binary(max_size=96))
def test_video_never_raises_behind_plausible_headers(prefix: bytes, tail: bytes) -> None:
    _check_video(prefix + tail)


@given(st.sampled_from(AUDIO_PREFIXES), st.binary(max_size=96))
def test_audio_never_raises_behind_plausible_headers(prefix: bytes, tail: bytes) -> None:
    _check_audio(prefix + tail)


@pytest.fixture(scope="module")
def real_configs() -> list[bytes]:
    return real_video_configs()


def test_truncated_real_sequence_headers_never_raise(real_configs: list[bytes]) -> None:
    for config in real_configs:
        for cut in range(len(config)):
            _check_video(config[:cut])


@given(st.data())
def test_corrupted_real_sequence_headers_never_raise(
    real_configs: list[bytes], data: st.DataObject
) -> None:
    config = bytearray(data.draw(st.sampled_from(real_configs)))
    for _ in range(data.draw(st.integers(1, 8))):
        index = data.draw(st.integers(5, len(config) - 1))
        config[index] = data.draw(st.integers(0, 255))
    _check_video(bytes(config))


@given(st.data())
def test_corrupted_audio_configs_never_raise(data: st.DataObject) -> None:
    config = bytearray(data.draw(st.sampled_from(audio_configs())))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(1, len(config) - 1))
        config[index] = data.draw(st.integers(0, 255))
    _check_audio(bytes(config))
