import json

import pytest

import edgeship
from edgeship import load_artifact
from edgeship.artifact import ARTIFACT_JSON
from edgeship.errors import FormatError, InputError


def test_artifact_roundtrip(tiny_onnx):
    art = load_artifact(tiny_onnx)
    assert art.format == edgeship.Format.onnx
    assert art.model_path.is_file()
    assert art.labels and len(art.labels) == 10
    assert art.preprocess is not None and art.preprocess.height == 32
    assert art.verification is not None and art.verification.passed
    assert art.provenance.parent_digest and art.provenance.tool_versions["onnxruntime"]
    # the model file path works too, and both describe the same artifact
    assert load_artifact(art.model_path).digest == art.digest
    rec = json.loads((tiny_onnx / ARTIFACT_JSON).read_text())
    assert rec["digest"] == art.digest and rec["labels_count"] == 10
    art.verify_files()


def test_artifact_is_frozen(tiny_onnx):
    art = load_artifact(tiny_onnx)
    with pytest.raises(ValueError, match="frozen"):
        art.precision = "int8"  # type: ignore[misc]


def test_tampered_file_is_detected(tiny_onnx, tmp_path):
    import shutil

    copy = tmp_path / "a"
    shutil.copytree(tiny_onnx, copy)
    with open(copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(FormatError, match="changed"):
        load_artifact(copy).verify_files()


def test_not_an_artifact(tmp_path):
    with pytest.raises(InputError, match="not an edgeship artifact"):
        load_artifact(tmp_path)
    with pytest.raises(InputError, match="no such artifact"):
        load_artifact(tmp_path / "nope")
    (tmp_path / ARTIFACT_JSON).write_text("{not json")
    with pytest.raises(FormatError):
        load_artifact(tmp_path)


def test_a_passed_verification_writes_no_divergence_key(tiny_onnx):
    # older readers refuse unknown keys (extra="forbid"): a key that only a failure fills stays out
    import json

    rec = json.loads((tiny_onnx / "artifact.json").read_text())
    assert "first_divergence" not in rec["verification"]
    assert load_artifact(tiny_onnx).verification.first_divergence is None
