"""deploy: plan first, verify before writing, write atomically, record everything in the manifest."""

from __future__ import annotations

import json

import pytest

import edgeship
from edgeship.errors import ValidationError
from edgeship.testing import FakeTarget

RELEASE_DIRS = ("keys", "release", "report.html")  # what deploy adds beside the artifacts: its signed bundle, its report


class NoisyTarget(FakeTarget):
    name = "noisy"
    noise = 0.5


class BrokenTarget(FakeTarget):
    name = "broken"
    fail_after_write = True


@pytest.fixture(autouse=True)
def _register():
    edgeship.register_target("fake", FakeTarget)
    edgeship.register_target("noisy", NoisyTarget)
    edgeship.register_target("broken", BrokenTarget)


def test_deploy_writes_verified_artifacts_and_manifest(tmp_path):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "fake"])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m == res.manifest
    assert m["schema"] == "edgeship.manifest/1"
    assert [a["id"] for a in m["artifacts"]] == ["onnx-fp32", "fake-fp32"]
    for a in m["artifacts"]:
        assert a["verification"]["passed"]
        for f in a["files"]:
            assert len(f["sha256"]) == 64 and (tmp_path / a["path"] / f["path"]).is_file()
    assert m["source"]["digest"] == res.artifacts[0].provenance.parent_digest
    assert m["stages"]["convert"]["verified"] is True
    preds = m["stages"]["predictions"]
    assert preds["artifacts"][0].startswith("source") and len(preds["photos"]) == 5
    assert set(m["environment"]["tool_versions"]) >= {"torch", "onnx", "onnxruntime"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_verification_writes_nothing(tmp_path):
    with pytest.raises(ValidationError) as e:
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["noisy"])
    assert "max abs" in e.value.message and e.value.exit_code == 5
    assert list(tmp_path.iterdir()) == []


def test_a_failing_converter_leaves_the_previous_artifact_alone(tmp_path):
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["fake"])
    before = (tmp_path / "fake-fp32" / "artifact.json").read_text()
    edgeship.register_target("fake", BrokenTarget)
    # a converter's own exception is that cell's failure, named as an internal error: nothing is written
    with pytest.raises(edgeship.EdgeshipError, match="no artifact written: .* fp32: internal error: RuntimeError"):
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["fake"])
    assert (tmp_path / "fake-fp32" / "artifact.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in RELEASE_DIRS) == ["fake-fp32", "manifest.json"]


def test_plan_checks_the_chain_before_work(tmp_path):
    cfg = edgeship.DeployConfig.build(model="tinymodels:tiny_classifier", targets=["onnx"], out=tmp_path)
    p = edgeship.plan(cfg)
    assert p.ready and p.steps[0]["target"] == "onnx" and p.source_kind == "torch"
    with pytest.raises(edgeship.UsageError, match="known targets: .*onnx"):
        edgeship.plan(cfg.model_copy(update={"targets": ["nope"]}))


def test_tolerances_are_configurable(tmp_path):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx"], atol=0.5, rtol=0)
    v = res.artifacts[0].verification
    assert v.atol == 0.5 and v.rtol == 0 and v.batch_sizes == (1, 5)


def test_classifier_runtime(tiny_onnx, photo_file):
    clf = edgeship.Classifier(tiny_onnx)
    preds = clf.classify(photo_file, top_k=3, threshold=0.0)
    assert len(preds) == 3
    assert [p.confidence for p in preds] == sorted((p.confidence for p in preds), reverse=True)
    assert all(p.label.startswith("class_") for p in preds)
    assert clf.classify(photo_file, top_k=3, threshold=1.0) == []
    with pytest.raises(edgeship.UsageError):
        clf.classify(photo_file, top_k=0)
    assert abs(sum(clf.scores(photo_file)) - 1) < 1e-6


def test_classifier_nhwc_other_resolution(tmp_path, photo_file):
    res = edgeship.deploy("tinymodels:tiny_classifier_48", out=tmp_path)
    art = res.artifacts[0]
    assert art.inputs[0].shape == ("batch", 48, 48, 3) and art.inputs[0].layout == "NHWC"
    assert edgeship.Classifier(art).classify(photo_file, threshold=0.0)


def test_a_bare_onnx_file_carries_its_preprocessing_and_labels(tiny_onnx, tmp_path, photo_file):
    import shutil

    import tinymodels

    shutil.copy(tiny_onnx / "model.onnx", tmp_path / "alone.onnx")
    clf = edgeship.Classifier(tmp_path / "alone.onnx")
    assert clf.labels == tinymodels.LABELS and clf.preprocess.height == 32
    assert clf.classify(photo_file, threshold=0.0)


def test_runtime_failure_is_a_typed_error(tiny_onnx):
    import numpy as np

    runner = edgeship.runner_for(edgeship.load_artifact(tiny_onnx))
    with pytest.raises(edgeship.InputError, match="has shape"):
        runner.run([np.zeros((1, 3, 31, 32), np.float32)])
    with pytest.raises(edgeship.InputError, match="takes 1 inputs"):
        runner.run([])


class QuantFake(FakeTarget):
    name = "qfake"
    precisions = ("fp32", "int8")
    reduced_noise = 1e-3


class BadQuantFake(QuantFake):
    name = "badq"
    reduced_noise = 50.0


def test_reduced_precision_is_verified_on_fidelity(tmp_path):
    edgeship.register_target("qfake", QuantFake)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["qfake", "fake"], quantize="int8")
    names = [a.root.name for a in res.artifacts]
    assert names == ["qfake-fp32", "qfake-int8", "fake-fp32"]
    v = res.artifacts[1].verification
    assert v.passed and "cosine" in v.criterion and v.outputs[0].max_abs > 1e-4  # would fail fp32 rules
    assert v.outputs[0].sqnr_db is not None and v.top5_agreement == 1.0 and v.kl_divergence is not None
    skipped = res.manifest["stages"]["convert"]["skipped"]
    assert skipped == [{"target": "fake", "precision": "int8", "reason": "fake offers fp32"}]


def test_reduced_precision_below_budget_is_not_written(tmp_path):
    edgeship.register_target("badq", BadQuantFake)
    with pytest.raises(ValidationError, match="cosine|top-1"):
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["badq"], quantize=["int8"])
    assert not (tmp_path / "badq-int8").exists()


def test_quantize_option_is_checked_against_the_targets_precisions():
    with pytest.raises(edgeship.UsageError, match="unknown precision 'int4'") as e:
        edgeship.deploy("tinymodels:tiny_classifier", quantize="int4", dry_run=True)
    assert "palettize4" in e.value.hint and "int8" in e.value.hint
    assert edgeship.DeployConfig.build(quantize="none").quantize == []


def test_a_plugin_may_offer_a_precision_of_its_own(tmp_path):
    class Int4Fake(FakeTarget):  # the fake exports every precision from the source
        name = "fake4"
        precisions = ("fp32", "int4")

    edgeship.register_target("fake4", Int4Fake)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["fake4"], quantize="int4")
    assert [a.precision for a in res.artifacts] == ["fp32", "int4"]


class CannotRunHere(FakeTarget):
    """Like Core ML on Linux: verified another way, its runner refuses to run on this machine."""
    name = "norun"

    def verify(self, source, artifact, cfg):
        runner = FakeTarget.runner(self, artifact)
        from edgeship.verify import verify

        return verify(source, artifact, runner, cfg)

    def runner(self, artifact, threads=1, **_):
        raise edgeship.UnsupportedError("norun artifacts run only on the moon")


def test_an_artifact_that_cannot_run_here_does_not_sink_the_sample_predictions(tmp_path):
    edgeship.register_target("norun", CannotRunHere)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "norun"])
    preds = res.manifest["stages"]["predictions"]
    assert preds["not_run"] == {"norun-fp32": "norun artifacts run only on the moon"}
    assert all(row[2] == [] and row[1] for row in preds["photos"].values())
    assert (tmp_path / "manifest.json").is_file()


def test_all_targets_skips_those_that_cannot_take_the_model_and_says_why(tiny_onnx):
    p = edgeship.plan(edgeship.DeployConfig.build(model=str(tiny_onnx / "model.onnx"), targets="all", quantize="int8"))
    built = {s["target"] for s in p.steps}
    skipped = {(s["target"], s["precision"]): s["reason"] for s in p.skipped}
    assert {"onnx", "tflite", "executorch"} <= built and "coreml" not in built  # tflite, executorch: the bridge
    assert skipped[("coreml", "fp32")] == "coreml converts from torch, pt2, not onnx"
    with pytest.raises(edgeship.UnsupportedError, match="cannot convert an onnx model"):  # named: still an error
        edgeship.deploy(str(tiny_onnx / "model.onnx"), targets=["coreml"], dry_run=False, out="unused")


def test_verification_says_what_its_inputs_were(tmp_path):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "a")
    assert res.artifacts[0].verification.inputs == "sample photos"
    res = edgeship.deploy("tinymodels:two_inputs", out=tmp_path / "b")
    assert res.artifacts[0].verification.inputs.startswith("seeded random inputs")
