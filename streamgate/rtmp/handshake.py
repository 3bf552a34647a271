"""The RTMP handshake, server and client side, simple and digest ("complex").

Invariants:

* C0/S0 is the version byte 3; anything else (6 is RTMPE) is refused.
* The server answers a C1 that carries a valid Flash Player digest with the
  digest handshake (S1 keyed with the FMS key, S2 keyed with a key derived
  from the client's digest), and otherwise with the simple echo handshake,
  as nginx-rtmp and SRS do. C2 is not validated: many real clients send
  arbitrary bytes there.
* The client sends a digest C1 (FFmpeg and Flash do) and answers a server
  that sent a digest S1 with a digest C2, otherwise echoes S1.
* Bytes that follow the handshake in the same read (a pipelined ``connect``)
  are returned, never lost.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Final

from streamgate.errors import RemoteProtocolError

__all__ = [
    "HANDSHAKE_SIZE",
    "RTMP_VERSION",
    "ClientHandshake",
    "ServerHandshake",
    "find_digest",
    "make_digest_packet",
]

RTMP_VERSION: Final = 3
HANDSHAKE_SIZE: Final = 1536
_DIGEST_LEN: Final = 32

_KEY_TAIL: Final = bytes.fromhex(
    "f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae"
)
FP_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL  # 62 bytes
FMS_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL  # 68 bytes
FP_KEY_PARTIAL: Final = FP_KEY[:30]
FMS_KEY_PARTIAL: Final = FMS_KEY[:36]

_TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello

# Flash Player 9+ / FMS 3 version stamps carried in bytes 4-8 of C1/S1.
CLIENT_VERSION: Final = b"\x80\x00\x07\x02"
SERVER_VERSION: Final = b"\x04\x05\x00\x01"

_U32 = struct.Struct(">I")

RandomBytes = Callable[[int], bytes]


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _digest_offset(packet: bytes, scheme: int) -> int:
    """Where the 32-byte digest sits for scheme 0 (base 8) or 1 (base 772)."""
    base = 8 if scheme == 0 else 772
    return sum(packet[base : base + 4]) % 728 + base + 4


def find_digest(packet: bytes, key: bytes) -> int | None:
    """Offset of a valid digest in a C1/S1 packet, or ``None`` if there is none."""
    for scheme in (0, 1):
        offset = _digest_offset(packet, scheme)
        expected = _hmac(key, packet[:offset] + packet[offset + _DIGEST_LEN :])
        if hmac.compare_digest(expected, packet[offset : offset + _DIGEST_LEN]):
            return offset
    return None


def make_digest_packet(
    key: bytes, version: bytes, random_bytes: RandomBytes, timestamp: int = 0
) -> tuple[bytes, bytes]:
    """Build a C1/S1 with an embedded digest (scheme 0); returns (packet, digest)."""
    body = bytearray(_U32.pack(timestamp & 0xFFFFFFFF) + version + random_bytes(1528))
    offset = _digest_offset(bytes(body), 0)
    digest = _hmac(key, bytes(body[:offset] + body[offset + _DIGEST_LEN :]))
    body[offset : offset + _DIGEST_LEN] = digest
    return bytes(body), digest


def _signed_response(key: bytes, peer_digest: bytes, random_bytes: RandomBytes) -> bytes:
    """A C2/S2 answering a digest: random bytes plus their HMAC under a derived key."""
    body = random_bytes(HANDSHAKE_SIZE - _DIGEST_LEN)
    return body + _hmac(_hmac(key, peer_digest), body)


class ServerHandshake:
    """Server side: C0C1 in, S0S1S2 out, C2 in, done."""

    def __init__(self, random_bytes: RandomBytes = os.urandom, timestamp: int = 0) -> None:
        self._random = random_bytes
        self._timestamp = timestamp
        self._buf = bytearray()
        self._sent = False
        self.complete = False
        self.digest = False  # whether the digest handshake was used
        self._out = b""

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes; returns what is left over once the handshake is complete."""
        if self.complete:
            return data
        self._buf += data
        if not self._sent:
            # The version byte is judged at once: a TLS client or garbage is
            # refused now, not after 1537 bytes or the handshake timeout.
            if self._buf and self._buf[0] == _TLS_HANDSHAKE:
                raise RemoteProtocolError(
                    "handshake: the client speaks TLS (rtmps://) to this plain RTMP port: "
                    "this port speaks RTMP, not TLS"
                )
            if self._buf and self._buf[0] != RTMP_VERSION:
                raise RemoteProtocolError(
                    f"handshake: unsupported RTMP version {self._buf[0]} (only 3 is spoken)"
                )
            if len(self._buf) < 1 + HANDSHAKE_SIZE:
                return b""
            c1 = bytes(self._buf[1 : 1 + HANDSHAKE_SIZE])
            del self._buf[: 1 + HANDSHAKE_SIZE]
            self._out = bytes([RTMP_VERSION]) + self._answer(c1)
            self._sent = True
        if len(self._buf) < HANDSHAKE_SIZE:
            return b""
        rest = bytes(self._buf[HANDSHAKE_SIZE:])
        self._buf = bytearray()
        self.complete = True
        return rest

    def _answer(self, c1: bytes) -> bytes:
        offset = find_digest(c1, FP_KEY_PARTIAL) if c1[4:8] != b"\0\0\0\0" else None
        if offset is None:
            s1 = _U32.pack(self._timestamp & 0xFFFFFFFF) + b"\0\0\0\0" + self._random(1528)
            return s1 + c1
        self.digest = True
        s1, _ = make_digest_packet(FMS_KEY_PARTIAL, SERVER_VERSION, self._random, self._timestamp)
        s2 = _signed_response(FMS_KEY, c1[offset : offset + _DIGEST_LEN], self._random)
        return s1 + s2

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out


class ClientHandshake:
    """Client side: C0C1 out at once, S0S1S2 in, C2 out, done."""

    def __init__(
        self, random_bytes: RandomBytes = os.urandom, timestamp: int = 0, digest: bool = True
    ) -> None:
        self._random = random_bytes
        self._buf = bytearray()
        self.complete = False
        self.digest = False  # whether the server answered with a digest
        if digest:
            self._c1, self._c1_digest = make_digest_packet(
                FP_KEY_PARTIAL, CLIENT_VERSION, random_bytes, timestamp
            )
        else:
            self._c1 = _U32.pack(timestamp & 0xFFFFFFFF) + b"\0\0\0\0" + random_bytes(1528)
            self._c1_digest = b""
        self._out = bytes([RTMP_VERSION]) + self._c1

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes; returns what is left over once S0S1S2 are in."""
        if self.complete:
            return data
        self._buf += data
        if len(self._buf) < 1 + 2 * HANDSHAKE_SIZE:
            return b""
        if self._buf[0] != RTMP_VERSION:
            raise RemoteProtocolError(f"handshake: server answered RTMP version {self._buf[0]}")
        s1 = bytes(self._buf[1 : 1 + HANDSHAKE_SIZE])
        rest = bytes(self._buf[1 + 2 * HANDSHAKE_SIZE :])
        self._buf = bytearray()
        offset = find_digest(s1, FMS_KEY_PARTIAL) if s1[4:8] != b"\0\0\0\0" else None
        if offset is not None and self._c1_digest:
            self.digest = True
            self._out += _signed_response(
                FP_KEY, s1[offset : offset + _DIGEST_LEN], self._random
            )
        else:
            self._out += s1
        self.complete = True
        return rest

    def data_to_send(self) -> bytes:
        out, self._out = self._out, b""
        return out
