"""Per-layer quantisation figures that never overstate (issue "figures that never overstate",
item 8): every int8 artifact's per-layer error is measured against the float weights it was
quantised from (never against weights already rounded to their int8 grid), named by source module,
and says which metric it is; the report never draws two metrics on one axis nor ranks them as one."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeship
from edgeship.fidelity import sqnr_db
from edgeship.quant.rounding import grid_scale, round_torch_module

# ---- the rounding records what its rounded weights keep of the original ----------------------------


def _snap(w: np.ndarray) -> np.ndarray:
    s = grid_scale(w).reshape(-1, *[1] * (w.ndim - 1))
    return np.clip(np.round(w / s), -127, 127) * s


def test_learned_rounding_records_each_layers_weight_sqnr_against_the_original_weights():
    """round_torch_module gives per layer the SQNR of its rounded weights against the original ones
    (a batch norm after the layer folded in, as every backend quantises it), and nearest rounding's:
    the figure an int8 shipping those weights keeps, whatever backend writes it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 5)).eval()
    with torch.no_grad():
        model[1].weight.uniform_(-2.0, 2.0)  # channels folded with very different gains
        model[1].running_var.uniform_(0.1, 3.0)
    rng = np.random.default_rng(0)
    samples = [(np.abs(rng.normal(0, 1, (1, 3, 6, 6))).astype(np.float32),) for _ in range(16)]
    rounded, layers = round_torch_module(model, samples[0], samples, iters=30)
    by = {r["module"]: r for r in layers}
    assert set(by) == {"0", "3", "5"}
    bn = model[1]
    gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy().reshape(-1, 1, 1, 1)
    for module, fold in (("0", gain), ("3", 1.0), ("5", 1.0)):
        w = model.get_submodule(module).weight.detach().double().numpy()
        r = rounded.get_submodule(module).weight.detach().double().numpy()
        assert by[module]["weight_sqnr_db"] == pytest.approx(sqnr_db(fold * w, fold * r), abs=1e-2)
        assert by[module]["weight_sqnr_db_nearest"] == pytest.approx(sqnr_db(fold * w, fold * _snap(w)), abs=1e-2)
        assert 30 < by[module]["weight_sqnr_db"] < 60  # what int8 keeps: nowhere near "lossless"
    assert by["0"]["batch_norm_folded"] is True and "batch_norm_folded" not in by["3"]


# ---- the shipped int8's rows: against the float weights, by source module -----------------------------


def test_a_rounded_layers_figure_is_the_roundings_or_a_bound_never_the_backends_residual():
    """The backend measures its int8 against the rounded weights it was given; composed with the
    rounding's own error the figure is exact when the backend lands on the learned levels, else a
    lower bound of the true SQNR against the original weights, never above the rounding's."""
    from edgeship.targets.layers import _composed_db

    rng = np.random.default_rng(1)
    for _ in range(20):
        w = rng.normal(0, 1, (16, 27)) * rng.uniform(0.01, 2.0, (16, 1))
        r = _snap(w + rng.normal(0, 0.002, w.shape))  # rounded, not quite the nearest way
        true_landed = sqnr_db(w, r)
        db, exact = _composed_db(sqnr_db(w, r), sqnr_db(r, r.astype(np.float32)))  # lands: float32 noise only
        assert exact and db == pytest.approx(true_landed)
        db, exact = _composed_db(sqnr_db(w, r), math.inf)  # a backend that reports no error at all
        assert exact and db == pytest.approx(true_landed)
        # a backend that re-rounds onto another grid (a clamped scale, per-tensor weights)
        step = np.abs(r).max() / 127 * rng.uniform(1.0, 3.0)
        q = np.round(r / step) * step
        db, exact = _composed_db(sqnr_db(w, r), sqnr_db(r, q))
        assert not exact and db <= sqnr_db(w, q) + 1e-9 and db <= sqnr_db(w, r)
    assert _composed_db(None, 150.0) == (None, False) and _composed_db(45.0, None) == (None, False)


def _source(name: str = "tinymodels:tiny_classifier"):
    return edgeship.load(name)


def test_rows_of_an_int8_from_rounded_weights_are_against_the_original_and_named_by_module():
    """Rows as a backend gives them after quantising the rounded copy (~150 dB, inf, a LiteRT
    module tail, an OpenVINO op traced only by its place in the program): the shipped figures are
    the rounding's against the original weights, by whole module name; a row that cannot be traced
    to a module is left out and named, never shown with its figure against the rounded weights."""
    from edgeship.targets import shipped_layer_errors

    src = _source()
    rounded = [{"node": "conv2d", "module": "features.0", "kept": "learned", "weight_sqnr_db": 45.5},
               {"node": "conv2d_1", "module": "features.3", "kept": "learned", "weight_sqnr_db": 46.8},
               {"node": "conv2d_2", "module": "features.5", "kept": "nearest", "weight_sqnr_db": 47.2},
               {"node": "linear", "module": "fc", "kept": "learned", "weight_sqnr_db": 45.0}]
    rows = [{"node": "a", "module": "features.0", "op": "CONV_2D", "weight_sqnr_db": 151.9},
            {"node": "b", "module": "3", "op": "DEPTHWISE_CONV_2D", "weight_sqnr_db": math.inf},  # a tail: features.3
            {"node": "convolution_2/aten.convolution.default/Convolution", "module": None, "op": "Convolution",
             "weight_sqnr_db": 38.0, "shape": [16, 8, 1, 1], "source_ref": {"kind": "conv", "index": 2}},
            {"node": "Multiply_671618", "module": None, "op": "Convolution", "weight_sqnr_db": 152.0}]
    q = shipped_layer_errors(src, rows, rounded, equalized=False)
    got = {r["module"]: r for r in q["layers"]}
    assert set(got) == {"features.0", "features.3", "features.5"}
    assert got["features.0"]["weight_sqnr_db"] == 45.5 and got["features.3"]["weight_sqnr_db"] == 46.8
    assert "bound" not in got["features.0"]
    # the backend's own 38 dB against the rounded weights: the figure is at most the rounding's, a bound
    assert got["features.5"]["weight_sqnr_db"] < 38.0 and got["features.5"]["bound"] == "at least"
    assert all(r["weight_sqnr_db"] < 60 for r in q["layers"])
    assert [r["weight_sqnr_db"] for r in q["layers"]] == sorted(r["weight_sqnr_db"] for r in q["layers"])
    m = q["layer_metric"]
    assert m["metric"] == "weight_sqnr_db" and m["reference"].startswith("the original float weights")
    assert m["unattributed"] == ["Multiply_671618"] and q["layers_measured"] == 3
    # from an equalised source the reference says so
    eq = shipped_layer_errors(src, rows[:1], rounded, equalized=True)["layer_metric"]
    assert "cross-layer equalisation" in eq["reference"]


class _SamePadConv(torch.nn.Conv2d):
    """EfficientNet-Lite's Conv2dStaticSamePadding: a convolution holding its padding module."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.static_padding = torch.nn.ZeroPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.static_padding(x))


def test_a_layer_named_by_a_submodule_is_the_layer_not_an_unrounded_one():
    """LiteRT names a depthwise convolution it fused with its padding after the padding module
    ('_blocks.3._depthwise_conv.static_padding'): a module that exists but holds no weights. Taken
    as a layer the rounding never saw, its 145 dB against the rounded weights stood on Lite0; it is
    the convolution's, whose rounding's figure it gets."""
    from types import SimpleNamespace

    from edgeship.targets import shipped_layer_errors

    block = torch.nn.Sequential(_SamePadConv(8, 8, 3, groups=8), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))
    src = SimpleNamespace(module=torch.nn.Sequential(block), kind="torch", path=None,
                          example_inputs=(np.zeros((1, 8, 6, 6), np.float32),))
    rounded = [{"node": "conv2d", "module": "0.0", "kept": "learned", "weight_sqnr_db": 41.0},
               {"node": "conv2d_1", "module": "0.2", "kept": "learned", "weight_sqnr_db": 43.0}]
    rows = [{"node": "dw", "module": "0.0.static_padding", "op": "DEPTHWISE_CONV_2D", "weight_sqnr_db": 145.1},
            {"node": "pw", "module": "2", "op": "CONV_2D", "weight_sqnr_db": 150.2},  # a tail: 0.2
            {"node": "odd", "module": "0.1", "op": "CONV_2D", "weight_sqnr_db": 149.0}]  # the ReLU: no layer
    q = shipped_layer_errors(src, rows, rounded, equalized=False)
    assert [(r["module"], r["weight_sqnr_db"]) for r in q["layers"]] == [("0.0", 41.0), ("0.2", 43.0)]
    assert q["layer_metric"]["unattributed"] == ["odd"]


# ---- end to end: torch-side int8 targets built from a learned-rounding source ------------------------

TORCH_SIDE = ("tflite", "executorch", "openvino")


def test_an_int8_built_from_learned_rounding_never_reports_more_than_its_rounding_kept(tmp_path):
    """The report's ~145 dB for tflite-int8 and 50-145 dB for executorch-int8 beside onnx-int8's
    ~45 dB: the torch-side int8 measured its weights against the already-rounded ones. Now each
    layer's figure is against the original float weights: never above what its learned rounding
    achieved there, named by its source module, with the metric and its reference in the record."""
    from edgeship.quant import rounding

    targets = [t for t in TORCH_SIDE if not edgeship.get_target(t).check_environment()]
    if not targets:
        pytest.skip("no torch-side int8 target installed")
    rounding._ROUNDED.clear()
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=targets, quantize="int8",
                          rounding="adaround", rounding_iters=10, equalization="off", calib_samples=16,
                          eval_samples=16, package=False, jobs=1, benchmark=False)
    int8 = [a for a in res.artifacts if a.precision == "int8"]
    assert {a.target for a in int8} == set(targets)
    for a in int8:
        q = a.details["quantization"]
        figures = [r.get("weight_sqnr_db") for r in q["layers"]]  # were ~150 dB (tflite), or inf and left out (executorch)
        assert figures and all(f is not None and f < 70 for f in figures), (a.target, q["layers"])
        assert q["rounding"]["chosen"] == "adaround"
        achieved = {r["module"]: r["weight_sqnr_db"] for r in q["rounding"]["per_layer"]}
        assert all(20 < v < 70 for v in achieved.values()), achieved
        assert q["layers"] and q["layer_metric"]["metric"] == "weight_sqnr_db"
        assert q["layer_metric"]["reference"].startswith("the original float weights")
        for r in q["layers"]:
            assert r["module"] in achieved, (a.target, r)  # named by the source module
            assert r["weight_sqnr_db"] <= achieved[r["module"]] + 1e-6, (a.target, r, achieved)
        assert q["most_sensitive_layers"] == q["layers"][:5]
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r">1[0-9]{2}\.[0-9]<", page), "a per-layer figure above 100 dB"


# ---- OpenVINO: its op names traced back to source modules -----------------------------------------


def test_openvino_rows_carry_the_source_module_the_ir_can_tell(tmp_path):
    """OpenVINO names a convolution whose batch norm it folded 'Multiply_671618' (edgeship renames it
    'Convolution#0'), and the torch frontend's ops 'convolution_2/aten.convolution.default/...': no
    layer names. The IR still tells where each op came from (the k-th convolution of the program,
    the batch norm folded in after it, an ONNX initializer's name): every int8 row is named by the
    source module it came from."""
    if edgeship.get_target("openvino").check_environment():
        pytest.skip("openvino extra not installed")
    from edgeship.quant.openvino import weight_report

    src = _source()  # conv + batch norm, depthwise conv, 1x1 conv, linear
    cfg = edgeship.DeployConfig.build(model="tinymodels:tiny_classifier", rounding="nearest", equalization="off",
                                      calib_samples=16, eval_samples=16)
    fp32 = edgeship.convert(src, "openvino", tmp_path / "fp32", cfg=cfg)
    int8 = edgeship.convert(src, "openvino", tmp_path / "int8", cfg=cfg, precision="int8", parent=fp32)
    q = int8.details["quantization"]
    modules = {n for n, m in src.module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert q["layers"] and {r["module"] for r in q["layers"]} <= modules
    assert all(r["module"] for r in q["layers"]), q["layers"]
    assert q["layer_metric"]["named_by"] == "source module"
    # the fp32 IR against itself, every weighted op traced, the batch-norm-folded first conv too
    rows = weight_report(fp32.model_path, int8.model_path)
    refs = {r["node"]: r.get("source_ref") for r in rows}
    assert all(refs.values())
    from openvino import Core

    from edgeship.quant.openvino import _WEIGHTED, ir_source
    from edgeship.targets import layer_modules

    ops = [op for op in Core().read_model(str(fp32.model_path)).get_ordered_ops() if op.get_type_name() in _WEIGHTED]
    traced = [ir_source(op)[1] for op in ops]
    assert {"kind": "bn_input", "index": 0} in traced  # the conv whose name OpenVINO replaced
    named = layer_modules(src, [{"node": op.get_friendly_name(), "module": None, "source_ref": ref,
                                 "shape": [int(d) for d in op.input_value(1).get_partial_shape().to_shape()]}
                                for op, ref in zip(ops, traced)])
    assert sorted(named.values()) == sorted(modules)


def test_openvino_rows_from_an_onnx_file_are_named_by_its_initializers(tiny_onnx, tmp_path):
    """From an ONNX file the IR keeps the initializers' names ('features.5.weight'): the module."""
    if edgeship.get_target("openvino").check_environment():
        pytest.skip("openvino extra not installed")
    src = edgeship.load(str(tiny_onnx / "model.onnx"))
    cfg = edgeship.DeployConfig.build(model=str(tiny_onnx / "model.onnx"), calib_samples=16, eval_samples=16)
    fp32 = edgeship.convert(src, "openvino", tmp_path / "fp32", cfg=cfg)
    int8 = edgeship.convert(src, "openvino", tmp_path / "int8", cfg=cfg, precision="int8", parent=fp32)
    q = int8.details["quantization"]
    assert q["layers"]
    assert all(re.fullmatch(r"(features\.\d+|fc)", r.get("module") or "") for r in q["layers"]), q["layers"]


# ---- the report: one metric per axis, one ranking per metric -----------------------------------------


def _int8(aid: str, target: str, layers: list[dict], **quant) -> dict:
    return {"id": aid, "path": aid, "name": aid, "target": target, "format": target, "precision": "int8",
            "size_bytes": 1000, "verification": {"reference": "torch source", "samples": 8, "passed": True,
                                                 "outputs": [{"name": "logits", "cosine": 0.999}]},
            "details": {"quantization": {"layers": layers, **quant}}}


def _manifest(artifacts: list[dict]) -> dict:
    modules = ["features.0", "features.3", "features.5", "fc"]
    return {
        "schema": "edgeship.manifest/1", "edgeship_version": "0.1.0", "created": "2026-11-20T10:00:00+00:00",
        "source": {"name": "tiny", "kind": "torch", "origin": "tinymodels:tiny_classifier", "digest": "ab" * 32},
        "config": {"targets": ["onnx", "tflite", "executorch"], "quantize": ["int8"]},
        "artifacts": artifacts,
        "stages": {"convert": {"steps": [a["id"] for a in artifacts], "skipped": [], "verified": True, "failed": []},
                   "analysis": {"of": "onnx-fp32", "totals": {"macs": 1e6},
                                "layers": [{"index": i, "name": f"n{i}", "module": m, "kind": "conv", "macs": 1e5}
                                           for i, m in enumerate(modules)]}},
        "timings_s": {"total": 3.2},
        "environment": {"python": "3.11.7", "platform": "Linux", "machine": "x86_64", "cpu_count": 2, "tool_versions": {}},
    }


ONNX_ROWS = [{"node": "node_conv2d", "module": "features.0", "op": "Conv", "weight_sqnr_db": 45.8,
              "output_sqnr_db": 39.8, "injected_db": 8.3},
             {"node": "node_conv2d_1", "module": "features.3", "op": "Conv", "weight_sqnr_db": 47.7,
              "output_sqnr_db": 22.1, "injected_db": 7.0},
             {"node": "node_linear", "module": "fc", "op": "Gemm", "weight_sqnr_db": 44.8, "output_sqnr_db": 36.2,
              "injected_db": 4.6}]
NEW_TFLITE = [{"node": "t0", "module": "fc", "op": "FULLY_CONNECTED", "weight_sqnr_db": 44.9},
              {"node": "t1", "module": "features.0", "op": "CONV_2D", "weight_sqnr_db": 45.5},
              {"node": "t2", "module": "features.5", "op": "CONV_2D", "weight_sqnr_db": 47.1}]
#: what a torch-side int8 from a learned-rounding source recorded before: its weights against themselves
OLD_EXECUTORCH = [{"node": "conv2d", "module": "features.0", "op": "conv", "weight_sqnr_db": 52.3},
                  {"node": "linear", "module": "fc", "op": "linear", "weight_sqnr_db": 144.9},
                  {"node": "conv2d_1", "module": "features.3", "op": "conv", "weight_sqnr_db": 146.1}]


@pytest.fixture
def three_int8(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    metric = {"metric": "weight_sqnr_db", "reference": "the original float weights, each batch norm folded in"}
    m = _manifest([_int8("onnx-int8", "onnx", ONNX_ROWS, techniques={"measured": ["plain"]}),
                   _int8("tflite-int8", "tflite", NEW_TFLITE, layer_metric=metric, rounding={"chosen": "adaround"}),
                   _int8("executorch-int8", "executorch", OLD_EXECUTORCH, attribution="weight SQNR per layer",
                         rounding={"chosen": "adaround"})])
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def test_the_sensitive_layers_are_ranked_per_metric_never_as_one_list(three_int8):
    from edgeship.reporting import build, render

    doc = build(three_int8)["report"]
    tables = {t["metric"]: t for t in doc["sensitive_layers"]}
    assert set(tables) == {"weight_db", "output_db"}
    weight, output = tables["weight_db"], tables["output_db"]
    # weight SQNR: every artifact whose figures are against the float weights, onnx-int8's included
    assert {x["id"] for x in weight["rows"]} == {"onnx-int8", "tflite-int8"}
    assert all(x["db"] < 60 for x in weight["rows"])
    assert [x["db"] for x in weight["rows"] if x["id"] == "onnx-int8"] == [44.8, 45.8, 47.7]
    # output SQNR: only what measured it, never beside a weight figure
    assert {x["id"] for x in output["rows"]} == {"onnx-int8"} and [x["db"] for x in output["rows"]] == [22.1, 36.2, 39.8]
    # the old torch-side record whose weights were measured against themselves is apart, and says why
    assert [a["id"] for a in weight["apart"]] == ["executorch-int8"] and "rounded" in weight["apart"][0]["reference"]
    html = render(build(three_int8))
    section = html[html.index("Most sensitive layers"):html.index('id="analysis"')]
    assert "<h4>weight SQNR per layer" in section and "<h4>output SQNR per layer" in section
    weight_html = section[section.index("<h4>weight SQNR"):section.index("<h4>output SQNR")]
    assert "144.9" not in section and "146.1" not in section and "22.1" not in weight_html


def test_the_layers_plot_draws_one_metric_from_comparable_figures_only(three_int8):
    from edgeship.reporting import build, charts

    doc = build(three_int8)["report"]
    int8 = [r for r in doc["artifacts"] if r["layers"]]
    svg, notes = charts.layers_chart(doc["analysis"]["layers"], int8, [r["target"] for r in doc["artifacts"]])
    assert svg is not None
    assert "onnx-int8" in svg and "tflite-int8" in svg and "executorch-int8" not in svg
    assert any(n.startswith("executorch-int8: not drawn") for n in notes)
    assert "output SQNR" not in svg and "weight SQNR" in svg
