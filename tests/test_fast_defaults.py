"""Fast by default: honest default data (calibration never sees an evaluation photo), every figure
computed once (the source's outputs on the evaluation set shared by the int8 budget and verify),
and a benchmark that measures what the run needs."""

from __future__ import annotations

import numpy as np
import pytest

import edgeship
from edgeship import data


def test_default_calibration_and_evaluation_never_share_a_photo(monkeypatch):
    """Crops of one photo in both sets would let a recipe learned on a photo be judged on it."""
    source = edgeship.load("tinymodels:tiny_classifier")
    asked: dict[str, set[str]] = {}
    real = data.sample_photos

    def recording(names=data.SAMPLE_PHOTOS):
        asked.setdefault(purpose[0], set()).update(names)
        return real(names)

    monkeypatch.setattr(data, "sample_photos", recording)
    purpose = ["calibration"]
    source.calibration_inputs(16)
    purpose[0] = "evaluation"
    source.evaluation_inputs(16)
    source.verification_inputs(8)
    assert asked["calibration"] and asked["evaluation"]
    assert not asked["calibration"] & asked["evaluation"], asked
    # the record says how many distinct images each set is cut from, and words it
    assert data.distinct_sources(None, source, "evaluation", 256) == len(data.SAMPLE_PHOTOS)
    assert data.distinct_sources(None, source, "calibration", 128) == len(data.CALIBRATION_PHOTOS)
    assert "none of them evaluated on" in source.inputs_origin("calibration")


def test_the_int8_record_says_how_small_the_default_evaluation_is(tmp_path):
    from edgeship.data import small_evaluation

    a = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["executorch"], quantize=["int8"],
                        eval_samples=32, calib_samples=8, package=False, isolate=False).artifacts
    q = next(x for x in a if x.precision == "int8").details["quantization"]
    assert q["eval_sources"] == len(data.SAMPLE_PHOTOS) and q["rung"] == "nearest rounding"
    assert q["rounding"]["tried"] is False and q["equalization"]["tried"] is False
    assert "only 5 distinct images" in small_evaluation(q)


def test_the_source_runs_once_per_evaluation_input_for_the_budget_and_verify(tmp_path, monkeypatch):
    """The int8 budget and verify judge against the source's outputs on the same evaluation set:
    computed once, not once each (every figure once)."""
    from edgeship.sources import Source

    calls = []
    real_run = Source.run

    def counting(self, inputs):
        calls.append(1)
        return real_run(self, inputs)

    monkeypatch.setattr(Source, "run", counting)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["executorch"], quantize=["int8"],
                          eval_samples=24, calib_samples=8, samples=4, package=False, isolate=False, jobs=1)
    assert any(a.precision == "int8" and a.verification.status == "verified" for a in res.artifacts)
    # the 24 evaluation inputs once (they were run twice: 48), beside fp32's verification and the
    # classified sample photos (a handful)
    assert 24 <= len(calls) < 2 * 24, len(calls)


def test_evaluation_data_changed_on_disk_is_read_again(tmp_path):
    source = edgeship.load("tinymodels:tiny_classifier")
    f = tmp_path / "eval.npz"
    np.savez(f, image=np.zeros((4, 3, 32, 32), np.float32))
    first = source.evaluation(str(f), 8)
    assert len(first[0]) == 4 and source.evaluation(str(f), 8)[2] is first[2]  # kept while unchanged
    np.savez(f, image=np.ones((6, 3, 32, 32), np.float32))
    assert len(source.evaluation(str(f), 8)[0]) == 6


class _A:
    def __init__(self, target, precision, status):
        from types import SimpleNamespace

        self.target, self.precision = target, precision
        self.verification = SimpleNamespace(status=status) if status else None
        self.root = SimpleNamespace(name=f"{target}-{precision}")


@pytest.mark.parametrize("every", [False, True])
def test_the_benchmark_measures_fp32_and_what_each_target_would_ship(every):
    from edgeship.pipeline.stages import benchmark_choice

    arts = [_A("onnx", "fp32", "verified"), _A("onnx", "fp16", "verified"), _A("onnx", "int8", "verified"),
            _A("tflite", "fp32", "verified"), _A("tflite", "int8", "failed"), _A("tflite", "fp16", "verified"),
            _A("web", "fp32", "verified"), _A("web", "int8", "unverified")]
    chosen, left = benchmark_choice(arts, every)
    if every:
        assert chosen == arts and left == []
        return
    assert [a.root.name for a in chosen] == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "web-fp32"]
    assert {x["id"] for x in left} == {"onnx-fp16", "tflite-int8", "web-int8"}
    assert all("--benchmark-all" in x["reason"] for x in left)


@pytest.mark.parametrize("improving", [False, True])
def test_the_float_layer_rung_gives_up_when_layers_in_float_move_nothing(improving):
    """Keeping the worst layers in float one at a time is a whole quantisation and measurement per
    layer (11 s each for OpenVINO on Lite0, 12 of them): when three in a row come no closer to fp32
    the loss is not in a few layers, and the rung stops there instead of spending the rest."""
    from edgeship.config import DeployConfig
    from edgeship.quant.flow import STALL_LAYERS, Budget

    cfg = DeployConfig.build(model="tinymodels:tiny_classifier", max_float_layers=12, min_cosine=0.99999)
    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(8, 16)).astype(np.float32)]
    budget = Budget(ref, cfg, classifier=False)
    noise = [0.5]
    error = rng.normal(size=ref[0].shape).astype(np.float32)

    def attempt(excluded, note):
        if improving:
            noise[0] *= 0.5
        return budget.measure([ref[0] + noise[0] * error], excluded, note)

    attempt([], "all int8")
    budget.keep_worst_in_float([(f"n{i}", f"layer {i}") for i in range(12)], attempt)
    tried = len(budget.steps) - 1
    if improving:
        assert budget.last["within_budget"] and budget.stalled == 0
    else:
        assert tried == STALL_LAYERS and budget.stalled == STALL_LAYERS
        assert "came no closer" in budget.missed("int8").message
