"""One reader per kind of file that comes from outside: the only code that opens that kind of file.

Each reader checks the path (a regular file: never a FIFO, a device or a socket, which would block
or never end; within a size limit), parses inside limits (nesting depth, member counts, pixels),
and turns every failure of the parser beneath it into a typed error that names the file and, where
it can, the field (:mod:`edgeship.errors`: ``InputError``/``FormatError`` exit 3, ``SecurityError``
exit 6). The rest of edgeship receives parsed values.

Kinds and their readers::

    bytes, text          read_bytes, read_text          (this module)
    JSON records         read_json                      manifest.json, artifact.json, bundle.json, ...
    configs, profiles    read_structured                JSON or YAML (no aliases), depth-limited
    arrays               readers.arrays.read_arrays     .npy/.npz: numeric, >= 1-d, finite
    images               readers.images.decode_image    any PIL format, EXIF orientation, 16-bit
    audio                readers.audio.read_wav         WAV: PCM 8-32 bit, IEEE float, extensible; mono; resample
    tokenizers           readers.tokenizer.read_tokenizer  tokenizer.json (WordPiece) or vocab.txt
    zip archives         readers.archives.open_zip      .pt2, .npz, bundles: names, methods, sizes
    ONNX models          readers.onnx.parse_onnx        protobuf, UTF-8 names

A fuzzer per reader (``tests/security/test_fuzz.py``, ``benchmarks/fuzz_readers.py``) holds the
property: a malformed file gives a typed error or a value, never another exception or a hang.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError, SecurityError

__all__ = ["RECORD_LIMIT", "CONFIG_LIMIT", "YAML_LIMIT", "MAX_DEPTH", "regular_file", "read_bytes", "read_text",
           "read_json", "parse_json", "read_structured", "value_depth"]

#: the largest JSON record edgeship reads back (a manifest with a big model's per-layer analysis)
RECORD_LIMIT = 256 << 20
#: the largest config, profile, preprocessing or labels file
CONFIG_LIMIT = 16 << 20
#: the largest YAML file (configs of options are a few kB; PyYAML's safe constructor is slow)
YAML_LIMIT = 1 << 20
#: the deepest nesting of a JSON or YAML document (edgeship's own records nest under 12)
MAX_DEPTH = 64

_KIND = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.3g} MB"


def regular_file(path: str | Path, what: str, *, max_bytes: int | None = None, links: bool = True,
                 hint: str | None = None) -> Path:
    """``path`` when it names a regular file of at most ``max_bytes``; otherwise a typed error that
    names ``what`` and the path. Decided by ``stat`` without opening the file, so a FIFO never blocks
    the caller. ``links=False``: a symbolic link is refused too (edgeship's own records, which it
    always writes as regular files inside the folder)."""
    p = Path(path)
    try:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            if not links:
                raise SecurityError(f"{what} {p} is a symbolic link (to {os.readlink(p)[:200]})",
                                    hint="edgeship writes its records as regular files inside the folder; "
                                         "replace the link with the file, or write the folder again")
            st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"no such {what}: {p}", hint=hint) from None
    except NotADirectoryError:
        raise InputError(f"no such {what}: {p} (a part of the path is a file, not a folder)", hint=hint) from None
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}", hint=hint) from None
    if not stat.S_ISREG(st.st_mode):
        kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"{what} {p} is {kind}, not a regular file", hint=hint or "give the path of a file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputError(f"{what} {p} is {_mb(st.st_size)}; at most {_mb(max_bytes)} is read",
                         hint=hint or "give a smaller file")
    return p


def read_bytes(path: str | Path, what: str, *, max_bytes: int, links: bool = True, hint: str | None = None) -> bytes:
    """The bytes of a regular file (:func:`regular_file`); opened non-blocking with ``O_NOFOLLOW``
    when links are refused, and checked again on the open descriptor (a file swapped for a FIFO
    between the check and the open is still refused); never more than ``max_bytes``."""
    p = regular_file(path, what, max_bytes=max_bytes, links=links, hint=hint)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if links else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(p, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecurityError(f"{what} {p} is a symbolic link", hint="replace the link with the file") from None
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}", hint=hint) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{what} {p} is not a regular file", hint=hint or "give the path of a file")
        chunks, left = [], max_bytes + 1
        while left > 0:
            block = os.read(fd, min(left, 1 << 24))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}", hint=hint) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise InputError(f"{what} {p} grew past {_mb(max_bytes)} while it was read", hint=hint)
    return data


def decode_text(data: bytes, what: str, hint: str | None = None) -> str:
    """UTF-8 text (a BOM dropped); a byte that is not UTF-8 is a FormatError naming its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise FormatError(f"{what} is not UTF-8 text (byte {e.start}, line {line}: {data[e.start:e.start + 1]!r})",
                          hint=hint or "save it as UTF-8") from None


def read_text(path: str | Path, what: str, *, max_bytes: int = CONFIG_LIMIT, links: bool = True,
              hint: str | None = None) -> str:
    return decode_text(read_bytes(path, what, max_bytes=max_bytes, links=links, hint=hint), f"{what} {path}", hint)


def value_depth(value: Any) -> int:
    """How deep a parsed JSON value nests (a scalar 0, ``[]`` 1), counted without recursion."""
    return _walk(value, None)


def _walk(value: Any, what: str | None) -> int:
    """The depth of ``value``; with ``what``, every string and key must be UTF-8 text (json reads a
    lone surrogate escape, ``"\\ud800"``, into a str no file name or JSON writer can encode)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            if what is not None:
                for k in v:
                    _text(k, what)
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            for x in v:
                if isinstance(x, (dict, list)):
                    stack.append((x, d + 1))
                elif what is not None and isinstance(x, str):
                    _text(x, what)
        elif what is not None and isinstance(v, str):
            _text(v, what)
    return deepest


def _text(s: str, what: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{what} holds a string that is not UTF-8 text (a lone surrogate: {s[:40]!r})",
                          hint="the file is corrupt or crafted; write it again") from None


def parse_json(text: str, what: str, *, max_depth: int = MAX_DEPTH, hint: str | None = None) -> Any:
    """JSON text -> value, nested at most ``max_depth`` deep; every failure a FormatError naming ``what``.
    NaN and Infinity are read as Python's json module writes them (a figure that could not be
    computed is recorded as NaN). The parser is json's C scanner, which stops a deeper nesting than
    the interpreter's recursion limit with RecursionError (caught here); the depth of what it
    returns is then counted without recursion."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise FormatError(f"{what} nests deeper than {max_depth} levels", hint=hint) from None
    except ValueError as e:
        raise FormatError(f"{what} is not valid JSON: {str(e)[:200]}", hint=hint) from None
    depth = _walk(value, what)
    if depth > max_depth:
        raise FormatError(f"{what} nests {depth} levels deep (at most {max_depth})", hint=hint)
    return value


def read_json(path: str | Path, what: str, *, max_bytes: int = RECORD_LIMIT, max_depth: int = MAX_DEPTH,
              links: bool = True, hint: str | None = None) -> Any:
    """A JSON file -> value (:func:`read_bytes`, UTF-8, :func:`parse_json`)."""
    data = read_bytes(path, what, max_bytes=max_bytes, links=links, hint=hint)
    return parse_json(decode_text(data, f"{what} {path}", hint), f"{what} {path}", max_depth=max_depth, hint=hint)


def read_structured(path: str | Path, what: str, *, max_bytes: int = CONFIG_LIMIT, max_depth: int = MAX_DEPTH,
                    hint: str | None = None) -> Any:
    """A config or profile: YAML when the name ends in .yaml/.yml, else JSON. YAML is read at most
    :data:`YAML_LIMIT` bytes, with libyaml's event parser first (fast, iterative): no anchors or
    aliases (a few lines of them expand to billions of values), no explicit tags (``!!python/...``,
    ``!!timestamp``: JSON's types only), at most ``max_depth`` deep; then built with the safe loader.
    Every failure is a FormatError naming the file and the line."""
    p = Path(path)
    yaml_file = p.suffix.lower() in (".yaml", ".yml")
    data = read_bytes(p, what, max_bytes=min(max_bytes, YAML_LIMIT) if yaml_file else max_bytes, hint=hint)
    text = decode_text(data, f"{what} {p}", hint)
    if not yaml_file:
        return parse_json(text, f"{what} {p}", max_depth=max_depth, hint=hint)
    try:
        import yaml
    except ImportError:
        raise InputError(f"{what} {p} is YAML, which needs PyYAML", hint="pip install pyyaml, or write it as JSON") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    plain = {None, "!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
             "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"}

    def refuse(why: str, event: Any) -> FormatError:
        line = getattr(getattr(event, "start_mark", None), "line", None)
        return FormatError(f"{what} {p}{f' line {line + 1}' if line is not None else ''}: {why}",
                           hint=hint or "write plain YAML: mappings, lists, strings, numbers, true/false, null")

    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise refuse("anchors and aliases (&name, *name) are not taken", event)
            if getattr(event, "tag", None) not in plain:
                raise refuse(f"the tag {str(event.tag)[:60]} is not taken", event)
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > max_depth:
                    raise refuse(f"nesting deeper than {max_depth} levels", event)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.load(text, Loader=loader)  # noqa: S506 - the safe loader (C or Python)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError) as e:  # PyYAML's constructors raise the last five on malformed scalars
        msg = " ".join(str(e).split())[:300]
        raise FormatError(f"{what} {p} is not valid YAML: {msg}", hint=hint) from None
