"""edgeship quantize: recipes, the tensor-level report, per-layer attribution, bias correction and
the accuracy budget."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeship
import edgeship.data
from edgeship.errors import SecurityError, ValidationError
from edgeship.quant import _dynamic_ranking
from edgeship.quant import onnxruntime_recipes as recipes
from edgeship.sources import load_source


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_static_int8_with_report_attribution_and_bias_correction(tiny_onnx, tmp_path):
    # --rounding adaround takes the learned-rounding rung whatever the budget says: the steps below
    a = edgeship.quantize(tiny_onnx, out=tmp_path / "q", equalization="off", rounding="adaround")
    fp32 = edgeship.load_artifact(tiny_onnx)
    assert a.precision == "int8" and a.verification.passed and a.provenance.parent_digest == fp32.digest
    assert a.provenance.config["bias_correction"] is True
    q = json.loads((a.root / "quantization.json").read_text())
    assert q["method"] == "static" and q["calibration"]["samples"] == 128 and q["eval_samples"] == 256
    # the seed's demo for every tensor: scale, zero point, MSE, SQNR
    weights = {w["tensor"]: w for w in q["tensors"]["weights"]}
    assert len(weights) >= 4
    for w in weights.values():
        assert {"scale", "zero_point", "mse", "sqnr_db"} <= set(w) and w["sqnr_db"] > 25
    for t in q["tensors"]["activations"]:
        assert {"scale", "zero_point", "mse", "qdq_sqnr_db"} <= set(t)
    # every weighted layer is attributed, with its source module (Conv+ReLU is judged after the ReLU)
    assert sorted(r["module"] for r in q["layers"]) == ["fc", "features.0", "features.3", "features.5"]
    notes = [s["note"].split(" (")[0] for s in q["steps"]]
    assert notes[:4] == ["all weighted layers int8", "+ bias correction", "learned rounding", "learned rounding + bias correction"]
    assert q["bias_correction"]["layers"] == 4 and q["steps"][-1]["within_budget"]
    r = q["rounding"]
    assert r["asked"] == "adaround" and r["chosen"] == "adaround" and len(r["per_layer"]) == 4
    assert a.details["quantization"]["rounding"]["chosen"] == r["chosen"]
    assert q["rung"] == "learned rounding" and [s["rung"] for s in q["steps"][:3]] == [
        "nearest rounding", "nearest rounding", "learned rounding"]
    assert a.details["quantization"]["chosen"] == len(q["steps"]) - 1
    ops = {n.op_type for n in onnx.load(str(a.model_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_int8_stops_at_the_first_rung_that_meets_the_budget(tiny_onnx, tmp_path):
    """The default ladder: nearest rounding with bias correction meets the budget on this model, so
    neither equalisation nor learned rounding (minutes on a real CNN) is built, and the record says
    which rung was reached and why the others were not taken."""
    a = edgeship.quantize(tiny_onnx, out=tmp_path / "q")
    q = json.loads((a.root / "quantization.json").read_text())
    assert q["steps"][-1]["within_budget"] and q["rung"] == "nearest rounding"
    assert {s["rung"] for s in q["steps"]} == {"nearest rounding"}
    assert not any("learned rounding" in s["note"] for s in q["steps"])
    assert q["rounding"]["tried"] is False and "not needed" in q["rounding"]["why"]
    assert a.details["quantization"]["rung"] == "nearest rounding"
    assert a.details["quantization"]["rounding"]["chosen"] == "off"


def test_int8_climbs_to_learned_rounding_while_the_budget_is_missed(tiny_onnx, tmp_path):
    """A budget nearest rounding cannot meet: auto climbs to learned rounding (then, with no float
    layers allowed, the miss names every rung measured and nothing is written)."""
    with pytest.raises(ValidationError) as e:
        edgeship.quantize(tiny_onnx, out=tmp_path / "q", equalization="off", min_cosine=0.9999999, max_float_layers=0,
                          rounding_iters=20)
    notes = [s["note"] for s in e.value.details["steps"]]
    assert any(n.startswith("learned rounding") for n in notes), notes
    assert not (tmp_path / "q").exists()


def _conv_gemm_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (6, 2, 3, 3)).astype(np.float32) * rng.uniform(0.01, 3, (6, 1, 1, 1)).astype(np.float32)
    g = rng.normal(0, 1, (5, 6 * 4 * 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", group=2, strides=[2, 2], pads=[1, 0, 0, 1]),
        helper.make_node("Flatten", ["c"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "g", "gb"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "cg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(6, np.float32), "b"),
         numpy_helper.from_array(g, "g"), numpy_helper.from_array(np.full(5, 0.5, np.float32), "gb")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_bias_shift_is_the_mean_output_error_of_the_int8_weights(tmp_path):
    # independent check of the convolution arithmetic (groups, stride, asymmetric pads, Gemm transB):
    # a float model carrying the int8 model's dequantised weights, run by ONNX Runtime
    src = tmp_path / "m.onnx"
    _conv_gemm_model(src)
    rng = np.random.default_rng(1)
    samples = [(rng.normal(0.5, 1, (1, 4, 8, 8)).astype(np.float32),) for _ in range(32)]
    cache = recipes.calibrate(src, tmp_path, ["x"], samples, "minmax", 8)
    qdq = recipes.static_qdq(src, tmp_path / "q.onnx", cache, "minmax")
    shifts = recipes.bias_shifts(src, qdq, recipes.input_means(src, tmp_path, ["x"], samples, 8))
    assert set(shifts) == {"conv", "fc"}

    from onnxruntime.quantization import qdq_loss_debug as dbg

    deq = onnx.load(str(src))
    match = dbg.create_weight_matching(str(src), str(qdq))
    for init in deq.graph.initializer:
        if init.name in ("w", "g"):
            init.CopyFrom(numpy_helper.from_array(match[init.name]["dequantized"].astype(np.float32), init.name))
    onnx.save(deq, str(tmp_path / "deq.onnx"))
    x = np.concatenate([s[0] for s in samples])
    # the Gemm's shift is for float inputs; compare the conv directly by cutting the graph at "c"
    for m in (src, tmp_path / "deq.onnx"):
        cut = onnx.load(str(m))
        cut.graph.output[0].CopyFrom(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
        onnx.save(cut, str(m.with_suffix(".cut.onnx")))
    diff = _run(tmp_path / "deq.cut.onnx", x) - _run(tmp_path / "m.cut.onnx", x)
    np.testing.assert_allclose(shifts["conv"], diff.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    assert np.abs(shifts["conv"]).max() > 1e-4  # there is something to correct
    # and the corrected float model with int8 weights has no mean error left
    fixed = recipes.apply_bias_shifts(tmp_path / "deq.cut.onnx", tmp_path / "fixed.onnx", {"conv": shifts["conv"]})
    left = _run(fixed, x) - _run(tmp_path / "m.cut.onnx", x)
    assert np.abs(left.mean(axis=(0, 2, 3))).max() < 1e-5


def test_budget_keeps_the_most_harmful_layers_in_float(tmp_path):
    res = edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path, quantize="int8", bias_correction=False,
                          rounding="nearest", max_drop=0.01)
    a = res.artifacts[1]
    steps = a.details["quantization"]["steps"]
    assert not steps[0]["within_budget"] and steps[-1]["within_budget"] and len(steps) > 2
    excluded = steps[-1]["excluded"]
    assert excluded and all(f"+ {n} (" in s["note"] for n, s in zip(excluded, steps[1:]))
    assert a.verification.top1_agreement >= 0.99
    model = onnx.load(str(a.model_path))
    kept = [n for n in model.graph.node if n.name in excluded]
    assert kept and all("DequantizeLinear" not in n.input[1] for n in kept)  # float weights


def test_a_model_that_misses_the_budget_is_not_written(tmp_path):
    with pytest.raises(ValidationError, match="most harmful layers: .*features") as e:
        edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path, quantize="int8", bias_correction=False,
                        rounding="nearest", max_drop=0.0, max_float_layers=1)
    assert "top-1 agreement" in e.value.message and e.value.exit_code == 5
    assert not (tmp_path / "onnx-int8").exists() and (tmp_path / "onnx-fp32" / "model.onnx").is_file()


def test_dynamic_int8_for_a_transformer_on_token_ids(tmp_path):
    res = edgeship.deploy("tinymodels:token_encoder", out=tmp_path, quantize="int8")
    a = res.artifacts[1]
    assert a.details["quantization"]["method"] == "dynamic"
    assert a.inputs[0].dtype == "int64"
    assert min(o.cosine for o in a.verification.outputs) >= 0.99
    assert a.details["quantization"]["steps"][-1]["cosine"] >= 0.99
    ops = {n.op_type for n in onnx.load(str(a.model_path)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


def test_fp16(tiny_onnx, tmp_path):
    a = edgeship.quantize(tiny_onnx, precision="fp16", out=tmp_path / "h")
    assert a.precision == "fp16" and a.inputs[0].dtype == "float32"
    dtypes = {i.data_type for i in onnx.load(str(a.model_path)).graph.initializer if len(i.dims) > 1}
    assert dtypes == {TensorProto.FLOAT16}
    assert a.details["quantization"]["steps"][0]["cosine"] > 0.9999


def test_labelled_image_folder_for_eval_and_npz_for_calibration(tiny_onnx, tmp_path):
    import skimage.data
    from PIL import Image

    for i, name in enumerate(("coffee", "chelsea", "astronaut")):
        d = tmp_path / "eval" / f"class_{i}"
        d.mkdir(parents=True)
        Image.fromarray(getattr(skimage.data, name)()).save(d / f"{name}.png")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", image=rng.normal(0, 1, (20, 3, 32, 32)).astype(np.float32))
    a = edgeship.quantize(tiny_onnx, out=tmp_path / "q", calib=str(tmp_path / "calib.npz"), eval=str(tmp_path / "eval"))
    q = json.loads((a.root / "quantization.json").read_text())
    assert q["calibration"]["samples"] == 20 and q["eval_samples"] == 3 and q["eval_labels"] is True
    assert {"accuracy", "accuracy_fp32"} <= set(q["steps"][0])
    # the artifact's own verification judges it on the same --eval data
    assert a.verification.samples == 3 and a.verification.inputs.startswith("evaluation data")


def test_calibration_data_holding_objects_is_refused(tiny_onnx, tmp_path):
    np.save(tmp_path / "bad.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SecurityError, match="pickle"):
        edgeship.quantize(tiny_onnx, out=tmp_path / "q", calib=str(tmp_path / "bad.npy"))
    assert not (tmp_path / "q").exists()


def test_weight_only_int8_weights_float_compute(tiny_onnx, tmp_path):
    a = edgeship.quantize(tiny_onnx, out=tmp_path / "q", method="weight-only")
    q = a.details["quantization"]
    assert q["method"] == "weight-only" and a.verification.passed
    model = onnx.load(str(a.model_path))
    int8 = {i.name for i in model.graph.initializer if i.data_type == TensorProto.INT8 and len(i.dims) > 1}
    assert int8 and not any(n.op_type == "QuantizeLinear" for n in model.graph.node)  # activations stay float
    # ONNX Runtime must fold the dequantisation at load: the runner sets it, the note tells app authors
    assert a.details["session_config"] == {"session.disable_quant_qdq": "1"}
    assert any("session.disable_quant_qdq" in n for n in a.notes)
    r = edgeship.runner_for(a, threads=1)
    x = np.zeros((1, 3, 32, 32), np.float32)
    ref = edgeship.runner_for(edgeship.load_artifact(tiny_onnx), threads=1).run([x])[0]
    cos = float((r.run([x])[0] * ref).sum() / (np.linalg.norm(r.run([x])[0]) * np.linalg.norm(ref)))
    assert cos > 0.999


def test_cli_json(tiny_onnx, tmp_path, cli_env):
    exe = Path(sys.executable).parent / "edgeship"
    r = subprocess.run([str(exe), "quantize", str(tiny_onnx), "--out", str(tmp_path / "q"), "--calib-samples", "16",
                        "--eval-samples", "32", "--json"], capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["artifact"]["precision"] == "int8"
    assert doc["report"]["calibration"]["samples"] == 16 and doc["report"]["eval_samples"] == 32
    assert doc["report"]["layers"][0]["module"]
    human = subprocess.run([str(exe), "quantize", str(tiny_onnx), "--out", str(tmp_path / "q2"), "--calib-samples", "16",
                            "--eval-samples", "32"], capture_output=True, text=True, env=cli_env, timeout=300)
    assert human.returncode == 0 and "bias correction" in human.stdout and "features.0" in human.stdout


def test_pt2e_bias_correction_removes_the_mean_error_of_int8_weights():
    """A conv whose per-channel int8 scale is set by one large weight: the small weights round
    coarsely and shift every output channel's mean; the correction takes that shift out."""
    pytest.importorskip("torchao")
    import torch
    from torch import nn
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeship.quant.pt2e import calibrate_and_correct
    from edgeship.targets.executorch import _clamp_quantizer

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)).eval()
    with torch.no_grad():
        m[0].weight.mul_(0.3)
        m[0].weight[:, 0, 0, 0] = 8.0
    bias = m[0].bias.detach().clone()
    rng = np.random.default_rng(0)
    cal = [(rng.normal(0.5, 1, (1, 4, 16, 16)).astype(np.float32),) for _ in range(32)]

    def mean_error(correct: bool) -> float:
        ep = torch.export.export(m, (torch.from_numpy(cal[0][0]),))
        p = prepare_pt2e(ep.module(), _clamp_quantizer(True))
        if correct:
            assert calibrate_and_correct(p, cal) == 1
        else:
            for s in cal:
                p(torch.from_numpy(s[0]))
        q = convert_pt2e(p)
        with torch.no_grad():
            d = torch.cat([q(torch.from_numpy(s[0])) - m(torch.from_numpy(s[0])) for s in cal])
        return float(d.mean(dim=(0, 2, 3)).abs().max())

    plain, corrected = mean_error(False), mean_error(True)
    assert plain > 0.02 and corrected < 0.2 * plain
    assert torch.equal(m[0].bias, bias)  # the source model is untouched


def test_learned_rounding_lowers_each_layers_error_and_ort_keeps_the_learned_levels(tmp_path):
    """AdaRound's weights are written as floats on their int8 grid; ONNX Runtime's own nearest
    rounding then lands on exactly the learned levels (grouped Conv with asymmetric pads, Gemm)."""
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from edgeship.quant.rounding import grid_scale

    src = tmp_path / "m.onnx"
    _conv_gemm_model(src)
    rng = np.random.default_rng(1)
    samples = [(rng.normal(0, 1, (1, 4, 8, 8)).astype(np.float32) ** 2,) for _ in range(32)]
    ada, layers = recipes.learned_rounding(src, tmp_path / "ada.onnx", tmp_path, ["x"], samples, 1, iters=200)
    assert [r["node"] for r in layers] == ["conv", "fc"]
    for r in layers:
        assert r["mse_learned"] < r["mse_nearest"] and r["kept"] == "learned" and 0 < r["flipped"] < 0.5
    orig = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(src)).graph.initializer}
    snapped = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(ada)).graph.initializer}
    for name in ("w", "g"):
        w = snapped[name]
        k = w / grid_scale(w).reshape((-1,) + (1,) * (w.ndim - 1))
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)  # on the grid
        assert np.abs(w - orig[name]).max() <= grid_scale(orig[name]).max() * 1.0001  # at most one level away
        assert not np.array_equal(np.round(k), np.clip(np.round(orig[name] / grid_scale(orig[name]).reshape(
            (-1,) + (1,) * (w.ndim - 1))), -127, 127))  # and not simply nearest
    pre = recipes.preprocess(ada, tmp_path / "pre.onnx")
    cache = recipes.calibrate(pre, tmp_path, ["x"], samples, "minmax", 1)
    recipes.static_qdq(pre, tmp_path / "q.onnx", cache, "minmax")
    wm = dbg.create_weight_matching(str(pre), str(tmp_path / "q.onnx"))
    for name in ("w", "g"):
        deq, flt = np.asarray(wm[name]["dequantized"]), np.asarray(wm[name]["float"])
        s = grid_scale(flt).reshape((-1,) + (1,) * (flt.ndim - 1))
        off = ~np.isclose(deq, flt, rtol=0, atol=1e-6 * float(s.max()) + 1e-9)
        # ORT's grid is max|w| / 127.5: every level lands back on itself except a channel's -max
        # (-127.5 rounds to -128 there), as it does with nearest rounding too
        assert np.all(np.isclose(flt[off] / np.broadcast_to(s, flt.shape)[off], -127, atol=1e-3)), flt[off]


def test_rounding_knob_is_refused_where_a_target_has_no_learned_rounding(tmp_path):
    from edgeship.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="--rounding adaround"):
        edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path, targets=["coreml"], quantize="int8",
                        rounding="adaround")


def test_learned_rounding_on_a_torch_source_leaves_it_untouched_and_corrects_through_batch_norm():
    """The torch path every torch-based int8 backend shares: a copy whose conv and linear weights
    sit on their int8 grid, each layer's mean output error against the original weights taken out
    through the batch norm after it (or its bias)."""
    import torch

    from edgeship.quant.rounding import grid_scale, round_torch_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    samples = [(np.abs(rng.normal(0, 1, (1, 3, 6, 6))).astype(np.float32),) for _ in range(24)]
    rounded, layers = round_torch_module(model, samples[0], samples, iters=100)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the source is not touched
    assert [r["module"] for r in layers] == ["0", "3", "5"]
    assert [r["bias_corrected"] for r in layers] == ["batch-norm mean", "bias", "bias"]
    for name in ("0.weight", "3.weight", "5.weight"):
        w = rounded.state_dict()[name].numpy()
        k = w / grid_scale(w).reshape((-1,) + (1,) * (w.ndim - 1))
        np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert not torch.equal(rounded[1].running_mean, model[1].running_mean)
    x = torch.from_numpy(np.concatenate([s[0] for s in samples]))
    with torch.no_grad():
        ref, got = model(x), rounded(x)
    # the rounded float model is as close to the original as int8 weights allow, with no mean shift
    assert torch.nn.functional.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.999
    assert abs(float((got - ref).mean())) < 0.01 * float(ref.abs().mean())


def test_a_torch_based_int8_target_gets_the_shared_learned_rounding(tmp_path):
    from edgeship.quant import rounding

    rounding._ROUNDED.clear()
    res = edgeship.deploy("tinymodels:relu6_classifier", out=tmp_path, targets=["executorch"], quantize="int8",
                          rounding="adaround", rounding_iters=50, package=False, jobs=1)  # in this process: _ROUNDED is seen
    a = res.artifacts[-1]
    q = a.details["quantization"]
    assert q["rounding"]["chosen"] == "adaround" and q["rounding"]["asked"] == "adaround" and q["rounding"]["layers"] == 5
    assert [s["note"].split(" (")[0] for s in q["steps"]][:2] == ["all weighted layers int8", "learned rounding"]
    assert a.verification.passed  # judged against the original source, not the rounded copy
    assert len(rounding._ROUNDED) == 1  # made once, for every target of the run


SENTENCES = [f"the {a} {b} of the {c} is {d} today" for a in ("quick", "slow", "red", "old", "new", "small")
             for b in ("fox", "model", "phone", "device", "network") for c in ("edge", "cloud", "river", "city")
             for d in ("fast", "slow", "here")]


def test_sentences_in_a_text_file_are_calibration_and_evaluation_data(tmp_path):
    # a factory that gives its tokenizer takes real sentences (one per line) as --calib / --eval
    (tmp_path / "cal.txt").write_text("\n".join(SENTENCES[::2]) + "\n\n")
    (tmp_path / "eval.txt").write_text("\n".join(SENTENCES[1::2][:40]))
    res = edgeship.deploy("tinymodels:sentence_embedder", out=tmp_path / "o", targets=["onnx"], quantize="int8",
                          calib=str(tmp_path / "cal.txt"), eval=str(tmp_path / "eval.txt"))
    q = next(a for a in res.artifacts if a.precision == "int8").details["quantization"]
    assert q["eval_data"].endswith("eval.txt") and q["eval_samples"] == 40  # blank lines skipped
    src = load_source("tinymodels:sentence_embedder")
    cal = edgeship.data.load_samples(str(tmp_path / "cal.txt"), src, 500, "calibration")[0]
    assert len(cal) == len(SENTENCES[::2]) and cal[0][0].shape == (1, 16) and cal[0][0].dtype == np.int64
    from tinymodels import toy_tokenize

    assert np.array_equal(cal[3][0][0], toy_tokenize([SENTENCES[6]])[0][0])


def test_dynamic_int8_keeps_the_layers_that_cost_the_output_most_in_float(tmp_path):
    # each weighted layer is quantised alone and measured on the calibration data; the budget loop
    # keeps the worst in float first (it used to walk back from the head, whatever the layers cost)
    from tinymodels import toy_tokenize

    np.savez(tmp_path / "cal.npz", ids=toy_tokenize(SENTENCES[::2])[0])
    edgeship.deploy("tinymodels:sentence_embedder", out=tmp_path / "o", targets=["onnx"])
    with pytest.raises(ValidationError) as e:
        edgeship.quantize(tmp_path / "o" / "onnx-fp32", out=tmp_path / "q1", calib=str(tmp_path / "cal.npz"),
                          min_cosine=0.9999999, max_float_layers=2)
    assert "dB alone" in e.value.message and not (tmp_path / "q1").exists()
    kept = [s["note"] for s in e.value.details["steps"][1:]]

    src = load_source("tinymodels:sentence_embedder")
    cal = edgeship.data.load_samples(str(tmp_path / "cal.npz"), src, 128, "calibration")[0]
    work = tmp_path / "w"
    work.mkdir()
    pre = recipes.preprocess(tmp_path / "o" / "onnx-fp32" / "model.onnx", work / "pre.onnx")
    rows = _dynamic_ranking(pre, work, ["ids"], cal, 16, lambda _m: None)
    assert len(rows) == len(recipes.weighted_nodes(onnx.load(str(pre)))) >= 4
    assert [r["output_sqnr_db"] for r in rows] == sorted(r["output_sqnr_db"] for r in rows)
    assert kept[0].startswith(f"+ {rows[0]['node']} (") and kept[1].startswith(f"+ {rows[1]['node']} (")
    assert rows[0]["node"] != recipes.weighted_nodes(onnx.load(str(pre)))[-1].name  # not the head-first walk

    res = edgeship.quantize(tmp_path / "o" / "onnx-fp32", out=tmp_path / "q", min_cosine=0.9)
    assert res.details["quantization"]["steps"][0]["within_budget"] and "attribution" not in res.details["quantization"]


def test_a_text_file_needs_the_models_tokenizer_and_rows_that_fit(tiny_onnx, tmp_path):
    (tmp_path / "s.txt").write_text("a sentence\n")
    with pytest.raises(edgeship.UsageError, match="tokenizer") as e:
        edgeship.quantize(tiny_onnx, out=tmp_path / "q", eval=str(tmp_path / "s.txt"))
    assert "TorchModel" in e.value.hint and not (tmp_path / "q").exists()
    src = load_source("tinymodels:sentence_embedder")
    for tok, what in ((lambda t: (np.zeros((len(t), 99), np.int64),), "shape"),
                      (lambda t: (np.zeros((1, 16), np.int64),) * 2, "2 arrays"),
                      (lambda t: 1 / 0, "ZeroDivisionError")):
        with pytest.raises(edgeship.InputError, match=what):
            edgeship.data.load_samples(str(tmp_path / "s.txt"), dataclasses.replace(src, tokenize=tok), 8, "evaluation")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(edgeship.InputError, match="UTF-8"):
        edgeship.data.load_samples(str(tmp_path / "b.txt"), src, 8, "evaluation")


def test_large_samples_are_calibrated_one_per_call(tmp_path, monkeypatch):
    """A text detector's pages (1x3x736x992) ran ORT's calibrator out of a 12 GB address space four
    at a time (std::bad_alloc): a calibrator call holds every activation of its samples."""
    from onnxruntime.quantization import calibrate as ort_cal

    page = [(np.zeros((1, 3, 736, 992), np.float32),)] * 3
    photo = [(np.zeros((1, 3, 224, 224), np.float32),)] * 9
    assert recipes.calibration_step(page, "minmax", 8) == 1
    assert recipes.calibration_step(photo, "minmax", 8) == 4 and recipes.calibration_step(photo, "entropy", 8) == 2
    calls = []
    real = ort_cal.MinMaxCalibrater.collect_data
    monkeypatch.setattr(ort_cal.MinMaxCalibrater, "collect_data",
                        lambda self, reader: (calls.append(len(reader)), real(self, reader))[1])
    src = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g", [x], [y], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    recipes.calibrate(src, tmp_path, ["x"], [(np.ones((1, 3, 736, 992), np.float32),)] * 3, "minmax", 8)
    assert calls == [1, 1, 1]
