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
