"""Tests for streamgate.rtmp.chunk: framing round trips, limits, hostile input, pyrtmp oracle.

pyrtmp's chunk reader (``SessionManager.read_raw_chunk``) is an independent
implementation fed here through an ``asyncio.StreamReader``. Its known
limitations, checked by reading pyrtmp/session_manager.py, keep some valid
streams out of the oracle tests:

* On a type-3 chunk it reads the 4-byte extended timestamp only when the
  timestamp it carries over is exactly 0xFFFFFF, so a message with a
  timestamp above 0xFFFFFF that spans several chunks is misread (the spec,
  FFmpeg and nginx-rtmp repeat the extended timestamp on every continuation).
* On type-1/2 headers it tests the *sum* of the previous timestamp and the
  delta against 0xFFFFFF, so extended deltas are misread.
* A type-3 header that starts a new message reuses the previous timestamp
  instead of adding the previous delta, so only zero-delta type-3 messages
  keep their timestamps.
"""

from __future__ import annotations

import asyncio
import random
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyrtmp import StreamClosedException
from pyrtmp.session_manager import SessionManager

from streamgate.errors import RemoteProtocolError
from streamgate.rtmp.chunk import (
    DEFAULT_CHUNK_SIZE,
    ChunkDecoder,
    ChunkEncoder,
    ChunkLimits,
    Message,
    encode_message,
)

PROPERTIES = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EXT = 0xFFFFFF
AUDIO, VIDEO, DATA, COMMAND = 8, 9, 18, 20


def payload_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def set_chunk_size(size: int, csid: int = 2) -> bytes:
    """A Set Chunk Size message, itself sent at the default chunk size."""
    return encode_message(csid, 0, 1, 0, struct.pack(">I", size), DEFAULT_CHUNK_SIZE)


def abort(csid_to_abort: int) -> bytes:
    return encode_message(2, 0, 2, 0, struct.pack(">I", csid_to_abort), DEFAULT_CHUNK_SIZE)


def with_chunk_size(chunk_size: int, body: bytes) -> bytes:
    prefix = b"" if chunk_size == DEFAULT_CHUNK_SIZE else set_chunk_size(chunk_size)
    return prefix + body


# Round trips cover chunk sizes below the default floor of 128 (any size is
# legal on the wire); the default refusal has its own test.
ANY_CHUNK_SIZE = ChunkLimits(min_chunk_size=1)


def decode(data: bytes, limits: ChunkLimits | None = None) -> list[Message]:
    return ChunkDecoder(limits or ANY_CHUNK_SIZE).receive_data(data)


def decode_in_pieces(data: bytes, sizes: Iterator[int]) -> list[Message]:
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    out: list[Message] = []
    pos = 0
    while pos < len(data):
        size = next(sizes)
        out.extend(decoder.receive_data(data[pos : pos + size]))
        pos += size
    assert decoder.buffered == 0
    return out


def byte_by_byte(data: bytes) -> list[Message]:
    return decode_in_pieces(data, iter(lambda: 1, 0))


def random_pieces(data: bytes, seed: int, largest: int = 300) -> list[Message]:
    rng = random.Random(seed)
    return decode_in_pieces(data, iter(lambda: rng.randint(1, largest), 0))


def without_control(messages: list[Message]) -> list[Message]:
    return [m for m in messages if not (m.type_id in (1, 2) and m.stream_id == 0)]


# ---------------------------------------------------------------- wire format


def test_encode_message_writes_the_spec_layout_with_extended_timestamps_on_continuations() -> None:
    payload = bytes(range(10))
    data = encode_message(3, 0x01020304, VIDEO, 1, payload, 4)
    ext = b"\x01\x02\x03\x04"
    assert data == (
        b"\x03" + b"\xff\xff\xff" + b"\x00\x00\x0a" + b"\x09" + b"\x01\x00\x00\x00" + ext
        + payload[0:4]
        + b"\xc3" + ext + payload[4:8]
        + b"\xc3" + ext + payload[8:10]
    )  # fmt: skip


def test_encode_message_without_extended_timestamp_has_bare_continuations() -> None:
    payload = bytes(range(6))
    data = encode_message(4, 0x000102, AUDIO, 0x01020304, payload, 3)
    assert data == (
        b"\x04" + b"\x00\x01\x02" + b"\x00\x00\x06" + b"\x08" + b"\x04\x03\x02\x01"
        + payload[:3] + b"\xc4" + payload[3:]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("csid", "basic"),
    [
        (2, b"\x02"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        (65599, b"\x01\xff\xff"),
    ],
)
def test_basic_header_forms_round_trip(csid: int, basic: bytes) -> None:
    payload = payload_of(300, csid)
    data = encode_message(csid, 7, COMMAND, 0, payload, 128)
    assert data.startswith(basic)
    # Continuations repeat the same basic header form with fmt 3.
    continuation = bytes([0xC0 | basic[0]]) + basic[1:]
    assert data[len(basic) + 11 + 128 :].startswith(continuation)
    assert decode(data) == [Message(COMMAND, 0, 7, payload, csid)]


@pytest.mark.parametrize("csid", [0, 1, 65600])
def test_unencodable_chunk_stream_ids_are_refused_locally(csid: int) -> None:
    with pytest.raises(ValueError, match="chunk stream id"):
        encode_message(csid, 0, AUDIO, 0, b"x", 128)


# ---------------------------------------------------------------- round trips

CHUNK_SIZES = [1, 2, 127, 128, 129, 4096, 65536, 70000]
MESSAGE_SIZES = [0, 1, 127, 128, 129, 4097, 70000, 200000]
TIMESTAMPS = [0, 1, 0xFFFFFE, EXT, EXT + 1, 0xFFFFFFFF]


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("size", MESSAGE_SIZES)
def test_encode_message_round_trips(chunk_size: int, size: int) -> None:
    if size // chunk_size > 5000:
        size = chunk_size * 5000 + 1  # keep 1-byte chunks affordable
    timestamp = TIMESTAMPS[(chunk_size + size) % len(TIMESTAMPS)]
    payload = payload_of(size, size)
    data = with_chunk_size(chunk_size, encode_message(6, timestamp, VIDEO, 1, payload, chunk_size))
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    messages = without_control(decoder.receive_data(data))
    assert messages == [Message(VIDEO, 1, timestamp, payload, 6)]
    assert decoder.buffered == 0
    assert decoder.chunk_size == chunk_size


@pytest.mark.parametrize("timestamp", TIMESTAMPS)
@pytest.mark.parametrize("chunk_size", [1, 50, 128])
def test_timestamps_around_the_extended_threshold_survive_many_chunks(
    timestamp: int, chunk_size: int
) -> None:
    payload = payload_of(700, timestamp & 0xFF)
    data = with_chunk_size(chunk_size, encode_message(4, timestamp, AUDIO, 3, payload, chunk_size))
    assert without_control(decode(data)) == [Message(AUDIO, 3, timestamp, payload, 4)]
    assert without_control(byte_by_byte(data)) == [Message(AUDIO, 3, timestamp, payload, 4)]


def test_timestamps_wrap_into_32_bits() -> None:
    data = encode_message(4, 2**32 + 5, AUDIO, 0, b"a", 128)
    assert decode(data) == [Message(AUDIO, 0, 5, b"a", 4)]


@pytest.mark.parametrize("stream_id", [0, 1, 255, 256, 0x01020304, 0xFFFFFFFF])
def test_message_stream_ids_are_little_endian_and_kept(stream_id: int) -> None:
    data = encode_message(8, 0, DATA, stream_id, b"meta", 128)
    assert data[8:12] == struct.pack("<I", stream_id)
    assert decode(data) == [Message(DATA, stream_id, 0, b"meta", 8)]


def test_continuations_without_the_repeated_extended_timestamp_are_accepted() -> None:
    # Some encoders do not repeat the extended timestamp on continuation chunks.
    payload = payload_of(300, 9)
    spec = encode_message(6, 0x1000000, VIDEO, 1, payload, 128)
    ext = struct.pack(">I", 0x1000000)
    assert spec.count(b"\xc6" + ext) == 2
    data = spec.replace(b"\xc6" + ext, b"\xc6")
    assert payload[128:132] != ext and payload[256:260] != ext
    assert decode(data) == [Message(VIDEO, 1, 0x1000000, payload, 6)]


def test_interleaved_chunk_streams_reassemble() -> None:
    # Two messages cut into chunks and interleaved chunk by chunk.
    a = encode_message(6, 10, AUDIO, 1, payload_of(300, 1), 100)
    v = encode_message(7, 20, VIDEO, 1, payload_of(250, 2), 100)
    a_chunks = [a[: 12 + 100], a[112 : 113 + 100], a[213:]]
    v_chunks = [v[: 12 + 100], v[112 : 113 + 100], v[213:]]
    data = with_chunk_size(100, b"".join(x + y for x, y in zip(a_chunks, v_chunks, strict=True)))
    assert without_control(decode(data)) == [
        Message(AUDIO, 1, 10, payload_of(300, 1), 6),
        Message(VIDEO, 1, 20, payload_of(250, 2), 7),
    ]


# ---------------------------------------------------------------- header compression


def _encode_all(
    encoder: ChunkEncoder, specs: list[tuple[int, int, int, int, bytes]]
) -> tuple[bytes, list[int]]:
    """Encode (csid, timestamp, type, stream id, payload); returns bytes and header types."""
    parts, fmts = [], []
    for csid, timestamp, type_id, stream_id, payload in specs:
        data = encoder.encode(csid, timestamp, type_id, stream_id, payload)
        fmts.append(data[0] >> 6)
        parts.append(data)
    return b"".join(parts), fmts


def test_chunk_encoder_picks_header_types_0_to_3() -> None:
    p10, p20 = payload_of(10, 1), payload_of(20, 2)
    specs = [
        (3, 0, COMMAND, 0, p10),  # first on the chunk stream: type 0
        (3, 0, COMMAND, 0, p20),  # length changed: type 1
        (3, 10, COMMAND, 0, p20),  # same length and type, new delta: type 2
        (3, 20, COMMAND, 0, p20),  # same delta: type 3
        (3, 30, COMMAND, 0, p20),  # type 3 again
        (3, 30, DATA, 0, p20),  # type changed: type 1
        (3, 25, DATA, 0, p20),  # time went backwards: type 0
        (3, 26, DATA, 1, p20),  # other message stream: type 0
        (5, 0, DATA, 1, p10),  # another chunk stream starts with type 0
    ]
    data, fmts = _encode_all(ChunkEncoder(), specs)
    assert fmts == [0, 1, 2, 3, 3, 1, 0, 0, 0]
    assert decode(data) == [Message(t, s, ts, p, c) for c, ts, t, s, p in specs]


def test_chunk_encoder_extended_deltas_on_compressed_and_continuation_headers() -> None:
    encoder = ChunkEncoder()
    encoder.chunk_size = 64
    big = payload_of(300, 3)
    specs = [
        (6, 5, AUDIO, 1, big),
        (6, 5 + 0x1000000, AUDIO, 1, big),  # type 2, extended delta
        (6, 5 + 0x2000000, AUDIO, 1, big),  # type 3 new message, extended delta
        (6, 5 + 0x2000000 + EXT, AUDIO, 1, big),  # delta of exactly 0xFFFFFF
        (6, 0xFFFFFFFF, AUDIO, 1, payload_of(301, 4)),  # type 1, extended delta
    ]
    data, fmts = _encode_all(encoder, specs)
    assert fmts == [0, 2, 3, 2, 1]
    expected = [Message(t, s, ts, p, c) for c, ts, t, s, p in specs]
    stream = set_chunk_size(64) + data
    assert without_control(decode(stream)) == expected
    assert without_control(byte_by_byte(stream)) == expected


def test_chunk_encoder_many_messages_on_several_chunk_streams() -> None:
    rng = random.Random(7)
    encoder = ChunkEncoder()
    encoder.chunk_size = 100
    clocks = {3: 0, 5: 0, 6: 0, 7: 0, 70: 0, 400: 0}
    specs: list[tuple[int, int, int, int, bytes]] = []
    for _ in range(400):
        csid = rng.choice(list(clocks))
        clocks[csid] += rng.choice([0, 0, 23, 23, 40, EXT, 0x1000000])
        size = rng.choice([0, 5, 100, 101, 260, 260])
        specs.append(
            (csid, clocks[csid], rng.choice([AUDIO, VIDEO]), csid % 2, payload_of(size, len(specs)))
        )
    data, fmts = _encode_all(encoder, specs)
    assert set(fmts) == {0, 1, 2, 3}
    stream = set_chunk_size(100) + data
    expected = [Message(t, s, ts & 0xFFFFFFFF, p, c) for c, ts, t, s, p in specs]
    assert without_control(decode(stream)) == expected
    assert without_control(random_pieces(stream, seed=1)) == expected


# ---------------------------------------------------------------- control messages


def test_set_chunk_size_applies_from_the_next_chunk() -> None:
    payload = payload_of(5000)
    data = set_chunk_size(4096) + encode_message(6, 0, VIDEO, 1, payload, 4096)
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    messages = decoder.receive_data(data)
    assert messages[0] == Message(1, 0, 0, struct.pack(">I", 4096), 2)  # still reported
    assert messages[1:] == [Message(VIDEO, 1, 0, payload, 6)]
    assert decoder.chunk_size == 4096


def test_set_chunk_size_mid_message_applies_to_the_rest_of_it() -> None:
    # A 300-byte message: first chunk at 128, then the size changes to 50.
    payload = payload_of(300)
    head = encode_message(6, 0, VIDEO, 1, payload, 128)[: 12 + 128]
    rest = payload[128:]
    tail = b"".join(b"\xc6" + rest[i : i + 50] for i in range(0, len(rest), 50))
    data = head + set_chunk_size(50) + tail
    assert without_control(decode(data)) == [Message(VIDEO, 1, 0, payload, 6)]


def test_huge_chunk_size_allocates_nothing_large() -> None:
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    tracemalloc.start()
    try:
        messages = decoder.receive_data(set_chunk_size(0x7FFFFFFF))
        small = decoder.receive_data(encode_message(6, 1, AUDIO, 1, b"tiny", 0x7FFFFFFF))
        # Half of a 1000-byte message: only what arrived is held.
        half = decoder.receive_data(encode_message(7, 2, VIDEO, 1, bytes(1000), 0x7FFFFFFF)[:512])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoder.chunk_size == 0x7FFFFFFF
    assert len(messages) == 1
    assert small == [Message(AUDIO, 1, 1, b"tiny", 6)]
    assert half == []
    assert decoder.buffered == 512
    assert peak < 256 * 1024


def test_huge_chunk_size_still_reassembles_a_large_message() -> None:
    payload = payload_of(300_000)
    data = set_chunk_size(0x7FFFFFFF) + encode_message(6, 0, VIDEO, 1, payload, 0x7FFFFFFF)
    assert without_control(random_pieces(data, seed=3, largest=20000)) == [
        Message(VIDEO, 1, 0, payload, 6)
    ]


def test_abort_discards_a_partial_message() -> None:
    first = encode_message(6, 0, VIDEO, 1, payload_of(300, 1), 128)
    replacement = payload_of(200, 2)
    data = first[: 12 + 128] + abort(6) + encode_message(6, 40, VIDEO, 1, replacement, 128)
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    messages = decoder.receive_data(data)
    assert messages == [
        Message(2, 0, 0, struct.pack(">I", 6), 2),
        Message(VIDEO, 1, 40, replacement, 6),
    ]
    assert decoder.buffered == 0


def test_abort_of_an_idle_or_unknown_chunk_stream_is_harmless() -> None:
    data = abort(6) + abort(4000) + encode_message(6, 0, AUDIO, 1, b"ok", 128)
    assert without_control(decode(data)) == [Message(AUDIO, 1, 0, b"ok", 6)]


def test_set_chunk_size_on_a_media_stream_id_is_not_applied() -> None:
    # Only protocol control on message stream 0 changes the chunk size.
    odd = encode_message(2, 0, 1, 1, struct.pack(">I", 10), 128)
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    decoder.receive_data(odd)
    assert decoder.chunk_size == DEFAULT_CHUNK_SIZE


# ---------------------------------------------------------------- hostile input


def test_message_longer_than_the_limit_is_refused_from_its_header() -> None:
    header = encode_message(6, 0, VIDEO, 1, b"", 128)[:12]
    over = header[:4] + (8 << 20 | 1).to_bytes(3, "big") + header[7:]
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        ChunkDecoder().receive_data(over)


def test_message_size_limit_is_exact() -> None:
    limits = ChunkLimits(max_message_size=100)
    assert decode(encode_message(6, 0, AUDIO, 1, bytes(100), 128), limits)
    with pytest.raises(RemoteProtocolError):
        decode(encode_message(6, 0, AUDIO, 1, bytes(101), 128), limits)


def test_type_1_header_cannot_raise_the_length_past_the_limit() -> None:
    limits = ChunkLimits(max_message_size=100)
    decoder = ChunkDecoder(limits)
    decoder.receive_data(encode_message(6, 0, AUDIO, 1, bytes(10), 128))
    with pytest.raises(RemoteProtocolError):
        decoder.receive_data(b"\x46" + b"\x00\x00\x01" + b"\x00\x00\x65" + b"\x08")


def test_too_many_chunk_streams_are_refused() -> None:
    decoder = ChunkDecoder(ChunkLimits(max_chunk_streams=4))
    for csid in (3, 4, 5, 6):
        decoder.receive_data(encode_message(csid, 0, AUDIO, 1, b"x", 128))
    decoder.receive_data(encode_message(3, 1, AUDIO, 1, b"y", 128))  # reuse is fine
    with pytest.raises(RemoteProtocolError, match="chunk streams"):
        decoder.receive_data(encode_message(7, 0, AUDIO, 1, b"z", 128))


def test_default_chunk_stream_limit_holds() -> None:
    limit = ChunkLimits().max_chunk_streams
    data = b"".join(encode_message(csid, 0, AUDIO, 1, b"x", 128) for csid in range(2, 2 + limit))
    assert len(decode(data)) == limit
    with pytest.raises(RemoteProtocolError):
        decode(data + encode_message(2 + limit, 0, AUDIO, 1, b"x", 128))


@pytest.mark.parametrize("fmt", [2, 3])
def test_compressed_header_on_a_new_chunk_stream_is_refused(fmt: int) -> None:
    with pytest.raises(RemoteProtocolError, match="before any full header"):
        ChunkDecoder().receive_data(bytes([fmt << 6 | 5]) + b"\x00\x00\x00" + b"x" * 16)


@pytest.mark.parametrize("fmt", [0, 1, 2])
def test_new_message_header_inside_an_unfinished_message_is_refused(fmt: int) -> None:
    decoder = ChunkDecoder(ANY_CHUNK_SIZE)
    decoder.receive_data(encode_message(6, 0, VIDEO, 1, bytes(300), 128)[: 12 + 128])
    header = encode_message(6, 0, VIDEO, 1, bytes(300), 128)[:12]
    header = bytes([fmt << 6 | 6]) + header[1 : 1 + (11, 7, 3)[fmt]]
    with pytest.raises(RemoteProtocolError, match="unfinished"):
        decoder.receive_data(header + bytes(128))


@pytest.mark.parametrize("size", [1, 64, 127])
def test_chunk_sizes_below_128_are_refused_by_default(size: int) -> None:
    """One byte per chunk would cost ~40 bytes of memory and 2 us of CPU per byte."""
    with pytest.raises(RemoteProtocolError, match="at least 128"):
        ChunkDecoder().receive_data(set_chunk_size(size))
    decoder = ChunkDecoder()
    decoder.receive_data(set_chunk_size(128))
    assert decoder.chunk_size == 128


def test_unfinished_messages_are_bounded_per_connection() -> None:
    limits = ChunkLimits(max_message_size=1000, max_partial_bytes=2500)
    decoder = ChunkDecoder(limits)
    partial = b"".join(
        bytes([csid]) + b"\x00\x00\x00" + (1000).to_bytes(3, "big") + b"\x09" + bytes(4)
        + bytes(128)
        for csid in range(3, 60)
    )
    with pytest.raises(RemoteProtocolError, match="unfinished messages"):
        decoder.receive_data(partial)


@pytest.mark.parametrize("size", [0, 0x80000000, 0xFFFFFFFF])
def test_invalid_chunk_sizes_are_refused(size: int) -> None:
    with pytest.raises(RemoteProtocolError, match="chunk size"):
        ChunkDecoder().receive_data(set_chunk_size(size))


@pytest.mark.parametrize("type_id", [1, 2])
def test_short_control_messages_are_refused(type_id: int) -> None:
    with pytest.raises(RemoteProtocolError, match="shorter"):
        ChunkDecoder().receive_data(encode_message(2, 0, type_id, 0, b"\x00\x01", 128))


def test_a_header_split_across_reads_counts_its_chunk_stream_once() -> None:
    decoder = ChunkDecoder(ChunkLimits(max_chunk_streams=1))
    data = encode_message(6, 0, AUDIO, 1, b"abc", 128)
    assert decoder.receive_data(data[:5]) == []
    assert decoder.receive_data(data[5:]) == [Message(AUDIO, 1, 0, b"abc", 6)]


# ---------------------------------------------------------------- properties


@PROPERTIES
@given(
    st.binary(max_size=600),
    st.sampled_from([ChunkLimits(), ChunkLimits(max_message_size=64, max_chunk_streams=2)]),
)
def test_arbitrary_bytes_give_messages_or_protocol_error(data: bytes, limits: ChunkLimits) -> None:
    decoder = ChunkDecoder(limits)
    try:
        messages = decoder.receive_data(data)
    except RemoteProtocolError:
        return
    assert all(isinstance(m, Message) for m in messages)
    assert all(len(m.payload) <= limits.max_message_size for m in messages)


_chunkish = st.one_of(
    st.integers(0, 255).map(lambda b: bytes([b])),
    st.sampled_from([b"\x02", b"\x03", b"\x43", b"\x83", b"\xc3", b"\xff\xff\xff", b"\x01"]),
    st.binary(min_size=1, max_size=12),
)


@PROPERTIES
@given(st.lists(_chunkish, max_size=80), st.integers(0, 2**32 - 1))
def test_header_shaped_garbage_gives_messages_or_protocol_error(
    parts: list[bytes], seed: int
) -> None:
    # Byte soup biased toward header bytes reaches deeper than uniform noise.
    data = b"".join(parts)
    decoder = ChunkDecoder(ChunkLimits(max_message_size=4096, max_chunk_streams=8))
    rng = random.Random(seed)
    pos = 0
    try:
        while pos < len(data):
            size = rng.randint(1, 40)
            decoder.receive_data(data[pos : pos + size])
            pos += size
    except RemoteProtocolError:
        pass


_CSIDS = [2, 3, 5, 63, 64, 319, 320, 65599]
_DELTAS = [0, 0, 1, 33, 1000, EXT - 1, EXT, 0x1000000]


@st.composite
def message_lists(draw: Callable[..., Any]) -> tuple[int, list[tuple[int, int, int, int, bytes]]]:
    """A chunk size and (csid, timestamp, type, stream id, payload) tuples."""
    chunk_size = draw(
        st.one_of(st.sampled_from([1, 2, 127, 128, 129, 70000]), st.integers(1, 70000))
    )
    clocks: dict[int, int] = {}
    specs = []
    for _ in range(draw(st.integers(0, 12))):
        csid = draw(st.sampled_from(_CSIDS))
        if draw(st.integers(0, 9)) == 0:
            clocks[csid] = draw(st.integers(0, 2**32 - 1))  # a jump, maybe backwards
        else:
            clocks[csid] = (clocks.get(csid, 0) + draw(st.sampled_from(_DELTAS))) & 0xFFFFFFFF
        size = draw(st.sampled_from([0, 1, chunk_size - 1, chunk_size, chunk_size + 1, 600]))
        size = max(0, min(size, 2000))
        payload = draw(st.binary(min_size=size, max_size=size))
        type_id = draw(st.sampled_from([AUDIO, VIDEO, DATA, COMMAND, 3, 4, 5, 6, 22, 200]))
        stream_id = draw(st.sampled_from([0, 1, 0xFFFFFFFF]))
        specs.append((csid, clocks[csid], type_id, stream_id, payload))
    return chunk_size, specs


def _encode_stream(chunk_size: int, specs: list[tuple[int, int, int, int, bytes]]) -> bytes:
    encoder = ChunkEncoder()
    parts = [encoder.encode(2, 0, 1, 0, struct.pack(">I", chunk_size))]
    encoder.chunk_size = chunk_size
    parts.extend(encoder.encode(*spec) for spec in specs)
    return b"".join(parts)


@PROPERTIES
@given(message_lists(), st.integers(0, 2**32 - 1))
def test_encoded_streams_decode_the_same_however_they_are_split(
    case: tuple[int, list[tuple[int, int, int, int, bytes]]], seed: int
) -> None:
    chunk_size, specs = case
    data = _encode_stream(chunk_size, specs)
    expected = [Message(1, 0, 0, struct.pack(">I", chunk_size), 2)]
    expected += [Message(t, s, ts, p, c) for c, ts, t, s, p in specs]
    whole = decode(data)
    assert whole == expected
    assert random_pieces(data, seed, largest=500) == whole
    if len(data) <= 20000:
        assert byte_by_byte(data) == whole


@PROPERTIES
@given(message_lists())
def test_type_0_encodings_decode_to_the_same_messages(
    case: tuple[int, list[tuple[int, int, int, int, bytes]]],
) -> None:
    chunk_size, specs = case
    data = set_chunk_size(chunk_size) + b"".join(
        encode_message(c, ts, t, s, p, chunk_size) for c, ts, t, s, p in specs
    )
    assert without_control(random_pieces(data, seed=len(data))) == [
        Message(t, s, ts, p, c) for c, ts, t, s, p in specs
    ]


# ---------------------------------------------------------------- pyrtmp oracle


def pyrtmp_decode(data: bytes) -> list[Message]:
    """Decode with pyrtmp's reader, applying Set Chunk Size as its own server does."""

    async def run() -> list[Message]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        session = SessionManager(reader=reader, writer=None)
        out = []
        try:
            async for chunk in session.read_chunks_from_stream():
                out.append(
                    Message(
                        chunk.msg_type_id,
                        chunk.msg_stream_id,
                        chunk.timestamp,
                        bytes(chunk.payload),
                        chunk.chunk_id,
                    )
                )
                if chunk.msg_type_id == 1:
                    session.reader_chunk_size = struct.unpack(">I", chunk.payload[:4])[0]
        except StreamClosedException:
            pass  # the end of our bytes
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("chunk_size", [1, 60, 128, 4096, 65536])
@pytest.mark.parametrize("size", [0, 1, 128, 129, 5000, 70000])
def test_pyrtmp_reads_encode_message_output(chunk_size: int, size: int) -> None:
    if size // chunk_size > 500:
        size = chunk_size * 500 + 3
    payload = payload_of(size, size)
    body = b"".join(
        encode_message(csid, ts, type_id, sid, payload, chunk_size)
        for csid, ts, type_id, sid in [(6, 0, AUDIO, 1), (7, 123456, VIDEO, 1), (3, 99, COMMAND, 0)]
    )
    data = with_chunk_size(chunk_size, body)
    assert pyrtmp_decode(data) == decode(data)


@pytest.mark.parametrize(
    ("timestamp", "size"),
    [
        (0xFFFFFE, 1000),  # just below the threshold, many chunks
        (EXT, 1000),  # exactly the marker value: pyrtmp reads the repeats
        (EXT + 1, 100),  # extended, single chunk
        (0xFFFFFFFF, 128),  # extended, exactly one chunk
    ],
)
def test_pyrtmp_reads_our_extended_timestamps(timestamp: int, size: int) -> None:
    payload = payload_of(size)
    data = encode_message(6, timestamp, VIDEO, 1, payload, 128)
    assert pyrtmp_decode(data) == decode(data) == [Message(VIDEO, 1, timestamp, payload, 6)]
    # (A timestamp above 0xFFFFFF on a multi-chunk message is beyond pyrtmp:
    # see the module docstring.)


def test_pyrtmp_reads_chunk_encoder_types_0_1_2_with_growing_deltas() -> None:
    # Deltas never repeat on a chunk stream, so no type-3 message header is used.
    rng = random.Random(11)
    encoder = ChunkEncoder()
    encoder.chunk_size = 200
    clocks = {3: 0, 6: 0, 7: 1000, 300: 5}
    step = dict.fromkeys(clocks, 0)
    specs = []
    for i in range(120):
        csid = rng.choice(list(clocks))
        step[csid] += 1
        clocks[csid] += step[csid]
        size = rng.choice([10, 10, 199, 200, 201, 1500])
        specs.append(
            (csid, clocks[csid], rng.choice([AUDIO, VIDEO]), 1 + csid % 2, payload_of(size, i))
        )
    data, fmts = _encode_all(encoder, specs)
    assert {0, 1, 2} <= set(fmts) and 3 not in fmts
    stream = set_chunk_size(200) + data
    assert pyrtmp_decode(stream) == decode(stream)
    assert without_control(decode(stream)) == [Message(t, s, ts, p, c) for c, ts, t, s, p in specs]


def test_pyrtmp_reads_chunk_encoder_type_3_headers_with_zero_delta() -> None:
    encoder = ChunkEncoder()
    payload = payload_of(300)
    specs = [(6, 77, AUDIO, 1, payload)] * 5 + [(7, 77, VIDEO, 1, payload_of(40))] * 3
    data, fmts = _encode_all(encoder, specs)
    assert fmts == [0, 2, 3, 3, 3, 0, 2, 3]
    assert pyrtmp_decode(data) == decode(data)
    assert decode(data) == [Message(t, s, ts, p, c) for c, ts, t, s, p in specs]
