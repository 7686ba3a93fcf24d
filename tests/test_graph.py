"""deploy as a task graph: --dry-run prints it; target families build in parallel worker processes
with the bytes a one-process build gives; a failing worker fails the run and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import edgeship
from edgeship.errors import ValidationError
from edgeship.testing import FakeTarget


class NoisyFake(FakeTarget):
    """Fails verification: its outputs are far from the source's."""

    name = "noisyfake"
    noise = 0.5


def test_dry_run_prints_the_graph(cli_env):
    run = subprocess.run([sys.executable, "-m", "edgeship", "deploy", "tinymodels:tiny_classifier", "--targets",
                          "onnx,ort,web,tflite,executorch", "--quantize", "int8", "--rounding", "adaround", "--dry-run",
                          "--json", "--jobs", "2"],
                         env=cli_env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)["plan"]
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["onnx-int8"]["after"] == ["onnx-fp32"]
    assert steps["ort-fp32"]["after"] == ["onnx-fp32"] and steps["ort-fp32"]["group"] == "onnx"
    assert steps["web-int8"]["after"][0] == "onnx-int8" and steps["web-int8"]["group"] == "onnx"
    # asked for, the int8 that starts from the torch source waits for the one learned rounding they share
    assert steps["tflite-int8"]["after"] == ["tflite-fp32", "learned-rounding"]
    assert [t["id"] for t in plan["shared"]] == ["learned-rounding"]
    assert set(plan["shared"][0]["for"]) == {"tflite-int8", "executorch-int8"}
    assert "learned-rounding" not in steps["onnx-int8"]["after"]  # ONNX rounds its own graph
    assert plan["jobs"] == 2
    for rounding in ("nearest", "auto"):  # auto climbs to it only when the budget needs it: nothing to wait for
        plain = subprocess.run([sys.executable, "-m", "edgeship", "deploy", "tinymodels:tiny_classifier", "--targets",
                                "tflite", "--quantize", "int8", "--rounding", rounding, "--dry-run", "--json"],
                               env=cli_env, capture_output=True, text=True)
        assert json.loads(plain.stdout)["plan"]["shared"] == [], rounding
    human = subprocess.run([sys.executable, "-m", "edgeship", "deploy", "tinymodels:tiny_classifier", "--targets",
                            "onnx,ort,tflite", "--quantize", "int8", "--rounding", "adaround", "--dry-run"],
                           env={**cli_env, "COLUMNS": "80"}, capture_output=True, text=True)
    assert human.returncode == 0 and max(len(line) for line in human.stdout.splitlines()) <= 80
    assert "learned-rounding" in human.stdout and "worker" in human.stdout


def test_parallel_workers_give_the_bytes_one_process_gives(tmp_path):
    opts = {"targets": ["onnx", "ort", "tflite"], "quantize": ["fp16"], "package": False}
    one = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "one", jobs=1, **opts)
    two = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "two", jobs=2, **opts)
    assert "workers" not in one.manifest["stages"]["convert"]
    workers = two.manifest["stages"]["convert"]["workers"]
    assert workers["jobs"] == 2 and {u["name"] for u in workers["units"]} == {"onnx", "tflite"}
    assert all(u["peak_rss_mb"] > 0 for u in workers["units"])
    d1 = {a["id"]: a["digest"] for a in one.manifest["artifacts"]}
    d2 = {a["id"]: a["digest"] for a in two.manifest["artifacts"]}
    assert list(d2) == list(d1)  # plan order, whichever worker finished first
    variable = {a["id"] for a in two.manifest["artifacts"] if any("vari" in n and "digest" in n for n in a["notes"])}
    assert variable == {"ort-fp32"}  # the one format whose bytes vary between builds says so
    assert {k: v for k, v in d2.items() if k not in variable} == {k: v for k, v in d1.items() if k not in variable}
    for art in two.artifacts:
        art.verify_files()


def test_the_worker_with_the_most_to_build_starts_first(tmp_path):
    """In plan order the onnx family (onnx, ort: the most steps) started third, after two one-step
    workers, and the run ended waiting on it; the longest goes first (on a re-run: what each took
    last time, remembered with its memory)."""
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["coreml", "executorch", "onnx", "ort"],
                          package=False, jobs=2)
    units = sorted(res.manifest["stages"]["convert"]["workers"]["units"], key=lambda u: u["started_s"])
    assert units[0]["name"] == "onnx", units


def test_a_failing_worker_cell_is_a_row_and_loses_nothing(tmp_path):
    """A cell that fails in its worker is one row of the outcome: the other worker's verified
    artifact lands (whole), no file that existed is lost, nothing half-written is left."""
    edgeship.register_target("noisyfake", NoisyFake)  # importable from this module: it runs in a worker
    out = tmp_path / "out"
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=False)
    before = {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValidationError) as e:
        edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx", "noisyfake"], jobs=2, package=False)
    assert "max abs" in e.value.message and "1 of 2 artifacts written" in e.value.message
    assert before <= {p.relative_to(out) for p in out.rglob("*") if p.is_file()}
    m = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in m["artifacts"]] == ["onnx-fp32"]
    assert [f["target"] for f in m["stages"]["convert"]["failed"]] == ["noisyfake"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_two_builds_give_the_same_bytes(tmp_path):
    """Found measuring two cold deploys: Core ML packages had random item ids, hash-ordered maps and
    the conversion date; an int8 quantization.json had its activations in set order and the step
    latencies. The same inputs now give the same files."""
    opts = {"targets": ["onnx", "coreml"], "quantize": ["int8", "fp16"], "package": False, "jobs": 1}
    runs = [edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / f"r{i}", **opts) for i in range(2)]
    files = [{str(p.relative_to(r.out)): p.read_bytes() for p in r.out.rglob("*") if p.is_file()
              and p.parts[len(r.out.parts)].startswith(("onnx-", "coreml-"))} for r in runs]
    assert files[0].keys() == files[1].keys() and any("Manifest.json" in k for k in files[0])
    # artifact.json is the build's record (the latencies measured while quantising): not one of the files
    assert [k for k in files[0] if files[0][k] != files[1][k] and not k.endswith("artifact.json")] == []
    assert {a.root.name: a.digest for a in runs[0].artifacts} == {a.root.name: a.digest for a in runs[1].artifacts}
