"""A quantisation knob a target's int8 cannot honour is refused by name, before any work, never
silently ignored (tflite noted --calibration and went on; executorch and openvino said nothing)."""

from __future__ import annotations

import pytest

import edgeship
from edgeship.config import DeployConfig

OTHERS = ("tflite", "executorch", "openvino")


@pytest.mark.parametrize("target", OTHERS)
@pytest.mark.parametrize("knob, value, flag", [("calibration", "entropy", "--calibration entropy"),
                                               ("max_float_layers", 3, "--max-float-layers 3"),
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
    edgeship.get_target("onnx").check_int8_knobs(DeployConfig.build(model="x:y", calibration="entropy", max_float_layers=2,
                                                                  method="dynamic"))


@pytest.mark.parametrize("target", ["tflite", "executorch", "openvino"])
def test_every_int8_target_reports_per_layer_attribution(relu6, tmp_path, target):
    t = edgeship.get_target(target)
    if t.check_environment():
        pytest.skip(f"{target} extra not installed")
    art = edgeship.convert(relu6, target, tmp_path / "a", precision="int8")
    q = art.details["quantization"]
    layers = q["most_sensitive_layers"]
    assert q["layers_measured"] >= 3 and layers and q["attribution"] == "weight SQNR per layer"
    assert [r["weight_sqnr_db"] for r in layers] == sorted(r["weight_sqnr_db"] for r in layers)  # worst first
    assert all(r["weight_sqnr_db"] > 10 for r in layers)
    if target != "openvino":  # OpenVINO's op names carry no source module
        assert any(r["module"] for r in layers)
