"""The repository stands alone: nothing in it points at material users do not get."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A link or path outside the checkout, and references to a tracker's numbers
# (the reader of a module or document has neither).
_OUTSIDE = re.compile(r"\.\./shared|BACKGROUND\.md")
_ISSUE = re.compile(r"\bissue\s*#?\d+|\bissue #", re.IGNORECASE)


def _tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    paths = [ROOT / line for line in out.splitlines()]
    assert any(p.name == "README.md" for p in paths)  # the scan sees the tree
    return [p for p in paths if p.suffix in {".py", ".md", ".toml", ".txt", ""} and p.is_file()]


def test_nothing_points_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _tracked()
        if path != me
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line) or _ISSUE.search(line)
    ]
    assert not found, "\n".join(found)
