"""A release is what was built, once: an unchanged deploy makes no new release (newcomer item 5),
and no command writes inside a signed release (item 3b)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import edgeship
from edgeship import api
from edgeship.errors import UsageError


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("releases")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGESHIP_CACHE_DIR", str(root / "cache"))
        res = edgeship.deploy("tinymodels:tiny_classifier", out=root / "out", targets=["onnx"], package=True)
    return res.out


@pytest.fixture
def out(released, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(released.parent / "cache"))
    shutil.copytree(released, tmp_path / "out")
    return tmp_path / "out"


def _releases(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "release").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_an_unchanged_deploy_is_the_same_release(out):
    said: list[str] = []
    before = _releases(out)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=True, progress=said.append)
    assert _releases(out) == before == ["tiny-classifier-0.1.0"]
    assert res.manifest["stages"]["bundle"]["version"] == "0.1.0" and res.manifest["stages"]["bundle"]["unchanged"]
    assert any("no new release" in s for s in said), said
    # asked for: a new version is made
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=True, release_version="0.2.0")
    assert _releases(out) == ["tiny-classifier-0.1.0", "tiny-classifier-0.2.0"]
    assert not res.manifest["stages"]["bundle"].get("unchanged")


def test_a_changed_deploy_makes_a_new_release(out):
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], quantize=["fp16"], package=True)
    assert _releases(out) == ["tiny-classifier-0.1.0", "tiny-classifier-0.1.1"]


def test_no_command_writes_inside_a_signed_release(out):
    """Item 3b: quantize RELEASE/artifacts/onnx-fp32 wrote onnx-int8 inside the release, which then
    failed edgeship verify."""
    release = out / "release" / "tiny-classifier-0.1.0"
    files = sorted(str(p.relative_to(release)) for p in release.rglob("*"))
    with pytest.raises(UsageError, match="inside the signed release") as e:
        api.quantize(release / "artifacts" / "onnx-fp32", isolate=False)
    assert str(out) in e.value.hint
    with pytest.raises(UsageError, match="inside the signed release"):
        edgeship.deploy("tinymodels:tiny_classifier", out=release / "x", targets=["onnx"], package=False)
    assert sorted(str(p.relative_to(release)) for p in release.rglob("*")) == files
    doc = api.verify_bundle(release, out / "keys" / "signing-key.pub.pem")
    assert doc["ok"] if "ok" in doc else True
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["bundle"]["version"] == "0.1.0"
