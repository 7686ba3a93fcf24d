"""web target: the onnx artifact with onnxruntime-web vendored, verified, run and measured in
headless Chromium; a machine without Chromium is told what to install; the vendored runtime is
checked, never trusted."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import edgeship
from edgeship.errors import MissingExtraError, UnsupportedError
from edgeship.targets.web import RUNTIME_FILES, WebRunner, chromium_path

needs_browser = pytest.mark.skipif(chromium_path() is None and not os.environ.get("EDGESHIP_CI"),
                                   reason="no Chromium here (CI installs Debian's chromium)")


@needs_browser
def test_web_artifact_runs_verified_and_measured_in_chromium(tmp_path):
    # named in the wrong order on purpose: web is built from onnx's artifact, so onnx comes first
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["web", "onnx"], package=False)
    onnx_art, web = res.artifacts
    assert (onnx_art.target, web.target) == ("onnx", "web")
    assert web.provenance.config["onnx_digest"] == onnx_art.digest  # no second export
    assert sorted(f.path for f in web.files) == ["model.onnx", *sorted(f"ort/{n}" for n in [*RUNTIME_FILES, "NOTICE.txt"])]
    assert web.verification.passed and web.verification.batch_sizes[1] > 1  # the dynamic batch holds in the browser
    assert "MIT" in (web.root / "ort" / "NOTICE.txt").read_text()
    assert edgeship.get_target("web").runtime_requirement(web)["name"] == "onnxruntime-web"

    r = edgeship.runner_for(edgeship.load_artifact(web.root))
    try:
        assert isinstance(r, WebRunner) and r.threads_used == 1 and not r.isolated
        src = edgeship.load("tinymodels:tiny_classifier")
        x = np.concatenate([s[0] for s in src.verification_inputs(3)])
        np.testing.assert_allclose(r.run([x])[0], src.run([x])[0], atol=1e-4, rtol=1e-4)
        assert r.last_run_ms is not None and r.last_run_ms >= 0
        # many samples cross the page in one call (verification's 256 took 74 s one call each)
        calls = []
        evaluate = r._page.evaluate
        r._page.evaluate = lambda *a: calls.append(a[0]) or evaluate(*a)
        samples = [(s[0],) for s in src.verification_inputs(3)] * 4
        many = r.run_many(samples)
        r._page.evaluate = evaluate
        assert len(calls) == 1 and len(many) == 12
        for (one,), got in zip(samples, many):
            np.testing.assert_allclose(got[0], src.run([one])[0], atol=1e-4, rtol=1e-4)
        # the page reaches nothing but its own origin
        blocked = r._page.evaluate("fetch('http://example.com/').then(() => 'reached', e => 'blocked')")
        assert blocked == "blocked"
    finally:
        r.close()

    rep = edgeship.benchmark(web.root, runs=6, warmup=1, rounds=1, batch_sizes=[], roofline=False, auto_baseline=False)
    (row,) = rep.data["results"]
    assert row["latency_ms"]["n"] == 6 and row["latency_ms"]["p50"] > 0
    assert row["memory"]["peak_rss_bytes"] and row["memory"]["worker_peak_rss_bytes"]
    assert any("page timed" in n for n in row["notes"]) and not rep.data["incomplete"]


@needs_browser
def test_web_int8_is_the_onnx_int8_of_the_same_run(tmp_path):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx", "web"],
                          quantize=["int8"], package=False)
    by = {a.root.name: a for a in res.artifacts}
    assert by["web-int8"].provenance.config["onnx_digest"] == by["onnx-int8"].digest  # the one int8 flow, once
    assert by["web-int8"].verification.passed and "quantization" in by["web-int8"].details


def test_a_machine_without_chromium_is_told_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CHROMIUM", str(tmp_path / "no-such-browser"))
    p = edgeship.deploy("tinymodels:tiny_classifier", targets=["all"], dry_run=True)
    reasons = [s["reason"] for s in p.skipped if s["target"] == "web"]
    assert reasons and all("apt-get install chromium" in r for r in reasons)
    with pytest.raises(MissingExtraError) as e:
        edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["web"])
    assert "chromium" in e.value.message and "apt-get install chromium" in e.value.hint
    assert not (tmp_path / "out").exists()
    assert edgeship.get_target("web").can_run_here() is not True
    # `edgeship targets` says the same (it said "pip install 'edgeship[web]'" for a missing browser)
    env = dict(os.environ, EDGESHIP_CHROMIUM=str(tmp_path / "no-such-browser"), COLUMNS="200")
    listing = subprocess.run([sys.executable, "-m", "edgeship", "targets"], capture_output=True, text=True, env=env,
                             timeout=120)
    line = next(ln for ln in listing.stdout.splitlines() if ln.strip("│ ").startswith("web"))
    assert "apt-get install chromium" in line and "pip install" not in line


def test_the_vendored_runtime_is_checked_not_trusted(tmp_path, monkeypatch):
    # a cached copy with a changed file is not used; a tarball that is not the pinned one is refused
    from edgeship.targets.web import ORT_WEB_VERSION, ort_web_files

    cache = tmp_path / "cache"
    folder = cache / f"onnxruntime-web-{ORT_WEB_VERSION}"
    folder.mkdir(parents=True)
    for name in RUNTIME_FILES:
        (folder / name).write_bytes(b"not the runtime")
    fake = tmp_path / "onnxruntime-web.tgz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"console.log('pwned')"
        info = tarfile.TarInfo("package/dist/ort.wasm.min.js")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fake.write_bytes(buf.getvalue())
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("EDGESHIP_ORT_WEB_TGZ", str(fake))
    with pytest.raises(UnsupportedError) as e:
        ort_web_files()
    assert "does not match" in e.value.message and "npm pack" in e.value.hint
    assert (folder / "ort.wasm.min.js").read_bytes() == b"not the runtime"  # nothing half-replaced


def test_a_web_runner_left_open_at_exit_does_not_hang_the_process(tmp_path):
    """A benchmark worker that never closed its web runner hung at exit: the runner's __del__, run
    while the interpreter finalised, started a thread to stop its server and waited for it forever
    (the deploy's web benchmark sat there until its 600 s timeout)."""
    script = tmp_path / "leave_open.py"
    script.write_text(
        "from pathlib import Path\n"
        "from edgeship.targets.web import WebRunner, serve_folder\n"
        "runner = WebRunner.__new__(WebRunner)\n"
        "runner._context, runner._acquired = None, False\n"
        f"runner._server = serve_folder(Path({str(tmp_path)!r}), {{}}, isolated=False)\n"
        "runner._cycle = runner  # only the interpreter's final collection frees it\n"
        "del runner\n"
        "print('exiting', flush=True)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "exiting" in r.stdout, r.stderr


@needs_browser
def test_an_int8_is_compared_with_its_own_targets_fp32_without_the_runtime_both_carry(tmp_path):
    """Found trying Magika as a new user: web-int8 said "int8 is larger than fp32 (15217.6 kB vs
    927.8 kB) ... not recommended": its size counted the onnxruntime-web it vendors (14 MB), and
    the "fp32" it was measured against was onnx's int8, the artifact it is built from."""
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx", "web"],
                          quantize=["int8"], package=False)
    arts = {a.root.name: a for a in res.artifacts}
    for name in ("onnx-int8", "web-int8"):
        fp32 = arts[name.replace("int8", "fp32")]
        shared = {(f.path, f.sha256) for f in fp32.files if f.path != "model.onnx"}
        mine = sum(f.size for f in arts[name].files if (f.path, f.sha256) not in shared)
        theirs = sum(f.size for f in fp32.files if (f.path, f.sha256) not in shared)
        said = arts[name].details.get("larger_than_fp32")
        assert (said is not None) == (mine >= theirs), (name, said, mine, theirs)
        if said is not None:
            assert said == {"bytes": mine, "fp32_bytes": theirs}
    assert ("larger_than_fp32" in arts["web-int8"].details) == ("larger_than_fp32" in arts["onnx-int8"].details)
