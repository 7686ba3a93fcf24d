"""What a request to :mod:`edgeship.serving` sent, read within limits: the body (413 past the
limit, without reading the rest), its content type (415), an image as raw bytes or a form upload
(``multipart/form-data``: python-multipart when installed, else the standard library's MIME parser,
in memory, no temporary files), tensors as JSON or ``.npy``, and an image decoded. Every refusal is
a :class:`Reject`: a status and a reason naming what arrived (never a Python object's repr)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EdgeshipError, FormatError, InputError, UnsupportedError, printable
from ..readers import parse_json
from ..readers.arrays import parse_npy

__all__ = ["FORM_TYPES", "IMAGE_TYPES", "JSON_TYPES", "NPY_TYPES", "Reject", "Upload", "content_type", "decoded",
           "image_upload", "read_body", "tensors"]

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff",
               "application/octet-stream")
JSON_TYPES = ("application/json",)
NPY_TYPES = ("application/x-npy", "application/octet-stream")
FORM_TYPES = ("multipart/form-data",)
#: the form fields an image is looked for under, before the first file part
IMAGE_FIELDS = ("file", "image")
MAX_PARTS = 64
_REPR = re.compile(r"<[A-Za-z_][\w.]* object at 0x[0-9a-fA-F]+>")


class Reject(Exception):
    """A request the server refuses: its status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refused (413) past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Reject(413, f"the body is {int(declared)} bytes; this server takes at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Reject(413, f"the body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    if not size:
        raise Reject(400, "the body is empty")
    return b"".join(chunks)


def content_type(request: Any, allowed: tuple[str, ...], what: str) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in allowed:
        raw = [t for t in allowed if t not in FORM_TYPES]
        form = [t for t in allowed if t in FORM_TYPES]
        raise Reject(415, f"content type {ctype or '(none)'!r}: send {what} as {', '.join(raw)}"
                          + (f", or as a form upload ({', '.join(form)}, e.g. curl -F file=@photo.jpg)" if form else ""))
    return ctype


@dataclass
class Upload:
    """What a request uploaded: its bytes, and the form part it came in (None for a raw body)."""

    data: bytes
    field: str | None
    filename: str | None
    ctype: str | None

    def describe(self) -> str:
        """The upload as an error message names it: never a Python object's repr."""

        ctype = printable(self.ctype or "none")[:80]
        if self.field is None:
            return f"the uploaded body ({len(self.data):,} bytes, Content-Type {ctype})"
        name = f"file {printable(self.filename)[:120]!r}" if self.filename else f"field {printable(self.field)[:60]!r}"
        part = f"form field {printable(self.field)[:60]!r}, " if self.filename and self.field else ""
        return f"the uploaded {name} ({part}{len(self.data):,} bytes, Content-Type {ctype})"


def _header_options(value: bytes | str) -> tuple[str, dict[str, str]]:
    """A header's value and its ``;`` parameters (``form-data; name="file"; filename="a.jpg"``)."""
    from email.message import Message
    from email.utils import collapse_rfc2231_value

    text = value.decode("latin-1") if isinstance(value, bytes) else value
    m = Message()
    m["content-type"] = text  # the standard library's RFC 2045/2231 parameter parsing
    params = {k.lower(): str(collapse_rfc2231_value(v)) for k, v in (m.get_params() or [])[1:]}
    main = text.split(";", 1)[0].strip().lower()
    return main, params


def _parts_python_multipart(boundary: bytes, body: bytes) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """The parts of a multipart body as (headers, data), with python-multipart's parser."""
    import logging

    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser

    log = logging.getLogger("python_multipart")
    if not log.handlers:  # its warning per malformed body is the 400's reason; not a line on our stderr
        log.addHandler(logging.NullHandler())
    parts: list[tuple[list[tuple[bytes, bytes]], bytes]] = []
    cur: dict[str, Any] = {}

    def begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise Reject(400, f"the form has more than {MAX_PARTS} parts")
        cur.update(headers=[], data=bytearray(), name=b"", value=b"")

    def header_field(data: bytes, start: int, end: int) -> None:
        cur["name"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        cur["value"] += data[start:end]

    def header_end() -> None:
        cur["headers"].append((cur["name"].lower(), cur["value"]))
        cur["name"], cur["value"] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        cur["data"] += data[start:end]

    def end() -> None:
        parts.append((cur["headers"], bytes(cur["data"])))

    callbacks = {"on_part_begin": begin, "on_header_field": header_field, "on_header_value": header_value,
                 "on_header_end": header_end, "on_part_data": part_data, "on_part_end": end}
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise Reject(400, f"the body is not a well-formed multipart/form-data upload: {str(e)[:200]}") from None
    return parts


def _parts_stdlib(ctype_header: str, body: bytes) -> list[tuple[list[tuple[bytes, bytes]], bytes]]:
    """The parts of a multipart body as (headers, data), with the standard library's MIME parser
    (where python-multipart is not installed)."""
    import email.parser
    import email.policy

    head = f"Content-Type: {ctype_header}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if not msg.is_multipart() or msg.defects:
        why = "; ".join(type(d).__name__ for d in msg.defects) or "no parts"
        raise Reject(400, f"the body is not a well-formed multipart/form-data upload ({why})")
    out = []
    for part in msg.get_payload():
        if len(out) >= MAX_PARTS:
            raise Reject(400, f"the form has more than {MAX_PARTS} parts")
        headers = [(k.lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace")) for k, v in part.items()]
        data = part.get_payload(decode=True)
        out.append((headers, data if isinstance(data, bytes) else b""))
    return out


def form_image(ctype_header: str, body: bytes) -> Upload:
    """The image part of a ``multipart/form-data`` body: the part named ``file`` or ``image``,
    else the first file part (one with a file name); 400 when there is none."""
    _, params = _header_options(ctype_header)
    boundary = params.get("boundary")
    if not boundary:
        raise Reject(400, "the multipart/form-data upload has no boundary in its Content-Type")
    try:
        import python_multipart  # noqa: F401 - starlette's form parser: used when installed
    except ImportError:
        raw = _parts_stdlib(ctype_header, body)
    else:
        raw = _parts_python_multipart(boundary.encode("latin-1", "replace"), body)
    uploads = []
    for headers, data in raw:
        h = {k: v for k, v in reversed(headers)}  # the first of a repeated header
        _, disp = _header_options(h.get(b"content-disposition", b"form-data"))
        ctype = h.get(b"content-type")
        uploads.append(Upload(data, disp.get("name", ""), disp.get("filename"),
                              ctype.decode("latin-1").split(";")[0].strip().lower() if ctype else None))
    named = [u for u in uploads if (u.field or "").lower() in IMAGE_FIELDS]
    files = [u for u in uploads if u.filename is not None]
    chosen = (named or files or [None])[0]
    if chosen is None:

        fields = ", ".join(repr(printable(u.field or ""))[:40] for u in uploads[:8]) or "none"
        raise Reject(400, f"the form upload has no image part (fields: {fields}): send the image as a file part, "
                          "e.g. curl -F file=@photo.jpg")
    if not chosen.data:
        raise Reject(400, f"{chosen.describe()} is empty")
    return chosen


def tensors(specs: Any, body: bytes, ctype: str, max_elements: int) -> dict[str, np.ndarray]:
    """The request's tensors, named, typed and shaped as the model's input ``specs`` take them
    (else 400/413/422)."""
    if ctype in NPY_TYPES:
        if len(specs) != 1:
            raise Reject(415, f"the model takes {len(specs)} inputs: send them as JSON {{\"inputs\": {{name: ...}}}}")
        try:
            arrays = {specs[0].name: parse_npy(bytes(body), "the body", scalar=True)}
        except EdgeshipError as e:
            raise Reject(400, f"the body is not a .npy array of numbers: {e.message[:200]}") from None
    else:
        try:
            doc = parse_json(bytes(body).decode("utf-8"), "the body")
        except UnicodeDecodeError as e:
            raise Reject(400, f"the body is not UTF-8 JSON (byte {e.start})") from None
        except EdgeshipError as e:
            raise Reject(400, f"the body is not JSON: {e.message[:200]}") from None
        given = doc.get("inputs") if isinstance(doc, dict) else None
        if isinstance(given, list) and len(specs) == 1 and given and not isinstance(given[0], list | dict):
            given = [given]
        if isinstance(given, list):
            if len(given) != len(specs):
                raise Reject(422, f"the model takes {len(specs)} input(s) ({', '.join(s.name for s in specs)}), "
                                  f"got {len(given)}")
            given = {s.name: v for s, v in zip(specs, given)}
        if not isinstance(given, dict):
            raise Reject(422, 'send {"inputs": {NAME: nested lists}} (or a list in input order); inputs: '
                              + ", ".join(f"{s.name} {list(s.shape)} {s.dtype}" for s in specs))
        unknown = [k for k in given if k not in {s.name for s in specs}]
        if unknown:
            raise Reject(422, f"no input named {unknown[0]!r}; the model takes {', '.join(s.name for s in specs)}")
        arrays = {}
        for s in specs:
            if s.name not in given:
                raise Reject(422, f"input {s.name!r} is missing")
            try:
                arrays[s.name] = np.asarray(given[s.name], dtype=np.dtype(s.dtype))
            except (ValueError, TypeError, OverflowError) as e:
                raise Reject(422, f"input {s.name!r} is not a {s.dtype} tensor: {str(e)[:200]}") from None
    total = sum(a.size for a in arrays.values())
    if total > max_elements:
        raise Reject(413, f"{total} values in one request; this server takes at most {max_elements}")
    for s in specs:
        a = arrays[s.name]
        if a.dtype != np.dtype(s.dtype):
            try:
                arrays[s.name] = a = a.astype(s.dtype, casting="same_kind")
            except TypeError:
                raise Reject(422, f"input {s.name!r} is {a.dtype}, the model takes {s.dtype}") from None
        if not s.fits(a.shape) or (a.ndim and a.shape[0] == 0):
            raise Reject(422, f"input {s.name!r} has shape {list(a.shape)}, the model takes {list(s.shape)}")
    return arrays



async def image_upload(request: Any, limit: int) -> Upload:
    """The image a request sent: its raw body (an image content type) or the image part of a form
    upload; 415 for another content type, 413 past ``limit`` bytes, 400 for an empty or
    malformed one."""
    import asyncio

    ctype = content_type(request, IMAGE_TYPES + FORM_TYPES, "the image's bytes")
    body = await read_body(request, limit)
    if ctype in FORM_TYPES:
        return await asyncio.to_thread(form_image, request.headers.get("content-type", ""), body)
    return Upload(body, None, None, ctype)


def decoded(upload: Upload, decode: Any) -> Any:
    """``decode(upload.data)`` (an image decoder of :mod:`edgeship.data`), its refusal a 400 when
    the bytes are not a whole image and a 422 when the image is one the model cannot take, naming
    the upload by its name, size and content type."""
    try:
        return decode(upload.data)
    except FormatError as e:
        why = _REPR.sub("the upload", str(e.details.get("reason", e.message)))
        raise Reject(400, f"{upload.describe()} is not a decodable image: {why}") from None
    except (InputError, UnsupportedError) as e:
        raise Reject(422, f"{upload.describe()}: {_REPR.sub('the upload', e.message)}") from None
