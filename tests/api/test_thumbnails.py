"""Thumbnails: real H.264 (encoded by PyAV, muxed to FLV tag bodies as RTMP carries
them) decoded to a JPEG; made once per keyframe and interval, shared by concurrent
requests, off the event loop; clean 404/415/422 answers for what cannot be shown,
garbage included, and the decoding thread still serving afterwards."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import io
import random
import threading

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgate.api.thumbnails import Thumbnailer, ThumbnailError, make_jpeg
from streamgate.client import RtmpClient
from streamgate.demo import DemoClip, encode_clip, parse_flv
from streamgate.relay.clock import LoopClock
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.codecs import video_tag
from streamgate.rtmp.flv import VIDEO_CONFIG, VIDEO_KEYFRAME, classify_video
from streamgate.rtmp.messages import MsgType
from tests.api.harness import ApiThread, open_publisher, wait_for

VIDEO = int(MsgType.VIDEO)


@functools.cache
def clip() -> DemoClip:
    """One second of PyAV-encoded H.264 (640x360) and AAC, as FLV tag bodies."""
    return encode_clip(seconds=1, size="640x360", rate=25)


def config_and_keyframe() -> tuple[bytes, bytes]:
    messages = clip().messages
    config = next(p for t, _, p in messages if t == VIDEO and classify_video(p) == VIDEO_CONFIG)
    keyframe = next(
        p for t, _, p in messages if t == VIDEO and classify_video(p) == VIDEO_KEYFRAME
    )
    return config, keyframe


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """Decode a JPEG back (PyAV's mjpeg decoder): its picture's width and height."""
    ctx = av.CodecContext.create("mjpeg", "r")
    assert isinstance(ctx, av.VideoCodecContext)
    frames = [*ctx.decode(av.Packet(jpeg)), *ctx.decode(None)]
    assert frames
    frame = frames[0]
    assert isinstance(frame, av.VideoFrame)
    return frame.width, frame.height


def test_a_real_h264_keyframe_makes_a_small_jpeg() -> None:
    config, keyframe = config_and_keyframe()
    jpeg = make_jpeg(config, keyframe)
    assert jpeg[:3] == b"\xff\xd8\xff" and jpeg[-2:] == b"\xff\xd9"
    assert jpeg_size(jpeg) == (320, 180)
    assert jpeg_size(make_jpeg(config, keyframe, width=160)) == (160, 90)
    assert jpeg_size(make_jpeg(config, keyframe, width=4000)) == (640, 360)  # never upscaled


def test_the_tag_header_is_stripped_for_the_decoder() -> None:
    config, keyframe = config_and_keyframe()
    record = video_tag(config)
    frame = video_tag(keyframe)
    assert record is not None and frame is not None
    assert (record.codec, record.kind, record.body) == ("h264", "config", config[5:])
    assert (frame.codec, frame.kind, frame.keyframe) == ("h264", "frame", True)
    assert record.body[0] == 1  # configurationVersion of an AVCDecoderConfigurationRecord
    # The same keyframe as an Enhanced RTMP tag: FourCC header, CodedFrames (with its
    # composition time) and CodedFramesX (without) give the decoder the same bytes.
    ex_config = bytes([0x90]) + b"avc1" + config[5:]
    coded = bytes([0x91]) + b"avc1" + keyframe[2:]
    coded_x = bytes([0x93]) + b"avc1" + keyframe[5:]
    for payload, kind in ((ex_config, "config"), (coded, "frame"), (coded_x, "frame")):
        tag = video_tag(payload)
        assert tag is not None and (tag.codec, tag.kind) == ("h264", kind)
    assert video_tag(coded) == video_tag(coded_x) == frame
    assert jpeg_size(make_jpeg(ex_config, coded)) == (320, 180)
    assert video_tag(b"") is None and video_tag(b"\x17") is None
    assert video_tag(b"\x57\x00") is None  # a command frame


def _encoded(encoder: str, options: dict[str, str]) -> tuple[bytes, bytes]:
    """(sequence header, keyframe) of a short clip PyAV encodes with ``encoder``, muxed by
    FFmpeg's FLV muxer (Enhanced RTMP FourCC headers for HEVC and AV1)."""
    out = io.BytesIO()
    with av.open(out, "w", format="flv") as muxer:
        stream = muxer.add_stream(encoder, rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = dict(options)
        with av.open("testsrc2=size=320x240:rate=25:duration=0.4", format="lavfi") as source:
            for frame in source.decode(video=0):
                frame.pts = None
                muxer.mux(stream.encode(frame))
        muxer.mux(stream.encode(None))
    messages = parse_flv(out.getvalue()).messages
    config = next(p for t, _, p in messages if t == VIDEO and classify_video(p) == VIDEO_CONFIG)
    keyframe = next(
        p for t, _, p in messages if t == VIDEO and classify_video(p) == VIDEO_KEYFRAME
    )
    return config, keyframe


@pytest.mark.parametrize(
    ("encoder", "codec", "fourcc", "options"),
    [
        ("libx265", "hevc", b"hvc1", {"x265-params": "log-level=none"}),
        ("libsvtav1", "av1", b"av01", {"preset": "12"}),
    ],
)
def test_hevc_and_av1_keyframes_make_jpegs(
    encoder: str, codec: str, fourcc: bytes, options: dict[str, str]
) -> None:
    if encoder not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {encoder} encoder to make {codec} with")
    config, keyframe = _encoded(encoder, options)
    assert config[0] & 0x80 and config[1:5] == fourcc  # an Enhanced RTMP header
    tag = video_tag(config)
    assert tag is not None and tag.codec == codec
    assert jpeg_size(make_jpeg(config, keyframe)) == (320, 240)


def test_codecs_without_a_decoder_are_415() -> None:
    vp9_config = bytes([0x90]) + b"vp09" + bytes.fromhex("0100000a0000")
    vp9_frame = bytes([0x91]) + b"vp09" + bytes(64)
    with pytest.raises(ThumbnailError) as caught:
        make_jpeg(vp9_config, vp9_frame)
    assert caught.value.status == 415
    assert "vp9" in caught.value.message and "h264" in caught.value.message


def test_mismatched_or_unparseable_input_is_422() -> None:
    config, keyframe = config_and_keyframe()
    cases = [
        (b"\x17\x00", keyframe),  # a truncated sequence header
        (keyframe, keyframe),  # a frame where the configuration belongs
        (config, config),  # a configuration where the frame belongs
        (config, b"\x17\x01\x00\x00\x00"),  # an empty keyframe
        (config, bytes([0x91]) + b"hvc1" + keyframe[2:]),  # another codec's frame
    ]
    for cfg, frame in cases:
        with pytest.raises(ThumbnailError) as caught:
            make_jpeg(cfg, frame)
        assert caught.value.status == 422, (cfg[:8], frame[:8])


def _outcome(config: bytes, keyframe: bytes) -> int:
    try:
        make_jpeg(config, keyframe)
    except ThumbnailError as exc:
        return exc.status
    return 200


# One thread, as the gateway's: a decode that never returned would show as a timeout.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fuzz")


def _bounded(config: bytes, keyframe: bytes) -> int:
    return _POOL.submit(_outcome, config, keyframe).result(timeout=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=4096), cut=st.integers(min_value=0, max_value=1 << 16))
def test_garbage_keyframes_give_clean_errors(data: bytes, cut: int) -> None:
    config, keyframe = config_and_keyframe()
    # Garbage after a real tag header, and a real keyframe cut short with garbage after.
    assert _bounded(config, b"\x17\x01\x00\x00\x00" + data) in (200, 422)
    assert _bounded(config, keyframe[: 5 + cut % (len(keyframe) - 5)] + data) in (200, 422)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512))
def test_garbage_configurations_give_clean_errors(data: bytes) -> None:
    _, keyframe = config_and_keyframe()
    assert _bounded(b"\x17\x00\x00\x00\x00" + data, keyframe) in (200, 422)
    assert _bounded(bytes([0x90]) + b"hvc1" + data, keyframe) in (415, 422)


def test_random_bit_flips_in_a_real_keyframe() -> None:
    config, keyframe = config_and_keyframe()
    rng = random.Random(7)
    for _ in range(40):
        damaged = bytearray(keyframe)
        for _ in range(rng.randrange(1, 64)):
            damaged[rng.randrange(9, len(damaged))] ^= 1 << rng.randrange(8)
        assert _bounded(config, bytes(damaged)) in (200, 422)


# ---------------------------------------------------------------- the cache


def _stream(loop: asyncio.AbstractEventLoop, messages: list[tuple[int, int, bytes]]) -> Stream:
    stream = Stream("live", "t", LoopClock(loop), FanoutSettings())
    for type_id, ts, payload in messages:
        stream.on_media(type_id, ts, payload)
    return stream


def test_one_decode_per_keyframe_shared_by_concurrent_requests() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config, keyframe = config_and_keyframe()
        stream = _stream(loop, [(VIDEO, 0, config), (VIDEO, 40, keyframe)])
        thumbs = Thumbnailer(loop, interval=0.0)
        try:
            threads: set[str] = set()
            real = thumbs._executor()
            real.submit(lambda: threads.add(threading.current_thread().name)).result()
            jpegs = await asyncio.gather(*(thumbs.jpeg(stream) for _ in range(10)))
            assert thumbs.made == 1
            assert all(j is jpegs[0] for j in jpegs)
            assert threads and all(name.startswith("thumbnail") for name in threads)
            # The same keyframe again: the cached JPEG, whatever the interval.
            assert await thumbs.jpeg(stream) is jpegs[0]
            assert thumbs.made == 1
            # A new keyframe (a new message, the same picture): decoded again.
            stream.on_media(VIDEO, 80, bytes(bytearray(keyframe)))
            assert await thumbs.jpeg(stream) is not jpegs[0]
            assert thumbs.made == 2
        finally:
            thumbs.close()

    asyncio.run(main())


def test_within_the_interval_the_cached_jpeg_is_served() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config, keyframe = config_and_keyframe()
        stream = _stream(loop, [(VIDEO, 0, config), (VIDEO, 40, keyframe)])
        thumbs = Thumbnailer(loop, interval=3600.0)
        try:
            first = await thumbs.jpeg(stream)
            stream.on_media(VIDEO, 80, bytes(bytearray(keyframe)))
            assert await thumbs.jpeg(stream) is first
            assert thumbs.made == 1
        finally:
            thumbs.close()

    asyncio.run(main())


def test_no_keyframe_yet_is_404_and_errors_are_cached() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config, keyframe = config_and_keyframe()
        thumbs = Thumbnailer(loop, interval=0.0)
        try:
            for messages in ([], [(VIDEO, 0, config)]):
                with pytest.raises(ThumbnailError) as caught:
                    await thumbs.jpeg(_stream(loop, messages))
                assert caught.value.status == 404
            garbage = _stream(loop, [(VIDEO, 0, config), (VIDEO, 40, b"\x17\x01\0\0\0" + bytes(9))])
            for _ in range(3):
                with pytest.raises(ThumbnailError) as caught:
                    await thumbs.jpeg(garbage)
                assert caught.value.status == 422
            assert thumbs.made == 1  # the same bad keyframe is not decoded again
            good = _stream(loop, [(VIDEO, 0, config), (VIDEO, 40, keyframe)])
            assert (await thumbs.jpeg(good))[:2] == b"\xff\xd8"
        finally:
            thumbs.close()

    asyncio.run(main())


def test_beyond_max_pending_the_older_jpeg_or_503() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config, keyframe = config_and_keyframe()
        feed = [(VIDEO, 0, config), (VIDEO, 40, keyframe)]
        one, two, three = (_stream(loop, feed) for _ in range(3))
        thumbs = Thumbnailer(loop, interval=0.0, max_pending=1)
        try:
            older = await thumbs.jpeg(two)
            two.on_media(VIDEO, 80, bytes(bytearray(keyframe)))  # a newer keyframe
            results = await asyncio.gather(
                thumbs.jpeg(one), thumbs.jpeg(two), thumbs.jpeg(three), return_exceptions=True
            )
            assert isinstance(results[0], bytes)  # the one decode allowed
            assert results[1] is older  # busy: the stream's previous JPEG
            assert isinstance(results[2], ThumbnailError) and results[2].status == 503
            assert thumbs.made == 2 and thumbs.pending == 0
        finally:
            thumbs.close()

    asyncio.run(main())


def test_a_request_that_goes_away_does_not_stop_the_decode() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        config, keyframe = config_and_keyframe()
        stream = _stream(loop, [(VIDEO, 0, config), (VIDEO, 40, keyframe)])
        thumbs = Thumbnailer(loop)
        try:
            first = asyncio.ensure_future(thumbs.jpeg(stream))
            second = asyncio.ensure_future(thumbs.jpeg(stream))
            await asyncio.sleep(0)
            first.cancel()
            assert (await second)[:2] == b"\xff\xd8"
            assert thumbs.made == 1 and thumbs.pending == 0
        finally:
            thumbs.close()

    asyncio.run(main())


# ---------------------------------------------------------------- the endpoint


def _publish(gw: ApiThread, name: str, messages: list[tuple[int, int, bytes]]) -> RtmpClient:
    srv = gw.srv
    opened: tuple[RtmpClient, int] = srv.run(open_publisher(srv.url(name)))
    pub, sid = opened

    def send() -> None:
        for type_id, ts, payload in messages:
            pub.send_media(sid, type_id, ts, payload)

    srv.call(send)
    return pub


def test_the_thumbnail_endpoint() -> None:
    token = "thumb-token"
    config, _ = config_and_keyframe()
    with ApiThread(http={"token": token}) as gw:
        pub = _publish(gw, "cam", list(clip().messages))
        wait_for(
            lambda: gw.get("/api/v1/streams/live/cam", token=token).json()[
                "last_keyframe_age_seconds"
            ]
            is not None,
            "the keyframe at the gateway",
        )
        path = "/api/v1/streams/live/cam/thumbnail.jpg"
        assert gw.get(path).status == 401
        reply = gw.get(path, token=token)
        assert reply.status == 200
        assert reply.headers["content-type"] == "image/jpeg"
        assert reply.headers["cache-control"] == "no-store"
        assert jpeg_size(reply.body) == (320, 180)
        assert gw.get(path, token=token).body == reply.body  # cached
        assert gw.api is not None and gw.api.api.thumbnails.made == 1
        # The stream itself is still there under its own path.
        assert gw.get("/api/v1/streams/live/cam", token=token).json()["name"] == "cam"

        missing = gw.get("/api/v1/streams/live/nope/thumbnail.jpg", token=token)
        assert missing.status == 404
        assert missing.json()["error"]["message"] == "no stream live/nope"

        # A stream named ".../thumbnail.jpg" stays reachable with its slash encoded.
        odd = _publish(gw, "x/thumbnail.jpg", [(VIDEO, 0, config)])
        wait_for(lambda: gw.srv.published("x/thumbnail.jpg"), "the odd name published")
        view = gw.get("/api/v1/streams/live/x%2Fthumbnail.jpg", token=token)
        assert view.status == 200 and view.json()["name"] == "x/thumbnail.jpg"
        no_keyframe = gw.get("/api/v1/streams/live/x%2Fthumbnail.jpg/thumbnail.jpg", token=token)
        assert no_keyframe.status == 404
        assert "no keyframe" in no_keyframe.json()["error"]["message"]

        bad = _publish(gw, "bad", [(VIDEO, 0, config), (VIDEO, 40, b"\x17\x01\0\0\0" + bytes(99))])
        wait_for(
            lambda: gw.get("/api/v1/streams/live/bad", token=token).json()[
                "last_keyframe_age_seconds"
            ]
            is not None,
            "the bad keyframe at the gateway",
        )
        broken = gw.get("/api/v1/streams/live/bad/thumbnail.jpg", token=token)
        assert broken.status == 422, broken
        assert "decode" in broken.json()["error"]["message"]
        # The decoding thread is fine: the good stream still gets its (cached) JPEG.
        assert gw.get(path, token=token).status == 200
        for client in (pub, odd, bad):
            gw.srv.call(client.close)
