"""tflite target: fp32 (NCHW or NHWC), fp16 weights, full int8 with a uint8 raw-pixel input,
the LiteRT runner, typed errors, and deploy reporting an int8 artifact below budget."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgeship
from edgeship.errors import UnsupportedError, ValidationError
from edgeship.testing import FakeTarget

pytest.importorskip("litert_torch")
pytest.importorskip("ai_edge_quantizer")

from edgeship.targets.tflite import TfliteRunner  # noqa: E402


def test_int8_uint8_input_fidelity_and_runner(tmp_path, photo_file, monkeypatch):
    """fp32 and int8 of the tiny classifier (NCHW): the int8 input is uint8 raw RGB bytes, its
    fidelity is verified, it classifies like the fp32, and the runner takes threads and bare files."""
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["tflite"], quantize="int8")
    arts = {a.precision: a for a in res.artifacts}
    a = arts["int8"]
    assert a.inputs[0].dtype == "uint8" and a.preprocess.dtype == "uint8"
    r = edgeship.runner_for(a, threads=1)
    scale, zero_point = r.quantization[a.inputs[0].name]
    assert scale == pytest.approx(1 / 128) and zero_point == 127  # (x - 127) / 128 folded into the input
    v = a.verification
    assert v.passed and v.samples >= 32 and "cosine" in v.criterion
    assert v.top1_agreement >= 0.9 and min(o.cosine for o in v.outputs) >= 0.99
    assert any("raw RGB bytes" in n for n in a.notes)
    assert a.provenance.config["recipe"] == "static_wi8_ai8"
    assert a.provenance.config["bias_corrected_layers"] == 4  # 3 convs (batch norm folded) and the fc
    assert res.manifest["stages"]["convert"]["failed"] == []

    # classify (what `edgeship classify` does) on the reloaded uint8 artifact
    src = edgeship.load("tinymodels:tiny_classifier")
    ref = edgeship.Classifier(arts["fp32"]).classify(photo_file, top_k=1, threshold=0.0)
    got = edgeship.Classifier(edgeship.load_artifact(a.root)).classify(photo_file, top_k=1, threshold=0.0)
    assert got[0].label == ref[0].label
    # the verification mapping gives back exactly the bytes an app would feed
    from edgeship.data import preprocess_image, sample_photos
    from edgeship.verify import artifact_inputs

    img = sample_photos()["coffee"]
    u8 = artifact_inputs(src, a, [preprocess_image(img, src.preprocess)])[0]
    assert u8.dtype == np.uint8
    np.testing.assert_array_equal(u8, preprocess_image(img, a.preprocess))

    # a bare .tflite (no artifact.json) runs: names from the file's signature
    bare = tmp_path / "alone.tflite"
    shutil.copy(arts["fp32"].model_path, bare)
    r = TfliteRunner(bare, threads=1)
    assert r.inputs[0].name == "args_0" and r.inputs[0].shape == (1, 3, 32, 32)
    x = src.verification_inputs(1)[0]
    np.testing.assert_allclose(r.run(list(x))[0], src.run(x)[0], atol=1e-4, rtol=1e-4)

    # the thread count reaches the interpreter's constructor
    import ai_edge_litert.interpreter as li

    seen = []
    real = li.Interpreter

    class Spy(real):
        def __init__(self, *args, **kw):
            seen.append(kw.get("num_threads"))
            super().__init__(*args, **kw)

    monkeypatch.setattr(li, "Interpreter", Spy)
    edgeship.runner_for(arts["fp32"], threads=2)
    TfliteRunner(bare, threads=0)
    assert seen == [2, None]  # 0 = the runtime's default


def test_fp16_halves_the_weights(tmp_path):
    res = edgeship.deploy("tinymodels:wide_mlp", out=tmp_path, targets=["tflite"], quantize="fp16")
    fp32, fp16 = res.artifacts
    assert fp16.precision == "fp16" and fp16.size_bytes < 0.6 * fp32.size_bytes
    assert fp16.verification.passed and fp16.verification.outputs[0].cosine > 0.9999


def test_nhwc_option_and_per_channel_normalisation(tmp_path, photo_file):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "nhwc", targets=["tflite"], tflite_nhwc=True)
    a = res.artifacts[0]
    assert a.inputs[0].shape == (1, 32, 32, 3) and a.inputs[0].layout == "NHWC" and a.preprocess.layout == "NHWC"
    assert a.verification.passed and edgeship.Classifier(a).classify(photo_file, threshold=0.0)
    # ImageNet mean/std differ per channel: no single uint8 input scale can hold them
    src = edgeship.load("tinymodels:tiny_classifier_48")
    cfg = edgeship.DeployConfig.build(model="tinymodels:tiny_classifier_48", tflite_int8_input="uint8")
    with pytest.raises(UnsupportedError, match="per channel"):
        edgeship.convert(src, "tflite", tmp_path / "u8", cfg, precision="int8")
    assert not (tmp_path / "u8").exists()


def test_unsupported_op_is_named_and_leaves_nothing(tmp_path):
    src = edgeship.load("tinymodels:tflite_unsupported")
    with pytest.raises(UnsupportedError) as e:
        edgeship.convert(src, "tflite", tmp_path / "art")
    assert "aten.i0" in e.value.message and "bessel" in e.value.message and e.value.exit_code == 4
    assert e.value.details["ops"] == ["aten.i0.default"]
    assert list(tmp_path.iterdir()) == []


class _Passes(FakeTarget):
    name = "q_ok"
    precisions = ("fp32", "int8")
    reduced_noise = 1e-3


class _Collapses(_Passes):  # like a PT2E ReLU6 collapse: the int8 outputs are far off
    name = "q_collapse"
    reduced_noise = 50.0


def test_an_int8_below_budget_is_reported_and_the_others_are_written(tmp_path):
    edgeship.register_target("q_ok", _Passes)
    edgeship.register_target("q_collapse", _Collapses)
    with pytest.raises(ValidationError) as e:
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["q_collapse", "q_ok"], quantize="int8",
                        eval_samples=8)
    assert "q_collapse-int8" in e.value.message and "cosine" in e.value.message and e.value.exit_code == 5
    assert "q_ok" not in e.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "q_collapse-fp32", "q_ok-fp32", "q_ok-int8",
                                                          "report.html"]
    page = (tmp_path / "report.html").read_text()  # the report of what was written says what was not
    assert "Not written" in page and "q_collapse int8:" in page
    m = json.loads((tmp_path / "manifest.json").read_text())
    failed = m["stages"]["convert"]["failed"]
    assert [(f["target"], f["precision"], f["error"]) for f in failed] == [("q_collapse", "int8", "ValidationError")]
    assert m["stages"]["convert"]["verified"] is False
    assert [a["id"] for a in m["artifacts"]] == ["q_collapse-fp32", "q_ok-fp32", "q_ok-int8"]


@pytest.mark.slow
def test_lite0_int8_uint8_input(tmp_path):
    # full int8 Lite0 agrees with fp32 on 93% of the 256 evaluation inputs as ai-edge-quantizer
    # builds it; with the biases corrected for their int8 weights' mean error, 96%: inside the
    # default budget, so the ladder stops there (learned rounding, minutes, is not built)
    res = edgeship.deploy("efficientnet-lite0", out=tmp_path, targets=["tflite"], quantize="int8", package=False)
    a = res.artifacts[1]
    r = edgeship.runner_for(a, threads=1)
    assert r.quantization[a.inputs[0].name] == (pytest.approx(1 / 128), 127)
    v = a.verification
    assert v.passed and v.top1_agreement >= 0.95 and min(o.cosine for o in v.outputs) >= 0.995
    assert a.provenance.config["bias_corrected_layers"] == 50
    assert a.size_bytes < 0.30 * res.artifacts[0].size_bytes
    q = a.details["quantization"]
    assert q["rung"] == "nearest rounding" and len(q["steps"]) == 1 and q["steps"][0]["within_budget"]
    assert q["rounding"]["tried"] is False and q["equalization"]["tried"] is False
    assert q["steps"][0]["top1_agreement"] >= 0.95 and q["eval_sources"] == 5
