"""Streams (issue 38): a model that carries a state from one call to the next is deployed, verified,
quantised under its budget, released with golden AUDIO and served by the light runtime's Stream,
each artifact streaming with its OWN state; recordings (.wav folders) are its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeship import api
from edgeship.errors import EdgeshipError, FormatError, InputError, UsageError
from tinystream import speech_folder, vad_model, write_wav

TASK = {"kind": "voice_activity"}  # silero-vad's defaults: input, state -> stateN, sr, 512 + 64 at 16 kHz


@pytest.fixture(scope="module")
def vad_deploy(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One deploy of the tiny stream model: onnx fp32 + int8 + fp16, real (.wav) data, packaged."""
    root = tmp_path_factory.mktemp("vad")
    model = vad_model(root / "vad.onnx")
    ev = speech_folder(root / "eval", 6.0, (11, 12), rate=22050)  # resampled to 16 kHz by the reader
    ca = speech_folder(root / "calib", 6.0, (21,))
    res = api.deploy(str(model), out=root / "out", targets=["onnx"], quantize=["int8", "fp16"], task_record=json.dumps(TASK),
                     eval=str(ev), calib=str(ca), eval_samples=600, isolate=False)
    return {"root": root, "model": model, "eval": ev, "res": res, "out": root / "out"}


def _records(out: Path) -> dict[str, dict]:
    m = json.loads((out / "manifest.json").read_text())
    return {r["precision"]: r for r in m["artifacts"]}


def test_every_precision_is_judged_as_a_stream_by_its_decisions(vad_deploy: dict) -> None:
    recs = _records(vad_deploy["out"])
    assert set(recs) == {"fp32", "int8", "fp16"}
    from edgeship.artifact import verification_status

    for prec, r in recs.items():
        v = r["verification"]
        t = v["task"]
        assert verification_status(v, prec) == "verified", (prec, v)
        assert v.get("real_inputs", True) is True and "eval" in v["inputs"]  # the record omits the quiet True
        assert t["measure"] == "speech decisions per chunk" and t["streams"] == 2
        assert t["chunks"] == 2 * int(np.ceil(6.0 * 16000 / 512))  # both recordings whole, resampled to 16 kHz
        assert t["chunk_agreement"] >= 0.98 and t["segments_reference"] >= 2
        if prec == "fp32":
            assert t["chunk_agreement"] == 1.0 and t["max_prob_diff"] < 1e-4
    html = (vad_deploy["out"] / "report.html").read_text()
    assert "The stream, judged by its decisions" in html and "% of 376" in html
    q = recs["int8"]["details"]["quantization"]
    assert q["steps"][q["chosen"]]["task"]["chunk_agreement"] >= 0.98  # the budget judged the stream too


def test_a_stream_runs_with_the_artifacts_own_state(vad_deploy: dict) -> None:
    """run_samples feeds an artifact its OWN carried outputs, not the source's states the samples hold."""
    from edgeship.data import load_samples
    from edgeship.sources import load_source
    from edgeship.verify import run_samples

    src = load_source(str(vad_deploy["model"]), task=json.dumps(TASK))
    samples, _ = load_samples(str(vad_deploy["eval"]), src, 300, "evaluation")
    assert samples.starts == (0, 188) and len(samples) == 300

    class Drift:  # the source's outputs, but its state drifts a little more at every call
        def __init__(self) -> None:
            self.calls = []

        def run(self, xs: list) -> list:
            self.calls.append(xs)
            p, st = src.run(xs)
            return [p, st + 0.01]

    d = Drift()
    art = type("A", (), {"preprocess": None})()
    got = run_samples(d, src, art, samples)
    assert len(got) == 300
    # the state fed at each call is the previous call's output (drifted), zeros at each stream's start
    assert np.all(d.calls[0][1] == 0) and np.all(d.calls[188][1] == 0)
    assert np.allclose(d.calls[5][1], got[4][1])
    assert not np.allclose(d.calls[5][1], samples[5][1])  # not the source's own (teacher-forced) state


def test_the_release_carries_golden_audio_and_the_light_stream_serves_it(vad_deploy: dict) -> None:
    from edgeship.runtime import Stream
    from edgeship.tasks.vad import speech_segments

    rel = vad_deploy["out"] / "release"
    folder = next(p for p in rel.iterdir() if p.is_dir())
    doc = json.loads((folder / "bundle.json").read_text())
    assert doc["task"]["kind"] == "voice_activity"
    golden = json.loads((folder / "golden" / "golden.json").read_text())
    assert all("stream" in rec and rec["segments"] for rec in golden["artifacts"].values())
    assert "eval" in golden["artifacts"][doc["fallback_order"][0]]["stream"]["origin"]  # the deploy's recordings
    s = Stream.from_bundle(folder)
    assert s.served_by in doc["fallback_order"]
    from edgeship.data import speech_like

    audio, _ = speech_like(5.0, 99)
    probs, segs = s.run(audio)
    assert len(probs) == int(np.ceil(len(audio) / 512)) and segs == speech_segments(probs, doc["task"], len(audio))
    # fed in uneven pieces, the stream gives the same probabilities as one call
    s.reset()
    for a, b in ((0, 100), (100, 5000), (5000, 5001), (5001, len(audio))):
        s.feed(audio[a:b])
    s.finish()
    assert np.allclose(s.probs, probs, atol=0) and s.segments() == segs
    # the app script on the light runtime reads a .wav and prints the segments
    import subprocess
    import sys

    wav = write_wav(vad_deploy["root"] / "talk.wav", audio, 16000)
    out = subprocess.run([sys.executable, str(folder / "integration" / "python" / "stream.py"), str(wav), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["chunks"] == len(probs) and len(got["segments"]) == len(segs)


def test_a_stream_artifact_whose_golden_audio_is_tampered_is_skipped(vad_deploy: dict, tmp_path: Path) -> None:
    import shutil

    from edgeship.runtime import Stream

    src = next(p for p in (vad_deploy["out"] / "release").iterdir() if p.is_dir())
    folder = tmp_path / "b"
    shutil.copytree(src, folder)
    doc = json.loads((folder / "bundle.json").read_text())
    first = doc["fallback_order"][0]
    g = json.loads((folder / "golden" / "golden.json").read_text())
    rel = g["artifacts"][first]["probs"]
    p = np.load(folder / rel)
    np.save(folder / "golden" / "t" / "tampered.npy", (1.0 - p).astype(np.float32))
    g["artifacts"][first]["probs"] = "golden/t/tampered.npy"
    (folder / "golden" / "golden.json").write_text(json.dumps(g))
    s = Stream.from_bundle(folder)
    assert s.served_by != first
    assert s.skipped[0]["artifact"] == first and "golden" in s.skipped[0]["reason"]
    # the update agent's health check streams the golden audio too: healthy while one artifact passes
    from edgeship.updates.agent import _healthy

    assert _healthy(folder) is None
    for rec in g["artifacts"].values():
        rec["probs"] = "golden/t/tampered.npy"
    (folder / "golden" / "golden.json").write_text(json.dumps(g))
    why = _healthy(folder)
    assert why is not None and "golden" in why


def test_without_recordings_a_reduced_precision_stream_is_unverified(tmp_path: Path) -> None:
    model = vad_model(tmp_path / "vad.onnx")
    res = api.deploy(str(model), out=tmp_path / "out", targets=["onnx"], quantize=["fp16"], task_record=json.dumps(TASK),
                     eval_samples=200, isolate=False, package=False)
    recs = _records(res.out)
    from edgeship.artifact import verification_status

    assert verification_status(recs["fp32"]["verification"], "fp32") == "verified"
    v = recs["fp16"]["verification"]
    assert verification_status(v, "fp16") == "unverified" and v["real_inputs"] is False
    assert "synthetic speech-like" in v["inputs"]


def test_audio_data_errors_name_the_file(tmp_path: Path) -> None:
    from edgeship.data import load_samples
    from edgeship.sources import load_source

    src = load_source(str(vad_model(tmp_path / "vad.onnx")), task=json.dumps(TASK))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="wav"):
        load_samples(str(empty), src, 10, "evaluation")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(EdgeshipError, match="broken.wav"):
        load_samples(str(bad), src, 10, "evaluation")
    npz = tmp_path / "x.npz"
    np.savez(npz, input=np.zeros((3, 576), np.float32))
    with pytest.raises(UsageError, match="audio"):
        load_samples(str(npz), src, 10, "evaluation")


def test_a_task_record_that_names_what_the_model_lacks_is_refused(tmp_path: Path) -> None:
    from edgeship.sources import load_source

    model = str(vad_model(tmp_path / "vad.onnx"))
    with pytest.raises(FormatError, match="carry"):
        load_source(model, task=json.dumps({"kind": "voice_activity", "carry": {"hN": "state"}}))
    with pytest.raises(FormatError, match="audio_input"):
        load_source(model, task=json.dumps({"kind": "voice_activity", "audio_input": "x"}))
    with pytest.raises(FormatError, match="chunk"):
        load_source(model, task=json.dumps({"kind": "voice_activity", "chunk": -5}))


def test_the_benchmark_calls_a_stream_model_as_its_task_does() -> None:
    """A stream artifact whose dims are dynamic (Silero's input [?, ?]) was benchmarked on a [1, 1]
    input and failed inside the model; it is called as one chunk of its stream."""
    from types import SimpleNamespace

    from edgeship.artifact import TensorSpec
    from edgeship.bench.worker import make_inputs, task_specs
    from edgeship.tasks import VoiceActivity

    specs = (TensorSpec(name="input", shape=("batch", "samples"), dtype="float32"),
             TensorSpec(name="state", shape=(2, "batch", 128), dtype="float32"),
             TensorSpec(name="sr", shape=(), dtype="int64"))
    art = SimpleNamespace(task=VoiceActivity(), inputs=specs)
    feeds = make_inputs(task_specs(art, specs), 1, np.random.default_rng(0))
    assert feeds["input"].shape == (1, 576) and feeds["state"].shape == (2, 1, 128) and not feeds["state"].any()
    assert feeds["sr"].shape == () and int(feeds["sr"]) == 16000
    assert make_inputs(task_specs(SimpleNamespace(task=None), specs), 1, np.random.default_rng(0))["input"].shape == (1, 1)
