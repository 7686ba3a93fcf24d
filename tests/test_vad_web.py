"""The voice-activity page of a release bundle (integration/web/vad.html + edgeship-vad.js, written
by bundle/stream_web.py) in headless Chromium against the Python stream glue (edgeship.tasks.vad,
itself checked against silero-vad in test_vad_glue.py): the JavaScript chunker gives Python's rows
for pieces of any length, speechSegments gives Python's segments on sequences that take every
branch of the segment rule, and the page, streaming a WAV file through a tiny stateful model on
onnxruntime-web with the state carried, finds the segments Python finds on native ONNX Runtime
(identical) from the same probabilities (within 1e-5), passing over an artifact whose golden
stream it misses, and saying why."""

from __future__ import annotations

import base64
import hashlib
import inspect
import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from edgeship.bundle.stream_web import VAD_BUNDLE_SCRIPT, VAD_PAGE, VAD_SCRIPT, write_vad_web
from edgeship.errors import FormatError
from edgeship.readers.audio import read_wav, write_wav
from edgeship.targets.web import _Browser, chromium_path, serve_folder, vendor_runtime
from edgeship.tasks import VoiceActivity, task_dict
from edgeship.tasks.vad import Chunker, chunk_flags, chunk_inputs, run_stream, segment_agreement, segments_seconds, speech_segments

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
RATE = 16000
TASK = task_dict(VoiceActivity())
#: bursts of a voiced tone in noise ("s") between quiet stretches ("q"), seconds each: a 60 ms gap
#: the rule bridges, a 120 ms burst it drops (shorter than min_speech_ms), a length that is no
#: multiple of the chunk (the last chunk padded)
PLAN = [("q", .5), ("s", .9), ("q", .06), ("s", .5), ("q", .6), ("s", .12), ("q", .7), ("s", 1.6), ("q", .25),
        ("s", .45), ("q", .3137)]
GOLDEN_PLAN = [("q", .3), ("s", .7), ("q", .4), ("s", .35), ("q", .2113)]


# ---- the tiny stream model, the audio, the bundle ----------------------------------------------

def tiny_vad() -> onnx.ModelProto:
    """Silero VAD's interface (input [N, 576] float32, state [2, N, 128], sr an int64 scalar ->
    output [N, 1], stateN [2, N, 128]) on a few operators: the state is a moving average of the
    chunk's energy (stateN = 0.6 state + 0.4 w E, E = 60 mean(x^2) sr / 16000), the probability
    sigmoid(1.2 E + 2.5 mean(state) - 3): speech needs loud chunks and loud chunks before them, so
    a stream whose state is not carried scores otherwise."""
    w = (0.4 * (0.5 + np.arange(128) / 128)).astype(np.float32).reshape(1, 1, 128)
    consts = {"gain": np.float32(60), "rate0": np.float32(16000), "shape3": np.array([1, -1, 1], np.int64),
              "shape2": np.array([-1, 1], np.int64), "keep": np.float32(0.6), "w": w, "we": np.float32(1.2),
              "ws": np.float32(2.5), "bias": np.float32(3)}
    nodes = [oh.make_node("Mul", ["input", "input"], ["sq"]),
             oh.make_node("ReduceMean", ["sq"], ["e"], axes=[1], keepdims=1),
             oh.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             oh.make_node("Div", ["srf", "rate0"], ["rs"]),
             oh.make_node("Mul", ["e", "gain"], ["eg"]),
             oh.make_node("Mul", ["eg", "rs"], ["E"]),
             oh.make_node("Reshape", ["E", "shape3"], ["E3"]),
             oh.make_node("Mul", ["state", "keep"], ["kept"]),
             oh.make_node("Mul", ["E3", "w"], ["new"]),
             oh.make_node("Add", ["kept", "new"], ["stateN"]),
             oh.make_node("ReduceMean", ["state"], ["m3"], axes=[0, 2], keepdims=1),
             oh.make_node("Reshape", ["m3", "shape2"], ["m"]),
             oh.make_node("Mul", ["E", "we"], ["a"]),
             oh.make_node("Mul", ["m", "ws"], ["b"]),
             oh.make_node("Add", ["a", "b"], ["ab"]),
             oh.make_node("Sub", ["ab", "bias"], ["z"]),
             oh.make_node("Sigmoid", ["z"], ["output"])]
    graph = oh.make_graph(nodes, "tiny_vad",
                          [oh.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 576]),
                           oh.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 128]),
                           oh.make_tensor_value_info("sr", TensorProto.INT64, [])],
                          [oh.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
                           oh.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 128])],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def speech(plan: list[tuple[str, float]], seed: int) -> np.ndarray:
    """Mono float32 samples at 16 kHz on the 16-bit grid (what a WAV file holds): a voiced tone
    (a fundamental and its octave, a smooth envelope) with noise for "s", faint noise for "q"."""
    rng = np.random.default_rng(seed)
    parts = []
    for kind, seconds in plan:
        n = int(seconds * RATE)
        t = np.arange(n) / RATE
        if kind == "s":
            f0, env = rng.uniform(120, 240), np.sin(np.pi * np.arange(n) / n) ** 0.3
            parts.append(0.25 * env * (np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t))
                         + 0.05 * rng.standard_normal(n))
        else:
            parts.append(0.003 * rng.standard_normal(n))
    x = np.clip(np.round(np.concatenate(parts) * 32768), -32768, 32767) / 32768
    return x.astype(np.float32)


def native(model: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The model on native ONNX Runtime (one thread) as the stream glue calls it, and its input specs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    types = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    inputs = [{"name": i.name, "shape": list(i.shape), "dtype": types[i.type]} for i in s.get_inputs()]
    return (lambda feed: dict(zip(names, s.run(None, feed)))), inputs


def python_vad(model: Path, samples: np.ndarray, task: dict = TASK) -> tuple[np.ndarray, list[list[int]]]:
    """What the light runtime finds: tasks.vad's rows, run_stream on native ONNX Runtime, speech_segments."""
    run, inputs = native(model)
    probs, _ = run_stream(run, chunk_inputs(samples, task), task, inputs)
    return probs, [list(s) for s in speech_segments(probs, task, len(samples))]


def _npy(bundle: Path, a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    data = buf.getvalue()
    rel = f"golden/t/{hashlib.sha256(data).hexdigest()[:16]}.npy"
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(data)
    return rel


def golden_record(bundle: Path, aid: str, model: Path, audio_rel: str, audio: np.ndarray) -> dict[str, Any]:
    """An artifact's golden stream as common.md defines it: its own probabilities on the golden
    audio (native ONNX Runtime), their segments, the tolerance."""
    probs, segments = python_vad(model, audio)
    return {"stream": {"audio": audio_rel, "rate": RATE, "origin": "synthesised voiced bursts (tests/test_vad_web.py)"},
            "probs": _npy(bundle, probs.astype(np.float32)), "segments": segments,
            "tolerance": {"prob_max_abs": 0.02, "flags_min": 0.98},
            "expected_from": f"{aid} on native ONNX Runtime (edgeship.tasks.vad.run_stream)"}


def make_bundle(bundle: Path) -> dict[str, Path]:
    """A voice-activity release folder as the page reads one: artifacts/vad-onnx-fp32 (not for the
    page), vad-web-fp32 and vad-web-fp16 (model.onnx and the vendored onnxruntime-web, as the web
    target writes them; fp16 by edgeship's own converter), bundle.json, golden/golden.json and the
    page; the audio files under audio/. Returns the models by artifact id."""
    from edgeship.quant.onnxruntime_recipes import fp16

    models: dict[str, Path] = {}
    order = ["vad-onnx-fp32", "vad-web-fp32", "vad-web-fp16"]
    (bundle / "artifacts").mkdir(parents=True)
    fp32 = bundle / "artifacts" / "fp32.onnx"
    onnx.save(tiny_vad(), str(fp32))
    golden_audio = speech(GOLDEN_PLAN, seed=2)
    audio_rel = _npy(bundle, golden_audio)
    entries, golden = [], {"schema": "edgeship.golden/1", "artifacts": {}}
    _, inputs = native(fp32)
    outputs = [{"name": "output", "shape": ["batch", 1], "dtype": "float32"},
               {"name": "stateN", "shape": [2, "batch", 128], "dtype": "float32"}]
    for aid in order:
        d = bundle / "artifacts" / aid
        d.mkdir()
        fmt, precision = aid.split("-")[1:]
        if precision == "fp16":
            fp16(fp32, d / "model.onnx")
        else:
            shutil.copyfile(fp32, d / "model.onnx")
        if fmt == "web":
            vendor_runtime(d / "ort")
        models[aid] = d / "model.onnx"
        entries.append({"id": aid, "target": fmt, "format": fmt, "precision": precision, "path": f"artifacts/{aid}",
                        "model_file": f"artifacts/{aid}/model.onnx", "inputs": inputs, "outputs": outputs, "task": TASK})
        golden["artifacts"][aid] = golden_record(bundle, aid, models[aid], audio_rel, golden_audio)
    fp32.unlink()
    doc = {"schema": "edgeship.bundle/1", "name": "tiny-vad", "version": "0.1.0", "task": TASK, "artifacts": entries,
           "fallback_order": order, "golden": "golden/golden.json"}
    (bundle / "golden" / "golden.json").write_text(json.dumps(golden, indent=1))
    (bundle / "bundle.json").write_text(json.dumps(doc, indent=1))
    written = write_vad_web(bundle, doc)
    assert [p.relative_to(bundle).as_posix() for p in written] == [VAD_SCRIPT, VAD_BUNDLE_SCRIPT, VAD_PAGE]
    x = speech(PLAN, seed=0)
    write_wav(bundle / "audio" / "speech.wav", x, RATE)
    # two channels that differ (the second quieter and a little late): mixed to mono as Python mixes them
    write_wav(bundle / "audio" / "stereo.wav", np.stack([x, 0.9 * np.roll(x, 3)], axis=1), RATE)
    return models


# ---- Chromium: started once for the module ---------------------------------------------------------

@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium held open for every test of the module (each tab is a context of it)."""
    if chromium_path() is None and not CI:
        pytest.skip("no Chromium here (CI installs it)")
    ctx = _Browser.acquire().new_context()
    yield
    _Browser.release(ctx)


class Tab:
    """A page of ``root`` (and of ``pages``, served from memory) on loopback; every request outside
    its origin is blocked and remembered, every page error kept."""

    def __init__(self, root: Path, path: str, pages: dict[str, bytes] | None = None) -> None:
        self.server = serve_folder(root, pages or {}, isolated=False)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.errors: list[str] = []

        def route(r):  # noqa: ANN001
            if r.request.url.startswith(self.origin + "/"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.origin + path)

    def __enter__(self) -> Tab:
        return self

    def __exit__(self, *exc: object) -> None:
        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()
        assert not self.outside, f"the page asked for {self.outside}"

    def ready(self) -> dict[str, Any]:
        self.page.wait_for_function("window.edgeshipReady", timeout=120_000)
        return self.page.evaluate("window.edgeshipReady")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("vad-web") / "bundle"
    return root, make_bundle(root)


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


GLUE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>glue</title>
<script type="module">import * as glue from "./integration/web/edgeship-vad.js"; window.glue = glue;</script>"""

JS_HELPERS = """
  const o = window.glue;
  const f32 = s => new Float32Array(Uint8Array.from(atob(s), ch => ch.charCodeAt(0)).buffer);
  const b64 = a => { const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); let s = "";
    for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
    return btoa(s); };
"""

#: in the page: a Chunker fed the pieces (rows per push, the flushed row), then a second stream after
#: the flush, and chunkRows of the whole
CHUNK = """c => {""" + JS_HELPERS + """
  const x = f32(c.audio), ch = new o.Chunker(c.task), pushes = [];
  let at = 0;
  for (const n of c.pieces) { pushes.push(ch.push(x.subarray(at, at + n)).map(b64)); at += n; }
  const pending = ch.pending, last = ch.flush();
  const again = ch.push(x).map(b64), againLast = ch.flush();
  return {pushes, pending, last: last && b64(last), again, againLast: againLast && b64(againLast),
          whole: o.chunkRows(x, c.task).map(b64), afterFlush: ch.pending};
}"""


@needs_browser
def test_the_js_chunker_gives_pythons_rows_for_pieces_of_any_length(bundle, chromium):
    root, _ = bundle
    rng = np.random.default_rng(5)
    tasks = [TASK, task_dict(VoiceActivity(sample_rate=8000, chunk=256, context=32)),
             {"kind": "voice_activity", "chunk": 48, "context": 100},  # a context longer than the chunk
             {"kind": "voice_activity", "chunk": 7, "context": 0}]
    checked = 0
    with Tab(root, "/glue.html", {"/glue.html": GLUE_PAGE}) as tab:
        tab.page.wait_for_function("window.glue", timeout=30_000)
        for task in tasks:
            chunk = task.get("chunk", 512)
            for n in (0, 5, chunk, 3 * chunk, 7 * chunk + 13, 4000):
                x = rng.standard_normal(n).astype(np.float32)
                cuts = np.sort(rng.integers(0, n + 1, int(rng.integers(0, 9))))
                pieces = np.diff(np.concatenate([[0], cuts, [n]])).tolist()  # zero-length pieces too
                got = tab.page.evaluate(CHUNK, {"audio": b64(x), "task": task, "pieces": pieces})
                py, at = Chunker(task), 0
                for k, m in enumerate(pieces):
                    want = py.push(x[at:at + m])
                    at += m
                    assert got["pushes"][k] == [b64(r) for r in want], (task, n, k)
                assert got["pending"] == py.pending
                last = py.flush()
                assert got["last"] == (None if last is None else b64(last)), (task, n)
                rows = chunk_inputs(x, task)
                flat = [r for p in got["pushes"] for r in p] + ([got["last"]] if got["last"] else [])
                assert flat == [b64(r) for r in rows] == got["whole"], (task, n)
                # the flush ended the stream: a second one starts from zeros again
                assert got["again"] + ([got["againLast"]] if got["againLast"] else []) == flat and got["afterFlush"] == 0
                checked += len(rows)
        with pytest.raises(Exception, match="unknown field"):
            tab.page.evaluate("() => window.glue.params({kind: 'voice_activity', chunk_size: 512})")
        assert not tab.errors, tab.errors
    assert checked > 400


# ---- the segment rule --------------------------------------------------------------------------

def probability_walks(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    """Probability sequences of several characters (float32 values, as a model gives): noise, a
    bounded random walk, blocks of speech and silence, values on and around the thresholds."""
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
    return np.asarray(p, np.float32).astype(np.float64)


class Lines:
    """The lines of tasks.vad.speech_segments that ran (sys.settrace): which branches the cases take."""

    def __init__(self) -> None:
        self.code = speech_segments.__code__
        self.ran: set[int] = set()

    def __enter__(self) -> Lines:
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
        hits = [first + i for i, line in enumerate(lines) if marker in line]
        assert hits, f"no line of speech_segments holds {marker!r}"
        return any(h in self.ran for h in hits)


SEGMENTS = """cases => { const o = window.glue;
  return cases.map(c => { const s = o.speechSegments(c.probs, c.task, c.n);
    return {segments: s, flags: Array.from(o.chunkFlags(s, c.probs.length, c.task)), seconds: o.segmentsSeconds(s, c.task)}; });
}"""


@needs_browser
def test_js_speech_segments_are_pythons_on_sequences_that_take_every_branch(bundle, chromium):
    root, _ = bundle
    rng = np.random.default_rng(38)
    cases, want = [], []
    with Lines() as lines:
        for t in range(900):
            rate = 8000 if t % 3 == 0 else 16000
            chunk = 256 if rate == 8000 else 512
            n = int(rng.integers(0, 400)) if t % 50 else int(rng.integers(0, 3))
            probs = probability_walks(rng, n, t % 4)
            task = {"kind": "voice_activity", "sample_rate": rate, "chunk": chunk, "context": chunk // 8,
                    "threshold": float(rng.choice([0.5, 0.3, 0.7, 0.15])),
                    "min_speech_ms": int(rng.choice([0, 50, 250, 600])),
                    "min_silence_ms": int(rng.choice([0, 32, 100, 300])),
                    "speech_pad_ms": int(rng.choice([0, 7, 30, 100])),
                    "max_speech_s": [None, 0.4, 1.0, 2.3, 5.0][t % 5],
                    "min_silence_at_max_speech_ms": int(rng.choice([0, 40, 98, 200])),
                    "use_max_poss_sil_at_max_speech": bool(t % 2)}
            if t % 7 == 0:
                task["neg_threshold"] = float(rng.choice([0.05, 0.2, task["threshold"]]))
            length = None if t % 4 == 0 else max(0, n * chunk - int(rng.integers(0, chunk)))
            segs = speech_segments(probs, task, length)
            cases.append({"probs": probs.tolist(), "task": task, "n": length})
            want.append({"segments": [list(s) for s in segs], "flags": chunk_flags(segs, len(probs), task).astype(int).tolist(),
                         "seconds": segments_seconds(segs, task)})
    # every way a segment ends, every cut at max_speech_s and the halving of a short gap ran
    for marker in ("# cut at the longest silence", "# the legacy cut", "# no silence to cut at", "start = next_start",
                   "speeches.append([start, audio_length])", "sp[1] += int(silence // 2)",
                   "speeches.append([start, temp_end])"):
        assert lines.took(marker), marker
    # seconds on the ties of round(x, 3): odd multiples of 1/16 s (1000 samples at 16 kHz) round to even
    ties = [[1000 * j, 1000 * j + 3000] for j in range(1, 40, 2)] + [[a, a + 1] for a in rng.integers(0, 10**7, 200).tolist()]
    cases.append({"probs": [], "task": TASK, "n": None})
    with Tab(root, "/glue.html", {"/glue.html": GLUE_PAGE}) as tab:
        tab.page.wait_for_function("window.glue", timeout=30_000)
        got = tab.page.evaluate(SEGMENTS, cases)
        got_ties = tab.page.evaluate("s => window.glue.segmentsSeconds(s, window.glue.TASK)", ties)
        assert not tab.errors, tab.errors
    want.append({"segments": [], "flags": [], "seconds": []})
    bad = [(k, f) for k, (g, w) in enumerate(zip(got, want)) for f in w if g[f] != w[f]]
    assert not bad, (f"{len(bad)} of {len(want)} cases differ, the first {bad[0]}: {got[bad[0][0]][bad[0][1]]} != "
                     f"{want[bad[0][0]][bad[0][1]]}")
    assert sum(bool(w["segments"]) for w in want) > 700
    assert got_ties == segments_seconds(ties, TASK)
    assert round(0.0625, 3) == 0.062 and {"start": 0.062, "end": 0.25} in got_ties  # a tie, to even


# ---- the page, end to end on onnxruntime-web -------------------------------------------------------

@needs_browser
def test_the_page_streams_a_wav_file_and_finds_pythons_segments(bundle, chromium):
    root, models = bundle
    x, rate = read_wav(root / "audio" / "speech.wav")
    assert rate == RATE and len(x) % TASK["chunk"]  # the last chunk padded
    probs, segments = python_vad(models["vad-web-fp32"], x)
    stereo, _ = read_wav(root / "audio" / "stereo.wav")
    sprobs, ssegments = python_vad(models["vad-web-fp32"], stereo)
    # the cases check what they are meant to: several segments, a burst dropped, a gap bridged, and
    # a stream whose state is not carried scores otherwise (so a page that dropped it would fail)
    assert len(segments) == 3 and len(ssegments) == 3 and ssegments != segments
    run, inputs = native(models["vad-web-fp32"])
    fresh = np.array([run_stream(run, row[None], TASK, inputs)[0][0] for row in chunk_inputs(x, TASK)])
    assert np.abs(fresh - probs).max() > 0.3 and speech_segments(fresh, TASK, len(x)) != [tuple(s) for s in segments]
    with Tab(root, "/" + VAD_PAGE) as tab:
        ready = tab.ready()
        assert ready.get("servedBy") == "vad-web-fp32" and ready["skipped"] == [] and ready["unchecked"] is None, ready
        got = tab.page.evaluate("u => window.edgeshipVad(u)", "/audio/speech.wav")
        got_stereo = tab.page.evaluate("u => window.edgeshipVad(u)", "/audio/stereo.wav")
        # a file chosen in the page: its segments listed, the timeline drawn
        tab.page.set_input_files("#file", str(root / "audio" / "speech.wav"))
        tab.page.wait_for_function("window.edgeshipResult", timeout=60_000)
        chosen = tab.page.evaluate("window.edgeshipResult")
        listed = tab.page.locator("#segments li").all_text_contents()
        blue = tab.page.evaluate("""() => { const c = document.getElementById('timeline');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
          for (let i = 0; i < d.length; i += 4) n += d[i + 2] > 150 && d[i] < 60 && d[i + 3] > 200; return n; }""")
        served = tab.page.text_content("#served")
        assert not tab.errors, tab.errors
    for g, p, s, samples in ((got, probs, segments, x), (got_stereo, sprobs, ssegments, stereo)):
        assert g["servedBy"] == "vad-web-fp32" and g["nSamples"] == len(samples) and g["sampleRate"] == RATE
        assert g["decoder"] == "wav"  # read as edgeship reads it (the browser's decoder is half a step off)
        assert g["segments"] == s  # identical samples
        assert g["seconds"] == segments_seconds(s, TASK)
        assert len(g["probs"]) == len(p) and np.abs(np.asarray(g["probs"]) - p).max() <= 1e-5
        assert g["chunkMs"] > 0
    assert chosen["audio"] == "speech.wav" and chosen["segments"] == segments and chosen["probs"] == got["probs"]
    assert len(listed) == len(segments) and listed[0].startswith(f"{segments_seconds(segments, TASK)[0]['start']:.3f} s")
    assert blue > 100, "no probability line drawn"
    assert "served by vad-web-fp32" in served
    dp = max(np.abs(np.asarray(got["probs"]) - probs).max(), np.abs(np.asarray(got_stereo["probs"]) - sprobs).max())
    print(f"\nsegments identical ({segments}); stereo {ssegments}; max |dp| {dp:.2e} over {len(probs) + len(sprobs)} "
          f"chunks; {got['chunkMs']:.3f} ms a chunk")


def wav_bytes(data: bytes, code: int, bits: int, channels: int, rate: int = RATE, extensible: bool = False) -> bytes:
    """A WAV file: an odd-sized LIST chunk (its pad byte) before fmt, a plain or extensible fmt chunk."""
    import struct

    width = (bits + 7) // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, channels, rate, rate * channels * width,
                      channels * width, bits)
    if extensible:
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<I", code) + bytes.fromhex("000010008000" "00aa00389b71")
    body = b"WAVE" + b"LIST" + struct.pack("<I", 5) + b"INFOx\0" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


READ = """async u => { const m = await import('/integration/web/edgeship-vad-bundle.js');
  const a = await m.readAudio(u, 16000); const v = new Uint8Array(a.samples.buffer); let s = '';
  for (let i = 0; i < v.length; i += 0x8000) s += String.fromCharCode.apply(null, v.subarray(i, i + 0x8000));
  return {samples: btoa(s), channels: a.channels, decoder: a.decoder, rate: a.sampleRate}; }"""


@needs_browser
def test_the_page_reads_wav_files_as_edgeship_does(bundle, chromium):
    """PCM 8/16/24/32-bit and IEEE float 32/64 WAV, plain and extensible, 1-9 channels (numpy's
    pairwise mean past 8): the page's samples are decode_wav's, bit for bit. Other rates go to the
    browser's decoder, which resamples."""
    from edgeship.readers.audio import decode_wav, resample

    root, models = bundle
    rng = np.random.default_rng(11)
    n = 3001
    files = {
        "u8-1": (rng.integers(0, 256, n).astype(np.uint8).tobytes(), 1, 8, 1, False),
        "i16-2": (np.r_[rng.integers(-32768, 32768, 2 * n - 2), -32768, 32767].astype("<i2").tobytes(), 1, 16, 2, False),
        "i24-3": (rng.integers(-(1 << 23), 1 << 23, 3 * n).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes(),
                  1, 24, 3, False),
        "i32-9": (np.r_[rng.integers(-(1 << 31), 1 << 31, 9 * n - 2), -(1 << 31), (1 << 31) - 1].astype("<i4").tobytes(),
                  1, 32, 9, True),
        "f32-6": ((rng.standard_normal(6 * n) * 0.7).astype("<f4").tobytes(), 3, 32, 6, True),  # some past 1: clipped
        "f64-2": ((rng.standard_normal(2 * n) * 0.4).astype("<f8").tobytes(), 3, 64, 2, False),
        "i16-1-ext": (rng.integers(-32768, 32768, n).astype("<i2").tobytes(), 1, 16, 1, True),
    }
    pages = {f"/w/{k}.wav": wav_bytes(d, code, bits, ch, RATE, ext) for k, (d, code, bits, ch, ext) in files.items()}
    x, _ = read_wav(root / "audio" / "speech.wav")
    x48 = resample(x, RATE, 48000)
    write_wav(root / "audio" / "speech48.wav", x48, 48000)
    bad = bytearray(pages["/w/i16-2.wav"])
    bad[12 + 8 + 6 + 8 + 12] = 3  # block align 3 for two 2-byte channels
    pages["/w/bad.wav"] = bytes(bad)
    pages["/w/not-audio.wav"] = b"just some text, not audio at all"
    with Tab(root, "/" + VAD_PAGE, pages) as tab:
        tab.ready()
        for url, wav in pages.items():
            if "bad" in url or "not-audio" in url:
                continue
            got = tab.page.evaluate(READ, url)
            want, _ = decode_wav(wav, url)
            assert got["decoder"] == "wav" and got["channels"] == files[url[3:-4]][3], url
            assert base64.b64decode(got["samples"]) == want.tobytes(), url  # bit for bit
        r48 = tab.page.evaluate(READ, "/audio/speech48.wav")
        with pytest.raises(Exception, match="contradicts itself"):
            tab.page.evaluate(READ, "/w/bad.wav")
        with pytest.raises(Exception, match="cannot decode it as audio"):
            tab.page.evaluate(READ, "/w/not-audio.wav")
        got48 = tab.page.evaluate("u => window.edgeshipVad(u)", "/audio/speech48.wav")
        assert not tab.errors, tab.errors
    y48, _ = read_wav(root / "audio" / "speech48.wav")
    y = resample(y48, 48000, RATE)
    browser = np.frombuffer(base64.b64decode(r48["samples"]), np.float32)
    assert r48["decoder"] == "browser, resampled from 48000 Hz" and abs(len(browser) - len(y)) <= 1
    k = min(len(browser), len(y))
    assert np.corrcoef(browser[:k], y[:k])[0, 1] > 0.99  # another resampler, the same signal
    probs, segments = python_vad(models["vad-web-fp32"], y)
    # the golden rule's measure: the browser's resampler moves a segment's edge by a chunk at most
    n = min(len(probs), len(got48["probs"]))
    agree = segment_agreement(chunk_flags(got48["segments"], n, TASK), chunk_flags(segments, n, TASK))
    assert got48["decoder"].startswith("browser") and agree >= 0.98, (agree, got48["segments"], segments)
    print(f"\n48 kHz through the browser's resampler: segments {got48['segments']} (Python {segments}), "
          f"max |dp| {np.abs(np.asarray(got48['probs'][:len(probs)]) - probs[:len(got48['probs'])]).max():.2e}")


def _tamper(root: Path, aid: str, change: Any) -> None:
    golden = json.loads((root / "golden" / "golden.json").read_text())
    rec = golden["artifacts"][aid]
    change(root, rec)
    (root / "golden" / "golden.json").write_text(json.dumps(golden, indent=1))


def _shift_probability(root: Path, rec: dict) -> None:  # one golden probability 0.1 off
    p = np.load(root / rec["probs"])
    p[len(p) // 2] += np.float32(0.1)
    rec["probs"] = _npy(root, p)


@needs_browser
def test_an_artifact_missing_its_golden_stream_is_skipped_with_the_reason(bundle, chromium, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(bundle[0], root)
    models = bundle[1]
    _tamper(root, "vad-web-fp32", _shift_probability)
    x, _ = read_wav(root / "audio" / "speech.wav")
    probs16, segments16 = python_vad(models["vad-web-fp16"], x)
    with Tab(root, "/" + VAD_PAGE) as tab:
        ready = tab.ready()
        assert ready.get("servedBy") == "vad-web-fp16", ready
        [skip] = ready["skipped"]
        assert skip["artifact"] == "vad-web-fp32" and skip["reason"].startswith("fails its golden stream: max |p - expected p| 0.1000 > 0.02")
        assert "speech decisions" not in skip["reason"]  # one probability off moves no segment
        assert any("vad-web-fp32" in s and "golden" in s for s in tab.page.locator("#skipped li").all_text_contents())
        got = tab.page.evaluate("u => window.edgeshipVad(u)", "/audio/speech.wav")
        assert not tab.errors, tab.errors
    assert got["servedBy"] == "vad-web-fp16" and got["segments"] == segments16
    assert np.abs(np.asarray(got["probs"]) - probs16).max() <= 1e-3

    # the fp16 one's golden segments wrong too (none: its flags agree on too few chunks): nothing serves
    _tamper(root, "vad-web-fp16", lambda r, rec: rec.update(segments=[]))
    with Tab(root, "/" + VAD_PAGE) as tab:
        ready = tab.ready()
        assert ready["error"].startswith("no artifact of this bundle serves here: vad-web-fp32 fails its golden stream")
        reasons = {s["artifact"]: s["reason"] for s in ready["skipped"]}
        assert list(reasons) == ["vad-web-fp32", "vad-web-fp16"]
        assert "speech decisions agree on" in reasons["vad-web-fp16"] and "max |p" not in reasons["vad-web-fp16"]
        assert ready["error"] in tab.page.text_content("#status")
        with pytest.raises(Exception, match="serves here"):
            tab.page.evaluate("u => window.edgeshipVad(u)", "/audio/speech.wav")

    # a record the bundle could not make (said why) serves unchecked, as edgeship.runtime serves it;
    # a record missing altogether is a failure
    golden = json.loads((root / "golden" / "golden.json").read_text())
    golden["artifacts"]["vad-web-fp32"] = {"skipped": "no fp32 artifact ran where the bundle was made"}
    del golden["artifacts"]["vad-web-fp16"]
    (root / "golden" / "golden.json").write_text(json.dumps(golden))
    with Tab(root, "/" + VAD_PAGE) as tab:
        ready = tab.ready()
        assert ready.get("servedBy") == "vad-web-fp32" and ready["skipped"] == [], ready
        assert ready["unchecked"] == "golden/golden.json holds no golden stream for it: no fp32 artifact ran where the bundle was made"
        assert "not checked: golden/golden.json" in tab.page.text_content("#served")
    golden["artifacts"]["vad-web-fp16"] = golden["artifacts"].pop("vad-web-fp32")
    (root / "golden" / "golden.json").write_text(json.dumps(golden))
    with Tab(root, "/" + VAD_PAGE) as tab:
        ready = tab.ready()
        assert ready.get("servedBy") == "vad-web-fp16" and ready["unchecked"].startswith("golden/golden.json holds no")
        assert ready["skipped"] == [{"artifact": "vad-web-fp32",
                                     "reason": "fails its golden stream: golden/golden.json has no golden stream for vad-web-fp32"}]


# ---- what is written -----------------------------------------------------------------------------

def test_the_page_is_written_only_for_a_voice_activity_bundle_a_browser_can_run(tmp_path):
    entry = {"id": "vad-web-fp32", "format": "web", "task": TASK}
    doc = {"name": "v", "version": "1.0.0", "artifacts": [{**entry, "id": "vad-onnx-fp32", "format": "onnx"}],
           "fallback_order": ["vad-onnx-fp32"], "task": TASK}
    assert write_vad_web(tmp_path, doc) == [] and not (tmp_path / "integration").exists()
    doc = {**doc, "artifacts": [*doc["artifacts"], entry], "fallback_order": ["vad-onnx-fp32", "vad-web-fp32"]}
    custom = {**TASK, "threshold": 0.6, "carry": {"hn": "h"}}
    written = write_vad_web(tmp_path, {**doc, "task": custom})
    assert [p.name for p in written] == ["edgeship-vad.js", "edgeship-vad-bundle.js", "vad.html"]
    js = (tmp_path / VAD_SCRIPT).read_text()
    assert '"threshold": 0.6' in js and '"hn": "h"' in js  # the bundle's task rendered in as the default
    with pytest.raises(FormatError, match="task kind 'class_scores'"):
        write_vad_web(tmp_path, {**doc, "task": {"kind": "class_scores"}})
    with pytest.raises(FormatError, match="unknown field 'chunk_size'"):
        write_vad_web(tmp_path, {**doc, "task": {**TASK, "chunk_size": 3}})
    with pytest.raises(FormatError, match="no task record"):
        write_vad_web(tmp_path, {**doc, "task": None, "artifacts": [{**entry, "task": None}]})
