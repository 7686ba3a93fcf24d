"""The CLI through its real entry point (the installed console script), in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeship.artifact import sha256_file

EDGESHIP = str(Path(sys.executable).parent / "edgeship")


def run(args, env, cwd=None, timeout=300):
    exe = [EDGESHIP] if Path(EDGESHIP).exists() else [sys.executable, "-m", "edgeship"]
    return subprocess.run(exe + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def test_deploy_json_is_one_document_with_hashes(tmp_path, cli_env):
    r = run(["deploy", "tinymodels:tiny_classifier", "--out", str(tmp_path / "o"), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one JSON document: parse fails on anything extra
    assert doc["ok"] is True
    art = doc["manifest"]["artifacts"][0]
    f = art["files"][0]
    assert f["sha256"] == sha256_file(tmp_path / "o" / art["path"] / f["path"])
    assert art["verification"]["passed"]


def test_deploy_human_table(tmp_path, cli_env):
    r = run(["deploy", "tinymodels:token_encoder", "--out", str(tmp_path / "o")], cli_env)
    assert r.returncode == 0, r.stderr
    assert "onnx-fp32" in r.stdout and "yes" in r.stdout and "manifest:" in r.stdout


def test_missing_model_exits_3_with_one_line(tmp_path, cli_env):
    r = run(["deploy", "missing.onnx", "--out", str(tmp_path / "o")], cli_env, cwd=tmp_path)
    assert r.returncode == 3
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no such model file: missing.onnx" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


def test_unknown_target_exits_2_listing_known(tiny_onnx, tmp_path, cli_env):
    shutil.copy(tiny_onnx / "model.onnx", tmp_path / "m.onnx")
    r = run(["deploy", str(tmp_path / "m.onnx"), "--targets", "nope", "--out", str(tmp_path / "o")], cli_env)
    assert r.returncode == 2
    assert "unknown target 'nope'" in r.stderr and "known targets: " in r.stderr and "onnx" in r.stderr
    assert not (tmp_path / "o").exists()


def test_corrupt_onnx_exits_3(tiny_onnx, tmp_path, cli_env):
    data = (tiny_onnx / "model.onnx").read_bytes()
    (tmp_path / "bad.onnx").write_bytes(data[: len(data) // 2])
    r = run(["deploy", str(tmp_path / "bad.onnx"), "--out", str(tmp_path / "o"), "--json"], cli_env)
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["error"]["type"] == "FormatError"
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_input_shape_that_does_not_fit_exits_3(tmp_path, cli_env):
    r = run(["deploy", "tinymodels:plain_cnn", "--input-shape", "1,4,8,8", "--out", str(tmp_path / "o")], cli_env)
    assert r.returncode == 3 and "does not accept input" in r.stderr


def test_pickle_exits_6_naming_the_opt_in(tmp_path, cli_env):
    import torch

    import tinymodels

    torch.save(tinymodels.plain_cnn(), tmp_path / "full.pt")
    r = run(["deploy", str(tmp_path / "full.pt"), "--input-shape", "1,3,16,16", "--out", str(tmp_path / "o")], cli_env)
    assert r.returncode == 6 and "--allow-pickle" in r.stderr
    r = run(["deploy", str(tmp_path / "full.pt"), "--input-shape", "1,3,16,16", "--allow-pickle",
             "--out", str(tmp_path / "o"), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["manifest"]["source"]["allow_pickle"] is True


def test_dry_run_builds_nothing(tmp_path, cli_env):
    r = run(["deploy", "tinymodels:tiny_classifier", "--dry-run", "--out", str(tmp_path / "o"), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)["plan"]
    assert plan["ready"] and plan["steps"][0]["target"] == "onnx"
    assert not (tmp_path / "o").exists()


def test_classify_prints_top_k(tiny_onnx, photo_file, cli_env):
    r = run(["classify", str(tiny_onnx), str(photo_file), "--top-k", "2", "--threshold", "0", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    preds = json.loads(r.stdout)["results"][0]["predictions"]
    assert len(preds) == 2 and preds[0]["confidence"] >= preds[1]["confidence"]
    r = run(["classify", str(tiny_onnx), "nope.jpg"], cli_env)
    assert r.returncode == 3 and "no such image" in r.stderr


def test_targets_and_version(cli_env):
    r = run(["targets", "--json"], cli_env)
    assert r.returncode == 0
    names = [t["name"] for t in json.loads(r.stdout)["targets"]]
    assert "onnx" in names
    r = run(["--version"], cli_env)
    assert r.returncode == 0 and r.stdout.startswith("edgeship ")


def test_config_file(tmp_path, cli_env):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"targets": ["onnx"], "atol": 0.001, "out": str(tmp_path / "o")}))
    r = run(["deploy", "tinymodels:tiny_classifier", "--config", str(cfg), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["manifest"]["config"]["atol"] == 0.001
    cfg.write_text(json.dumps({"nonsense": 1}))
    r = run(["deploy", "tinymodels:tiny_classifier", "--config", str(cfg)], cli_env)
    assert r.returncode == 2 and "nonsense" in r.stderr


def test_partial_deploy_shows_what_was_written_then_the_error(tmp_path, cli_env):
    args = ["deploy", "tinymodels:relu6_classifier", "--out", str(tmp_path), "--quantize", "int8",
            "--no-bias-correction", "--max-drop", "0", "--max-float-layers", "0", "--rounding", "nearest"]  # the miss, not the ladder
    r = run(args, cli_env)
    assert r.returncode == 5
    assert "onnx-fp32" in r.stdout and "manifest.json" in r.stdout  # the verified artifact, as a table
    assert "onnx-int8" in r.stderr and "most harmful layers" in r.stderr and "Traceback" not in r.stderr
    j = run(args + ["--json"], cli_env)
    doc = json.loads(j.stdout)  # still exactly one JSON document
    assert j.returncode == 5 and doc["ok"] is False and doc["error"]["details"]["manifest_path"].endswith("manifest.json")


def test_classify_shows_hostile_labels_as_text(tmp_path, cli_env, tiny_onnx, photo_file):
    # a label with markup and terminal escapes crashed the table renderer ("[/]") or reached the terminal raw
    art = tmp_path / "art"
    shutil.copytree(tiny_onnx, art)
    n = len((art / "labels.txt").read_text().splitlines())
    (art / "labels.txt").write_text("".join(f"x{i} [/] \x1b[31mred\x1b]0;title\x07 [bold]b\n" for i in range(n)))
    r = run(["classify", str(art), str(photo_file), "--threshold", "0"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "[/] red [bold]b" in r.stdout and "\x1b" not in r.stdout and "\x07" not in r.stdout


def test_a_bad_option_value_names_the_command_whose_help_lists_it():
    """`--max-drop -1` said "see edgeship --help for --max-drop"; the flag is in `edgeship deploy --help`."""
    from edgeship.bench.config import BenchConfig
    from edgeship.config import ClassifyConfig, DeployConfig, QuantizeCommandConfig
    from edgeship.errors import UsageError

    for cfg, opts, command in ((DeployConfig, {"max_drop": -1}, "deploy"), (QuantizeCommandConfig, {"max_drop": -1}, "quantize"),
                               (ClassifyConfig, {"top_k": 0}, "classify"), (BenchConfig, {"runs": -1}, "benchmark")):
        with pytest.raises(UsageError) as e:
            cfg.build(**opts)
        assert e.value.hint.startswith(f"see edgeship {command} --help for --"), e.value.hint


def test_classify_answers_every_good_image_and_names_each_bad_one(tiny_onnx, tmp_path, cli_env):
    """One unreadable file used to abort the batch: the good files got no answer."""
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    args = [sys.executable, "-m", "edgeship", "classify", str(tiny_onnx), str(tmp_path / "a.png"),
            str(tmp_path / "notes.txt"), str(tmp_path / "missing.jpg"), str(tmp_path / "a.png")]
    r = subprocess.run(args, capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert r.stdout.count("a.png") == 2 and "notes.txt" in r.stdout and "missing.jpg" in r.stdout
    assert "2 of 4 images could not be read" in r.stderr and "no such image" in r.stderr
    r = subprocess.run([*args, "--json"], capture_output=True, text=True, env=cli_env, timeout=120)
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and doc["ok"] is False
    results = doc["error"]["details"]["results"]
    assert ["predictions" in x for x in results] == [True, False, False, True]
    assert results[1]["error"]["type"] == "FormatError" and results[2]["error"]["type"] == "InputError"
