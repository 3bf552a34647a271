"""The stream hub: which streams exist, who publishes them, who waits for them.

Invariants:

* At most one publisher per (app, name); a second is refused with
  ``NetStream.Publish.BadName``.
* A player of a name nobody publishes is refused with
  ``NetStream.Play.StreamNotFound`` at once (``play_wait`` 0, like
  nginx-rtmp's ``idle_streams off``) or after waiting at most ``play_wait``
  seconds; nothing waits without a deadline.
* A publisher that sends no media for ``publish_idle_timeout`` is dropped,
  and its players are ended with ``NetStream.Play.UnpublishNotify``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from streamgate.errors import StreamgateError
from streamgate.relay.clock import Clock, TimerHandle, notify
from streamgate.relay.stream import FanoutSettings, Stream
from streamgate.rtmp.messages import Status

__all__ = ["HubSettings", "PublisherSink", "StreamBusy", "StreamHub", "Waiter"]


class StreamBusy(StreamgateError):
    """The name is already being published."""

    code = Status.PUBLISH_BAD_NAME


class PublisherSink(Protocol):
    def kick(self, code: str, description: str) -> None:
        """Tell the publisher why and close it."""


@dataclass(frozen=True, slots=True)
class HubSettings:
    play_wait: float = 0.0
    publish_idle_timeout: float = 10.0


@dataclass(slots=True)
class Waiter:
    """A player waiting for a publisher; ``on_ready`` or ``on_refused`` fires once."""

    on_ready: Callable[[Stream], None]
    on_refused: Callable[[str, str], None]
    timer: TimerHandle | None = None
    done: bool = False


class StreamHub:
    def __init__(self, clock: Clock, fanout: FanoutSettings, settings: HubSettings) -> None:
        self.clock = clock
        self.fanout = fanout
        self.settings = settings
        self._streams: dict[tuple[str, str], Stream] = {}
        self._publishers: dict[Stream, PublisherSink] = {}
        self._waiters: dict[tuple[str, str], list[Waiter]] = {}
        # Told (app, name, True) on each publish and (..., False) when it ends
        # (a worker of several: so the machine knows which worker holds a name).
        self.on_change: Callable[[str, str, bool], None] | None = None

    def __iter__(self) -> Iterator[Stream]:
        return iter(list(self._streams.values()))

    def __len__(self) -> int:
        return len(self._streams)

    def get(self, app: str, name: str) -> Stream | None:
        return self._streams.get((app, name))

    def publisher(self, stream: Stream) -> PublisherSink | None:
        """Whoever publishes ``stream`` (a session, or an in-process source)."""
        return self._publishers.get(stream)

    # ------------------------------------------------------------ publishing

    def publish(self, app: str, name: str, publisher: PublisherSink) -> Stream:
        key = (app, name)
        if key in self._streams:
            raise StreamBusy(f"{app}/{name} is already being published")
        stream = Stream(app, name, self.clock, self.fanout)
        self._streams[key] = stream
        self._publishers[stream] = publisher
        if self.on_change is not None:
            self.on_change(app, name, True)
        for waiter in self._waiters.pop(key, []):
            self._settle(waiter)
            notify(waiter.on_ready, stream)
        return stream

    def unpublish(self, stream: Stream, code: str = Status.PLAY_UNPUBLISH_NOTIFY) -> None:
        """The publisher left: end the stream for its players."""
        key = (stream.app, stream.name)
        if self._streams.get(key) is stream:
            del self._streams[key]
            if self.on_change is not None:
                self.on_change(stream.app, stream.name, False)
        self._publishers.pop(stream, None)
        stream.end(code, f"{stream.app}/{stream.name} is no longer published")

    # ------------------------------------------------------------ playing

    def request_play(
        self,
        app: str,
        name: str,
        query: str,
        on_ready: Callable[[Stream], None],
        on_refused: Callable[[str, str], None],
    ) -> Waiter | None:
        """PlaySource: serve now, refuse now, or wait a bounded time for a publisher.

        Exactly one of the callbacks fires, possibly before this returns. The
        returned waiter (if any) is handed back to :meth:`cancel_play` when
        the player leaves first.
        """
        stream = self._streams.get((app, name))
        if stream is not None:
            on_ready(stream)
            return None

        def missing() -> None:
            on_refused(Status.PLAY_STREAM_NOT_FOUND, f"{app}/{name} is not published")

        if self.settings.play_wait <= 0:
            missing()
            return None
        waiter = Waiter(on_ready, on_refused)
        key = (app, name)
        self._waiters.setdefault(key, []).append(waiter)

        def expire() -> None:
            self._forget(key, waiter)
            if not waiter.done:
                waiter.done = True
                missing()

        waiter.timer = self.clock.call_later(self.settings.play_wait, expire)
        return waiter

    def take_waiters(self, app: str, name: str) -> list[Waiter]:
        """The players waiting for ``app``/``name``, no longer waiting here (their
        timers stopped): a worker hands them to the worker that got the publisher."""
        waiters = self._waiters.pop((app, name), [])
        for waiter in waiters:
            self._settle(waiter)
        return waiters

    def cancel_play(self, app: str, name: str, waiter: Waiter) -> None:
        self._forget((app, name), waiter)
        self._settle(waiter)

    def _forget(self, key: tuple[str, str], waiter: Waiter) -> None:
        waiters = self._waiters.get(key)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[key]

    @staticmethod
    def _settle(waiter: Waiter) -> None:
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    # ------------------------------------------------------------ idle publishers

    def sweep(self) -> list[Stream]:
        """Drop publishers that went quiet; returns the streams that were ended."""
        now = self.clock.now()
        limit = self.settings.publish_idle_timeout
        idle = [s for s in self._streams.values() if now - s.last_media > limit]
        for stream in idle:
            publisher = self._publishers.get(stream)
            self.unpublish(stream)
            if publisher is not None:
                publisher.kick(
                    Status.PUBLISH_IDLE, f"no media for {limit:g} s: the publisher is dropped"
                )
        return idle
