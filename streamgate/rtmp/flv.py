"""FLV tag headers: what kind of media an RTMP audio or video message carries.

RTMP audio (type 8) and video (type 9) message payloads are FLV tag bodies.
This module reads their headers, both the legacy FLV codec ids and Enhanced
RTMP (E-RTMP v2, FourCC signalling, ModEx and multitrack), to tell decoder
configuration from keyframes from inter frames. The relay calls it once per
media message: it is the hot path, and it reads no more than the header.

The underscored constants are the tag format's vocabulary, shared with
:mod:`~streamgate.rtmp.codecs` (which walks the same headers to reach the
configuration record); they are not API. Pure and sans-IO; nothing here
raises on malformed payloads.
"""

from __future__ import annotations

__all__ = [
    "AUDIO_CONFIG",
    "AUDIO_FRAME",
    "AUDIO_OTHER",
    "VIDEO_CONFIG",
    "VIDEO_FRAME",
    "VIDEO_KEYFRAME",
    "VIDEO_OTHER",
    "classify_audio",
    "classify_video",
]

VIDEO_FRAME = 0
"""A playable frame that is not a keyframe."""
VIDEO_KEYFRAME = 1
"""A coded keyframe (never a sequence header)."""
VIDEO_CONFIG = 2
"""A sequence header / decoder configuration record."""
VIDEO_OTHER = 3
"""End of sequence, command and metadata packets, empty or unparseable payloads."""
AUDIO_FRAME = 0
"""Coded audio."""
AUDIO_CONFIG = 2
"""AAC AudioSpecificConfig or an E-RTMP audio SequenceStart."""
AUDIO_OTHER = 3
"""End of sequence, multichannel config, empty or unparseable payloads."""


# --- FLV / E-RTMP constants --------------------------------------------------

_FRAME_KEY = 1
_FRAME_COMMAND = 5

# Legacy VideoCodecId values whose tags carry an AVCPacketType byte and a
# composition time. 12 is the SRS / CDN-Union HEVC extension, not Adobe's.
_VCODEC_AVC = 7
_VCODEC_HEVC_LEGACY = 12
_AVC_LIKE_CODECS = frozenset({_VCODEC_AVC, _VCODEC_HEVC_LEGACY})
_LEGACY_VIDEO_CODECS = {
    2: "h263",
    3: "screen",
    4: "vp6",
    5: "vp6a",
    6: "screen2",
    _VCODEC_AVC: "h264",
    _VCODEC_HEVC_LEGACY: "hevc",
}

_VPT_SEQUENCE_START = 0
_VPT_CODED_FRAMES = 1
_VPT_CODED_FRAMES_X = 3
_VPT_METADATA = 4
_VPT_MPEG2TS_SEQUENCE_START = 5
_VPT_MULTITRACK = 6
# ModEx has the same value, and the same layout, in audio and video headers.
_PT_MODEX = 7

_VPT_CONFIGS = frozenset({_VPT_SEQUENCE_START, _VPT_MPEG2TS_SEQUENCE_START})
_VPT_FRAMES = frozenset({_VPT_CODED_FRAMES, _VPT_CODED_FRAMES_X})

_VIDEO_FOURCCS = {
    b"avc1": "h264",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"vp08": "vp8",
}

_SOUND_EX_HEADER = 9
_SOUND_AAC = 10
# Not in any Adobe spec: SRS (and forks) send Opus as SoundFormat 13 with an
# AAC-style packet type byte, 0 meaning sequence header.
_SOUND_OPUS_LEGACY = 13

_APT_SEQUENCE_START = 0
_APT_CODED_FRAMES = 1
_APT_MULTICHANNEL_CONFIG = 4
_APT_MULTITRACK = 5

_AUDIO_FOURCCS = {
    b"mp4a": "aac",
    b"Opus": "opus",
    b".mp3": "mp3",
    b"fLaC": "flac",
    b"ac-3": "ac3",
    b"ec-3": "eac3",
}

_LEGACY_AUDIO_CODECS = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm",
    4: "nellymoser",
    5: "nellymoser",
    6: "nellymoser",
    7: "g711a",
    8: "g711u",
    _SOUND_AAC: "aac",
    11: "speex",
    _SOUND_OPUS_LEGACY: "opus",
    14: "mp3",
}
_FLV_SOUND_RATES = (5512, 11025, 22050, 44100)
# Formats whose rate (and for some, channel count) is fixed by the codec, so
# the generic soundRate/soundType bits in the tag header are meaningless.
_FIXED_RATE = {4: 16000, 5: 8000, 7: 8000, 8: 8000, 11: 16000, 14: 8000}
_FIXED_MONO = {4, 5, 11}

_MT_ONE_TRACK = 0
_MT_MANY_CODECS = 2


# --- classification (hot path) ------------------------------------------------


def _skip_modex(payload: bytes, n: int, pos: int) -> int:
    """Skip chained ModEx blocks; return the offset after the final packet-type byte.

    The packet type that follows the last ModEx block is the low nibble of
    ``payload[result - 1]``. Returns -1 when the payload is truncated.
    """
    while True:
        if pos >= n:
            return -1
        size = payload[pos] + 1
        pos += 1
        if size == 256:
            if pos + 2 > n:
                return -1
            size = ((payload[pos] << 8) | payload[pos + 1]) + 1
            pos += 2
        pos += size
        if pos >= n:
            return -1
        pos += 1
        if payload[pos - 1] & 0x0F != _PT_MODEX:
            return pos


def _frame_kind(frame_type: int) -> int:
    if frame_type == _FRAME_KEY:
        return VIDEO_KEYFRAME
    # 2 = inter, 3 = disposable inter, 4 = server-generated keyframe: a
    # generated keyframe is not guaranteed to be an IDR, so it must not start
    # a GOP cache.
    if 2 <= frame_type <= 4:
        return VIDEO_FRAME
    return VIDEO_OTHER


def classify_video(payload: bytes) -> int:
    """Classify an RTMP video message payload as one of the ``VIDEO_*`` constants."""
    n = len(payload)
    if n == 0:
        return VIDEO_OTHER
    b0 = payload[0]
    frame_type = (b0 >> 4) & 0x07
    if b0 & 0x80:
        return _classify_ex_video(payload, n, frame_type, b0 & 0x0F)
    if frame_type == _FRAME_COMMAND:
        return VIDEO_OTHER
    codec = b0 & 0x0F
    if codec in _AVC_LIKE_CODECS:
        # Packet type + 24-bit composition time precede the data; a tag with
        # nothing after them has nothing to decode.
        if n <= 5:
            return VIDEO_OTHER
        packet_type = payload[1]
        if packet_type == 0:
            return VIDEO_CONFIG
        if packet_type == 1:
            return _frame_kind(frame_type)
        return VIDEO_OTHER
    if n < 2:
        return VIDEO_OTHER
    return _frame_kind(frame_type)


def _classify_ex_video(payload: bytes, n: int, frame_type: int, packet_type: int) -> int:
    pos = 1
    if packet_type == _PT_MODEX:
        pos = _skip_modex(payload, n, pos)
        if pos < 0:
            return VIDEO_OTHER
        packet_type = payload[pos - 1] & 0x0F
    if packet_type == _VPT_METADATA:
        return VIDEO_OTHER
    if frame_type == _FRAME_COMMAND:
        return VIDEO_OTHER
    if packet_type == _VPT_MULTITRACK:
        if pos >= n:
            return VIDEO_OTHER
        packet_type = payload[pos] & 0x0F
        # Whatever the multitrack type, a FourCC and a track id follow the
        # multitrack byte.
        pos += 6
    else:
        pos += 4
    if pos > n:
        return VIDEO_OTHER
    if packet_type in _VPT_CONFIGS:
        return VIDEO_CONFIG
    if packet_type in _VPT_FRAMES:
        return _frame_kind(frame_type)
    return VIDEO_OTHER


def classify_audio(payload: bytes) -> int:
    """Classify an RTMP audio message payload as one of the ``AUDIO_*`` constants."""
    n = len(payload)
    if n == 0:
        # The undocumented RTMP "audio silence" message.
        return AUDIO_OTHER
    sound_format = payload[0] >> 4
    if sound_format == _SOUND_EX_HEADER:
        return _classify_ex_audio(payload, n, payload[0] & 0x0F)
    if sound_format == _SOUND_AAC:
        if n <= 2:
            return AUDIO_OTHER
        packet_type = payload[1]
        if packet_type == 0:
            return AUDIO_CONFIG
        if packet_type == 1:
            return AUDIO_FRAME
        return AUDIO_OTHER
    if sound_format == _SOUND_OPUS_LEGACY:
        if n <= 2:
            return AUDIO_OTHER
        # SRS uses the non-zero values as a bit mask of frame traits.
        return AUDIO_CONFIG if payload[1] == 0 else AUDIO_FRAME
    return AUDIO_FRAME if n > 1 else AUDIO_OTHER


def _classify_ex_audio(payload: bytes, n: int, packet_type: int) -> int:
    pos = 1
    if packet_type == _PT_MODEX:
        pos = _skip_modex(payload, n, pos)
        if pos < 0:
            return AUDIO_OTHER
        packet_type = payload[pos - 1] & 0x0F
    if packet_type == _APT_MULTITRACK:
        if pos >= n:
            return AUDIO_OTHER
        packet_type = payload[pos] & 0x0F
        pos += 6
    else:
        pos += 4
    if pos > n:
        return AUDIO_OTHER
    if packet_type == _APT_SEQUENCE_START:
        return AUDIO_CONFIG
    if packet_type == _APT_CODED_FRAMES:
        return AUDIO_FRAME
    # SequenceEnd and MultichannelConfig land here on purpose: a consumer that
    # caches "the" audio config must not let a channel map overwrite it.
    return AUDIO_OTHER
