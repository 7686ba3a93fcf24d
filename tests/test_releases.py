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


def test_releases_do_not_pile_up_and_a_served_one_is_kept(out, tmp_path):
    """Honest figures 7: every deploy re-packaged the folder as a new release (3.9 GB with 12)."""
    for v in ("0.2.0", "0.3.0", "0.10.0"):  # ordered as versions, not as text
        edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=True, release_version=v,
                        keep_releases=0)
    assert len(_releases(out)) == 4
    # 0.1.0 goes into an update repository: pruning must leave it while the repository serves it
    api.repo_init(tmp_path / "repo")
    api.publish(out / "release" / "tiny-classifier-0.1.0.tar.gz", tmp_path / "repo")
    m = json.loads((out / "manifest.json").read_text())
    assert m["stages"]["published"][0]["version"] == "0.1.0"
    said: list[str] = []
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=True, release_version="0.11.0",
                    keep_releases=2, progress=said.append)
    assert _releases(out) == ["tiny-classifier-0.1.0", "tiny-classifier-0.10.0", "tiny-classifier-0.11.0"]
    assert any("removed release(s) 0.3.0, 0.2.0" in s for s in said), said
    assert not (out / "release" / "tiny-classifier-0.2.0.tar.gz").exists()
    doc = api.release_prune(out, keep=1, dry_run=True)
    assert doc["removed"] == ["0.10.0"] and doc["served"] == [{"version": "0.1.0", "repo": str((tmp_path / "repo").resolve())}]
    assert len(_releases(out)) == 3  # a dry run removes nothing
    shutil.rmtree(tmp_path / "repo")  # no repository serves it any more
    assert api.release_prune(out, keep=1)["removed"] == ["0.10.0", "0.1.0"]
    assert _releases(out) == ["tiny-classifier-0.11.0"]


def test_the_next_version_follows_semver_precedence(tmp_path):
    from edgeship.bundle import next_version

    for v in ("0.9.0", "0.10.0", "1.0.0-rc.1"):
        (tmp_path / v).mkdir()
        (tmp_path / v / "bundle.json").write_text(json.dumps({"version": v}))
    assert next_version(tmp_path) == "1.0.0"  # the release of the newest pre-release
    (tmp_path / "1.0.0-rc.1" / "bundle.json").unlink()
    assert next_version(tmp_path) == "0.10.1"
