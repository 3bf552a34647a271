"""receiveVideo / receiveAudio from a player, on a real FFmpeg stream through
streamgate as origin and as edge. (nginx-rtmp 1.2 ignores both commands: its
players keep getting everything; FMS and Flash-era players expect them to work.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from streamgate.client import RtmpClient
from streamgate.rtmp.events import MediaReceived
from streamgate.rtmp.flv import (
    AUDIO_CONFIG,
    VIDEO_CONFIG,
    VIDEO_KEYFRAME,
    classify_audio,
    classify_video,
)
from streamgate.rtmp.messages import MsgType
from tests.peers import need, publisher, wait_until
from tests.server.harness import ServerThread

pytestmark = pytest.mark.interop

V, A = MsgType.VIDEO, MsgType.AUDIO


@pytest.fixture
def url(gateway: tuple[ServerThread, ServerThread]) -> Iterator[tuple[ServerThread, str]]:
    """Where a player finds live/x (ffmpeg: H.264 + AAC, a keyframe a second)."""
    need("ffmpeg")
    origin, srv = gateway
    with publisher(origin.url("x")):
        wait_until(lambda: origin.published("x"), timeout=15, what="ffmpeg to publish")
        yield srv, srv.url("x")


async def media(client: RtmpClient, count: int) -> list[MediaReceived]:
    out: list[MediaReceived] = []
    async with asyncio.timeout(20):
        while len(out) < count:
            event = await client.next_event()
            if isinstance(event, MediaReceived):
                out.append(event)
    return out


async def until_a_run_of_audio(client: RtmpClient, run: int) -> None:
    """Skip what was in flight when the player turned video off."""
    seen = 0
    async with asyncio.timeout(20):
        while seen < run:
            event = await client.next_event()
            if isinstance(event, MediaReceived):
                seen = seen + 1 if event.type_id == A else 0


def receive(client: RtmpClient, sid: int, kind: str, on: bool) -> None:
    client.conn.send_command(sid, kind, 0.0, None, on)
    client._flush()


def test_video_off_then_on(url: tuple[ServerThread, str]) -> None:
    srv, where = url

    async def scenario() -> tuple[list[MediaReceived], list[MediaReceived], list[MediaReceived]]:
        client = await RtmpClient.open(where)
        try:
            sid = await client.play()
            before = await media(client, 60)
            receive(client, sid, "receiveVideo", False)
            await until_a_run_of_audio(client, 20)  # 25 fps video never leaves such a gap
            off = await media(client, 80)  # about two seconds of AAC
            receive(client, sid, "receiveVideo", True)
            on = await media(client, 150)
            return before, off, on
        finally:
            client.close()

    before, off, on = srv.run(scenario(), timeout=60)
    assert {m.type_id for m in before} == {V, A}
    assert {m.type_id for m in off} == {A}, "video kept coming after receiveVideo(false)"
    stamps = [m.timestamp for m in off]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 1500  # audio ran on
    video = [m for m in on if m.type_id == V]
    assert video, "no video after receiveVideo(true)"
    # Video resumes at a keyframe, its sequence header first: a decoder starts clean.
    assert classify_video(video[0].payload) == VIDEO_CONFIG
    assert classify_video(video[1].payload) == VIDEO_KEYFRAME
    audio_stamps = [m.timestamp for m in on if m.type_id == A]
    assert audio_stamps == sorted(audio_stamps)


def test_audio_off_then_on(url: tuple[ServerThread, str]) -> None:
    srv, where = url

    async def scenario() -> tuple[list[MediaReceived], list[MediaReceived]]:
        client = await RtmpClient.open(where)
        try:
            sid = await client.play()
            await media(client, 30)
            receive(client, sid, "receiveAudio", False)
            moved = await media(client, 100)
            receive(client, sid, "receiveAudio", True)
            return moved, await media(client, 100)
        finally:
            client.close()

    moved, on = srv.run(scenario(), timeout=60)
    tail = moved[-50:]  # two seconds of video, after what was in flight
    assert {m.type_id for m in tail} == {V}, "audio kept coming after receiveAudio(false)"
    audio = [m for m in on if m.type_id == A]
    assert audio and classify_audio(audio[0].payload) == AUDIO_CONFIG
    assert len(audio) > 20
