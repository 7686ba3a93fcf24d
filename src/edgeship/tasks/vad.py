"""The voice-activity stream glue: audio -> model calls with a carried state -> speech segments.

What runs around a stream model such as Silero VAD, reproduced from silero-vad 6.2.3's
``utils_vad.py`` with numpy and the standard library (the package and torch are not imported):
this module is the light runtime's (a device runs it with numpy and the model's runtime) and the
one source the generated Kotlin (``bundle/templates/EdgeshipVad.kt.j2``) follows line for line.
The parameters are a ``voice_activity`` task record (:class:`edgeship.tasks.VoiceActivity`), as
the pydantic record or its JSON dict.

* **chunks** (:func:`chunk_inputs`, :class:`Chunker`; ``OnnxWrapper.__call__`` and the loop of
  ``get_speech_timestamps``): mono float32 samples at ``sample_rate``; chunk k covers samples
  ``[k * chunk, (k + 1) * chunk)``, the last one zero-padded to ``chunk``; the model's input for
  chunk k is ``[1, context + chunk]``: the ``context`` samples before the chunk (the tail of the
  previous call's input, so zeros before the first sample) then the chunk. A recording of n
  samples gives ``ceil(n / chunk)`` chunks (none when empty).
* **calls** (:class:`StreamRunner`; ``OnnxWrapper.__call__``): per chunk one call with
  ``audio_input`` the row above, ``rate_input`` an integer scalar ``sample_rate`` (when the record
  names one and the model has that input; Silero's half-precision export has none) and, per
  ``carry`` entry (output -> input), that output of the previous call (zeros of the input's shape,
  a dynamic dimension 1, on the first call: ``OnnxWrapper.reset_states``). The chunk's speech
  probability is the ``probability`` output (None: the first output), its single value as a float.
* **segments** (:func:`speech_segments`): ``get_speech_timestamps_from_probs`` (what
  ``get_speech_timestamps`` returns after running the model), step for step with every branch:
  speech starts at a chunk scoring ``>= threshold`` and ends ``min_silence_ms`` after a chunk below
  ``neg_threshold``; a segment longer than ``max_speech_s`` is cut at the longest silence seen in it
  (``use_max_poss_sil_at_max_speech``) or at the last one over ``min_silence_at_max_speech_ms``
  (the legacy rule) or, failing both, where it reached the limit; segments not longer than
  ``min_speech_ms`` dropped; each padded by ``speech_pad_ms`` (halving shorter gaps). Samples,
  ``return_seconds=False``, ``step=1``; ``window_size_samples`` is the record's ``chunk`` (the
  package hard-codes 512 at 16 kHz and 256 at 8 kHz: the same numbers for its models).
* **chunk flags** (:func:`chunk_flags`): chunk k is speech when its middle sample
  ``k * chunk + chunk // 2`` lies in a segment ``[start, end)``; two runs agree on the share of
  chunks whose flags are equal (:func:`segment_agreement`): the measure of "segments identical in
  at least ``min_agreement`` of the chunks" a reduced precision is judged by.

Checked against the package: ``tests/test_vad_glue.py`` (segments of many probability sequences;
the real ``silero_vad.onnx`` through :func:`run_stream` against ``OnnxWrapper``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import FormatError, InputError

__all__ = ["DEFAULTS", "params", "chunk_inputs", "Chunker", "StreamRunner", "run_stream", "speech_segments",
           "chunk_flags", "segment_agreement", "segments_seconds"]

#: a model as the stream calls it: its inputs by name in, its outputs by name out (in its order)
Run = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]

#: the ``voice_activity`` record's fields and defaults (``tasks.records.VoiceActivity``; the light
#: runtime reads the JSON without pydantic, so a dict may leave any of them out)
DEFAULTS: dict[str, Any] = {
    "audio_input": "input", "rate_input": "sr", "sample_rate": 16000, "chunk": 512, "context": 64,
    "carry": {"stateN": "state"}, "probability": None, "threshold": 0.5, "neg_threshold": None,
    "min_speech_ms": 250, "min_silence_ms": 100, "speech_pad_ms": 30, "max_speech_s": None,
    "min_silence_at_max_speech_ms": 98, "use_max_poss_sil_at_max_speech": True, "min_agreement": 0.98,
}
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def params(task: Any) -> SimpleNamespace:
    """A voice-activity record (pydantic, its JSON dict, or a namespace made here) as attributes,
    the defaults filled in, ``neg_threshold`` resolved (None: ``max(threshold - 0.15, 0.01)``, as
    the package) and ``max_speech_s`` too (None: infinity)."""
    if isinstance(task, SimpleNamespace) and getattr(task, "_resolved", False):
        return task
    if isinstance(task, SimpleNamespace):
        record = dict(vars(task))
    elif isinstance(task, Mapping):
        record = dict(task)
    elif hasattr(task, "model_dump"):
        record = task.model_dump(mode="json")
    else:
        raise FormatError(f"a voice-activity task record is a dict, not {type(task).__name__}",
                          hint='e.g. {"kind": "voice_activity", "chunk": 512}')
    kind = record.pop("kind", "voice_activity")
    if kind != "voice_activity":
        raise FormatError(f"the stream glue runs a voice_activity task, not a {kind} one",
                          hint="the task record's kind is voice_activity")
    unknown = sorted(set(record) - set(DEFAULTS))
    if unknown:
        raise FormatError(f"voice_activity task: unknown field {unknown[0]!r}",
                          hint=f"its fields are {', '.join(DEFAULTS)}")
    p = SimpleNamespace(**{**DEFAULTS, **record})
    for name, low in (("sample_rate", 1), ("chunk", 1), ("context", 0)):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise FormatError(f"voice_activity task: {name} {value!r} is not an integer >= {low}")
        setattr(p, name, int(value))
    if not 0 < float(p.threshold) < 1:
        raise FormatError(f"voice_activity task: threshold {p.threshold!r} is not between 0 and 1")
    if not isinstance(p.carry, Mapping):
        raise FormatError("voice_activity task: carry maps an output to the input it feeds",
                          hint='e.g. {"stateN": "state"}')
    p.carry = {str(k): str(v) for k, v in p.carry.items()}
    p.neg_threshold = max(p.threshold - 0.15, 0.01) if p.neg_threshold is None else float(p.neg_threshold)
    p.max_speech_s = math.inf if p.max_speech_s is None else float(p.max_speech_s)
    p.kind = "voice_activity"
    p._resolved = True
    return p


# ---------------------------------------------------------------- chunks
def _mono(samples: Any) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        if sum(d > 1 for d in x.shape) > 1:
            raise InputError(f"audio of shape {list(x.shape)}: the stream takes mono samples",
                             hint="mix the channels to one (their mean) first")
        x = x.reshape(-1)
    return x


def chunk_inputs(audio: Any, task: Any) -> np.ndarray:
    """Every model input row of a whole recording: float32 ``[ceil(n / chunk), context + chunk]``
    (row k: the ``context`` samples before chunk k, zeros before the first sample, then the chunk,
    the last zero-padded)."""
    p = params(task)
    x = _mono(audio)
    n = -(-len(x) // p.chunk)
    width = p.context + p.chunk
    padded = np.zeros(p.context + n * p.chunk, dtype=np.float32)
    padded[p.context:p.context + len(x)] = x
    rows = np.empty((n, width), dtype=np.float32)
    for k in range(n):
        rows[k] = padded[k * p.chunk:k * p.chunk + width]
    return rows


class Chunker:
    """The rows of :func:`chunk_inputs` from samples fed as they arrive, in pieces of any length:
    ``push`` gives the rows its samples complete, ``flush`` the last one (zero-padded) when samples
    are left over, and ends the stream (the chunker is then as new). Feeding a recording in any
    pieces then flushing gives exactly ``chunk_inputs`` of it."""

    def __init__(self, task: Any) -> None:
        self.p = params(task)
        self.reset()

    def reset(self) -> None:
        #: the ``context`` samples before the pending ones (zeros at the start), then the pending ones
        self._buf = np.zeros(self.p.context, dtype=np.float32)

    @property
    def pending(self) -> int:
        """Samples fed that no row holds yet."""
        return len(self._buf) - self.p.context

    def push(self, samples: Any) -> list[np.ndarray]:
        """The rows (float32 ``[context + chunk]``) the samples complete, in order."""
        chunk, width = self.p.chunk, self.p.context + self.p.chunk
        buf = np.concatenate([self._buf, _mono(samples)])
        m = (len(buf) - self.p.context) // chunk
        rows = [buf[k * chunk:k * chunk + width].copy() for k in range(m)]
        self._buf = buf[m * chunk:].copy()
        return rows

    def flush(self) -> np.ndarray | None:
        """The last row, zero-padded, when samples are pending (None otherwise); the stream ends."""
        width = self.p.context + self.p.chunk
        row = None
        if len(self._buf) > self.p.context:
            row = np.zeros(width, dtype=np.float32)
            row[:len(self._buf)] = self._buf
        self.reset()
        return row


# ---------------------------------------------------------------- calls
def _dtype(spec: Mapping[str, Any]) -> np.dtype:
    name = str(spec.get("dtype") or "float32")
    try:
        return np.dtype(_DTYPES.get(name, name))
    except TypeError:
        raise FormatError(f"model input {spec.get('name')!r}: unknown element type {name!r}") from None


def _zeros_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """The input's shape with each dynamic dimension (a name, None or negative) as 1."""
    return tuple(int(d) if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 else 1
                 for d in spec.get("shape") or ())


class StreamRunner:
    """Calls ``run`` chunk after chunk the way the record says, carrying the state.

    ``run(feed) -> outputs``: the model's inputs by name (in ``inputs``' order) to its outputs by
    name (in the model's order: the first is the probability when the record names none).
    ``inputs``: the model's input specs ``{"name", "shape", "dtype"}`` (a dimension an int, or a
    name when dynamic). ``step(row)`` runs one chunk row (:func:`chunk_inputs`) and returns its
    speech probability; ``record=[]`` also appends the exact feed of the call; ``outputs`` holds
    the last call's outputs; ``state`` what the next call's carried inputs get; ``reset()``
    starts a new stream (zeros)."""

    def __init__(self, run: Run, task: Any, inputs: Sequence[Mapping[str, Any]]) -> None:
        self.run, self.p = run, params(task)
        self.inputs = [dict(i) for i in inputs]
        names = [i.get("name") for i in self.inputs]
        if self.p.audio_input not in names:
            raise FormatError(f"the model has no input {self.p.audio_input!r} (the task's audio_input); its inputs: "
                              f"{', '.join(map(str, names))}", hint="set audio_input in the task record")
        self._rate = self.p.rate_input if self.p.rate_input in names else None
        missing = [v for v in self.p.carry.values() if v not in names]
        if missing:
            raise FormatError(f"the task carries into {missing[0]!r}, which the model does not take; its inputs: "
                              f"{', '.join(map(str, names))}", hint="carry maps an output to one of the model's inputs")
        fed = {self.p.audio_input, self._rate, *self.p.carry.values()}
        extra = [n for n in names if n not in fed]
        if extra:
            raise FormatError(f"the model's input {extra[0]!r} is not fed by the voice_activity task",
                              hint="a stream model takes the audio chunk, the carried state and at most a rate")
        spec = self.inputs[names.index(self.p.audio_input)]
        shape = spec.get("shape") or ()
        width = self.p.context + self.p.chunk
        if len(shape) != 2 or any(isinstance(d, int) and not isinstance(d, bool) and d >= 0 and d != want
                                  for d, want in zip(shape, (1, width))):
            raise FormatError(f"the model's audio input {self.p.audio_input!r} has the shape {list(shape)}; the task "
                              f"feeds it [1, {width}] (context {self.p.context} + chunk {self.p.chunk})",
                              hint="set chunk and context in the task record to the model's")
        self._audio_dtype = _dtype(spec)
        self._specs = {i["name"]: i for i in self.inputs}
        self.outputs: dict[str, np.ndarray] = {}
        self.reset()

    def reset(self) -> None:
        """A new stream: every carried input zeros again."""
        self._state = {name: np.zeros(_zeros_shape(self._specs[name]), dtype=_dtype(self._specs[name]))
                       for name in self.p.carry.values()}
        self.outputs = {}

    @property
    def state(self) -> dict[str, np.ndarray]:
        """What the carried inputs get on the next call, by input name."""
        return dict(self._state)

    def feed(self, row: Any) -> dict[str, np.ndarray]:
        """The inputs of the next call for a chunk row, in the model's input order."""
        x = np.asarray(row)
        width = self.p.context + self.p.chunk
        if x.size != width:
            raise InputError(f"a chunk row of {x.size} samples; the model takes {width} (context {self.p.context} "
                             f"+ chunk {self.p.chunk})", hint="make the rows with chunk_inputs or a Chunker")
        out: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            name = spec["name"]
            if name == self.p.audio_input:
                out[name] = x.reshape(1, width).astype(self._audio_dtype)
            elif name == self._rate:
                out[name] = np.full(_zeros_shape(spec), self.p.sample_rate, dtype=_dtype(spec))
            else:
                out[name] = self._state[name]
        return out

    def step(self, row: Any, record: list[dict[str, np.ndarray]] | None = None) -> float:
        """Run one chunk row; its speech probability. ``record``: a list the call's feed is appended to."""
        feed = self.feed(row)
        if record is not None:
            record.append(feed)
        got = self.run(feed)
        if not isinstance(got, Mapping):
            raise InputError(f"the model runner gave a {type(got).__name__}; the stream needs its outputs by name")
        outputs = {str(k): np.asarray(v) for k, v in got.items()}
        state = {}
        for out_name, in_name in self.p.carry.items():
            if out_name not in outputs:
                raise FormatError(f"the model gave no output {out_name!r} (the task carries it into {in_name!r}); its "
                                  f"outputs: {', '.join(outputs)}", hint="carry maps one of the model's outputs to an input")
            v = outputs[out_name]
            state[in_name] = v if v.dtype == self._state[in_name].dtype else v.astype(self._state[in_name].dtype)
        self._state, self.outputs = state, outputs
        return _probability(outputs, self.p.probability)


def _probability(outputs: Mapping[str, np.ndarray], name: str | None) -> float:
    if name is None:
        if not outputs:
            raise FormatError("the model gave no outputs")
        name = next(iter(outputs))
    if name not in outputs:
        raise FormatError(f"the model gave no output {name!r} (the task's probability); its outputs: "
                          f"{', '.join(outputs)}", hint="set probability in the task record")
    v = np.asarray(outputs[name]).reshape(-1)
    if v.size != 1:
        raise FormatError(f"the model's probability output {name!r} holds {v.size} values; a voice-activity model "
                          "gives one per chunk", hint="set probability to the output that does")
    return float(v[0])


def run_stream(run: Run, chunks: Any, task: Any, inputs: Sequence[Mapping[str, Any]],
               record: list[dict[str, np.ndarray]] | None = None) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """A whole stream from its first call: (speech probability per row, float64 ``[n]``; the
    outputs of each call). ``chunks``: rows as :func:`chunk_inputs` makes them; ``record``: a list
    every call's feed is appended to."""
    runner = StreamRunner(run, task, inputs)
    probs, outs = [], []
    for row in np.asarray(chunks):
        probs.append(runner.step(row, record))
        outs.append(runner.outputs)
    return np.asarray(probs, dtype=np.float64), outs


# ---------------------------------------------------------------- segments
def speech_segments(probs: Any, task: Any, n_samples: int | None = None) -> list[tuple[int, int]]:
    """Speech segments ``[(start, end)]`` in samples of a stream whose chunks scored ``probs``:
    silero-vad 6.2.3's ``get_speech_timestamps_from_probs(probs, sample_rate, threshold, ...,
    audio_length_samples=n_samples)``, its code step for step (``current_speech`` is ``start``,
    None when empty). ``n_samples``: the stream's length (None: ``len(probs) * chunk``)."""
    p = params(task)
    window = p.chunk
    sr = p.sample_rate
    values = [float(v) for v in np.asarray(probs, dtype=np.float64).reshape(-1)]
    audio_length = len(values) * window if n_samples is None else int(n_samples)

    min_speech = sr * p.min_speech_ms / 1000
    pad = sr * p.speech_pad_ms / 1000
    max_speech = sr * p.max_speech_s - window - 2 * pad
    min_silence = sr * p.min_silence_ms / 1000
    min_silence_at_max = sr * p.min_silence_at_max_speech_ms / 1000
    threshold, neg_threshold = p.threshold, p.neg_threshold

    triggered = False
    speeches: list[list[int]] = []
    start: int | None = None
    temp_end = 0  # a potential segment end (some silence tolerated)
    prev_end = next_start = 0  # potential segment limits, should the maximum length be reached
    possible_ends: list[tuple[int, int]] = []

    for i, prob in enumerate(values):
        cur = window * i

        # speech back after a temp_end: keep the silence as a candidate cut when long enough
        if prob >= threshold and temp_end != 0:
            sil = cur - temp_end
            if sil > min_silence_at_max:
                possible_ends.append((temp_end, sil))
            temp_end = 0
            if next_start < prev_end:
                next_start = cur

        # start of speech
        if prob >= threshold and not triggered:
            triggered = True
            start = cur
            continue

        # the maximum length reached: where to cut
        if triggered and cur - start > max_speech:
            if p.use_max_poss_sil_at_max_speech and possible_ends:
                best = possible_ends[0]  # cut at the longest silence seen (the first of them, as max())
                for e in possible_ends[1:]:
                    if e[1] > best[1]:
                        best = e
                prev_end, dur = best
                speeches.append([start, prev_end])
                start = None
                next_start = prev_end + dur
                if next_start < prev_end + cur:
                    start = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            elif prev_end != 0:
                speeches.append([start, prev_end])  # the legacy cut: at the last silence long enough
                start = None
                if next_start < prev_end:
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                speeches.append([start, cur])  # no silence to cut at: cut where the limit was reached
                start = None
                prev_end = next_start = temp_end = 0
                triggered = False
                possible_ends = []
                continue

        # silence while in speech
        if prob < neg_threshold and triggered:
            if temp_end == 0:
                temp_end = cur
            sil_now = cur - temp_end
            if not p.use_max_poss_sil_at_max_speech and sil_now > min_silence_at_max:
                prev_end = temp_end
            if sil_now < min_silence:
                continue
            if temp_end - start > min_speech:
                speeches.append([start, temp_end])
            start = None
            prev_end = next_start = temp_end = 0
            triggered = False
            possible_ends = []
            continue

    if start is not None and audio_length - start > min_speech:
        speeches.append([start, audio_length])

    for i, sp in enumerate(speeches):
        if i == 0:
            sp[0] = int(max(0, sp[0] - pad))
        if i != len(speeches) - 1:
            silence = speeches[i + 1][0] - sp[1]
            if silence < 2 * pad:
                sp[1] += int(silence // 2)
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - silence // 2))
            else:
                sp[1] = int(min(audio_length, sp[1] + pad))
                speeches[i + 1][0] = int(max(0, speeches[i + 1][0] - pad))
        else:
            sp[1] = int(min(audio_length, sp[1] + pad))
    return [(int(a), int(b)) for a, b in speeches]


def chunk_flags(segments: Sequence[Sequence[int]], n_chunks: int, task: Any) -> np.ndarray:
    """Per chunk, whether it is speech: its middle sample ``k * chunk + chunk // 2`` lies in a
    segment ``[start, end)`` (bool ``[n_chunks]``)."""
    p = params(task)
    chunk, mid = p.chunk, p.chunk // 2
    count = np.zeros(int(n_chunks) + 1, dtype=np.int64)
    for start, end in segments:
        # the chunks k with start <= k * chunk + mid < end: ceil((start - mid) / chunk) <= k < ceil((end - mid) / chunk)
        lo = min(max(-((mid - int(start)) // chunk), 0), n_chunks)
        hi = min(max(-((mid - int(end)) // chunk), 0), n_chunks)
        if lo < hi:
            count[lo] += 1
            count[hi] -= 1
    return np.cumsum(count[:-1]) > 0


def segment_agreement(flags_a: Any, flags_b: Any) -> float:
    """The share of chunks two runs flag alike (1.0 for none)."""
    a, b = np.asarray(flags_a, dtype=bool).reshape(-1), np.asarray(flags_b, dtype=bool).reshape(-1)
    if a.shape != b.shape:
        raise InputError(f"chunk flags of {len(a)} and {len(b)} chunks: the same stream has as many in both")
    return float(np.mean(a == b)) if len(a) else 1.0


def segments_seconds(segments: Sequence[Sequence[int]], task: Any) -> list[dict[str, float]]:
    """Segments in seconds, ``{"start", "end"}`` rounded to the millisecond (for display and JSON)."""
    sr = params(task).sample_rate
    return [{"start": round(int(a) / sr, 3), "end": round(int(b) / sr, 3)} for a, b in segments]
