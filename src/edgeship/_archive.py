"""Archive extraction that cannot escape its folder or fill the disk.

Refused: absolute member names, ``..`` components, links (zip) or links escaping (tar),
device files, more than ``max_members`` entries, more than ``max_bytes`` in total (counted while
streaming, so a zip bomb that lies about its sizes is stopped too), and members whose
compression ratio exceeds ``max_ratio``. Extraction goes to a temp folder renamed into place.
"""

from __future__ import annotations

import errno
import lzma
import os
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
            try:
                return _zip(archive, tmp, max_bytes, max_members, max_ratio)
            except OSError as e:
                raise _layout_error(archive, e) from None
    # a tar has no magic of its own: opening it (with the bounded member record, not
    # tarfile.is_tarfile, which would parse a hostile first header unbounded) decides
    with atomic_dir(dest) as tmp:
        return _tar(archive, tmp, max_bytes, max_members, progress)


def _zip(archive: Path, dest: Path, max_bytes: int, max_members: int, max_ratio: float) -> list[str]:
    from .readers.archives import open_zip

    names = []
    total = 0
    with open_zip(archive, "archive", max_bytes=max_bytes, max_ratio=max_ratio, max_members=max_members) as z:
        # open_zip has vetted the member count, every name (absolute, '..', NUL, duplicates) and the
        # declared sizes and ratios; what is left to check here is what extraction adds: links
        for info in z.infolist():
            rel = PurePosixPath(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise SecurityError(f"{archive} member {info.filename!r} is a symbolic link", hint="refusing to extract it")
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


#: the largest pax or GNU long-name header read (tarfile reads one whole, and parses pax with
#: regular expressions that are quadratic in it before Python 3.11.10: CVE-2024-6232)
MAX_TAR_HEADER = 16 << 10
MAX_NAME = 1024  # characters of a member's path
MAX_PARTS = 64  # folders deep

#: what an archive's own layout does to extraction (as opposed to the disk: ENOSPC, EIO, EROFS ...)
_LAYOUT_ERRNOS = {errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.EINVAL,
                  errno.ELOOP}


def _layout_error(archive: Path, e: OSError) -> FormatError:
    """The FormatError for an OSError the archive's own layout caused (a file where a folder goes, a
    name too long, ...); an error of the disk itself (ENOSPC, EIO, EROFS ...) is raised as it is."""
    if e.errno is not None and e.errno not in _LAYOUT_ERRNOS:
        raise e
    return FormatError(f"{archive} cannot be extracted: {type(e).__name__}: {str(e)[:200]}",
                       hint="the archive is damaged or crafted; fetch it again")


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's member record, refusing extended headers (pax, GNU long names) past
    :data:`MAX_TAR_HEADER` before tarfile reads and parses them."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                    tarfile.GNUTYPE_LONGLINK)
        if self.type in extended and not 0 <= self.size <= MAX_TAR_HEADER:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes (at most {MAX_TAR_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _tar(archive: Path, dest: Path, max_bytes: int, max_members: int, progress: Callable[[str], None] | None = None) -> list[str]:
    try:
        return _tar_members(archive, dest, max_bytes, max_members, progress)
    except tarfile.ReadError as e:
        if "header" in str(e) or "truncated" in str(e) or "empty" in str(e):
            raise FormatError(f"{archive} is neither a zip nor a tar archive (or a damaged one: {str(e)[:120]})",
                              hint="give the .tar.gz or .zip as it was made") from None
        raise FormatError(f"{archive} is not a readable tar archive: {str(e)[:200]}",
                          hint="the archive is damaged or truncated; fetch it again") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError, UnicodeError, KeyError, OverflowError,
            MemoryError, RecursionError) as e:
        raise FormatError(f"{archive} is not a readable tar archive: {type(e).__name__}: {str(e)[:200]}",
                          hint="the archive is damaged or truncated; fetch it again") from None
    except OSError as e:
        raise _layout_error(archive, e) from None


def _tar_members(archive: Path, dest: Path, max_bytes: int, max_members: int,
                 progress: Callable[[str], None] | None = None) -> list[str]:
    """Regular files and folders only, each written here (O_EXCL, O_NOFOLLOW) under a path checked
    part by part. A link (symbolic or hard), a device, a FIFO or a sparse member is refused: a
    release bundle holds none, and tarfile's ``data`` filter, which would vet links, can be walked
    out of on Pythons before 3.11.13 (CVE-2025-4517). No link is ever made, so nothing can lead a
    later member outside ``dest``."""
    names: list[str] = []
    total = 0
    with tarfile.open(archive, tarinfo=_BoundedTarInfo) as t:
        for i, m in enumerate(t):
            if i >= max_members:
                raise SecurityError(f"{archive} has more than {max_members} members")
            rel = _check_name(m.name, archive)
            parts = [x for x in rel.parts if x not in ("", ".")]
            if not parts or "\x00" in m.name or len(m.name) > MAX_NAME or len(parts) > MAX_PARTS \
                    or any(len(x.encode("utf-8", "surrogateescape")) > 255 for x in parts):
                raise FormatError(f"{archive} member {m.name[:120]!r} is not a path this system can hold",
                                  hint="the archive is damaged or crafted; fetch it again")
            if not (m.isreg() or m.isdir()):
                kind = ("a symbolic link" if m.issym() else "a hard link" if m.islnk() else
                        "a device file" if m.isdev() else "a FIFO" if m.isfifo() else "a special member")
                raise SecurityError(f"{archive} member {m.name[:120]!r} is {kind}",
                                    hint="a release bundle holds regular files only; refusing to extract it")
            target = dest.joinpath(*parts)
            if m.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            total += max(m.size, 0)
            if total > max_bytes:
                raise SecurityError(f"{archive} expands past {max_bytes} bytes", hint="refusing to extract it")
            os.makedirs(target.parent, exist_ok=True)
            src = t.extractfile(m)
            assert src is not None  # a regular member
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
            with os.fdopen(fd, "wb") as out:
                while block := src.read(CHUNK):
                    out.write(block)
            names.append("/".join(parts))
            if progress is not None:
                progress(m.name)
    return names
