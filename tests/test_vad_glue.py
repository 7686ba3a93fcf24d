"""The voice-activity stream glue (edgeship.tasks.vad) against silero-vad 6.2.3 itself: the segment
rule against ``get_speech_timestamps_from_probs`` on many probability sequences (every branch of
the max-speech cut run), the chunking and the carried state against ``OnnxWrapper`` driving a tiny
stream model made here (the feeds of every call identical), and the real ``silero_vad.onnx``
through ``run_stream`` against the package's own per-chunk probabilities and segments."""

from __future__ import annotations

import inspect
import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeship.errors import FormatError, InputError
from edgeship.tasks import VoiceActivity, task_dict, vad
from edgeship.tasks.vad import Chunker, StreamRunner, chunk_flags, chunk_inputs, params, run_stream, segment_agreement, segments_seconds, speech_segments

CI = bool(os.environ.get("EDGESHIP_CI"))


def _silero():
    """silero_vad.utils_vad (the Makefile installs it; CI fails without it, elsewhere the test skips).
    Importing the package sets torch's thread count to 1: put back as it was."""
    if not CI:
        pytest.importorskip("silero_vad")
    import torch

    threads = torch.get_num_threads()
    from silero_vad import utils_vad

    torch.set_num_threads(threads)
    return utils_vad


# ---- the record -----------------------------------------------------------------------------------

def test_the_defaults_are_the_records_and_every_form_of_it_reads_alike():
    record = task_dict(VoiceActivity())
    assert {k: v for k, v in record.items() if k != "kind"} == vad.DEFAULTS
    a, b, c = params(VoiceActivity()), params(record), params({"kind": "voice_activity"})
    assert vars(a) == vars(b) == vars(c)
    assert a.neg_threshold == 0.35 and a.max_speech_s == math.inf and params(a) is a
    p = params({"threshold": 0.1, "neg_threshold": 0.05, "max_speech_s": 2})
    assert (p.neg_threshold, p.max_speech_s) == (0.05, 2.0)
    assert params({"threshold": 0.1}).neg_threshold == 0.01  # max(threshold - 0.15, 0.01), as the package
    assert params(SimpleNamespace(chunk=256, context=32, sample_rate=8000)).chunk == 256
    with pytest.raises(FormatError, match="unknown field 'chunk_size'"):
        params({"chunk_size": 512})
    with pytest.raises(FormatError, match="not a embedding one"):
        params({"kind": "embedding"})
    with pytest.raises(FormatError, match="chunk 0 is not an integer >= 1"):
        params({"chunk": 0})


# ---- the segments against the package ------------------------------------------------------------

def _package_segments(ref, probs: np.ndarray, task: dict, n: int | None) -> list[tuple[int, int]]:  # noqa: ANN001
    p = params(task)
    got = ref.get_speech_timestamps_from_probs(
        [float(v) for v in probs], sampling_rate=p.sample_rate, threshold=p.threshold,
        min_speech_duration_ms=p.min_speech_ms, max_speech_duration_s=p.max_speech_s,
        min_silence_duration_ms=p.min_silence_ms, speech_pad_ms=p.speech_pad_ms, neg_threshold=task.get("neg_threshold"),
        min_silence_at_max_speech=p.min_silence_at_max_speech_ms,
        use_max_poss_sil_at_max_speech=p.use_max_poss_sil_at_max_speech, audio_length_samples=n)
    return [(d["start"], d["end"]) for d in got]


def _probability_walks(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    """Probability sequences of several characters: noise, a bounded random walk, blocks of
    speech and silence, values on and around the thresholds."""
    if kind == 0:
        p = rng.random(n)
    elif kind == 1:
        w = np.abs(np.cumsum(rng.normal(0, 0.15, n))) % 2
        p = np.where(w > 1, 2 - w, w)
    elif kind == 2:
        blocks = np.repeat(rng.random(n // 6 + 1) < 0.55, rng.integers(1, 12, n // 6 + 1))[:n]
        p = np.where(blocks, rng.uniform(0.5, 1, len(blocks)), rng.uniform(0, 0.35, len(blocks)))
    else:
        p = rng.choice([0.0, 0.2, 0.34, 0.35, 0.36, 0.49, 0.5, 0.51, 1.0], n)
    return np.asarray(p, np.float32).astype(np.float64)  # what a model gives: float32 values


class _Lines:
    """The lines of speech_segments that ran (sys.settrace), to see which branches the cases take."""

    def __init__(self) -> None:
        self.code = speech_segments.__code__
        self.ran: set[int] = set()

    def __enter__(self) -> _Lines:
        def trace(frame, event, arg):  # noqa: ANN001, ANN202
            if frame.f_code is self.code:
                if event == "line":
                    self.ran.add(frame.f_lineno)
                return trace
            return None

        self._old = sys.gettrace()
        sys.settrace(trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._old)

    def took(self, marker: str) -> bool:
        lines, first = inspect.getsourcelines(speech_segments)
        return any(marker in line and first + i in self.ran for i, line in enumerate(lines))


def test_the_segments_are_the_packages_on_many_probability_sequences():
    ref = _silero()
    rng = np.random.default_rng(38)
    cases = same = with_speech = 0
    with _Lines() as lines:
        for t in range(1200):
            rate = 8000 if t % 3 == 0 else 16000
            chunk = 256 if rate == 8000 else 512
            n = int(rng.integers(0, 500)) if t % 50 else int(rng.integers(0, 3))
            probs = _probability_walks(rng, n, t % 4)
            task = {"kind": "voice_activity", "sample_rate": rate, "chunk": chunk, "context": chunk // 8,
                    "threshold": float(rng.choice([0.5, 0.3, 0.7, 0.15])),
                    "min_speech_ms": int(rng.choice([0, 50, 64, 250, 600])),
                    "min_silence_ms": int(rng.choice([0, 32, 100, 300])),
                    "speech_pad_ms": int(rng.choice([0, 7, 30, 32, 100])),
                    "max_speech_s": [None, 0.4, 1.0, 2.3, 5.0, 0.288][t % 6],
                    "min_silence_at_max_speech_ms": int(rng.choice([0, 40, 64, 98, 200])),
                    "use_max_poss_sil_at_max_speech": bool(t % 2)}
            if task["max_speech_s"] == 0.288:  # limits on chunk boundaries: 4608 - chunk is a whole number of chunks
                task["speech_pad_ms"] = 0
            if t % 7 == 0:
                task["neg_threshold"] = float(rng.choice([0.05, 0.2, task["threshold"]]))
            length = None if t % 4 == 0 else max(0, n * chunk - int(rng.integers(0, chunk)))
            want = _package_segments(ref, probs, task, length)
            got = speech_segments(probs, task, length)
            cases += 1
            same += got == want
            with_speech += bool(want)
            assert got == want, (t, task, got[:4], want[:4])
    assert (cases, same) == (1200, 1200) and with_speech > 1000
    # every way a segment ends and every cut at max_speech_s ran (the values above put the limits on chunk
    # boundaries too, so that a > for a >= shows)
    for marker in ("# cut at the longest silence", "# the legacy cut", "# no silence to cut at",
                   "start = next_start", "triggered = False", "speeches.append([start, audio_length])",
                   "sp[1] += int(silence // 2)", "speeches.append([start, temp_end])"):
        assert lines.took(marker), marker


def test_a_worked_case_without_the_package():
    # 16 kHz, 512-sample chunks: two silent chunks, ten speech chunks, ten silent ones
    probs = [0.0] * 2 + [0.9] * 10 + [0.0] * 10
    # start 1024; the silence from chunk 12 (6144) lasts min_silence (1600 samples) at chunk 16;
    # 6144 - 1024 > 4000 (min_speech); padded by 480 each side
    assert speech_segments(probs, {}) == [(544, 6624)]
    assert speech_segments(probs, {"min_speech_ms": 400}) == []  # 5120 samples are not longer than 6400
    # still speech at the end: the segment runs to the last sample fed
    assert speech_segments([0.0, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8], {}, 5000) == [(32, 5000)]
    # max_speech_s 0.5: 8000 - 512 - 960 = 6528 samples at most and no silence to cut at: cut at chunk 13
    # (6656 > 6528), speech again at chunk 14 (7168), cut at chunk 27 (13824), speech again at chunk 28
    # (14336) till the end (1024 samples: too short); the 512-sample gap is halved, the last end padded
    assert speech_segments([0.9] * 30, {"max_speech_s": 0.5}) == [(0, 6656 + 256), (7168 - 256, 13824 + 480)]
    assert segments_seconds([(544, 6624)], {}) == [{"start": 0.034, "end": 0.414}]


# ---- chunks ---------------------------------------------------------------------------------------

def test_the_rows_are_the_chunking_definition():
    task = {"chunk": 4, "context": 2}
    rows = chunk_inputs(np.arange(1, 11, dtype=np.float32), task)
    assert rows.dtype == np.float32 and rows.tolist() == [[0, 0, 1, 2, 3, 4], [3, 4, 5, 6, 7, 8], [7, 8, 9, 10, 0, 0]]
    assert chunk_inputs(np.arange(8, dtype=np.float64), task).shape == (2, 6)  # no padded chunk when it fits
    assert chunk_inputs(np.zeros(0), task).shape == (0, 6)
    assert chunk_inputs(np.arange(1, 4), {"chunk": 2, "context": 0}).tolist() == [[1, 2], [3, 0]]
    # a context longer than the chunk: the samples before it (the previous call's input's tail)
    assert chunk_inputs(np.arange(1, 6), {"chunk": 2, "context": 3}).tolist() == [
        [0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [2, 3, 4, 5, 0]]
    assert chunk_inputs(np.arange(1, 6)[None, :], task).shape == (2, 6)  # [1, n] is mono
    with pytest.raises(InputError, match="mono"):
        chunk_inputs(np.zeros((100, 2)), task)
    # float64 samples are rounded to float32 once, as the model is given them
    x = np.random.default_rng(0).standard_normal(1000)
    assert chunk_inputs(x, {})[0, 64:].tobytes() == x[:512].astype(np.float32).tobytes()


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 3000), cuts=st.lists(st.integers(0, 3000), max_size=8),
       shape=st.sampled_from([(512, 64), (256, 32), (7, 3), (5, 9), (16, 0)]))
def test_a_chunker_fed_in_any_pieces_gives_the_rows_of_the_whole(n, cuts, shape):
    task = {"chunk": shape[0], "context": shape[1]}
    audio = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    c = Chunker(task)
    rows = []
    for piece in np.split(audio, sorted(min(x, n) for x in cuts)):
        rows += c.push(piece)
    assert c.pending == n - len(rows) * shape[0]
    last = c.flush()
    rows += [] if last is None else [last]
    want = chunk_inputs(audio, task)
    assert len(rows) == len(want) and all(a.tobytes() == b.tobytes() for a, b in zip(rows, want))
    assert c.pending == 0 and c.flush() is None  # flushing ended the stream: as new
    assert [r.tobytes() for r in c.push(audio)] == [r.tobytes() for r in want[: n // shape[0]]]


def test_chunk_flags_follow_the_middle_sample_and_agreement_counts_chunks():
    task = {"chunk": 10, "context": 0}
    segs = [(0, 6), (14, 25), (44, 46), (65, 1000)]

    def brute(segments: list, n: int) -> list[bool]:
        return [any(s <= k * 10 + 5 < e for s, e in segments) for k in range(n)]

    flags = chunk_flags(segs, 9, task)
    assert flags.tolist() == brute(segs, 9) == [True, True, False, False, True, False, True, True, True]
    rng = np.random.default_rng(1)
    for _ in range(200):
        bounds = np.sort(rng.integers(-20, 400, 2 * int(rng.integers(0, 6))))
        segs = list(zip(bounds[::2].tolist(), bounds[1::2].tolist()))
        n = int(rng.integers(0, 45))
        assert chunk_flags(segs, n, task).tolist() == brute(segs, n)
    assert chunk_flags([], 0, task).shape == (0,)
    assert segment_agreement([True, False, True, True], [True, True, True, True]) == 0.75
    assert segment_agreement([], []) == 1.0
    with pytest.raises(InputError, match="3 and 2 chunks"):
        segment_agreement([True] * 3, [True] * 2)


# ---- calls, against OnnxWrapper on a tiny stream model ---------------------------------------------

def _tiny_stream_model(path: Path, width: int, seed: int = 0, with_rate: bool = True) -> Path:
    """A stream model shaped like Silero VAD's: ``input`` [N, width] f32, ``state`` [2, N, 128] f32,
    ``sr`` an int64 scalar -> ``output`` [N, 1], ``stateN`` [2, N, 128]. With h, c the state's two
    halves: ``z = tanh(x W + h U + b + sr / 16000 s)``, ``c' = (c + z) / 2``,
    ``p = sigmoid(z w + c' v + log(mean x^2 + 1e-6) + 6)``: the probability depends on the chunk,
    its context, the rate and the carried state."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    h = 128

    def init(name: str, a: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(a, np.float32 if a.dtype.kind == "f" else np.int64), name)

    inits = [init("W", rng.standard_normal((width, h)) * 0.1), init("U", rng.standard_normal((h, h)) * 0.3),
             init("b", rng.standard_normal(h) * 0.1), init("s", rng.standard_normal(h)),
             init("w", rng.standard_normal((h, 1)) * 0.5), init("v", rng.standard_normal((h, 1)) * 0.5),
             init("i0", np.array(0)), init("i1", np.array(1)), init("ax1", np.array([1])), init("ax0", np.array([0])),
             init("half", np.array(0.5)), init("eps", np.array(1e-6)), init("six", np.array(6.0)),
             init("r0", np.array(16000.0))]
    nodes = [helper.make_node("Gather", ["state", "i0"], ["h"], axis=0),
             helper.make_node("Gather", ["state", "i1"], ["c"], axis=0),
             helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("MatMul", ["h", "U"], ["hu"]),
             helper.make_node("Add", ["xw", "hu"], ["a1"]), helper.make_node("Add", ["a1", "b"], ["a2"])]
    if with_rate:
        nodes += [helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
                  helper.make_node("Div", ["srf", "r0"], ["rs"]), helper.make_node("Mul", ["rs", "s"], ["rss"]),
                  helper.make_node("Add", ["a2", "rss"], ["a3"])]
    else:
        nodes += [helper.make_node("Identity", ["a2"], ["a3"])]
    nodes += [helper.make_node("Tanh", ["a3"], ["z"]), helper.make_node("Add", ["c", "z"], ["cz"]),
              helper.make_node("Mul", ["cz", "half"], ["c2"]),
              helper.make_node("MatMul", ["z", "w"], ["zw"]), helper.make_node("MatMul", ["c2", "v"], ["cv"]),
              helper.make_node("Mul", ["input", "input"], ["x2"]),
              helper.make_node("ReduceMean", ["x2", "ax1"], ["e"], keepdims=1),
              helper.make_node("Add", ["e", "eps"], ["e1"]), helper.make_node("Log", ["e1"], ["le"]),
              helper.make_node("Add", ["zw", "cv"], ["l1"]), helper.make_node("Add", ["l1", "le"], ["l2"]),
              helper.make_node("Add", ["l2", "six"], ["l3"]), helper.make_node("Sigmoid", ["l3"], ["output"]),
              helper.make_node("Unsqueeze", ["z", "ax0"], ["z3"]), helper.make_node("Unsqueeze", ["c2", "ax0"], ["c3"]),
              helper.make_node("Concat", ["z3", "c3"], ["stateN"], axis=0)]
    ins = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width]),
           helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", h])]
    if with_rate:
        ins.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
    graph = helper.make_graph(nodes, "tiny_stream", ins,
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
                               helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", h])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="edgeship-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _session(path: Path):  # noqa: ANN202
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _specs(session) -> list[dict]:  # noqa: ANN001
    types = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    return [{"name": i.name, "shape": [d if isinstance(d, int) else "n" for d in i.shape], "dtype": types[i.type]}
            for i in session.get_inputs()]


def _runner(session):  # noqa: ANN001, ANN202
    names = [o.name for o in session.get_outputs()]
    return lambda feed: dict(zip(names, session.run(None, feed)))


class _Recording:
    """Stands in for OnnxWrapper's session: keeps every feed it was given."""

    def __init__(self, session) -> None:  # noqa: ANN001
        self.session, self.feeds = session, []

    def run(self, names, feed):  # noqa: ANN001, ANN201
        self.feeds.append({k: np.array(v, copy=True) for k, v in feed.items()})
        return self.session.run(names, feed)


def _audio(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Bursts of harmonics in low noise (for the tiny model any audio will do)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate) + int(rng.integers(1, 300))
    t = np.arange(n) / rate
    on = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > 0.2).astype(np.float64)
    x = on * 0.3 * sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700), 1))
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_the_stream_feeds_what_onnxwrapper_feeds_call_for_call(tmp_path, rate):
    ref = _silero()
    import torch

    chunk, context = (512, 64) if rate == 16000 else (256, 32)
    path = _tiny_stream_model(tmp_path / "tiny.onnx", context + chunk)
    audio = _audio(4.0, rate, seed=rate)
    assert len(audio) % chunk  # a last, padded chunk

    wrapper = ref.OnnxWrapper(str(path), force_onnx_cpu=True)
    wrapper.session = rec = _Recording(wrapper.session)
    want = []
    for k in range(0, len(audio), chunk):  # get_speech_timestamps' loop
        x = torch.from_numpy(audio[k:k + chunk])
        if len(x) < chunk:
            x = torch.nn.functional.pad(x, (0, chunk - len(x)))
        want.append(wrapper(x, rate).item())

    session = _session(path)
    task = {"kind": "voice_activity", "sample_rate": rate, "chunk": chunk, "context": context}
    feeds: list[dict] = []
    probs, outs = run_stream(_runner(session), chunk_inputs(audio, task), task, _specs(session), record=feeds)
    assert len(probs) == len(want) == math.ceil(len(audio) / chunk) == len(rec.feeds) == len(feeds) == len(outs)
    assert probs.dtype == np.float64 and probs.tolist() == want  # the same float32 values
    for n, (mine, theirs) in enumerate(zip(feeds, rec.feeds)):
        assert list(mine) == ["input", "state", "sr"] and set(theirs) == set(mine)
        for name in mine:
            assert mine[name].dtype == theirs[name].dtype and mine[name].shape == theirs[name].shape, (n, name)
            assert mine[name].tobytes() == theirs[name].tobytes(), (n, name)
    assert feeds[1]["state"].tobytes() == outs[0]["stateN"].tobytes()  # carried
    assert not feeds[0]["state"].any() and feeds[0]["state"].shape == (2, 1, 128) and feeds[5]["state"].any()
    assert feeds[0]["sr"].shape == () and int(feeds[0]["sr"]) == rate

    # the segments of those probabilities are what get_speech_timestamps gives with this model
    wrapper = ref.OnnxWrapper(str(path), force_onnx_cpu=True)
    theirs = ref.get_speech_timestamps(torch.from_numpy(audio), wrapper, sampling_rate=rate)
    assert speech_segments(probs, task, len(audio)) == [(d["start"], d["end"]) for d in theirs] != []

    # the state matters: a stream that dropped it would not give these probabilities
    cold = [StreamRunner(_runner(session), task, _specs(session)).step(r) for r in chunk_inputs(audio, task)]
    assert float(np.max(np.abs(np.asarray(cold) - probs))) > 1e-3


def test_the_runner_carries_resets_and_feeds_only_what_the_model_takes(tmp_path):
    session = _session(_tiny_stream_model(tmp_path / "norate.onnx", 576, with_rate=False))
    specs = _specs(session)
    assert [s["name"] for s in specs] == ["input", "state"]  # like silero_vad_half.onnx: no rate input
    rows = chunk_inputs(_audio(1.0, 16000, 3), {})
    r = StreamRunner(_runner(session), {}, specs)
    assert not r.state["state"].any()
    fed: list[dict] = []
    first = [r.step(row, fed) for row in rows]
    assert list(fed[0]) == ["input", "state"] and fed[0]["input"].shape == (1, 576)
    assert r.state["state"].tobytes() == r.outputs["stateN"].tobytes()
    r.reset()
    assert not r.state["state"].any() and [r.step(row) for row in rows] == first
    # a Chunker fed in pieces drives it to the same numbers
    c, r2, got = Chunker({}), StreamRunner(_runner(session), {}, specs), []
    audio = _audio(1.0, 16000, 3)
    for a, b in ((0, 100), (100, 1123), (1123, len(audio))):
        got += [r2.step(row) for row in c.push(audio[a:b])]
    got += [r2.step(c.flush())]
    assert got == first


def test_the_runner_says_what_does_not_fit(tmp_path):
    session = _session(_tiny_stream_model(tmp_path / "t.onnx", 576))
    specs, run = _specs(session), _runner(session)
    with pytest.raises(FormatError, match=r"audio input 'input' has the shape \['n', 576\]; the task feeds it \[1, 288\]"):
        StreamRunner(run, {"chunk": 256, "context": 32}, specs)
    with pytest.raises(FormatError, match="no input 'audio'"):
        StreamRunner(run, {"audio_input": "audio"}, specs)
    with pytest.raises(FormatError, match="carries into 'h0'"):
        StreamRunner(run, {"carry": {"stateN": "h0"}}, specs)
    with pytest.raises(FormatError, match="input 'state' is not fed"):
        StreamRunner(run, {"carry": {}}, specs)
    with pytest.raises(FormatError, match="no output 'hn'"):
        StreamRunner(run, {"carry": {"hn": "state"}}, specs).step(np.zeros(576))
    with pytest.raises(FormatError, match="'stateN' holds 256 values"):
        StreamRunner(run, {"probability": "stateN"}, specs).step(np.zeros(576))
    with pytest.raises(InputError, match="a chunk row of 512 samples; the model takes 576"):
        StreamRunner(run, {}, specs).step(np.zeros(512))
    assert 0 < StreamRunner(run, {"probability": "output"}, specs).step(np.ones(576)) < 1


# ---- the real Silero VAD --------------------------------------------------------------------------

def test_the_real_silero_vad_streams_as_the_package_runs_it():
    ref = _silero()
    import torch

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from real_inputs import speech_like

    path = Path(ref.__file__).parent / "data" / "silero_vad.onnx"
    audio, truth = speech_like(20.0, 7)
    audio = audio[:-300]  # a last, padded chunk
    wrapper = ref.OnnxWrapper(str(path), force_onnx_cpu=True)
    want = []
    for k in range(0, len(audio), 512):
        x = torch.from_numpy(np.pad(audio[k:k + 512], (0, max(0, k + 512 - len(audio)))))
        want.append(wrapper(x, 16000).item())

    session = _session(path)
    task = task_dict(VoiceActivity())
    probs, _ = run_stream(_runner(session), chunk_inputs(audio, task), task, _specs(session))
    assert len(probs) == len(want) == math.ceil(len(audio) / 512)
    assert float(np.max(np.abs(probs - np.asarray(want)))) <= 1e-6
    segs = speech_segments(probs, task, len(audio))
    for extra in ({}, {"max_speech_s": 1.0}, {"max_speech_s": 1.0, "use_max_poss_sil_at_max_speech": False}):
        p = params({**task, **extra})
        theirs = ref.get_speech_timestamps(torch.from_numpy(audio), ref.OnnxWrapper(str(path), force_onnx_cpu=True),
                                           max_speech_duration_s=p.max_speech_s,
                                           use_max_poss_sil_at_max_speech=p.use_max_poss_sil_at_max_speech)
        got = speech_segments(probs, {**task, **extra}, len(audio))
        assert got == [(d["start"], d["end"]) for d in theirs], extra
        if extra:
            assert len(got) > len(segs)  # the long segments were cut
    # and the segments are the speech: most voiced chunks flagged, most silent ones not
    flags = chunk_flags(segs, len(probs), task)
    voiced = np.pad(truth[:len(audio)], (0, len(probs) * 512 - len(audio))).reshape(-1, 512).mean(1) > 0.5
    assert segment_agreement(flags, voiced) > 0.8 and len(segs) >= 5
