"""Logging set-up: human-readable text or JSON lines, escaped and flood-proof.

Two guarantees hold for every record, whoever logs it:

* One record is one line, and no peer-supplied byte reaches the log raw. The
  text formatter escapes control characters (C0, DEL, C1, NUL), line and
  paragraph separators, Unicode bidi controls (U+202E and friends) and lone
  surrogates as ``\\xNN`` / ``\\uNNNN`` (``\\n`` for a newline), and doubles
  backslashes so an escape cannot be forged either. JSON lines are
  ``json.dumps`` output in ASCII. Escaping the final message, not each call
  site's arguments, is what keeps a forgotten call site safe.
* A flood writes a bounded number of lines: :class:`FloodFilter`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import IO, Final, TypeAlias

__all__ = ["FloodFilter", "escape", "flush_floods", "setup_logging"]

# Everything a terminal, grep or a log viewer may take for something else.
_UNSAFE: Final = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)
_UNSAFE_KEEP_NEWLINES: Final = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)
_ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)
_SHORT: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` as one printable line: controls, bidi and newlines escaped."""
    return _UNSAFE.sub(_escape_char, text)


class _TextFormatter(logging.Formatter):
    """The text format, with the message escaped (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: _ExcInfo) -> str:
        return _UNSAFE_KEEP_NEWLINES.sub(_escape_char, super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _UNSAFE_KEEP_NEWLINES.sub(_escape_char, stack_info)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line; ASCII only, so nothing raw reaches the file."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        reason = record.__dict__.get("reason")
        if reason is not None:
            entry["reason"] = str(reason)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


# The key of a template's group for every reason beyond ``max_reasons``.
_OTHERS: Final = "\x00others"


class _Group:
    __slots__ = ("held", "last", "start")

    def __init__(self, start: float) -> None:
        self.start = start  # when the current window began
        self.held = 0  # records held back in it
        self.last: logging.LogRecord | None = None  # the last of them, written at the end


class FloodFilter(logging.Filter):
    """Aggregates repeated lines so an attack cannot flood the log or burn CPU on it.

    Warnings, and any record logged with ``extra={"reason": ...}`` (the one
    line of a connection that never played or published, whatever its
    level), are grouped by logger, level, message template and reason: the
    reason is the ``reason`` extra when a call site sets one, so lines of
    one template with different reasons (``invalid chunk size 0``, ``16 MB
    header``) are counted apart. The first record of a group passes; the
    others within ``window`` seconds are held back and counted, and when the
    window ends the count is written: on the next record of the group
    ("... (and 1834 similar in the last 10 s)"), or, if none comes, by
    :meth:`flush` (a timer, shutdown) on the last held record. A group with
    no record for a whole window is forgotten.

    Bounded whatever the peers send: a template keeps at most
    ``max_reasons`` reasons apart (the rest share one group, "similar with
    other reasons") and there are at most ``max_groups`` groups, so a flood
    writes at most about two lines per group and window. Debug and info
    lines without a reason pass untouched.

    ``emit`` writes the counts :meth:`flush` releases (``setup_logging``
    passes the handler's ``handle``); with ``timer`` a background timer
    flushes them when a window ends, so a count is written after the flood
    stops too, even when the event loop is idle or gone.
    """

    def __init__(
        self,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        emit: Callable[[logging.LogRecord], object] | None = None,
        timer: bool = False,
        max_reasons: int = 20,
        max_groups: int = 2000,
    ) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.emit = emit
        self.timer = timer
        self.max_reasons = max_reasons
        self.max_groups = max_groups
        self.suppressed = 0
        # Oldest window first: expired groups are found at the front.
        self._groups: OrderedDict[tuple[str, int, str, str | None], _Group] = OrderedDict()
        self._reasons: Counter[tuple[str, int, str]] = Counter()
        # Records arrive from any thread (the loop, to_thread workers, the timer).
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._timer_at: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if attrs.get("flood_summary"):
            return True  # a count this filter released
        reason = attrs.get("reason")
        if reason is None and record.levelno < logging.WARNING:
            return True
        template = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            passed = self._count(template, None if reason is None else str(reason), record, now)
            due = self._expire(now, force=False)
        self._write(due)
        return passed

    def flush(self, force: bool = False) -> list[logging.LogRecord]:
        """Release the counts of the windows that ended (all of them if ``force``).

        Returns the records written through ``emit`` (or to be written, without one).
        """
        with self._lock:
            due = self._expire(self.clock(), force=force)
        self._write(due)
        return due

    def close(self) -> None:
        """Write every count still held back and stop the timer (shutdown)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._timer_at = None
        self.flush(force=True)

    # ------------------------------------------------------------ under the lock

    def _count(
        self, template: tuple[str, int, str], reason: str | None, record: logging.LogRecord,
        now: float,
    ) -> bool:
        groups = self._groups
        key = (*template, reason)
        group = groups.get(key)
        if group is None and reason is not None and self._reasons[template] >= self.max_reasons:
            key = (*template, _OTHERS)  # a peer choosing the reason text gains nothing
            group = groups.get(key)
        if group is None and len(groups) >= self.max_groups:
            key = ("", 0, "", _OTHERS)
            group = groups.get(key)
        if group is None:
            groups[key] = _Group(now)
            if key[3] is not None and key[3] != _OTHERS:
                self._reasons[template] += 1
            return True
        if now - group.start >= self.window:
            # This record ends its group's window: it carries the count.
            held = group.held
            group.start, group.held, group.last = now, 0, None
            groups.move_to_end(key)
            if held:
                record.msg = f"{record.msg} ({self._counted(key, held)})"
            return True
        group.held += 1
        group.last = record
        self.suppressed += 1
        self._arm(group.start + self.window)
        return False

    def _counted(self, key: tuple[str, int, str, str | None], held: int) -> str:
        others = " with other reasons" if key[3] == _OTHERS else ""
        return f"and {held} similar{others} in the last {self.window:g} s"

    def _expire(self, now: float, force: bool) -> list[logging.LogRecord]:
        due: list[logging.LogRecord] = []
        groups = self._groups
        # Each group is looked at once: a flushed one moves to the back, fresh.
        for _ in range(len(groups)):
            key, group = next(iter(groups.items()))
            if not force and now - group.start < self.window:
                break  # oldest first: the rest are younger still
            if group.held and group.last is not None:
                summary = logging.makeLogRecord(group.last.__dict__)
                if group.held > 1:
                    summary.msg = f"{summary.msg} ({self._counted(key, group.held - 1)})"
                summary.flood_summary = True
                # Written now: stamped now, so the log stays in time order.
                summary.created = time.time()
                summary.msecs = summary.created % 1 * 1000
                due.append(summary)
                group.start, group.held, group.last = now, 0, None
                groups.move_to_end(key)
                continue
            del groups[key]  # a whole window without a record
            template = key[:3]
            if key[3] is not None and key[3] != _OTHERS:
                self._reasons[template] -= 1
                if self._reasons[template] <= 0:
                    del self._reasons[template]
        return due

    def _arm(self, at: float) -> None:
        if not self.timer or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        timer = threading.Timer(max(0.0, at - self.clock()), self._on_timer)
        timer.daemon = True  # never keeps the process alive; close() writes the rest
        self._timer, self._timer_at = timer, at
        timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = self._timer_at = None
            due = self._expire(self.clock(), force=False)
            # Once a window: the next group still holding something, if any.
            for group in self._groups.values():
                if group.held:
                    self._arm(group.start + self.window)
                    break
        self._write(due)

    def _write(self, due: list[logging.LogRecord]) -> None:
        if self.emit is not None:
            for record in due:
                self.emit(record)


def flush_floods() -> None:
    """Write the counts every root handler's :class:`FloodFilter` still holds (shutdown)."""
    for handler in logging.getLogger().handlers:
        for flood in handler.filters:
            if isinstance(flood, FloodFilter):
                flood.close()


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    stream: IO[str] | None = None,
    window: float = 10.0,
    worker: int | None = None,
) -> None:
    """Log to ``stream`` (stderr) in ``fmt``, escaped, through a :class:`FloodFilter`.

    ``window`` is the filter's aggregation window in seconds; ``worker``, a
    worker process's id, is on every line ("[w1]", or ``"worker": 1``).
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(worker))
    else:
        tag = "" if worker is None else f"[w{worker}] "
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s")
        )
    handler.addFilter(FloodFilter(window, emit=handler.handle, timer=True))
    root = logging.getLogger()
    for old in root.handlers:
        for flood in old.filters:
            if isinstance(flood, FloodFilter):
                flood.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
