"""ort target: ORT format from the onnx target's export, required_operators.config, the ARM note."""

from __future__ import annotations

import numpy as np

import edgeship
from edgeship.targets.ort import OrtRunner


def test_ort_artifact_files_notes_and_runner(tiny_onnx, tmp_path):
    # from an .onnx file (the onnx target only slims it): model.ort + the operator list
    res = edgeship.deploy(str(tiny_onnx / "model.onnx"), out=tmp_path, targets=["ort"])
    a = res.artifacts[0]
    assert sorted(f.path for f in a.files) == ["model.ort", "required_operators.config"]
    # the .onnx source carries edgeship's labels in its metadata: the ORT artifact keeps them
    assert sorted(p.name for p in a.root.iterdir()) == ["artifact.json", "labels.txt", "model.ort",
                                                        "required_operators.config"]
    assert a.labels == edgeship.load_artifact(tiny_onnx).labels and a.labels
    ops = (a.root / "required_operators.config").read_text()
    assert "ai.onnx;" in ops and ".tmp-" not in ops and "# - model.ort" in ops
    assert a.format == edgeship.Format.ort and a.verification.passed and a.verification.batch_sizes[1] > 1  # dynamic batch kept
    assert "ARM" in a.notes[0] and "slower" in a.notes[0]
    assert "ARM" in edgeship.get_target("ort").description
    assert a.model_path.read_bytes()[4:8] == b"ORTM"

    r = edgeship.runner_for(edgeship.load_artifact(a.root), threads=2)
    assert isinstance(r, OrtRunner) and r.session.get_session_options().intra_op_num_threads == 2
    src = edgeship.load("tinymodels:tiny_classifier")
    x = np.concatenate([s[0] for s in src.verification_inputs(3)])
    np.testing.assert_allclose(r.run([x])[0], src.run([x])[0], atol=1e-4, rtol=1e-4)


def test_ort_reuses_the_onnx_export_of_the_same_run(tmp_path):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "ort"])
    onnx_art, ort_art = res.artifacts
    assert ort_art.provenance.config["onnx_digest"] == onnx_art.digest  # no second export
    assert ort_art.verification.passed and ort_art.labels == onnx_art.labels
