"""edgeship sweep: models x recipes x targets x precisions x threads as Ray tasks."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from edgeship import sweep
from edgeship.errors import MissingExtraError, UsageError
from edgeship.reporting.sweep import sweep_page, write_sweep_report
from edgeship.targets import load_artifact


def _cfg(tmp_path, **kw):
    base = {"models": ["tinymodels:tiny_classifier"], "targets": ["onnx"], "precisions": ["fp32"],
            "out": str(tmp_path / "out")}
    return sweep.SweepConfig.build(**{**base, **kw})


def test_the_tasks_are_checked_before_anything_starts(tmp_path):
    with pytest.raises(UsageError, match="model tiny_classifier, recipe fast, target onnx: --no-such-knob"):
        sweep.tasks(_cfg(tmp_path, recipes={"fast": {"no_such_knob": 1}}))
    with pytest.raises(UsageError, match="target 'nosuch'|nosuch"):
        sweep.tasks(_cfg(tmp_path, targets=["nosuch"]))
    with pytest.raises(UsageError, match="name them"):
        _cfg(tmp_path, targets=["all"])
    with pytest.raises(UsageError, match="precision"):
        sweep.tasks(_cfg(tmp_path, precisions=["fp32", "int3"]))
    with pytest.raises(UsageError, match=r"models\[1\]"):
        sweep.tasks(_cfg(tmp_path, models=["tinymodels:tiny_classifier", {"name": "x"}]))
    # two models of the same name get folders of their own; a precision a target lacks is skipped, not failed
    t = sweep.tasks(_cfg(tmp_path, models=["tinymodels:tiny_classifier", "tinymodels:tiny_classifier"],
                         targets=["onnx", "tflite"], precisions=["fp32", "fp16", "int8"]))
    assert [x["id"] for x in t] == ["tiny_classifier/default/onnx", "tiny_classifier/default/tflite",
                                    "tiny_classifier-2/default/onnx", "tiny_classifier-2/default/tflite"]
    assert all(s["precision"] in ("fp32", "fp16", "int8") for x in t for s in x["steps"])


def test_an_existing_output_folder_is_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="exists and is not empty"):
        sweep.sweep(_cfg(tmp_path))
    assert (out / "keep.txt").read_text() == "mine"


def test_without_ray_the_message_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match="Ray") as e:
        sweep.sweep(_cfg(tmp_path))
    assert "edgeship[sweep]" in e.value.hint
    assert not (tmp_path / "out").exists()


def _doc(tmp_path):
    """A sweep document as the driver makes it, from tasks' and benchmarks' results (no Ray)."""
    cfg = _cfg(tmp_path, models=["tinymodels:tiny_classifier", "tinymodels:not_exportable"],
               targets=["onnx", "tflite"], precisions=["fp32", "fp16"], threads=[1, 2])
    todo = sweep.tasks(cfg)
    fid = {"value": 1.0, "metric": "top-1 agreement", "cosine": 1.0}
    node = {"node_id": "abcdef123456", "host": "box", "cpu": "Some CPU", "cpus": 2}
    results = {
        "tiny_classifier/default/onnx": {"node": node, "seconds": 3.0, "steps": [
            {"id": "onnx-fp32", "size_bytes": 1000, "digest": "d1", "seconds": 1.0, "fidelity": fid},
            {"id": "onnx-fp16", "size_bytes": 500, "digest": "d2", "seconds": 1.0,
             "fidelity": {"value": 0.9, "metric": "top-1 agreement", "cosine": 0.99}}]},
        "tiny_classifier/default/tflite": {"node": node, "seconds": 3.0, "steps": [
            {"id": "tflite-fp32", "size_bytes": 1000, "digest": "d3", "seconds": 1.0, "fidelity": fid},
            {"id": "tflite-fp16", "failed": {"error": "ValidationError", "message": "below budget", "hint": "h"}}]},
        "not_exportable/default/onnx": {"error": {"error": "UnsupportedError", "message": "torch.export failed"}},
        "not_exportable/default/tflite": {"error": {"error": "WorkerCrashedError", "message": "the Ray worker died"}},
    }

    def fig(task, path, th, p50):
        return {"task": task, "path": path, "threads": th, "status": "ok", "role": "artifact",
                "latency_ms": {"p50": p50, "p99": p50 * 2}, "vs_baseline": {"speedup_p50": 2.0}}

    bench = {"tiny_classifier": {"node": node, "busy_before": 0.01, "results": [
        fig("default/onnx", "onnx-fp32", 1, 1.0), fig("default/onnx", "onnx-fp16", 1, 0.5),
        fig("default/tflite", "tflite-fp32", 1, 0.8),
        fig("default/onnx", "onnx-fp32", 2, 0.6),
        {"task": "default/onnx", "path": "onnx-fp16", "threads": 2, "status": "incomplete", "reason": "timed out"},
        fig("default/tflite", "tflite-fp32", 2, 0.7),
        {"task": None, "path": None, "threads": 1, "status": "ok", "role": "baseline", "latency_ms": {"p50": 2.0}}]}}
    return cfg, sweep._document(cfg, todo, results, bench, [{"NodeID": "abcdef123456", "Resources": {"CPU": 2}}])


def test_every_asked_cell_is_a_row_with_its_status(tmp_path):
    cfg, doc = _doc(tmp_path)
    rows = {(r["model"], r["target"], r["precision"], r.get("threads")): r for r in doc["rows"]}
    ok = rows[("tiny_classifier", "onnx", "fp16", 1)]
    assert ok["status"] == "ok" and ok["p50_ms"] == 0.5 and ok["vs_eager"] == 2.0 and ok["cpu"] == "Some CPU"
    assert ok["eager_p50_ms"] == 2.0 and ok["fidelity"] == 0.9
    assert rows[("tiny_classifier", "onnx", "fp16", 2)]["bench_error"] == "timed out"
    assert rows[("tiny_classifier", "tflite", "fp16", None)]["message"] == "below budget"
    assert rows[("not_exportable", "tflite", "fp32", None)]["error"] == "WorkerCrashedError"
    assert doc["summary"]["failed_tasks"] == ["not_exportable/default/onnx", "not_exportable/default/tflite",
                                              "tiny_classifier/default/tflite"]
    table = list(csv.DictReader(sweep.to_csv(doc).splitlines()))
    assert len(table) == len(doc["rows"]) and table[0]["model"] == "tiny_classifier"
    # the fastest artifact within the budget (fp16 at 90% agreement is outside 95%): per model, CPU, threads
    page = sweep_page(doc)
    best = [(r["target"], r["precision"], r["threads"]) for s in page["sections"] for r in s["rows"] if r["best"]]
    assert set(best) == {("tflite", "fp32", 1), ("onnx", "fp32", 2)}
    html = write_sweep_report(tmp_path, doc).read_text()
    assert "below budget" in html and "Some CPU" in html and "the Ray worker died" in html


@pytest.mark.ray
def test_a_sweep_on_a_local_ray(tmp_path, cli_env):
    """Two models x two targets x two precisions on a local Ray, with a model whose task's worker is
    killed and one that cannot be exported: both reported, the sweep finishes, the others are built,
    verified, benchmarked and written."""
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "models:\n  - tinymodels:tiny_classifier\n  - model: tinymodels:relu6_classifier\n    name: relu6\n"
        "  - tinymodels:kills_its_worker\n  - tinymodels:not_exportable\n"
        "targets: [onnx, tflite]\nprecisions: [fp32, fp16]\nthreads: [1]\nbench_seconds: 0.3\n"
        f"out: {tmp_path / 'out'}\n")
    run = subprocess.run([sys.executable, "-m", "edgeship", "sweep", str(spec), "--csv", str(tmp_path / "t.csv")],
                         env={**cli_env, "COLUMNS": "80"}, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    assert "4 of 8 sweep task(s) failed" in run.stderr
    assert max(len(line) for line in run.stdout.splitlines()) <= 80, run.stdout
    assert "failed kills_its_worker/default/onnx (fp32, fp16): the Ray" in run.stdout
    doc = json.loads((tmp_path / "out" / "sweep.json").read_text())
    rows = doc["rows"]
    good = [r for r in rows if r["model"] in ("tiny_classifier", "relu6")]
    assert len(good) == 8 and all(r["status"] == "ok" for r in good), good
    assert all(r["p50_ms"] > 0 and r["vs_eager"] and r["cpu"] and r["bench_node"] for r in good)
    killed = [r for r in rows if r["model"] == "kills_its_worker"]
    assert {r["error"] for r in killed} == {"WorkerCrashedError"} and len(killed) == 4
    broken = [r for r in rows if r["model"] == "not_exportable"]
    assert all(r["status"] == "failed" and r["error"] != "WorkerCrashedError" for r in broken)
    # the artifacts came back through Ray's object store, whole and verified
    for r in good:
        art = load_artifact(tmp_path / "out" / r["model"] / r["recipe"] / f"{r['target']}-{r['precision']}")
        assert art.digest == r["digest"] and art.verification.passed
    assert len(list(csv.DictReader((tmp_path / "t.csv").read_text().splitlines()))) == len(rows)
    assert (tmp_path / "out" / "report.html").is_file()


def test_dry_run_lists_the_checked_tasks_and_starts_nothing(tmp_path, cli_env):
    spec = tmp_path / "sweep.yaml"
    spec.write_text("models: [tinymodels:tiny_classifier]\ntargets: onnx,ort\nprecisions: [fp32, int8]\n"
                    f"out: {tmp_path / 'out'}\n")
    run = subprocess.run([sys.executable, "-m", "edgeship", "sweep", str(spec), "--dry-run"],
                         env={**cli_env, "COLUMNS": "80"}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "tiny_classifier" in run.stdout and "ort offers" in run.stdout and "nothing started" in run.stdout
    assert max(len(line) for line in run.stdout.splitlines()) <= 80
    doc = json.loads(subprocess.run([sys.executable, "-m", "edgeship", "sweep", str(spec), "--dry-run", "--json"],
                                    env=cli_env, capture_output=True, text=True).stdout)
    assert [t["steps"] for t in doc["tasks"]] == [["onnx-fp32", "onnx-int8"], ["ort-fp32"]]
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [tinymodels:tiny_classifier]\ntargets: [onnx]\nrecipes: {r: {rounding: sideways}}\n")
    run = subprocess.run([sys.executable, "-m", "edgeship", "sweep", str(bad), "--dry-run"], env=cli_env,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "recipe r" in run.stderr and "--rounding" in run.stderr


def _bench_doc(tmp_path, eager_ms: dict[int, float], art_ms: dict[tuple[str, int], float]):
    """A sweep document of one model (onnx fp32, fp16 and tflite fp32 at 1 and 2 threads) whose
    benchmark measured PyTorch eager at ``eager_ms`` and the artifacts at ``art_ms``."""
    cfg = _cfg(tmp_path, targets=["onnx", "tflite"], precisions=["fp32", "fp16"], threads=[1, 2])
    todo = sweep.tasks(cfg)
    fid = {"value": 1.0, "metric": "top-1 agreement", "cosine": 1.0}
    node = {"node_id": "abcdef123456", "host": "box", "cpu": "Some CPU", "cpus": 2}
    steps = lambda ids: [{"id": i, "size_bytes": 1000, "digest": i, "seconds": 1.0, "fidelity": fid} for i in ids]  # noqa: E731
    results = {"tiny_classifier/default/onnx": {"node": node, "seconds": 3.0, "steps": steps(["onnx-fp32", "onnx-fp16"])},
               "tiny_classifier/default/tflite": {"node": node, "seconds": 3.0, "steps": steps(["tflite-fp32", "tflite-fp16"])}}
    figs = []
    for (sid, th), ms in art_ms.items():
        b = eager_ms[th]
        figs.append({"task": f"default/{sid.split('-')[0]}", "path": sid, "threads": th, "status": "ok", "role": "artifact",
                     "latency_ms": {"p50": ms, "p99": ms * 2},
                     "vs_baseline": {"baseline": "eager", "baseline_p50_ms": b, "speedup_p50": round(b / ms, 3),
                                     "speedup_p50_by_round": [round(b / ms, 3)] * 3,
                                     "speedup_p50_median_of_rounds": round(b / ms, 3)}})
    figs += [{"task": None, "path": None, "threads": th, "status": "ok", "role": "baseline", "latency_ms": {"p50": ms}}
             for th, ms in eager_ms.items()]
    bench = {"tiny_classifier": {"node": node, "busy_before": 0.01, "results": figs}}
    return sweep._document(cfg, todo, results, bench, [{"NodeID": "abcdef123456", "Resources": {"CPU": 2}}])


def test_a_baseline_slower_at_more_threads_flags_its_ratios_and_each_ratio_names_its_baseline(tmp_path):
    # the report that showed "vs eager 121.95×": PyTorch eager 599.9 ms at 2 threads, 48.1 ms at 1
    doc = _bench_doc(tmp_path, {1: 48.1, 2: 599.9}, {("onnx-fp32", 1): 4.1, ("onnx-fp32", 2): 4.919, ("onnx-fp16", 1): 3.0,
                                                     ("onnx-fp16", 2): 3.2, ("tflite-fp32", 1): 5.0, ("tflite-fp32", 2): 4.0})
    rows = {(r["target"], r["precision"], r["threads"]): r for r in doc["rows"] if r["status"] == "ok"}
    bad = rows[("onnx", "fp32", 2)]
    assert bad["vs_eager"] == pytest.approx(121.95, abs=0.01)
    assert "slower at 2 threads (p50 599.9 ms) than at 1 (p50 48.1 ms)" in bad["vs_eager_flag"]
    assert all("vs_eager_flag" in r for k, r in rows.items() if k[2] == 2 and r.get("vs_eager"))
    assert not any("vs_eager_flag" in r for k, r in rows.items() if k[2] == 1)
    # which figure each ratio came from: the baseline's p50 and thread count
    assert (bad["eager_p50_ms"], bad["eager_threads"]) == (599.9, 2)
    assert bad["vs_eager_from"] == "PyTorch eager p50 599.9 ms at 2 thread(s) / this p50 4.919 ms (median of 3 rounds' ratios)"
    assert len(doc["notes"]) == 1 and "tiny_classifier" in doc["notes"][0] and "up to 187.5×" in doc["notes"][0]
    table = list(csv.DictReader(sweep.to_csv(doc).splitlines()))
    assert any(t["vs_eager_flag"] and t["threads"] == "2" and t["eager_threads"] == "2" for t in table)


def test_a_ratio_far_outside_the_models_others_is_flagged(tmp_path):
    doc = _bench_doc(tmp_path, {1: 50.0, 2: 30.0}, {("onnx-fp32", 1): 5.0, ("onnx-fp32", 2): 3.2, ("onnx-fp16", 1): 4.0,
                                                    ("onnx-fp16", 2): 0.2, ("tflite-fp32", 1): 6.0, ("tflite-fp32", 2): 3.5})
    flagged = [r for r in doc["rows"] if r.get("vs_eager_flag")]
    assert [(r["target"], r["precision"], r["threads"]) for r in flagged] == [("onnx", "fp16", 2)]
    assert "far outside this model's other ratios" in flagged[0]["vs_eager_flag"] and len(doc["notes"]) == 1
    # a plausible spread is not flagged
    doc = _bench_doc(tmp_path, {1: 50.0, 2: 30.0}, {("onnx-fp32", 1): 5.0, ("onnx-fp32", 2): 3.2, ("onnx-fp16", 1): 4.0,
                                                    ("onnx-fp16", 2): 2.5, ("tflite-fp32", 1): 6.0, ("tflite-fp32", 2): 3.5})
    assert not [r for r in doc["rows"] if r.get("vs_eager_flag")] and doc["notes"] == []
