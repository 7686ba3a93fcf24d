"""Core ML target: ImageType + ClassifierConfig, a folder artifact, structural verification, macOS-only runner."""

from __future__ import annotations

import dataclasses
import platform

import numpy as np
import pytest

import edgeship
from edgeship.errors import UnsupportedError, ValidationError

pytest.importorskip("coremltools")

from edgeship.targets.coreml import CoreMLTarget, _load_program, op_histogram  # noqa: E402


class SmallWeightsCoreML(CoreMLTarget):
    """Compress every weight, however small (the tiny models have no 2048-element tensors)."""

    name = "coreml-all-weights"
    weight_threshold = 0


@pytest.fixture(scope="module")
def tiny():
    return edgeship.load("tinymodels:tiny_classifier")


@pytest.fixture(scope="module")
def fp32_art(tiny, tmp_path_factory):
    return edgeship.convert(tiny, "coreml", tmp_path_factory.mktemp("cm") / "fp32")


def _op(fn, op_type, var):
    return next(op for op in fn.operations if op.op_type == op_type and op.inputs["y"].name.startswith(var))


def test_image_input_scale_bias_from_preprocess_and_labels(fp32_art, tiny):
    import tinymodels

    spec, fn = _load_program(fp32_art.model_path)
    it = spec.description.input[0]
    assert it.name == "image" and it.type.WhichOneof("Type") == "imageType"
    assert (it.type.imageType.width, it.type.imageType.height) == (32, 32)
    # (pixel - 127) / 128 as the ImageType's scale and bias
    assert float(_op(fn, "mul", "image__scaled").inputs["y"].val) == pytest.approx(1 / 128)
    np.testing.assert_allclose(_op(fn, "add", "image__biased").inputs["y"].val.reshape(-1), [-127 / 128] * 3)
    assert spec.description.predictedFeatureName == "classLabel"
    classify = next(op for op in fn.operations if op.op_type == "classify")
    assert list(classify.classes.val) == list(tinymodels.LABELS)
    assert fp32_art.preprocess.dtype == "uint8" and fp32_art.inputs[0].shape == (1, 32, 32, 3)


def test_the_package_folder_is_hashed_file_by_file(fp32_art, tmp_path):
    import shutil

    assert fp32_art.model_file == "model.mlpackage" and fp32_art.model_path.is_dir()
    on_disk = sorted(str(p.relative_to(fp32_art.root)) for p in fp32_art.model_path.rglob("*") if p.is_file())
    assert [f.path for f in fp32_art.files] == on_disk and len(on_disk) >= 3
    copy = shutil.copytree(fp32_art.root, tmp_path / "copy")
    reloaded = edgeship.load_artifact(copy)
    reloaded.verify_files()
    (copy / "model.mlpackage" / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"x")
    with pytest.raises(edgeship.FormatError, match="changed"):
        reloaded.verify_files()


def test_verification_is_structural_and_says_so(fp32_art):
    v = fp32_art.verification
    assert v.passed and v.samples == 0 and v.reference.startswith("structural")
    assert "macOS" in v.criterion and "labels" in v.criterion and "image size" in v.criterion
    assert v.outputs[0].name.startswith("weights") and v.outputs[0].max_abs == 0.0  # exact copies in fp32
    assert "conv" in fp32_art.provenance.config["ops"]


def test_a_wrong_structure_fails_verification(fp32_art, tiny):
    other = dataclasses.replace(tiny, labels=tuple(f"other_{i}" for i in range(10)))
    with pytest.raises(ValidationError, match="labels"):
        edgeship.get_target("coreml").verify(other, edgeship.load_artifact(fp32_art.root), edgeship.DeployConfig())


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts on macOS")
def test_runner_says_prediction_needs_macos(fp32_art):
    with pytest.raises(UnsupportedError, match="needs macOS"):
        edgeship.runner_for(edgeship.load_artifact(fp32_art.root))


def test_per_channel_std_and_nhwc_go_in_front_of_the_model(tmp_path):
    art = edgeship.convert(edgeship.load("tinymodels:tiny_classifier_48"), "coreml", tmp_path / "art")
    spec, fn = _load_program(art.model_path)
    assert spec.description.input[0].type.imageType.width == 48
    assert op_histogram(fn).get("sub", 0) >= 1  # (x - mean) / std per channel, in the graph
    assert any("per-channel std" in n and "NHWC" in n for n in art.notes)


@pytest.mark.parametrize("precision,op", [("int8", "constexpr_affine_dequantize"), ("palettize4", "constexpr_lut_to_dense")])
def test_compressed_weights_are_decompressed_and_compared(tiny, fp32_art, tmp_path, precision, op):
    edgeship.register_target("coreml-all-weights", SmallWeightsCoreML)
    art = edgeship.convert(tiny, "coreml-all-weights", tmp_path / precision, precision=precision, parent=fp32_art)
    _, fn = _load_program(art.model_path)
    # every conv and linear weight; 4-bit palettes go per group of 8 output channels, so the fc
    # (10 outputs) stays fp16
    assert op_histogram(fn)[op] >= (3 if precision == "palettize4" else 4)
    v = art.verification
    assert v.passed and "fp32 conversion" in v.criterion and 0.99 <= v.outputs[0].cosine < 1.0
    assert art.provenance.config["compute_precision"] == "FLOAT16"
    # per-layer attribution, as every compressed target reports it: the compressed weights' SQNR, worst first
    q = art.details["quantization"]
    layers = q["most_sensitive_layers"]
    assert q["method"] == "weight-only" and q["layers_measured"] == op_histogram(fn)[op] and layers
    assert [r["weight_sqnr_db"] for r in layers] == sorted(r["weight_sqnr_db"] for r in layers)
    assert all(r["node"] and r["op"] and 5 < r["weight_sqnr_db"] < 80 for r in layers)  # node: the weight's name


def test_plan_offers_fp16_and_palettes_for_coreml_only(tmp_path):
    cfg = edgeship.DeployConfig.build(model="tinymodels:tiny_classifier", targets=["coreml", "executorch"],
                                      quantize="fp16,palettize6", out=tmp_path)
    p = edgeship.plan(cfg)
    assert [(s["target"], s["precision"]) for s in p.steps] == [
        ("coreml", "fp32"), ("coreml", "fp16"), ("coreml", "palettize6"), ("executorch", "fp32")]
    assert {(s["target"], s["precision"]) for s in p.skipped} == {("executorch", "fp16"), ("executorch", "palettize6")}


def test_an_op_without_core_ml_translation_is_named_before_conversion(tmp_path):
    source = edgeship.load("tinymodels:unsupported_op")
    with pytest.raises(UnsupportedError, match="bucketize") as e:
        edgeship.convert(source, "coreml", tmp_path / "art")
    assert "quantizer" in e.value.message and e.value.exit_code == 4
    assert list(tmp_path.iterdir()) == []
