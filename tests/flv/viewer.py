"""A test viewer of HTTP-FLV and WebSocket-FLV, written from the specs, not from
streamgate's code: raw sockets, its own HTTP/1.1 chunked decoder, WebSocket
client framing (RFC 6455) and FLV tag parser (FLV file format 10.1)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from dataclasses import dataclass, field

__all__ = ["FlvReader", "Tag", "ViewerResult", "view"]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Tag:
    type: int  # 8 audio, 9 video, 18 script
    timestamp: int
    body: bytes

    @property
    def keyframe(self) -> bool:
        if self.type != 9 or not self.body:
            return False
        first = self.body[0]
        if first & 0x80:  # Enhanced RTMP: the frame type is in bits 4-6
            return (first >> 4) & 0x07 == 1
        return first >> 4 == 1

    @property
    def config(self) -> bool:
        """An AVC/AAC sequence header."""
        if self.type == 9 and len(self.body) > 1 and not self.body[0] & 0x80:
            return self.body[0] & 0x0F == 7 and self.body[1] == 0
        if self.type == 8 and len(self.body) > 1:
            return self.body[0] >> 4 == 10 and self.body[1] == 0
        return False


class FlvReader:
    """FLV bytes in, the header flags and tags out; raises ValueError on a bad stream."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.flags: int | None = None
        self.tags: list[Tag] = []
        self.bytes = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        self.bytes += len(data)
        buf = self.buffer
        if self.flags is None:
            if len(buf) < 13:
                return
            if buf[:3] != b"FLV" or buf[3] != 1:
                raise ValueError(f"not an FLV header: {bytes(buf[:9])!r}")
            offset = struct.unpack_from(">I", buf, 5)[0]
            if offset != 9 or struct.unpack_from(">I", buf, 9)[0] != 0:
                raise ValueError("bad FLV header length or PreviousTagSize0")
            self.flags = buf[4]
            del buf[:13]
        while len(buf) >= 11:
            size = int.from_bytes(buf[1:4], "big")
            if len(buf) < 11 + size + 4:
                return
            ts = int.from_bytes(buf[4:7], "big") | (buf[7] << 24)
            if buf[8:11] != b"\x00\x00\x00":
                raise ValueError("StreamID must be 0")
            previous = struct.unpack_from(">I", buf, 11 + size)[0]
            if previous != 11 + size:
                raise ValueError(f"PreviousTagSize {previous} != {11 + size}")
            self.tags.append(Tag(buf[0], ts, bytes(buf[11 : 11 + size])))
            del buf[: 11 + size + 4]


@dataclass
class ViewerResult:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # a refusal's body
    flv: FlvReader = field(default_factory=FlvReader)
    ended: bool = False  # the chunked terminator, or a WebSocket close frame
    close_code: int | None = None
    close_reason: str = ""
    closed: bool = False  # the connection closed (without a proper end)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def view(
    host: str,
    port: int,
    path: str,
    *,
    websocket: bool = False,
    method: str = "GET",
    until_bytes: int = 0,
    until_tags: int = 0,
    timeout: float = 20.0,
    source: str | None = None,
    http10: bool = False,
    result: ViewerResult | None = None,
) -> ViewerResult:
    """Ask for ``path``; read the stream until ``until_bytes`` of FLV (or
    ``until_tags`` tags) arrived, the stream ended, or ``timeout``. Pass
    ``result`` to watch it fill while the view runs."""
    result = ViewerResult() if result is None else result
    try:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source, 0) if source else None
        )
    except ConnectionError:  # reset at accept (a banned address): before connect() returned
        result.closed = True
        return result
    try:
        async with asyncio.timeout(timeout):
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [f"{method} {path} HTTP/{'1.0' if http10 else '1.1'}", f"Host: {host}:{port}"]
            if websocket:
                lines += [
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    f"Sec-WebSocket-Key: {key}",
                    "Sec-WebSocket-Version: 13",
                ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            result.status, result.headers = await _read_head(reader)
            if websocket and result.status == 101:
                expected = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()
                assert result.headers.get("sec-websocket-accept") == expected
                await _read_ws(reader, writer, result, until_bytes, until_tags)
            elif result.status != 200:
                length = int(result.headers.get("content-length", "0"))
                if method != "HEAD":
                    result.body = await reader.readexactly(length)
            elif method == "HEAD":
                pass
            elif result.headers.get("transfer-encoding") == "chunked":
                await _read_chunked(reader, result, until_bytes, until_tags)
            else:
                await _read_plain(reader, result, until_bytes, until_tags)
    except TimeoutError:
        pass
    except (asyncio.IncompleteReadError, ConnectionError):
        result.closed = True
    finally:
        writer.close()
    return result


def _done(result: ViewerResult, until_bytes: int, until_tags: int) -> bool:
    if until_tags and len(result.flv.tags) >= until_tags:
        return True
    return bool(until_bytes) and result.flv.bytes >= until_bytes


async def _read_chunked(
    reader: asyncio.StreamReader, result: ViewerResult, until_bytes: int, until_tags: int
) -> None:
    while not _done(result, until_bytes, until_tags):
        line = await reader.readuntil(b"\r\n")
        size = int(line.strip().split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            result.ended = True
            return
        result.flv.feed(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")


async def _read_plain(
    reader: asyncio.StreamReader, result: ViewerResult, until_bytes: int, until_tags: int
) -> None:
    while not _done(result, until_bytes, until_tags):
        data = await reader.read(65536)
        if not data:
            result.ended = True
            return
        result.flv.feed(data)


async def _read_ws(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    result: ViewerResult,
    until_bytes: int,
    until_tags: int,
) -> None:
    while not _done(result, until_bytes, until_tags):
        first, second = await reader.readexactly(2)
        assert not second & 0x80, "server frames are never masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack(">H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", await reader.readexactly(8))[0]
        payload = await reader.readexactly(size)
        opcode = first & 0x0F
        if opcode == 0x8:
            result.ended = True
            if len(payload) >= 2:
                result.close_code = struct.unpack(">H", payload[:2])[0]
                result.close_reason = payload[2:].decode("utf-8")
            return
        if opcode == 0x2:
            result.flv.feed(payload)
    # Leave politely: a masked close frame.
    mask = os.urandom(4)
    body = struct.pack(">H", 1000)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    writer.write(bytes((0x88, 0x80 | len(body))) + mask + masked)
