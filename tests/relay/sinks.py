"""Recording sinks for relay tests: what a player or publisher was sent."""

from __future__ import annotations

from streamgate.rtmp.chunk import ChunkDecoder, Message

AVC_CONFIG = b"\x17\x00\x00\x00\x00" + b"\x01\x64\x00\x1f\xff\xe1\x00\x00"
AVC_KEY = b"\x17\x01\x00\x00\x00" + b"K" * 40
AVC_INTER = b"\x27\x01\x00\x00\x00" + b"P" * 20
AAC_CONFIG = b"\xaf\x00\x12\x10"
AAC_RAW = b"\xaf\x01" + b"A" * 10


class RecordingPlayer:
    def __init__(self, chunk_size: int = 4096) -> None:
        self.writes: list[bytes] = []
        self.ended: tuple[str, str] | None = None
        self.dropped: str | None = None
        self._decoder = ChunkDecoder()
        self._decoder.chunk_size = chunk_size
        self.messages: list[Message] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.messages.extend(self._decoder.receive_data(data))

    def stream_ended(self, code: str, description: str) -> None:
        self.ended = (code, description)

    def drop(self, reason: str) -> None:
        self.dropped = reason

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


class RecordingPublisher:
    def __init__(self) -> None:
        self.kicked: tuple[str, str] | None = None

    def kick(self, code: str, description: str) -> None:
        self.kicked = (code, description)
