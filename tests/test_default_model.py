"""The embedded default: EfficientNet-Lite0 through `edgeship deploy` with no argument."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    exe = Path(sys.executable).parent / "edgeship"
    r = subprocess.run([str(exe), "deploy", "--json"], cwd=out, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out / "edgeship-out", json.loads(r.stdout)


def test_default_deploy_matches_torch_and_knows_espresso(default_out):
    out, doc = default_out
    m = doc["manifest"]
    assert m["source"]["name"] == "efficientnet-lite0" and m["source"]["labels_count"] == 1000
    art = m["artifacts"][0]
    v = art["verification"]
    assert v["passed"] and v["samples"] == 5 and max(o["max_abs"] for o in v["outputs"]) < 1e-4
    assert art["inputs"][0]["shape"] == ["batch", 3, 224, 224]
    assert art["preprocess"]["mean"] == [127.0] * 3 and art["preprocess"]["std"] == [128.0] * 3
    photos = m["stages"]["predictions"]["photos"]
    assert photos["coffee"][0][0]["label"] == "espresso"  # torch
    assert photos["coffee"][1][0]["label"] == "espresso"  # the ONNX artifact
    assert (out / "onnx-fp32" / "labels.txt").read_text().count("\n") == 1000


def test_classify_the_default_artifact(default_out, photo_file):
    out, _ = default_out
    exe = Path(sys.executable).parent / "edgeship"
    r = subprocess.run([str(exe), "classify", str(out / "onnx-fp32"), str(photo_file)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "espresso" in r.stdout
