"""Cross-layer equalisation: the maths once (edgeship.quant.equalize), the ONNX graph and the torch
module adapters, and the shared int8 flows that measure it and keep it only when it helps."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import edgeship
from edgeship.quant import onnxruntime_recipes as recipes
from edgeship.quant import run_model
from edgeship.quant.equalize import equalize_torch_module, input_ranges, output_ranges, pair_scales, scale_input_channels
from edgeship.sources import load_source


def test_the_scales_equalise_both_ranges_and_leave_dead_channels_alone():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(6, 4, 3, 3)) * np.array([100, 10, 1, 0.1, 0.01, 1])[:, None, None, None]
    w1[5] = 0.0  # a dead channel: nothing to equalise
    w2 = rng.normal(size=(8, 6, 1, 1))
    s = pair_scales(output_ranges(w1), input_ranges(w2, 1))
    r1 = output_ranges(w1 / s[:, None, None, None])
    r2 = input_ranges(scale_input_channels(w2, s, 1), 1)
    assert np.allclose(r1[:5], r2[:5]) and s[5] == 1.0
    # grouped: input channel i of a depthwise layer is its output channel i
    dw = rng.normal(size=(6, 1, 3, 3))
    assert np.allclose(scale_input_channels(dw, s, 6), dw * s[:, None, None, None])
    x = rng.normal(size=(2, 6))  # a dense second layer: y = W2 (x / s) * s is unchanged
    w = rng.normal(size=(3, 6))
    assert np.allclose((x / s) @ scale_input_channels(w, s, 1).T, x @ w.T)


def test_onnx_and_torch_adapters_equalise_the_same_pairs_and_keep_the_float_model(tmp_path):
    src = load_source("tinymodels:unbalanced_classifier")
    res = edgeship.deploy("tinymodels:unbalanced_classifier", out=tmp_path / "o", targets=["onnx"], package=False)
    fp32 = res.artifacts[0].model_path
    eq, rec = recipes.equalize(fp32, tmp_path / "eq.onnx")
    module, trec = equalize_torch_module(src.module, src.example_inputs)
    assert rec["pairs"] == trec["pairs"] == 2 and rec["skipped_why"] == {"followed by ReduceMean, not one convolution": 1}
    assert rec["spread_median_before"] > 30 and rec["spread_median_after"] < 1.5
    assert [p["scale_max"] for p in rec["per_pair"]] == pytest.approx([p["scale_max"] for p in trec["per_pair"]], rel=1e-3)
    samples = src.evaluation_inputs(8)
    a, b = run_model(fp32, ["image"], samples, 1)[0], run_model(eq, ["image"], samples, 1)[0]
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    x = torch.from_numpy(samples[0][0])
    with torch.no_grad():
        assert torch.allclose(module(x), src.module(x), rtol=1e-4, atol=1e-5)
        assert not torch.equal(module.bn1.weight, src.module.bn1.weight)  # the copy changed, the source did not


def test_relu6_and_residual_pairs_are_skipped_with_the_reason():
    src = load_source("tinymodels:relu6_classifier")
    _, rec = equalize_torch_module(src.module, src.example_inputs)
    assert rec["pairs"] == 0 and "a clamp (ReLU6 / Clip) follows" in next(iter(rec["skipped_why"]))


def test_onnx_int8_keeps_equalisation_where_it_helps_and_says_when_it_is_not_tried(tmp_path):
    # a budget nearest rounding misses here (output SQNR 32 dB: cosine 0.9997): the ladder climbs to equalisation
    res = edgeship.deploy("tinymodels:unbalanced_classifier", out=tmp_path / "u", targets=["onnx"], quantize="int8",
                          rounding="nearest", min_cosine=0.9999, package=False)
    q = next(a for a in res.artifacts if a.precision == "int8").details["quantization"]
    eq = q["equalization"]
    assert eq["chosen"] == "on" and eq["asked"] == "auto" and eq["pairs"] == 2 and q["rung"] == "equalisation"
    # within the default budget, the ladder stops at nearest rounding and says why equalisation was not tried
    met = edgeship.deploy("tinymodels:unbalanced_classifier", out=tmp_path / "met", targets=["onnx"], quantize="int8",
                          rounding="nearest", package=False)
    qm = next(a for a in met.artifacts if a.precision == "int8").details["quantization"]
    assert qm["equalization"]["tried"] is False and "budget was met" in qm["equalization"]["why"]
    notes = [s["note"] for s in q["steps"]]
    with_eq = next(s for s in q["steps"] if s["note"].startswith("cross-layer equalisation"))
    assert with_eq["sqnr_db"] > q["steps"][notes.index(with_eq["note"]) - 1]["sqnr_db"] + 5  # 32 -> 48 dB here
    # per layer, what each technique did: the depthwise layer between the unbalanced channels is fixed
    assert q["techniques"]["measured"] == ["plain", "bias correction", "equalisation"]
    dw = next(r for r in q["layers"] if r["module"] == "dw")["by_technique"]
    assert dw["equalisation"] > dw["plain"] + 20 and abs(dw["bias correction"] - dw["plain"]) < 3
    page = (tmp_path / "u" / "report.html").read_text()
    assert "What each technique did: onnx-int8" in page and ">equalisation</th>" in page
    off = edgeship.deploy("tinymodels:unbalanced_classifier", out=tmp_path / "off", targets=["onnx"], quantize="int8",
                          rounding="nearest", equalization="off", package=False)
    qo = next(a for a in off.artifacts if a.precision == "int8").details["quantization"]
    assert qo["equalization"]["chosen"] == "off" and not any("equalisation" in s["note"] for s in qo["steps"])
    six = edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path / "six", targets=["onnx"], quantize="int8",
                          rounding="nearest", max_drop=1.0, equalization="on", package=False)  # asked: the reason shows
    q6 = next(a for a in six.artifacts if a.precision == "int8").details["quantization"]["equalization"]
    assert q6["chosen"] == "off" and "no pair" in q6["why"]


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_quantizer") is None, reason="the tflite extra is not installed")
def test_a_torch_based_int8_target_measures_the_shared_equalised_source(tmp_path):
    res = edgeship.deploy("tinymodels:unbalanced_classifier", out=tmp_path / "t", targets=["tflite"], quantize="int8",
                          rounding="nearest", min_cosine=0.9999, package=False)  # nearest misses it: the ladder climbs
    q = next(a for a in res.artifacts if a.precision == "int8").details["quantization"]
    assert q["equalization"]["chosen"] == "on", q["equalization"]
    steps = {s["note"]: s for s in q["steps"]}
    assert steps["cross-layer equalisation (2 pairs)"]["sqnr_db"] > steps["all weighted layers int8"]["sqnr_db"] + 3


def test_an_explicit_zero_padding_between_the_layers_does_not_break_the_pair():
    class Padded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 1)
            self.b = torch.nn.Conv2d(8, 8, 3, groups=8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.nn.functional.pad(torch.relu(self.a(x)), [1, 1, 1, 1]))

    torch.manual_seed(0)
    m = Padded().eval()
    with torch.no_grad():
        m.a.weight.mul_(torch.logspace(-2, 1, 8).reshape(-1, 1, 1, 1))
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    eq, rec = equalize_torch_module(m, (x,))
    assert rec["pairs"] == 1 and rec["spread_median_after"] < rec["spread_median_before"] / 3
    with torch.no_grad():
        t = torch.from_numpy(x)
        assert torch.allclose(eq(t), m(t), rtol=1e-4, atol=1e-5)
