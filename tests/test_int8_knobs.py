"""A quantisation knob a target's int8 cannot honour is refused by name, before any work, never
silently ignored (tflite noted --calibration and went on; executorch and openvino said nothing);
the ones it honours go through the one quantisation flow (edgeship.quant.flow): every int8 target
searches the accuracy budget, keeping its worst layers in float one at a time."""

from __future__ import annotations

import pytest

import edgeship
from edgeship.config import DeployConfig

OTHERS = ("tflite", "executorch", "openvino")


@pytest.mark.parametrize("target", OTHERS)
@pytest.mark.parametrize("knob, value, flag", [("calibration", "entropy", "--calibration entropy"),
                                               ("method", "weight-only", "--method weight-only")])
def test_an_int8_knob_a_target_cannot_honour_is_refused(relu6, tmp_path, target, knob, value, flag):
    t = edgeship.get_target(target)
    if t.check_environment():
        pytest.skip(f"{target} extra not installed")
    cfg = DeployConfig.build(model="tinymodels:relu6_classifier", **{knob: value})
    with pytest.raises(edgeship.UnsupportedError) as e:
        edgeship.convert(relu6, target, tmp_path / "a", cfg=cfg, precision="int8")
    assert target in e.value.message and flag in e.value.message and "--targets onnx" in (e.value.hint or "")
    assert not (tmp_path / "a").exists()


def test_defaults_and_what_the_onnx_target_honours_pass_the_check():
    for target in (*OTHERS, "onnx"):
        edgeship.get_target(target).check_int8_knobs(DeployConfig.build(model="x:y", method="static"))
        edgeship.get_target(target).check_int8_knobs(DeployConfig.build(model="x:y", max_float_layers=3))
    with pytest.raises(edgeship.UnsupportedError, match="--max-float-layers 3"):  # Core ML cannot measure its int8 here
        edgeship.get_target("coreml").check_int8_knobs(DeployConfig.build(model="x:y", max_float_layers=3))
    edgeship.get_target("onnx").check_int8_knobs(DeployConfig.build(model="x:y", calibration="entropy", max_float_layers=2,
                                                                  method="dynamic"))


@pytest.mark.parametrize("target", OTHERS)
def test_every_int8_target_searches_the_budget_and_reports_per_layer_attribution(relu6, tmp_path, target):
    t = edgeship.get_target(target)
    if t.check_environment():
        pytest.skip(f"{target} extra not installed")
    # a budget no int8 meets: the worst layer is kept in float, measured, then it gives up
    cfg = DeployConfig.build(model="tinymodels:relu6_classifier", max_drop=0.2, min_cosine=0.9999999, max_float_layers=1,
                             eval_samples=64, rounding="nearest")  # the budget loop alone (learned rounding: test_quantize)
    with pytest.raises(edgeship.ValidationError) as e:
        edgeship.convert(relu6, target, tmp_path / "a", cfg=cfg, precision="int8")
    assert not (tmp_path / "a").exists()
    steps = e.value.details["steps"]
    assert len(steps) == 2 and f"{target} int8 misses the budget" in e.value.message
    assert "most harmful layers:" in e.value.message and "in float" in steps[1]["note"]
    # a budget between the all-int8 cosine and the one with the worst layer in float: one step back is enough
    c0, c1 = steps[0]["cosine"], steps[1]["cosine"]
    assert c1 > c0, "keeping the worst layer in float must bring the output closer to fp32"
    cfg = cfg.model_copy(update={"min_cosine": (c0 + c1) / 2})
    art = edgeship.convert(relu6, target, tmp_path / "b", cfg=cfg, precision="int8")
    q = art.details["quantization"]
    assert q["chosen"] == 1 and len(q["steps"]) == 2 and q["steps"][1]["within_budget"]
    kept = q["steps"][1]["excluded"]
    assert len(kept) == 1 and kept[0] not in [r["node"] for r in q["most_sensitive_layers"]]  # no longer int8
    assert art.verification.passed
    # per-layer attribution: the int8 weights' SQNR of every layer still int8, worst first
    layers = q["most_sensitive_layers"]
    assert q["layers_measured"] >= 3 and layers and q["attribution"] == "weight SQNR per layer"
    assert [r["weight_sqnr_db"] for r in layers] == sorted(r["weight_sqnr_db"] for r in layers)
    assert all(r["weight_sqnr_db"] > 10 for r in layers)
    if target != "openvino":  # OpenVINO's op names carry no source module
        assert any(r["module"] for r in layers)
