"""Audio from outside (calibration and evaluation folders of recordings, serve's uploads): WAV
files, parsed only here, the same way everywhere.

The RIFF/WAVE container is walked here rather than by the standard library's ``wave`` module,
which refuses IEEE float and ``WAVE_FORMAT_EXTENSIBLE`` (what DAWs, phones and most recorders
write). The layout read is Microsoft's ("Multimedia Programming Interface and Data Specifications
1.0", 1991, and "WAVEFORMATEXTENSIBLE", Windows DDK): a ``RIFF`` header of type ``WAVE``, then
chunks of a 4-byte id, a little-endian 32-bit size and the body, padded to an even length.

What is read, and what is decided where the files disagree with the specification:

* sample formats: PCM 8-bit unsigned, 16/24/32-bit signed (9-32 bits in 2-4 byte containers,
  left-justified as the specification stores them), IEEE float 32/64, and the same formats inside
  ``WAVE_FORMAT_EXTENSIBLE`` (its sub-format GUID on the base ``xxxxxxxx-0000-0010-8000-00aa00389b71``;
  ``wValidBitsPerSample`` and the channel mask are not needed to decode, and are ignored). Every
  other format code (A-law, mu-law, ADPCM, GSM, MP3 or MPEG inside WAV, ...) is a FormatError that
  names the code and gives the ffmpeg command that converts the file to 16-bit PCM.
* chunks: walked from the header up to the ``data`` chunk with bounds checks; the odd-size pad byte
  is skipped; the ``RIFF`` size is not trusted (writers that stream leave it wrong); chunks after
  ``data`` are not read. No ``fmt`` chunk, a second one, or one after ``data`` (which ffmpeg refuses
  too: the sample layout must be known before the samples) is a FormatError.
* a ``data`` chunk whose size runs past the end of the file is read to the end of the file (cut to
  whole frames), without a warning: it is what a recorder that streams writes (the placeholder size
  0xFFFFFFFF, or the size of a recording cut short), and ffmpeg and libsndfile read it so.
  A trailing partial frame is dropped. No whole frame at all is an InputError.
* ``nAvgBytesPerSec`` is not read (often wrong); ``nBlockAlign`` must equal channels x sample bytes
  (a header that contradicts itself is refused, not guessed at).
* limits: :data:`WAV_LIMIT` bytes; rates :data:`MIN_RATE`-:data:`MAX_RATE` Hz; at most
  :data:`MAX_CHUNKS` chunks before ``data``; ``max_seconds`` when the caller gives one; and for
  :func:`resample`, :data:`MAX_FACTOR`.
* values: channels averaged to mono; integers scaled by their full scale (``x / 2**(bits-1)``,
  8-bit ``(x - 128) / 128``), so in [-1, 1); floats clipped to [-1, 1] (a mix that went over full
  scale plays clipped, as a conversion to PCM would clip it), except a float file whose peak is
  past :data:`FLOAT_PEAK_LIMIT` (24 dB over full scale: written in another scale, not clipped) or
  that holds NaN or infinity, which are refused naming the first bad sample.
* other containers are named in the refusal (RF64/BW64, the 64-bit WAVs; AIFF; big-endian RIFX;
  FLAC, Ogg, MP3, MP4) with the same ffmpeg command.

Every failure is a typed error naming the file (:mod:`edgeship.errors`); no bytes make
:func:`decode_wav` raise anything else (``benchmarks/fuzz_readers.py``, target ``wav``).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FormatError, InputError
from . import read_bytes

if TYPE_CHECKING:
    import numpy as np

__all__ = ["read_wav", "decode_wav", "resample", "write_wav", "read_audio_folder", "WAV_LIMIT", "MIN_RATE",
           "MAX_RATE", "MAX_CHUNKS", "MAX_FACTOR", "FLOAT_PEAK_LIMIT", "AUDIO_SUFFIXES"]

#: bytes of one WAV file (16-bit mono at 16 kHz: 4.6 hours)
WAV_LIMIT = 512 << 20
#: the sample rates a file may declare, Hz (telephony's 8 kHz and below, up to 768 kHz converters)
MIN_RATE, MAX_RATE = 1_000, 768_000
#: chunks walked before the data chunk (real files hold a handful: fmt, fact, LIST, bext, JUNK)
MAX_CHUNKS = 10_000
#: the largest up or down factor :func:`resample` takes (its filter has 20 times as many taps)
MAX_FACTOR = 1 << 16
#: the largest float sample peak read (clipped to 1); past it the file is refused
FLOAT_PEAK_LIMIT = 16.0
#: the names an audio folder's files are read by
AUDIO_SUFFIXES = (".wav", ".wave")
#: what converts any audio file to what this reader reads best
CONVERT = "ffmpeg -i in.wav -c:a pcm_s16le out.wav"

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
#: format codes (mmreg.h) named in refusals
_FORMAT_NAMES = {0x0000: "WAVE_FORMAT_UNKNOWN", _PCM: "PCM", 0x0002: "Microsoft ADPCM", _FLOAT: "IEEE float", 0x0006: "A-law",
                 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0014: "G.723 ADPCM", 0x0031: "GSM 6.10",
                 0x0040: "G.721 ADPCM", 0x0050: "MPEG audio", 0x0055: "MP3", 0x0092: "Dolby AC-3 SPDIF",
                 0x00FF: "AAC", 0x0160: "WMA 1", 0x0161: "WMA 2", 0x0162: "WMA Pro", 0x1610: "AAC (HE-AAC)",
                 0x2000: "AC-3", 0x2001: "DTS", 0x674F: "Ogg Vorbis", 0x6750: "Ogg Vorbis", 0xF1AC: "FLAC",
                 _EXTENSIBLE: "extensible"}
#: bytes 4-15 of KSDATAFORMAT_SUBTYPE_PCM/IEEE_FLOAT/...: {code-0000-0010-8000-00aa00389b71}
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
#: the first bytes of other containers, named when one is given as WAV
_OTHER = ((b"RF64", "an RF64 file (the 64-bit WAV of EBU Tech 3306)"), (b"BW64", "a BW64 file (the 64-bit WAV of ITU-R BS.2088)"),
          (b"RIFX", "a big-endian RIFF (RIFX) file"), (b"fLaC", "a FLAC file"), (b"OggS", "an Ogg file (Vorbis or Opus)"),
          (b"ID3", "an MP3 file"), (b"caff", "a Core Audio (CAF) file"), (b".snd", "a Sun/NeXT .au file"),
          (b"\x30\x26\xb2\x75", "a WMA/ASF file"), (b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"))


def _fmt_name(code: int) -> str:
    return f"{_FORMAT_NAMES.get(code, 'an unregistered format')} (format code {code:#06x})"


def _guid(b: bytes) -> str:
    d1, d2, d3 = struct.unpack_from("<IHH", b)
    return f"{d1:08x}-{d2:04x}-{d3:04x}-{b[8:10].hex()}-{b[10:16].hex()}"


def _id(b: bytes) -> str:
    return repr(b.decode("latin-1"))


def _not_wav(head: bytes, where: str) -> FormatError:
    """The refusal of bytes that are not RIFF/WAVE, naming the container they are when it is known."""
    kind = next((k for magic, k in _OTHER if head.startswith(magic)), None)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        kind = f"an {head[8:12].decode()} file"
    elif head[:4] == b"RIFF":
        kind = f"a RIFF file of type {_id(head[8:12])}, not WAVE"
    elif head[4:8] == b"ftyp":
        kind = "an MP4/M4A file"
    elif kind is None and len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        kind = "an MPEG audio (MP3) stream"
    if kind is None:
        return FormatError(f"{where} is not a WAV file (it starts with {head[:12]!r}, not RIFF....WAVE)",
                           hint=f"give a WAV file; convert other audio with {CONVERT}")
    return FormatError(f"{where} is {kind}; edgeship reads WAV (RIFF/WAVE) files", hint=f"convert it: {CONVERT}")


class _Fmt:
    """What the fmt chunk says: how to turn the data chunk's bytes into samples."""

    __slots__ = ("code", "channels", "rate", "width")

    def __init__(self, code: int, channels: int, rate: int, width: int) -> None:
        self.code, self.channels, self.rate, self.width = code, channels, rate, width


def _parse_fmt(body: bytes, where: str) -> _Fmt:
    tag, channels, rate, _avg, align, bits = struct.unpack_from("<HHIIHH", body)
    code, label = tag, _fmt_name(tag)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise FormatError(f"{where} has a WAVE_FORMAT_EXTENSIBLE fmt chunk of {len(body)} bytes; that layout takes 40",
                              hint=f"the file is damaged; if it plays, convert it: {CONVERT}")
        guid = body[24:40]
        if guid[4:] != _GUID_TAIL:
            raise FormatError(f"{where} is WAVE_FORMAT_EXTENSIBLE audio of the sub-format {{{_guid(guid)}}}, which "
                              "edgeship does not decode (it reads PCM and IEEE float)", hint=f"convert it: {CONVERT}")
        code = struct.unpack_from("<I", guid)[0]
        label = (f"WAVE_FORMAT_EXTENSIBLE of {_fmt_name(code)}" if code <= 0xFFFF
                 else f"WAVE_FORMAT_EXTENSIBLE of the sub-format {{{_guid(guid)}}}")
    if code not in (_PCM, _FLOAT):
        raise FormatError(f"{where} is encoded as {label}, which edgeship does not decode (it reads PCM and IEEE float WAV)",
                          hint=f"convert it to 16-bit PCM: {CONVERT}")
    if channels == 0:
        raise FormatError(f"{where} declares 0 channels", hint=f"the file is damaged; if it plays, convert it: {CONVERT}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise FormatError(f"{where} declares a sample rate of {rate:,} Hz; edgeship reads {MIN_RATE:,}-{MAX_RATE:,} Hz",
                          hint="the file is damaged, or not audio; resample it: ffmpeg -i in.wav -ar 16000 -c:a pcm_s16le out.wav")
    if code == _FLOAT and bits not in (32, 64):
        raise FormatError(f"{where} declares IEEE float samples of {bits} bits; float WAV holds 32 or 64",
                          hint=f"convert it: {CONVERT}")
    if code == _PCM and not 8 <= bits <= 32:
        raise FormatError(f"{where} declares PCM samples of {bits} bits; edgeship reads 8 to 32",
                          hint=f"convert it: {CONVERT}")
    width = (bits + 7) // 8
    if align != channels * width:
        raise FormatError(f"{where} has a fmt chunk that contradicts itself: {channels} channels of {width}-byte samples "
                          f"make {channels * width}-byte frames, its block align says {align}",
                          hint=f"the file is damaged; if it plays, convert it: {CONVERT}")
    return _Fmt(code, channels, rate, width)


def _chunks(data: Any, where: str) -> tuple[_Fmt, int, int]:
    """Walk the chunks after the 12-byte header: (the fmt, the offset and byte count of the samples)."""
    n, pos, fmt, count, last = len(data), 12, None, 0, None
    while True:
        if pos + 8 > n:
            missing = "no fmt chunk and no data chunk" if fmt is None else "no data chunk"
            if last is not None and pos > n:
                cid, at, size = last
                raise FormatError(f"{where} is cut short: its {_id(cid)} chunk at byte {at:,} declares {size:,} bytes, "
                                  f"past the end of the file ({n:,} bytes), and it has {missing}",
                                  hint=f"the file is damaged or still being written; if it plays, convert it: {CONVERT}")
            raise FormatError(f"{where} has {missing} (it ends at byte {n:,})",
                              hint=f"the file is damaged or cut short; if it plays, convert it: {CONVERT}")
        cid = bytes(data[pos:pos + 4])
        size = struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"data":
            if fmt is None:
                raise FormatError(f"{where} has its data chunk (at byte {pos:,}) before any fmt chunk",
                                  hint=f"the sample layout must come first; if it plays, convert it: {CONVERT}")
            return fmt, body, min(size, n - body)  # past the end: a stream's placeholder size, read to the end
        if cid == b"fmt ":
            if fmt is not None:
                raise FormatError(f"{where} has two fmt chunks (the second at byte {pos:,})",
                                  hint=f"the file is damaged; if it plays, convert it: {CONVERT}")
            if size < 16:
                raise FormatError(f"{where} has a fmt chunk of {size} bytes; it takes at least 16",
                                  hint=f"the file is damaged; if it plays, convert it: {CONVERT}")
            if body + size > n:
                raise FormatError(f"{where} is cut short inside its fmt chunk (at byte {pos:,}, {size:,} bytes declared, "
                                  f"{n - body:,} there)", hint="the file is damaged or cut short")
            fmt = _parse_fmt(bytes(data[body:body + size]), where)
        count += 1
        if count > MAX_CHUNKS:
            raise FormatError(f"{where} has more than {MAX_CHUNKS:,} chunks before its data chunk",
                              hint=f"the file is damaged or crafted; if it plays, convert it: {CONVERT}")
        last = (cid, pos, size)
        pos = body + size + (size & 1)


def decode_wav(data: bytes | bytearray | memoryview, where: str, *,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """WAV bytes -> (mono float32 samples in [-1, 1], the file's sample rate), as the module says.
    ``where`` names the bytes in every error (``"audio file x.wav"``, ``"the uploaded audio"``);
    ``max_seconds``: a longer recording is an InputError, decided from its header before its samples."""
    import numpy as np

    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, numbers.Real)
                                    or not 0 < max_seconds < math.inf):
        raise InputError(f"max_seconds must be a positive number of seconds or None, not {max_seconds!r}")
    n = len(data)
    if n > WAV_LIMIT:
        raise InputError(f"{where} is {n / (1 << 20):.3g} MB; at most {WAV_LIMIT >> 20} MB of WAV is read",
                         hint="cut it into shorter recordings: ffmpeg -i in.wav -f segment -segment_time 60 out%03d.wav")
    if n == 0:
        raise FormatError(f"{where} is empty (0 bytes)", hint="give a WAV file")
    head = bytes(data[:12])
    if n < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        if n < 12 and b"RIFF".startswith(head[:4]):
            raise FormatError(f"{where} is {n} bytes: too short for a WAV header (12 bytes, then the chunks)",
                              hint="the file is damaged or cut short")
        raise _not_wav(head, where)
    fmt, start, size = _chunks(data, where)
    frame = fmt.channels * fmt.width
    frames = size // frame
    if frames == 0:
        raise InputError(f"{where} holds no samples (its data chunk has {size:,} bytes; one frame of {fmt.channels} "
                         f"channel{'s' if fmt.channels != 1 else ''} takes {frame})",
                         hint=f"give a recording; if it plays elsewhere, its header is wrong: {CONVERT} rewrites it")
    if max_seconds is not None and frames > max_seconds * fmt.rate:
        raise InputError(f"{where} is {frames / fmt.rate:,.1f} s long; at most {max_seconds:g} s is read",
                         hint=f"cut it: ffmpeg -i in.wav -t {max_seconds:g} -c:a pcm_s16le out.wav")
    count = frames * fmt.channels
    if fmt.code == _FLOAT:
        x = np.frombuffer(data, dtype="<f4" if fmt.width == 4 else "<f8", count=count, offset=start)
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"{where} holds {int(bad.sum()):,} NaN or infinite samples (the first at frame {i // fmt.channels:,}, "
                             f"{i // fmt.channels / fmt.rate:.3f} s, channel {i % fmt.channels}: {x[i]})",
                             hint="every sample must be a finite number; export the recording again")
        peak = max(float(x.max()), -float(x.min()))
        if peak > FLOAT_PEAK_LIMIT:
            raise InputError(f"{where} holds float samples up to {peak:.4g}; float WAV is scaled to [-1, 1], and past "
                             f"{FLOAT_PEAK_LIMIT:g} (24 dB over full scale) it is not a recording that clipped",
                             hint="scale the samples to [-1, 1] (divide by 32768 if they are 16-bit integers) and save again")
        x = np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)
    elif fmt.width == 1:
        x = np.frombuffer(data, dtype=np.uint8, count=count, offset=start).astype(np.float32)
        x -= 128.0
        x /= 128.0
    elif fmt.width == 3:
        x = _int24(np.frombuffer(data, dtype=np.uint8, count=count * 3, offset=start).reshape(count, 3))
    else:
        x = np.frombuffer(data, dtype=f"<i{fmt.width}", count=count, offset=start).astype(np.float32)
        x /= float(1 << (8 * fmt.width - 1))
    if fmt.channels > 1:
        x = x.reshape(frames, fmt.channels).mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32), fmt.rate


def _int24(raw: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """[n, 3] little-endian signed 24-bit samples -> float32 / 2**23, a block at a time (each block's
    3 bytes set as the high bytes of an int32, then shifted down: the sign comes with them)."""
    import numpy as np

    out = np.empty(len(raw), np.float32)
    wide = np.zeros((min(block, len(raw)), 4), np.uint8)
    for i in range(0, len(raw), block):
        part = raw[i:i + block]
        w = wide[:len(part)]
        w[:, 1:] = part
        out[i:i + len(part)] = w.view("<i4")[:, 0] >> 8
    out /= float(1 << 23)
    return out


def read_wav(path: str | Path, max_seconds: float | None = None, *, what: str = "audio file") -> tuple[np.ndarray, int]:
    """A WAV file -> (mono float32 samples in [-1, 1], the file's sample rate): :func:`decode_wav` of
    its bytes, read by :func:`edgeship.readers.read_bytes` (a regular file, at most :data:`WAV_LIMIT`)."""
    data = read_bytes(path, what, max_bytes=WAV_LIMIT, hint=f"give a WAV file (convert others: {CONVERT})")
    return decode_wav(data, f"{what} {path}", max_seconds=max_seconds)


def _rate(rate: Any, what: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral) or not MIN_RATE <= int(rate) <= MAX_RATE:
        raise InputError(f"{what} {rate!r} is not a sample rate edgeship takes ({MIN_RATE:,}-{MAX_RATE:,} Hz, an integer)",
                         hint="give the rate in Hz, e.g. 16000")
    return int(rate)


def resample(audio: Any, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono samples at ``from_rate`` -> float32 samples at ``to_rate``, band-limited: the input
    itself (as float32) when the rates are equal; else ``scipy.signal.resample_poly`` with
    ``up/down = to_rate/from_rate`` reduced by their gcd (44100 -> 16000: 160/441). Its filter,
    pinned here: a linear-phase FIR low-pass from ``scipy.signal.firwin`` of ``20*max(up, down) + 1``
    taps, a Kaiser window of beta 5.0, its cutoff at the lower of the two rates' Nyquist frequencies,
    applied polyphase (``upfirdn``) with the signal zero-padded at both ends. Measured at 44.1, 48
    and 22.05 kHz -> 16 kHz: a tone keeps its level within 0.3% up to 6.5 kHz (81% of the 8 kHz
    Nyquist), 97% at 7 kHz, half at 8 kHz; above it, what would alias is kept to 19% at 8.5 kHz, 3%
    at 9 kHz, 0.2% from 10 kHz. The output has ``ceil(n * up / down)`` samples. A band-limited signal near full scale can ring slightly past
    [-1, 1] (Gibbs); the samples are not clipped. The filter's design costs ``O(max(up, down))``:
    a few ms at the rates recorders use (they reduce to at most a few thousand: 44,056 -> 16,000 Hz is
    2,000/5,507), 0.15 s at :data:`MAX_FACTOR`, but 3 s at the worst coprime pair in range
    (767,999 -> 16,000 Hz, 15 million taps): a pair whose ``up`` or ``down`` exceeds :data:`MAX_FACTOR`
    (only rates past it that share almost no factor with the other, which a damaged or crafted header
    declares) is an InputError rather than seconds of work per file."""
    import numpy as np

    fr, to = _rate(from_rate, "the rate to resample from,"), _rate(to_rate, "the rate to resample to,")
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1:
        raise InputError(f"resample takes mono samples (1-d); it was given an array of shape {a.shape}",
                         hint="average the channels first: audio.mean(axis=1)")
    if fr == to or a.size == 0:
        return a if fr == to else np.zeros(0, np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(fr, to)
    if max(fr, to) // g > MAX_FACTOR:
        raise InputError(f"resampling {fr:,} Hz to {to:,} Hz takes the factors {to // g:,}/{fr // g:,}, past the "
                         f"{MAX_FACTOR:,} this resampler designs a filter for ({fr:,} Hz is not a rate recorders use)",
                         hint=f"resample the file first: ffmpeg -i in.wav -ar {to} -c:a pcm_s16le out.wav")
    return np.asarray(resample_poly(a, to // g, fr // g, window=("kaiser", 5.0), padtype="constant"), dtype=np.float32)


def write_wav(path: str | Path, audio: Any, rate: int) -> Path:
    """Write ``audio`` (float samples in [-1, 1], clipped, as mono ``[n]`` or ``[n, channels]``; or
    int16 samples as they are) as a 16-bit PCM WAV file at ``rate`` Hz: ``round(x * 32768)`` clipped to
    int16, which :func:`read_wav` reads back exactly for samples that came from 16 bits. Written to a
    temporary file in the same folder, then renamed over ``path`` (a reader never sees half a file)."""
    import tempfile

    import numpy as np

    from .._util import as_umask_allows, make_folder

    r = _rate(rate, "the sample rate")
    a = np.asarray(audio)
    if a.ndim not in (1, 2) or (a.ndim == 2 and not 1 <= a.shape[1] <= 0xFFFF // 2):
        raise InputError(f"write_wav takes samples of shape [n] or [n, channels]; it was given {a.shape}")
    if a.dtype == np.int16:
        pcm = a
    elif a.dtype.kind == "f":
        if a.size and not np.isfinite(a).all():
            raise InputError(f"the audio to write to {path} holds NaN or infinite samples")
        pcm = np.clip(np.round(a.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    else:
        raise InputError(f"write_wav takes float samples in [-1, 1] or int16 samples; it was given {a.dtype}")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    nbytes = pcm.size * 2
    if nbytes > 0xFFFFFFFF - 36:
        raise InputError(f"the audio to write to {path} is {nbytes:,} bytes of samples; a WAV holds at most 4 GB")
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + nbytes, b"WAVE", b"fmt ", 16, _PCM, channels, r,
                         r * channels * 2, channels * 2, 16, b"data", nbytes)
    p = Path(path)
    make_folder(p.parent, f"folder of {p.name}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.tmp-", dir=p.parent)
    except OSError as e:
        raise InputError(f"cannot write {p}: {e.strerror or e}", hint="give a folder you can write to") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(header)
            fh.write(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
        as_umask_allows(Path(tmp))
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise InputError(f"cannot write {p}: {e.strerror or e}", hint="give a file path you can write to") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p


#: other audio files, named when a folder holds them but no WAV
_OTHER_SUFFIXES = (".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm", ".au", ".caf")


def read_audio_folder(folder: str | Path, rate: int, limit_files: int | None = None, *,
                      max_seconds: float | None = None) -> list[tuple[str, np.ndarray]]:
    """Every WAV file (:data:`AUDIO_SUFFIXES`, any case) under ``folder``, in sub-folders too, sorted by
    its path relative to ``folder``; the first ``limit_files`` of them; each read (:func:`read_wav`)
    and resampled to ``rate`` (:func:`resample`): ``[(relative path, mono float32 samples), ...]``.
    ``folder`` may name one WAV file instead (its name, its samples). A folder without WAV files is an
    InputError that says which names are read; a file that fails stops the reading with its error,
    which names it (a FIFO, a link to nothing and a folder called ``x.wav`` included)."""
    r = _rate(rate, "the model's sample rate")
    if limit_files is not None and (isinstance(limit_files, bool) or not isinstance(limit_files, int) or limit_files < 1):
        raise InputError(f"limit_files must be a positive integer or None, not {limit_files!r}")
    p = Path(folder)
    if not p.is_dir():
        if not p.exists() and not p.is_symlink():
            raise InputError(f"no such audio folder or WAV file: {p}", hint="give a folder of .wav files, or one .wav file")
        return [(p.name, resample(*read_wav(p, max_seconds), r))]
    found: list[tuple[str, Path]] = []
    others = 0
    for f in p.rglob("*"):
        suffix = f.suffix.lower()
        if suffix in AUDIO_SUFFIXES and not f.is_dir():
            found.append((f.relative_to(p).as_posix(), f))
        elif suffix in _OTHER_SUFFIXES:
            others += 1
    if not found:
        also = (f" (it holds {others:,} audio file{'s' if others != 1 else ''} of other kinds: convert them, e.g. "
                f"ffmpeg -i in.mp3 -c:a pcm_s16le out.wav)") if others else ""
        raise InputError(f"{p} holds no WAV files{also}",
                         hint=f"the audio files read end in {' or '.join(AUDIO_SUFFIXES)} (any case), in the folder or under it")
    found.sort(key=lambda t: t[0])
    out = []
    for name, f in found[:limit_files]:
        audio, file_rate = read_wav(f, max_seconds)
        out.append((name, resample(audio, file_rate, r)))
    return out
