"""edgeship compress: structural channel pruning (torch-pruning) and magnitude sparsity into a new
torch source that deploy takes; bad input is refused by name and loses nothing."""

from __future__ import annotations

import json
import re

import pytest

import edgeship
from edgeship.sources import load_source

pytest.importorskip("torch_pruning")


def test_channel_pruning_writes_a_smaller_torch_source_deploy_takes(tmp_path):
    rec = edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=tmp_path / "c", round_to=1, latency="onnx",
                            bench_runs=20)
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
    lat = rec["latency"]["onnx"]  # the original and the pruned model, converted and timed in one run
    assert lat["original_p50_ms"] > 0 and lat["pruned_p50_ms"] > 0 and lat["speedup"] > 0 and "tflite" not in rec["latency"]


def test_pruned_channels_stay_multiples_of_round_to():
    # runtime kernels work on blocks of 8 channels: Lite0 at 10% without rounding ran 2x *slower* on ONNX Runtime
    import torch

    from edgeship.pruning import prune_channels

    src = load_source("tinymodels:digits_classifier")  # convs of 16 and 32 channels
    convs = [m.out_channels for m in prune_channels(src.module, src.example_inputs, 0.3, round_to=8)[0].modules()
             if isinstance(m, torch.nn.Conv2d)]
    exact = [m.out_channels for m in prune_channels(src.module, src.example_inputs, 0.3, round_to=1)[0].modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert convs == [8, 24] and exact == [11, 22]  # the nearest multiples of 8 to 11.2 and 22.4 (torch-pruning: 8, 16)


def test_magnitude_sparsity_zeroes_weights_and_says_it_is_no_faster(tmp_path):
    rec = edgeship.compress("tinymodels:tiny_classifier", prune=0.6, method="magnitude", out=tmp_path / "m",
                            latency="none")
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


# ---- fine-tuning with distillation, data, interruption, sweeps ---------------------------

def _labelled_npz(path, n=192, seed=3):
    """Inputs for tiny_classifier and labels: the original model's own classes (so label accuracy and
    agreement both mean something), with a tenth of them flipped."""
    import numpy as np

    src = load_source("tinymodels:tiny_classifier")
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32)
    y = np.concatenate([o for o in (src.run([x[i:i + 64]])[0] for i in range(0, n, 64))]).argmax(1)
    flip = rng.random(n) < 0.1
    y[flip] = rng.integers(0, 10, int(flip.sum()))
    np.savez(path, x=x, y=y.astype(np.int64))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_distillation_recovers_what_pruning_lost_and_reports_accuracy(tmp_path, cache):
    import numpy as np

    from tinymodels import digits_arrays

    np.savez(tmp_path / "train.npz", **dict(zip("xy", digits_arrays("train"))))
    np.savez(tmp_path / "test.npz", **dict(zip("xy", digits_arrays("test"))))
    rec = edgeship.compress("tinymodels:digits_classifier", prune=0.7, out=tmp_path / "c", latency="none", epochs=3,
                            train_data=str(tmp_path / "train.npz"), eval_data=str(tmp_path / "test.npz"), eval_samples=400)
    e = rec["evaluation"]
    assert e["labels"] is True and e["samples"] == 397 and rec["macs"]["removed"] > 0.8
    assert e["fine_tuned"]["accuracy"] > e["pruned"]["accuracy"] + 0.2  # here 51% -> 91% (the original: 94%)
    assert rec["fidelity"]["accuracy"] == e["fine_tuned"]["accuracy"] and rec["fidelity"]["accuracy_fp32"] > 0.9
    ft = rec["fine_tuning"]
    assert [h["epoch"] for h in ft["history"]] == [1, 2, 3] and ft["labels"] and "KL" in ft["loss"]
    assert ft["samples"] == 1260 and ft["held_out"] == 140 and ft["kept_epoch"] >= 1
    assert ft["history"][-1]["loss"] < ft["history"][0]["loss"] and "training data" in rec["compensation"]["data"]
    assert not list(cache.rglob("checkpoint.pt"))  # a finished run leaves no checkpoint
    assert "before fine-tuning" in (tmp_path / "c" / "report.html").read_text()


def test_fine_tuning_that_does_not_help_is_not_kept(tmp_path, cache):
    # a learning rate that wrecks the model: every epoch is worse on the held-out tenth than the pruned model was
    import numpy as np

    from tinymodels import digits_arrays

    x, y = digits_arrays("train")
    np.savez(tmp_path / "t.npz", x=x[:300], y=y[:300])
    rec = edgeship.compress("tinymodels:digits_classifier", prune=0.3, out=tmp_path / "c", latency="none", epochs=2,
                            train_data=str(tmp_path / "t.npz"), lr=1.0)
    ft = rec["fine_tuning"]
    assert ft["kept_epoch"] == 0 and "as it was" in ft["kept"]
    assert rec["evaluation"]["fine_tuned"]["top1_agreement"] == rec["evaluation"]["pruned"]["top1_agreement"]


def test_training_is_reproducible_and_an_interrupted_run_resumes_to_the_same_weights(tmp_path, cache):
    import numpy as np
    import torch

    from edgeship.pruning import prune_channels
    from edgeship.pruning.distill import DistillSettings, distill

    src = load_source("tinymodels:tiny_classifier")
    samples = src.calibration_inputs(96)
    settings = DistillSettings(epochs=3, batch_size=16, lr=1e-3, temperature=4, alpha=0.5, seed=7, distill=True)

    def student():
        return prune_channels(src.module, src.example_inputs, 0.5)[0]

    def weights(m):
        return np.concatenate([p.detach().numpy().ravel() for p in m.state_dict().values() if p.dtype == torch.float32])

    a, b, c = student(), student(), student()
    ck = tmp_path / "ck" / "checkpoint.pt"
    distill(a, src.module, samples, None, settings, classifier=True, checkpoint=tmp_path / "a.pt")
    distill(b, src.module, samples, None, settings, classifier=True, checkpoint=tmp_path / "b.pt")
    assert np.array_equal(weights(a), weights(b))  # same seed, same weights
    with pytest.raises(KeyboardInterrupt, match="run the same command again to resume") as e:
        distill(c, src.module, samples, None, settings, classifier=True, checkpoint=ck, interrupt_after=8)
    assert "epoch 2/3, step 2" in str(e.value) and ck.is_file()
    said = []
    d = student()
    distill(d, src.module, samples, None, settings, classifier=True, checkpoint=ck, say=said.append)
    assert any("resuming from epoch 2, step 2" in m for m in said) and not ck.exists()
    assert np.allclose(weights(d), weights(a), atol=1e-6)


def test_an_interrupted_compress_leaves_the_output_folder_as_it_was(tmp_path, cache, monkeypatch):
    from edgeship.pruning import distill as dmod

    out = tmp_path / "keep"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    real = dmod.distill
    monkeypatch.setattr(dmod, "distill", lambda *a, **k: real(*a, **{**k, "interrupt_after": 3}))  # Ctrl-C at step 3
    with pytest.raises(KeyboardInterrupt, match="nothing was written"):
        edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=out, overwrite=True, latency="none",
                          train_data=str(_labelled_npz(tmp_path / "t.npz", n=64)))
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and len(list(cache.rglob("checkpoint.pt"))) == 1


def test_bad_training_data_is_refused_by_name(tmp_path, cache):
    import numpy as np

    np.savez(tmp_path / "shape.npz", x=np.zeros((8, 3, 16, 16), np.float32), y=np.zeros(8, np.int64))
    with pytest.raises(edgeship.InputError, match=r"shape \(3, 16, 16\).*takes"):
        edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=tmp_path / "o", train_data=str(tmp_path / "shape.npz"))
    np.savez(tmp_path / "y.npz", x=np.zeros((8, 3, 32, 32), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(edgeship.InputError, match="'y' must hold one integer class index per sample"):
        edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=tmp_path / "o", train_data=str(tmp_path / "y.npz"))
    np.savez(tmp_path / "x.npz", x=np.zeros((8, 3, 32, 32), np.float32))
    with pytest.raises(edgeship.UsageError, match="--no-distill trains on labels"):
        edgeship.compress("tinymodels:tiny_classifier", prune=0.5, out=tmp_path / "o", train_data=str(tmp_path / "x.npz"),
                          distill=False, latency="none")
    with pytest.raises(edgeship.UnsupportedError, match="no conv or linear layer"):  # a .pt2 is a graph, not layers
        rec = edgeship.compress("tinymodels:tiny_classifier", prune=0.3, out=tmp_path / "p", latency="none")
        edgeship.compress(rec["out"] + "/model.pt2", prune=0.3, out=tmp_path / "q")
    assert not (tmp_path / "o").exists() and not (tmp_path / "q").exists()


def test_a_sweep_writes_one_model_per_ratio_a_table_and_a_plot(tmp_path, cli_env):
    import subprocess
    import sys

    out = tmp_path / "s"
    r = subprocess.run([sys.executable, "-m", "edgeship", "compress", "tinymodels:tiny_classifier", "--prune", "0.3,0.6", "--round-to", "1",
                        "--out", str(out), "--latency", "onnx", "--bench-runs", "20", "--json"],
                       capture_output=True, text=True, env=cli_env, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)["compress"]
    assert [x["ratio"] for x in doc["runs"]] == [0.3, 0.6]
    assert doc["runs"][1]["macs"]["removed"] > doc["runs"][0]["macs"]["removed"]
    for x in doc["runs"]:
        lat = x["latency"]["onnx"]
        assert lat["original_p50_ms"] > 0 and lat["pruned_p50_ms"] > 0 and lat["speedup"] > 0
        assert (out / f"prune-{x['ratio']:g}" / "model.pt2").is_file()
    assert json.loads((out / "compress.json").read_text())["runs"][0]["ratio"] == 0.3
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 1 and "onnx p50 ms" in html


def test_data_labels_from_an_image_folder_per_class_and_a_callable(tmp_path):
    import dataclasses

    import numpy as np
    from PIL import Image

    from edgeship.data import load_samples

    src = load_source("tinymodels:tiny_classifier")
    src = dataclasses.replace(src, labels=None)  # a model without labels: folders in sorted order
    for cls in ("b_dog", "a_cat"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(tmp_path / "imgs" / cls / "1.png")
    samples, labels = load_samples(str(tmp_path / "imgs"), src, 10, "training")
    assert len(samples) == 2 and labels == [0, 1]
    samples, labels = load_samples("tinymodels:labelled_pairs", src, 3, "training")
    assert len(samples) == 3 and labels == [0, 1, 2] and samples[0][0].shape == (1, 3, 32, 32)


def test_deploying_a_compressed_model_carries_how_it_was_made_into_the_manifest_and_report(tmp_path):
    rec = edgeship.compress("tinymodels:digits_classifier", prune=0.5, out=tmp_path / "c", latency="onnx", bench_runs=20)
    res = edgeship.deploy(str(tmp_path / "c" / "model.pt2"), labels=str(tmp_path / "c" / "labels.txt"),
                          out=tmp_path / "d", targets=["onnx"])
    c = res.manifest["stages"]["compression"]
    assert c["method"] == "channel" and c["ratio"] == 0.5 and c["macs"] == rec["macs"]
    assert c["latency"]["onnx"]["speedup"] == rec["latency"]["onnx"]["speedup"] and c["from"].endswith("digits_classifier")
    html = (tmp_path / "d" / "report.html").read_text()
    assert "How this model was made: channel pruning at 0.5" in html and "pruned p50 ms" in html
    # a record that describes another file (the model changed since) is not believed
    doc = json.loads((tmp_path / "c" / "compress.json").read_text())
    (tmp_path / "c" / "compress.json").write_text(json.dumps({**doc, "model_sha256": "0" * 64}))
    res = edgeship.deploy(str(tmp_path / "c" / "model.pt2"), out=tmp_path / "e", targets=["onnx"])
    assert "compression" not in res.manifest["stages"]


def test_ctrl_c_during_fine_tuning_keeps_the_work_and_the_same_command_resumes(tmp_path, cli_env):
    import signal
    import subprocess
    import sys

    import numpy as np

    from tinymodels import digits_arrays

    x, y = digits_arrays("train")
    np.savez(tmp_path / "t.npz", x=x[:300], y=y[:300])
    env = {**cli_env, "EDGESHIP_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "edgeship", "compress", "tinymodels:digits_classifier", "--prune", "0.5", "--latency",
           "none", "--epochs", "60", "--train-data", str(tmp_path / "t.npz"), "--out", str(tmp_path / "o")]
    # as from a terminal: SIGINT at its default (an xdist worker ignores it, and a child inherits that)
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stderr:  # progress lines (stderr is not a terminal)
        seen.append(line)
        if "fine-tuning" in line and "epoch 2/" in line:
            p.send_signal(signal.SIGINT)
            break
    err = "".join(seen) + p.stderr.read()
    assert p.wait(timeout=120) == 130, err
    assert "run the same command again to resume" in err and not (tmp_path / "o").exists()
    assert len(list((tmp_path / "cache").rglob("checkpoint.pt"))) == 1
    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    # the signal lands while epoch 2 or a later one runs (the child goes on while the line crosses
    # the pipe; on an idle machine it had reached epoch 3): the work up to there is kept
    resumed = re.search(r"resuming from epoch (\d+), step (\d+)", r.stderr)
    assert resumed and 2 <= int(resumed[1]) < 60, r.stderr[-2000:]
    assert json.loads(r.stdout)["compress"]["fine_tuning"]["history"][-1]["epoch"] == 60
    assert not list((tmp_path / "cache").rglob("checkpoint.pt"))


def test_taylor_importance_uses_the_data_and_its_labels(tmp_path, cache):
    import numpy as np

    from edgeship.pruning import prune_channels
    from tinymodels import digits_arrays

    src = load_source("tinymodels:digits_classifier")
    x, y = digits_arrays("train")
    samples = [(x[i:i + 1],) for i in range(64)]
    mag = prune_channels(src.module, src.example_inputs, 0.5, samples, round_to=1)[0]
    other = [int(v + 1) % 10 for v in y[:64]]  # labels the model disagrees with: other gradients, other channels
    tay = prune_channels(src.module, src.example_inputs, 0.5, samples, round_to=1, importance="taylor", labels=other)[0]
    pseudo = prune_channels(src.module, src.example_inputs, 0.5, samples, round_to=1, importance="taylor")[0]
    w = [m.fc.weight.detach().numpy() for m in (mag, tay, pseudo)]
    assert w[0].shape == w[1].shape == w[2].shape  # as many channels removed, other ones chosen
    assert not np.array_equal(w[0], w[1]) and not np.array_equal(w[1], w[2])
    assert all(p.grad is None for p in tay.parameters())  # no gradient left behind in the saved model
    with pytest.raises(edgeship.UsageError, match="--importance taylor needs inputs"):
        prune_channels(src.module, src.example_inputs, 0.5, None, importance="taylor")
    rec = edgeship.compress("tinymodels:digits_classifier", prune=0.5, importance="taylor", out=tmp_path / "t",
                            latency="none")
    assert rec["importance"] == "taylor" and rec["macs"]["removed"] > 0.5
