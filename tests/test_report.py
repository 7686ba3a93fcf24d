"""The HTML report: rendered from a manifest alone, self-contained, readable in a real browser, and
the comparison of two deploys marks what got worse."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgeship
from edgeship.reporting import REPORT_HTML, build, render, write_report
from edgeship.reporting.model import pareto
from edgeship.targets.web import _Browser, chromium_path

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
ARTIFACTS_DIR = os.environ.get("EDGESHIP_TEST_ARTIFACTS")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """A real deploy with every stage the report draws: fp32 and int8 ONNX, benchmark, analysis."""
    out = tmp_path_factory.mktemp("report") / "out"
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], quantize=["int8"], benchmark=True,
                    bench_runs=60, package=False)
    return out


def _write(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


OLD_MANIFEST = {  # what a deploy wrote before reports existed: one artifact, no benchmark, no analysis
    "schema": "edgeship.manifest/1", "edgeship_version": "0.1.0", "created": "2026-11-20T10:00:00+00:00",
    "source": {"name": "tiny", "kind": "torch", "origin": "tinymodels:tiny_classifier", "digest": "ab" * 32},
    "config": {"targets": ["onnx"], "quantize": []},
    "artifacts": [{"id": "onnx-fp32", "path": "onnx-fp32", "name": "tiny-onnx-fp32", "target": "onnx", "format": "onnx",
                   "precision": "fp32", "size_bytes": 12345,
                   "verification": {"reference": "torch source", "samples": 8, "passed": True,
                                    "outputs": [{"name": "logits", "max_abs": 1e-6, "max_rel": 1e-5, "cosine": 1.0}]}}],
    "stages": {"convert": {"steps": ["onnx-fp32"], "skipped": [], "verified": True, "failed": []}},
    "timings_s": {"total": 3.2},
    "environment": {"python": "3.11.7", "platform": "Linux", "machine": "x86_64", "cpu_count": 2, "tool_versions": {}},
}


def test_every_deploy_writes_a_report_from_its_manifest(deployed):
    page = (deployed / REPORT_HTML).read_text()
    doc = build(deployed)["report"]
    assert [r["id"] for r in doc["artifacts"]] == ["onnx-fp32", "onnx-int8"]
    assert all(r["bench"] and r["bench"]["quantiles"] and len(r["bench"]["quantiles"]) == 101 for r in doc["artifacts"])
    assert doc["analysis"]["layers"] and doc["analysis"]["of"] == "onnx-fp32"
    int8 = next(r for r in doc["artifacts"] if r["precision"] == "int8")
    assert int8["layers"]["rows"], "the int8 artifact carries its per-layer error"
    # every plot drawn, no gap sentence where a figure exists
    assert page.count('<svg class="chart"') == 4
    assert "No latency was measured" not in page and "No per-layer figures" not in page
    assert doc["headline"] in page.replace("&#39;", "'")
    # the page is rebuilt from the folder alone, to the same bytes
    before = page
    (deployed / REPORT_HTML).unlink()
    write_report(deployed)
    assert (deployed / REPORT_HTML).read_text() == before


def test_a_manifest_from_before_reports_still_renders_and_says_what_is_missing(tmp_path):
    folder = _write(tmp_path / "old", OLD_MANIFEST)
    page = write_report(folder).read_text()
    assert "onnx-fp32" in page and "12.3 kB" in page
    assert "No latency was measured in this run" in page
    assert "no analysis in this manifest" in page.lower()
    assert "No release bundle in this run" in page
    assert '<svg class="chart"' not in page  # no empty plots
    assert "1 artifact(s) verified; no latency was measured" in page


def test_whatever_a_manifest_holds_is_shown_as_data(tmp_path):
    m = copy.deepcopy(OLD_MANIFEST)
    evil = '<script>alert(1)</script>\x1b]8;;http://x\x07[/]'
    m["source"]["name"] = evil
    m["artifacts"][0]["id"] = m["artifacts"][0]["path"] = evil
    m["artifacts"][0]["notes"] = ["<img src=http://example.com/x.png>", "\x1b[31mred\x1b[0m"]
    m["artifacts"][0]["size_bytes"] = "huge"  # a wrong type is a gap, not a crash
    m["artifacts"].append({"id": "x", "target": 5, "verification": "no", "details": {"quantization": {"layers": "no"}}})
    m["stages"]["benchmark"] = {"results": [{"id": "x", "latency_ms": {"p50": float("nan")}}, "junk"], "machine": []}
    m["stages"]["analysis"] = {"layers": [{"index": "a"}], "totals": []}
    page = write_report(_write(tmp_path / "evil", m)).read_text()
    body = page.split("</style>", 1)[1]
    assert "<script" not in body and "<img" not in body and "\x1b" not in body and "http://example.com" not in body.replace(
        "&lt;img src=http://example.com/x.png&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_pareto_front_is_what_nothing_else_beats():
    # (latency, size, fidelity)
    pts = [(10, 100, 1.0), (3, 30, 0.96), (4, 30, 0.95), (3, 50, 0.96), (20, 100, 1.0)]
    assert pareto(pts) == [0, 1]


def test_summary_recommends_the_fastest_inside_the_budget(deployed, tmp_path):
    m = json.loads((deployed / "manifest.json").read_text())
    res = {r["id"]: r for r in m["stages"]["benchmark"]["results"]}
    res["onnx-fp32"]["latency_ms"]["p50"] = 9.0
    res["onnx-int8"]["latency_ms"]["p50"] = 3.0
    q = m["artifacts"][1]["details"]["quantization"]
    q["steps"][q["chosen"]]["top1_agreement"] = 0.96
    big = m["artifacts"][1]["size_bytes"] >= m["artifacts"][0]["size_bytes"]
    if big:  # the tiny model's int8 is larger than its fp32 (its quantisation parameters outweigh its weights)
        doc = build(_write(tmp_path / "big", m))["report"]
        assert doc["recommendations"][0]["artifact"] == "onnx-fp32", doc["recommendations"]
        assert "larger than fp32" in doc["recommendations"][0]["why"]
        m["artifacts"][1]["size_bytes"] = m["artifacts"][0]["size_bytes"] // 4  # as a real model's int8
    doc = build(_write(tmp_path / "x", m))["report"]
    assert doc["recommendations"] == [{"target": "onnx", "artifact": "onnx-int8", "precision": "int8", "why": (
        f"fastest inside the fidelity budget: 3.00 ms p50, 3.0× faster than fp32 at 96.0% top-1 agreement and "
        f"{m['artifacts'][1]['size_bytes'] / m['artifacts'][0]['size_bytes']:.0%} of its size")}]
    assert doc["headline"].startswith("onnx int8 is the fastest artifact inside the budget: 3.00 ms p50, 3.0× faster "
                                      "than onnx fp32 at 96.0% top-1 agreement")
    # below the budget: not recommended, and said why
    q["steps"][q["chosen"]]["top1_agreement"] = 0.80
    doc = build(_write(tmp_path / "y", m))["report"]
    assert doc["recommendations"][0]["artifact"] == "onnx-fp32"
    assert "outside the budget: onnx-int8 (80.0% top-1 agreement)" in doc["recommendations"][0]["why"]


def test_the_comparison_marks_regressions_and_the_layers_that_got_worse(deployed, tmp_path):
    m = json.loads((deployed / "manifest.json").read_text())
    for r in m["stages"]["benchmark"]["results"]:  # a steady old run: its spread must not hide a 30% regression
        p50 = r["latency_ms"]["p50"]  # (a busy test machine measured an interquartile range wider than that)
        r["latency_quantiles_ms"] = [p50 * (0.98 + 0.04 * i / 100) for i in range(101)]
    old = _write(tmp_path / "old", m)
    worse = copy.deepcopy(m)
    res = {r["id"]: r for r in worse["stages"]["benchmark"]["results"]}
    res["onnx-int8"]["latency_ms"]["p50"] *= 1.3
    res["onnx-int8"]["latency_quantiles_ms"] = [q * 1.3 for q in res["onnx-int8"]["latency_quantiles_ms"]]
    worse["artifacts"][1]["digest"] = "0" * 64  # a rebuilt int8 artifact (same bytes could not have regressed)
    res["onnx-int8"]["digest"] = "0" * 64  # measured on those new bytes
    layer = worse["artifacts"][1]["details"]["quantization"]["layers"][0]
    key = "output_sqnr_db" if "output_sqnr_db" in layer else "weight_sqnr_db"
    layer[key] -= 7.5
    new = _write(tmp_path / "new", worse)
    doc = build(new, old)["comparison"]
    rows = {r["id"]: r for r in doc["rows"]}
    assert rows["onnx-int8"]["changes"]["p50_ms"]["regressed"] and "p50 latency grew by more than 5%" in rows["onnx-int8"]["regressions"]
    assert not rows["onnx-fp32"]["regressions"]
    assert doc["regressed"] == 1
    assert doc["layers_worse"][0]["node"] == layer["node"] and doc["layers_worse"][0]["worse_db"] == pytest.approx(7.5)
    page = write_report(new, old=old)
    assert page.name == "report-vs-old.html" and page.parent == new
    html = page.read_text()
    assert "1 artifact(s) regressed" in html and "▲ regressed" in html and '<svg class="chart" role="img" aria-label="p50' in html


def test_cli_report_writes_compares_and_fails_cleanly(deployed, tmp_path, cli_env):
    old = _write(tmp_path / "old", OLD_MANIFEST)
    run = [sys.executable, "-m", "edgeship", "report"]
    r = subprocess.run([*run, str(old), "--json"], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and Path(doc["path"]) == old / REPORT_HTML and doc["headline"]
    r = subprocess.run([*run, str(old), str(deployed)], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "report-vs-old.html" in r.stdout
    before = (old / REPORT_HTML).read_bytes()
    r = subprocess.run([*run, str(tmp_path / "nothing")], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 3 and "has no manifest.json" in r.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    r = subprocess.run([*run, str(tmp_path / "bad"), str(old)], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 3 and "is not valid JSON" in r.stderr and "manifest.json" in r.stderr
    assert (old / REPORT_HTML).read_bytes() == before  # a failed command changes nothing


def _fonts_and_overflow(page) -> dict:  # noqa: ANN001
    return page.evaluate("""() => {
        const sizes = [];
        for (const el of document.querySelectorAll('main p, main td, main th, main dd, main li, figcaption, h1, h2')) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.height > 0) sizes.push(parseFloat(getComputedStyle(el).fontSize));
        }
        const charts = [...document.querySelectorAll('svg.chart')].map(s => {
            const r = s.getBoundingClientRect();
            return {w: r.width, h: r.height, shapes: s.querySelectorAll('path, use, rect, polygon').length,
                    text: s.querySelectorAll('text').length};
        });
        return {minFont: Math.min(...sizes), pageWidth: document.documentElement.scrollWidth,
                viewport: window.innerWidth, charts};
    }""")


@needs_browser
def test_the_report_renders_offline_in_chromium_at_desktop_and_phone_width(deployed, tmp_path):
    html = (deployed / REPORT_HTML).read_text()
    browser = _Browser.acquire()
    ctx = browser.new_context()
    try:
        requests: list[str] = []
        ctx.route("**/*", lambda r: (requests.append(r.request.url), r.abort()))
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        shots = Path(ARTIFACTS_DIR) if ARTIFACTS_DIR else tmp_path
        shots.mkdir(parents=True, exist_ok=True)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            page.set_content(html, wait_until="load")
            got = _fonts_and_overflow(page)
            assert len(got["charts"]) == 4
            for c in got["charts"]:  # rendered, non-empty, at a readable size
                assert c["w"] >= 300 and c["h"] >= 100 and c["shapes"] > 10 and c["text"] > 3, c
            assert got["minFont"] >= 12, got
            assert got["pageWidth"] <= got["viewport"], "the page itself must not scroll sideways"
            page.screenshot(path=str(shots / f"report-{width}px.png"), full_page=True)
        assert not requests, f"the report asked the network for {requests}"
        assert not errors, errors
        assert (shots / "report-390px.png").stat().st_size > 10_000
    finally:
        _Browser.release(ctx)


def test_the_report_has_no_script_and_names_no_external_resource(deployed):
    html = (deployed / REPORT_HTML).read_text()
    assert "<script" not in html
    assert "script-src" not in html and "default-src 'none'" in html  # CSP forbids scripts and fetches
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert not re.search(r"url\((?!#)", html.split("</style>", 1)[1])


def test_render_is_deterministic(deployed):
    doc = build(deployed)
    assert render(doc) == render(doc)


def test_any_value_of_a_real_manifest_replaced_by_junk_still_renders(deployed, tmp_path):
    """Every path through the page model meets a wrong type somewhere: a crafted manifest gives a
    page with gaps, never a crash."""
    import random

    doc = json.loads((deployed / "manifest.json").read_text())
    paths: list[tuple] = []

    def walk(node, path=()):  # noqa: ANN001
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:3]):
                walk(v, (*path, i))

    walk(doc)
    rng = random.Random(0)
    junk = ["x", None, -1, -0.5, [], {}, 1e308, True, 0, "<b>", [None], {"a": 1}, [-1.0] * 101]
    for trial in range(80):
        m = copy.deepcopy(doc)
        for path in rng.sample(paths[1:], 8):
            node = m
            try:
                for k in path[:-1]:
                    node = node[k]
                node[path[-1]] = copy.deepcopy(rng.choice(junk))  # one list put in two places could hold itself
            except (KeyError, IndexError, TypeError):
                continue
        folder = _write(tmp_path / f"t{trial}", m)
        try:
            render(build(folder))
        except edgeship.FormatError:
            pass  # a manifest with no artifacts list or source object is refused, typed


def test_packaging_refreshes_the_report_with_the_bundle_contents(deployed, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(deployed, out)
    before = (out / REPORT_HTML).read_text()
    assert "No release bundle in this run" in before
    edgeship.package(out, version="1.2.3")
    page = (out / REPORT_HTML).read_text()
    assert "Release 1.2.3" in page and "artifacts/onnx-int8" in page and "integration/python" in page
    assert "as .tar.gz" in page


def test_a_slower_machine_or_noise_is_not_called_a_regression(deployed, tmp_path):
    """Two real runs on this machine differed by +11% (baseline p50) to +50% (cold start) with the
    same fp32 bytes: only what changes beyond the machine's own drift may be marked."""
    m = json.loads((deployed / "manifest.json").read_text())
    for r in m["stages"]["benchmark"]["results"]:
        # the measured spread is this run's (wide when the suite's other worker loads the machine):
        # a steady one (IQR +-2% of p50) so that only the drift logic is under test
        p50 = r["latency_ms"]["p50"]
        r["latency_quantiles_ms"] = [p50 * (1 + 0.0008 * (i - 50)) for i in range(101)]
    old = _write(tmp_path / "old", m)
    slower = copy.deepcopy(m)
    for r in slower["stages"]["benchmark"]["results"]:  # everything 30% slower: the machine
        r["latency_ms"]["p50"] *= 1.3
        r["latency_ms"]["p99"] *= 1.3
        r["cold_start_s"]["total"] *= 1.5
        r["latency_quantiles_ms"] = [x * 1.3 for x in r["latency_quantiles_ms"]]
    res = {r["id"]: r for r in slower["stages"]["benchmark"]["results"]}
    int8 = slower["artifacts"][1]
    int8["digest"] = "0" * 64  # the int8 artifact was rebuilt: its own change is judged after the drift
    res["onnx-int8"]["digest"] = int8["digest"]  # and measured as rebuilt
    res["onnx-int8"]["latency_ms"]["p50"] *= 1.02  # +2% beyond the machine's +30%: not a regression
    doc = build(_write(tmp_path / "new", slower), old)["comparison"]
    rows = {r["id"]: r for r in doc["rows"]}
    assert doc["regressed"] == 0, [r["regressions"] for r in doc["rows"]]
    assert rows["onnx-fp32"]["unchanged"] and not rows["onnx-int8"]["unchanged"]
    assert doc["drift"]["p50_ms"]["ratio"] == pytest.approx(1.3) and doc["drift"]["p50_ms"]["from"] == 2  # fp32 + baseline
    assert rows["onnx-int8"]["changes"]["p50_ms"]["rel_after_drift"] == pytest.approx(0.02, abs=1e-3)
    assert "after the machine's own +30%" in rows["onnx-int8"]["notes"][0]
    # the same +30% on the rebuilt artifact alone is its own
    res["onnx-int8"]["latency_ms"]["p50"] *= 1.3
    res["onnx-int8"]["latency_quantiles_ms"] = [x * 1.35 for x in res["onnx-int8"]["latency_quantiles_ms"]]
    doc = build(_write(tmp_path / "new2", slower), old)["comparison"]
    assert doc["regressed"] == 1 and "p50 latency grew by more than 5%" in doc["rows"][1]["regressions"]
