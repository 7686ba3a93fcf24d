"""ONNX files from the public model zoo are often at opset 9 to 12: they go through every
ONNX-consuming target, and int8 converts them to the opset per-channel QDQ needs (it crashed
with ONNX Runtime's 'Unrecognized attribute: axis for operator DequantizeLinear')."""

from __future__ import annotations

import importlib.util
import warnings

import onnx
import pytest
import torch

import edgeship


@pytest.fixture(scope="module")
def opset9(tmp_path_factory):
    from tinymodels import tiny_classifier

    tm = tiny_classifier()
    p = tmp_path_factory.mktemp("zoo") / "old9.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm.module, tm.example_inputs, str(p), opset_version=9, dynamo=False,
                          input_names=["image"], output_names=["logits"])
    assert onnx.load(str(p)).opset_import[0].version == 9
    return p


def test_an_opset_9_model_quantises_to_int8(opset9, tmp_path):
    res = edgeship.deploy(str(opset9), out=tmp_path, targets=["onnx", "ort"], quantize=["int8"], isolate=False)
    names = [a.root.name for a in res.artifacts]
    assert names == ["onnx-fp32", "onnx-int8", "ort-fp32"] and all(a.verification.passed for a in res.artifacts)
    q = next(a for a in res.artifacts if a.precision == "int8")
    assert q.details["quantization"]["opset_upgrade"] == {"from": 9, "to": 13}
    assert any("opset 9" in n for n in q.notes)
    assert onnx.load(str(q.model_path)).opset_import[0].version >= 13


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the openvino extra")
def test_an_opset_9_model_goes_through_openvino(opset9, tmp_path):
    res = edgeship.deploy(str(opset9), out=tmp_path, targets=["openvino"], quantize=["int8"], isolate=False)
    assert [a.precision for a in res.artifacts] == ["fp32", "int8"]
    assert all(a.verification.passed for a in res.artifacts)
