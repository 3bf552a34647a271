"""The shared in-memory file behind sendfile fan-out, against real sockets: what a
socket still queues must stay intact while the file moves on to the next flush."""

from __future__ import annotations

import os
import random
import socket
import threading

import pytest

from streamgate.relay.shared import SharedFile, sendfile_available

pytestmark = pytest.mark.skipif(not sendfile_available(), reason="no memfd_create/sendfile")


def test_every_flush_arrives_intact_though_the_file_was_rewritten_under_the_socket() -> None:
    rng = random.Random(7)
    flushes = [rng.randbytes(rng.randrange(64_000, 200_000)) for _ in range(40)]
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    tcp_out = socket.socket()
    tcp_out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    tcp_out.connect(listener.getsockname())
    tcp_in, _ = listener.accept()
    got = bytearray()

    def read_all() -> None:
        # A slow reader: the kernel holds many flushes' pages in the socket meanwhile.
        while chunk := tcp_in.recv(7_000):
            got.extend(chunk)

    shared = SharedFile()
    reader = threading.Thread(target=read_all)
    try:
        tcp_out.setblocking(True)
        for data in flushes:
            shared.put(data)
            sent = 0
            while sent < len(data):
                sent += os.sendfile(tcp_out.fileno(), shared.fd, sent, len(data) - sent)
            shared.clear()  # the next put writes new pages at the same offset
            if data is flushes[2]:
                reader.start()  # only now: three flushes sit in the socket unread
        tcp_out.close()
        reader.join(timeout=30)
    finally:
        shared.close()
        tcp_in.close()
        listener.close()
    assert bytes(got) == b"".join(flushes)


def test_closing_releases_the_descriptor() -> None:
    shared = SharedFile()
    fd = shared.fd
    shared.put(b"x" * 70_000)
    shared.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    shared.close()  # twice is fine
