"""Fake servers on 127.0.0.1 for the probe tests, each on one background event loop.

:class:`LoopThread` runs an asyncio loop in a thread; the helpers start, on
it, a server that accepts and never answers, a scripted RTMP server built on
our sans-IO :class:`~streamgate.rtmp.connection.ServerConnection` (accept or
reject ``connect``, answer ``play`` any way, send chosen media), and a TLS
terminator that relays to a plain RTMP port (RTMPS in front of an origin).
Every connection is closed when its handler ends, and every handler ends
when the loop is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from streamgate.errors import ProtocolError
from streamgate.rtmp.chunk import encode_message
from streamgate.rtmp.connection import ServerConnection
from streamgate.rtmp.events import ConnectRequested, PlayRequested
from streamgate.rtmp.messages import CSID_AUDIO, CSID_VIDEO, MsgType, Status

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

__all__ = ["LoopThread", "RtmpScript"]


class LoopThread:
    """``with LoopThread() as lt: port = lt.serve(handler)``; stopped and reaped on exit."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._on_error)
        self.errors: list[str] = []
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._main, name="probe-fakes", daemon=True)

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # TLS handshakes the probe aborts on purpose end up here; keep them quiet.
        self.errors.append(str(context.get("message")))

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.run(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, handler: Handler, tls: ssl.SSLContext | None = None) -> int:
        """Start a server on 127.0.0.1 (an ephemeral port); returns the port."""

        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handler(reader, writer)
            except (ConnectionError, ssl.SSLError, ProtocolError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(guarded, "127.0.0.1", 0, ssl=tls)

        server = self.run(start())
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port


# --------------------------------------------------------------------- behaviours


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read everything, answer nothing."""
    while await reader.read(65536):
        pass


def tls_terminator(upstream_port: int | None) -> Handler:
    """Relay a (TLS) connection to a plain port on 127.0.0.1, or just drain it."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if upstream_port is None:
            await silent(reader, writer)
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()

    return relay


@dataclass
class RtmpScript:
    """How the scripted RTMP server answers; the defaults accept everything, send nothing."""

    reject: str | None = None
    """Reject ``connect`` with this description."""
    redirect: str | None = None
    """Put this URL in the rejection's ``ex.redirect`` (as nginx/SRS clusters do)."""
    play_status: tuple[str, str] | None = None
    """Answer ``play`` with this (code, description) instead of Play.Start."""
    answer_play: bool = True
    """False: never answer ``play``."""
    media: list[tuple[int, bytes]] = field(default_factory=list)
    """(type id, payload) sent after Play.Start, 20 ms apart in timestamps."""
    metadata: dict[str, Any] | None = None
    """Sent as onMetaData right after Play.Start."""

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection()
        while data := await reader.read(65536):
            media = b""
            for event in [*conn.receive_data(data), *conn.take_events()]:
                if isinstance(event, ConnectRequested):
                    self._on_connect(conn)
                elif isinstance(event, PlayRequested):
                    media += self._on_play(conn, event)
            writer.write(conn.data_to_send() + media)
            await writer.drain()

    def _on_connect(self, conn: ServerConnection) -> None:
        if self.reject is None:
            conn.accept_connect()
            return
        info: dict[str, Any] = {
            "level": "error",
            "code": Status.CONNECT_REJECTED,
            "description": self.reject,
        }
        if self.redirect is not None:
            info["ex"] = {"code": 302.0, "redirect": self.redirect}
        conn.send_command(0, "_error", 1.0, None, info)

    def _on_play(self, conn: ServerConnection, event: PlayRequested) -> bytes:
        """Answer play; returns the media to send after the answer."""
        sid = event.stream_id
        if not self.answer_play:
            return b""
        if self.play_status is not None:
            conn.refuse(sid, *self.play_status)
            return b""
        conn.accept_play(sid, event.name)
        if self.metadata is not None:
            conn.send_data(sid, "onMetaData", self.metadata)
        return b"".join(
            encode_message(
                CSID_AUDIO if type_id == MsgType.AUDIO else CSID_VIDEO,
                i * 20,
                type_id,
                sid,
                payload,
                conn.chunk_size,
            )
            for i, (type_id, payload) in enumerate(self.media)
        )
