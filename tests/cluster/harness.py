"""An edge of a fleet, in-process: a :class:`ServerThread` that also runs its cluster
node, as ``app.serve()`` does (started after the listener, closed after it)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from streamgate.server.context import ServerContext
from streamgate.server.listener import RtmpServer
from tests.server.harness import ServerThread

__all__ = ["QUICK_CLUSTER", "ClusterEdge", "accepts_from", "fleet_sections"]


class ClusterEdge(ServerThread):
    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.ctx = ServerContext.build(self.settings, asyncio.get_running_loop())
        self.server = RtmpServer(self.ctx)
        await self.server.start()
        if self.ctx.cluster is not None:
            self.ctx.cluster.start()
        self._started.set()
        await self._stop.wait()
        await self.server.close()
        if self.ctx.cluster is not None:
            await self.ctx.cluster.close()

    def cluster_up(self) -> bool:
        return self.call(lambda: self.ctx is not None and self.ctx.cluster is not None
                         and self.ctx.cluster.replicator.up)  # fmt: skip

    def counters(self) -> dict[str, int]:
        def read() -> dict[str, int]:
            assert self.ctx is not None and self.ctx.cluster is not None
            return dict(self.ctx.cluster.replicator.counters)

        return self.call(read)


# [cluster] timings that let a test see heartbeats, reconnects and full reads quickly.
QUICK_CLUSTER = {
    "heartbeat_interval": 0.2,
    "reconcile_interval": 1.0,
    "connect_timeout": 0.5,
    "command_timeout": 0.5,
    "backoff_initial": 0.05,
    "backoff_max": 0.3,
}


def fleet_sections(
    redis_url: str, node: str, origin_port: int | None = None, **extra: dict[str, Any]
) -> dict[str, Any]:
    """Settings of one fleet member (edge when ``origin_port`` is given)."""
    sections: dict[str, Any] = {
        # No drain on stop: these tests never look at goodbyes, and five edges
        # each waiting drain_time for their viewers made stops slow.
        "rtmp": {"listen": "127.0.0.1:0", "drain_time": 0.2},
        # 127.0.0.1 (the test's viewers) is trusted; 127.0.0.2 is the attacker.
        "limits": {
            "allow": ["127.0.0.1/32"],
            "ban_after_failures": 3,
            "connections_per_second_per_ip": 10_000,
        },
        "cluster": {"redis_url": redis_url, "node_id": node, **QUICK_CLUSTER},
    }
    if origin_port is not None:
        sections["mode"] = "edge"
        sections["edge"] = {
            "origins": [f"rtmp://127.0.0.1:{origin_port}"],
            "start_timeout": 1.0,
            "missing_ttl": 5.0,
            "max_connects_per_second": 10_000,
        }
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    return sections


def accepts_from(port: int, source: str) -> bool:
    """Does the server on ``port`` answer a handshake from ``source``? A ban resets
    the connection at accept, before any byte of the handshake."""
    try:
        with socket.create_connection(
            ("127.0.0.1", port), timeout=5, source_address=(source, 0)
        ) as sock:
            sock.sendall(b"\x03" + bytes(1536))
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
                if len(data) >= 1537:
                    return True
            return False
    except (ConnectionResetError, BrokenPipeError):
        return False
