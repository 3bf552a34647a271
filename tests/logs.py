"""The production log handler in tests: its escaping, flood filter and timer, into a buffer."""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator

from streamgate.log import FloodFilter, setup_logging

__all__ = ["WINDOW", "accounted", "lines_since", "real_log"]

WINDOW = 10.0  # the production window


@contextlib.contextmanager
def real_log(window: float = WINDOW) -> Iterator[io.StringIO]:
    """The production handler (escaping, flood filter, its timer), into a buffer."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging("info", "text", stream=stream, window=window)
    try:
        yield stream
    finally:
        for handler in root.handlers:
            for flood in handler.filters:
                if isinstance(flood, FloodFilter):
                    flood.close()
        root.handlers[:], level = saved
        root.setLevel(level)


def lines_since(stream: io.StringIO, mark: int) -> list[str]:
    return stream.getvalue()[mark:].splitlines()


def accounted(lines: list[str], what: str) -> int:
    """Connections the lines containing ``what`` stand for, held-back counts included."""
    total = 0
    for line in lines:
        if what in line:
            held = re.search(r"\(and (\d+) similar", line)
            total += 1 + (int(held.group(1)) if held else 0)
    return total
