"""Log flood control."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from streamgate.log import FloodFilter, escape, flush_floods, setup_logging
from tests.logs import real_log


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


# ---------------------------------------------------------------- grouping by reason

END = "conn %d %s: disconnected (%s, %.1f s): %s"


def ended(conn: int, reason: str, level: int = logging.WARNING) -> logging.LogRecord:
    rec = record(END, conn, f"127.0.0.2:{conn}", "unknown", 0.0, reason, level=level)
    rec.reason = reason
    return rec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_of_one_template_are_grouped_by_their_reason() -> None:
    clock = Clock()
    written: list[logging.LogRecord] = []
    flood = FloodFilter(window=10, clock=clock, emit=written.append)
    reasons = ["invalid chunk size 0", "invalid chunk size 1", "invalid chunk size 4294967295",
               "message header of 16777215 bytes over the limit", "too many chunk streams"]
    passed = [r for i in range(500) if flood.filter(r := ended(i, reasons[i % 5]))]
    # Every reason is written once, with its own text, the moment it first happens.
    assert [r.getMessage().rsplit(": ", 1)[1] for r in passed] == reasons
    assert flood.suppressed == 495
    clock.now = 10.0
    assert flood.flush() == written
    # ... and each held-back count is written with its own reason, none with another's.
    counts = {r.reason: r.getMessage() for r in written}  # type: ignore[attr-defined]
    assert set(counts) == set(reasons)
    for reason, line in counts.items():
        assert line.endswith(f": {reason} (and 98 similar in the last 10 s)"), line


def test_held_counts_are_written_when_the_window_ends_without_another_line() -> None:
    clock = Clock()
    written: list[logging.LogRecord] = []
    flood = FloodFilter(window=10, clock=clock, emit=written.append)
    for i in range(1000):
        flood.filter(ended(i, "play refused: bad signature"))
    clock.now = 9.9
    assert flood.flush() == []  # the window is not over
    clock.now = 10.0
    (summary,) = flood.flush()
    # The last refused connection, standing for the 998 between it and the first.
    assert summary.getMessage() == (
        "conn 999 127.0.0.2:999: disconnected (unknown, 0.0 s): play refused: bad signature"
        " (and 998 similar in the last 10 s)"
    )
    clock.now = 30.0
    assert flood.flush() == []  # counted once
    assert flood.filter(ended(1000, "play refused: bad signature"))  # a new window


def test_a_steady_flood_writes_one_line_per_reason_and_window() -> None:
    clock = Clock()
    written: list[logging.LogRecord] = []
    flood = FloodFilter(window=10, clock=clock, emit=written.append)
    for i in range(10_000):  # 1,000 s of refusals, ten a second
        clock.now = i / 10
        rec = ended(i, "timed out waiting for the handshake")
        if flood.filter(rec):
            written.append(rec)
    flood.close()
    assert len(written) <= 1000 / 10 + 2
    held = sum(int(r.getMessage().split("(and ")[1].split()[0]) for r in written[1:])
    assert len(written) + held == 10_000  # every connection is accounted for


def test_peer_chosen_reasons_cannot_multiply_the_lines() -> None:
    clock = Clock()
    written: list[logging.LogRecord] = []
    flood = FloodFilter(window=10, clock=clock, emit=written.append, max_reasons=20)
    passed = sum(flood.filter(ended(i, f"'cmd{i}' before connect")) for i in range(10_000))
    flood.close()
    assert passed == 21  # 20 reasons apart, then one group for the rest
    assert len(written) == 1
    assert written[0].getMessage().endswith(
        "(and 9978 similar with other reasons in the last 10 s)"
    )
    assert len(flood._groups) <= 21


def test_groups_are_bounded_and_forgotten_when_idle() -> None:
    clock = Clock()
    flood = FloodFilter(window=10, clock=clock, max_groups=50)
    for i in range(5000):
        flood.filter(record(f"template {i} %s", i))  # an f-string call site: one template each
    assert len(flood._groups) <= 51
    clock.now = 10.0
    flood.flush()
    clock.now = 20.0
    flood.flush()
    assert len(flood._groups) == 0


def test_info_lines_with_a_reason_are_aggregated() -> None:
    clock = Clock()
    flood = FloodFilter(window=10, clock=clock)
    reason = "closed by the peer"
    passed = [flood.filter(ended(i, reason, level=logging.INFO)) for i in range(100)]
    assert passed.count(True) == 1


def test_the_timer_writes_the_count_after_the_flood_stops() -> None:
    written: list[logging.LogRecord] = []
    flood = FloodFilter(window=0.2, emit=written.append, timer=True)
    for i in range(50):
        flood.filter(ended(i, "play refused: token expired"))
    deadline = time.monotonic() + 10
    while not written and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the condition, with a deadline
    (summary,) = written
    assert summary.getMessage().endswith("(and 48 similar in the last 0.2 s)")


def test_flush_floods_writes_what_the_root_handler_holds() -> None:
    with real_log() as stream:
        log = logging.getLogger("streamgate.session")
        for i in range(10):
            log.warning("conn %d: refused: %s", i, "bad token", extra={"reason": "bad token"})
        assert len(stream.getvalue().splitlines()) == 1
        flush_floods()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        assert lines[1].endswith("conn 9: refused: bad token (and 8 similar in the last 10 s)")


# ---------------------------------------------------------------- escaping

HOSTILE = [
    "x\nFAKE-INJECTED-LINE ERROR streamgate: forged",
    "cr\rover",
    "nul\x00byte",
    "del\x7f c1\x85\x9b",
    "evil\u202etxt.exe",
    "isolates\u2066\u2067\u2068\u2069 marks\u200e\u200f\u061c",
    "separators\u2028\u2029",
    "not-utf8-\udcff",
    "\x1b[31mred\x1b[0m",
    "back\\slash\\n",
]


def formatted(fmt: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("info", fmt, stream=stream)
        log = logging.getLogger("streamgate.session")
        if exc:
            try:
                raise ValueError(*args)
            except ValueError:
                log.exception("failed")
        else:
            log.info("conn 1 127.0.0.2:5000: play of live/%s refused: %s", *args)
    finally:
        flush_floods()
        root.handlers[:], level = saved
        root.setLevel(level)
        handler.close()
    return stream.getvalue()


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_text_lines_are_escaped(name: str) -> None:
    out = formatted("text", name, name)
    assert out.endswith("\n")
    assert out.count("\n") == 1  # one record, one line
    line = out[:-1]
    assert all(c.isprintable() and c not in "\u202e\u2066\u200e\u061c" for c in line), line
    assert "FAKE-INJECTED-LINE" not in line or "x\\nFAKE-INJECTED-LINE" in line


def test_the_escapes_are_readable_and_unambiguous() -> None:
    line = formatted("text", "a\nb\x00c\u202ed\\n", "e\x85f")
    assert line.rstrip("\n").endswith(
        "play of live/a\\nb\\x00c\\u202ed\\\\n refused: e\\x85f"
    )
    assert escape("café стрим 名前") == "café стрим 名前"  # printable text is left alone


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_json_lines_are_json_strings_of_the_exact_text(name: str) -> None:
    out = formatted("json", name, name)
    assert out.count("\n") == 1
    assert out.isascii()  # nothing raw: no bidi, no C1, no NUL in the file
    entry = json.loads(out)
    assert entry["message"] == f"conn 1 127.0.0.2:5000: play of live/{name} refused: {name}"


def test_tracebacks_keep_their_lines_but_not_the_peers_controls() -> None:
    out = formatted("text", "bad\x00\u202ename", exc=True)
    assert "Traceback" in out and "ValueError: bad\\x00\\u202ename" in out
    assert "\x00" not in out and "\u202e" not in out
    entry = json.loads(formatted("json", "bad\x00name", exc=True))
    assert "ValueError: bad\x00name" in entry["exc"]
