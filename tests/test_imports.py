"""The package reads top-down: every module imports on its own, and no import cycle.

Two checks. One interpreter imports each module in turn after purging every
``streamgate`` module from ``sys.modules``, so a module that only works when
something else happened to be imported first fails here. The static import
graph, read with :mod:`ast`, must have no cycle; imports under
``if TYPE_CHECKING:`` count, because a cycle of annotations is still two
modules that each need the other to be read. Imports inside functions do not
count: they run after every module is loaded and cannot tangle the load order.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "streamgate"

# Type-only edges still to be removed by the owners of those modules. Each must
# exist (the test fails once one is gone, so the list shrinks with the code).
KNOWN_TYPE_ONLY: set[tuple[str, str]] = set()  # none left


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(
    body: list[ast.stmt], type_only: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Imports that run when the module is loaded (``if``/``try`` included), not in defs."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_only
        elif isinstance(node, ast.If):
            yield from _module_level_imports(node.body, type_only or _type_checking(node.test))
            yield from _module_level_imports(node.orelse, type_only)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse):
                yield from _module_level_imports(block, type_only)


def _targets(
    name: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]
) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    base = node.module or ""
    if node.level:
        parts = name.split(".")
        if path.name != "__init__.py":
            parts.pop()
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    for alias in node.names:
        # ``from pkg import mod`` depends on the module (its package is a parent,
        # loaded first anyway, as for any import); ``from mod import name`` on mod.
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in known else base


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module of the package: whether only under TYPE_CHECKING}."""
    known = modules()
    graph: dict[str, dict[str, bool]] = {}
    for name, path in known.items():
        edges: dict[str, bool] = {}
        tree = ast.parse(path.read_text(), str(path))
        for node, type_only in _module_level_imports(tree.body):
            for target in _targets(name, path, node, known):
                if target in known and target != name:
                    edges[target] = edges.get(target, True) and type_only
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (a depth-first walk, no recursion)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                done.add(path.pop())
                stack.pop()
            elif nxt in path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_reports_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_type_checking_imports() -> None:
    graph = import_graph()
    assert graph["streamgate.rtmp"]["streamgate.rtmp.chunk"] is False
    for source, target in KNOWN_TYPE_ONLY:
        assert graph[source].get(target) is True, f"{source} -> {target} is gone: drop it"


def test_no_import_cycle() -> None:
    graph = {
        source: {t for t in targets if (source, t) not in KNOWN_TYPE_ONLY}
        for source, targets in import_graph().items()
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_every_module_imports_on_its_own() -> None:
    # ``__main__`` modules run the program when imported.
    names = [name for name in modules() if not name.endswith("__main__")]
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'streamgate']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ':\\n' + traceback.format_exc(limit=-3))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
