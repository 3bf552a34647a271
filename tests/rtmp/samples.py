"""FLV tag bodies for the media tests: real ones from encoders, hand-built ones.

Real-data cases encode a few frames with PyAV, mux them to an in-memory FLV
(FFmpeg writes legacy FLV for H.264/AAC/MP3/PCM and Enhanced RTMP for
HEVC/AV1/VP9/Opus/FLAC/AC-3) and take the tag bodies, which are exactly what
RTMP audio/video messages carry. The hand-built ones reach the corners no
encoder writes (ModEx, multitrack, odd SPS syntax).
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from streamgate.rtmp.flv import VIDEO_CONFIG, classify_video

FLV_AUDIO, FLV_VIDEO = 8, 9


# --- helpers: real streams through PyAV --------------------------------------------


def _av(codec: str) -> Any:
    av = pytest.importorskip("av")
    if codec not in av.codecs_available:
        pytest.skip(f"encoder {codec!r} is not in this PyAV build")
    return av


def _flv_tags(data: bytes) -> Iterator[tuple[int, bytes]]:
    assert data[:3] == b"FLV"
    pos = struct.unpack(">I", data[5:9])[0] + 4  # header, then PreviousTagSize0
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        yield tag_type, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


_PATTERN = bytes(range(256)) * 4


def _video_frame(av: Any, width: int, height: int, pix_fmt: str, index: int) -> Any:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        size = plane.buffer_size
        plane.update((_PATTERN * (size // len(_PATTERN) + 2))[index * 7 : index * 7 + size])
    frame.pts = index
    return frame.reformat(format=pix_fmt)


@functools.cache
def video_tags(
    codec: str, width: int, height: int, pix_fmt: str = "yuv420p", options: str = ""
) -> tuple[bytes, ...]:
    """Video tag bodies of a short clip; ``options`` is "key=value,key=value"."""
    av = _av(codec)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.codec_context.options = dict(kv.split("=", 1) for kv in options.split(","))
        for i in range(3):
            for packet in stream.encode(_video_frame(av, width, height, pix_fmt, i)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return tuple(body for kind, body in _flv_tags(buf.getvalue()) if kind == FLV_VIDEO)


@functools.cache
def audio_tags(codec: str, rate: int, layout: str) -> tuple[bytes, ...]:
    av = _av(codec)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        sample_format = stream.codec_context.codec.audio_formats[0].name
        stream.format = sample_format
        frame_size = stream.codec_context.frame_size or 1024
        for i in range(6):
            frame = av.AudioFrame(format=sample_format, layout=layout, samples=frame_size)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = rate
            frame.pts = i * frame_size
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return tuple(body for kind, body in _flv_tags(buf.getvalue()) if kind == FLV_AUDIO)


def first_available(*codecs: str) -> str:
    av = pytest.importorskip("av")
    for codec in codecs:
        if codec in av.codecs_available:
            return codec
    pytest.skip(f"none of the encoders {codecs} is in this PyAV build")


# --- helpers: hand-built bitstreams --------------------------------------------------


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        assert 0 <= value < (1 << n) or (n == 0 and value == 0)
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        return self.u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def trailing(self) -> BitWriter:
        self.u(1, 1)
        while len(self.bits) % 8:
            self.bits.append(0)
        return self

    def tobytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes the way an encoder does."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros == 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def legacy_avc_config(record: bytes, codec_id: int = 7) -> bytes:
    return bytes([0x10 | codec_id, 0, 0, 0, 0]) + record


def avcc(sps_nal: bytes) -> bytes:
    pps = b"\x68\xce\x38\x80"
    return (
        bytes([1, sps_nal[1], sps_nal[2], sps_nal[3], 0xFF, 0xE1])
        + len(sps_nal).to_bytes(2, "big")
        + sps_nal
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


def ex_video(frame_type: int, packet_type: int, fourcc: bytes, body: bytes = b"") -> bytes:
    return bytes([0x80 | frame_type << 4 | packet_type]) + fourcc + body


def ex_audio(packet_type: int, fourcc: bytes, body: bytes = b"") -> bytes:
    return bytes([0x90 | packet_type]) + fourcc + body


def config_record(tags: tuple[bytes, ...]) -> bytes:
    """The decoder configuration record in a stream's first tag (legacy or E-RTMP)."""
    assert classify_video(tags[0]) == VIDEO_CONFIG
    return tags[0][5:]  # 5 bytes either way: header + packet type + CTS, or header + FourCC


def modex(packet_type: int, data: bytes, large: bool = False) -> bytes:
    # Sizes above 256 escape to a 16-bit field behind a 0xFF marker.
    size = b"\xff" + (len(data) - 1).to_bytes(2, "big") if large else bytes([len(data) - 1])
    return size + data + bytes([0 << 4 | packet_type])


def multitrack(multitrack_type: int, packet_type: int, tracks: list[tuple[bytes, bytes]]) -> bytes:
    """Build a multitrack body; ``tracks`` is [(fourcc, track body)]."""
    out = bytes([multitrack_type << 4 | packet_type])
    if multitrack_type != 2:
        out += tracks[0][0]
    for track_id, (fourcc, body) in enumerate(tracks):
        if multitrack_type == 2:
            out += fourcc
        out += bytes([track_id])
        if multitrack_type != 0:
            out += len(body).to_bytes(3, "big")
        out += body
    return out


def make_asc(
    aot: int, freq_index: int, channels: int, *, explicit: int = 0, ext: int = -1
) -> bytes:
    bits = BitWriter()
    if aot >= 31:
        bits.u(5, 31).u(6, aot - 32)
    else:
        bits.u(5, aot)
    bits.u(4, freq_index)
    if freq_index == 15:
        bits.u(24, explicit)
    bits.u(4, channels)
    if ext >= 0:
        bits.u(4, ext).u(5, 2)
    return bits.u(3, 0).tobytes()


OPUS_HEAD = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"

# Tag headers that the fuzzers put random bytes behind.
VIDEO_PREFIXES = [
    b"\x17\x00\x00\x00\x00\x01",
    b"\x1c\x00\x00\x00\x00\x01",
    b"\x90avc1\x01",
    b"\x90hvc1\x01",
    b"\x90av01\x81",
    b"\x90vp09",
    b"\x97",
    b"\x96",
    b"\x96\x00avc1\x00\x01",
    b"\x96\x10hvc1\x00",
]
AUDIO_PREFIXES = [
    b"\xaf\x00",
    b"\xdf\x00OpusHead",
    b"\x90mp4a",
    b"\x90OpusOpusHead",
    b"\x90fLaC",
    b"\x91ac-3\x0b\x77",
    b"\x91ec-3\x0b\x77",
    b"\x91.mp3\xff",
    b"\x2f\xff",
    b"\x94Opus",
    b"\x97",
    b"\x95",
]


def real_video_configs() -> list[bytes]:
    """Sequence headers from the encoders this PyAV build has (H.264 always)."""
    configs = [
        video_tags("libx264", 642, 362)[0],
        video_tags("libx264", 320, 240, "yuv420p", "x264-params=cqm=jvt:interlaced=1")[0],
        video_tags("libx264", 641, 361, "yuv444p")[0],
    ]
    av = pytest.importorskip("av")
    if "libx265" in av.codecs_available:
        configs.append(
            video_tags("libx265", 642, 362, "yuv420p", "x265-params=temporal-layers=3")[0]
        )
    for codec in ("libaom-av1", "libsvtav1", "librav1e"):
        if codec in av.codecs_available:
            configs.append(video_tags(codec, 642, 362)[0])
            break
    return configs


def audio_configs() -> list[bytes]:
    """Hand-built audio configuration tags and syncframes, for corrupting."""
    return [
        b"\xaf\x00" + make_asc(5, 6, 2, ext=3),
        b"\xaf\x00" + make_asc(2, 15, 1, explicit=37800),
        ex_audio(0, b"Opus", OPUS_HEAD),
        ex_audio(1, b"ec-3", b"\x0b\x77\x01\x7f\x34\x87\xc0\x00"),
        ex_audio(1, b"ac-3", b"\x0b\x77\x00\x00\x18\x40\xe1\x00"),
    ]
