"""Zip archives from outside (.pt2 programs, .npz arrays, checkpoints): opened only here.

:func:`open_zip` refuses, before any member is read, what Python's ``zipfile`` (or torch's own
reader after it) would fail on halfway or misread: a damaged directory, member names that are not
text (the UTF-8 flag set over bytes that are not UTF-8), compression methods and zip versions it
cannot read, encrypted members, names that climb out (``..``, absolute), too many members and
members that expand past a limit or by a bomb's ratio. Every failure is a typed error naming the
archive and the member.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from ..errors import FormatError, SecurityError
from . import regular_file

__all__ = ["open_zip", "MAX_MEMBERS"]

MAX_MEMBERS = 100_000
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def open_zip(path: str | Path, what: str, *, max_bytes: int = 64 << 30, max_ratio: float = 1000.0,
             max_members: int = MAX_MEMBERS) -> zipfile.ZipFile:
    """A vetted, open :class:`zipfile.ZipFile` (the caller closes it)."""
    p = regular_file(path, what)
    try:
        z = zipfile.ZipFile(p)
    except UnicodeDecodeError as e:
        raise FormatError(f"{what} {p}: a member name is flagged UTF-8 but is not ({e.reason} at byte {e.start})",
                          hint="the archive is damaged or was made by a broken tool; write it again") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError,
            OverflowError) as e:
        raise FormatError(f"{what} {p} is not a readable zip archive: {str(e)[:200]}",
                          hint="the file is damaged or truncated; write it again") from None
    try:
        _vet(z, p, what, max_bytes, max_ratio, max_members)
    except BaseException:
        z.close()
        raise
    return z


def _vet(z: zipfile.ZipFile, p: Path, what: str, max_bytes: int, max_ratio: float, max_members: int) -> None:
    infos = z.infolist()
    if len(infos) > max_members:
        raise SecurityError(f"{what} {p} has {len(infos):,} members (at most {max_members:,})")
    total = 0
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        where = f"{what} {p} member {name[:200]!r}"
        if name in seen:  # readers disagree on which copy counts: one is vetted, another used
            raise SecurityError(f"{where} appears twice in the archive", hint="refusing to read it")
        seen.add(name)
        if not name:
            raise FormatError(f"{what} {p} has a member without a name", hint="the archive is damaged; write it again")
        if "\x00" in name:
            raise SecurityError(f"{where} has a NUL byte in its name", hint="refusing to read it")
        if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
            raise SecurityError(f"{where} has an absolute path", hint="refusing to read it")
        if any(x == ".." for x in PurePosixPath(name).parts):
            raise SecurityError(f"{where} climbs out of the folder ('..')", hint="refusing to read it")
        if info.compress_type not in _METHODS:
            raise FormatError(f"{where} uses compression method {info.compress_type}, which cannot be read "
                              "(stored, deflate, bzip2 and lzma can)", hint="write the archive again with deflate")
        if info.extract_version > zipfile.MAX_EXTRACT_VERSION:
            raise FormatError(f"{where} needs zip version {info.extract_version / 10:.1f} to be read "
                              f"(at most {zipfile.MAX_EXTRACT_VERSION / 10:.1f} here)",
                              hint="write the archive again with a standard zip tool")
        if info.flag_bits & 0x1:
            raise FormatError(f"{where} is encrypted", hint="give an archive without a password")
        if info.file_size < 0 or info.compress_size < 0:
            raise FormatError(f"{where} declares a negative size")
        total += info.file_size
        if total > max_bytes:
            raise SecurityError(f"{what} {p} expands past {max_bytes / (1 << 30):.3g} GB: a zip bomb?",
                                hint="refusing to read it")
        if info.compress_size and info.file_size > (1 << 20) and info.file_size / info.compress_size > max_ratio:
            raise SecurityError(f"{where} expands {info.file_size / info.compress_size:.0f}:1: a zip bomb?")
