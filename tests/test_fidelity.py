"""One fidelity rule, task-aware: class scores are judged by top-1 agreement (or label accuracy)
and cosine; an embedding or any other tensor by cosine alone; verify and the int8 budget agree."""

from __future__ import annotations

import numpy as np
import pytest

import edgeship
from edgeship.fidelity import is_classifier, judge


def test_what_counts_as_class_scores():
    logits = np.zeros((4, 10))
    assert is_classifier(logits, "output", labels=[str(i) for i in range(10)])
    assert is_classifier(logits, "logits") and is_classifier(logits, "class_probs")
    assert not is_classifier(logits, "embedding") and not is_classifier(logits, "output")
    assert not is_classifier(np.zeros((4, 1)), "logits") and not is_classifier(np.zeros((4, 3, 8)), "logits")
    assert is_classifier(logits, "embedding", task="classify") and not is_classifier(logits, "logits", task="other")


def test_judge_uses_label_accuracy_when_labels_are_known():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(100, 5))
    got = ref.copy()
    got[:10] = np.roll(ref[:10], 1, axis=1)  # 10 rows change their top class: agreement 90%
    truth = ref.argmax(1)
    truth[:10] = got[:10].argmax(1)  # ... and those rows become right: accuracy rises
    j = judge([ref], [got], classifier=True, min_cosine=0.0, max_drop=0.05, labels=list(truth))
    assert j["top1_agreement"] == pytest.approx(0.9) and j["accuracy"] >= j["accuracy_fp32"] and j["passed"]
    j = judge([ref], [got], classifier=True, min_cosine=0.0, max_drop=0.05)
    assert not j["passed"] and "top-1 agreement" in j["criterion"]
    t = judge([ref], [got], classifier=False, min_cosine=0.5, max_drop=0.0)
    assert "top1_agreement" not in t and t["judged_as"] == "tensor"


def test_an_embedding_int8_is_judged_by_cosine(tmp_path):
    # with no room for top-1 changes, the argmax of an embedding (meaningless) refuses the int8;
    # judged as what it is, a tensor, its cosine (0.9999) passes and the int8 is written
    with pytest.raises(edgeship.ValidationError, match="top-1 agreement"):
        edgeship.deploy("tinymodels:sentence_embedder", out=tmp_path / "c", targets=["onnx"], quantize=["int8"],
                        max_drop=0.0, task="classify")
    res = edgeship.deploy("tinymodels:sentence_embedder", out=tmp_path / "a", targets=["onnx"], quantize=["int8"],
                          max_drop=0.0)
    q = next(a for a in res.artifacts if a.precision == "int8")
    assert q.verification.passed and q.verification.top1_agreement is None
    assert "judged as a tensor" in q.verification.criterion and q.verification.outputs[0].cosine >= 0.99
    assert q.details["quantization"]["steps"][-1]["within_budget"]


def test_ties_in_int8_outputs_break_like_argmax():
    # dequantised int8 scores tie often; top-1 agreement must not depend on the sort's whims
    from edgeship.fidelity import top_k_agreement

    rng = np.random.default_rng(0)
    n, classes = 64, 1000
    ref = rng.normal(size=(n, classes))
    ref[np.arange(n), np.arange(n)] = 10.0  # row i's top class is i
    got = np.round(rng.normal(size=(n, classes)), 1)
    for i in range(n):
        got[i, [i, i + 200, i + 600]] = 9.0  # a three-way tie at the top, the true class first
    assert top_k_agreement(ref, got, 1) == 1.0
    assert top_k_agreement(ref, got, 1) == float(np.mean(ref.argmax(1) == got.argmax(1)))
