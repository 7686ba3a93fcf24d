"""One conformance suite, run against every registered target.

Each target converts the same tiny models; every produced artifact must be verified, hashed,
loadable, runnable at batch 1 and (when dynamic) at a larger batch, and match torch. Strict
expected-failure lists name what a target cannot take yet: a target that starts passing one of
them fails the suite, so the list is kept true.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgeship
from edgeship import load_artifact
from edgeship.errors import EdgeshipError
from edgeship.testing import FakeTarget

MODELS = {
    "classifier": "tinymodels:tiny_classifier",
    "nhwc_48": "tinymodels:tiny_classifier_48",
    "two_inputs": "tinymodels:two_inputs",
    "token_ids": "tinymodels:token_encoder",
}

# target -> {model: reason}; strict: an unexpected pass is a failure
EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "onnx": {},
    "tflite": {},  # all four run; int64 token ids become int32 model inputs (litert-torch keeps I/O 32-bit)
    "ort": {},
    "fake": {},
    "openvino": {},
    "executorch": {},
    "coreml": {},
}


def _targets() -> list[str]:
    # read at collection: the fake target joins the names without being registered for every other test
    return sorted({*edgeship.available_targets(), "fake"})


@pytest.fixture(scope="module", autouse=True)
def _register_fake():
    edgeship.register_target("fake", FakeTarget)


# (target, precision) -> (stage that fails: "convert" | "verify", reason); strict like the list above.
# Every reduced precision a built-in target offers is run on the classifier.
EXPECTED_REDUCED_FAILURES: dict[tuple[str, str], tuple[str, str]] = {}


def test_the_expected_failure_lists_name_real_targets_and_precisions():
    known = set(_targets())
    assert set(EXPECTED_FAILURES) <= known, set(EXPECTED_FAILURES) - known
    for (target, precision), (stage, _) in EXPECTED_REDUCED_FAILURES.items():
        assert target in known and precision in edgeship.get_target(target).precisions and stage in ("convert", "verify")


def _reduced() -> list[tuple[str, str]]:
    return [(n, p) for n in _targets() if n != "fake" for p in edgeship.get_target(n).precisions if p != "fp32"]


@pytest.mark.parametrize("target, precision", _reduced())
def test_reduced_precision_conformance(target, precision, relu6, tmp_path):
    t = edgeship.get_target(target)
    if t.check_environment():
        pytest.skip(f"{target} needs {t.check_environment()} (pip install 'edgeship[{t.extra}]')")
    stage, reason = EXPECTED_REDUCED_FAILURES.get((target, precision), (None, None))
    try:
        art = edgeship.convert(relu6, target, tmp_path / "art", precision=precision)
    except edgeship.ValidationError as e:
        if stage == "verify":
            pytest.xfail(f"{target} {precision}: {reason} ({e})")
        raise
    except EdgeshipError as e:
        if stage == "convert":
            pytest.xfail(f"{target} {precision}: {reason} ({e})")
        raise
    if stage:
        pytest.fail(f"{target} {precision} passed but is listed as failing at {stage} ({reason}): update the list")
    v = art.verification
    assert v is not None and v.passed and art.precision == precision
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # nothing left in temp folders beside it
    reloaded = load_artifact(tmp_path / "art")
    reloaded.verify_files()
    assert reloaded.digest == art.digest and reloaded.precision == precision
    if "structural" not in v.reference:
        assert all(o.cosine >= 0.99 for o in v.outputs) and v.top1_agreement is not None  # judged as class scores


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("target", _targets())
def test_target_conformance(target, model, tmp_path):
    t = edgeship.get_target(target)
    if t.check_environment():
        pytest.skip(f"{target} needs {t.check_environment()} (pip install 'edgeship[{t.extra}]')")
    expected = EXPECTED_FAILURES.get(target, {}).get(model)
    source = edgeship.load(MODELS[model])
    try:
        art = edgeship.convert(source, target, tmp_path / "art")
    except EdgeshipError as e:
        if expected:
            pytest.xfail(f"{target}/{model}: {expected} ({e})")
        raise
    if expected:
        pytest.fail(f"{target}/{model} passed but is listed as an expected failure ({expected}): update the list")

    # verified, on disk, hashed, and nothing left in temp folders
    assert art.verification is not None and art.verification.passed
    assert art.provenance.parent_digest == source.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    reloaded = load_artifact(tmp_path / "art")
    reloaded.verify_files()
    assert reloaded.digest == art.digest

    # a target verified structurally (Core ML off macOS) may have no runtime here: it must say so
    if getattr(t, "verifies_structurally", False):
        assert "structural" in art.verification.reference
        try:
            edgeship.runner_for(reloaded, threads=1)
        except edgeship.UnsupportedError:
            return

    # the runner reproduces torch on the source's own verification inputs
    runner = edgeship.runner_for(reloaded, threads=1)
    sample = source.verification_inputs(limit=2)
    for s in sample:
        ref = source.run(s)
        got = runner.run(list(s))
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-4)
    if all(isinstance(i.shape[0], str) for i in reloaded.inputs):
        batched = [np.concatenate([a] * 3) for a in sample[0]]
        out = runner.run(batched)
        assert out[0].shape[0] == 3


@pytest.mark.parametrize("target", _targets())
def test_target_interface(target):
    t = edgeship.get_target(target)
    caps = t.capabilities()
    assert caps["name"] == target and caps["format"] in {f.value for f in edgeship.Format}
    assert isinstance(t.check_environment(), list)


def test_unexportable_model_is_unsupported_and_leaves_nothing(tmp_path):
    source = edgeship.load("tinymodels:not_exportable")
    with pytest.raises(edgeship.UnsupportedError, match="could not export"):
        edgeship.convert(source, "onnx", tmp_path / "art")
    assert list(tmp_path.iterdir()) == []
