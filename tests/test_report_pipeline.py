"""The pipeline's HTML report (``OUT/report.html``): every artifact set with its figures, the
pictures (boxes and text of the golden pages, fp32 beside the set served first), links to each
stage's own report, hostile text shown as data, and a page that fits a phone in Chromium."""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import os
import random
import re
import shutil
from pathlib import Path

import pytest

from edgeship.errors import EdgeshipError, InputError, UsageError
from edgeship.manifest import load_manifest
from edgeship.reporting.pipeline import PICTURE_SIDE, pipeline_page, render_pipeline, write_pipeline_report
from edgeship.targets.web import _Browser, chromium_path

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
ARTIFACTS_DIR = os.environ.get("EDGESHIP_TEST_ARTIFACTS")
EVIL = '<script>alert(1)</script>\x1b[31m'


@pytest.fixture(scope="module")
def deployed(tiny_ocr: dict) -> tuple[Path, dict]:
    """A two-stage tiny pipeline deployed to onnx fp32 and fp16, released, and its report
    (conftest's tiny_ocr: deploy wrote report.html)."""
    return tiny_ocr["out"], tiny_ocr["record"]


def _copy(out: Path, dest: Path) -> Path:
    shutil.copytree(out, dest)
    return dest


def _row(html: str, set_id: str) -> str:
    m = re.search(rf'<tr id="set-{re.escape(set_id)}"[^>]*>(.*?)</tr>', html, re.S)
    assert m, f"no row for the set {set_id}"
    return m.group(1)


def _floor(x: float, digits: int) -> str:
    return f"{math.floor(x * 10 ** digits) / 10 ** digits:.{digits}f}"


def _pct(x: float) -> str:  # a share to 2 decimals, never rounded up
    return f"{math.floor(x * 1e4) / 100:.2f}%"


def _svgs(html: str) -> list[tuple[str, str]]:
    """(data-set, the svg's markup) of every page picture, in order."""
    return re.findall(r'<svg class="page" data-set="(\w+)"(.*?)</svg>', html, re.S)


def _golden(out: Path, record: dict) -> tuple[Path, dict, dict]:
    folder = out / record["bundle"]["folder"]
    return folder, json.loads((folder / "pipeline.json").read_text()), json.loads((folder / "golden/pipeline.json").read_text())


def _set_lines(golden: dict, artifacts: dict) -> list:
    key = ",".join(f"{n}={a}" for n, a in sorted(artifacts.items()))
    return golden["sets"][key]


def test_every_artifact_set_is_a_row_with_its_figures(deployed) -> None:
    out, record = deployed
    html = (out / "report.html").read_text()
    assert len(record["sets"]) >= 2
    served_first = json.loads((out / record["bundle"]["folder"] / "pipeline.json").read_text())["set_order"][0]["id"]
    for s in record["sets"]:
        row = _row(html, s["id"])
        assert f">{_pct(s['cer'])}<" in row and f"{s['edits']} of {s['chars']} chars" in row
        assert f"{_floor(s['iou_mean'], 4)} / {_floor(s['iou_min'], 4)}" in row
        assert f"{s['missed']} / {s['extra']}" in row and f"of {s['lines']}" in row
        assert f">{_pct(s['truth_cer'])}<" in row
        assert f">{s['seconds_per_page'] * 1e3:.0f} ms<" in row
        assert ("within" if s["passed"] else "over") in row
        for stage, aid in s["artifacts"].items():  # beside it, each model's own figure
            own = next(r for r in load_manifest(out / "models" / stage).records if r["id"] == aid)
            cos = min(o["cosine"] for o in own["verification"]["outputs"])
            assert f"{aid}</span><br><span class=\"small\">cos {cos:.4f}</span>" in row
        assert ("served 1st" in row) == (s["id"] == served_first)
    assert f"{served_first} reads the evaluation pages with CER" in html  # the headline names it
    # each model's own verification, from its stage's manifest
    for stage in record["stages"]:
        m = load_manifest(out / "models" / stage)
        for rec in m.records:
            own = re.search(rf'<tr id="own-{stage}-{rec["id"]}">(.*?)</tr>', html, re.S)
            assert own, (stage, rec["id"])
            cos = min(o["cosine"] for o in rec["verification"]["outputs"])
            assert "verified" in own.group(1) and (_floor(cos, 6) if cos < 1 else "1.000000") in own.group(1)
    # the data, and the warning a small evaluation set gets
    assert record["data"]["evaluation"] in html and record["data"]["calibration"] in html
    assert (f'<p class="warn">⚠ the evaluation holds {record["reference"]["lines"]} inputs cut from only '
            f'{record["reference"]["pages"]} distinct images') in html
    # the release
    b = record["bundle"]
    assert f"Release {b['version']}" in html and f"edgeship verify {b['tarball']} --key {b['public_key']}" in html


def test_the_pictures_draw_one_box_per_line_fp32_beside_the_set_served_first(deployed) -> None:
    out, record = deployed
    html = (out / "report.html").read_text()
    _, pdoc, golden = _golden(out, record)
    first = pdoc["set_order"][0]
    assert first["artifacts"] != golden["expected_from"], "the tiny deploy ships an fp16 set before fp32"
    low = _set_lines(golden, first["artifacts"])
    svgs = _svgs(html)
    assert [k for k, _ in svgs] == ["fp32", "low"] * len(golden["images"])
    for k, im in enumerate(golden["images"]):
        (_, fp32_svg), (_, low_svg) = svgs[2 * k], svgs[2 * k + 1]
        assert fp32_svg.count("<polygon") == len(im["expected"]["lines"]) > 0
        assert low_svg.count("<polygon") == len(low[k]) > 0
        h, w = im["trace"]["page_shape"]
        assert f'viewBox="0 0 {w} {h}"' in fp32_svg
        # the page is embedded once (a downscaled PNG) and drawn again by reference
        src = re.search(r'<image id="pg-(\d+)" href="data:image/png;base64,([A-Za-z0-9+/=]+)"', fp32_svg)
        assert src and src.group(1) == str(k) and f'<use href="#pg-{k}"/>' in low_svg
        from PIL import Image

        png = Image.open(io.BytesIO(base64.b64decode(src.group(2))))
        assert png.format == "PNG" and max(png.size) == min(PICTURE_SIDE, max(w, h))
        for ln in im["expected"]["lines"]:
            assert ln["text"] in html
    assert len(html) < 600_000


def test_a_line_read_differently_is_marked_with_the_characters_that_differ(deployed, tmp_path: Path) -> None:
    out = _copy(deployed[0], tmp_path / "out")
    record = deployed[1]
    folder, pdoc, golden = _golden(out, record)
    key = ",".join(f"{n}={a}" for n, a in sorted(pdoc["set_order"][0]["artifacts"].items()))
    # the set served first reads exactly as fp32 ...
    low = golden["sets"][key] = [copy.deepcopy(im["expected"]["lines"]) for im in golden["images"]]
    fp32_text = low[0][0]["text"]
    low[0][0]["text"] = fp32_text[:2] + "Q" + fp32_text[3:]  # ... but for one character of one line
    low[1][0]["box"] = [[x + 5000, y] for x, y in low[1][0]["box"]]  # and one box elsewhere on page 1
    (folder / "golden/pipeline.json").write_text(json.dumps(golden))
    html = write_pipeline_report(out, record).read_text()
    svgs = _svgs(html)
    assert svgs[1][1].count('class="box differs"') == 1 and svgs[0][1].count('class="box differs"') == 1
    assert "<mark>Q</mark>" in html and f'fp32: <span class="text">{fp32_text}</span>' in html
    assert "page-0: <span class=\"bad\">1 line(s) differ</span>" in html
    assert "page-1: <span class=\"bad\">2 line(s) differ</span>" in html  # extra there, missed here
    assert "missed by" in html and "not in fp32" in html


def test_links_to_each_stage_report_exist_and_resolve(deployed) -> None:
    out, record = deployed
    html = (out / "report.html").read_text()
    links = re.findall(r'<a href="([^"]+)"', html)
    assert sorted(links) == sorted(f"models/{n}/report.html" for n in record["stages"])
    for href in links:
        target = (out / href).resolve()
        assert target.is_file() and target.is_relative_to(out.resolve())
        assert "<html" in target.read_text()[:200]


def test_hostile_text_in_the_record_and_the_release_is_shown_as_data(deployed, tmp_path: Path) -> None:
    out = _copy(deployed[0], tmp_path / "out")
    record = copy.deepcopy(deployed[1])
    record["pipeline"]["name"] = EVIL
    record["data"]["evaluation"] = '<img src="http://example.com/x.png">'
    record["sets"][0]["id"] = EVIL
    record["stages"]["rec"]["out"] = "../../etc"  # a folder outside OUT: no link, no read
    record["bundle"]["left_out"] = [{"id": EVIL, "status": "x", "why": "<b>bold</b>", "fix": ""}]
    folder, _, golden = _golden(out, record)
    golden["images"][0]["expected"]["lines"][0]["text"] = EVIL
    golden["images"][1]["file"] = "../../../../etc/passwd"
    (folder / "golden/pipeline.json").write_text(json.dumps(golden))
    html = write_pipeline_report(out, record).read_text()
    body = html.split("</style>", 2)[2]
    assert "<script" not in body and "<img" not in body and "<b>bold" not in body and "\x1b" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;b&gt;bold&lt;/b&gt;" in body
    assert 'href="../' not in body and "models/det/report.html" in body
    assert "page-1: its image is not a file inside the release" in body
    assert len(_svgs(html)) == 2  # page-0 drawn, page-1 not (its lines are still listed)


def test_mixed_and_over_budget_sets_are_explained(deployed, tmp_path: Path) -> None:
    out, record = deployed
    rec = copy.deepcopy(record)
    base = next(s for s in rec["sets"] if s["id"] == "onnx-fp32")
    rec["stages"]["det"]["artifacts"].append("onnx-int8")
    rec["stages"]["rec"]["artifacts"].append("onnx-int8")
    rec["sets"] += [
        {**base, "id": "onnx-int8", "precision": "int8", "artifacts": {"det": "onnx-int8", "rec": "onnx-int8"},
         "cer": 0.0625, "passed": False},
        {**base, "id": "onnx-int8-rec-fp32", "precision": "int8", "mixed": True,
         "artifacts": {"det": "onnx-int8", "rec": "onnx-fp32"}, "cer": 0.00390625, "passed": True},
        {**base, "id": "onnx-uint8-mixed", "precision": "uint8", "mixed": True,
         "artifacts": {"det": "onnx-uint8", "rec": "onnx-fp32"}, "cer": 0.0, "missed": 4, "extra": 1, "passed": False},
        {**{k: base[k] for k in ("target", "mixed")}, "id": "onnx-fp16x", "precision": "fp16x",
         "artifacts": {"det": "onnx-fp16x", "rec": "onnx-fp16x"}, "error": "<b>no runtime</b> for it", "passed": False},
    ]
    html = render_pipeline(pipeline_page(out, rec))
    assert "over</span>: CER 6.25% is over the budget (2.00%)" in _row(html, "onnx-int8")
    mixed = _row(html, "onnx-int8-rec-fp32")
    assert '<span class="warn">onnx-fp32</span>' in mixed and "within" in mixed and ">0.39%<" in mixed
    assert ("<b>onnx-int8-rec-fp32</b> is mixed: rec back at fp32: onnx-int8, every stage at int8, read CER 6.25%; "
            "with it at fp32 the set was measured again.") in html
    assert "rec at fp32: it has no uint8 artifact" in html
    assert f"5 line(s) missed or extra, more than {max(1, base['lines'] // 20)} of {base['lines']}" in html
    assert "did not run: &lt;b&gt;no runtime&lt;/b&gt; for it" in _row(html, "onnx-fp16x")
    assert "not in its manifest" in _row(html, "onnx-int8")  # the stage's manifest has no int8 artifact


def test_a_failed_stage_without_a_release_still_renders_and_says_why(deployed, tmp_path: Path) -> None:
    out = _copy(deployed[0], tmp_path / "out")
    record = copy.deepcopy(deployed[1])
    del record["bundle"], record["sets"], record["reference"]
    record["stages"]["rec"] = {"ok": False, "out": "models/rec", "artifacts": [], "failed": [],
                               "error": {"message": "the rec model <x> could not be read", "hint": "give another"}}
    shutil.rmtree(out / "models" / "rec")
    html = write_pipeline_report(out, record).read_text()
    assert "The rec stage failed: the rec model &lt;x&gt; could not be read (give another)" in html
    assert "No artifact set was read end to end in this run: the pipeline cannot run without its rec model" in html
    assert "No release in this run" in html and "No pictures: no release in this run" in html
    assert "models/rec has no manifest.json" in html
    assert html.count('<a href="') == 1  # the det stage's report only


def test_the_report_is_rebuilt_from_the_folder_alone_and_refuses_what_is_not_one(deployed, tmp_path: Path) -> None:
    out, record = deployed
    before = (out / "report.html").read_text()
    assert write_pipeline_report(out).read_text() == before  # from OUT/pipeline.json, to the same bytes
    assert "<script" not in before and "default-src 'none'" in before and "script-src" not in before
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", before)
    with pytest.raises(UsageError, match="is not a folder"):
        write_pipeline_report(tmp_path / "nothing")
    with pytest.raises(InputError, match="no such pipeline record"):
        write_pipeline_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_any_value_of_the_record_replaced_by_junk_still_renders(deployed) -> None:
    out, record = deployed
    paths: list[tuple] = []

    def walk(node, path=()):  # noqa: ANN001
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:3]):
                walk(v, (*path, i))

    walk(record)
    rng = random.Random(0)
    junk = ["x", None, -1, 0.5, [], {}, 1e308, True, "<i>", [None], {"a": 1}, "../..", float("nan")]
    for _ in range(40):
        r = copy.deepcopy(record)
        for path in rng.sample(paths[1:], 6):
            node = r
            try:
                for k in path[:-1]:
                    node = node[k]
                node[path[-1]] = copy.deepcopy(rng.choice(junk))
            except (KeyError, IndexError, TypeError):
                continue
        try:
            page = render_pipeline(pipeline_page(out, r))
        except EdgeshipError:
            continue  # a typed refusal is fine; anything else is a bug
        assert "<i>" not in page.split("</style>", 2)[2]


def _measure(page) -> dict:  # noqa: ANN001
    return page.evaluate("""() => {
        const sizes = [];
        for (const el of document.querySelectorAll('main p, main td, main th, main dd, main li, h1, h2, h3, h4')) {
            const r = el.getBoundingClientRect();
            if (r.width > 0 && r.height > 0) sizes.push(parseFloat(getComputedStyle(el).fontSize));
        }
        const svgs = [...document.querySelectorAll('svg.page')].map(s => {
            const r = s.getBoundingClientRect();
            return {w: r.width, h: r.height, right: r.right};
        });
        return {minFont: Math.min(...sizes), pageWidth: document.documentElement.scrollWidth,
                viewport: window.innerWidth, svgs};
    }""")


@needs_browser
def test_the_pipeline_report_renders_offline_in_chromium_at_desktop_and_phone_width(deployed, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    out, _ = deployed
    html = (out / "report.html").read_text()
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
            got = _measure(page)
            assert got["pageWidth"] <= got["viewport"], f"the page scrolls sideways at {width} px: {got}"
            assert got["minFont"] >= 12, got
            assert len(got["svgs"]) == 4
            for s in got["svgs"]:  # side by side at 1280, one above the other at 390; never wider than the page
                assert s["w"] >= (500 if width == 1280 else 300) and s["h"] > 0.5 * s["w"] and s["right"] <= width, s
            # the second picture draws the same page (by reference) under its own boxes
            a, b = (np.asarray(Image.open(io.BytesIO(el.screenshot())).convert("L"), np.float32)
                    for el in page.query_selector_all("svg.page")[:2])
            assert a.std() > 5 and a.shape == b.shape and np.abs(a - b).mean() < 10
            page.screenshot(path=str(shots / f"report-pipeline-{width}px.png"), full_page=True)
        assert not requests, f"the report asked the network for {requests}"
        assert not errors, errors
    finally:
        _Browser.release(ctx)


def test_a_release_that_serves_fp32_only_shows_one_reading_per_page(deployed, tmp_path: Path) -> None:
    out = _copy(deployed[0], tmp_path / "out")
    record = deployed[1]
    folder, pdoc, golden = _golden(out, record)
    pdoc["set_order"] = [s for s in pdoc["set_order"] if s["id"] == "onnx-fp32"]
    (folder / "pipeline.json").write_text(json.dumps(pdoc))
    html = write_pipeline_report(out, record).read_text()
    assert [k for k, _ in _svgs(html)] == ["fp32"] * len(golden["images"])
    assert "No set at a lower precision is within the budget: the release serves fp32 only." in html
    assert "onnx-fp32 reads the evaluation pages with CER 0.00%" in html and "served 1st" in _row(html, "onnx-fp32")
