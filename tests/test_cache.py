"""The cache of task results: a re-run reuses every artifact, re-checked; one knob rebuilds only
what depends on it; a corrupt entry is never used; two writers never corrupt it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import edgeship
from edgeship import cache


@pytest.fixture
def cached(tmp_path, monkeypatch) -> Path:
    """The cache on, in a folder of this test's own."""
    monkeypatch.delenv("EDGESHIP_NO_CACHE", raising=False)
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _deploy(out: Path, **options):
    options = {"targets": ["onnx", "ort"], "quantize": ["int8"], "rounding": "nearest", "equalization": "off",
               **options}  # the int8 flow's quick path
    return edgeship.deploy("tinymodels:tiny_classifier", out=out, package=False, **options)


def _fp32(out: Path, **options):
    return edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], package=False, **options)


def _digests(manifest: dict) -> dict[str, str]:
    return {a["id"]: a["digest"] for a in manifest["artifacts"]}


def test_a_rerun_reuses_every_artifact_and_gives_the_same_bytes(cached, tmp_path):
    first = _deploy(tmp_path / "a")
    c1 = first.manifest["stages"]["convert"]["cache"]
    assert c1["reused"] == [] and sorted(c1["built"]) == ["onnx-fp32", "onnx-int8", "ort-fp32"]
    second = _deploy(tmp_path / "b")
    c2 = second.manifest["stages"]["convert"]["cache"]
    assert sorted(c2["reused"]) == sorted(c1["built"]) and c2["built"] == []
    assert _digests(second.manifest) == _digests(first.manifest)
    for art in second.artifacts:
        art.verify_files()  # what artifact.json says of each file holds for the copies
    # the figures are the ones measured when it was built
    q1 = {a["id"]: a["verification"] for a in first.manifest["artifacts"]}
    assert {a["id"]: a["verification"] for a in second.manifest["artifacts"]} == q1
    assert cache.info()["kinds"]["artifact"]["entries"] == 3


def test_one_knob_rebuilds_only_what_depends_on_it(cached, tmp_path):
    _deploy(tmp_path / "a")
    res = _deploy(tmp_path / "b", max_drop=0.2)  # a budget option: the int8 artifacts, not the fp32 ones
    c = res.manifest["stages"]["convert"]["cache"]
    assert sorted(c["reused"]) == ["onnx-fp32", "ort-fp32"]
    assert c["built"] == ["onnx-int8"]


def test_a_corrupt_entry_is_dropped_and_built_again(cached, tmp_path):
    first = _fp32(tmp_path / "a")
    digest = _digests(first.manifest)["onnx-fp32"]
    models = [p for p in (cached / "tasks").rglob("model.onnx") if (p.parent / "artifact.json").is_file()
              and json.loads((p.parent / "artifact.json").read_text())["precision"] == "fp32"
              and json.loads((p.parent / "artifact.json").read_text())["target"] == "onnx"]
    assert len(models) == 1
    data = bytearray(models[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the stored model
    models[0].write_bytes(bytes(data))
    res = _fp32(tmp_path / "b")
    c = res.manifest["stages"]["convert"]["cache"]
    assert "onnx-fp32" in c["built"] and any("onnx-fp32" in n and "corrupt" in n for n in c["notes"])
    assert _digests(res.manifest)["onnx-fp32"] == digest  # built again, the same bytes
    next(a for a in res.artifacts if a.root.name == "onnx-fp32").verify_files()


def test_no_cache_builds_everything(cached, tmp_path):
    _fp32(tmp_path / "a")
    res = _fp32(tmp_path / "b", cache=False)
    assert "cache" not in res.manifest["stages"]["convert"]


def test_a_failed_budget_is_remembered(cached, tmp_path):
    opts = {"min_cosine": 0.9999999, "max_drop": 0.0, "max_float_layers": 0, "targets": ["onnx"], "rounding": "nearest"}
    with pytest.raises(edgeship.ValidationError) as e1:
        _deploy(tmp_path / "a", **opts)
    with pytest.raises(edgeship.ValidationError) as e2:
        _deploy(tmp_path / "b", **opts)
    assert e2.value.message == e1.value.message
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert "onnx-int8" in m["stages"]["convert"]["cache"]["reused"]


def test_the_source_key_follows_the_model_code_not_only_its_weights(tmp_path, monkeypatch):
    """The same weights with another forward are another model."""
    code = ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        torch.manual_seed(0)\n        self.fc = torch.nn.Linear(4, 3)\n"
            "    def forward(self, x):\n        return {body}\n"
            "def make():\n    return Net(), (torch.zeros(1, 4),)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = []
    for i, body in enumerate(("self.fc(x)", "self.fc(x) * 2")):
        (tmp_path / f"netmod{i}.py").write_text(code.format(body=body))
        src = edgeship.load(f"netmod{i}:make")
        keys.append((src.digest, cache.source_key(src)))
    assert keys[0][0] == keys[1][0]  # the weights are the same
    assert keys[0][1] != keys[1][1]


def test_two_writers_of_one_entry_leave_one_whole_entry(cached, tmp_path):
    src = tmp_path / "payload"
    src.mkdir()
    (src / "model.bin").write_bytes(b"x" * 1_000_000)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(cache.store_dir("ab" * 32, src, {"kind": "artifact"})))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    meta, why = cache.fetch_dir("ab" * 32, tmp_path / "got")
    assert meta == {"kind": "artifact"} and why is None
    assert (tmp_path / "got" / "model.bin").read_bytes() == b"x" * 1_000_000
    assert not [p for p in (cached / "tasks" / "ab").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_two_deploys_at_once_share_the_cache(cached, tmp_path, cli_env):
    """Two processes building the same artifacts at the same time: both succeed, the same bytes,
    and the cache holds one whole entry per artifact."""
    env = {**cli_env, "EDGESHIP_CACHE_DIR": str(cached)}
    env.pop("EDGESHIP_NO_CACHE", None)
    cmd = [sys.executable, "-m", "edgeship", "deploy", "tinymodels:tiny_classifier", "--targets", "onnx",
           "--no-package", "--json", "--out"]
    procs = [subprocess.Popen([*cmd, str(tmp_path / f"o{i}")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    digests = [_digests(json.loads((tmp_path / f"o{i}" / "manifest.json").read_text())) for i in range(2)]
    assert digests[0] == digests[1]
    assert cache.info()["kinds"]["artifact"]["entries"] == 1
    res = _fp32(tmp_path / "o3")
    assert res.manifest["stages"]["convert"]["cache"]["reused"] == ["onnx-fp32"]


def test_cache_info_and_clear_on_the_command_line(cached, tmp_path, cli_env):
    _fp32(tmp_path / "a")
    env = {**cli_env, "EDGESHIP_CACHE_DIR": str(cached)}
    info = json.loads(subprocess.run([sys.executable, "-m", "edgeship", "cache", "info", "--json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    assert info["entries"] >= 1 and info["kinds"]["artifact"]["bytes"] > 0
    kept = subprocess.run([sys.executable, "-m", "edgeship", "cache", "clear", "--older-than", "1", "--json"], env=env,
                          capture_output=True, text=True, check=True)
    assert json.loads(kept.stdout)["removed"] == 0  # everything was used just now
    done = subprocess.run([sys.executable, "-m", "edgeship", "cache", "clear"], env=env, capture_output=True, text=True,
                          check=True)
    assert "removed" in done.stdout and cache.info()["entries"] == 0
    assert _fp32(tmp_path / "b").manifest["stages"]["convert"]["cache"]["reused"] == []


def test_a_target_option_changes_only_that_targets_keys(cached):
    """--tflite-nhwc is tflite's: the onnx and ort keys stay, tflite's change (no build needed to see it)."""
    from edgeship import api
    from edgeship.config import DeployConfig
    from edgeship.pipeline.keys import TaskKeys

    keys = []
    for nhwc in (False, True):
        cfg = DeployConfig.build(model="tinymodels:tiny_classifier", targets=["onnx", "ort", "tflite"], tflite_nhwc=nhwc)
        p = api.plan(cfg)
        k = TaskKeys(cfg, edgeship.load("tinymodels:tiny_classifier"), p)
        keys.append({s["id"]: k.convert(s["target"], s["precision"]) for s in p.steps})
    assert keys[0]["onnx-fp32"] == keys[1]["onnx-fp32"] and keys[0]["ort-fp32"] == keys[1]["ort-fp32"]
    assert keys[0]["tflite-fp32"] != keys[1]["tflite-fp32"]


def test_a_rerun_with_workers_reuses_everything(cached, tmp_path):
    """The parent checks what is cached before it builds: a key computed twice must be the same key
    (an fp32 once found its own first key as its parent, and a cached re-run rebuilt everything)."""
    opts = {"targets": ["onnx", "ort", "tflite"], "jobs": 2, "package": False}
    first = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "a", **opts)
    assert first.manifest["stages"]["convert"]["workers"]["jobs"] == 2
    second = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "b", **opts)
    c = second.manifest["stages"]["convert"]["cache"]
    assert sorted(c["reused"]) == ["onnx-fp32", "ort-fp32", "tflite-fp32"] and c["built"] == []
