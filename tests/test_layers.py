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


def _private_imports() -> list[str]:
    found = []
    for f in sorted(PKG.rglob("*.py")):
        here = "edgeship." + ".".join(f.relative_to(PKG).with_suffix("").parts)
        here = here.removesuffix(".__init__")
        package = here if f.name == "__init__.py" else here.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
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
