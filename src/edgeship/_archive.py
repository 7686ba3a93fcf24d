"""Archive extraction that cannot escape its folder or fill the disk.

Refused: absolute member names, ``..`` components, links (zip) or links escaping (tar),
device files, more than ``max_members`` entries, more than ``max_bytes`` in total (counted while
streaming, so a zip bomb that lies about its sizes is stopped too), and members whose
compression ratio exceeds ``max_ratio``. Extraction goes to a temp folder renamed into place.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ._util import atomic_dir
from .errors import FormatError, SecurityError

__all__ = ["safe_extract"]

CHUNK = 1 << 20


def _check_name(name: str, archive: Path) -> PurePosixPath:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise SecurityError(f"{archive} member {name!r} has an absolute path", hint="refusing to extract it")
    p = PurePosixPath(name)
    if any(part == ".." for part in p.parts):
        raise SecurityError(f"{archive} member {name!r} climbs out of the folder ('..')", hint="refusing to extract it")
    return p


def safe_extract(archive: str | Path, dest: str | Path, *, max_bytes: int = 2 << 30, max_members: int = 10_000,
                 max_ratio: float = 200.0, progress: Callable[[str], None] | None = None) -> list[str]:
    """Extract a .zip or .tar(.gz/.xz/.bz2) into ``dest`` (created atomically); return member names.
    ``progress(name)`` is called after each tar member is written."""
    from .readers import regular_file

    archive, dest = Path(archive), Path(dest)
    regular_file(archive, "archive")
    if zipfile.is_zipfile(archive):
        with atomic_dir(dest) as tmp:
            return _zip(archive, tmp, max_bytes, max_members, max_ratio)
    if tarfile.is_tarfile(archive):
        with atomic_dir(dest) as tmp:
            return _tar(archive, tmp, max_bytes, max_members, progress)
    raise FormatError(f"{archive} is neither a zip nor a tar archive")


def _zip(archive: Path, dest: Path, max_bytes: int, max_members: int, max_ratio: float) -> list[str]:
    from .readers.archives import open_zip

    names = []
    total = 0
    with open_zip(archive, "archive", max_bytes=max_bytes, max_ratio=max_ratio, max_members=max_members) as z:
        infos = z.infolist()
        if len(infos) > max_members:
            raise SecurityError(f"{archive} has {len(infos)} members (limit {max_members})")
        for info in infos:
            rel = _check_name(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SecurityError(f"{archive} member {info.filename!r} is a symbolic link", hint="refusing to extract it")
            if info.file_size > max_bytes or (info.compress_size and info.file_size / info.compress_size > max_ratio
                                               and info.file_size > CHUNK):
                raise SecurityError(f"{archive} member {info.filename!r} expands to {info.file_size} bytes "
                                    f"(ratio {info.file_size / max(info.compress_size, 1):.0f}:1): a zip bomb?")
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with z.open(info) as src, open(target, "wb") as out:
                    while block := src.read(CHUNK):
                        total += len(block)
                        if total > max_bytes:
                            raise SecurityError(f"{archive} expands past {max_bytes} bytes: a zip bomb?",
                                                hint="refusing to extract it")
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as e:
                raise FormatError(f"{archive} member {info.filename!r} cannot be read: {type(e).__name__}: "
                                  f"{str(e)[:200]}", hint="the archive is damaged; fetch it again") from None
            names.append(str(rel))
    return names


def _tar(archive: Path, dest: Path, max_bytes: int, max_members: int, progress: Callable[[str], None] | None = None) -> list[str]:
    try:
        return _tar_members(archive, dest, max_bytes, max_members, progress)
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError) as e:
        if isinstance(e, tarfile.FilterError):
            raise SecurityError(f"{archive}: {e}", hint="refusing to extract it") from None
        if isinstance(e, OSError) and e.errno is not None:  # the disk, not the data (gzip/bz2 data errors have none)
            raise
        raise FormatError(f"{archive} is not a readable tar archive: {type(e).__name__}: {str(e)[:200]}",
                          hint="the archive is damaged or truncated; fetch it again") from None


def _tar_members(archive: Path, dest: Path, max_bytes: int, max_members: int,
                 progress: Callable[[str], None] | None = None) -> list[str]:
    names = []
    total = 0
    with tarfile.open(archive) as t:
        members = []
        for i, m in enumerate(t):
            if i >= max_members:
                raise SecurityError(f"{archive} has more than {max_members} members")
            _check_name(m.name, archive)
            if m.isdev():
                raise SecurityError(f"{archive} member {m.name!r} is a device file")
            total += max(m.size, 0)
            if total > max_bytes:
                raise SecurityError(f"{archive} expands past {max_bytes} bytes", hint="refusing to extract it")
            members.append(m)
        try:
            for m in members:
                t.extract(m, dest, filter="data")
                if progress is not None:
                    progress(m.name)
        except tarfile.FilterError as e:
            raise SecurityError(f"{archive}: {e}", hint="refusing to extract it") from None
        names = [m.name for m in members if m.isfile()]
    for root, _dirs, files in os.walk(dest):  # belt and braces: nothing may point outside
        for f in files:
            p = Path(root) / f
            if p.is_symlink() and dest.resolve() not in p.resolve().parents:
                shutil.rmtree(dest, ignore_errors=True)
                raise SecurityError(f"{archive} member {f!r} links outside the folder")
    return names
