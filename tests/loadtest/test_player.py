"""The player's counting mode: acknowledgements and the onStatus scanner."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streamgate.client import parse_rtmp_url
from streamgate.loadtest.player import (
    ACK_EVERY,
    SCAN_TAIL,
    Player,
    PlayerOptions,
    State,
    find_status_code,
)
from streamgate.rtmp import amf0
from streamgate.rtmp.chunk import ChunkDecoder, encode_message
from streamgate.rtmp.messages import MsgType, Status


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _status(code: str) -> bytes:
    body = amf0.encode("onStatus", 0.0, None, {"level": "status", "code": code, "description": "x"})
    return encode_message(5, 0, MsgType.COMMAND_AMF0, 1, body, 4096)


def _counting_player(buffer: bytearray, scan: str = "full") -> tuple[Player, FakeTransport]:
    ended: list[Player] = []
    player = Player(
        0,
        0,
        "rtmp://127.0.0.1:1/live/x",
        parse_rtmp_url("rtmp://127.0.0.1:1/live/x"),
        buffer,
        memoryview(buffer),
        PlayerOptions(status_scan=scan),
        ended.append,
    )
    transport = FakeTransport()
    player.transport = transport  # type: ignore[assignment]
    player.state = State.COUNTING
    player.conn = None
    player.next_ack = ACK_EVERY
    return player, transport


def _feed(player: Player, buffer: bytearray, data: bytes) -> None:
    buffer[: len(data)] = data
    player.buffer_updated(len(data))


def test_find_status_code() -> None:
    data = b"junk" + _status(Status.PLAY_UNPUBLISH_NOTIFY) + b"more"
    at = data.find(b"\x02\x00\x08onStatus")
    assert find_status_code(data, at) == Status.PLAY_UNPUBLISH_NOTIFY
    assert find_status_code(data[: at + 40], at) is None  # body cut short


@pytest.mark.parametrize("step", [1, 7, 11, 64, 333, 4096])
def test_status_found_whatever_the_read_boundaries(step: int) -> None:
    media = bytes(range(256)) * 40
    stream = media + _status(Status.PLAY_UNPUBLISH_NOTIFY) + media
    for offset in range(min(step, 50)):
        buffer = bytearray(8192)
        player, _ = _counting_player(buffer)
        pieces = [stream[:offset]] if offset else []
        pieces += [stream[i : i + step] for i in range(offset, len(stream), step)]
        for piece in pieces:
            _feed(player, buffer, piece)
        assert player.last_status == Status.PLAY_UNPUBLISH_NOTIFY, (step, offset)
        assert player.nbytes == len(stream)


@pytest.mark.parametrize("scan", ["tail", "full"])
def test_status_before_the_server_goes_quiet_is_found_in_either_mode(scan: str) -> None:
    buffer = bytearray(256 * 1024)
    player, _ = _counting_player(buffer, scan)
    _feed(player, buffer, bytes(100_000) + _status(Status.PLAY_UNPUBLISH_NOTIFY) + bytes(20))
    assert player.last_status == Status.PLAY_UNPUBLISH_NOTIFY


def test_tail_mode_skips_statuses_followed_by_more_media() -> None:
    buffer = bytearray(256 * 1024)
    mid = bytes(1000) + _status(Status.PLAY_RESET) + bytes(SCAN_TAIL + 100)
    tail, _ = _counting_player(buffer, "tail")
    _feed(tail, buffer, mid)
    assert tail.last_status == ""
    full, _ = _counting_player(buffer, "full")
    _feed(full, buffer, mid)
    assert full.last_status == Status.PLAY_RESET
    off, _ = _counting_player(buffer, "off")
    _feed(off, buffer, bytes(10) + _status(Status.PLAY_RESET))
    assert off.last_status == ""


def test_counting_mode_acknowledges_every_window() -> None:
    buffer = bytearray(256 * 1024)
    player, transport = _counting_player(buffer)
    player.nbytes = 3073  # the handshake
    player.next_ack = 3073 + ACK_EVERY
    chunk = bytes(200_000)
    for _ in range(11):  # 2.2 MB: two acks
        _feed(player, buffer, chunk)
    decoder = ChunkDecoder()
    acks = [m for w in transport.written for m in decoder.receive_data(w)]
    assert [m.type_id for m in acks] == [MsgType.ACKNOWLEDGEMENT] * 2
    values = [int.from_bytes(m.payload, "big") for m in acks]
    assert values == [1_000_000, 2_000_000]  # bytes after the handshake, at each crossing


def test_refusal_counts_as_server_close() -> None:
    ended: list[Player] = []
    buffer = bytearray(1024)
    player = Player(
        3,
        0,
        "u",
        parse_rtmp_url("rtmp://127.0.0.1:1/live/x"),
        buffer,
        memoryview(buffer),
        PlayerOptions(),
        ended.append,
    )
    transport = FakeTransport()
    player.transport = transport  # type: ignore[assignment]
    player.state = State.COMMANDS
    player.last_rx = time.monotonic()
    player.refused("NetStream.Play.StreamNotFound: gone")
    assert transport.closed
    assert player.state is State.FAILED
    assert player.closed_by_server
    assert player.ended == player.last_rx
    player.connection_lost(None)  # our close completing
    assert ended == [player]
    record = player.record()
    assert record[0] == 3
    assert record[-2] == "NetStream.Play.StreamNotFound: gone"
