"""Adding a runtime that converts through ONNX is one file (tests/onnx_plain_target.py): fp32 and
int8 with the shared accuracy budget, verification, the manifest, the benchmark and the analysis
preview all come from the base class and the registry."""

from __future__ import annotations

import json

import edgeship
from edgeship import api


def test_a_one_file_onnx_target_goes_through_every_stage(tmp_path):
    edgeship.register_target("onnx-plain", "onnx_plain_target:PlainOnnxTarget")
    assert "onnx-plain" not in [s["target"] for s in api.plan(edgeship.DeployConfig.build(
        model="tinymodels:tiny_classifier", targets=["all"])).steps]  # hidden from 'all'
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx-plain"], quantize=["int8"])
    fp32, int8 = res.artifacts
    assert (fp32.name, int8.name) == ("tiny-classifier-onnx-plain-fp32", "tiny-classifier-onnx-plain-int8")
    assert fp32.verification.passed and int8.verification.passed
    assert int8.provenance.parent_digest == fp32.digest and fp32.provenance.parent_digest == res.manifest["source"]["digest"]
    q = int8.details["quantization"]
    assert q["steps"][q["chosen"]]["within_budget"] and q["most_sensitive_layers"]  # budget and attribution
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["id"] for a in m["artifacts"]] == ["onnx-plain-fp32", "onnx-plain-int8"]
    assert edgeship.load_artifact(tmp_path / "onnx-plain-int8").target == "onnx-plain"

    rep = api.benchmark(tmp_path, runs=5, warmup=1, rounds=1, roofline=False, auto_baseline=False)
    assert sorted(r["id"] for r in rep.results) == ["onnx-plain-fp32", "onnx-plain-int8"]
    assert all(r["runtime"]["target"] == "onnx-plain" for r in rep.results)

    doc = edgeship.analyze("tinymodels:tiny_classifier", targets=["onnx-plain"], roofline=False)
    prev = doc["compatibility"]["onnx-plain"]
    assert prev["status"] == "ready" and "onnx" in " ".join(prev["notes"])


def test_a_target_without_derive_refuses_a_reduced_precision_by_name(tmp_path):
    from onnx_plain_target import PlainOnnxTarget

    class NoInt8(PlainOnnxTarget):
        name = "onnx-noint8"
        derive = edgeship.Target.derive

    edgeship.register_target("onnx-noint8", NoInt8)
    src = edgeship.load("tinymodels:tiny_classifier")
    try:
        edgeship.convert(src, "onnx-noint8", tmp_path / "a", precision="int8")
    except edgeship.UnsupportedError as e:
        assert "onnx-noint8" in e.message and "int8" in e.message
    else:
        raise AssertionError("no error")
    assert not (tmp_path / "a").exists()
