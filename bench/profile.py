"""Where a streamgate process spends its time: py-spy, summarised per function.

``py-spy record --format raw`` writes collapsed stacks (``a;b;c N``). From
them: *self* time (the innermost Python frame of each sample, i.e. the
function running, C calls it makes included) and *inclusive* time (any
frame on the stack). Idle samples (the event loop waiting in epoll) are not
recorded by py-spy, so percentages are of the time the process was busy.
``--native`` is tried first, so time inside uvloop and the kernel calls it
makes shows as its own frames; without it, it is charged to the Python line
that called in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["profile_pid", "summarise"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def _name(frame: str, line: bool = False) -> str:
    """``func (file)``, or with ``line``: ``func (file:line)`` when py-spy gave one."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "streamgate/", "python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    if line and m.group("line"):
        file += f":{m.group('line')}"
    return f"{m.group('func')} ({file})"


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()  # the innermost frame, with its line
    self_files: Counter[str] = Counter()  # the innermost frame's file or library
    ours: Counter[str] = Counter()  # inclusive, streamgate's frames only, with lines
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        raw_frames = [f for f in stack.split(";") if f.strip()]
        self_lines[_name(raw_frames[-1], line=True)] += count
        self_files[frames[-1].rpartition(" (")[2].rstrip(")")] += count
        for name in {_name(f, line=True) for f in raw_frames if "streamgate/" in f}:
            ours[name] += count
        for name in set(frames):
            inclusive[name] += count

    def table(counter: Counter[str], count: int = top) -> list[list[Any]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(count)]

    return {
        "samples": total,
        "self_pct": table(self_time),
        "inclusive_pct": table(inclusive),
        "self_lines_pct": table(self_lines),
        "self_files_pct": table(self_files),
        "streamgate_inclusive_pct": table(ours, 25),
    }


def profile_pid(
    pid: int, stem: Path, seconds: float = 10.0, rate: int = 100
) -> dict[str, Any] | None:
    """Sample ``pid`` for ``seconds``; write ``stem``.txt (raw) and .svg; return the summary."""
    pyspy = shutil.which("py-spy")
    # The repository's .venv, or the one running the bench (a worktree has none).
    for venv in (
        Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy",
        Path(sys.executable).parent / "py-spy",
    ):
        if pyspy is None and venv.exists():
            pyspy = str(venv)
    if pyspy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    raw = stem.with_suffix(".txt")
    base = [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{seconds:g}",
        "--rate",
        str(rate),
    ]
    done = None
    # --native pauses the process for each sample; this runs outside the measured windows.
    for extra in (["--native"], ["--nonblocking"]):
        done = subprocess.run(
            [*base, *extra, "--format", "raw", "--output", str(raw)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
        if done.returncode == 0 and raw.exists():
            native = bool(extra)
            break
    else:
        return {"error": f"py-spy failed: {(done.stderr if done else '')[-500:]}"}
    summary = summarise(raw.read_text())
    summary["native"] = native
    summary["raw"] = str(raw)
    return summary
