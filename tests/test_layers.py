"""Habits held by tools: no part imports another part's private names (a leading underscore), and
the import layers in pyproject.toml hold (lint-imports runs in `make test` too; this keeps the
check in the test run for anyone who calls pytest alone)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeship

PKG = Path(edgeship.__file__).parent
ROOT = PKG.parent.parent


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _from_target(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` reads, its relative dots resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private_imports() -> list[str]:
    found = []
    for f in sorted(PKG.rglob("*.py")):
        here = "edgeship." + ".".join(f.relative_to(PKG).with_suffix("").parts)
        here = here.removesuffix(".__init__")
        package = here if f.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _from_target(node, package)
            if not target.startswith("edgeship") or _part(target) == _part(here):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{f.relative_to(PKG)}:{node.lineno} imports {alias.name} from {target}")
    return found


def test_no_part_imports_another_parts_private_names():
    assert _private_imports() == []


LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is a test extra")
def test_import_layers_hold():
    r = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]


# ---- the shape of the code (issue 36): held by tests, not by a sentence in DESIGN.md ----------

def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        name = ".".join(("edgeship", *f.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = f
    return out


def _imports(module: str, f: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported edgeship module, line, where) of every import in ``f``, TYPE_CHECKING blocks and
    function bodies included; where is "top", "function" or "typing"; ``from pkg import mod`` names
    the submodule."""
    package = module if f.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(f.read_text())
    inner = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(fn) if n is not fn}
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for n in ast.walk(block) if n is not block}
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _from_target(node, package)
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        for n in names:
            while n not in known and "." in n:
                n = n.rpartition(".")[0]
            if n in known and n != module:
                out.append((n, node.lineno, "function" if id(node) in inner else
                            "typing" if id(node) in typing_only else "top"))
    return out


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle():
    """TYPE_CHECKING imports and imports inside functions count: a circle is a circle however it
    is hidden (a package and a submodule that imports the package back are one too)."""
    known = _modules()
    edges = {m: {t for t, _, _ in _imports(m, f, known)} for m, f in known.items()}
    assert _cycles(edges) == []


def test_no_private_name_of_another_part_is_named_in_a_string():
    """``run_isolated("edgeship.api:_child", ...)`` reaches a private name as surely as an import."""
    import re

    found = []
    for f in sorted(PKG.rglob("*.py")):
        here = _part("edgeship." + ".".join(f.relative_to(PKG).with_suffix("").parts))
        for m in re.finditer(r"[\"'](edgeship(?:\.\w+)*):(_\w+)", f.read_text()):
            if _part(m.group(1)) != here:
                found.append(f"{f.relative_to(PKG)} names {m.group(1)}:{m.group(2)}")
    assert found == []


def test_no_file_is_a_room_holding_several_things():
    """No module over 700 lines; the API a facade of at most 300."""
    long = {str(f.relative_to(PKG)): n for f in PKG.rglob("*.py") if (n := len(f.read_text().splitlines())) > 700}
    assert long == {}
    assert len((PKG / "api.py").read_text().splitlines()) <= 300


def test_no_function_imports_again_what_its_module_imported_at_the_top():
    known = _modules()
    found = []
    for m, f in known.items():
        got = _imports(m, f, known)
        top = {t for t, _, where in got if where == "top"}
        found += [f"{f.relative_to(PKG)}:{line} imports {t} again" for t, line, where in got if where == "function" and t in top]
    assert found == []
