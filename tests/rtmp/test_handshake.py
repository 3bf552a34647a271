"""Tests for streamgate.rtmp.handshake: simple and digest handshakes, checked independently.

The digest checks are recomputed here from the published algorithm (the one
FFmpeg's rtmpproto.c and nginx-rtmp implement), with keys typed in from it,
not imported from the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgate.errors import RemoteProtocolError
from streamgate.rtmp.handshake import ClientHandshake, ServerHandshake

SIZE = 1536
# The 32 bytes both Adobe keys end with.
KEY_TAIL = bytes.fromhex("F0EEC24A8068BEE82E00D0D1029E7E57 6EEC5D2D29806FAB93B8E636CFEB31AE")
FP_KEY = b"Genuine Adobe Flash Player 001" + KEY_TAIL
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + KEY_TAIL
FP_KEY_TEXT = FP_KEY[:30]  # C1 digests are keyed with the text part only
FMS_KEY_TEXT = FMS_KEY[:36]


def sha256_hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes, scheme: int) -> int:
    """Scheme 0: sum of bytes 8..11 mod 728 + 12; scheme 1: bytes 772..775 mod 728 + 776."""
    base = 8 if scheme == 0 else 772
    return sum(packet[base : base + 4]) % 728 + base + 4


def valid_digest(packet: bytes, key: bytes) -> bytes | None:
    """The embedded digest if one of the two schemes validates, else None."""
    for scheme in (0, 1):
        offset = digest_offset(packet, scheme)
        digest = packet[offset : offset + 32]
        if sha256_hmac(key, packet[:offset] + packet[offset + 32 :]) == digest:
            return digest
    return None


def signed_by(packet: bytes, key: bytes, peer_digest: bytes) -> bool:
    """Whether the last 32 bytes of a C2/S2 sign the rest under HMAC(key, peer digest)."""
    return sha256_hmac(sha256_hmac(key, peer_digest), packet[:-32]) == packet[-32:]


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def run(client: ClientHandshake, server: ServerHandshake) -> tuple[bytes, bytes, bytes]:
    """Drive a full handshake; returns (C0C1, S0S1S2, C2)."""
    c0c1 = client.data_to_send()
    assert server.receive_data(c0c1) == b""
    s0s1s2 = server.data_to_send()
    assert client.receive_data(s0s1s2) == b""
    c2 = client.data_to_send()
    assert server.receive_data(c2) == b""
    assert client.complete and server.complete
    return c0c1, s0s1s2, c2


def test_digest_handshake_between_our_client_and_server() -> None:
    client, server = ClientHandshake(seeded(1)), ServerHandshake(seeded(2))
    c0c1, s0s1s2, c2 = run(client, server)
    assert client.digest and server.digest
    assert len(c0c1) == 1 + SIZE and len(s0s1s2) == 1 + 2 * SIZE and len(c2) == SIZE
    assert c0c1[0] == 3 and s0s1s2[0] == 3


def test_digest_handshake_packets_validate_independently() -> None:
    client, server = ClientHandshake(seeded(3)), ServerHandshake(seeded(4))
    c0c1, s0s1s2, c2 = run(client, server)
    c1 = c0c1[1:]
    s1, s2 = s0s1s2[1 : 1 + SIZE], s0s1s2[1 + SIZE :]

    c1_digest = valid_digest(c1, FP_KEY_TEXT)
    assert c1_digest is not None
    assert c1[4:8] != b"\0\0\0\0"  # a version, which marks a digest C1

    s1_digest = valid_digest(s1, FMS_KEY_TEXT)
    assert s1_digest is not None
    assert valid_digest(s1, FP_KEY_TEXT) is None  # keyed as a server, not a player

    assert signed_by(s2, FMS_KEY, c1_digest)  # S2 answers the C1 digest
    assert signed_by(c2, FP_KEY, s1_digest)  # C2 answers the S1 digest


def _c1_with_digest_at_scheme_1(rng: random.Random) -> tuple[bytes, bytes]:
    """A C1 as Flash Player 10+ may send it: the digest in the second half."""
    body = bytearray(rng.randbytes(SIZE))
    body[0:4] = b"\0\0\0\0"
    body[4:8] = bytes([10, 0, 32, 18])
    offset = digest_offset(bytes(body), 1)
    digest = sha256_hmac(FP_KEY_TEXT, bytes(body[:offset] + body[offset + 32 :]))
    body[offset : offset + 32] = digest
    return bytes(body), digest


def test_server_finds_a_client_digest_in_the_second_scheme() -> None:
    c1, digest = _c1_with_digest_at_scheme_1(random.Random(5))
    server = ServerHandshake(seeded(6))
    assert server.receive_data(b"\x03" + c1) == b""
    out = server.data_to_send()
    assert server.digest
    s1, s2 = out[1 : 1 + SIZE], out[1 + SIZE :]
    assert valid_digest(s1, FMS_KEY_TEXT) is not None
    assert signed_by(s2, FMS_KEY, digest)


def test_simple_handshake_when_the_client_sends_no_digest() -> None:
    client = ClientHandshake(seeded(7), timestamp=1234, digest=False)
    server = ServerHandshake(seeded(8))
    c0c1, s0s1s2, c2 = run(client, server)
    c1, s1, s2 = c0c1[1:], s0s1s2[1 : 1 + SIZE], s0s1s2[1 + SIZE :]
    assert not client.digest and not server.digest
    assert c1[:4] == (1234).to_bytes(4, "big")
    assert c1[4:8] == b"\0\0\0\0"
    assert s2 == c1  # the server echoes C1
    assert c2 == s1  # and the client echoes S1


def test_server_falls_back_to_simple_when_the_digest_is_wrong() -> None:
    c1 = bytearray(ClientHandshake(seeded(9)).data_to_send()[1:])
    offset = digest_offset(bytes(c1), 0)
    c1[offset] ^= 0xFF  # spoil the digest, keep the version bytes
    server = ServerHandshake(seeded(10))
    server.receive_data(b"\x03" + bytes(c1))
    out = server.data_to_send()
    assert not server.digest
    assert out[1 + SIZE :] == bytes(c1)


def test_client_echoes_a_server_that_sends_no_digest() -> None:
    client = ClientHandshake(seeded(11))
    c0c1 = client.data_to_send()
    s1 = b"\0" * 8 + random.Random(12).randbytes(SIZE - 8)
    assert client.receive_data(b"\x03" + s1 + c0c1[1:]) == b""
    assert client.complete and not client.digest
    assert client.data_to_send() == s1


@pytest.mark.parametrize("version", [0, 6, 0x7F, 0xFF])
def test_server_refuses_other_versions(version: int) -> None:
    c1 = ClientHandshake(seeded(13)).data_to_send()[1:]
    with pytest.raises(RemoteProtocolError, match="version"):
        ServerHandshake(seeded(14)).receive_data(bytes([version]) + c1)


@pytest.mark.parametrize("version", [0, 6, 0xFF])
def test_client_refuses_other_versions(version: int) -> None:
    client, server = ClientHandshake(seeded(15)), ServerHandshake(seeded(16))
    server.receive_data(client.data_to_send())
    answer = server.data_to_send()
    with pytest.raises(RemoteProtocolError, match="version"):
        client.receive_data(bytes([version]) + answer[1:])


def test_bytes_pipelined_after_c2_are_returned_to_the_server() -> None:
    client, server = ClientHandshake(seeded(17)), ServerHandshake(seeded(18))
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    connect = b"\x03\x00\x00\x00\x00\x00\x10\x14\x00\x00\x00\x00first bytes!"
    assert server.receive_data(client.data_to_send() + connect) == connect
    assert server.complete
    assert server.receive_data(b"later") == b"later"  # once complete, a pass-through


def test_server_handles_everything_in_one_read() -> None:
    client, server = ClientHandshake(seeded(19), digest=False), ServerHandshake(seeded(20))
    c0c1 = client.data_to_send()
    c2 = bytes(SIZE)  # C2 is not validated: real clients send anything
    assert server.receive_data(c0c1 + c2 + b"extra") == b"extra"
    assert server.complete
    assert len(server.data_to_send()) == 1 + 2 * SIZE


def test_bytes_after_s2_are_returned_to_the_client() -> None:
    client, server = ClientHandshake(seeded(21)), ServerHandshake(seeded(22))
    server.receive_data(client.data_to_send())
    assert client.receive_data(server.data_to_send() + b"\x02rest") == b"\x02rest"
    assert client.receive_data(b"more") == b"more"


def _feed_byte_by_byte(handshake: ClientHandshake | ServerHandshake, data: bytes) -> bytes:
    rest = b""
    for i in range(len(data)):
        rest += handshake.receive_data(data[i : i + 1])
    return rest


@pytest.mark.parametrize("digest", [True, False])
def test_byte_by_byte_feeding_gives_the_same_handshake(digest: bool) -> None:
    whole = run(ClientHandshake(seeded(23), digest=digest), ServerHandshake(seeded(24)))

    client, server = ClientHandshake(seeded(23), digest=digest), ServerHandshake(seeded(24))
    c0c1 = client.data_to_send()
    assert _feed_byte_by_byte(server, c0c1) == b""
    s0s1s2 = server.data_to_send()
    assert _feed_byte_by_byte(client, s0s1s2 + b"tail") == b"tail"
    c2 = client.data_to_send()
    assert _feed_byte_by_byte(server, c2 + b"xy") == b"xy"
    assert (c0c1, s0s1s2, c2) == whole
    assert client.digest == server.digest == digest


@settings(deadline=None, max_examples=50)
@given(st.binary(min_size=1 + SIZE, max_size=1 + 2 * SIZE + 8), st.integers(0, 2**32 - 1))
def test_arbitrary_client_bytes_complete_the_handshake_or_raise_protocol_error(
    data: bytes, seed: int
) -> None:
    server = ServerHandshake(seeded(seed))
    try:
        rest = server.receive_data(data)
    except RemoteProtocolError:
        assert data[0] != 3
        return
    assert data[0] == 3
    assert len(server.data_to_send()) == 1 + 2 * SIZE
    assert server.complete == (len(data) >= 1 + 2 * SIZE)
    assert rest == data[1 + 2 * SIZE :]


def test_a_wrong_version_byte_is_refused_at_once() -> None:
    """A TLS ClientHello (0x16) or garbage fails on its first byte, not after 1537."""
    from streamgate.errors import RemoteProtocolError as _Refused
    from streamgate.rtmp.handshake import ServerHandshake as _Server

    with pytest.raises(_Refused, match=r"the client speaks TLS .* this port speaks RTMP, not TLS"):
        _Server().receive_data(b"\x16")  # named as what it is, a TLS ClientHello
    with pytest.raises(_Refused, match="version 23"):
        _Server().receive_data(b"\x17")
