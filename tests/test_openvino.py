"""OpenVINO target: fp32 IR with fp32 weights and the f32 hint, fp16 weights, NNCF int8, ONNX sources."""

from __future__ import annotations

import numpy as np
import pytest

import edgeship

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def cfg(relu6_cfg):
    return relu6_cfg


@pytest.fixture(scope="module")
def fp32_art(relu6, cfg, tmp_path_factory):
    return edgeship.convert(relu6, "openvino", tmp_path_factory.mktemp("ov") / "fp32", cfg)


def _constant_types(path) -> set[str]:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return {op.get_element_type().get_type_name() for op in model.get_ops()
            if op.get_type_name() == "Constant" and op.get_output_size() and len(op.get_output_shape(0)) >= 2}


def test_fp32_ir_keeps_fp32_weights_a_dynamic_batch_and_source_names(fp32_art):
    assert sorted(f.path for f in fp32_art.files) == ["model.bin", "model.xml"]
    assert _constant_types(fp32_art.model_path) == {"f32"}  # ov.save_model would compress to fp16 by default
    assert fp32_art.inputs[0].name == "image" and fp32_art.inputs[0].shape == ("batch", 3, 32, 32)
    assert fp32_art.outputs[0].name == "logits"
    assert fp32_art.verification.passed and fp32_art.verification.batch_sizes[0] == 1 and len(fp32_art.verification.batch_sizes) == 2


def test_runner_sets_threads_and_the_f32_precision_hint(fp32_art):
    runner = edgeship.runner_for(edgeship.load_artifact(fp32_art.root), threads=1)
    assert str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    assert int(runner.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    out = runner.run([np.zeros((3, 3, 32, 32), np.float32)])
    assert out[0].shape == (3, 10)


def test_fp16_weights_and_nncf_int8_are_derived_from_the_verified_fp32(relu6, cfg, fp32_art, tmp_path):
    fp16 = edgeship.convert(relu6, "openvino", tmp_path / "fp16", cfg, precision="fp16", parent=fp32_art)
    assert _constant_types(fp16.model_path) == {"f16"}
    assert fp16.provenance.config["parent"] == fp32_art.digest and fp16.verification.passed

    int8 = edgeship.convert(relu6, "openvino", tmp_path / "int8", cfg, precision="int8", parent=fp32_art)
    import openvino as ov

    ops = {op.get_type_name() for op in ov.Core().read_model(str(int8.model_path)).get_ops()}
    assert "FakeQuantize" in ops
    v = int8.verification
    assert v.passed and v.outputs[0].cosine > 0.999 and v.samples == cfg.eval_samples and "cosine" in v.criterion
    assert int8.provenance.config["calibration_samples"] == 128


def test_an_onnx_source_converts_directly(tiny_onnx, tmp_path):
    source = edgeship.load(str(tiny_onnx / "model.onnx"))
    art = edgeship.convert(source, "openvino", tmp_path / "art")
    assert art.provenance.config["from"] == "onnx" and art.verification.passed


def test_an_unexportable_model_is_unsupported_and_leaves_nothing(tmp_path):
    source = edgeship.load("tinymodels:not_exportable")
    with pytest.raises(edgeship.UnsupportedError, match="could not export"):
        edgeship.convert(source, "openvino", tmp_path / "art")
    assert list(tmp_path.iterdir()) == []
