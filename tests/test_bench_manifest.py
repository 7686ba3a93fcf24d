"""Nothing a manifest or an artifact record says selects code to run. `edgeship benchmark OUTDIR`
reloads the manifest's source as the baseline only when it is a built-in model: a factory
`pkg.mod:fn` named there (installed, on PYTHONPATH, in the standard library, beside the manifest)
is never imported or called; the user names it with --baseline."""

from __future__ import annotations

import json
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
    Path({marker!r} + ".called").write_text("called")
    raise SystemExit("sentinel.build ran")
"""

BENCH = ["--runs", "5", "--rounds", "1", "--warmup", "1", "--no-roofline", "--batch-sizes", "none", "--json"]
FAST = {"runs": 5, "rounds": 1, "warmup": 1, "roofline": False, "batch_sizes": "none"}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """tinymodels:tiny_classifier deployed once; each test copies the folder."""
    out = tmp_path_factory.mktemp("deployed") / "out"
    edgeship.deploy("tinymodels:tiny_classifier", out=out)
    return out


def _out_with_source(deployed: Path, dest: Path, **fields: str) -> Path:
    shutil.copytree(deployed, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["source"].update(fields)
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def _installed_sentinel(tmp_path: Path) -> tuple[Path, Path]:
    """A module `sentinel` in a folder of its own, put on PYTHONPATH: installed by every measure."""
    lib, marker = tmp_path / "lib", tmp_path / "IMPORTED"
    lib.mkdir()
    (lib / "sentinel.py").write_text(SENTINEL.format(marker=str(marker)))
    return lib, marker


def _bench(out: Path, cwd: Path, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgeship", "benchmark", str(out), *BENCH], capture_output=True,
                       text=True, env=env, cwd=cwd, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("kind", ["torch", "pt2"])
def test_an_installed_factory_named_by_a_manifest_is_never_imported(deployed, tmp_path, cli_env, kind):
    lib, marker = _installed_sentinel(tmp_path)
    out = _out_with_source(deployed, tmp_path / "out", origin="sentinel:build", kind=kind)
    env = dict(cli_env, EDGESHIP_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=f"{cli_env['PYTHONPATH']}:{lib}")
    doc = _bench(out, tmp_path, env)
    assert not marker.exists() and not Path(f"{marker}.called").exists()
    assert [x["id"] for x in doc["results"]] == ["onnx-fp32"]  # no baseline
    assert any("never selects code" in n and "--baseline" in n for n in doc["notes"]), doc["notes"]


def test_a_standard_library_function_named_by_a_manifest_is_never_called(deployed, tmp_path, cli_env):
    """The reported case: `tempfile:mkdtemp` made the benchmark create a folder outside --out."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = _out_with_source(deployed, tmp_path / "out", origin="tempfile:mkdtemp")
    env = dict(cli_env, EDGESHIP_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(tmp))
    _bench(out, tmp_path, env)
    assert [p.name for p in tmp.iterdir() if p.name.startswith("tmp")] == []


def test_the_user_names_a_factory_with_baseline(deployed, tmp_path):
    out = _out_with_source(deployed, tmp_path / "out", origin="tinymodels:tiny_classifier")
    doc = edgeship.benchmark(out, baseline="tinymodels:tiny_classifier", **FAST).data
    assert [(x["id"], x["role"]) for x in doc["results"]] == [("onnx-fp32", "artifact"),
                                                              ("torch:tiny_classifier", "baseline")]
    assert not any("not reloaded" in n for n in doc["notes"])


def _string_leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _string_leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _string_leaves(v, (*path, i))
    elif isinstance(doc, str):
        yield path


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def test_no_function_named_by_any_record_is_ever_called(deployed, tmp_path, monkeypatch):
    """Every string field of the manifest and of the artifact record, one at a time, becomes an
    importable factory; the benchmark's planning (workers recorded, not started), the report and the
    artifact loader run on it: nothing asks for the module and no worker is told to build it."""
    from edgeship.bench import harness, peaks
    from edgeship.errors import EdgeshipError

    lib, marker = _installed_sentinel(tmp_path)
    monkeypatch.syspath_prepend(str(lib))
    asked: list[str] = []

    class Watch:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name.split(".")[0] == "sentinel":
                asked.append(name)
            return None

    monkeypatch.setattr(sys, "meta_path", [Watch, *sys.meta_path])
    specs: list[dict] = []

    def fake_worker(spec, timeout, threads=1):
        specs.append(spec)
        return harness.WorkerOutcome(ok=False, reason="not started in this test", kind="error")

    monkeypatch.setattr(harness, "run_worker", fake_worker)
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: None)  # its 0.5 s sleeps, twice a case
    base = json.loads((deployed / "manifest.json").read_text())
    rec = json.loads((deployed / "onnx-fp32" / "artifact.json").read_text())
    layers = [p for p in _string_leaves(base) if p[:2] == ("stages", "analysis")]  # ~100 layer names: at once
    cases = ([("manifest.json", [p]) for p in _string_leaves(base) if p[:2] != ("stages", "analysis")]
             + [("manifest.json", layers)] + [("onnx-fp32/artifact.json", [p]) for p in _string_leaves(rec)])
    assert len(cases) > 60 and layers
    out = tmp_path / "out"
    shutil.copytree(deployed, out)
    for file, leaves in cases:
        doc = json.loads((deployed / file).read_text())
        for leaf in leaves:
            _set(doc, leaf, "sentinel:build")
        (out / file).write_text(json.dumps(doc))
        leaf = leaves[0]
        for call in (lambda: edgeship.benchmark(out, **FAST), lambda: edgeship.report(out),
                     lambda: edgeship.load_artifact(out / "onnx-fp32")):
            try:
                call()
            except EdgeshipError:
                pass  # a record that no longer holds together is refused: fine, as long as nothing ran
        shutil.copy2(deployed / file, out / file)
        (out / "report.html").unlink(missing_ok=True)
        assert not asked and not marker.exists(), f"{file} {leaf}: the module was imported"
        assert not [s for s in specs if "sentinel" in json.dumps(s)], f"{file} {leaf}: a worker was told to run it"
