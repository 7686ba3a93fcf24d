"""The light Python runtime a bundle carries: ``integration/python/edgeship_light/``.

A device runs a bundle's ``classify.py`` without edgeship installed (``pip install edgeship``
would pull torch and every converter): the bundle carries the modules of edgeship that
:mod:`edgeship.runtime` runs on, copied unchanged into the package ``edgeship_light`` (they import
each other relatively, so they work under that name), and a ``requirements.txt`` naming what
they need: numpy, Pillow and onnxruntime, at the versions this machine checked the bundle with.

Which modules: :func:`light_closure` follows every relative import from ``runtime/`` and
refuses (:class:`LightRuntimeError`, so ``package`` fails loudly) a copied module that imports,
where it runs at import time, anything but the standard library, numpy, Pillow, onnxruntime and
the other copied modules, or that imports an edgeship module not accounted for here. Modules the
runtime reaches only for type checking or on the full loader's path (:data:`NOT_COPIED`) are
left out; ``targets`` is replaced by a stub that says an artifact of another format needs the full
edgeship (``Classifier.from_bundle`` then skips it and serves the next one of the fallback order).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

__all__ = ["light_closure", "write_light_runtime", "requirements", "LightRuntimeError", "LIGHT_PACKAGE",
           "LIGHT_DEPENDENCIES"]

LIGHT_PACKAGE = "edgeship_light"
ENTRY = "runtime"
#: import name -> distribution name: what the copied modules may import where they run
LIGHT_DEPENDENCIES = {"numpy": "numpy", "PIL": "pillow", "onnxruntime": "onnxruntime"}
#: edgeship modules the copied ones import only for type checking or inside functions of the full
#: path (never at import time): not copied
NOT_COPIED = {
    "targets": "the full loader, for formats other than ONNX/ORT (a stub stands in for it)",
    "artifact": "type hints; the full loader's records (pydantic)",
    "config": "type hints (deploy configuration)",
    "sources": "type hints (source models)",
    "tasks.records": "the task records (pydantic); the glue reads the same JSON as plain dicts",
}


def _not_copied(mod: list[str]) -> str | None:
    """The :data:`NOT_COPIED` entry that holds module ``mod`` (its parts), if one does."""
    dotted = ".".join(mod)
    return next((k for k in NOT_COPIED if dotted == k or dotted.startswith(k + ".")), None)
#: third-party modules imported inside functions the light runtime never calls
LAZY_ELSEWHERE = {"onnx": "ONNX graph helpers of formats/onnx.py", "yaml": "readers: YAML files",
                  "skimage": "data: the sample photos", "scipy": "readers/audio: resampling .wav data"}

_STUB_TARGETS = '''"""Stands in for edgeship.targets in the light runtime: an artifact whose format the light
runtime does not open itself (it opens ONNX and ORT artifacts) needs the full edgeship."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UnsupportedError


def _full(what: Any) -> UnsupportedError:
    name, fmt = str(what), None
    if isinstance(what, (str, Path)):
        name = Path(what).name
        try:
            fmt = json.loads((Path(what) / "artifact.json").read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
    kind = f"a {fmt} artifact" if isinstance(fmt, str) else "not an artifact it opens"
    return UnsupportedError(f"{name} is {kind}: the light runtime in this bundle runs ONNX and ORT artifacts only",
                            hint="pip install edgeship (with the extra of that format) to run it in Python")


def load_artifact(path: Any, *args: Any, **kwargs: Any) -> Any:
    raise _full(path)


def runner_for(artifact: Any, *args: Any, **kwargs: Any) -> Any:
    raise _full(artifact)
'''

_INIT = '''"""edgeship's light runtime, carried by this bundle: ``Classifier.from_bundle(folder)`` and
``check_golden``, on numpy, Pillow and onnxruntime (see requirements.txt beside this folder).

Copied unchanged from edgeship {version} (Apache-2.0) when the bundle was packaged; the modules
import each other relatively, so they run under this name without edgeship installed.
"""

from .runtime import Classifier, Embedder, Prediction, Stream, check_golden

__version__ = {version!r}
__all__ = ["Classifier", "Embedder", "Prediction", "Stream", "check_golden", "__version__"]
'''


class LightRuntimeError(RuntimeError):
    """The light runtime's modules import something a device without edgeship cannot (a bug in
    edgeship, caught when a bundle is packaged)."""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module but those under ``if TYPE_CHECKING:``, with whether it
    runs when the module is imported (not inside a function)."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, at_import))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, at_import)
        else:
            inner = at_import and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for child in ast.iter_child_nodes(node):
                visit(child, inner)

    visit(tree, True)
    return out


def _module_file(package: Path, dotted: list[str]) -> Path | None:
    base = package.joinpath(*dotted) if dotted else package
    if base.with_suffix(".py").is_file() and dotted:
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def light_closure(package: Path | None = None) -> list[str]:
    """The files of edgeship (paths relative to its package folder ``package``) the light runtime
    needs: ``runtime/__init__.py`` and everything it imports relatively, but :data:`NOT_COPIED`.
    LightRuntimeError naming the module and the import when one of them imports, at import time,
    anything but the standard library, :data:`LIGHT_DEPENDENCIES` and the others, or anywhere an
    edgeship module or third-party module not accounted for here."""
    package = Path(package) if package is not None else Path(__file__).resolve().parents[1]
    stdlib = set(sys.stdlib_module_names)
    entry = _module_file(package, [ENTRY])
    if entry is None:
        raise LightRuntimeError(f"edgeship.{ENTRY} is not a module in {package}")
    todo: list[tuple[Path, str | None]] = [(entry, None)]
    done: set[str] = set()
    via: dict[str, str] = {}  # module -> the import that brought it in
    problems = []

    def chain(rel: str) -> str:
        steps = []
        while rel in via and len(steps) < 20:
            steps.append(via[rel])
            rel = via[rel].split(":", 1)[0]
        return f" (reached from {' <- '.join(steps)})" if steps else ""

    while todo:
        path, parent = todo.pop()
        rel = path.relative_to(package).as_posix()
        if rel in done:
            continue
        done.add(rel)
        if parent is not None:
            via[rel] = parent
        here = list(path.relative_to(package).parent.parts)  # the package the module is in
        for k in range(1, len(here) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            init = _module_file(package, here[:k])
            if init is not None:
                todo.append((init, rel))
        for node, at_import in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            where = f"{rel}:{node.lineno}"
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level - 1 > len(here):
                    problems.append(f"{where}{chain(rel)}: a relative import above edgeship")
                    continue
                base = here[:len(here) - (node.level - 1)]
                mod = base + (node.module.split(".") if node.module else [])
                left = _not_copied(mod)
                if left:
                    if at_import:
                        problems.append(f"{where}{chain(rel)} imports edgeship.{'.'.join(mod)} at import time "
                                        f"({NOT_COPIED[left]}): the light runtime does not carry it")
                    continue
                target = _module_file(package, mod)
                if target is None:
                    problems.append(f"{where}{chain(rel)}: edgeship.{'.'.join(mod)} is not a module here")
                    continue
                todo.append((target, where))
                for alias in node.names:  # `from . import x` may name a submodule
                    sub = _module_file(package, [*mod, alias.name]) if alias.name != "*" else None
                    if sub is None or sub == target:
                        continue
                    left = _not_copied([*mod, alias.name])
                    if left and at_import:
                        problems.append(f"{where}{chain(rel)} imports edgeship.{'.'.join([*mod, alias.name])} at "
                                        f"import time ({NOT_COPIED[left]}): the light runtime does not carry it")
                    elif not left:
                        todo.append((sub, where))
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top == "__future__" or top in LIGHT_DEPENDENCIES:
                    continue
                if top == "edgeship":
                    problems.append(f"{where}{chain(rel)} imports {name} absolutely: the light runtime's modules import each "
                                    "other relatively")
                elif at_import:
                    problems.append(f"{where}{chain(rel)} imports {name} at import time: a device has only "
                                    f"{', '.join(LIGHT_DEPENDENCIES.values())}")
                elif top not in LAZY_ELSEWHERE:
                    problems.append(f"{where}{chain(rel)} imports {name} (inside a function): not one of the light runtime's "
                                    f"dependencies ({', '.join(LIGHT_DEPENDENCIES.values())}); if the light path never "
                                    "calls it, list it in edgeship.bundle.light.LAZY_ELSEWHERE")
    if problems:
        raise LightRuntimeError("the light runtime cannot be carried by a bundle: " + "; ".join(problems))
    return sorted(done)


def write_light_runtime(dest: Path, package: Path | None = None) -> list[str]:
    """Copy the light runtime into ``dest/edgeship_light/``: every file of :func:`light_closure`
    unchanged but for a first line naming where it comes from, the ``targets`` stub and an
    ``__init__``; the paths written, relative to ``dest``."""
    from .._version import __version__

    package = Path(package) if package is not None else Path(__file__).resolve().parents[1]
    files = light_closure(package)
    out = Path(dest) / LIGHT_PACKAGE
    written = []

    def put(rel: str, text: str) -> None:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
        written.append(f"{LIGHT_PACKAGE}/{rel}")

    for rel in files:
        text = (package / rel).read_text(encoding="utf-8")
        put(rel, f"# Copied unchanged from edgeship {__version__} (Apache-2.0), src/edgeship/{rel}.\n{text}")
    for folder in sorted({str(Path(r).parent) for r in files} - {"."}):  # every subpackage has its __init__
        if f"{folder}/__init__.py" not in files:
            put(f"{folder}/__init__.py", "")
    put("targets.py", _STUB_TARGETS)
    put("__init__.py", _INIT.format(version=__version__))
    return sorted(written)


def requirements(doc: dict[str, Any]) -> list[str]:
    """The requirement lines of the light runtime: numpy and Pillow at the versions installed
    here, onnxruntime at the version the bundle's ONNX/ORT artifacts were verified with (else
    the one installed here); a name alone when neither is known."""
    import importlib.metadata

    tested = next(((e.get("runtime") or {}).get("tested_version") for e in doc.get("artifacts") or []
                   if e.get("format") in ("onnx", "ort") and (e.get("runtime") or {}).get("name") == "onnxruntime"
                   and (e.get("runtime") or {}).get("tested_version")), None)
    out = []
    for dist in LIGHT_DEPENDENCIES.values():
        version = tested if dist == "onnxruntime" and tested else None
        if version is None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        out.append(f"{dist}=={version}" if version else dist)
    return out
