"""Adding a runtime that converts through ONNX is one file (tests/onnx_plain_target.py): fp32 and
int8 with the shared accuracy budget, verification, the manifest, the benchmark and the analysis
preview all come from the base class and the registry."""

from __future__ import annotations

import json

import pytest

import edgeship
from edgeship import api


def test_a_one_file_onnx_target_goes_through_every_stage(tmp_path):
    edgeship.register_target("onnx-plain", "onnx_plain_target:PlainOnnxTarget")
    assert "onnx-plain" not in [s["target"] for s in api.plan(edgeship.DeployConfig.build(
        model="tinymodels:tiny_classifier", targets=["all"])).steps]  # hidden from 'all'
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx-plain"], quantize=["int8"],
                          onnx_plain_doc="from the plugin's own option")
    fp32, int8 = res.artifacts
    assert (fp32.name, int8.name) == ("tiny-classifier-onnx-plain-fp32", "tiny-classifier-onnx-plain-int8")
    assert fp32.verification.passed and int8.verification.passed
    assert int8.provenance.parent_digest == fp32.digest and fp32.provenance.parent_digest == res.manifest["source"]["digest"]
    q = int8.details["quantization"]
    assert q["steps"][q["chosen"]]["within_budget"] and q["most_sensitive_layers"]  # budget and attribution
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["id"] for a in m["artifacts"]] == ["onnx-plain-fp32", "onnx-plain-int8"]
    assert edgeship.load_artifact(tmp_path / "onnx-plain-int8").target == "onnx-plain"
    assert m["config"]["onnx_plain_doc"] == "from the plugin's own option"  # its Options joined the deploy options
    import onnx

    assert onnx.load(str(fp32.model_path)).graph.doc_string == "from the plugin's own option"

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


def test_a_targets_options_are_typed_deploy_options_and_must_carry_its_name():
    from pydantic import BaseModel

    from onnx_plain_target import PlainOnnxTarget

    edgeship.register_target("onnx-plain", PlainOnnxTarget)
    cfg = edgeship.DeployConfig.build(model="x:y", onnx_plain_doc="d", tflite_nhwc=True)
    assert edgeship.get_target("onnx-plain").options(cfg).onnx_plain_doc == "d"
    assert edgeship.get_target("tflite").options(cfg).tflite_nhwc is True
    assert edgeship.get_target("onnx-plain").options(edgeship.DeployConfig.build(model="x:y")).onnx_plain_doc is None
    with pytest.raises(edgeship.UsageError, match="--onnx-plain-dco"):  # a typo is still an error
        edgeship.DeployConfig.build(model="x:y", onnx_plain_dco="d")

    class Loose(BaseModel):
        layout: str = "NHWC"

    class Bad(PlainOnnxTarget):
        name = "bad"
        Options = Loose

    edgeship.register_target("bad", Bad)
    with pytest.raises(edgeship.UsageError, match="target 'bad': its option 'layout' must start with 'bad_'"):
        edgeship.DeployConfig.build(model="x:y")

    class Clash(BaseModel):
        bench_runs: int = 3

    class Bench(PlainOnnxTarget):
        name = "bench"
        Options = Clash

    edgeship.register_target("bad", PlainOnnxTarget)
    edgeship.register_target("bench", Bench)
    with pytest.raises(edgeship.UsageError, match="its option 'bench_runs' is already an option of edgeship"):
        edgeship.DeployConfig.build(model="x:y")


def test_one_capability_table_answers_plan_targets_all_and_the_preview_list():
    from edgeship.analysis import preview_targets
    from edgeship.targets import capability_table, default_targets, known_precisions
    from onnx_plain_target import PlainOnnxTarget

    rows = {(r["target"], r["source_kind"], r["precision"]): r for r in capability_table()}
    assert rows[("coreml", "onnx", "int8")]["reason"] == "coreml converts from torch, pt2, not onnx"
    assert rows[("tflite", "onnx", "int8")]["ok"]  # through the onnx2torch bridge
    assert rows[("onnx", "onnx", "int8")]["ok"] and ("executorch", "torch", "fp16") not in rows
    assert {"fp16", "int8", "palettize6", "palettize4"} <= set(known_precisions())

    class Visible(PlainOnnxTarget):  # a plugin that --targets all should build
        name = "onnx-visible"
        hidden = False

    edgeship.register_target("onnx-visible", Visible)
    assert "onnx-visible" in default_targets() and preview_targets() == default_targets()
    plan = api.plan(edgeship.DeployConfig.build(model="tinymodels:tiny_classifier", targets=["all"], quantize=["fp16"]))
    assert ("onnx-visible", "fp32") in [(s["target"], s["precision"]) for s in plan.steps]
    skipped = {(s["target"], s["precision"]): s["reason"] for s in plan.skipped}
    assert skipped[("onnx-visible", "fp16")] == Visible.refuses(precision="fp16") == "onnx-visible offers fp32, int8"
    doc = edgeship.analyze("tinymodels:tiny_classifier", roofline=False)
    assert "onnx-visible" in doc["compatibility"]
