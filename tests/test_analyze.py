"""Model analysis: MAC counts (torch and ONNX agree), memory, advice, roofline, compatibility preview."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import edgeship
from edgeship.analysis import analyze, model_macs
from edgeship.analysis.graph import Graph, Layer, Tensor, peak_activation, separable_macs
from edgeship.errors import FormatError, InputError, UsageError

# the tiny classifier by hand: 3x3 conv 3->8 stride 2 (16x16 out), 3x3 depthwise 8, 1x1 8->16, fc 16->10
TINY_MACS = 16 * 16 * 8 * 3 * 9 + 16 * 16 * 8 * 9 + 16 * 16 * 16 * 8 + 16 * 10


# ---- the seed's worked example --------------------------------------------------------------

def test_separable_formula_reproduces_the_seed_exactly():
    est = separable_macs(224, 224, 32, 64, 3, 3)
    assert est["standard"] == 224 * 224 * 32 * 64 * 9 == 924_844_032
    assert est["depthwise"] == 224 * 224 * 32 * 9 == 14_450_688
    assert est["pointwise"] == 224 * 224 * 32 * 64 == 102_760_448
    assert est["separable"] == 117_211_136
    assert Fraction(est["separable"], est["standard"]) == Fraction(1, 64) + Fraction(1, 9)


def test_seed_example_through_the_whole_analysis():
    r = analyze("tinymodels:seed_example", targets=[], profile=False)
    assert r["totals"]["macs"] == 924_844_032
    (a,) = r["advice"]["separable"]
    assert (a["input_channels"], a["output_channels"], a["kernel"], a["output_hw"]) == (32, 64, [3, 3], [224, 224])
    assert a["macs"] == 924_844_032
    assert a["separable_macs"] == {"depthwise": 14_450_688, "pointwise": 102_760_448, "total": 117_211_136}
    assert a["saving_macs"] == 924_844_032 - 117_211_136
    assert a["ratio_formula"] == "1/64 + 1/9"
    assert a["ratio"] == pytest.approx(1 / 64 + 1 / 9, abs=1e-15)
    assert r["roofline"] is None and r["compatibility"] == {}


# ---- counting -------------------------------------------------------------------------------

def test_torch_and_onnx_counts_agree_on_the_tiny_classifier(tiny_onnx):
    r = analyze("tinymodels:tiny_classifier", targets="onnx")
    assert r["totals"]["macs"] == TINY_MACS
    cc = r["cross_check"]
    assert cc["torch_macs"] == cc["onnx_macs"] == TINY_MACS and cc["agree"]
    # the deployed ONNX artifact (folder or file) counts the same, and so does model_macs
    ro = analyze(tiny_onnx, targets=[])
    assert ro["model"]["frontend"] == "onnx" and ro["totals"]["macs"] == TINY_MACS
    assert model_macs(tiny_onnx / "model.onnx") == TINY_MACS
    kinds = r["macs_by_kind"]
    assert kinds == {"pointwise": 16 * 16 * 16 * 8, "conv_kxk": 16 * 16 * 8 * 3 * 9, "depthwise": 16 * 16 * 8 * 9,
                     "dense": 160}
    # the report ranks its 1x1 and depthwise layers, named by module path
    assert r["ranked_by_kind"]["pointwise"]["top"][0]["module"] == "features.5"
    assert r["ranked_by_kind"]["depthwise"]["top"][0]["module"] == "features.3"


def test_layer_records_and_totals():
    r = analyze("tinymodels:tiny_classifier", targets=[], profile="pixel-7-big-core")
    t = r["totals"]
    params = sum(p.numel() for p in edgeship.load("tinymodels:tiny_classifier").module.parameters())
    assert t["params"] == params
    assert t["weight_bytes"]["fp16"] * 2 == t["weight_bytes"]["fp32"] == t["weight_bytes"]["int8"] * 4
    conv = next(row for row in r["layers"] if row["module"] == "features.0" and row["type"] == "Conv")
    assert conv["macs"] == 16 * 16 * 8 * 3 * 9 and conv["output_shape"] == [1, 8, 16, 16]
    assert conv["output_bytes"] == 8 * 16 * 16 * 4 and conv["intensity"] > 0
    assert conv["conv"]["stride"] == [2, 2] and conv["kind"] == "conv_kxk"
    assert conv["bound"] in ("compute", "memory") and conv["est_us"] > 0
    assert t["peak_activation_bytes"] > 0 and t["peak_activation_at"]["layer"]
    roof = r["roofline"]
    assert roof["estimate"] is True and "estimate" in roof["label"] and roof["profile"]["name"] == "pixel-7-big-core"
    assert roof["total_ms"] > 0 and roof["measured"] is None and "no benchmark" in roof["measured_note"]


def test_attention_counts_agree_on_a_transformer():
    r = analyze("tinymodels:token_encoder", targets="onnx", profile=False)
    cc = r["cross_check"]
    assert cc["agree"] and cc["torch_macs"] == cc["onnx_macs"] > 0
    assert r["macs_by_type"]["Attention"] == 2 * 4 * (12 * 12 * (8 + 8))  # 2 layers, 4 heads, L=S=12, E=8


def test_peak_activation_from_lifetimes():
    # x(100 B) -> a(200) -> b(50) ; a also feeds c with b -> c(10); view of c is the output
    t = {n: Tensor(n, (s,), 1) for n, s in [("x", 100), ("a", 200), ("b", 50), ("c", 10), ("v", 10)]}
    layers = [Layer("la", "op", "Relu", inputs=["x"], outputs=["a"]),
              Layer("lb", "op", "Relu", inputs=["a"], outputs=["b"]),
              Layer("lc", "op", "Add", inputs=["a", "b"], outputs=["c"]),
              Layer("lv", "op", "Reshape", inputs=["c"], outputs=["v"], alias=True)]
    g = Graph("torch", layers, t, ["x"], ["v"], {}, 0)
    # during la: x + a = 300; during lb: a + b = 250; during lc: a + b + c = 260
    assert peak_activation(g) == {"bytes": 300, "at_layer": "la"}


# ---- roofline beside a measurement ---------------------------------------------------------

def test_roofline_shows_a_benchmark_from_the_manifest(tiny_onnx):
    # the benchmark stage as edgeship.bench writes it (schema edgeship.benchmark/1), read by its keys
    manifest = {"stages": {"benchmark": {"results": [
        {"id": "other", "role": "artifact", "latency_ms": {"p50": 9.0}},
        {"id": tiny_onnx.name, "role": "artifact", "threads": 1, "latency_ms": {"p50": 0.05, "p90": 0.07}}]}}}
    r = analyze(tiny_onnx, targets=[], manifest=manifest)
    m = r["roofline"]["measured"]
    assert m == {"artifact": tiny_onnx.name, "latency_ms": 0.05, "threads": 1}
    assert r["roofline"]["estimate_over_measured"] == pytest.approx(r["roofline"]["total_ms"] / 0.05, rel=1e-2)
    # a manifest without a benchmark stage is not an error
    r2 = analyze(tiny_onnx, targets=[], manifest={"stages": {"convert": {}}})
    assert r2["roofline"]["measured"] is None


# ---- compatibility preview ------------------------------------------------------------------

def test_an_op_a_target_cannot_take_is_named():
    r = analyze("tinymodels:unsupported_op", targets="coreml,executorch,tflite", profile=False)
    for target in ("coreml", "executorch", "tflite"):
        res = r["compatibility"][target]
        assert res["status"] == "unsupported", (target, res)
        (u,) = [u for u in res["unsupported"] if u["type"] == "bucketize"]
        assert (u["op"], u["node"], u["module"]) == ("aten.bucketize.Tensor", "bucketize", "quantizer")
        assert u["hint"]
    assert "Core ATen" in r["compatibility"]["executorch"]["unsupported"][0]["hint"]


def test_tiny_model_is_ready_for_the_real_tools():
    r = analyze("tinymodels:tiny_classifier", targets="ort,openvino,coreml", profile=False)
    for name in ("ort", "openvino", "coreml"):
        res = r["compatibility"][name]
        assert res["status"] == "ready", (name, res)
        assert res["macs_share_fast"] == 1.0 and not res["unsupported"]
    assert r["compatibility"]["ort"]["delegation"]["nnapi"]["macs_share"] == 1.0
    assert {o["type"] for o in r["compatibility"]["openvino"]["ops"]} >= {"Conv", "Gemm"}


def _custom_op_onnx(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "conv.weight")
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv_0", pads=[1, 1, 1, 1]),
             helper.make_node("MagicOp", ["c"], ["m"], name="magic_0", domain="my.ops"),
             helper.make_node("Relu", ["m"], ["y"], name="relu_0")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)]),
              str(path))
    return path


def test_onnx_file_with_a_custom_op_is_flagged(tmp_path):
    r = analyze(_custom_op_onnx(tmp_path / "custom.onnx"), targets="onnx,openvino,coreml", profile=False)
    assert r["totals"]["macs"] == 8 * 8 * 4 * 3 * 9
    assert any("dynamic" in n for n in r["notes"])
    for name in ("onnx", "openvino"):
        res = r["compatibility"][name]
        assert res["status"] == "unsupported", (name, res)
        assert [(u["op"], u["node"]) for u in res["unsupported"]] == [("my.ops:MagicOp", "magic_0")]
    assert r["compatibility"]["coreml"]["status"] == "not_applicable"


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input_is_a_typed_error(tmp_path):
    with pytest.raises(InputError):
        analyze(tmp_path / "missing.onnx")
    with pytest.raises(InputError):
        analyze(tmp_path)  # a folder that is no artifact
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf" * 10)
    with pytest.raises(FormatError):
        analyze(bad)
    assert model_macs(bad) is None
    with pytest.raises(UsageError, match="known targets"):
        analyze("tinymodels:tiny_classifier", targets="onnx,bogus")
    with pytest.raises(UsageError, match="profile"):
        analyze("tinymodels:tiny_classifier", targets=[], profile="no-such-device")


# ---- CLI ------------------------------------------------------------------------------------

def test_cli_json(cli_env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgeship", "analyze", "tinymodels:unsupported_op",
                           "--targets", "tflite", "--profile", "raspberry-pi-5", "--json"],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["analysis"]["schema"] == "edgeship.analysis/1"
    assert doc["analysis"]["roofline"]["profile"]["name"] == "raspberry-pi-5"
    (u,) = doc["analysis"]["compatibility"]["tflite"]["unsupported"]
    assert (u["node"], u["module"]) == ("bucketize", "quantizer")

    proc = subprocess.run([sys.executable, "-m", "edgeship", "analyze", str(tmp_path / "nope.onnx"), "--json"],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 3
    assert json.loads(proc.stdout)["ok"] is False and "Traceback" not in proc.stderr


def test_cli_human_output(cli_env, tiny_onnx):
    proc = subprocess.run([sys.executable, "-m", "edgeship", "analyze", str(tiny_onnx), "--targets", "none"],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the tiny CNN has 4 weighted layers: the title counts what it shows, not --top
    assert "top 4 layers by MACs" in proc.stdout and "roofline" in proc.stdout and "estimate" in proc.stdout


# ---- the real default model -----------------------------------------------------------------

@pytest.mark.slow
def test_lite0_counts_385m_macs_from_both_paths():
    r = analyze("efficientnet-lite0", targets="onnx")
    cc = r["cross_check"]
    for macs in (cc["torch_macs"], cc["onnx_macs"]):
        assert macs == pytest.approx(385e6, rel=0.01)
    assert cc["agree"]
    assert r["totals"]["params"] == pytest.approx(4.65e6, rel=0.01)
    assert r["ranked_by_kind"]["pointwise"]["count"] == 32 and r["ranked_by_kind"]["depthwise"]["count"] == 16
    (stem,) = r["advice"]["separable"]
    assert stem["module"] == "_conv_stem" and stem["ratio_formula"] == "1/32 + 1/9"
    assert r["compatibility"]["onnx"]["status"] == "ready"


@pytest.mark.slow
def test_tflite_file(tmp_path):
    pytest.importorskip("litert_torch")
    import litert_torch
    import torch

    import tinymodels

    path = tmp_path / "tiny.tflite"
    litert_torch.convert(tinymodels.plain_cnn(), (torch.zeros(1, 3, 32, 32),)).export(str(path))
    r = analyze(path, targets="tflite,openvino")
    assert r["model"]["frontend"] == "tflite" and r["totals"]["macs"] == TINY_MACS
    assert r["compatibility"]["tflite"]["status"] == "ready"
    assert r["compatibility"]["tflite"]["macs_share_fast"] == 1.0
    assert any(row["module"] == "features.3" and row["kind"] == "depthwise" for row in r["layers"])
    from edgeship.analysis import model_macs

    assert model_macs(path) == TINY_MACS  # what the benchmark's roofline uses for .tflite artifacts
