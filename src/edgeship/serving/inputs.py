"""What a request to :mod:`edgeship.serving` sent, read within limits: the body (413 past the
limit, without reading the rest), its content type (415), an image as raw bytes or a form upload
(``multipart/form-data``: python-multipart when installed, else the standard library's MIME parser,
in memory, no temporary files), tensors as JSON or ``.npy``, an image decoded, audio (a whole WAV
file, or raw samples decoded as they arrive and resampled on the fly) and sentences to embed.
Every refusal is a :class:`Reject`: a status and a reason naming what arrived (never a Python
object's repr)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EdgeshipError, FormatError, InputError, UnsupportedError, printable
from ..readers import parse_json
from ..readers.arrays import parse_npy

__all__ = ["AUDIO_TYPES", "FORM_TYPES", "IMAGE_TYPES", "JSON_TYPES", "NPY_TYPES", "WAV_TYPES", "AudioFormat", "RawAudio",
           "Reject", "StreamResampler", "Upload", "audio_format", "content_type", "decoded", "image_upload", "read_body",
           "tensors", "texts_of", "wav_audio"]

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


# -- audio -------------------------------------------------------------------------------------

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
RAW_AUDIO_TYPES = ("audio/l16", "audio/x-float32", "application/octet-stream")
AUDIO_TYPES = WAV_TYPES + RAW_AUDIO_TYPES
MAX_CHANNELS = 32
#: the largest term of a reduced rate ratio (up/down) a stream is resampled with: its filter has
#: 20 x that many taps (48000 -> 16000 is 1/3; 44100 -> 16000 160/441; 11025 -> 16000 640/441)
MAX_RATIO_TERM = 4800


@dataclass(frozen=True)
class AudioFormat:
    """How a stream's body holds its audio: ``kind`` "wav" (a whole WAV file; its rate from its
    header), "l16" (raw signed 16-bit samples) or "f32" (raw IEEE float32 samples), interleaved
    when ``channels`` > 1, at ``rate`` Hz."""

    kind: str
    rate: int | None = None
    channels: int = 1
    big_endian: bool = False

    @property
    def frame_bytes(self) -> int:
        return self.channels * (2 if self.kind == "l16" else 4)

    def describe(self) -> str:
        if self.kind == "wav":
            return "a WAV file"
        what = "16-bit integer" if self.kind == "l16" else "float32"
        order = "big-endian" if self.big_endian else "little-endian"
        return f"raw {what} {order} samples, {self.channels} channel{'s' if self.channels > 1 else ''} at {self.rate} Hz"


def _usage(model_rate: int) -> str:
    return (f"audio/wav (a whole .wav file), audio/L16;rate={model_rate} (raw 16-bit little-endian samples, streamed as "
            f"they come: curl -sN -T - -H 'Content-Type: audio/L16;rate={model_rate}' URL < mic.raw) or "
            f"audio/x-float32;rate={model_rate} (raw float32 little-endian)")


def audio_format(header: str, model_rate: int) -> AudioFormat:
    """The audio format a stream's ``Content-Type`` declares: 415 for a type that is not audio this
    server reads, 400 for a raw type without its rate (``application/octet-stream``: float32 at
    the model's rate unless it says ``rate=``) or with parameters out of range."""
    from ..readers.audio import MAX_RATE, MIN_RATE

    main, params = _header_options(header or "")
    if main not in AUDIO_TYPES:
        raise Reject(415, f"content type {printable(main)[:80] or '(none)'!r}: send {_usage(model_rate)}")
    if main in WAV_TYPES:
        return AudioFormat("wav")
    kind = "l16" if main == "audio/l16" else "f32"
    given = params.get("rate")
    if given is None and main != "application/octet-stream":
        named = "audio/L16" if main == "audio/l16" else main
        raise Reject(400, f"{named} needs its sample rate: Content-Type: {named};rate={model_rate} "
                          "(the rate the samples were recorded at, in Hz)")
    rate = model_rate if given is None else _int_param(given, "rate", MIN_RATE, MAX_RATE, "Hz")
    channels = _int_param(params.get("channels", "1"), "channels", 1, MAX_CHANNELS, "")
    order = params.get("endianness", "little-endian").strip().lower()
    if order not in ("little-endian", "big-endian"):
        raise Reject(400, f"endianness={printable(order)[:40]!r}: say little-endian (the default) or big-endian")
    if rate != model_rate:
        g = math.gcd(rate, model_rate)
        if max(rate, model_rate) // g > MAX_RATIO_TERM:
            raise Reject(400, f"{rate} Hz -> {model_rate} Hz is the ratio {model_rate // g}/{rate // g}, whose resampling "
                              f"filter is too long to run on a stream: send {model_rate} Hz (the model's rate) or a "
                              "usual rate (8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000 Hz)")
    return AudioFormat(kind, rate, channels, order == "big-endian")


def _int_param(text: str, name: str, low: int, high: int, unit: str) -> int:
    t = text.strip()
    if not t.isdigit() or not low <= int(t) <= high:
        raise Reject(400, f"{name}={printable(t)[:40]!r} in the Content-Type: give an integer from {low:,} to {high:,}"
                          + (f" {unit}" if unit else ""))
    return int(t)


class StreamResampler:
    """Mono samples at ``from_rate`` in pieces of any length -> float32 at ``to_rate``, the same
    samples :func:`edgeship.readers.audio.resample` (``scipy.signal.resample_poly``, Kaiser beta
    5.0, zero-padded) gives for the whole signal at once, up to float rounding: output ``i`` is
    ``y[i + n_pre_remove]`` of ``upfirdn(h, x, up, down)``, ``y[m] = sum_k x[k] h[m*down - k*up]``,
    with resample_poly's filter ``h`` (``firwin(2*half+1, 1/max(up, down), window=("kaiser", 5.0))
    * up``, ``half = 10*max(up, down)``, ``down - half % down`` zeros in front). An output is given
    as soon as every input it weighs has arrived; :meth:`end` gives the rest (the signal zero past
    its end), ``ceil(n * up / down)`` in all. It keeps only the inputs the next outputs weigh."""

    BLOCK = 4096  # outputs computed per gather

    def __init__(self, from_rate: int, to_rate: int) -> None:
        from scipy.signal import firwin

        g = math.gcd(int(from_rate), int(to_rate))
        self.up, self.down = int(to_rate) // g, int(from_rate) // g
        big = max(self.up, self.down)
        half = 10 * big
        h = firwin(2 * half + 1, 1.0 / big, window=("kaiser", 5.0)).astype(np.float32)  # as for float32 input
        h *= np.float32(self.up)
        pre = self.down - half % self.down
        h = np.concatenate([np.zeros(pre, np.float32), h]).astype(np.float64)
        self.length, self.skip = len(h), (half + pre) // self.down
        taps = -(-self.length // self.up)
        self.table = np.zeros((self.up, taps), np.float64)  # phase j: h[j], h[j + up], h[j + 2 up], ...
        for j in range(self.up):
            part = h[j::self.up]
            self.table[j, :len(part)] = part
        self.buf = np.zeros(0, np.float64)
        self.base = 0  # the input index of buf[0]
        self.received = 0
        self.emitted = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """The outputs the inputs so far settle (those that weigh no input still to come)."""
        x = np.asarray(x, np.float64).reshape(-1)
        self.buf = np.concatenate([self.buf, x])
        self.received += len(x)
        ready = max(0, -(-self.received * self.up // self.down) - self.skip)
        return self._take(ready)

    def end(self) -> np.ndarray:
        """The remaining outputs, the signal zero past its end."""
        return self._take(-(-self.received * self.up // self.down))

    def _take(self, upto: int) -> np.ndarray:
        outs = [self._outputs(i, min(i + self.BLOCK, upto)) for i in range(self.emitted, upto, self.BLOCK)]
        self.emitted = max(self.emitted, upto)
        first = ((self.emitted + self.skip) * self.down - self.length) // self.up + 1  # the next output's oldest input
        drop = min(max(0, first - self.base), len(self.buf))
        self.buf, self.base = self.buf[drop:], self.base + drop
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros(0, np.float32)

    def _outputs(self, i0: int, i1: int) -> np.ndarray:
        t = (np.arange(i0, i1, dtype=np.int64) + self.skip) * self.down
        k = (t // self.up)[:, None] - np.arange(self.table.shape[1], dtype=np.int64)[None, :]
        local = k - self.base
        ok = (k >= 0) & (k < self.received) & (local >= 0)
        vals = np.where(ok, self.buf[np.clip(local, 0, max(len(self.buf) - 1, 0))] if len(self.buf) else 0.0, 0.0)
        return (vals * self.table[t % self.up]).sum(axis=1)


class RawAudio:
    """A streamed body of raw samples (:class:`AudioFormat` "l16" or "f32"), decoded as its bytes
    arrive (a frame split between two reads waits for its rest), channels averaged to mono, at
    ``to_rate`` (:class:`StreamResampler` when the body's rate differs). 16-bit samples are scaled
    by 1/32768; float samples are taken as :func:`edgeship.readers.audio.decode_wav` takes a float
    WAV: NaN or infinity refused, a peak past ``FLOAT_PEAK_LIMIT`` refused, the rest clipped to
    [-1, 1]. A trailing partial frame is dropped (``trailing`` bytes), as the WAV reader drops one."""

    def __init__(self, fmt: AudioFormat, to_rate: int) -> None:
        self.fmt = fmt
        order = ">" if fmt.big_endian else "<"
        self.dtype = np.dtype(order + ("i2" if fmt.kind == "l16" else "f4"))
        self.rest = b""
        self.frames = 0
        self.resampler = StreamResampler(fmt.rate, to_rate) if fmt.rate != to_rate else None

    @property
    def trailing(self) -> int:
        return len(self.rest)

    @property
    def seconds(self) -> float:
        return self.frames / float(self.fmt.rate)

    def push(self, data: bytes) -> np.ndarray:
        buf = self.rest + bytes(data) if self.rest else bytes(data)
        whole = len(buf) - len(buf) % self.fmt.frame_bytes
        self.rest = buf[whole:]
        x = self._decode(buf[:whole])
        return self.resampler.push(x) if self.resampler is not None else x

    def end(self) -> np.ndarray:
        return self.resampler.end() if self.resampler is not None else np.zeros(0, np.float32)

    def _decode(self, raw: bytes) -> np.ndarray:
        from ..readers.audio import FLOAT_PEAK_LIMIT

        a = np.frombuffer(raw, dtype=self.dtype)
        ch = self.fmt.channels
        if self.fmt.kind == "f32":
            bad = ~np.isfinite(a)
            if bad.any():
                i = int(np.argmax(bad))
                frame = self.frames + i // ch
                raise Reject(422, f"the streamed audio holds a NaN or infinite sample (frame {frame:,}, "
                                  f"{frame / self.fmt.rate:.3f} s): every sample must be a finite number")
            peak = float(np.abs(a).max()) if a.size else 0.0
            if peak > FLOAT_PEAK_LIMIT:
                i = int(np.argmax(np.abs(a) > FLOAT_PEAK_LIMIT))
                frame = self.frames + i // ch
                raise Reject(422, f"the streamed audio holds a float sample of {float(a[i]):.4g} (frame {frame:,}): "
                                  f"float audio is scaled to [-1, 1]; past {FLOAT_PEAK_LIMIT:g} it is not a recording "
                                  "that clipped (16-bit integers? send them as audio/L16)")
            x = np.clip(a, -1.0, 1.0).astype(np.float32)
        else:
            x = a.astype(np.float32) / np.float32(32768.0)
        if ch > 1:
            x = x.reshape(-1, ch).mean(axis=1, dtype=np.float32)
        self.frames += len(x)
        return x


def wav_audio(data: bytes, to_rate: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """A whole uploaded WAV file -> (mono float32 at ``to_rate``, the file's rate), read by
    :func:`edgeship.readers.audio.decode_wav` and resampled by its ``resample`` (400 for bytes
    that are not a WAV it reads, 422 for one without samples, 413 past ``max_seconds``)."""
    from ..readers.audio import decode_wav, resample

    where = f"the uploaded WAV ({len(data):,} bytes)"
    try:
        audio, rate = decode_wav(data, where)
    except FormatError as e:
        raise Reject(400, _with_hint(e)) from None
    except InputError as e:
        raise Reject(422, _with_hint(e)) from None
    if len(audio) > max_seconds * rate:
        raise Reject(413, f"{where} is {len(audio) / rate:,.1f} s of audio; this server takes at most {max_seconds:g} s "
                          "per stream")
    return resample(audio, rate, to_rate), rate


def _with_hint(e: EdgeshipError) -> str:
    hint = getattr(e, "hint", None)
    return _REPR.sub("the upload", e.message + (f" ({hint})" if hint else ""))[:600]


# -- sentences ---------------------------------------------------------------------------------

def texts_of(body: bytes, max_texts: int, max_chars: int) -> list[str]:
    """The sentences of ``{"texts": ["...", ...]}`` (400 for a body that is not JSON, 422 for one
    that does not hold a list of strings, 413 past ``max_texts`` or ``max_chars`` per text)."""
    try:
        doc = parse_json(bytes(body).decode("utf-8"), "the body")
    except UnicodeDecodeError as e:
        raise Reject(400, f"the body is not UTF-8 JSON (byte {e.start})") from None
    except EdgeshipError as e:
        raise Reject(400, f"the body is not JSON: {e.message[:200]}") from None
    texts = doc.get("texts") if isinstance(doc, dict) else None
    if not isinstance(texts, list):
        raise Reject(422, 'send {"texts": ["a sentence", ...]}')
    if not texts:
        raise Reject(422, '"texts" is empty: send at least one sentence')
    if len(texts) > max_texts:
        raise Reject(413, f"{len(texts):,} texts in one request; this server takes at most {max_texts:,}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise Reject(422, f"texts[{i}] is {'null' if t is None else type(t).__name__}, not a string")
        if len(t) > max_chars:
            raise Reject(413, f"texts[{i}] has {len(t):,} characters; this server takes at most {max_chars:,} per text")
    return texts
