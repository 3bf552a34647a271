"""A real streamgate server in a background thread, for tests.

The server runs on its own uvloop event loop, exactly as in production;
tests talk to it over loopback and read its state through :meth:`call`,
which runs a function on the server's loop and returns its result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

import uvloop

from streamgate.client import RtmpClient
from streamgate.config import Settings, load_settings
from streamgate.flv.server import FlvServer
from streamgate.server.context import ServerContext
from streamgate.server.listener import RtmpServer
from streamgate.server.session import RtmpSession

T = TypeVar("T")

__all__ = ["ServerThread"]


class ServerThread:
    """``with ServerThread(**overrides) as srv:`` -> ``srv.port``, ``srv.url(name)``."""

    def __init__(self, settings: Settings | None = None, **sections: dict[str, Any]) -> None:
        if settings is None:
            sections.setdefault("rtmp", {})
            sections["rtmp"].setdefault("listen", "127.0.0.1:0")
            # Every real peer of the tests is on loopback: trusted (no per-IP rate
            # or bans) unless a test sets its own [limits] to test exactly those.
            sections.setdefault("limits", {"allow": ["127.0.0.0/8"]})
            settings = load_settings(None, **sections)
        self.settings = settings
        self.loop = uvloop.new_event_loop()
        self.ctx: ServerContext | None = None
        self.server: RtmpServer | None = None
        self.flv: FlvServer | None = None  # [flv] enabled: the HTTP-FLV listener
        self._thread = threading.Thread(target=self._run, name="streamgate-test", daemon=True)
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced in start()
            self._error = exc
            self._started.set()
        finally:
            # As asyncio.run and anyio.run do: tasks still pending are cancelled and
            # run to their end here, not finalised later by the garbage collector in
            # whatever test is running then.
            leftovers = asyncio.all_tasks(self.loop)
            for task in leftovers:
                task.cancel()
            if leftovers:
                self.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.ctx = ServerContext.build(self.settings, asyncio.get_running_loop())
        self.server = RtmpServer(self.ctx)
        await self.server.start()
        if self.settings.flv.enabled:
            self.flv = FlvServer(self.ctx)
            await self.flv.start()
        self._started.set()
        await self._stop.wait()
        if self.flv is not None:
            self.flv.stop_accepting()
        await self.server.close()
        if self.flv is not None:
            await self.flv.close()

    def start(self) -> Self:
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)  # drain_time (5 s by default) and more on a loaded machine
        if self._thread.is_alive():
            # A server left running in the background would go on using the process
            # (its clock, its random state, its ports) in later tests: stop its loop
            # by force (leftover tasks are then cancelled and the loop closed).
            logging.getLogger("tests").warning("a test server did not stop in 30 s: forced")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def url(self, name: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{name}"

    @property
    def flv_port(self) -> int:
        assert self.flv is not None, "[flv] enabled = true is needed"
        return self.flv.port

    def flv_url(self, name: str, app: str = "live", scheme: str = "http") -> str:
        """The HTTP-FLV (or, with ``scheme="ws"``, WebSocket-FLV) URL of a stream."""
        return f"{scheme}://127.0.0.1:{self.flv_port}/{app}/{name}.flv"

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the server loop (where its state lives) and return the result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server loop (e.g. an in-process RTMP client)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_async(self, coro: Any) -> Any:
        """Await a coroutine on this server's loop from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def players(self, name: str, app: str = "live") -> int:
        def count() -> int:
            assert self.ctx is not None
            stream = self.ctx.hub.get(app, name)
            return 0 if stream is None else stream.player_count

        return self.call(count)

    def published(self, name: str, app: str = "live") -> bool:
        return self.call(lambda: self.ctx is not None and self.ctx.hub.get(app, name) is not None)

    # On the server's loop only (in a scenario given to run(), or through call()):

    def session_of(self, client: RtmpClient) -> RtmpSession | None:
        """The server's open session for ``client``, matched by the client's address."""
        assert self.ctx is not None and client.transport is not None
        host, port = client.transport.get_extra_info("sockname")[:2]
        peer = f"{host}:{port}"
        found = next((s for s in self.ctx.sessions.values() if s.peer == peer), None)
        assert found is None or isinstance(found, RtmpSession)
        return found

    def idle(self) -> bool:
        """No session is left open: every client's close has reached the server."""
        assert self.ctx is not None
        return not self.ctx.sessions
