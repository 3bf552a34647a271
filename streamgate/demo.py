"""The built-in demo source: a test pattern with a tone, published as ``live/demo``.

A short clip is encoded once with PyAV (FFmpeg's ``testsrc2`` and ``sine``,
H.264 + AAC) and muxed to FLV in memory, which yields exactly the tag bodies
RTMP carries. The clip, starting on a keyframe, is then replayed in a loop
into the local hub in real time, so after start-up the demo costs a timer
and a few dozen messages a second.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass

from streamgate.relay.clock import Clock, TimerHandle
from streamgate.relay.hub import StreamBusy, StreamHub
from streamgate.relay.stream import Stream
from streamgate.rtmp import amf0
from streamgate.rtmp.messages import MsgType

__all__ = ["DemoClip", "DemoSource", "encode_clip", "parse_flv"]

log = logging.getLogger("streamgate.demo")

_TAG = struct.Struct(">BBHBBBB")  # type, size (24 bits: 1 + 2), timestamp (24 + 8), stream id


@dataclass(frozen=True, slots=True)
class DemoClip:
    metadata: tuple[tuple[object, ...], bytes] | None  # (values, AMF0 body)
    messages: tuple[tuple[int, int, bytes], ...]  # (type id, timestamp ms, payload)
    duration_ms: int


def parse_flv(data: bytes) -> DemoClip:
    """FLV file bytes -> its script, audio and video tags."""
    if data[:3] != b"FLV" or len(data) < 13:
        raise ValueError("not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    metadata = None
    messages: list[tuple[int, int, bytes]] = []
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
        if kind == MsgType.DATA_AMF0:
            values = tuple(amf0.decode_all(body))
            if values and values[0] == "onMetaData":
                metadata = (values, bytes(body))
        elif kind in (MsgType.AUDIO, MsgType.VIDEO):
            messages.append((kind, ts, bytes(body)))
    if not messages:
        raise ValueError("FLV file without audio or video")
    return DemoClip(metadata, tuple(messages), max(ts for _, ts, _ in messages))


def encode_clip(
    seconds: int = 4, size: str = "640x360", rate: int = 30, bitrate: int = 1_000_000
) -> DemoClip:
    """Encode the test pattern and tone (blocking: run it in a thread)."""
    import av  # the media toolbox; only the demo needs it at run time

    out = io.BytesIO()
    with av.open(out, "w", format="flv") as muxer:
        width, height = (int(x) for x in size.split("x"))
        vout = muxer.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.bit_rate = bitrate
        vout.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(rate * 2)}
        aout = muxer.add_stream("aac", rate=44100)
        aout.bit_rate = 96_000
        video = av.open(f"testsrc2=size={size}:rate={rate}:duration={seconds}", format="lavfi")
        audio = av.open(f"sine=frequency=440:sample_rate=44100:duration={seconds}", format="lavfi")
        vframes = video.decode(video=0)
        aframes = audio.decode(audio=0)
        next_v = next(vframes, None)
        next_a = next(aframes, None)
        while next_v is not None or next_a is not None:
            v_time = _seconds(next_v)
            a_time = _seconds(next_a)
            if next_v is not None and (next_a is None or v_time <= a_time):
                next_v.pts = None  # let the encoder number the frames
                muxer.mux(vout.encode(next_v))
                next_v = next(vframes, None)
            else:
                assert next_a is not None
                next_a.pts = None
                muxer.mux(aout.encode(next_a))
                next_a = next(aframes, None)
        muxer.mux(vout.encode(None))
        muxer.mux(aout.encode(None))
        video.close()
        audio.close()
    return parse_flv(out.getvalue())


def _seconds(frame: object) -> float:
    if frame is None:
        return float("inf")
    pts, base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
    return float(pts * base) if pts is not None and base else 0.0


class DemoSource:
    """Publishes a clip in a loop into the hub; ``kick`` (the idle sweep) restarts it."""

    def __init__(self, hub: StreamHub, clock: Clock, clip: DemoClip) -> None:
        self.hub = hub
        self.clock = clock
        self.clip = clip
        self.stream: Stream | None = None
        self._timer: TimerHandle | None = None
        self._index = 0
        self._base = 0  # timestamp offset of the current loop
        self._started = 0.0
        self.closed = False

    def start(self, app: str = "live", name: str = "demo") -> None:
        try:
            self.stream = self.hub.publish(app, name, self)
        except StreamBusy:
            log.warning("demo: %s/%s is already published; the demo stays off", app, name)
            return
        if self.clip.metadata is not None:
            values, body = self.clip.metadata
            self.stream.on_metadata(0, values, body)
        self._started = self.clock.now()
        self._step()
        log.info("demo source publishing %s/%s", app, name)

    def _step(self) -> None:
        """Feed every message that is due, then sleep until the next one."""
        self._timer = None
        if self.closed or self.stream is None:
            return
        messages = self.clip.messages
        elapsed_ms = (self.clock.now() - self._started) * 1000
        while True:
            kind, ts, payload = messages[self._index]
            due = self._base + ts
            if due - elapsed_ms > 1.0:  # up to 1 ms early: every sleep is >= 1 ms
                break
            self.stream.on_media(kind, due & 0xFFFFFFFF, payload)
            self._index += 1
            if self._index == len(messages):
                self._index = 0
                self._base += self.clip.duration_ms + 33  # one frame past the last
        self._timer = self.clock.call_later((due - elapsed_ms) / 1000, self._step)

    def kick(self, code: str, description: str) -> None:
        """PublisherSink: the hub dropped us (should not happen: we never go quiet)."""
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.stream is not None:
            stream, self.stream = self.stream, None
            self.hub.unpublish(stream)
