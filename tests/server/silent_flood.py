"""A flood of silent connections, run as its own process so it opens them at full speed.

``python -m tests.server.silent_flood PORT COUNT WAIT`` opens COUNT TCP
connections to 127.0.0.1:PORT from 127.0.0.2-21 at once, sends nothing, and
records for each when the client saw it established and when the server
ended it (EOF or reset). It stops waiting WAIT seconds after the last one
was established, prints one JSON line with the figures, closes every socket
and prints ``closed``. Everything is bounded: a hard deadline ends it.
"""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import sys
import time

SOURCES = 20
HARD_DEADLINE = 60.0


def main(port: int, count: int, wait: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 64)), hard))
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    established: dict[int, float] = {}
    ended: dict[int, float] = {}
    for i in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((f"127.0.0.{2 + i % SOURCES}", 0))
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        socks.append(sock)
        sel.register(sock, selectors.EVENT_WRITE, i)
    start = time.monotonic()
    last = start
    while len(ended) < count and time.monotonic() - start < HARD_DEADLINE:
        if len(established) == count and time.monotonic() - last > wait:
            break
        for key, _mask in sel.select(0.1):
            i, sock = key.data, socks[key.data]
            now = time.monotonic()
            if i not in established:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    established[i] = ended[i] = now  # refused outright: ended too
                    sel.unregister(sock)
                    continue
                established[i] = last = now
                sel.modify(sock, selectors.EVENT_READ, i)
                continue
            try:
                if sock.recv(1):
                    continue  # the server said something (it should not): keep waiting
            except OSError:
                pass  # a reset is an end too
            ended[i] = now
            sel.unregister(sock)
    lifetimes = [ended[i] - established[i] for i in ended]
    print(
        json.dumps(
            {
                "opened": count,
                "established": len(established),
                "ended": len(ended),
                "max_lifetime": max(lifetimes, default=0.0),
            }
        ),
        flush=True,
    )
    for sock in socks:
        sock.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
