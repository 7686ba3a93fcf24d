"""Issue 11, the newcomer's first hour: nothing lost, metadata kept, inputs right.

Each test reproduces one reported defect (the item number is in its docstring)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeship
from edgeship.errors import InputError, UsageError, ValidationError
from edgeship.testing import FakeTarget

RELEASE_DIRS = ("keys", "release", "report.html")  # what deploy adds beside the artifacts: its signed bundle, its report

EDGESHIP = str(Path(sys.executable).parent / "edgeship")


class NoisyTarget(FakeTarget):
    name = "noisy"
    noise = 0.5


class RelabelInt8(FakeTarget):
    """An "int8" that is the fp32 model relabelled: like a toolchain that quantises nothing here."""

    name = "relabel"
    precisions = ("fp32", "int8")


@pytest.fixture(autouse=True)
def _register():
    edgeship.register_target("fake", FakeTarget)
    edgeship.register_target("noisy", NoisyTarget)
    edgeship.register_target("relabel", RelabelInt8)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file below ``folder``: its inode (a replaced file gets a new one) and its bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(args, env, cwd, timeout=300):
    return subprocess.run([EDGESHIP, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def photo_folder(root: Path, labelled: bool = False) -> Path:
    import skimage.data
    from PIL import Image

    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        d = root / "class_1" if labelled else root
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skimage.data, name)()).save(d / f"{name}.png")
    return root


# ---- nothing lost -----------------------------------------------------------------------

def test_a_failed_quantize_of_a_copied_onnx_leaves_the_output_folder_as_it_was(tmp_path, cli_env):
    """1: the README's `quantize model.onnx --calib --eval` re-exported into edgeship-out, replaced
    onnx-fp32, deleted labels.txt and only then failed."""
    r = run(["deploy", "tinymodels:tiny_classifier"], cli_env, tmp_path)
    assert r.returncode == 0, r.stderr
    shutil.copy(tmp_path / "edgeship-out" / "onnx-fp32" / "model.onnx", tmp_path / "model.onnx")
    photo_folder(tmp_path / "calib")
    photo_folder(tmp_path / "eval", labelled=True)
    before = snapshot(tmp_path / "edgeship-out")
    r = run(["quantize", "model.onnx", "--calib", "calib", "--eval", "eval", "--max-drop", "0.02"], cli_env, tmp_path)
    assert r.returncode == 2, r.stderr
    assert "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(tmp_path / "edgeship-out") == before
    assert not [p for p in (tmp_path / "edgeship-out").iterdir() if p.name.startswith(".")]
    r = run(["classify", "edgeship-out/onnx-fp32", "calib/coffee.png"], cli_env, tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_run_that_fails_at_a_later_fp32_loses_nothing(tmp_path):
    """1: every artifact went into place as soon as it was built, so a later failure left a mix.
    Each cell is its own outcome now: the verified onnx-fp32 is written (whole, atomically), the
    failed one is a row of the manifest, and no file that existed before is lost or half-written."""
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx"])
    before = snapshot(tmp_path)
    with pytest.raises(ValidationError) as e:
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "noisy"])
    assert "1 of 2 artifacts written" in e.value.message
    after = snapshot(tmp_path)
    assert set(before) <= set(after)  # nothing lost
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in RELEASE_DIRS) == ["manifest.json", "onnx-fp32"]
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["path"] for a in m["artifacts"]] == ["onnx-fp32"]
    assert [(f["target"], f["precision"]) for f in m["stages"]["convert"]["failed"]] == [("noisy", "fp32")]


def test_a_failed_first_deploy_leaves_no_folder(tmp_path):
    with pytest.raises(ValidationError):
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "new", targets=["noisy"])
    assert not (tmp_path / "new").exists()


def test_deploying_another_model_into_a_folder_needs_overwrite(tmp_path):
    """2: a second model silently replaced the manifest and left the old folders unlisted."""
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "fake"])
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as e:
        edgeship.deploy("tinymodels:token_encoder", out=tmp_path, targets=["onnx"])
    assert "tiny-classifier" in e.value.message and "--overwrite" in e.value.hint
    assert snapshot(tmp_path) == before
    res = edgeship.deploy("tinymodels:token_encoder", out=tmp_path, targets=["onnx"], overwrite=True)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["path"] for a in m["artifacts"]] == ["onnx-fp32"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in RELEASE_DIRS) == ["manifest.json", "onnx-fp32"]  # fake-fp32 gone with it
    assert m["source"]["origin"] == "tinymodels:token_encoder" == res.manifest["source"]["origin"]
    assert sorted(m["stages"]["convert"]["replaced"]) == ["fake-fp32", "onnx-fp32"]


def test_an_unlisted_folder_in_the_way_needs_overwrite(tmp_path):
    (tmp_path / "onnx-fp32").mkdir()
    (tmp_path / "onnx-fp32" / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError):
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx"])
    assert (tmp_path / "onnx-fp32" / "mine.txt").read_text() == "keep me"


def test_redeploying_the_same_model_keeps_its_other_artifacts_listed(tmp_path):
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx", "fake"])
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx"])
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["path"] for a in m["artifacts"]] == ["onnx-fp32", "fake-fp32"]
    assert m["stages"]["convert"]["kept"] == ["fake-fp32"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in RELEASE_DIRS) == ["fake-fp32", "manifest.json", "onnx-fp32"]


def test_quantize_adds_its_artifact_to_the_folders_manifest(tmp_path):
    """3: after deploy then quantize, the manifest (and so `benchmark OUTDIR`) never saw onnx-int8."""
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["onnx"])
    art = edgeship.quantize(tmp_path / "onnx-fp32", max_drop=0.5, isolate=False)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert [a["path"] for a in m["artifacts"]] == ["onnx-fp32", "onnx-int8"]
    assert m["artifacts"][1]["digest"] == art.digest
    from edgeship.bench.config import BenchConfig
    from edgeship.bench.harness import _resolve

    items = _resolve([tmp_path], BenchConfig(auto_baseline=False), [], {})
    assert [i.id for i in items] == ["onnx-fp32", "onnx-int8"]


def test_quantize_will_not_replace_an_artifact_of_another_model(tmp_path):
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "a", targets=["onnx"])
    other = edgeship.deploy("tinymodels:cnn_with_example", out=tmp_path / "b", targets=["onnx"], quantize=["fp16"])
    shutil.copytree(other.out / "onnx-fp16", tmp_path / "a" / "onnx-fp16")
    before = snapshot(tmp_path / "a")
    with pytest.raises(UsageError) as e:
        edgeship.quantize(tmp_path / "a" / "onnx-fp32", precision="fp16", isolate=False)
    assert "another model" in e.value.message
    assert snapshot(tmp_path / "a") == before


def test_written_files_respect_the_umask(tmp_path):
    """4: manifest.json, artifact.json and labels.txt were 0600, folders 0700, under a 022 umask."""
    old = os.umask(0o022)
    try:
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["onnx"])
    finally:
        os.umask(old)
    o = tmp_path / "o"
    for f in (o / "manifest.json", o / "onnx-fp32" / "artifact.json", o / "onnx-fp32" / "labels.txt",
              o / "onnx-fp32" / "model.onnx"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    for d in (o, o / "onnx-fp32"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d


# ---- metadata kept ----------------------------------------------------------------------

def test_an_edgeship_onnx_as_a_source_keeps_its_preprocessing_and_labels(tiny_onnx, tmp_path):
    """6: deploying edgeship's own model.onnx gave preprocess null, 0 labels, random inputs."""
    src = edgeship.load(str(tiny_onnx / "model.onnx"))
    assert src.preprocess is not None and src.preprocess.height == 32 and len(src.labels) == 10
    res = edgeship.deploy(str(tiny_onnx / "model.onnx"), out=tmp_path / "o", targets=["onnx"], isolate=False)
    assert res.manifest["source"]["preprocess"]["input"] == "image"
    assert res.manifest["source"]["labels_count"] == 10
    assert res.artifacts[0].verification.inputs == "sample photos"


def _strip_metadata(src: Path, dst: Path) -> Path:
    import onnx

    m = onnx.load(str(src))
    del m.metadata_props[:]
    onnx.save(m, str(dst))
    return dst


def test_preprocessing_and_labels_can_be_stated_for_a_foreign_onnx(tiny_onnx, tmp_path):
    """6: a foreign ONNX had no way to say its preprocessing, so image folders never worked."""
    bare = _strip_metadata(tiny_onnx / "model.onnx", tmp_path / "bare.onnx")
    assert edgeship.load(str(bare)).preprocess is None
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    src = edgeship.load(str(bare), preprocess="tflite", labels=tmp_path / "labels.txt")
    pre = src.preprocess
    assert (pre.input, pre.height, pre.width, pre.layout, pre.mean, pre.std) == (
        "image", 32, 32, "NCHW", (127.0,) * 3, (128.0,) * 3)
    assert src.labels == tuple(f"c{i}" for i in range(10))
    src = edgeship.load(str(bare), preprocess="imagenet,crop=1,resample=bicubic")
    assert src.preprocess.std[0] == pytest.approx(58.395) and src.preprocess.crop_fraction == 1.0
    (tmp_path / "pre.json").write_text(json.dumps({"mean": [0, 0, 0], "std": [255, 255, 255]}))
    assert edgeship.load(str(bare), preprocess=str(tmp_path / "pre.json")).preprocess.std == (255.0,) * 3
    # an image folder now works as evaluation data for that file
    photo_folder(tmp_path / "eval")
    art = edgeship.quantize(str(bare), preprocess="tflite", labels=str(tmp_path / "labels.txt"), max_drop=0.5,
                            eval=str(tmp_path / "eval"), calib=str(tmp_path / "eval"), out=tmp_path / "q", isolate=False)
    assert art.preprocess is not None and art.labels == tuple(f"c{i}" for i in range(10))


def test_stated_labels_and_preprocessing_are_checked(tiny_onnx, tmp_path):
    bare = _strip_metadata(tiny_onnx / "model.onnx", tmp_path / "bare.onnx")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    with pytest.raises(InputError, match="3 labels, but output 'logits' has 10"):
        edgeship.load(str(bare), labels=tmp_path / "three.txt")
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        edgeship.load(str(bare), preprocess="colour=RGB")
    with pytest.raises(UsageError, match="no such input"):
        edgeship.load(str(bare), preprocess="input=pixels")


def test_a_file_factory_imports_its_sibling_modules(tmp_path, monkeypatch):
    """7: path/file.py:fn could not import a module beside it."""
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "netparts_sibling.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x * 2 + 1\n")
    (pkg / "build_model.py").write_text(
        "import torch\nfrom netparts_sibling import Net\n\ndef build():\n    return Net(), (torch.ones(1, 4),)\n")
    monkeypatch.chdir(tmp_path)
    src = edgeship.load("proj/build_model.py:build")
    assert src.outputs[0].shape[-1] == 4


def test_a_missing_import_in_a_factory_file_names_the_missing_module(tmp_path):
    (tmp_path / "f.py").write_text("import not_a_real_module_xyz\n\ndef build():\n    pass\n")
    with pytest.raises(InputError) as e:
        edgeship.load(f"{tmp_path / 'f.py'}:build")
    assert "not_a_real_module_xyz" in e.value.message and "run from the folder" not in (e.value.hint or "")


# ---- integer inputs ---------------------------------------------------------------------

def test_token_ids_are_drawn_from_the_embeddings_rows():
    """8: ids were 0..99: a 20-token vocabulary failed with IndexError, a 30,000-token one saw only 0..99."""
    src = edgeship.load("tinymodels:small_vocab", input_shape=["1,8"], input_dtype=["int64"])
    assert src.input_ranges == ((0, 20),)
    assert "embedding 'emb'" in " ".join(src.notes)
    big = edgeship.load("tinymodels:big_vocab", input_shape=["1,64"], input_dtype=["int64"])
    assert big.input_ranges == ((0, 30000),)
    ids = np.concatenate([x[0].ravel() for x in big.evaluation_inputs(16)])
    assert ids.max() > 1000 and ids.max() < 30000 and ids.min() >= 0


def test_input_range_states_the_range_and_says_so():
    src = edgeship.load("tinymodels:big_vocab", input_shape=["1,64"], input_dtype=["int64"], input_range=["5,10"])
    assert src.input_ranges == ((5, 10),)
    ids = np.concatenate([x[0].ravel() for x in src.calibration_inputs(8)])
    assert ids.min() >= 5 and ids.max() <= 9
    assert "--input-range" in " ".join(src.notes)
    with pytest.raises(UsageError, match="HI must be greater"):
        edgeship.load("tinymodels:big_vocab", input_shape=["1,64"], input_dtype=["int64"], input_range=["9,3"])


def test_an_onnx_source_reads_its_vocabulary_from_the_gather(tmp_path):
    res = edgeship.deploy("tinymodels:small_vocab", input_shape=["1,8"], input_dtype=["int64"], out=tmp_path,
                          targets=["onnx"])
    assert res.manifest["source"]["input_ranges"] == [[0, 20]]
    src = edgeship.load(str(tmp_path / "onnx-fp32" / "model.onnx"))
    assert src.input_ranges == ((0, 20),)
    assert src.example_inputs[0].max() < 20


# ---- int8 that shrinks, or says why not --------------------------------------------------

def test_onnx_int8_quantises_embedding_tables(tmp_path):
    """9: an Embedding + Linear model's int8 was the size of its fp32 while the note said every
    weighted layer was quantised."""
    res = edgeship.deploy("tinymodels:big_vocab", input_shape=["1,64"], input_dtype=["int64"], out=tmp_path,
                          targets=["onnx"], quantize=["int8"])
    fp32, int8 = res.artifacts
    assert int8.size_bytes < 0.35 * fp32.size_bytes
    assert min(o.cosine for o in int8.verification.outputs) > 0.999
    assert "float_weights" not in int8.details


def test_an_int8_that_keeps_its_embedding_float_says_so(tmp_path):
    """9: a toolchain that leaves embedding tables float (here: a stand-in whose int8 is a relabel)
    names the tables in its note and in details.float_weights."""
    res = edgeship.deploy("tinymodels:big_vocab", input_shape=["1,64"], input_dtype=["int64"], out=tmp_path,
                          targets=["relabel"], quantize=["int8"])
    int8 = res.artifacts[1]
    assert int8.details["float_weights"]["tables"] == ["emb"]
    assert any("emb (1.92 MB) stays float32" in n for n in int8.notes)
    rec = next(a for a in res.manifest["artifacts"] if a["path"] == "relabel-int8")
    assert rec["details"]["float_weights"]["bytes"] == 30000 * 16 * 4


# ---- smaller things a newcomer sees (15) -------------------------------------------------

def test_the_pickle_refusal_carries_no_terminal_escapes(tmp_path, cli_env):
    import torch

    import tinymodels

    torch.save(tinymodels.plain_cnn(), tmp_path / "full.pt")
    r = run(["deploy", "full.pt", "--out", "o"], cli_env, tmp_path)
    assert r.returncode == 6
    assert "\x1b" not in r.stderr and "--allow-pickle" in r.stderr
    assert "it imports tinymodels.TinyCNN" in r.stderr  # what the pickle wants, not a page of torch text


def test_errors_never_carry_control_characters():
    from edgeship.errors import FormatError

    e = FormatError("label \x1b]0;pwned\x07x\x1b[31mred\x1b[0m\x00", hint="\x1b[2Jclear")
    assert e.message == "label xred\ufffd" and e.hint == "clear"


def test_usage_errors_have_no_pydantic_prefix():
    with pytest.raises(UsageError) as e:
        edgeship.DeployConfig.build(bench_threads="0")
    assert "Value error" not in e.value.message and "thread counts of 1 or more" in e.value.message


def test_analyze_prints_no_torch_pytree_warning(cli_env, tmp_path):
    r = run(["analyze", "tinymodels:tiny_classifier", "--targets", "executorch,onnx"], cli_env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "_pytree" not in r.stderr and "W1" not in r.stderr


def test_openvino_conversion_forks_no_telemetry_process(tmp_path, monkeypatch):
    """The "os.fork() ... JAX ... deadlock" warning: OpenVINO's converter forked a telemetry sender."""
    pytest.importorskip("openvino")
    forks = []
    real = os.fork
    monkeypatch.setattr(os, "fork", lambda: (forks.append(1), real())[1])
    edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path, targets=["openvino"])
    assert forks == []
    assert sys.modules.get("openvino_telemetry", "absent") is None


def test_analyze_of_an_onnx_artifact_names_the_source_modules(tiny_onnx):
    report = edgeship.analyze(str(tiny_onnx / "model.onnx"), targets=["none"], isolate=False)
    modules = [layer.get("module") for layer in report["top_layers"]]
    assert modules[0] == "features.0" and "fc" in modules


def test_classify_takes_stated_preprocessing_for_a_bare_model_file(tiny_onnx, tmp_path, photo_file):
    """6: a foreign model file (ONNX or .tflite) could not be classified at all."""
    from edgeship.errors import UnsupportedError

    bare = _strip_metadata(tiny_onnx / "model.onnx", tmp_path / "bare.onnx")
    with pytest.raises(UnsupportedError) as e:
        edgeship.classify(bare, [photo_file])
    assert "--preprocess" in e.value.hint
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    rows = edgeship.classify(bare, [photo_file], preprocess="tflite", labels=tmp_path / "labels.txt", isolate=True)
    ref = edgeship.classify(tiny_onnx, [photo_file])
    assert [p.label for p in rows[0]] == [p.label.replace("class_", "c") for p in ref[0]]
