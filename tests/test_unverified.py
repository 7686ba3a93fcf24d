"""No verdict without real data: a reduced precision judged only on random inputs is unverified
(said, never recommended, left out of a release unless --allow-unverified); fp32 is verified on
the --eval data when given, against the source on the same batch; class scores are recognised
without label names; an output's declared shape that the model does not return is recorded as
returned; a structural check (Core ML off macOS) is never "verified"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import edgeship
from edgeship import artifact as _artifact
from edgeship import verify as _verify
from edgeship.artifact import Verification
from edgeship.fidelity import is_classifier
from edgeship.manifest import Manifest
from edgeship.reporting.model import page_model

PLAIN = {"input_shape": ["1,3,16,16"], "targets": ["onnx"]}


class PerBatchQuantised(nn.Module):
    """Activations fake-quantised with one scale for the whole batch (as some exported graphs do):
    a sample's output depends on what else is in its batch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().max() / 127.0
        return self.fc(torch.round(x / scale) * scale)


def per_batch_quantised():
    return PerBatchQuantised().eval(), (torch.randn(1, 8),)


@pytest.fixture(scope="module")
def random_only(tmp_path_factory) -> Path:
    """A model with no preprocessing and no sample inputs, int8 and fp16 on random inputs, packaged."""
    out = tmp_path_factory.mktemp("unverified") / "out"
    edgeship.deploy("tinymodels:plain_cnn", out=out, quantize=["int8", "fp16"], package=True, **PLAIN)
    return out


def test_a_reduced_precision_on_random_inputs_is_unverified(random_only):
    m = json.loads((random_only / "manifest.json").read_text())
    recs = {r["path"]: r for r in m["artifacts"]}
    for name in ("onnx-int8", "onnx-fp16"):
        v = recs[name]["verification"]
        assert v["status"] == "unverified" and v["real_inputs"] is False
        assert "random inputs only" in v["criterion"]
        # the message names the exact flag and the file format to give, and the opt-in
        assert "--eval data.npz" in v["note"] and "first axis = samples" in v["note"] and "--allow-unverified" in v["note"]
        a = edgeship.load_artifact(random_only / name)
        assert a.verification.status == "unverified" and not a.verification.verified
    fp32 = edgeship.load_artifact(random_only / "onnx-fp32").verification
    assert fp32.verified and fp32.real_inputs is False and fp32.inputs.startswith("seeded random")  # exact, and says so


def test_unverified_artifacts_stay_out_of_the_release_unless_allowed(random_only, tmp_path):
    m = json.loads((random_only / "manifest.json").read_text())
    bundle = json.loads((random_only / m["stages"]["bundle"]["folder"] / "bundle.json").read_text())
    assert [e["id"] for e in bundle["artifacts"]] == ["onnx-fp32"]
    left = {x["id"]: x for x in bundle["left_out"]}
    assert set(left) == {"onnx-int8", "onnx-fp16"} and "--allow-unverified" in left["onnx-int8"]["fix"]
    assert {x["id"] for x in m["stages"]["bundle"]["left_out"]} == {"onnx-int8", "onnx-fp16"}
    # asked for: shipped, marked, and tried after every verified artifact
    from edgeship.bundle import package

    b = package(random_only, version="9.0.0", dest=tmp_path / "rel", allow_unverified=True)
    ids = [e["id"] for e in b.doc["artifacts"]]
    assert sorted(ids) == ["onnx-fp16", "onnx-fp32", "onnx-int8"] and b.doc["fallback_order"][0] == "onnx-fp32"
    assert {e["id"]: e["fidelity"]["status"] for e in b.doc["artifacts"]}["onnx-int8"] == "unverified"
    assert "UNVERIFIED" in (b.folder / "MODEL_CARD.md").read_text()


def test_allow_unverified_from_the_deploy_config_reaches_the_release(tmp_path):
    res = edgeship.deploy("tinymodels:plain_cnn", out=tmp_path / "o", quantize=["int8"], package=True,
                          allow_unverified=True, **PLAIN)
    m = res.manifest
    folder = tmp_path / "o" / m["stages"]["bundle"]["folder"]
    ids = [e["id"] for e in json.loads((folder / "bundle.json").read_text())["artifacts"]]
    assert sorted(ids) == ["onnx-fp32", "onnx-int8"] and m["stages"]["bundle"]["left_out"] == []


def test_an_unverified_artifact_is_never_recommended(random_only):
    page = page_model(Manifest(random_only, json.loads((random_only / "manifest.json").read_text())))
    rec = next(r for r in page["recommendations"] if r["target"] == "onnx")
    assert rec["artifact"] == "onnx-fp32" and "unverified" in rec["why"] and "onnx-int8" in rec["why"]
    rows = {r["id"]: r for r in page["artifacts"]}
    assert rows["onnx-int8"]["fidelity"]["status"] == "unverified" and rows["onnx-int8"]["within_budget"] is None
    assert not rows["onnx-int8"]["fidelity"]["passed"]


def test_convert_verified_is_false_with_an_unverified_artifact(random_only):
    m = json.loads((random_only / "manifest.json").read_text())
    assert m["stages"]["convert"]["verified"] is False


def test_fp32_is_verified_on_the_eval_data_against_the_source_on_the_same_batch(tmp_path):
    rng = np.random.default_rng(3)
    data = tmp_path / "eval.npz"
    np.savez(data, x=(rng.standard_normal((40, 8)) * rng.uniform(0.2, 5, (40, 1))).astype(np.float32))
    res = edgeship.deploy("test_unverified:per_batch_quantised", out=tmp_path / "o", targets=["onnx"],
                          quantize=["int8"], eval=str(data), samples=6)
    arts = {a.precision: a for a in res.artifacts}
    v = arts["fp32"].verification
    assert v.inputs == f"evaluation data {data}" and v.samples == 6 and v.real_inputs is True
    assert v.batch_sizes == (1, 6) and v.verified and "depend on what else is in the batch" in v.criterion
    assert arts["int8"].verification.verified  # real data: a verdict


def test_probability_rows_are_class_scores_without_label_names():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((64, 2)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert is_classifier(probs.astype(np.float32), name="softmax_0.tmp_0")
    assert not is_classifier(logits, name="save_infer_model/scale_0.tmp_1")  # any tensor: cosine
    assert not is_classifier(np.abs(logits), name="feat")  # non-negative, rows not summing to 1
    assert not is_classifier(probs, name="softmax_0.tmp_0", task="other")
    # evaluation data with the true class of each sample makes the output class scores
    assert is_classifier(logits, name="out", truth=[0, 1] * 32)
    assert not is_classifier(logits, name="out", truth=[0, 5] * 32)  # a class beyond its columns: not its classes


def _softmax_onnx(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(6, 2)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["l"]), helper.make_node("Softmax", ["l"], ["softmax_0.tmp_0"], axis=1)]
    g = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                          [helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, ["n", 2])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_a_two_column_softmax_is_judged_as_a_classifier(tmp_path):
    _softmax_onnx(tmp_path / "cls.onnx")
    res = edgeship.deploy(str(tmp_path / "cls.onnx"), out=tmp_path / "o", targets=["onnx"], quantize=["int8"],
                          max_drop=0.5)
    v = next(a for a in res.artifacts if a.precision == "int8").verification
    assert v.top1_agreement is not None and "top-1 agreement" in v.criterion and "as a tensor" not in v.criterion


def test_labelled_eval_data_judges_the_first_output_as_a_classifier(tmp_path):
    rng = np.random.default_rng(1)
    data = tmp_path / "eval.npz"
    np.savez(data, x=rng.standard_normal((48, 3, 16, 16)).astype(np.float32), y=rng.integers(0, 10, 48))
    res = edgeship.deploy("tinymodels:plain_cnn", out=tmp_path / "o", quantize=["int8"], eval=str(data), max_drop=0.5,
                          **PLAIN)
    v = next(a for a in res.artifacts if a.precision == "int8").verification
    assert v.verified and v.top1_agreement is not None and "label accuracy" in v.criterion


def _mislabelled_onnx(path: Path, declared: list) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, declared)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


@pytest.mark.parametrize("declared", [[], [1, 7]], ids=["rank0", "wrong"])
def test_an_output_declared_with_a_shape_the_model_does_not_return(tmp_path, declared):
    _mislabelled_onnx(tmp_path / "m.onnx", declared)
    res = edgeship.deploy(str(tmp_path / "m.onnx"), out=tmp_path / "o", targets=["onnx"])
    a = res.artifacts[0]
    assert a.verification.verified
    got = _verify.observed_outputs(a)[0].shape
    assert got == ("batch", 3) or (a.outputs[0].fits((1, 3)) and a.outputs[0].fits((4, 3)) and got == a.outputs[0].shape)
    if a.verification.outputs[0].shape is not None:  # recorded as returned, kept in the record
        rec = json.loads((a.root / "artifact.json").read_text())
        assert rec["verification"]["outputs"][0]["shape"] == ["batch", 3]


STRUCTURAL = {"reference": "structural: torch source m (weights, names, types; not outputs)", "samples": 0,
              "batch_sizes": [], "atol": 0.0, "rtol": 0.0, "criterion": "structural (Core ML prediction needs macOS)",
              "passed": True, "outputs": [{"name": "weights (3 tensors)", "max_abs": 0.0, "max_rel": 0.0,
                                            "mean_abs": 0.0, "cosine": 1.0, "passed": True}]}


def _record(aid: str, target: str, precision: str, v: dict) -> dict:
    return {"id": aid, "path": aid, "target": target, "format": target, "precision": precision,
            "size_bytes": 1000, "verification": v}


def test_a_structural_check_is_never_verified_nor_recommended(tmp_path):
    v = Verification(**STRUCTURAL)
    assert v.status == "structural" and not v.verified
    verified = {**STRUCTURAL, "reference": "torch source m", "samples": 4, "batch_sizes": [1, 4],
                "criterion": "|err| <= 0.0001 + 0.0001*|ref| for every element", "inputs": "sample photos"}
    doc = {"source": {"name": "m"}, "config": {}, "stages": {"convert": {}},
           "artifacts": [_record("coreml-fp32", "coreml", "fp32", STRUCTURAL), _record("onnx-fp32", "onnx", "fp32", verified)]}
    page = page_model(Manifest(tmp_path, doc))
    recs = {r["target"]: r for r in page["recommendations"]}
    assert recs["coreml"]["artifact"] is None and "structural check only" in recs["coreml"]["why"]
    assert recs["onnx"]["artifact"] == "onnx-fp32"
    assert page["headline"].startswith("1 artifact(s) verified, 1 structural only")


def test_records_written_before_the_status_read_the_same_way():
    old = {"reference": "onnx source m", "samples": 256, "batch_sizes": [1, 256], "atol": 1e-4, "rtol": 1e-4,
           "outputs": [], "criterion": "cosine >= 0.99 per output (judged as a tensor, not class scores)", "passed": True,
           "inputs": "seeded random inputs (no preprocessing or sample inputs known: give --eval / --calib data)"}
    assert Verification(**old).status == "unverified" and _artifact.verification_status(old, "int8") == "unverified"
    assert Verification(**{**old, "inputs": "sample photos and augmented crops (seed 1)"}).verified
    assert _artifact.verification_status({**old, "criterion": "|err| <= 0.0001 + 0.0001*|ref| for every element"}) == "verified"
    assert Verification(**{**old, "passed": False}).status == "failed"
    # a verified record stays readable by older readers (they refuse unknown keys): no status key written
    v = Verification(**{**old, "inputs": "evaluation data eval.npz", "real_inputs": True})
    assert "status" not in v.record() and "real_inputs" not in v.record() and "note" not in v.record()
