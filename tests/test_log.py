"""Log flood control."""

from __future__ import annotations

import logging

from streamgate.log import FloodFilter


def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("streamgate.session", level, __file__, 1, msg, args, None)


def test_repeated_warnings_are_aggregated_per_template() -> None:
    now = [0.0]
    flood = FloodFilter(window=10, clock=lambda: now[0])
    passed = [flood.filter(record("refused %s", f"10.0.0.{i % 250}")) for i in range(2000)]
    assert passed.count(True) == 1
    assert flood.suppressed == 1999
    assert flood.filter(record("another template %s", 1))  # other messages are not held
    now[0] = 10.0
    late = record("refused %s", "10.0.0.1")
    assert flood.filter(late)
    assert late.getMessage() == "refused 10.0.0.1 (and 1999 similar in the last 10 s)"


def test_info_lines_are_never_held() -> None:
    flood = FloodFilter(window=10, clock=lambda: 0.0)
    assert all(flood.filter(record("x %s", i, level=logging.INFO)) for i in range(100))
