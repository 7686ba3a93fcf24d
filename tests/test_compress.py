"""edgeship compress: structural channel pruning (torch-pruning) and magnitude sparsity into a new
torch source that deploy takes; bad input is refused by name and loses nothing."""

from __future__ import annotations

import json

import pytest

import edgeship
from edgeship.sources import load_source

pytest.importorskip("torch_pruning")


def test_channel_pruning_writes_a_smaller_torch_source_deploy_takes(tmp_path):
    rec = edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=tmp_path / "c")
    assert rec["method"] == "channel" and rec["macs"]["removed"] >= 0.4 and rec["params"]["after"] < rec["params"]["before"]
    f = rec["fidelity"]
    assert f["samples"] == 256 and 0.9 < f["top1_agreement"] <= 1 and "not fine-tuned" in f["note"]
    assert rec["compensation"]["layers"] >= 2 and "calibration" not in rec["fidelity"]["data"]
    assert json.loads((tmp_path / "c" / "compress.json").read_text())["macs"] == rec["macs"]
    # the .pt2 loads like any user's (never unpickled), same outputs' shapes, with its preprocessing and labels beside it
    src = load_source(str(tmp_path / "c" / "model.pt2"), preprocess=str(tmp_path / "c" / "preprocess.json"),
                      labels=tmp_path / "c" / "labels.txt")
    orig = load_source("tinymodels:tiny_classifier")
    assert [o.shape for o in src.outputs] == [o.shape for o in orig.outputs] and src.labels == orig.labels
    assert src.preprocess.height == 32 and src.preprocess.input == src.inputs[0].name
    assert rec["deploy"].startswith("edgeship deploy ") and "--preprocess" in rec["deploy"]
    assert not list((tmp_path / "c").glob(".*partial"))


def test_magnitude_sparsity_zeroes_weights_and_says_it_is_no_faster(tmp_path):
    rec = edgeship.compress("tinymodels:tiny_classifier", prune=0.6, method="magnitude", out=tmp_path / "m")
    assert rec["sparsity"] == pytest.approx(0.6, abs=0.02)
    assert rec["macs"]["removed"] == 0 and "no faster" in rec["note"]
    assert rec["pt2_zlib_bytes"] < rec["pt2_bytes"]


@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.2", "half"])
def test_a_ratio_outside_0_1_is_refused_and_nothing_is_written(tmp_path, ratio):
    with pytest.raises(edgeship.UsageError, match="--prune") as e:
        edgeship.compress("tinymodels:tiny_classifier", prune=ratio, out=tmp_path / "x")
    assert "0.5" in e.value.hint and not (tmp_path / "x").exists()


def test_a_failed_compress_leaves_the_output_folder_as_it_was(tmp_path, tiny_onnx):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(edgeship.UsageError, match="already exists"):
        edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=out)
    with pytest.raises(edgeship.UsageError, match="needs a torch model"):  # an ONNX file has no torch module
        edgeship.compress(str(tiny_onnx / "model.onnx"), prune=0.5, out=out, overwrite=True)
    with pytest.raises(edgeship.UnsupportedError, match="torch"):  # data-dependent control flow
        edgeship.compress("tinymodels:not_exportable", prune=0.5, out=out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "precious"


def test_removed_channels_mean_contribution_is_compensated_in_the_next_layer():
    # a pruned channel is rarely zero (batch norm shift through the activation): its mean output,
    # measured on calibration inputs, moves into the reading layer's bias
    import numpy as np

    from edgeship.fidelity import cosine_sqnr
    from edgeship.pruning import _outputs, prune_channels

    src = load_source("tinymodels:tiny_classifier")
    ev = src.evaluation_inputs(64)
    ref = _outputs(src.module, ev)[0]
    plain, n0 = prune_channels(src.module, src.example_inputs, 0.5)
    comp, n1 = prune_channels(src.module, src.example_inputs, 0.5, src.calibration_inputs(64))
    (_, s0), (c1, s1) = cosine_sqnr(ref, _outputs(plain, ev)[0]), cosine_sqnr(ref, _outputs(comp, ev)[0])
    assert n0 == 0 and n1 >= 2 and s1 > s0 + 10 and c1 > 0.99  # here 8.5 -> 34.8 dB
    assert np.mean(ref.argmax(1) == _outputs(comp, ev)[0].argmax(1)) > np.mean(ref.argmax(1) == _outputs(plain, ev)[0].argmax(1))
