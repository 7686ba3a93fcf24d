"""Small helpers shared by every stage: atomic outputs, tool versions, path confinement."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SecurityError


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``final``; on success it replaces ``final`` in one rename.

    On any exception the temp folder is removed and ``final`` (if it existed) is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def tool_versions(*names: str) -> dict[str, str]:
    out = {}
    for n in ("edgeship", *names):
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def confined(root: Path, relative: str, what: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse absolute paths, '..' and escaping links."""
    if not relative or os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise SecurityError(f"{what} uses an absolute path: {relative!r}",
                            hint="external files must sit inside the model's own folder")
    root_r = root.resolve()
    target = (root / relative).resolve()
    if target != root_r and root_r not in target.parents:
        raise SecurityError(f"{what} points outside the model's folder: {relative!r}",
                            hint="external files must sit inside the model's own folder")
    return target


def safe_name(name: str, limit: int = 64) -> str:
    """A name that is safe as one path component and in generated code."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    keep = keep.strip(".-") or "model"
    return keep[:limit]
