"""Arrays from outside (.npy and .npz given as calibration or evaluation data, or to serve):
read only here, never unpickling.

What comes back is numbers a model can take: booleans, integers or floats, at least one axis,
every value finite. Bytes, strings, objects, structured records, 0-d arrays, NaN and Inf are each a
typed error that names the file, the array and (for values) the first bad index.
"""

from __future__ import annotations

import io
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError, SecurityError
from . import read_bytes
from .archives import open_zip

__all__ = ["read_arrays", "parse_npy", "check_numbers", "ARRAY_LIMIT"]

ARRAY_LIMIT = 16 << 30  # bytes of one .npy/.npz file


def check_numbers(a: Any, where: str, *, scalar: bool = False) -> Any:
    """``a`` when it is a numeric array of at least one axis (``scalar``: or none) with finite values;
    else a typed error."""
    import numpy as np

    if a.dtype.hasobject:
        raise SecurityError(f"{where} holds Python objects (a pickle), not plain numbers",
                            hint="save plain numeric arrays: np.save(path, array.astype(np.float32))")
    if a.dtype.kind not in "biuf":
        kind = {"S": "bytes", "U": "strings", "V": "structured records", "c": "complex numbers", "M": "dates",
                "m": "time spans"}.get(a.dtype.kind, f"values of type {a.dtype}")
        raise InputError(f"{where} holds {kind} (dtype {a.dtype}), not numbers a model takes",
                         hint="save numeric arrays: floats for float inputs, integers for token ids")
    if a.ndim == 0 and not scalar:
        raise InputError(f"{where} is a single value (a 0-d array), not samples",
                         hint="the first axis counts samples: save an array of shape (N, ...)")
    if a.dtype.kind == "f" and a.size:
        bad = ~np.isfinite(a)
        if bad.any():
            i = tuple(int(x) for x in np.argwhere(bad)[0])
            raise InputError(f"{where} holds {int(bad.sum()):,} NaN or infinite values (the first at index {list(i)}: "
                             f"{a[i]})", hint="clean the data: every value of an input must be a finite number")
    return a


def parse_npy(data: bytes, where: str, *, scalar: bool = False) -> Any:
    """One .npy document -> a checked array (:func:`check_numbers`)."""
    import numpy as np

    try:
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise SecurityError(f"{where} holds Python objects (a pickle), not plain arrays",
                                hint="save plain numeric arrays: np.save(path, array.astype(np.float32))") from None
        raise FormatError(f"{where} is not a readable .npy array: {str(e)[:200]}") from None
    except (OSError, EOFError, MemoryError, SyntaxError, TypeError, OverflowError, KeyError, IndexError,
            tokenize.TokenError) as e:  # numpy's header parser (ast + tokenize) raises the last ones
        raise FormatError(f"{where} is not a readable .npy array: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(a, np.ndarray):
        raise FormatError(f"{where} is not a single .npy array")
    return check_numbers(a, where, scalar=scalar)


def read_arrays(path: str | Path, what: str = "data file") -> dict[str, Any]:
    """``{name: array}`` from a .npy (named after the file) or .npz file, each checked."""
    p = Path(path)
    data = read_bytes(p, what, max_bytes=ARRAY_LIMIT, hint="give a .npy or .npz file, or an image folder")
    if data.startswith(b"\x93NUMPY"):
        return {p.stem: parse_npy(data, f"{what} {p}")}
    if not data.startswith(b"PK\x03\x04"):
        raise FormatError(f"{what} {p} is not a .npy or .npz file",
                          hint="numpy files start with \\x93NUMPY (npy) or are zip archives (npz)")
    out: dict[str, Any] = {}
    with open_zip(p, what, max_bytes=ARRAY_LIMIT) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            where = f"{what} {p} array {name!r}"
            try:
                member = z.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                    RuntimeError, MemoryError) as e:  # a damaged member (its CRC, its stream)
                raise FormatError(f"{where} cannot be read from the archive: {type(e).__name__}: {str(e)[:200]}") from None
            out[name] = parse_npy(member, where)
    if not out:
        raise InputError(f"{what} {p} holds no arrays")
    return out
