"""Logging set-up: human-readable text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["FloodFilter", "setup_logging"]


class FloodFilter(logging.Filter):
    """Aggregates repeated warnings so an attack cannot burn CPU on logging.

    Records with the same logger, level and message template (the arguments
    may differ: IPs, connection ids) pass once per ``window`` seconds; the
    rest are counted, and the next one to pass says how many were held back:
    "... (and 1834 similar in the last 10 s)". Debug and info lines pass
    untouched; a warning flood is what an attacker can cause.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window:
            held = int(entry[1]) if entry is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 10_000:  # bounded: forget the oldest templates
                self._seen.pop(next(iter(self._seen)))
            if held:
                record.msg = f"{record.msg} (and {held} similar in the last {self.window:g} s)"
            return True
        entry[1] = int(entry[1]) + 1
        self.suppressed += 1
        return False


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(FloodFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
