"""One typed manifest reader serves analysis, the roofline, the benchmark and the CLI; the paths a
manifest names stay inside its folder for every reader (analysis joined them unconfined)."""

from __future__ import annotations

import json
import shutil

import pytest

import edgeship
from edgeship.manifest import load_manifest


def test_analysis_refuses_a_manifest_path_that_leaves_its_folder(tiny_onnx, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(tiny_onnx, outside)
    out = tmp_path / "out"
    out.mkdir()
    doc = json.loads((tiny_onnx.parent / "manifest.json").read_text())
    doc["artifacts"][0]["path"] = "../outside"
    (out / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(edgeship.SecurityError, match="outside"):
        edgeship.analyze(str(out), targets="none", isolate=False)


def test_the_benchmark_figure_is_read_by_its_schema(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [], "stages": {"benchmark": {"results": [
        {"id": "torch-eager", "role": "baseline", "threads": 1, "latency_ms": {"p50": 20.0}},
        {"id": "onnx-fp32", "role": "artifact", "threads": 1, "latency_ms": {"p50": 4.5}, "runtime": {"target": "onnx"}},
        {"id": "onnx-int8", "role": "artifact", "threads": 1, "latency_ms": {"p50": 2.0}}]}}}))
    m = load_manifest(tmp_path)
    assert m.benchmark() == {"artifact": "onnx-fp32", "latency_ms": 4.5, "threads": 1, "runtime": {"target": "onnx"}}
    assert m.benchmark("onnx-int8")["latency_ms"] == 2.0 and m.benchmark("nothing") is None


def test_an_unreadable_manifest_is_a_format_error_for_the_benchmark(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(edgeship.FormatError, match="edgeship manifest .* is not valid JSON"):
        edgeship.benchmark(tmp_path)


def test_the_api_dry_run_builds_nothing(tmp_path):
    p = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["onnx", "ort"], quantize=["int8"],
                        dry_run=True)
    assert isinstance(p, edgeship.Plan) and [(s["target"], s["precision"]) for s in p.steps] == [
        ("onnx", "fp32"), ("onnx", "int8"), ("ort", "fp32")]
    assert {"target": "ort", "precision": "int8", "reason": "ort offers fp32"} in p.skipped
    assert not (tmp_path / "o").exists()


def test_the_api_returns_the_quantisation_report(tmp_path):
    from edgeship import api

    res = edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path, targets=["onnx"], quantize=["int8"])
    full = api.quantization_report(tmp_path / "onnx-int8")
    assert full["steps"] and full["layers"] and full["tensors"]["weights"]
    assert api.quantization_report(res.artifacts[0]) == {}  # fp32: no report
    (tmp_path / "onnx-int8" / "quantization.json").write_text("[1, 2]")
    with pytest.raises(edgeship.FormatError, match="not a quantisation report"):
        api.quantization_report(tmp_path / "onnx-int8")
