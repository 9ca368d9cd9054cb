"""The supervisor and its workers meet only in `common/`: no import crosses between them, none forms a cycle.

The supervisor must stay light and ML-free, so it imports nothing of the worker's; what both
sides share (the wire protocol, the backend descriptions, logs, nvidia-smi) has one place,
`common/`, which imports neither side. Read from the source with `ast`, so every import
counts, also one inside a function or under TYPE_CHECKING, and relative ones are resolved.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

PACKAGES = ("common", "supervisor", "worker")
#: What each package may not import (a name and everything under it).
FORBIDDEN = {
    "supervisor": ("worker",),
    "worker": ("supervisor",),
    "common": ("supervisor", "worker"),
}


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    path: Path  # its file, relative to the repository
    line: int
    target: str  # the module imported (for `from M import name`: M.name when that is a module, else M)
    #: Run when the module is imported: not inside a function, nor under `if TYPE_CHECKING:`.
    top_level: bool

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} ({self.path.as_posix()}:{self.line})"


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of the project's packages under `root`, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name `from ... import` reads from (`from . import x` in `a.b.c`: `a.b`)."""
    if node.level == 0:
        return node.module or ""
    parts = (module if is_package else module.rpartition(".")[0]).split(".")
    assert node.level <= len(parts), f"{module}: relative import beyond its top-level package (line {node.lineno})"
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def imports_of(root: Path, module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import statement in `path`, wherever it is."""
    is_package = path.name == "__init__.py"
    where = path.relative_to(root)

    def visit(node: ast.AST, top_level: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, where, node.lineno, alias.name, top_level)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                yield Import(module, where, node.lineno, target, top_level)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            top_level = False
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from visit(statement, False)
            for statement in node.orelse:
                yield from visit(statement, top_level)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, top_level)

    yield from visit(ast.parse(path.read_text(), filename=str(path)), True)


def all_imports(root: Path) -> list[Import]:
    modules = project_modules(root)
    known = set(modules)
    # One per module imported (`from M import a, b` imports M once), in the order they appear.
    return list(
        dict.fromkeys(found for module, path in modules.items() for found in imports_of(root, module, path, known))
    )


def crossings(imports: list[Import], package: str) -> list[Import]:
    """The imports of `package`'s modules that name a package it may not import."""
    return [
        found
        for found in imports
        if found.module.split(".")[0] == package and found.target.split(".")[0] in FORBIDDEN[package]
    ]


def cycles(imports: list[Import]) -> list[list[Import]]:
    """Import cycles among the project's modules, through the imports run at import time: one
    cycle (as the imports that close it) for each time a depth-first walk meets one."""
    known = {found.module for found in imports}
    edges: dict[str, list[Import]] = {}
    for found in imports:
        if found.top_level and found.target in known:
            edges.setdefault(found.module, []).append(found)
    done: set[str] = set()
    path: list[Import] = []
    on_path: dict[str, int] = {}  # module → its index in `path` (the import that left it)
    found_cycles: list[list[Import]] = []

    def walk(module: str) -> None:
        on_path[module] = len(path)
        for edge in edges.get(module, []):
            if edge.target in on_path:
                found_cycles.append([*path[on_path[edge.target] :], edge])
            elif edge.target not in done:
                path.append(edge)
                walk(edge.target)
                path.pop()
        del on_path[module]
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            walk(module)
    return found_cycles


def _describe(cycle: list[Import]) -> str:
    steps = " → ".join(f"{edge.target} (line {edge.line})" for edge in cycle)
    return f"import cycle: {cycle[0].module} → {steps}"


# -- the project ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project() -> list[Import]:
    return all_imports(REPO)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_crosses_the_boundary(project: list[Import], package: str) -> None:
    bad = crossings(project, package)
    forbidden = " or ".join(f"{name}*" for name in FORBIDDEN[package])
    assert not bad, f"{package}/ may not import {forbidden}:\n" + "\n".join(map(str, bad))


def test_no_import_cycles(project: list[Import]) -> None:
    found = cycles(project)
    assert not found, "\n".join(map(_describe, found))


def test_the_check_reads_the_project(project: list[Import]) -> None:
    """Not vacuous: every package is read, and imports of each kind are resolved to modules."""
    seen = {(found.module, found.target) for found in project}
    assert ("worker.server", "common.protocol") in seen
    assert ("supervisor.models.files", "common.lane_plan") in seen  # `from common import lane_plan`
    assert ("common.protocol.live", "common.protocol.types") in seen
    assert ("worker.backends.faster_whisper.engine", "worker.backends.faster_whisper.decoder") in seen


# -- the checker itself, on a made-up tree -----------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)


def test_the_check_finds_late_relative_and_type_checking_imports(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "supervisor/__init__.py": "",
            "supervisor/late.py": "def f() -> None:\n    from worker import engine\n",
            "worker/__init__.py": "",
            "worker/engine.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import supervisor.late\n",
            "common/__init__.py": "",
            "common/shared.py": "",
            "common/sub/__init__.py": "from . import mod\n",
            "common/sub/sibling.py": "",
            "common/sub/mod.py": "from .. import shared\nfrom .sibling import x\nclass C:\n    import worker.engine\n",
        },
    )
    imports = all_imports(tmp_path)
    assert [str(found) for found in crossings(imports, "supervisor")] == [
        "supervisor.late imports worker.engine (supervisor/late.py:2)"
    ]
    assert [(found.module, found.target) for found in crossings(imports, "worker")] == [
        ("worker.engine", "supervisor.late")
    ]
    assert [(found.target, found.top_level) for found in imports if found.module.startswith("common.sub")] == [
        ("common.sub.mod", True),
        ("common.shared", True),
        ("common.sub.sibling", True),
        ("worker.engine", True),
    ]
    assert [found.target for found in crossings(imports, "common")] == ["worker.engine"]
    assert cycles(imports) == []  # the function's and TYPE_CHECKING's imports run later, or never


def test_the_check_reports_a_cycle(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "common/__init__.py": "",
            "common/a.py": "from common import b\n",
            "common/b.py": "import common.c\n",
            "common/c.py": "from .a import x\n",
        },
    )
    (cycle,) = cycles(all_imports(tmp_path))
    assert _describe(cycle) == "import cycle: common.a → common.b (line 1) → common.c (line 1) → common.a (line 1)"


def test_the_server_imports_no_ml_library_and_no_client_tooling() -> None:
    """What `asr-supervisor` imports to serve: no ML library (a worker's), and not httpx or
    rich (asrctl's): importing httpx pulls in its command line's rich and pygments, megabytes
    an idle server held for nothing."""
    import subprocess
    import sys

    modules = ("torch", "ctranslate2", "faster_whisper", "nemo", "onnxruntime", "httpx", "rich", "pygments")
    script = (
        "import sys, supervisor.cli, supervisor.interfaces.http.app, supervisor.interfaces.wyoming.server, "
        f"supervisor.preflight, supervisor.service; print([m for m in {modules!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
