"""A real gateway with its HTTP API, in-process, and a plain HTTP client for tests.

The gateway runs in a :class:`~tests.server.harness.ServerThread`; the API is
started on that server's own event loop, exactly as ``app.serve()`` runs it.
Tests talk HTTP from the test thread with :mod:`http.client` and drive RTMP
peers on the server loop with ``srv.run(...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streamgate.api import ApiServer, HttpLimits
from streamgate.app import reload
from streamgate.client import RtmpClient
from streamgate.rtmp.messages import MsgType, Status
from tests.server.harness import ServerThread

__all__ = [
    "AAC_CONFIG",
    "H264_CONFIG",
    "ApiThread",
    "Reply",
    "open_player",
    "open_publisher",
    "send_frames",
    "wait_for",
]

# A real x264 sequence header (320x240, Constrained Baseline 1.3) and an AAC-LC
# 44.1 kHz stereo AudioSpecificConfig, as FLV video/audio message bodies.
H264_CONFIG = bytes.fromhex(
    "17000000000142c00dffe100166742c00dda0507ec0440000003004000000c83c50aa801000468ce0fc8"
)
AAC_CONFIG = bytes.fromhex("af001210")
KEYFRAME = b"\x17\x01\x00\x00\x00"
INTERFRAME = b"\x27\x01\x00\x00\x00"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", self.headers
        return json.loads(self.body)


class ApiThread:
    """``with ApiThread(http={"token": "t"}) as gw:`` -> ``gw.srv`` (RTMP), ``gw.get(...)``."""

    def __init__(
        self,
        *,
        http_limits: HttpLimits | None = None,
        lag_interval: float = 0.5,
        max_stream_series: int = 100,
        reloadable: bool = False,
        **sections: Any,
    ) -> None:
        sections.setdefault("http", {})
        sections["http"].setdefault("listen", "127.0.0.1:0")
        self.srv = ServerThread(**sections)
        self.http_limits = http_limits
        self.lag_interval = lag_interval
        self.max_stream_series = max_stream_series
        self.reloadable = reloadable
        self.api: ApiServer | None = None

    def __enter__(self) -> ApiThread:
        self.srv.start()
        try:
            self.api = self.srv.run(self._start())
        except BaseException:
            self.srv.stop()
            raise
        return self

    async def _start(self) -> ApiServer:
        srv = self.srv
        assert srv.ctx is not None

        def listening() -> bool:
            return srv.server is not None and srv.server.serving

        api = ApiServer(
            srv.ctx,
            listening=listening,
            limits=self.http_limits,
            lag_interval=self.lag_interval,
            max_stream_series=self.max_stream_series,
            reload=functools.partial(reload, srv.ctx) if self.reloadable else None,
        )
        await api.start()
        return api

    def __exit__(self, *exc: object) -> None:
        try:
            if self.api is not None:
                self.srv.run(self.api.close())
        finally:
            self.srv.stop()

    @property
    def port(self) -> int:
        assert self.api is not None
        return self.api.port

    # ------------------------------------------------------------ HTTP

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = f"Bearer {token}"
            conn.request(method, path, headers=sent)
            resp = conn.getresponse()
            body = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (sample name, sorted labels)."""
        reply = self.get("/metrics")
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain")
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(reply.body.decode("utf-8")):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def raw(self) -> socket.socket:
        """A plain TCP connection to the API (for hostile-input tests)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock


def metric(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float | None:
    """One sample's value, or None when the series is absent."""
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` from the test thread; fail naming ``what`` when it never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------- RTMP peers (on the loop)


async def open_publisher(url: str) -> tuple[RtmpClient, int]:
    client = await RtmpClient.open(url)
    sid = await client.publish()
    await client.wait_status(Status.PUBLISH_START)
    return client, sid


async def open_player(url: str) -> RtmpClient:
    client = await RtmpClient.open(url)
    await client.play()
    await client.wait_status(Status.PLAY_START)
    return client


def send_frames(client: RtmpClient, sid: int, start: int, count: int) -> None:
    """Sequence headers (at ``start`` 0), then a keyframe and inter frames, 40 ms apart."""
    if start == 0:
        client.send_media(sid, MsgType.VIDEO, 0, H264_CONFIG)
        client.send_media(sid, MsgType.AUDIO, 0, AAC_CONFIG)
    for i in range(start, start + count):
        frame = KEYFRAME if i % 25 == 0 else INTERFRAME
        client.send_media(sid, MsgType.VIDEO, i * 40, frame + bytes(200))


async def close_all(*clients: RtmpClient) -> None:
    """Close ``clients`` and return once each connection is gone."""
    for client in clients:
        client.close()
    async with asyncio.timeout(5):
        for client in clients:
            with contextlib.suppress(ConnectionError):
                while True:  # ends with the connection
                    await client.next_event()
