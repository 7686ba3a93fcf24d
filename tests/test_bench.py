"""edgeship benchmark: every candidate in its own process; hanging or crashing runners are reported
``incomplete`` while the others still finish; JSON schema, CSV, CLI. No timing assertions here: the
speed figures live in benchmarks/bench_onnx.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import types

import pytest

import edgeship
from edgeship import api
from edgeship.bench import CSV_COLUMNS, SCHEMA
from edgeship.errors import InputError, UsageError
from edgeship.testing import FakeRunner, FakeTarget

FAST = dict(runs=6, warmup=1, rounds=2, batch_sizes=[2], roofline=False, timeout=60)

RESULT_KEYS = {"id", "role", "status", "name", "path", "target", "format", "precision", "threads", "cpus", "runtime",
               "inputs", "latency_ms", "fresh_input", "cold_start_s", "memory", "size_bytes", "throughput", "compute",
               "energy", "vs_baseline", "rounds", "notes"}
INCOMPLETE_KEYS = {"id", "role", "name", "path", "target", "format", "precision", "digest", "threads", "cpus", "status",
                   "reason", "kind", "phase", "round"}


# ---- test doubles, imported by the benchmark processes as test_bench:Class -------------------

class HangingFake(FakeTarget):
    hang_seconds = 3600.0


class _CrashingRunner(FakeRunner):
    def _run(self, feeds):
        os.kill(os.getpid(), signal.SIGSEGV)


class CrashingFake(FakeTarget):
    def runner(self, artifact, threads=1, **_):
        return _CrashingRunner(artifact, threads)


class _FailingRunner(FakeRunner):
    def _run(self, feeds):
        raise RuntimeError("the runtime refused the model on purpose")


class FailingFake(FakeTarget):
    def runner(self, artifact, threads=1, **_):
        return _FailingRunner(artifact, threads)


class _DyingRunner(FakeRunner):
    def _run(self, feeds):  # a runtime whose own thread fails, printing a traceback, and then exits
        import threading

        def boom():
            raise RuntimeError("the runtime's worker thread died")

        t = threading.Thread(target=boom)
        t.start()
        t.join()
        sys.stderr.flush()
        os._exit(3)


class DyingFake(FakeTarget):
    def runner(self, artifact, threads=1, **_):
        return _DyingRunner(artifact, threads)


class NotHereFake(FakeTarget):
    @classmethod
    def can_run_here(cls):
        return "needs the fake accelerator, which this machine lacks\nsecond line never shown"


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_art(tmp_path_factory):
    edgeship.register_target("fake", FakeTarget)
    src = edgeship.load("tinymodels:tiny_classifier")
    return edgeship.convert(src, "fake", tmp_path_factory.mktemp("fake") / "fake-fp32")


@pytest.fixture(scope="module")
def out_report(tiny_onnx):
    """The tiny classifier's out dir: its ONNX artifact against its source in PyTorch eager (named by
    the user: a manifest's factory origin is never reloaded by itself)."""
    return api.benchmark(tiny_onnx.parent, baseline="tinymodels:tiny_classifier", **FAST)


@pytest.fixture(scope="session")
def peaks_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


# ---- tests ----------------------------------------------------------------------------------

def test_out_dir_benchmarks_its_artifacts_against_the_source(out_report, tiny_onnx):
    d = out_report.to_dict()
    assert d["schema"] == SCHEMA and d["ok"] is True and d["incomplete"] == []
    assert [(r["id"], r["role"]) for r in d["results"]] == [("onnx-fp32", "artifact"), ("torch:tiny_classifier", "baseline")]
    art, base = d["results"]
    for r in d["results"]:
        assert set(r) >= RESULT_KEYS and r["status"] == "ok" and r["threads"] == 1 and r["rounds"] == 2
        assert set(r["latency_ms"]) == {"n", "min", "mean", "p50", "p90", "p99", "max", "std"}
        assert r["latency_ms"]["n"] == FAST["runs"]
        assert r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
        assert set(r["cold_start_s"]) == {"process_start", "runtime_import", "model_load", "first_inference", "total",
                                          "processes"}
        assert r["cold_start_s"]["processes"] == 2
        assert r["memory"]["peak_rss_bytes"] > r["memory"]["rss_after_import_bytes"] > 0
        assert [t["batch"] for t in r["throughput"]] == [2]  # the batch axis is dynamic
        assert r["energy"]["estimate"] is True and "host-1core" in r["energy"]["method"]
        assert r["cpus"] == [min(os.sched_getaffinity(0))]
    assert art["runtime"]["modules"].keys() == {"onnxruntime"}
    assert base["runtime"]["modules"].keys() == {"torch"}
    a = edgeship.load_artifact(tiny_onnx)
    assert art["size_bytes"] == a.size_bytes
    assert base["source"]["digest"] == a.provenance.parent_digest
    vs = art["vs_baseline"]
    assert vs["baseline"] == "torch:tiny_classifier" and vs["speedup_p50"] > 0 and len(vs["speedup_p50_by_round"]) == 2
    comp = art["compute"]
    assert set(comp) == {"macs", "gops", "peak_kind", "peak_gops", "percent_of_peak", "note"}
    assert (comp["gops"] is not None) or comp["note"]  # counted by edgeship.analyze, or said why not


def test_csv_has_one_row_per_candidate(out_report, tmp_path):
    path = out_report.write_csv(tmp_path / "b.csv")
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [r["id"] for r in rows] == ["onnx-fp32", "torch:tiny_classifier"]
    assert float(rows[0]["p50_ms"]) == out_report.results[0]["latency_ms"]["p50"]
    assert rows[0]["baseline"] == "torch:tiny_classifier" and rows[1]["speedup_vs_baseline"] == ""


def test_a_hanging_runner_is_incomplete_and_the_others_still_finish(tiny_onnx, fake_art):
    rep = api.benchmark([tiny_onnx, fake_art.root], **{**FAST, "timeout": 10},
                        register_target={"fake": "test_bench:HangingFake"})
    assert [r["id"] for r in rep.results] == ["onnx-fp32"] and rep.results[0]["rounds"] == 2
    [inc] = rep.incomplete
    assert set(inc) == INCOMPLETE_KEYS
    assert inc["id"] == "fake-fp32" and inc["status"] == "incomplete" and inc["kind"] == "timeout"
    assert "timeout" in inc["reason"] and inc["phase"] in inc["reason"] and inc["round"] == 1
    assert inc["phase"] in ("runtime_import", "model_load", "first_inference")  # the last unless the machine crawls
    assert rep.result("fake-fp32") is None  # never reported as a result


@pytest.mark.parametrize("double, kind, words", [
    ("CrashingFake", "crash", "SIGSEGV"),
    ("FailingFake", "error", "RuntimeError: the runtime refused the model on purpose"),
])
def test_a_crashing_runner_is_incomplete_with_the_reason(tiny_onnx, fake_art, double, kind, words, tmp_path,
                                                       monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))  # a worker's traceback log goes here
    rep = api.benchmark([fake_art.root, tiny_onnx], **{**FAST, "rounds": 1},
                        register_target=[f"fake=test_bench:{double}"])
    assert [r["id"] for r in rep.results] == ["onnx-fp32"]
    [inc] = rep.incomplete
    assert inc["kind"] == kind and words in inc["reason"] and inc["phase"] == "first_inference"


def test_a_target_registered_here_runs_in_the_benchmark_process(fake_art):
    edgeship.register_target("fake", FakeTarget)  # forwarded to the child by module path
    rep = api.benchmark(fake_art.root, **{**FAST, "rounds": 1})
    [r] = rep.results
    assert r["id"] == "fake-fp32" and r["runtime"]["target"] == "fake" and r["vs_baseline"] is None
    assert r["throughput"] == [] and any("static" in n for n in r["notes"])  # the fake artifact has a fixed batch


def test_roofline_peaks_are_measured_once_and_cached(tiny_onnx, peaks_dir, monkeypatch):
    from edgeship.bench import peaks

    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(peaks_dir))
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: 0.0)  # quiet (the other test worker is not)
    monkeypatch.setattr(peaks, "others_during", lambda threads: types.SimpleNamespace(share=lambda: 0.0))  # nor during
    fake_analyze = types.ModuleType("edgeship.analysis")
    fake_analyze.models_macs = lambda paths: {str(p): 1_000_000 for p in paths}  # the plumbing, not the count
    monkeypatch.setitem(sys.modules, "edgeship.analysis", fake_analyze)
    opts = {**FAST, "rounds": 1, "roofline": True, "profile": "host-1core"}
    first = api.benchmark(tiny_onnx, **opts).to_dict()
    second = api.benchmark(tiny_onnx, **opts).to_dict()
    p1, p2 = first["machine"]["peaks"]["1"], second["machine"]["peaks"]["1"]
    assert p2["cached"] is True and p1["fp32_gops"] == p2["fp32_gops"] > 0 and p1["int8_gops"] > 0
    assert (peaks_dir / "machine-peaks.json").is_file()
    comp = second["results"][0]["compute"]
    p50_s = second["results"][0]["latency_ms"]["p50"] / 1e3
    assert comp["macs"] == 1_000_000 and comp["gops"] == pytest.approx(2e6 / p50_s / 1e9, rel=0.01)
    assert comp["peak_kind"] == "fp32" and comp["percent_of_peak"] == pytest.approx(100 * comp["gops"] / p2["fp32_gops"], rel=0.02)
    assert second["settings"]["profile"]["name"] == "host-1core" and second["settings"]["cpus"] == [0]


def test_missing_mac_counter_is_reported_not_faked(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "edgeship.analysis", types.ModuleType("edgeship.analysis"))
    rep = api.benchmark(tiny_onnx, **{**FAST, "rounds": 1})
    comp = rep.results[0]["compute"]
    assert comp["macs"] is None and comp["gops"] is None and "models_macs" in comp["note"]


def test_bad_input_is_a_typed_error(tmp_path, tiny_onnx):
    with pytest.raises(InputError):
        api.benchmark(tmp_path / "nowhere", **FAST)
    with pytest.raises(UsageError, match="--threads"):
        api.benchmark(tiny_onnx, threads="0")
    with pytest.raises(UsageError, match="profile"):
        api.benchmark(tiny_onnx, profile="no-such-device")
    with pytest.raises(UsageError, match="not available"):
        api.benchmark(tiny_onnx, cpus="4096")
    with pytest.raises(UsageError, match="PyTorch eager"):
        api.benchmark(tiny_onnx, baseline=str(tiny_onnx / "model.onnx"))


def test_deploy_records_the_benchmark_in_the_manifest(tmp_path, peaks_dir, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(peaks_dir))
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, benchmark=True, bench_runs=5)
    b = res.manifest["stages"]["benchmark"]
    assert b["schema"] == SCHEMA and json.loads((tmp_path / "manifest.json").read_text())["stages"]["benchmark"] == b
    assert [(r["id"], r["role"]) for r in b["results"]] == [("onnx-fp32", "artifact"), ("torch:tiny_classifier", "baseline")]
    assert b["results"][0]["vs_baseline"]["speedup_p50"] > 0 and b["settings"]["runs"] == 5


def _cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgeship", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_cli_json_is_one_document_and_csv(tiny_onnx, tmp_path, cli_env):
    r = _cli(["benchmark", str(tiny_onnx.parent), "--json", "--runs", "4", "--warmup", "1", "--rounds", "1",
              "--no-roofline", "--batch-sizes", "none", "--cpus", "0", "--no-auto-baseline",
              "--csv", str(tmp_path / "b.csv")], cli_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["schema"] == SCHEMA and doc["ok"] is True
    [res] = doc["results"]
    assert res["id"] == "onnx-fp32" and res["throughput"] == [] and res["cpus"] == [0] and res["vs_baseline"] is None
    assert len(list(csv.DictReader((tmp_path / "b.csv").open()))) == 1
    r = _cli(["benchmark", str(tiny_onnx), "--runs", "3", "--rounds", "1", "--no-roofline"], cli_env)
    assert r.returncode == 0 and "onnx-fp32" in r.stdout and "p50 ms" in r.stdout  # the table for people


def test_cli_errors_exit_with_their_code(tmp_path, cli_env):
    r = _cli(["benchmark", str(tmp_path / "nowhere"), "--json"], cli_env)
    assert r.returncode == 3 and json.loads(r.stdout)["error"]["type"] == "InputError"
    assert "Traceback" not in r.stderr
    r = _cli(["benchmark", str(tmp_path), "--threads", "0"], cli_env)
    assert r.returncode == 2 and "--threads" in r.stderr and "Traceback" not in r.stderr


def test_bare_onnx_and_tflite_files_benchmark_by_file_name(tiny_onnx, tmp_path):
    """Any .onnx (no edgeship metadata) or .tflite file runs: loaded from the file itself."""
    import onnx

    m = onnx.load(str(tiny_onnx / "model.onnx"))
    del m.metadata_props[:]
    bare = tmp_path / "someone_elses.onnx"
    onnx.save(m, str(bare))
    paths = [bare]
    if importlib.util.find_spec("litert_torch") is not None:
        res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "tfl", targets=["tflite"])
        shutil.copy(res.artifacts[0].model_path, tmp_path / "plain.tflite")
        paths.append(tmp_path / "plain.tflite")
    rep = api.benchmark(paths, **{**FAST, "rounds": 1}).to_dict()
    assert [r["id"] for r in rep["results"]] == [p.name for p in paths]
    assert all(r["status"] == "ok" and r["latency_ms"]["p50"] > 0 for r in rep["results"])


UNSEEDED = """\
import torch
from torch import nn


def build():  # weights drawn anew in every process: another digest each time, the same network
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    return m, (torch.randn(1, 3, 32, 32),)
"""


def test_the_baseline_takes_the_mac_count_of_the_onnx_artifact_of_the_same_source(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text(UNSEEDED)
    monkeypatch.chdir(tmp_path)
    res = edgeship.deploy("model.py:build", out=tmp_path / "out")
    rep = api.benchmark(tmp_path / "out", **{**FAST, "rounds": 1}, baseline="model.py:build").to_dict()
    art, base = rep["results"]
    assert base["role"] == "baseline" and base["source"]["digest"] != res.artifacts[0].provenance.parent_digest
    assert art["compute"]["macs"] and base["compute"]["macs"] == art["compute"]["macs"]
    assert base["compute"]["gops"] is not None and "onnx-fp32" in base["compute"]["note"]


def test_an_artifact_that_cannot_run_here_is_skipped_once_with_one_line(fake_art):
    rep = api.benchmark(fake_art.root, **{**FAST, "rounds": 1, "threads": [1, 2]},
                        register_target={"fake": "test_bench:NotHereFake"})
    assert rep.results == []
    [inc] = rep.incomplete  # once, not once per thread count
    assert inc["id"] == "fake-fp32" and inc["kind"] == "skipped" and inc["phase"] is None and inc["round"] is None
    assert inc["reason"] == "skipped: needs the fake accelerator, which this machine lacks"


def test_a_core_ml_artifact_is_skipped_off_macos(tmp_path, tiny_onnx):
    pytest.importorskip("coremltools")
    import platform

    if platform.system() == "Darwin":
        pytest.skip("Core ML runs here")
    cm = edgeship.convert(edgeship.load("tinymodels:tiny_classifier"), "coreml", tmp_path / "coreml-fp32")
    rep = api.benchmark([cm.root, tiny_onnx], **{**FAST, "rounds": 1})
    assert [r["id"] for r in rep.results] == ["onnx-fp32"]
    [inc] = rep.incomplete
    assert inc["id"] == "coreml-fp32" and inc["kind"] == "skipped" and "\n" not in inc["reason"]
    assert "macOS" in inc["reason"] and len(inc["reason"]) < 120


@pytest.mark.parametrize("double, kind, words", [
    ("FailingFake", "error", "RuntimeError: the runtime refused the model on purpose"),
    ("DyingFake", "crash", "RuntimeError: the runtime's worker thread died"),
])
def test_a_worker_traceback_goes_to_a_log_not_into_the_reason(fake_art, tmp_path, monkeypatch, double, kind, words):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESHIP_DEBUG", raising=False)
    rep = api.benchmark(fake_art.root, **{**FAST, "rounds": 1}, register_target=[f"fake=test_bench:{double}"])
    [inc] = rep.incomplete
    reason = inc["reason"]
    assert inc["kind"] == kind and words in reason, reason
    assert "Traceback" not in reason and 'File "' not in reason and "^^^" not in reason
    [log] = (tmp_path / "cache" / "logs").glob("bench-worker-*.log")
    assert str(log) in reason
    assert "Traceback (most recent call last)" in log.read_text() and words in log.read_text()


def test_benchmark_workers_run_under_the_isolation_limits(tiny_onnx, tmp_path, monkeypatch):
    # the benchmark runs untrusted models too: its workers get the limits of every isolated run
    monkeypatch.setenv("EDGESHIP_MAX_MEMORY_GB", "0.05")
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))
    rep = api.benchmark(tiny_onnx, **{**FAST, "rounds": 1})
    [inc] = rep.incomplete
    assert rep.results == [] and inc["kind"] == "limit" and "EDGESHIP_MAX_MEMORY_GB" in inc["reason"]


def test_a_peak_measured_on_a_busy_machine_is_used_once_not_cached(tmp_path, monkeypatch):
    # a busy first run once cached 115 GFLOP/s where a quiet one measures ~248: every later "% of peak" was wrong
    import json as _json

    from edgeship.bench import peaks

    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))
    busy = iter([0.9] * 6 + [0.05])
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: next(busy))
    monkeypatch.setattr(peaks, "others_during", lambda threads: types.SimpleNamespace(share=lambda: 0.0))  # quiet during
    said = []
    first = peaks.machine_peaks(1, [0], 60, said.append)
    assert first["quiet"] is False and first["busy_before"] == 0.9 and "not cached" in first["note"]
    assert any("waiting for a quiet machine" in m for m in said) and not (tmp_path / peaks.PEAKS_FILE).exists()
    second = peaks.machine_peaks(1, [0], 60)  # quiet now: measured again, and cached
    assert second["quiet"] is True and second["cached"] is False and second["fp32_gops"] > 0
    assert peaks.machine_peaks(1, [0], 60)["cached"] is True
    # an entry an older edgeship cached under load (no 'quiet', load average above half the CPUs) is measured again
    data = _json.loads((tmp_path / peaks.PEAKS_FILE).read_text())
    for e in data["entries"].values():
        e.pop("quiet")
        e["load_average"] = [64.0, 64.0, 64.0]
        e["fp32_gops"] = 1.0
    (tmp_path / peaks.PEAKS_FILE).write_text(_json.dumps(data))
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: 0.0)
    again = peaks.machine_peaks(1, [0], 60)
    assert again["cached"] is False and again["fp32_gops"] > 1.0


def test_a_time_budget_stops_the_timed_calls_first(tiny_onnx):
    # deploy --benchmark times each artifact for --bench-runs calls or --bench-seconds, whichever first
    import time

    t0 = time.perf_counter()
    rep = api.benchmark(tiny_onnx, **{**FAST, "rounds": 2, "runs": 10_000_000, "max_seconds": 0.6, "auto_baseline": False})
    r = rep.results[0]
    assert 30 <= r["latency_ms"]["n"] < 10_000_000 and rep.data["settings"]["max_seconds"] == 0.6
    assert time.perf_counter() - t0 < 60
    from edgeship.config import DeployConfig

    assert DeployConfig.build(model="x").bench_seconds == 3.0


def test_the_busy_note_follows_other_work_not_the_load_average(tiny_onnx, monkeypatch):
    """Right after a deploy's conversions the 1-minute load average is still high although nothing
    runs: that said "the machine was busy" on every deploy benchmark. The note follows the share of
    CPU time other work takes just before and after."""
    from edgeship.bench import harness, peaks

    monkeypatch.setattr(harness, "_loadavg", lambda: [64.0, 32.0, 8.0])
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: 0.02)
    quiet = api.benchmark(tiny_onnx, **{**FAST, "rounds": 1, "auto_baseline": False, "roofline": False})
    assert not any("busy" in n for n in quiet.data["notes"]), quiet.data["notes"]
    assert quiet.data["machine"]["busy_share"] == {"start": 0.02, "end": 0.02}
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: 0.9)
    busy = api.benchmark(tiny_onnx, **{**FAST, "rounds": 1, "auto_baseline": False, "roofline": False})
    assert any("the machine was busy (90%" in n for n in busy.data["notes"]), busy.data["notes"]
