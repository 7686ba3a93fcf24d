"""edgeship.readers.audio: WAV files built here byte by byte (struct) and by the standard library's
``wave``; every supported sample format read back, resampling that keeps a tone's frequency and
level and removes what would alias, and hostile files refused with a typed error naming the file."""

from __future__ import annotations

import os
import struct
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from edgeship.errors import EdgeshipError, FormatError, InputError
from edgeship.readers import audio
from edgeship.readers.audio import decode_wav, read_audio_folder, read_wav, resample, write_wav

BASE_GUID = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def chunk(cid: bytes, body: bytes, size: int | None = None, pad: bool = True) -> bytes:
    return cid + struct.pack("<I", len(body) if size is None else size) + body + (b"\0" if pad and len(body) % 2 else b"")


def fmt(code: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16, align: int | None = None,
        extra: bytes = b"") -> bytes:
    align = channels * ((bits + 7) // 8) if align is None else align
    return chunk(b"fmt ", struct.pack("<HHIIHH", code, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits) + extra)


def ext_fmt(sub: int, channels: int = 1, rate: int = 16000, bits: int = 16, valid: int | None = None,
            tail: bytes = BASE_GUID) -> bytes:
    align = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
                 + struct.pack("<HHI", 22, valid or bits, (1 << channels) - 1) + struct.pack("<I", sub) + tail)


def riff(*chunks: bytes, size: int | None = None, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def wav(samples: bytes, **kw) -> bytes:
    return riff(fmt(**kw), chunk(b"data", samples))


def put(tmp_path: Path, data: bytes, name: str = "x.wav") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def read(tmp_path: Path, data: bytes, **kw):
    return read_wav(put(tmp_path, data), **kw)


# ---- every supported sample format ---------------------------------------------------------------

def test_8_bit_unsigned_pcm(tmp_path):
    x, r = read(tmp_path, wav(bytes([0, 64, 128, 192, 255]), bits=8, rate=8000))
    assert r == 8000 and x.dtype == np.float32
    assert x.tolist() == [-1.0, -0.5, 0.0, 0.5, 127 / 128]


def test_16_bit_pcm_from_the_standard_library_and_by_hand(tmp_path):
    v = np.array([-32768, -16384, -1, 0, 1, 12345, 32767], np.int16)
    with wave.open(str(tmp_path / "std.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(v.tobytes())
    x, r = read_wav(tmp_path / "std.wav")
    assert r == 22050 and np.array_equal(x, v.astype(np.float32) / 32768)
    y, _ = read(tmp_path, wav(v.astype("<i2").tobytes(), rate=22050))
    assert np.array_equal(x, y)


def test_16_bit_noise_round_trips_exactly(tmp_path):
    v = np.random.default_rng(0).integers(-32768, 32768, 10_000).astype(np.int16)
    with wave.open(str(tmp_path / "n.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(v.tobytes())
    x, _ = read_wav(tmp_path / "n.wav")
    assert np.array_equal(np.round(x * 32768).astype(np.int16), v)


def test_24_bit_pcm_keeps_its_sign_and_scale(tmp_path):
    v = [-(1 << 23), -(1 << 22), -1, 0, 1, 123456, (1 << 23) - 1]
    raw = b"".join(struct.pack("<i", s)[:3] for s in v)
    x, _ = read(tmp_path, wav(raw, bits=24, rate=48000))
    assert np.array_equal(x, np.array(v, np.float64).astype(np.float32) / np.float32(1 << 23))
    assert x[0] == -1.0 and x[1] == -0.5


def test_24_bit_pcm_across_decoding_blocks():
    v = np.random.default_rng(1).integers(-(1 << 23), 1 << 23, 2500).astype(np.int32)
    raw = np.frombuffer(v.astype("<i4").tobytes(), np.uint8).reshape(-1, 4)[:, :3].copy()
    out = audio._int24(raw, block=1000)  # three blocks, the last one short
    assert np.array_equal(out, v.astype(np.float32) / np.float32(1 << 23))


def test_32_bit_pcm(tmp_path):
    v = [-(1 << 31), -(1 << 30), 0, 1 << 30, (1 << 31) - 1]
    x, _ = read(tmp_path, wav(struct.pack("<5i", *v), bits=32))
    assert x.tolist()[:4] == [-1.0, -0.5, 0.0, 0.5] and x[4] == pytest.approx(1.0)


def test_12_bit_pcm_is_read_from_its_left_justified_16_bit_container(tmp_path):
    v = np.array([-2048, -1, 0, 2047], np.int16) << 4  # 12 significant bits in the high bits
    x, _ = read(tmp_path, wav(v.astype("<i2").tobytes(), bits=12))
    assert x.tolist() == [-1.0, -16 / 32768, 0.0, 2047 * 16 / 32768]


@pytest.mark.parametrize("bits, dtype", [(32, "<f4"), (64, "<f8")])
def test_ieee_float_is_read_and_clipped_to_full_scale(tmp_path, bits, dtype):
    v = np.array([-1.0, -0.25, 0.0, 0.1, 1.0, 1.5, -3.0], dtype)
    x, _ = read(tmp_path, wav(v.tobytes(), code=3, bits=bits))
    assert x.dtype == np.float32
    assert np.allclose(x, [-1.0, -0.25, 0.0, 0.1, 1.0, 1.0, -1.0], atol=1e-7)


@pytest.mark.parametrize("sub, bits, valid, data, expected", [
    (1, 16, 16, struct.pack("<3h", -32768, 0, 16384), [-1.0, 0.0, 0.5]),
    (1, 24, 20, b"".join(struct.pack("<i", s << 4)[:3] for s in (-(1 << 19), 0, 1 << 18)), [-1.0, 0.0, 0.5]),
    (1, 32, 24, struct.pack("<3i", -(1 << 31), 0, 1 << 30), [-1.0, 0.0, 0.5]),
    (3, 32, 32, struct.pack("<3f", -0.75, 0.0, 0.25), [-0.75, 0.0, 0.25]),
    (3, 64, 64, struct.pack("<3d", -0.75, 0.0, 0.25), [-0.75, 0.0, 0.25]),
])
def test_wave_format_extensible_with_pcm_and_float_subformats(tmp_path, sub, bits, valid, data, expected):
    x, r = read(tmp_path, riff(ext_fmt(sub, bits=bits, valid=valid, rate=44100), chunk(b"data", data)))
    assert r == 44100 and x.tolist() == expected


def test_channels_are_averaged_to_mono(tmp_path):
    stereo = struct.pack("<6h", 16384, -8192, 0, 0, -32768, -32768)
    x, _ = read(tmp_path, wav(stereo, channels=2))
    assert x.tolist() == [0.125, 0.0, -1.0]
    six = np.tile(np.arange(6, dtype="<f4") / 10, 4)  # 4 frames of 6 channels: 0.0 ... 0.5
    y, _ = read(tmp_path, riff(ext_fmt(3, channels=6, bits=32), chunk(b"data", six.tobytes())))
    assert y.shape == (4,) and np.allclose(y, 0.25)


def test_decode_wav_reads_bytes_as_read_wav_reads_the_file(tmp_path):
    data = wav(struct.pack("<4h", 1, 2, 3, -4), channels=2)
    a, ra = read(tmp_path, data)
    for buf in (data, bytearray(data), memoryview(data)):
        b, rb = decode_wav(buf, "the upload")
        assert ra == rb and np.array_equal(a, b)


# ---- the chunks: what real writers put around the samples --------------------------------------

def test_chunks_are_walked_with_their_pad_byte_and_the_riff_size_is_not_trusted(tmp_path):
    samples = struct.pack("<3h", 100, 200, 300)
    data = riff(chunk(b"LIST", b"INFOabc"), chunk(b"JUNK", b""), fmt(), chunk(b"fact", b"\x03\0\0\0"),
                chunk(b"bext", b"x" * 11), chunk(b"data", samples), chunk(b"LIST", b"after the samples"), size=4)
    x, _ = read(tmp_path, data)
    assert (x * 32768).tolist() == [100, 200, 300]


def test_a_data_size_past_the_end_of_the_file_is_read_to_the_end_in_whole_frames(tmp_path):
    samples = struct.pack("<5h", 1, 2, 3, 4, 5) + b"\x07"  # a frame cut in half at the end
    for size in (0xFFFFFFFF, 1 << 30, 100):  # a stream's placeholder, a 1 GB claim, a recording cut short
        x, _ = read(tmp_path, riff(fmt(), chunk(b"data", samples, size=size, pad=False)))
        assert (x * 32768).tolist() == [1, 2, 3, 4, 5]


def test_a_trailing_partial_frame_is_dropped(tmp_path):
    x, _ = read(tmp_path, wav(struct.pack("<3h", 1, 2, 3), channels=2))
    assert (x * 32768).tolist() == [1.5]


# ---- resampling --------------------------------------------------------------------------------

def tone(freq: float, rate: int, seconds: float = 1.0, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


@pytest.mark.parametrize("src, dst, freq", [(44100, 16000, 1000.0), (8000, 16000, 440.0), (48000, 16000, 3000.0),
                                            (22050, 16000, 6000.0)])
def test_resampling_keeps_a_tones_frequency_and_level(src, dst, freq):
    x = tone(freq, src)
    y = resample(x, src, dst)
    assert y.dtype == np.float32 and len(y) == dst  # one second stays one second
    assert abs(peak_hz(y, dst) - freq) <= 1.0
    middle = y[dst // 10: -dst // 10]  # away from the zero-padded ends
    assert np.max(np.abs(middle)) == pytest.approx(0.5, abs=5e-3)
    expected = tone(freq, dst)[dst // 10: -dst // 10]
    assert np.max(np.abs(middle - expected)) < 5e-3  # the same tone, in phase


def test_resampling_removes_what_would_alias():
    x = tone(12000.0, 44100)  # above 16 kHz's Nyquist (8 kHz): decimating naively folds it to 4 kHz
    y = resample(x, 44100, 16000)
    assert np.max(np.abs(y[1600:-1600])) < 0.005  # removed (a naive pick of samples keeps it at 0.5)
    naive = x[(np.arange(16000) * 44100 // 16000)]
    assert np.max(np.abs(naive)) > 0.4


@pytest.mark.parametrize("src", [44100, 48000, 22050])
def test_the_filter_response_is_the_one_documented(src):
    """resample's docstring: within 0.3% to 6.5 kHz, 97% at 7 kHz, aliases kept to 19% at 8.5 kHz,
    3% at 9 kHz and 0.2% from 10 kHz, at 16 kHz."""
    def gain(freq: float) -> float:
        return float(np.max(np.abs(resample(tone(freq, src), src, 16000)[1600:-1600]))) / 0.5

    assert all(abs(gain(f) - 1) < 0.003 for f in (1000.0, 4000.0, 5000.0, 6000.0, 6500.0))
    assert gain(7000.0) == pytest.approx(0.97, abs=0.005)
    assert gain(8500.0) < 0.2 and gain(9000.0) < 0.035 and gain(10000.0) < 0.002 and gain(10500.0) < 0.002


def test_resampled_length_is_n_times_up_over_down_rounded_up():
    for n in (1, 2, 441, 1001, 44101):
        assert len(resample(np.zeros(n, np.float32), 44100, 16000)) == -(-n * 160 // 441)
        assert len(resample(np.zeros(n, np.float32), 8000, 16000)) == 2 * n
    assert len(resample(np.zeros(0, np.float32), 44100, 16000)) == 0


def test_a_rate_whose_factors_are_past_the_limit_is_refused_not_worked_on_for_seconds():
    assert len(resample(np.zeros(65521, np.float32), 65521, 16000)) == 16000  # a prime rate under the limit
    with pytest.raises(InputError) as e:
        resample(np.zeros(10, np.float32), 767999, 16000)
    assert "16,000/767,999" in e.value.message and "ffmpeg" in e.value.hint
    assert len(resample(np.zeros(768000, np.float32), 768000, 16000)) == 16000  # 1/48


def test_equal_rates_give_the_samples_back_unchanged():
    x = tone(440.0, 16000)
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize("args, words", [((np.zeros((2, 10)), 16000, 8000), "1-d"), ((np.zeros(10), 0, 16000), "0"),
                                         ((np.zeros(10), 16000, True), "True"), ((np.zeros(10), 16000, 10**7), "10000000"),
                                         ((np.zeros(10), 44100.0, 16000), "44100.0")])
def test_resample_refuses_what_is_not_mono_at_a_sample_rate(args, words):
    with pytest.raises(InputError, match=words):
        resample(*args)


# ---- writing -----------------------------------------------------------------------------------

def test_write_wav_writes_16_bit_pcm_that_reads_back(tmp_path):
    x = np.round(tone(440.0, 16000) * 32768) / 32768
    p = write_wav(tmp_path / "sub" / "t.wav", x, 16000)
    with wave.open(str(p)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
    y, r = read_wav(p)
    assert r == 16000 and np.array_equal(x, y)
    v = np.array([[-32768, 32767], [5, -5]], np.int16)  # int16 kept as it is; stereo
    write_wav(p, v, 8000)
    with wave.open(str(p)) as w:
        assert w.getnchannels() == 2 and np.array_equal(np.frombuffer(w.readframes(2), "<i2"), v.ravel())
    write_wav(p, np.array([2.0, -2.0, 0.5]), 8000)  # clipped
    assert (read_wav(p)[0] * 32768).tolist() == [32767, -32768, 16384]
    assert sorted(q.name for q in p.parent.iterdir()) == ["t.wav"]  # no temporary file left


def test_write_wav_refuses_what_it_cannot_write_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        write_wav(tmp_path / "a.wav", np.array([0.0, np.nan]), 16000)
    with pytest.raises(InputError, match="int32"):
        write_wav(tmp_path / "a.wav", np.zeros(4, np.int32), 16000)
    with pytest.raises(InputError, match="shape"):
        write_wav(tmp_path / "a.wav", np.zeros((2, 2, 2)), 16000)
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(InputError, match="d.wav"):
        write_wav(tmp_path / "d.wav", np.zeros(4), 16000)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        write_wav(tmp_path / "file" / "a.wav", np.zeros(4), 16000)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d.wav", "file"]


# ---- folders -----------------------------------------------------------------------------------

def test_a_folder_is_read_sorted_resampled_and_cut_to_limit_files(tmp_path):
    write_wav(tmp_path / "b.wav", tone(440.0, 8000), 8000)
    write_wav(tmp_path / "a" / "z.WAV", tone(440.0, 44100), 44100)
    write_wav(tmp_path / "c.wave", tone(440.0, 16000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    got = read_audio_folder(tmp_path, 16000)
    assert [n for n, _ in got] == ["a/z.WAV", "b.wav", "c.wave"]
    assert all(len(x) == 16000 and x.dtype == np.float32 for _, x in got)
    assert [n for n, _ in read_audio_folder(tmp_path, 16000, limit_files=2)] == ["a/z.WAV", "b.wav"]
    (name, x), = read_audio_folder(tmp_path / "b.wav", 16000)  # one file
    assert name == "b.wav" and len(x) == 16000


def test_a_folder_without_wav_files_says_which_names_are_read(tmp_path):
    (tmp_path / "song.mp3").write_bytes(b"ID3")
    with pytest.raises(InputError) as e:
        read_audio_folder(tmp_path, 16000)
    assert str(tmp_path) in e.value.message and "1 audio file of other kinds" in e.value.message
    assert ".wav" in e.value.hint
    with pytest.raises(InputError, match="no such audio folder"):
        read_audio_folder(tmp_path / "missing", 16000)


def test_a_file_in_a_folder_that_fails_names_itself(tmp_path):
    write_wav(tmp_path / "a.wav", tone(440.0, 16000), 16000)
    put(tmp_path, wav(b"\1\2", code=6, bits=8), "b.wav")
    with pytest.raises(FormatError) as e:
        read_audio_folder(tmp_path, 16000)
    assert str(tmp_path / "b.wav") in e.value.message
    os.symlink(tmp_path / "gone.wav", tmp_path / "0.wav")  # a link to nothing sorts first
    with pytest.raises(InputError) as e:
        read_audio_folder(tmp_path, 16000)
    assert str(tmp_path / "0.wav") in e.value.message


# ---- hostile and damaged files -----------------------------------------------------------------

S = struct.pack("<4h", 1, 2, 3, 4)
CASES = [
    ("empty", b"", FormatError, "empty"),
    ("truncated header", b"RIFF\x10\0\0", FormatError, "too short"),
    ("header only", riff(), FormatError, "no fmt chunk and no data chunk"),
    ("not RIFF", b"hello, this is not audio at all", FormatError, "not a WAV file"),
    ("RIFF not WAVE", riff(form=b"AVI "), FormatError, "'AVI '"),
    ("RF64", b"RF64" + riff()[4:], FormatError, "RF64"),
    ("BW64", b"BW64" + riff()[4:], FormatError, "BW64"),
    ("RIFX", b"RIFX" + riff()[4:], FormatError, "big-endian"),
    ("AIFF", b"FORM\0\0\0\x04AIFF", FormatError, "AIFF"),
    ("AIFC", b"FORM\0\0\0\x04AIFC", FormatError, "AIFC"),
    ("FLAC", b"fLaC\0\0\0\x22" + bytes(34), FormatError, "FLAC"),
    ("MP3", b"ID3\x04\0\0\0\0\0\0" + bytes(20), FormatError, "MP3"),
    ("MPEG frame", b"\xff\xfb\x90\x64" + bytes(20), FormatError, "MP3"),
    ("missing fmt", riff(chunk(b"LIST", b"INFO")), FormatError, "no fmt chunk"),
    ("missing data", riff(fmt()), FormatError, "no data chunk"),
    ("fmt after data", riff(chunk(b"data", S), fmt()), FormatError, "before any fmt chunk"),
    ("two fmt", riff(fmt(), fmt(), chunk(b"data", S)), FormatError, "two fmt chunks"),
    ("short fmt", riff(chunk(b"fmt ", b"\1\0\1\0"), chunk(b"data", S)), FormatError, "4 bytes"),
    ("fmt cut short", riff(fmt())[:-4], FormatError, "cut short inside its fmt chunk"),
    ("1 GB fmt", riff(chunk(b"fmt ", bytes(16), size=1 << 30)), FormatError, "1,073,741,824 bytes declared"),
    ("1 GB chunk before data", riff(fmt(), chunk(b"LIST", b"INFO", size=1 << 30), chunk(b"data", S)), FormatError,
     "'LIST' chunk at byte 36 declares 1,073,741,824 bytes"),
    ("chunk header cut", riff(fmt(), b"da"), FormatError, "no data chunk"),
    ("zero channels", wav(S, channels=0, align=2), FormatError, "0 channels"),
    ("0 Hz", wav(S, rate=0), FormatError, "0 Hz"),
    ("4 GHz", wav(S, rate=0xFFFFFFFF), FormatError, "4,294,967,295 Hz"),
    ("0 bits", wav(S, bits=0, align=2), FormatError, "0 bits"),
    ("7 bits", wav(S, bits=7), FormatError, "7 bits"),
    ("absurd bits", wav(S, bits=0xFFFF, align=2), FormatError, "65535 bits"),
    ("float 16", wav(S, code=3, bits=16), FormatError, "16 bits"),
    ("block align", wav(S, align=3), FormatError, "block align says 3"),
    ("A-law", wav(S, code=6, bits=8), FormatError, "A-law (format code 0x0006)"),
    ("mu-law", wav(S, code=7, bits=8), FormatError, "mu-law (format code 0x0007)"),
    ("IMA ADPCM", wav(S, code=0x11, bits=4, align=256), FormatError, "IMA ADPCM (format code 0x0011)"),
    ("MP3 in WAV", wav(S, code=0x55, bits=0, align=1), FormatError, "MP3 (format code 0x0055)"),
    ("unknown code", wav(S, code=0x1234), FormatError, "format code 0x1234"),
    ("extensible A-law", riff(ext_fmt(6, bits=8), chunk(b"data", S)), FormatError, "EXTENSIBLE of A-law"),
    ("extensible ambisonic", riff(ext_fmt(1, tail=b"\x21\x07\xd3\x11\x86\x44\xc8\xc1\xca\0\0\0"), chunk(b"data", S)),
     FormatError, "00000001-0721-11d3-8644-c8c1ca000000"),
    ("extensible short", riff(fmt(code=0xFFFE, extra=b"\x16\0"), chunk(b"data", S)), FormatError, "18 bytes"),
    ("no samples", wav(b""), InputError, "holds no samples"),
    ("half a frame", wav(b"\1\2\3", channels=2), InputError, "holds no samples"),
    ("NaN", wav(struct.pack("<4f", 0.0, 0.5, float("nan"), 0.1), code=3, bits=32, channels=2, rate=8000), InputError,
     "frame 1, 0.000 s, channel 0"),
    ("inf", wav(struct.pack("<2d", 0.0, float("-inf")), code=3, bits=64), InputError, "NaN or infinite"),
    ("float out of scale", wav(struct.pack("<2f", 0.0, 20000.0), code=3, bits=32), InputError, "up to 2e+04"),
    ("too many chunks", riff(*[chunk(b"JUNK", b"")] * (audio.MAX_CHUNKS + 1), fmt(), chunk(b"data", S)), FormatError,
     "more than 10,000 chunks"),
]


@pytest.mark.parametrize("data, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_damaged_or_foreign_file_is_refused_by_name(tmp_path, data, error, words):
    p = put(tmp_path, data)
    with pytest.raises(EdgeshipError) as e:
        read_wav(p)
    assert type(e.value) is error, (type(e.value), e.value)
    assert str(p) in e.value.message and words in e.value.message, e.value.message
    assert e.value.hint
    with pytest.raises(error) as e:
        decode_wav(data, "the uploaded audio")
    assert e.value.message.startswith("the uploaded audio ")


def test_a_folder_a_fifo_and_a_missing_file_are_refused_without_opening_them(tmp_path):
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(InputError, match="folder"):
        read_wav(tmp_path / "d.wav")
    os.mkfifo(tmp_path / "f.wav")
    done: list = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(InputError, read_wav, tmp_path / "f.wav")), daemon=True)
    t.start()
    t.join(10)
    assert done and "FIFO" in str(done[0].value) and str(tmp_path / "f.wav") in str(done[0].value)
    with pytest.raises(InputError, match="no such audio file"):
        read_wav(tmp_path / "nothing.wav")


def test_a_file_past_the_byte_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    p = tmp_path / "big.wav"
    with open(p, "wb") as fh:  # sparse: 513 MB that take no disk
        fh.write(wav(S))
        fh.truncate(audio.WAV_LIMIT + (1 << 20))
    with pytest.raises(InputError, match="513 MB; at most 512 MB"):
        read_wav(p)
    monkeypatch.setattr(audio, "WAV_LIMIT", 40)
    with pytest.raises(InputError, match="the upload is"):
        decode_wav(wav(S), "the upload")


def test_max_seconds_refuses_a_longer_recording(tmp_path):
    p = put(tmp_path, wav(bytes(2 * 16000 * 3)))  # 3 s at 16 kHz
    assert len(read_wav(p, max_seconds=3)[0]) == 48000
    with pytest.raises(InputError) as e:
        read_wav(p, max_seconds=2.5)
    assert str(p) in e.value.message and "3.0 s long; at most 2.5 s" in e.value.message
    for bad in (0, -1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(InputError, match="max_seconds"):
            read_wav(p, max_seconds=bad)


def test_no_prefix_and_no_byte_set_of_a_file_gives_anything_but_a_value_or_a_typed_error():
    """Every truncation of an extensible float file and of a chunked PCM file, and every header byte set
    to each of a few values: samples in [-1, 1] or an EdgeshipError, never another exception."""
    seeds = [riff(ext_fmt(3, channels=2, bits=32), chunk(b"data", struct.pack("<4f", 0.5, -0.5, 1.0, 0.0))),
             riff(chunk(b"LIST", b"INFOabc"), fmt(bits=24, channels=2), chunk(b"data", bytes(range(12)))),
             wav(bytes([0, 255, 128]), bits=8)]
    outcomes = {"ok": 0, "typed": 0}

    def check(data: bytes) -> None:
        try:
            x, r = decode_wav(data, "case")
        except EdgeshipError as e:
            assert 2 <= e.exit_code <= 6
            outcomes["typed"] += 1
            return
        assert x.dtype == np.float32 and x.ndim == 1 and x.size and np.all(np.abs(x) <= 1)
        assert audio.MIN_RATE <= r <= audio.MAX_RATE
        outcomes["ok"] += 1

    for data in seeds:
        for n in range(len(data) + 1):
            check(data[:n])
        for i in range(min(len(data), 80)):
            for v in (0, 1, 2, 3, 0x7F, 0x80, 0xFE, 0xFF):
                check(data[:i] + bytes([v]) + data[i + 1:])
    assert outcomes["ok"] > 100 and outcomes["typed"] > 100, outcomes
