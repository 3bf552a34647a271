"""Stream thumbnails: a stream's last keyframe as a small JPEG.

``GET /api/v1/streams/{app}/{name}/thumbnail.jpg`` decodes the keyframe the
stream's GOP cache starts with (``Stream.gop[0]``), using the video sequence
header (``Stream.video_config``) as the decoder's configuration, with PyAV,
scales it down to :data:`WIDTH` pixels wide and encodes it as MJPEG.

What it may cost:

* a JPEG is made only when asked for, at most once per :data:`INTERVAL` seconds
  per stream, and only from a keyframe newer than the last one decoded; in
  between, the cached JPEG is served (requests for a stream while its JPEG is
  being made share that one decode);
* decoding runs in one worker thread (PyAV releases the GIL), never on the
  event loop; at most :data:`MAX_PENDING` decodes wait for it, beyond that a
  stream with a JPEG gets its older one and one without is answered 503;
* a stream's cache entry goes with the stream (weak references).

Errors are :class:`ThumbnailError` with the HTTP status to answer: 404 (no
such stream, no video, no keyframe cached yet), 415 (a codec this cannot
decode), 422 (a sequence header or keyframe that does not decode), 503 (busy).
Undecodable data is remembered like a JPEG, so garbage is decoded only once
per keyframe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import weakref
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from streamgate.rtmp.codecs import describe_video, video_tag
from streamgate.rtmp.flv import VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import MsgType

if TYPE_CHECKING:
    from streamgate.relay.stream import Stream

__all__ = [
    "DECODERS",
    "INTERVAL",
    "MAX_PENDING",
    "WIDTH",
    "ThumbnailError",
    "Thumbnailer",
    "make_jpeg",
]

WIDTH = 320
"""Pixels wide of a thumbnail (a smaller picture keeps its own width)."""
INTERVAL = 5.0
"""Seconds a stream's thumbnail is served from the cache before a newer keyframe is decoded."""
MAX_PENDING = 8
"""Decodes that may wait for the decoding thread at once."""
MAX_PIXELS = 8192 * 4320
"""Largest picture decoded (8K): a bigger one is refused before the decoder allocates it."""
MAX_KEYFRAME_BYTES = 16 << 20

DECODERS = {"h264": "h264", "hevc": "hevc", "av1": "libdav1d"}
"""Codec (as the API names it) -> the FFmpeg decoder that makes its thumbnails."""

_VIDEO = int(MsgType.VIDEO)
_MAX_DETAIL = 160


class ThumbnailError(Exception):
    """Why there is no thumbnail, with the HTTP status that says so."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _available(decoder: str) -> bool:
    import av  # the media toolbox: loaded by the decoding thread, on first use

    return decoder in av.codecs_available


def make_jpeg(config: bytes, keyframe: bytes, width: int = WIDTH) -> bytes:
    """A JPEG of ``keyframe`` (an FLV/RTMP video message body) decoded with the
    configuration record of ``config`` (the sequence header message body).

    Blocking (run it in a thread); raises :class:`ThumbnailError` (415, 422)."""
    header = video_tag(config)
    if header is None or header.kind != "config":
        raise ThumbnailError(422, "the video sequence header cannot be parsed")
    decoder = DECODERS.get(header.codec)
    if decoder is None or not _available(decoder):
        supported = ", ".join(c for c, d in DECODERS.items() if _available(d))
        raise ThumbnailError(
            415, f"no thumbnails of {header.codec} video here (only of {supported})"
        )
    frame_tag = video_tag(keyframe)
    if frame_tag is None or frame_tag.kind != "frame" or frame_tag.codec != header.codec:
        raise ThumbnailError(422, "the keyframe's tag header cannot be parsed")
    if not frame_tag.body or len(frame_tag.body) > MAX_KEYFRAME_BYTES:
        raise ThumbnailError(422, f"the keyframe is empty or over {MAX_KEYFRAME_BYTES} bytes")
    described = describe_video(config)
    if described is not None and (described.width or 0) * (described.height or 0) > MAX_PIXELS:
        raise ThumbnailError(
            422, f"a {described.width}x{described.height} picture is too large for a thumbnail"
        )
    return _decode_encode(decoder, header.body, frame_tag.body, width)


def _decode_encode(decoder: str, record: bytes, data: bytes, width: int) -> bytes:
    import av

    try:
        ctx = av.CodecContext.create(decoder, "r")
        if not isinstance(ctx, av.VideoCodecContext):
            raise ThumbnailError(415, f"{decoder} is not a video decoder")
        ctx.extradata = record
        ctx.thread_count = 1  # one picture: threads would only add start-up cost
        frames = [*ctx.decode(av.Packet(data)), *ctx.decode(None)]
    except (av.FFmpegError, ValueError, MemoryError) as exc:
        raise ThumbnailError(422, f"the keyframe does not decode: {_detail(exc)}") from None
    frames = [f for f in frames if isinstance(f, av.VideoFrame)]
    if not frames:
        raise ThumbnailError(422, "the keyframe decoded to no picture")
    frame = frames[0]
    if frame.width <= 0 or frame.height <= 0 or frame.width * frame.height > MAX_PIXELS:
        raise ThumbnailError(422, f"a {frame.width}x{frame.height} picture cannot be a thumbnail")
    out_w = min(width, frame.width) // 2 * 2 or 2
    out_h = max(2, round(frame.height * out_w / frame.width / 2) * 2)
    try:
        small = frame.reformat(width=out_w, height=out_h, format="yuvj420p")
        encoder = av.CodecContext.create("mjpeg", "w")
        if not isinstance(encoder, av.VideoCodecContext):
            raise ThumbnailError(415, "no JPEG encoder here")
        encoder.width, encoder.height = out_w, out_h
        encoder.pix_fmt = "yuvj420p"
        encoder.time_base = Fraction(1, 25)
        packets = [*encoder.encode(small), *encoder.encode(None)]
    except (av.FFmpegError, ValueError) as exc:
        raise ThumbnailError(422, f"the picture does not encode: {_detail(exc)}") from None
    if not packets:
        raise ThumbnailError(422, "the picture encoded to nothing")
    return bytes(packets[0])


def _detail(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:_MAX_DETAIL]


@dataclass(slots=True)
class _Entry:
    keyframe: bytes  # the keyframe message body it was made from (compared by identity)
    made: float  # loop time
    jpeg: bytes | None = None
    error: ThumbnailError | None = None
    pending: asyncio.Task[bytes] | None = None

    def result(self) -> bytes:
        if self.jpeg is None:
            raise self.error or ThumbnailError(404, "no thumbnail yet")
        return self.jpeg


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """Mark a decode's error as seen (its requests may all have gone)."""
    if not task.cancelled():
        task.exception()


def keyframe_of(stream: Stream) -> tuple[bytes, bytes]:
    """(sequence header body, keyframe body) of ``stream``, or :class:`ThumbnailError` 404."""
    if stream.video_config is None:
        raise ThumbnailError(404, "the stream has no video sequence header (yet)")
    gop = stream.gop
    if not gop or gop[0][0] != _VIDEO or classify_video(gop[0][2]) != VIDEO_KEYFRAME:
        raise ThumbnailError(404, "no keyframe of the stream is cached (yet)")
    return stream.video_config[1], gop[0][2]


class Thumbnailer:
    """The cache of thumbnails and the one thread that makes them."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        width: int = WIDTH,
        interval: float = INTERVAL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.loop = loop
        self.width = width
        self.interval = interval
        self.max_pending = max_pending
        self.pending = 0  # decodes handed to the thread and not yet done
        self.made = 0  # decodes done (JPEGs and errors)
        self._cache: weakref.WeakKeyDictionary[Stream, _Entry] = weakref.WeakKeyDictionary()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    async def jpeg(self, stream: Stream) -> bytes:
        """The thumbnail of ``stream``; raises :class:`ThumbnailError`."""
        entry = self._cache.get(stream)
        if entry is not None and entry.pending is not None:
            return await asyncio.shield(entry.pending)
        config, keyframe = keyframe_of(stream)
        now = self.loop.time()
        if entry is not None and (
            entry.keyframe is keyframe or now - entry.made < self.interval
        ):
            return entry.result()
        if self.pending >= self.max_pending:
            if entry is not None and entry.jpeg is not None:
                return entry.jpeg
            raise ThumbnailError(503, "thumbnails are busy; try again shortly")
        entry = _Entry(keyframe, now, entry.jpeg if entry is not None else None)
        self._cache[stream] = entry
        # A task of its own: a request that goes away does not stop the decode
        # others may be waiting for. Counted from now, so that requests for many
        # streams in one loop turn see each other.
        self.pending += 1
        task = self.loop.create_task(self._make(entry, config))
        task.add_done_callback(_retrieve)
        entry.pending = task
        return await asyncio.shield(task)

    async def _make(self, entry: _Entry, config: bytes) -> bytes:
        try:
            entry.jpeg = await self.loop.run_in_executor(
                self._executor(), make_jpeg, config, entry.keyframe, self.width
            )
            entry.error = None
        except ThumbnailError as exc:
            entry.jpeg, entry.error = None, exc
        finally:
            self.pending -= 1
            self.made += 1
            entry.made = self.loop.time()
            entry.pending = None
        return entry.result()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="thumbnail"
            )
        return self._pool

    def close(self) -> None:
        """Stop the thread (a decode under way finishes; queued ones are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
