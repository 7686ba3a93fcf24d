"""Speech recordings made here, for voice-activity calibration and evaluation: espeak-ng speaking
real sentences in several voices, accents, speeds and pitches, between pauses of room noise, hum
and non-speech sounds (clicks, a tone, a door-like thud), written as .wav files at 22,050 Hz (the
rate espeak-ng speaks at, so edgeship's reader resamples them to the model's 16 kHz as it would
a user's recordings).

    apt-get install espeak-ng          # Debian's package (the formant synthesiser; no network)
    python benchmarks/speech_corpus.py OUT --seconds 60 --files 1 --seed 1
    python benchmarks/speech_corpus.py OUT-calib --seconds 20 --files 3 --seed 2 --voices calib

Beside each ``name.wav`` a ``name.json`` holds the truth: the speech intervals (seconds) where the
synthesiser's output is above its own silence floor. The evaluation and calibration voice sets
share no voice (``--voices eval`` / ``calib``), and the sentences come from different seeds, so a
calibration is never judged on a voice or a sentence it saw.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 22050
#: voices (espeak-ng names, "+variant" for other speakers) for evaluation and for calibration: disjoint
VOICES = {"eval": ("en-us", "en-gb+f3", "en-gb-scotland+m3", "en-us+f2", "de+m2", "en-gb-x-rp+f4"),
          "calib": ("en-gb", "en-us+m4", "en-gb-x-gbclan+f1", "fr+m1", "en-029+f5")}


def _sentences(seed: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    from minilm import sentences

    s = sentences(512, seed=seed)
    return s


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's waveform of ``text`` (float32 at :data:`RATE`), its own leading/trailing silence cut."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
                       check=True, capture_output=True, timeout=60)
        with wave.open(str(out), "rb") as w:
            assert w.getframerate() == RATE and w.getsampwidth() == 2, (w.getframerate(), w.getsampwidth())
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def _noise(n: int, rng: np.random.Generator, level: float) -> np.ndarray:
    room = np.convolve(rng.standard_normal(n), np.ones(12) / 12, "same") * level
    hum = (0.002 + 0.004 * rng.random()) * np.sin(2 * np.pi * (50 if rng.random() < 0.5 else 60) * np.arange(n) / RATE)
    return (room + hum).astype(np.float32)


def _event(rng: np.random.Generator) -> np.ndarray:
    """A short non-speech sound: a click train, a steady tone or a low thud."""
    kind = rng.integers(3)
    n = int(RATE * rng.uniform(0.08, 0.4))
    t = np.arange(n) / RATE
    if kind == 0:
        x = np.zeros(n)
        x[:: int(RATE * 0.05)] = 1.0
        x = np.convolve(x, np.exp(-np.arange(200) / 30.0), "same")
    elif kind == 1:
        x = np.sin(2 * np.pi * rng.uniform(400, 2500) * t) * np.hanning(n)
    else:
        x = np.sin(2 * np.pi * 70 * t) * np.exp(-t * 25)
    return (x * rng.uniform(0.05, 0.3)).astype(np.float32)


def recording(seconds: float, seed: int, voices: tuple[str, ...], sentences: list[str]) -> tuple[np.ndarray, list[list[float]]]:
    """(audio at :data:`RATE`, speech intervals in seconds): utterances and pauses until ``seconds``."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    n = int(seconds * RATE)
    audio = _noise(n, rng, rng.uniform(0.001, 0.006))
    truth = []
    t = int(RATE * rng.uniform(0.3, 1.0))
    while t < n - RATE // 2:
        if rng.random() < 0.25:  # a non-speech sound in the pause
            e = _event(rng)
            end = min(n, t + len(e))
            audio[t:end] += e[:end - t]
            t = end + int(RATE * rng.uniform(0.2, 0.8))
            continue
        voice = pick.choice(voices)
        x = speak(pick.choice(sentences), voice, int(rng.integers(130, 200)), int(rng.integers(25, 75)))
        x = x * rng.uniform(0.3, 0.9) / (np.abs(x).max() + 1e-9)
        end = min(n, t + len(x))
        audio[t:end] += x[:end - t]
        truth.append([round(t / RATE, 3), round(end / RATE, 3)])
        t = end + int(RATE * rng.uniform(0.3, 2.0))
    return np.clip(audio, -1, 1), truth


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def make(out: Path, seconds: float, files: int, seed: int, voices: str) -> list[Path]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install espeak-ng")
    out.mkdir(parents=True, exist_ok=True)
    sentences = _sentences(seed)
    made = []
    for k in range(files):
        audio, truth = recording(seconds, seed * 100 + k, VOICES[voices], sentences)
        p = out / f"speech-{seed}-{k}.wav"
        write_wav(p, audio)
        p.with_suffix(".json").write_text(json.dumps({"rate": RATE, "seconds": seconds, "voices": list(VOICES[voices]),
                                                      "speech": truth}) + "\n")
        made.append(p)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--files", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--voices", choices=sorted(VOICES), default="eval")
    a = ap.parse_args()
    for p in make(a.out, a.seconds, a.files, a.seed, a.voices):
        truth = json.loads(p.with_suffix(".json").read_text())["speech"]
        print(f"{p}: {a.seconds:g} s, {len(truth)} utterances, {sum(e - s for s, e in truth):.1f} s of speech")


if __name__ == "__main__":
    main()
