"""The newcomer's first hour, second pass, and honest figures: the small items (one test each)."""

from __future__ import annotations

import subprocess
import sys

from edgeship._util import article


def _cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "edgeship", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_a_usage_error_reads_like_every_other_error(cli_env):
    """Honest figures 9: "Error:" (click's boxed panel) and "error:" depending on the command."""
    r = _cli(["deploy", "--foo"], cli_env)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0].startswith("error: No such option: --foo"), r.stderr
    assert "edgeship deploy --help" in r.stderr and "╭" not in r.stderr and "Error" not in r.stderr
    r = _cli(["deploy", "--max-drop", "-1"], cli_env)
    assert r.returncode == 2 and r.stderr.startswith("error: --max-drop"), r.stderr
    assert "edgeship deploy --help" in r.stderr


def test_articles_follow_the_word():
    """Honest figures 9: "a onnx model", "a openvino file"."""
    assert article("onnx") == "an onnx" and article("openvino") == "an openvino" and article("tflite") == "a tflite"


def test_a_sweep_row_that_misses_its_budget_is_one_short_line():
    """Newcomer item 15: a row that missed its budget printed ten lines of mangled tensor names."""
    import io
    from pathlib import Path

    from rich.console import Console

    from edgeship.cli.views import print_sweep as _print_sweep

    layers = "; ".join(f"tfl.pseudo_qconst{i};model/blocks.{i}/conv/Conv2D;tensor_{i}_{'x' * 30}" for i in range(6))
    doc = {"rows": [{"status": "failed", "model": "m", "recipe": "default", "target": "tflite", "precision": "int8",
                     "message": f"tflite int8 misses the budget: 91.2% top-1 agreement; most harmful layers: {layers}",
                     "hint": "raise --max-drop"}], "machines": [], "notes": [], "tasks": [{}]}
    buf = io.StringIO()
    _print_sweep(Console(file=buf, width=80), doc, Path("sweep-out"))
    lines = [ln for ln in buf.getvalue().splitlines() if "tflite" in ln or "tensor_" in ln or "whole message" in ln]
    text = " ".join(buf.getvalue().split())
    assert "misses the budget: 91.2%" in text and "the whole message: sweep.json" in text
    assert "tensor_5" not in text and len(lines) <= 3, buf.getvalue()


def test_a_kept_artifact_that_takes_other_inputs_is_said(tmp_path):
    """Newcomer item 4c: --tflite-nhwc rebuilt tflite fp32 as NHWC but kept tflite-fp16 NCHW in the
    same folder, and nothing said the layouts differ."""
    import pytest

    import edgeship
    from edgeship.targets import get_target

    if get_target("tflite").check_environment():
        pytest.skip("no tflite extra here")
    out = tmp_path / "o"
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["tflite"], quantize=["fp16"], package=False)
    said: list[str] = []
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["tflite"], tflite_nhwc=True, package=False,
                          progress=said.append)
    differs = res.manifest["stages"]["convert"]["inputs_differ"]
    assert len(differs) == 1 and differs[0].startswith("tflite-fp16 (kept from an earlier run) takes NCHW"), differs
    assert "tflite-fp32 takes NHWC" in differs[0] and any(s.startswith("note: tflite-fp16") for s in said)
