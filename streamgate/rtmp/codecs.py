"""Describe a stream from its codec configuration: codec, resolution, profile, level,
sample rate and channel count.

The tag header (:mod:`~streamgate.rtmp.flv`) leads to the body; this module
parses what the body carries: AVC and HEVC decoder configuration records and
their SPS, AV1 and VP8/VP9 configuration records, the AAC AudioSpecificConfig,
OpusHead, FLAC STREAMINFO, AC-3/E-AC-3 and MP3 frame headers. It runs on
sequence headers, not on every frame, and every read is bounds-checked: the
public functions return None, never raise, on malformed payloads.

Pure and sans-IO.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from streamgate.rtmp.flv import (
    _APT_CODED_FRAMES,
    _APT_MULTICHANNEL_CONFIG,
    _APT_MULTITRACK,
    _APT_SEQUENCE_START,
    _AUDIO_FOURCCS,
    _AVC_LIKE_CODECS,
    _FIXED_MONO,
    _FIXED_RATE,
    _FLV_SOUND_RATES,
    _FRAME_COMMAND,
    _LEGACY_AUDIO_CODECS,
    _LEGACY_VIDEO_CODECS,
    _MT_ONE_TRACK,
    _PT_MODEX,
    _SOUND_AAC,
    _SOUND_EX_HEADER,
    _SOUND_OPUS_LEGACY,
    _VIDEO_FOURCCS,
    _VPT_CODED_FRAMES,
    _VPT_CODED_FRAMES_X,
    _VPT_METADATA,
    _VPT_MULTITRACK,
    _VPT_SEQUENCE_START,
    _skip_modex,
)

__all__ = [
    "AudioDescription",
    "VideoDescription",
    "VideoTag",
    "describe_audio",
    "describe_video",
    "video_tag",
]


@dataclass(frozen=True, slots=True)
class VideoDescription:
    """What a video sequence header (or any video packet) reveals about the stream."""

    codec: str
    width: int | None
    height: int | None
    profile: str | None
    level: str | None


@dataclass(frozen=True, slots=True)
class AudioDescription:
    """What an audio packet reveals about the stream."""

    codec: str
    sample_rate: int | None
    channels: int | None


# Every field read from a parameter set or sequence header sits within its
# first few hundred bytes (H.264 scaling lists peak below 2 KiB). Slicing to
# this bound keeps a hostile multi-megabyte "header" from making the big-int
# bit reader slow.
_MAX_HEADER_BITS_INPUT = 4096


class _ParseError(Exception):
    """Internal: the payload is truncated or violates its syntax."""


class _Bits:
    """MSB-first bit reader over a short byte string; every read is bounds-checked."""

    __slots__ = ("_left", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise _ParseError
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        if n > self._left:
            raise _ParseError
        self._left -= n

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            # Valid streams never exceed 32 bits; more means garbage, and
            # bounding it keeps the result from growing without limit.
            if zeros > 31:
                raise _ParseError
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) >> 1 if k & 1 else -(k >> 1)


def _unknown(codec_id: bytes | int) -> str:
    if isinstance(codec_id, int):
        return f"unknown({codec_id})"
    return f"unknown({codec_id.decode('ascii', 'backslashreplace')})"


def _u24(data: bytes, pos: int) -> int:
    if pos + 3 > len(data):
        raise _ParseError
    return (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]


def _fourcc(data: bytes, pos: int) -> bytes:
    if pos + 4 > len(data):
        raise _ParseError
    return data[pos : pos + 4]


def _ex_packet_type(payload: bytes, packet_type: int) -> tuple[int, int]:
    """Resolve ModEx blocks; return (packet type, offset just after it)."""
    pos = 1
    if packet_type == _PT_MODEX:
        pos = _skip_modex(payload, len(payload), pos)
        if pos < 0:
            raise _ParseError
        packet_type = payload[pos - 1] & 0x0F
    return packet_type, pos


def _ex_track(
    payload: bytes, pos: int, packet_type: int, multitrack: int
) -> tuple[int, bytes, bytes]:
    """Parse the rest of an E-RTMP header; return (packet type, FourCC, first track's body)."""
    if packet_type != multitrack:
        return packet_type, _fourcc(payload, pos), payload[pos + 4 :]
    if pos >= len(payload):
        raise _ParseError
    multitrack_type = payload[pos] >> 4
    packet_type = payload[pos] & 0x0F
    pos += 1
    # Shared-codec multitracks put the FourCC here once; ManyTracksManyCodecs
    # puts one at the start of every track. Either way the first track's
    # FourCC is the next four bytes.
    fourcc = _fourcc(payload, pos)
    pos += 4
    if pos >= len(payload):
        raise _ParseError
    pos += 1  # track id: track 0 is the default track by convention, take the first
    if multitrack_type == _MT_ONE_TRACK:
        return packet_type, fourcc, payload[pos:]
    size = _u24(payload, pos)
    pos += 3
    return packet_type, fourcc, payload[pos : pos + size]


# --- video ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoTag:
    """A video payload split into its tag header and what a decoder takes."""

    codec: str  # "h264", "hevc", "av1", "vp9", ... or "unknown(...)"
    kind: str  # "config" (a configuration record) or "frame" (coded data)
    keyframe: bool
    body: bytes  # the record, or the frame's data (AVCC / HVCC NAL units, AV1 OBUs)


def video_tag(payload: bytes) -> VideoTag | None:
    """The codec and decoder input of a configuration or frame payload.

    Classic tags (AVC, and HEVC as codec id 12) lose their 5-byte header;
    Enhanced RTMP tags their FourCC header and, for ``CodedFrames`` of AVC
    and HEVC, the composition time. The first track of a multitrack tag is
    taken. Anything else (commands, metadata, end of sequence, truncated
    headers) is None.
    """
    try:
        return _video_tag(payload)
    except _ParseError:
        return None


def _video_tag(payload: bytes) -> VideoTag | None:
    if not payload:
        return None
    b0 = payload[0]
    frame_type = (b0 >> 4) & 0x07
    keyframe = frame_type == 1
    if frame_type == _FRAME_COMMAND:
        return None
    if not b0 & 0x80:
        codec_id = b0 & 0x0F
        if codec_id not in _AVC_LIKE_CODECS or len(payload) <= 5:
            return None
        codec = _LEGACY_VIDEO_CODECS[codec_id]
        if payload[1] == 0:
            return VideoTag(codec, "config", keyframe, payload[5:])
        if payload[1] == 1:
            return VideoTag(codec, "frame", keyframe, payload[5:])
        return None
    packet_type, pos = _ex_packet_type(payload, b0 & 0x0F)
    if packet_type == _VPT_METADATA:
        return None
    packet_type, fourcc, body = _ex_track(payload, pos, packet_type, _VPT_MULTITRACK)
    codec = _VIDEO_FOURCCS.get(fourcc) or _unknown(fourcc)
    if packet_type == _VPT_SEQUENCE_START:
        return VideoTag(codec, "config", keyframe, body)
    if packet_type == _VPT_CODED_FRAMES:
        # AVC and HEVC CodedFrames carry a composition time offset first.
        if codec in ("h264", "hevc"):
            if len(body) < 3:
                raise _ParseError
            body = body[3:]
        return VideoTag(codec, "frame", keyframe, body)
    if packet_type == _VPT_CODED_FRAMES_X:
        return VideoTag(codec, "frame", keyframe, body)
    return None



def describe_video(payload: bytes) -> VideoDescription | None:
    """Describe the stream from a video payload.

    Width, height, profile and level come from sequence headers only; any other
    packet yields just the codec. Returns None when even the codec cannot be
    told (empty, truncated header, command frames without a FourCC).
    """
    try:
        return _describe_video(payload)
    except _ParseError:
        return None


def _describe_video(payload: bytes) -> VideoDescription | None:
    if not payload:
        return None
    b0 = payload[0]
    frame_type = (b0 >> 4) & 0x07
    if not b0 & 0x80:
        codec_id = b0 & 0x0F
        codec = _LEGACY_VIDEO_CODECS.get(codec_id) or _unknown(codec_id)
        if (
            frame_type != _FRAME_COMMAND
            and codec_id in _AVC_LIKE_CODECS
            and len(payload) > 5
            and payload[1] == 0
        ):
            return _describe_video_config(codec, payload[5:])
        return VideoDescription(codec, None, None, None, None)

    packet_type, pos = _ex_packet_type(payload, b0 & 0x0F)
    if frame_type == _FRAME_COMMAND and packet_type != _VPT_METADATA:
        return None  # a command frame carries no FourCC
    packet_type, fourcc, body = _ex_track(payload, pos, packet_type, _VPT_MULTITRACK)
    codec = _VIDEO_FOURCCS.get(fourcc) or _unknown(fourcc)
    if packet_type == _VPT_SEQUENCE_START:
        return _describe_video_config(codec, body)
    return VideoDescription(codec, None, None, None, None)


def _describe_video_config(codec: str, record: bytes) -> VideoDescription:
    if codec == "h264":
        return _describe_avcc(record)
    if codec == "hevc":
        return _describe_hvcc(record)
    if codec == "av1":
        return _describe_av1c(record)
    if codec in ("vp9", "vp8"):
        return _describe_vpcc(codec, record)
    return VideoDescription(codec, None, None, None, None)


def _unescape_rbsp(nal: bytes) -> bytes:
    # Removing every 0x03 that follows two zero bytes is exactly the RBSP
    # extraction rule; bytes.replace does not rescan its own output, which
    # matches the spec's reset of the zero count after an emulation byte.
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


_H264_PROFILES = {
    44: "CAVLC 4:4:4 Intra",
    66: "Baseline",
    77: "Main",
    83: "Scalable Baseline",
    86: "Scalable High",
    88: "Extended",
    100: "High",
    110: "High 10",
    118: "Multiview High",
    122: "High 4:2:2",
    128: "Stereo High",
    244: "High 4:4:4 Predictive",
}
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists.
_H264_HIGH_SPS = frozenset({44, 83, 86, 100, 110, 118, 122, 128, 134, 135, 138, 139, 244})


def _h264_profile(profile_idc: int, constraints: int) -> str | None:
    if profile_idc == 66 and constraints & 0x40:
        return "Constrained Baseline"
    return _H264_PROFILES.get(profile_idc)


def _h264_level(profile_idc: int, constraints: int, level_idc: int) -> str | None:
    if level_idc == 0:
        return None
    # Level 1b is coded two ways: level_idc 9, or 11 with constraint_set3 in
    # the Baseline/Main/Extended profiles.
    if level_idc == 9 or (level_idc == 11 and constraints & 0x10 and profile_idc in (66, 77, 88)):
        return "1b"
    major, minor = divmod(level_idc, 10)
    return f"{major}.{minor}" if minor else str(major)


def _describe_avcc(record: bytes) -> VideoDescription:
    if len(record) < 7 or record[0] != 1:
        return VideoDescription("h264", None, None, None, None)
    profile_idc, constraints, level_idc = record[1], record[2], record[3]
    profile = _h264_profile(profile_idc, constraints)
    level = _h264_level(profile_idc, constraints, level_idc)
    width = height = None
    if record[5] & 0x1F:
        sps_len = (record[6] << 8) | record[7] if len(record) >= 8 else 0
        sps = record[8 : 8 + sps_len]
        if sps_len and len(sps) == sps_len and sps[0] & 0x1F == 7:
            with contextlib.suppress(_ParseError):
                width, height = _h264_sps_size(_unescape_rbsp(sps[1:_MAX_HEADER_BITS_INPUT]))
    return VideoDescription("h264", width, height, profile, level)


def _h264_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se() + 256) % 256
        if nxt != 0:
            last = nxt


def _h264_sps_size(rbsp: bytes) -> tuple[int, int]:
    bits = _Bits(rbsp)
    profile_idc = bits.u(8)
    bits.skip(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile_idc in _H264_HIGH_SPS:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise _ParseError
        if chroma_format_idc == 3:
            separate_colour_plane = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):
                    _h264_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.skip(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > 255:
            raise _ParseError
        for _ in range(cycle):
            bits.se()
    elif poc_type != 2:
        raise _ParseError
    bits.ue()  # max_num_ref_frames
    bits.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.skip(1)  # mb_adaptive_frame_field_flag
    bits.skip(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_map_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if separate_colour_plane or chroma_format_idc == 0:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            crop_x = 2 if chroma_format_idc in (1, 2) else 1
            crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0:
        raise _ParseError
    return width, height


_HEVC_PROFILES = {
    1: "Main",
    2: "Main 10",
    3: "Main Still Picture",
    4: "Range Extensions",
    5: "High Throughput",
    9: "Screen Content Coding",
}
_HEVC_NAL_SPS = 33


def _hevc_level(level_idc: int) -> str | None:
    if level_idc == 0:
        return None
    # general_level_idc is 30 times the level number (3.1 -> 93).
    major, rest = divmod(level_idc, 30)
    return f"{major}.{rest // 3}" if rest else str(major)


def _describe_hvcc(record: bytes) -> VideoDescription:
    if len(record) < 23:
        return VideoDescription("hevc", None, None, None, None)
    profile = _HEVC_PROFILES.get(record[1] & 0x1F)
    level = _hevc_level(record[12])
    width = height = None
    with contextlib.suppress(_ParseError):
        sps = _hvcc_first_sps(record)
        if sps is not None:
            width, height = _hevc_sps_size(_unescape_rbsp(sps[2:_MAX_HEADER_BITS_INPUT]))
    return VideoDescription("hevc", width, height, profile, level)


def _hvcc_first_sps(record: bytes) -> bytes | None:
    num_arrays = record[22]
    pos = 23
    for _ in range(num_arrays):
        if pos + 3 > len(record):
            raise _ParseError
        nal_type = record[pos] & 0x3F
        count = (record[pos + 1] << 8) | record[pos + 2]
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                raise _ParseError
            length = (record[pos] << 8) | record[pos + 1]
            pos += 2
            nal = record[pos : pos + length]
            pos += length
            if len(nal) != length:
                raise _ParseError
            # Only base-layer SPSs (nuh_layer_id 0) use the syntax parsed below.
            if nal_type == _HEVC_NAL_SPS and length > 2 and not (nal[0] & 0x01 or nal[1] & 0xF8):
                return nal
    return None


def _hevc_skip_profile_tier_level(bits: _Bits, max_sub_layers_minus1: int) -> None:
    # general profile space/tier/idc (8), compatibility flags (32), the four
    # source flags plus 43 constraint bits plus 1 (48), general_level_idc (8).
    bits.skip(96)
    profile_present = []
    level_present = []
    for _ in range(max_sub_layers_minus1):
        profile_present.append(bits.u(1))
        level_present.append(bits.u(1))
    if max_sub_layers_minus1 > 0:
        bits.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits alignment
    for i in range(max_sub_layers_minus1):
        if profile_present[i]:
            bits.skip(88)
        if level_present[i]:
            bits.skip(8)


def _hevc_sps_size(rbsp: bytes) -> tuple[int, int]:
    bits = _Bits(rbsp)
    bits.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.u(3)
    if max_sub_layers_minus1 > 6:
        raise _ParseError
    bits.skip(1)  # sps_temporal_id_nesting_flag
    _hevc_skip_profile_tier_level(bits, max_sub_layers_minus1)
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc > 3:
        raise _ParseError
    separate_colour_plane = bits.u(1) if chroma_format_idc == 3 else 0
    width = bits.ue()
    height = bits.ue()
    if bits.u(1):  # conformance_window_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if separate_colour_plane:
            sub_w = sub_h = 1
        else:
            sub_w = 2 if chroma_format_idc in (1, 2) else 1
            sub_h = 2 if chroma_format_idc == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if width <= 0 or height <= 0:
        raise _ParseError
    return width, height


_AV1_PROFILES = {0: "Main", 1: "High", 2: "Professional"}
_AV1_OBU_SEQUENCE_HEADER = 1


def _av1_level(seq_level_idx: int) -> str | None:
    # 31 means "no level constraints"; the others map to X.Y as 2 + idx / 4.
    if seq_level_idx >= 24:
        return None
    return f"{2 + (seq_level_idx >> 2)}.{seq_level_idx & 3}"


def _describe_av1c(record: bytes) -> VideoDescription:
    if len(record) < 4 or record[0] != 0x81:
        return VideoDescription("av1", None, None, None, None)
    profile = _AV1_PROFILES.get(record[1] >> 5)
    level = _av1_level(record[1] & 0x1F)
    width = height = None
    with contextlib.suppress(_ParseError):
        obu = _av1_find_sequence_header(record, 4)
        if obu is not None:
            width, height = _av1_sequence_header_size(obu[:_MAX_HEADER_BITS_INPUT])
    return VideoDescription("av1", width, height, profile, level)


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise _ParseError
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise _ParseError


def _av1_find_sequence_header(data: bytes, pos: int) -> bytes | None:
    while pos < len(data):
        header = data[pos]
        if header & 0x80:  # obu_forbidden_bit
            raise _ParseError
        obu_type = (header >> 3) & 0x0F
        pos += 2 if header & 0x04 else 1  # optional extension header
        if header & 0x02:
            size, pos = _leb128(data, pos)
        else:
            size = len(data) - pos
        if pos > len(data):
            raise _ParseError
        if obu_type == _AV1_OBU_SEQUENCE_HEADER:
            return data[pos : pos + size]
        pos += size
    return None


def _av1_uvlc(bits: _Bits) -> None:
    zeros = 0
    while not bits.u(1):
        zeros += 1
        if zeros >= 32:
            return  # the spec saturates instead of reading a value
    bits.skip(zeros)


def _av1_sequence_header_size(obu: bytes) -> tuple[int, int]:
    bits = _Bits(obu)
    bits.skip(4)  # seq_profile, still_picture
    if bits.u(1):  # reduced_still_picture_header
        bits.skip(5)  # seq_level_idx[0]
    else:
        buffer_delay_length = 0
        if bits.u(1):  # timing_info_present_flag
            bits.skip(64)  # num_units_in_display_tick, time_scale
            if bits.u(1):  # equal_picture_interval
                _av1_uvlc(bits)
            decoder_model_info_present = bits.u(1)
            if decoder_model_info_present:
                buffer_delay_length = bits.u(5) + 1
                bits.skip(32 + 5 + 5)
        else:
            decoder_model_info_present = 0
        initial_display_delay_present = bits.u(1)
        for _ in range(bits.u(5) + 1):  # operating_points_cnt_minus_1
            bits.skip(12)  # operating_point_idc
            if bits.u(5) > 7:  # seq_level_idx
                bits.skip(1)  # seq_tier
            if decoder_model_info_present and bits.u(1):
                bits.skip(2 * buffer_delay_length + 1)
            if initial_display_delay_present and bits.u(1):
                bits.skip(4)
    width_bits = bits.u(4) + 1
    height_bits = bits.u(4) + 1
    return bits.u(width_bits) + 1, bits.u(height_bits) + 1


def _describe_vpcc(codec: str, record: bytes) -> VideoDescription:
    # The record may arrive with or without the 'vpcC' FullBox version/flags
    # word in front (FFmpeg writes it); version 1 with zero flags is the tell.
    if len(record) >= 12 and record[0] == 1 and record[1:4] == b"\x00\x00\x00":
        record = record[4:]
    if len(record) < 8:
        return VideoDescription(codec, None, None, None, None)
    level_code = record[1]
    major, minor = divmod(level_code, 10)
    level = None if level_code == 0 else (f"{major}.{minor}" if minor else str(major))
    return VideoDescription(codec, None, None, f"Profile {record[0]}", level)


# --- audio -----------------------------------------------------------------------


def describe_audio(payload: bytes) -> AudioDescription | None:
    """Describe the stream from an audio payload.

    Sample rate and channels come from whatever the packet itself carries: the
    AudioSpecificConfig, OpusHead or FLAC STREAMINFO of a sequence header, the
    channel count of an E-RTMP multichannel config, AC-3/E-AC-3 and MP3 frame
    headers, or the legacy FLV header bits for codecs where they are
    meaningful. Unknown fields are None; None means the payload is unparseable.
    """
    try:
        return _describe_audio(payload)
    except _ParseError:
        return None


def _describe_audio(payload: bytes) -> AudioDescription | None:
    if not payload:
        return None
    b0 = payload[0]
    sound_format = b0 >> 4
    if sound_format == _SOUND_EX_HEADER:
        return _describe_ex_audio(payload)
    codec = _LEGACY_AUDIO_CODECS.get(sound_format) or _unknown(sound_format)
    if sound_format == _SOUND_AAC:
        # The FLV header bits are fixed at 44.1 kHz stereo for AAC, so only
        # the AudioSpecificConfig is trustworthy.
        if len(payload) > 2 and payload[1] == 0:
            return _describe_asc(payload[2:])
        return AudioDescription(codec, None, None)
    if sound_format == _SOUND_OPUS_LEGACY:
        if len(payload) > 2 and payload[1] == 0:
            return _describe_opus_head(payload[2:])
        return AudioDescription(codec, None, None)
    if codec == "mp3":
        found = _mp3_frame_header(payload, 1)
        if found is not None:
            return found
    rate = _FIXED_RATE.get(sound_format, _FLV_SOUND_RATES[(b0 >> 2) & 0x03])
    channels = 1 if sound_format in _FIXED_MONO else (b0 & 0x01) + 1
    return AudioDescription(codec, rate, channels)


def _describe_ex_audio(payload: bytes) -> AudioDescription:
    packet_type, pos = _ex_packet_type(payload, payload[0] & 0x0F)
    packet_type, fourcc, body = _ex_track(payload, pos, packet_type, _APT_MULTITRACK)
    codec = _AUDIO_FOURCCS.get(fourcc) or _unknown(fourcc)
    if packet_type == _APT_SEQUENCE_START:
        if codec == "aac":
            return _describe_asc(body)
        if codec == "opus":
            return _describe_opus_head(body)
        if codec == "flac":
            return _describe_flac(body)
    elif packet_type == _APT_CODED_FRAMES:
        if codec in ("ac3", "eac3"):
            found = _ac3_frame_header(codec, body)
            if found is not None:
                return found
        elif codec == "mp3":
            found = _mp3_frame_header(body, 0)
            if found is not None:
                return found
    elif packet_type == _APT_MULTICHANNEL_CONFIG and len(body) >= 2:
        return AudioDescription(codec, None, body[1] or None)
    return AudioDescription(codec, None, None)


# samplingFrequencyIndex -> Hz; 13 and 14 are reserved, 15 escapes to 24 bits.
_AAC_RATES = (
    *(96000, 88200, 64000, 48000, 44100, 32000),
    *(24000, 22050, 16000, 12000, 11025, 8000, 7350),
)
# channelConfiguration -> channel count (ISO/IEC 14496-3 Table 1.19); 0 means
# the layout lives in a program config element, which is not parsed here.
_AAC_CHANNELS = (None, 1, 2, 3, 4, 5, 6, 8, None, None, None, 7, 8, 24, 8)
_AOT_SBR = 5
_AOT_PS = 29


def _aac_object_type(bits: _Bits) -> int:
    aot = bits.u(5)
    return 32 + bits.u(6) if aot == 31 else aot


def _aac_rate(bits: _Bits) -> int | None:
    index = bits.u(4)
    if index == 0x0F:
        return bits.u(24) or None
    return _AAC_RATES[index] if index < len(_AAC_RATES) else None


def _describe_asc(asc: bytes) -> AudioDescription:
    bits = _Bits(asc[:64])
    try:
        aot = _aac_object_type(bits)
        rate = _aac_rate(bits)
        config = bits.u(4)
        channels = _AAC_CHANNELS[config] if config < len(_AAC_CHANNELS) else None
        if aot in (_AOT_SBR, _AOT_PS):
            # Explicit SBR signalling: the extension rate is the output rate.
            rate = _aac_rate(bits)
            if aot == _AOT_PS and channels == 1:
                channels = 2  # parametric stereo decodes mono to stereo
    except _ParseError:
        return AudioDescription("aac", None, None)
    return AudioDescription("aac", rate, channels)


def _describe_opus_head(head: bytes) -> AudioDescription:
    if len(head) < 19 or head[:8] != b"OpusHead":
        return AudioDescription("opus", None, None)
    rate = int.from_bytes(head[12:16], "little")
    return AudioDescription("opus", rate or None, head[9] or None)


def _describe_flac(body: bytes) -> AudioDescription:
    # The spec wants "fLaC" + a metadata block header before STREAMINFO;
    # FFmpeg sends the bare 34-byte STREAMINFO. Accept both.
    if body[:4] == b"fLaC":
        if len(body) < 8 or body[4] & 0x7F != 0:
            return AudioDescription("flac", None, None)
        body = body[8:]
    if len(body) < 13:
        return AudioDescription("flac", None, None)
    rate = (body[10] << 12) | (body[11] << 4) | (body[12] >> 4)
    channels = ((body[12] >> 1) & 0x07) + 1
    return AudioDescription("flac", rate or None, channels)


_AC3_RATES = (48000, 44100, 32000)
_EAC3_REDUCED_RATES = (24000, 22050, 16000)
_AC3_ACMOD_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)


def _ac3_frame_header(codec: str, frame: bytes) -> AudioDescription | None:
    if len(frame) < 8 or frame[0] != 0x0B or frame[1] != 0x77:
        return None
    bsid = frame[5] >> 3
    bits = _Bits(frame[2:8])
    if bsid <= 10:
        bits.skip(16)  # crc1
        fscod = bits.u(2)
        bits.skip(6 + 5 + 3)  # frmsizecod, bsid, bsmod
        acmod = bits.u(3)
        if acmod & 0x01 and acmod != 1:
            bits.skip(2)  # cmixlev
        if acmod & 0x04:
            bits.skip(2)  # surmixlev
        if acmod == 2:
            bits.skip(2)  # dsurmod
        lfe = bits.u(1)
        # bsid 9 and 10 are the half- and quarter-rate variants.
        rate = _AC3_RATES[fscod] >> max(bsid - 8, 0) if fscod < 3 else None
    elif bsid <= 16:
        bits.skip(2 + 3 + 11)  # strmtyp, substreamid, frmsiz
        fscod = bits.u(2)
        rate_code = bits.u(2)  # fscod2 when fscod is 3, numblkscod otherwise
        if fscod == 3:
            rate = _EAC3_REDUCED_RATES[rate_code] if rate_code < 3 else None
        else:
            rate = _AC3_RATES[fscod]
        acmod = bits.u(3)
        lfe = bits.u(1)
    else:
        return None
    return AudioDescription(codec, rate, _AC3_ACMOD_CHANNELS[acmod] + lfe)


_MP3_RATES = (44100, 48000, 32000)


def _mp3_frame_header(data: bytes, pos: int) -> AudioDescription | None:
    if len(data) < pos + 4 or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version = (data[pos + 1] >> 3) & 0x03  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
    layer = (data[pos + 1] >> 1) & 0x03
    rate_index = (data[pos + 2] >> 2) & 0x03
    if version == 1 or layer == 0 or rate_index == 3:
        return None
    rate = _MP3_RATES[rate_index] >> (0 if version == 3 else 1 if version == 2 else 2)
    channels = 1 if data[pos + 3] >> 6 == 3 else 2
    return AudioDescription("mp3", rate, channels)
