"""What a newcomer sees: the human output of the real CLI (a subprocess) in an 80-column terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

EDGESHIP = str(Path(sys.executable).parent / "edgeship")
TESTS = Path(__file__).parent


def run(args, env, timeout=600):
    exe = [EDGESHIP] if Path(EDGESHIP).exists() else [sys.executable, "-m", "edgeship"]
    return subprocess.run(exe + list(args), check=False, capture_output=True, text=True, env=env, timeout=timeout)


def env_with(columns: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("COLUMNS", None)
    if columns is not None:
        env["COLUMNS"] = columns
    return env


@pytest.fixture
def env80() -> dict[str, str]:
    return env_with("80")


def assert_fits(out: str, width: int = 80) -> None:
    assert out.strip(), "no output"
    long = [line for line in out.splitlines() if cell_len(line) > width]
    assert not long, f"{len(long)} line(s) wider than {width}:\n" + "\n".join(long[:5])
    assert "…" not in out, "a cell was cut:\n" + "\n".join(line for line in out.splitlines() if "…" in line)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """tiny_classifier (preprocessing and labels, so the sample-photo table appears) with four artifacts, at 80 columns."""
    out = tmp_path_factory.mktemp("display") / "o"
    r = run(["deploy", "tinymodels:tiny_classifier", "--out", str(out), "--targets", "onnx,ort",
             "--quantize", "int8,fp16"], env_with("80"))
    assert r.returncode == 0, r.stderr
    return out, r


def test_deploy_at_80_columns_fits_and_summarises_every_artifact(deployed):
    out, r = deployed
    assert_fits(r.stdout)
    names = [a["path"] for a in json.loads((out / "manifest.json").read_text())["artifacts"]]
    assert sorted(names) == ["onnx-fp16", "onnx-fp32", "onnx-int8", "ort-fp32"]
    assert "sample photos, classified by the artifacts" in r.stdout
    flat = " ".join(r.stdout.split())  # lines wrapped at 80 columns, joined again
    # every artifact is in a "verified against" line, grouped by what it was verified on
    groups = re.findall(r"((?:[\w-]+, )*[\w-]+): verified against the torch source tiny-classifier on (\d+) ", flat)
    covered = [n for g, _ in groups for n in g.split(", ")]
    assert sorted(covered) == sorted(names), groups
    assert {n for _, n in groups} == {"5", "256"}  # the fp32 artifacts on the photos, fp16/int8 on photos and crops
    assert " 0 inputs" not in flat and "warning:" not in r.stdout  # sample photos are real inputs
    assert "0.00 MB" not in r.stdout and "0.01 MB" not in r.stdout  # a 7 kB file reads as kB


def test_deploy_summary_covers_a_structurally_verified_first_artifact(tmp_path, env80):
    pytest.importorskip("coremltools")
    r = run(["deploy", "tinymodels:tiny_classifier", "--out", str(tmp_path / "o"), "--targets", "coreml,onnx"], env80)
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert "coreml-fp32: structural only (not verified): checked against the torch source tiny-classifier" in flat
    assert "onnx-fp32: verified against the torch source tiny-classifier on 5 sample photos at batch sizes 1, 5" in flat
    assert "on 0 inputs" not in flat and "batch sizes ;" not in flat
    assert_fits(r.stdout)


def test_random_inputs_get_a_warning(tmp_path, env80):
    r = run(["deploy", "tinymodels:token_encoder", "--out", str(tmp_path / "o"), "--quantize", "int8"], env80)
    assert r.returncode == 0, r.stderr
    warnings = [" ".join(w.split()) for w in re.split(r"\n(?=\S)", r.stdout) if w.startswith("warning:")]
    assert any("onnx-fp32" in w and "random inputs" in w for w in warnings), r.stdout
    assert any("onnx-int8" in w and "evaluation" in w and "random" in w for w in warnings), r.stdout
    assert_fits(r.stdout)


def test_quantize_at_80_columns(deployed, tmp_path, env80):
    out, _ = deployed
    r = run(["quantize", str(out / "onnx-fp32"), "--precision", "fp16", "--out", str(tmp_path / "q16")], env80)
    assert r.returncode == 0, r.stderr
    assert "fp16 fp16" not in r.stdout and ": fp16, budget" in r.stdout
    assert re.search(r"\d kB ", r.stdout) and "┃   MB ┃" not in r.stdout  # a 6 kB model is '5.88 kB', not '0.01' MB
    assert_fits(r.stdout)


def test_quantize_shows_label_accuracy_when_eval_data_has_labels(deployed, tmp_path, env80):
    import skimage.data
    from PIL import Image

    out, _ = deployed
    for i, name in enumerate(("coffee", "chelsea", "astronaut", "rocket")):
        folder = tmp_path / "eval" / f"class_{i % 2}"  # class sub-folders named like the model's labels
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    r = run(["quantize", str(out / "onnx-fp32"), "--eval", str(tmp_path / "eval"), "--out", str(tmp_path / "q8"),
             "--json"], env80)
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)["report"]["steps"]
    assert all("accuracy" in s for s in steps)
    r = run(["quantize", str(out / "onnx-fp32"), "--eval", str(tmp_path / "eval"), "--out", str(tmp_path / "q8b")], env80)
    assert r.returncode == 0, r.stderr
    assert "label accuracy drop" in r.stdout
    # a long step list is shown as several tables of a few steps each, at 80 columns
    rows = [line for line in r.stdout.splitlines() if re.search(r"\baccuracy\b", line) and "│" in line]
    shown = [x for row in rows for x in re.findall(r"(\d+\.\d)%", row)]
    want = [f"{100 * steps[0]['accuracy_fp32']:.1f}"] + [f"{100 * s['accuracy']:.1f}" for s in steps]
    assert shown == want, (rows, want)
    assert_fits(r.stdout)


def test_benchmark_at_80_columns(deployed, env80):
    out, _ = deployed
    r = run(["benchmark", str(out), "--runs", "30", "--rounds", "1", "--warmup", "1"], env80)
    assert r.returncode == 0, r.stderr
    assert_fits(r.stdout)
    for name in ("onnx-fp32", "onnx-int8", "onnx-fp16", "ort-fp32"):
        assert name in r.stdout
    assert "warm latency" in r.stdout and "cold start" in r.stdout


def test_analyze_at_80_columns(env80):
    r = run(["analyze", "tinymodels:tiny_classifier"], env80)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"\dMACs", r.stdout) and " MACs, " in r.stdout  # '107k MACs', not '128MACs'
    assert "0.00 MB" not in r.stdout and " kB fp32" in r.stdout
    assert_fits(r.stdout)


def test_results_fit_80_columns_on_a_pipe_without_columns():
    r = run(["targets"], env_with(None))  # stdout is a pipe: no terminal width to honour, 80 it is
    assert r.returncode == 0, r.stderr
    assert_fits(r.stdout)
    assert "coreml" in r.stdout and "onnx" in r.stdout


def test_deploy_help_at_80_columns(env80):
    from edgeship.config import DeployConfig

    r = run(["deploy", "--help"], env80)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert_fits(out)
    assert "<bool>" not in out and "<list" not in out and "<str>" not in out and "<path>" not in out
    flags = re.findall(r"--[a-z][a-z0-9-]*", out)
    for name, field in DeployConfig.model_fields.items():
        if name == "model":
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in flags, f"{flag} missing or cut"
        if field.annotation is bool:
            assert "--no-" + name.replace("_", "-") in flags, f"--no-{name} missing or cut"
    assert flags.index("--targets") < flags.index("--opset")
    assert flags.index("--out") < flags.index("--opset") and flags.index("--quantize") < flags.index("--opset")
    assert "Model input" in out and out.index("--preprocess") > out.index("Model input")
    assert "[default: onnx]" in out and "[default: 18]" in out  # defaults shown
    assert "--targets TARGET,..." in out and "--config FILE" in out  # placeholders that say what goes there


def test_debug_is_a_global_option(env80):
    r = run(["--help"], env80)
    assert r.returncode == 0 and "--debug" in r.stdout and "<bool>" not in r.stdout
    r = run(["--debug", "targets", "--json"], env80)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True


def test_compress_at_80_columns(tmp_path, env80):
    pytest.importorskip("torch_pruning")
    r = run(["compress", "tinymodels:digits_classifier", "--prune", "0.25,0.5", "--out", str(tmp_path / "c"),
             "--bench-runs", "20"], env80)
    assert r.returncode == 0, r.stderr
    assert "MACs" in r.stdout and "-71%" in r.stdout and "speed-up" in r.stdout and "tflite ms" in r.stdout
    assert r.stdout.count("edgeship deploy") == 2
    assert_fits("\n".join(line for line in r.stdout.splitlines() if str(tmp_path) not in line))  # paths are as long as they are
    r = run(["compress", "tinymodels:tiny_classifier", "--prune", "2", "--out", str(tmp_path / "d")], env80)
    assert r.returncode == 2 and "outside (0, 1)" in r.stderr and not (tmp_path / "d").exists()
