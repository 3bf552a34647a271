"""What the probe learns from the media it is sent (pure; times are passed in).

:class:`MediaWatch` is fed every audio, video and data message that follows
``play`` and records when the first media and the first keyframe arrived,
which codecs the sequence headers describe and what ``onMetaData`` announced.
"""

from __future__ import annotations

from typing import Any

from streamgate.rtmp.codecs import (
    AudioDescription,
    VideoDescription,
    describe_audio,
    describe_video,
)
from streamgate.rtmp.events import DataReceived, MediaReceived
from streamgate.rtmp.flv import (
    AUDIO_CONFIG,
    AUDIO_FRAME,
    VIDEO_CONFIG,
    VIDEO_KEYFRAME,
    classify_audio,
    classify_video,
)
from streamgate.rtmp.messages import MsgType

__all__ = ["MediaWatch", "format_audio", "format_video"]

_METADATA_NAMES = frozenset({"onMetaData", "@setDataFrame"})


def format_video(video: VideoDescription) -> str:
    """``h264 High 3.1 1280x720``."""
    parts = [video.codec]
    if video.profile:
        parts.append(video.profile)
    if video.level:
        parts.append(video.level)
    if video.width and video.height:
        parts.append(f"{video.width}x{video.height}")
    return " ".join(parts)


def format_audio(audio: AudioDescription) -> str:
    """``aac 44100 Hz 2 ch``."""
    parts = [audio.codec]
    if audio.sample_rate:
        parts.append(f"{audio.sample_rate} Hz")
    if audio.channels:
        parts.append(f"{audio.channels} ch")
    return " ".join(parts)


class MediaWatch:
    """Media seen on the played stream, from ``start`` (the moment play was accepted)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_media_at: float | None = None
        self.first_media_kind = ""
        self.first_keyframe_at: float | None = None
        self.video_messages = 0
        self.audio_messages = 0
        self.video: VideoDescription | None = None
        self.audio: AudioDescription | None = None
        self.video_header_seen = False
        self.audio_header_seen = False
        self.keyframe_before_header = False
        self.metadata: dict[str, Any] | None = None

    def feed(self, event: MediaReceived | DataReceived, now: float) -> None:
        if isinstance(event, DataReceived):
            self._on_data(event)
            return
        if self.first_media_at is None:
            self.first_media_at = now
            self.first_media_kind = "video" if event.type_id == MsgType.VIDEO else "audio"
        if event.type_id == MsgType.VIDEO:
            self._on_video(event.payload, now)
        elif event.type_id == MsgType.AUDIO:
            self._on_audio(event.payload)

    def _on_video(self, payload: bytes, now: float) -> None:
        self.video_messages += 1
        kind = classify_video(payload)
        if kind == VIDEO_CONFIG:
            self.video_header_seen = True
            self.video = describe_video(payload) or self.video
        elif kind == VIDEO_KEYFRAME and self.first_keyframe_at is None:
            self.first_keyframe_at = now
            if not self.video_header_seen:
                self.keyframe_before_header = True
        if self.video is None:
            self.video = describe_video(payload)  # at least the codec

    def _on_audio(self, payload: bytes) -> None:
        self.audio_messages += 1
        kind = classify_audio(payload)
        if kind == AUDIO_CONFIG:
            self.audio_header_seen = True
            self.audio = describe_audio(payload) or self.audio
        elif kind == AUDIO_FRAME and (self.audio is None or self.audio.sample_rate is None):
            # MP3, Speex and friends have no sequence header: a frame tells the rate.
            self.audio = describe_audio(payload) or self.audio

    def _on_data(self, event: DataReceived) -> None:
        values = event.values
        if not values or values[0] not in _METADATA_NAMES:
            return
        rest = values[1:]
        if values[0] == "@setDataFrame" and rest and rest[0] == "onMetaData":
            rest = rest[1:]
        if rest and isinstance(rest[0], dict):
            self.metadata = dict(rest[0])

    # ------------------------------------------------------------ conclusions

    @property
    def media_arrived(self) -> bool:
        return self.first_media_at is not None

    @property
    def keyframe_arrived(self) -> bool:
        return self.first_keyframe_at is not None

    @property
    def announced_audio_only(self) -> bool:
        """``onMetaData`` announces audio and no video: no keyframe will come."""
        meta = self.metadata
        if meta is None:
            return False
        has_video = any(key in meta for key in ("videocodecid", "width", "height"))
        return not has_video and "audiocodecid" in meta

    @property
    def announced_video(self) -> bool:
        meta = self.metadata
        return meta is not None and any(key in meta for key in ("videocodecid", "width"))

    def ms_since_start(self, moment: float | None) -> int:
        return 0 if moment is None else round((moment - self.start) * 1000)

    def metadata_summary(self) -> str:
        """``onMetaData: 1280x720 30 fps, encoder Lavf59``, or ``""``."""
        meta = self.metadata
        if not meta:
            return ""
        parts = []
        width, height = meta.get("width"), meta.get("height")
        if isinstance(width, int | float) and isinstance(height, int | float):
            parts.append(f"{int(width)}x{int(height)}")
        rate = meta.get("framerate")
        if isinstance(rate, int | float) and not isinstance(rate, bool):
            parts.append(f"{rate:g} fps")
        encoder = meta.get("encoder")
        if isinstance(encoder, str) and encoder:
            parts.append(f"encoder {encoder[:40]}")
        return f"onMetaData: {', '.join(parts)}" if parts else "onMetaData"

    def codecs(self) -> str:
        """``video h264 High 3.1 1280x720; audio aac 44100 Hz 2 ch``."""
        video = "none" if self.video is None else format_video(self.video)
        audio = "none" if self.audio is None else format_audio(self.audio)
        return f"video {video}; audio {audio}"

    def warnings(self) -> list[str]:
        """Things a player will trip over even though media arrived."""
        found = []
        codec = self.video.codec if self.video is not None else ""
        if self.keyframe_before_header and codec in ("h264", "hevc"):
            found.append(
                f"the first {codec} keyframe came before any sequence header: "
                "players cannot decode until one is sent"
            )
        audio_codec = self.audio.codec if self.audio is not None else ""
        if audio_codec == "aac" and self.audio_messages and not self.audio_header_seen:
            found.append("AAC audio without an AudioSpecificConfig (sequence header) so far")
        return found

    def info(self) -> dict[str, Any]:
        """Machine-readable summary for ``--json``."""
        return {
            "video": None
            if self.video is None
            else {
                "codec": self.video.codec,
                "width": self.video.width,
                "height": self.video.height,
                "profile": self.video.profile,
                "level": self.video.level,
            },
            "audio": None
            if self.audio is None
            else {
                "codec": self.audio.codec,
                "sample_rate": self.audio.sample_rate,
                "channels": self.audio.channels,
            },
            "video_messages": self.video_messages,
            "audio_messages": self.audio_messages,
            "first_media_ms": (
                self.ms_since_start(self.first_media_at) if self.media_arrived else None
            ),
            "first_keyframe_ms": (
                self.ms_since_start(self.first_keyframe_at) if self.keyframe_arrived else None
            ),
        }
