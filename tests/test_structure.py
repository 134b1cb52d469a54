"""Structure of the code base, measured with ``ast``: no import cycle among the project's modules
(imports inside functions included), and no function longer than ``MAX_FUNCTION_LINES``."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

IMPORT_SCOPE = ("trainer", "hitts_demo", "hitts_schema", "scripts", "benchmarks", "app.py")
"""Every module here is a node of the import graph."""

MAX_FUNCTION_LINES = 60
FUNCTION_LENGTH_SCOPE = ("trainer/**/*.py", "hitts_demo/**/*.py", "hitts_schema/**/*.py", "app.py")
"""Glob patterns (from the repository root) whose functions are held to ``MAX_FUNCTION_LINES``."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    files: list[Path] = []
    for entry in IMPORT_SCOPE:
        path = REPO / entry
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return {module_name(f): f for f in files if ".venv" not in f.parts}


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its body (functions included). ``from a
    import b`` imports ``a.b`` when that is a module, else ``a``; parent packages that Python
    initialises on the way are not counted (a package importing its own children is no cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with three colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 unvisited, 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_names_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_imports_inside_functions_are_edges(tmp_path: Path) -> None:
    source = "def f():\n    from .pipeline import x\n    from . import engine\n"
    path = REPO / "trainer" / "export.py"
    modules = {"trainer": path, "trainer.pipeline": path, "trainer.engine": path, "trainer.export": path}
    (tmp_path / "export.py").write_text(source)
    found = imported_modules("trainer.export", tmp_path / "export.py", modules)
    assert found == {"trainer.pipeline", "trainer.engine"}


def test_no_import_cycle() -> None:
    modules = project_modules()
    assert "trainer.pipeline" in modules and "app" in modules
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert "trainer.runs" in graph["trainer.export"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def long_functions(patterns: tuple[str, ...]) -> list[str]:
    """``path:line name (N lines)`` of every function over the limit; a function's length runs from
    its ``def`` line to its last line, docstring included."""
    found = []
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_the_limit() -> None:
    assert long_functions(FUNCTION_LENGTH_SCOPE) == []


MAX_FMT_SKIPS = 5
FMT_SKIP_SCOPE = (
    "*.py",
    "trainer/**/*.py",
    "hitts_demo/**/*.py",
    "hitts_schema/**/*.py",
    "scripts/*.py",
    "benchmarks/*.py",
    "tests/**/*.py",
)
"""Where ``# fmt: skip`` markers are held to ``FMT_SKIP_REASONS`` (ruff format, config in pyproject.toml)."""
FMT_SKIP_REASONS = {
    "trainer/data/synthetic_layout.py": "15 texture kinds unpacked from range(15): one enumeration, not 15 lines",
    "trainer/data/synthetic_render.py": "the surface attributes of every pixel, a table of 14 keys in rows",
}
"""File -> why its one ``# fmt: skip`` is there."""


def fmt_skips(patterns: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            if ".venv" in path.parts:
                continue
            count = sum(line.rstrip().endswith("# fmt: skip") for line in path.read_text().splitlines())
            if count:
                found[str(path.relative_to(REPO))] = count
    return found


def test_fmt_skips_are_few_and_explained() -> None:
    found = fmt_skips(FMT_SKIP_SCOPE)
    assert sum(found.values()) <= MAX_FMT_SKIPS, found
    assert {f: n for f, n in found.items() if f not in FMT_SKIP_REASONS or n > 1} == {}


FORMAT_SCOPE = ("trainer", "hitts_demo", "hitts_schema", "scripts", "benchmarks", "app.py", "tests")
"""Paths that ``ruff format --check`` must pass (pyproject's settings); widen as files are formatted."""


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_formatted() -> None:
    cmd = [sys.executable, "-m", "ruff", "format", "--check", *FORMAT_SCOPE]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
