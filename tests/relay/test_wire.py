"""What a player decodes when its connection and a stream share one wire.

A player's socket carries two writers: its own connection core (status
messages, ``|RtmpSampleAccess``, protocol control) and the stream's shared
encodings (media and metadata). These tests put both on one in-memory wire,
in the order the session writes them, and decode it with a real client
core: the chunk size the player was told, and each chunk stream's header
state, must agree between the writers.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamgate.relay.clock import FakeClock
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp import amf0
from streamgate.rtmp.connection import ConnectionLimits
from streamgate.rtmp.events import DataReceived, MediaReceived, PlayRequested
from streamgate.rtmp.messages import MsgType
from tests.relay.sinks import AAC_CONFIG, AVC_CONFIG
from tests.rtmp.pair import ConnectionPair, events_of

V, A = MsgType.VIDEO, MsgType.AUDIO


class WirePlayer:
    """A PlayerSink whose writes go onto the pair's server-to-client wire."""

    def __init__(self, pair: ConnectionPair) -> None:
        self.pair = pair
        self.events: list[object] = []

    def write(self, data: bytes) -> None:
        self.flush_connection()  # the session flushes its core before media
        self.events.extend(self.pair.deliver_to_client(bytes(data)))

    def flush_connection(self) -> None:
        out = self.pair.server.data_to_send()
        if out:
            self.events.extend(self.pair.deliver_to_client(out))

    def stream_ended(self, code: str, description: str) -> None:
        pass

    def drop(self, reason: str) -> None:
        raise AssertionError(f"dropped: {reason}")


def _key(size: int, tag: int) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes([tag]) * size


def _media(events: Sequence[object]) -> list[tuple[int, bytes]]:
    return [(e.type_id, e.payload) for e in events if isinstance(e, MediaReceived)]


def _stream(chunk_size: int) -> tuple[FakeClock, Stream]:
    clock = FakeClock()
    return clock, Stream("live", "x", clock, FanoutSettings(chunk_size=chunk_size, merge_ms=0))


def _playing(pair: ConnectionPair, stream: Stream, sink: WirePlayer) -> int:
    sid = pair.playing("x")
    sink.flush_connection()
    stream.add_player(sink, sid, chunk_size=pair.server.chunk_size)
    return sid


def test_player_gets_chunks_of_the_size_it_was_told_whatever_the_stream_was_made_with() -> None:
    # A reload changed [rtmp] chunk_size between the stream's creation (60000)
    # and the player's connect (told 4096), and the other way round.
    for told, made_with in ((4096, 60000), (60000, 4096)):
        pair = ConnectionPair(server_limits=ConnectionLimits(chunk_size=told))
        _, stream = _stream(made_with)
        stream.on_media(V, 0, AVC_CONFIG)
        stream.on_media(A, 0, AAC_CONFIG)
        first = _key(20_000, 1)
        stream.on_media(V, 0, first)  # in the GOP cache: the player's start bytes
        sink = WirePlayer(pair)
        _playing(pair, stream, sink)
        live = _key(30_000, 2)
        stream.on_media(V, 40, live)  # live fan-out
        assert pair.client.peer_chunk_size == told
        assert _media(sink.events) == [(V, AVC_CONFIG), (A, AAC_CONFIG), (V, first), (V, live)]


def test_players_told_different_chunk_sizes_each_decode_the_same_stream() -> None:
    _, stream = _stream(4096)
    sinks = []
    for told in (4096, 60000, 128):
        pair = ConnectionPair(server_limits=ConnectionLimits(chunk_size=told))
        sink = WirePlayer(pair)
        _playing(pair, stream, sink)
        sinks.append(sink)
    frames = [_key(9000, n) for n in range(3)]
    for n, frame in enumerate(frames):
        stream.on_media(V, 40 * n, frame)
    for sink in sinks:
        assert _media(sink.events) == [(V, f) for f in frames]


def test_play_again_after_close_stream_keeps_the_data_chunk_stream_in_step() -> None:
    # The connection's |RtmpSampleAccess and the stream's onMetaData are both
    # data messages; a second play on the same stream id must not be decoded
    # against the header the other writer left.
    pair = ConnectionPair()
    _, stream = _stream(4096)
    values = ("onMetaData", {"width": 320.0, "height": 240.0, "encoder": "x" * 300})
    stream.on_metadata(0, values, amf0.encode(*values))
    sink = WirePlayer(pair)
    sid = _playing(pair, stream, sink)
    stream.on_media(V, 0, _key(100, 1))
    stream.remove_player(next(iter(next(iter(stream.groups.values())).live)))

    # As a player does on the wire (the client core keeps no closeStream of its own).
    pair.client.send_command(sid, "closeStream", 0.0, None)
    pair.pump()
    pair.client.send_command(sid, "play", 0.0, None, "x")
    server_events, _ = pair.pump()
    assert events_of(server_events, PlayRequested)
    pair.server.accept_play(sid, "x")
    sink.flush_connection()
    stream.add_player(sink, sid, chunk_size=pair.server.chunk_size)
    stream.on_media(V, 40, _key(100, 2))

    data = [e.values for e in pair.client_events if isinstance(e, DataReceived)]
    assert data == [
        ("|RtmpSampleAccess", True, True),
        values,
        ("|RtmpSampleAccess", True, True),
        values,
    ]
    # the second play starts from the GOP cache, as any new player does
    assert _media(pair.client_events) == [(V, _key(100, 1)), (V, _key(100, 1)), (V, _key(100, 2))]
