"""`edgeship benchmark OUTDIR` reloads the manifest's source as the baseline only when it is a
built-in model or an installed factory: a `.py` file, or a module that merely lies in the current
folder, the output folder or a folder holding it, is never imported on the strength of a manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeship

SENTINEL = """\
from pathlib import Path
Path({marker!r}).write_text("imported")


def build():
    raise SystemExit("sentinel.build ran")
"""

BENCH = ["--runs", "5", "--rounds", "1", "--warmup", "1", "--no-roofline", "--batch-sizes", "none", "--json"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """tinymodels:tiny_classifier deployed once; each test copies the folder."""
    out = tmp_path_factory.mktemp("deployed") / "out"
    edgeship.deploy("tinymodels:tiny_classifier", out=out)
    return out


def _out_with_origin(deployed: Path, dest: Path, origin: str) -> Path:
    shutil.copytree(deployed, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["source"]["origin"] = origin
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def _sentinel(folder: Path, marker: Path) -> None:
    (folder / "sentinel.py").write_text(SENTINEL.format(marker=str(marker)))


def _bench(out: Path, cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run([sys.executable, "-m", "edgeship", "benchmark", str(out), *BENCH], capture_output=True,
                       text=True, env=env, cwd=cwd, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return r, json.loads(r.stdout)


@pytest.mark.parametrize("origin, where", [
    ("sentinel.py:build", "cwd"),         # a file in the current folder
    ("sentinel:build", "cwd"),            # a module in the current folder (sources would add it to sys.path)
    ("sentinel:build", "out"),            # a module inside the output folder, run from there
    ("sentinel:build", "out-parent"),     # a module in a PYTHONPATH folder that holds the output folder
])
def test_a_manifest_never_runs_code_lying_beside_it(deployed, tmp_path, cli_env, origin, where):
    marker = tmp_path / "IMPORTED"
    home = tmp_path / "home"
    home.mkdir()
    out = _out_with_origin(deployed, home / "out", origin)
    env = dict(cli_env, EDGESHIP_CACHE_DIR=str(tmp_path / "cache"))
    if where == "cwd":
        _sentinel(home, marker)
        cwd = home
    elif where == "out":
        _sentinel(out, marker)
        cwd = out
    else:
        _sentinel(home, marker)
        cwd = tmp_path
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(home)])
    _, doc = _bench(out, cwd, env)
    assert not marker.exists(), f"{origin} was imported from {where}"
    assert [x["id"] for x in doc["results"]] == ["onnx-fp32"]  # no baseline
    assert any("not reloaded from a manifest automatically" in n and "--baseline" in n for n in doc["notes"]), doc["notes"]


def test_an_installed_factory_still_gets_its_baseline(deployed, tmp_path, cli_env):
    """tinymodels is on PYTHONPATH (the user's own configuration): it counts as installed."""
    out = _out_with_origin(deployed, tmp_path / "out", "tinymodels:tiny_classifier")
    _, doc = _bench(out, tmp_path, dict(cli_env, EDGESHIP_CACHE_DIR=str(tmp_path / "cache")))
    assert [(x["id"], x["role"]) for x in doc["results"]] == [("onnx-fp32", "artifact"),
                                                              ("torch:tiny_classifier", "baseline")]
    assert doc["results"][0]["vs_baseline"]["speedup_p50"] > 0
    assert not any("not reloaded" in n for n in doc["notes"])


def test_installed_means_found_outside_the_current_and_output_folders_without_importing(tmp_path, monkeypatch):
    from edgeship.bench.harness import _reloadable
    from edgeship.bench.worker import installed_module

    marker = tmp_path / "IMPORTED"
    lib, out = tmp_path / "lib", tmp_path / "lib" / "proj" / "out"
    out.mkdir(parents=True)
    _sentinel(lib, marker)
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.chdir(tmp_path)
    assert installed_module("sentinel") == str(lib / "sentinel.py")  # found on the path ...
    assert not marker.exists()  # ... and not imported
    assert installed_module("sentinel", [out]) is None  # lib holds the output folder
    assert _reloadable("sentinel:build", tmp_path / "elsewhere") and not _reloadable("sentinel:build", out)
    monkeypatch.chdir(lib)
    assert installed_module("sentinel") is None  # the current folder is not installed
    assert not _reloadable("sentinel.py:build", tmp_path / "elsewhere")  # a file, never
    assert _reloadable("efficientnet-lite0", out) and _reloadable("tinymodels:tiny_classifier", out)
    assert not _reloadable("no_such_module_anywhere:build", out)
    assert not _reloadable("a..b:build", out) and not _reloadable("/abs/model.pt2", out)
    assert not marker.exists()


def test_the_baseline_worker_imports_a_manifest_origin_from_installed_locations_only(tmp_path, monkeypatch):
    """Even told to build a manifest's origin, the worker does not pick the module up from its cwd."""
    from edgeship.bench.harness import run_worker

    marker = tmp_path / "IMPORTED"
    _sentinel(tmp_path, marker)
    monkeypatch.chdir(tmp_path)
    spec = {"kind": "source", "origin": "sentinel:build", "source_options": {}, "installed_only": True,
            "exclude_paths": [], "threads": 1, "cpus": None, "warmup": 0, "runs": 1, "batch_sizes": [],
            "register": {}, "sys_path": [p for p in sys.path if p and os.path.isdir(p)] + [str(tmp_path)]}
    outcome = run_worker(spec, timeout=120)
    assert not marker.exists()
    assert not outcome.ok and outcome.kind == "error" and "not an installed module" in outcome.reason
