"""The OCR page of a pipeline bundle (integration/web/ocr.html + edgeship-ocr.js) in headless
Chromium: the JavaScript glue reads what the Python glue (edgeship.tasks.ocr) reads from the same
model outputs (the detector's input bit for bit, the boxes as identical integers, the turned
flags, the texts and their scores), and the page, on real onnxruntime-web sessions, reads the
text Python reads with native ONNX Runtime, following each stage's fallback order."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image, ImageDraw, ImageFont

from edgeship.bundle.ocr_web import OCR_BUNDLE_SCRIPT, OCR_PAGE, OCR_SCRIPT, write_ocr_web
from edgeship.targets.web import _Browser, chromium_path, serve_folder, vendor_runtime
from edgeship.tasks import TextDetection, TextDirection, TextRecognition
from edgeship.tasks.ocr import Stages, crop, det_input, prepare_page, read_characters, read_page
from tinyocr import CHARACTERS, tiny_page, tiny_rec, write_tiny_ocr

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
ROOT = Path(__file__).resolve().parent.parent
TINY_TASKS = {"det": TextDetection(limit_side_len=96, box_thresh=0.3), "cls": TextDirection(),
              "rec": TextRecognition(text_score=0.0)}


class Tab:
    """A page of ``root`` (and of ``pages``, served from memory) on loopback in headless Chromium;
    every request outside its origin is blocked and remembered, every page error kept."""

    def __init__(self, root: Path, path: str, pages: dict[str, bytes] | None = None) -> None:
        self.server = serve_folder(root, pages or {}, isolated=False)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.errors: list[str] = []

        def route(r):  # noqa: ANN001
            if r.request.url.startswith(self.origin + "/"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(self.origin + path)

    def __enter__(self) -> Tab:
        return self

    def __exit__(self, *exc: object) -> None:
        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()
        assert not self.outside, f"the page asked for {self.outside}"


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def sessions(models: dict[str, Path]) -> dict[str, object]:
    """Native ONNX Runtime, one thread, each model as the glue calls it."""
    import onnxruntime as ort

    out = {}
    for stage, path in models.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        out[stage] = _runner(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
    return out


def _runner(session: object) -> object:
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def python_stages(models: dict[str, Path], tasks: dict[str, object], characters: tuple[str, ...]) -> Stages:
    run = sessions(models)
    return Stages(det=run["det"], rec=run["rec"], cls=run.get("cls"), det_task=tasks["det"], rec_task=tasks["rec"],
                  cls_task=tasks.get("cls") if "cls" in run else None, characters=characters)


# ---- the glue, on the golden trace (no model runs in the page) ---------------------------------

def comb_page() -> np.ndarray:
    """A line of text and two bars with ticks, one with its ticks above (the tiny direction model
    says "180" for it) and one below: a page whose 180-degree turn swaps which line is turned."""
    im = Image.new("RGB", (220, 130), (235, 235, 230))
    d = ImageDraw.Draw(im)
    d.text((12, 8), "abcdefghij", font=ImageFont.load_default(16), fill=(20, 20, 30))
    for y0, up in ((40, True), (85, False)):
        bar, ticks = ((y0 + 10, y0 + 19), (y0, y0 + 9)) if up else ((y0, y0 + 9), (y0 + 10, y0 + 19))
        d.rectangle([30, bar[0], 180, bar[1]], fill=(20, 20, 30))
        for x in range(30, 181, 6):
            d.line([x, ticks[0], x, ticks[1]], fill=(20, 20, 30))
    return np.asarray(im)


def _blocks(x: np.ndarray) -> np.ndarray:
    """A detector's map for input ``x``: a row of blocks across the middle, nothing elsewhere."""
    h, w = x.shape[2:]
    m = np.full((1, 1, h, w), 0.02, np.float32)
    for x0 in range(8, w - 30, 47):
        m[..., int(0.42 * h):int(0.56 * h), x0:x0 + 30] = 0.9
    return m


GLUE_PAGE = b"""<!doctype html><meta charset="utf-8"><title>glue</title>
<script type="module">import * as glue from "./integration/web/edgeship-ocr.js"; window.glue = glue;</script>"""

#: in the page: edgeship-ocr.js's readPage on the page's pixels, each model replaced by the outputs
#: the Python glue's trace recorded (the calls it gets are recorded in turn)
RUN_ON_TRACE = """async c => {
  const o = window.glue;
  const bytes = s => Uint8Array.from(atob(s), ch => ch.charCodeAt(0));
  const f32 = s => new Float32Array(bytes(s).buffer);
  const b64 = a => { const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength); let s = "";
    for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
    return btoa(s); };
  const calls = [];
  let ci = 0, ri = 0;
  const stages = {
    det: async x => { calls.push(["det", [], x.dims]); return {data: f32(c.det.data), dims: c.det.dims}; },
    cls: c.cls ? async x => { const t = c.cls[ci++]; calls.push(["cls", x.index, x.dims]);
                              return {data: f32(t.data), dims: t.dims}; } : null,
    rec: async x => { const t = c.rec[ri++]; calls.push(["rec", x.index, x.dims]); return {data: f32(t.data), dims: t.dims}; },
    detTask: c.tasks.det, clsTask: c.tasks.cls, recTask: c.tasks.rec, characters: o.readCharacters(c.characters)};
  const r = await o.readPage({data: bytes(c.rgb), width: c.w, height: c.h, channels: 3}, stages, true);
  return {det_input_shape: r.trace.det_input_shape, det_input: b64(r.trace.det_input.data), page_shape: r.trace.page_shape,
          boxes_page: r.trace.boxes_page, crops: (r.trace.crops || []).map(k => [k.h, k.w]), calls, lines: r.lines};
}"""


def trace_case(rgb: np.ndarray, trace: dict, tasks: dict[str, dict], characters: str) -> dict:
    """What RUN_ON_TRACE takes: the page and the model outputs of a read_page trace."""
    def tensor(a: np.ndarray) -> dict:
        return {"data": b64(np.asarray(a, np.float32)), "dims": list(np.shape(a))}

    return {"rgb": b64(rgb), "h": rgb.shape[0], "w": rgb.shape[1], "characters": characters, "tasks": tasks,
            "det": tensor(trace["det_map"]), "cls": [tensor(c["scores"]) for c in trace["cls"]] if "cls" in tasks else None,
            "rec": [tensor(r["logits"]) for r in trace.get("rec", [])]}


def _glue_folder(folder: Path) -> Path:
    """A folder holding integration/web/edgeship-ocr.js as write_ocr_web writes it."""
    pipeline = {"kind": "ocr", "name": "glue", "stages": ["det", "rec"],
                "fallback_order": {"det": ["det-web-fp32"], "rec": ["rec-web-fp32"]}}
    bundle = {"name": "glue", "version": "0.0.0", "artifacts": [{"id": "det-web-fp32", "format": "web"},
                                                                 {"id": "rec-web-fp32", "format": "web"}]}
    written = write_ocr_web(folder, pipeline, bundle)
    assert sorted(p.relative_to(folder).as_posix() for p in written) == sorted([OCR_PAGE, OCR_SCRIPT, OCR_BUNDLE_SCRIPT])
    return folder


@needs_browser
def test_the_js_glue_reads_what_the_python_glue_reads_from_the_same_model_outputs(tmp_path):
    write_tiny_ocr(tmp_path / "models")
    models = {s: tmp_path / "models" / f"{s}.onnx" for s in ("det", "cls", "rec")}
    characters = read_characters("\n".join(CHARACTERS))
    # the tiny direction model's "180" scores reach 0.72 on the comb page: turned above 0.6
    tasks = {**TINY_TASKS, "cls": TextDirection(thresh=0.6)}
    comb = comb_page()
    # a page larger than max_side_len is shrunk first: its boxes map back by 130/96 (float32 maths)
    shrink = TextDetection(limit_side_len=64, box_thresh=0.3, max_side_len=160)
    # and a detector that marks a row of blocks (many boxes) on a page both shrunk and letterboxed
    strip = TextDetection(limit_side_len=96, box_thresh=0.3, max_side_len=600)
    cases = {"page-0": (tiny_page(0), True, None, None), "page-1 without cls": (tiny_page(1), False, None, None),
             "comb": (comb, True, None, None), "comb turned 180": (np.ascontiguousarray(comb[::-1, ::-1]), True, None, None),
             "wide and short (letterboxed)": (tiny_page(5, lines=1, size=(21, 400)), True, None, None),
             "vertical lines (tall crops)": (np.ascontiguousarray(np.rot90(tiny_page(6, lines=2))), True, None, None),
             "shrunk": (tiny_page(4, size=(130, 210)), True, shrink, None),
             "blocks, shrunk and letterboxed": (tiny_page(8, lines=1, size=(70, 900)), True, strip, _blocks)}
    _glue_folder(tmp_path / "site")
    seen = {"turned": 0, "letterbox": 0, "tall": 0, "shrunk": 0, "many": 0}
    with Tab(tmp_path / "site", "/glue.html", {"/glue.html": GLUE_PAGE}) as tab:
        tab.page.wait_for_function("window.glue", timeout=30_000)
        for name, (rgb, with_cls, det, det_model) in cases.items():
            tasks["det"] = det or TINY_TASKS["det"]
            stage_models = {k: v for k, v in models.items() if with_cls or k != "cls"}
            py = python_stages(stage_models, tasks, characters)
            py.det = det_model or py.det
            res = read_page(rgb, py, trace=True)
            t = res.trace
            used = {k: v.model_dump(mode="json") for k, v in tasks.items() if with_cls or k != "cls"}
            got = tab.page.evaluate(RUN_ON_TRACE, trace_case(rgb, t, used, "\n".join(CHARACTERS)))
            page, mapping = prepare_page(np.ascontiguousarray(rgb[..., ::-1]), tasks["det"])
            x = det_input(page, tasks["det"])
            assert got["page_shape"] == t["page_shape"] and got["det_input_shape"] == t["det_input_shape"], name
            assert base64.b64decode(got["det_input"]) == x.tobytes(), f"{name}: the detector's input differs"
            assert got["boxes_page"] == t["boxes_page"], name  # identical integers
            want_calls = [["det", [], t["det_input_shape"]]]
            want_calls += [["cls", c["index"], [len(c["index"]), 3, 48, 192]] for c in t.get("cls", [])]
            want_calls += [["rec", r["index"], r["shape"]] for r in t.get("rec", [])]
            assert got["calls"] == want_calls, name  # the same batches, in the same order, of the same shapes
            want = [ln.to_dict() | {"score": ln.score} for ln in res.lines]
            assert got["lines"] == want, name  # boxes mapped back, texts, scores (to the last bit), turned flags
            assert t["boxes_page"], f"{name}: the tiny detector found nothing (the case checks nothing)"
            seen["turned"] += sum(ln.turned for ln in res.lines)
            seen["letterbox"] += mapping["top"] > 0 and (mapping["ratio_h"], mapping["ratio_w"]) != (1.0, 1.0)
            seen["shrunk"] += max(rgb.shape[:2]) > tasks["det"].max_side_len and len(res.lines) >= 2
            seen["many"] += len(res.lines) >= 10 and mapping["top"] > 0 and float(np.float32(mapping["ratio_w"])) != mapping["ratio_w"]
            assert got["crops"] == [list(crop(page, np.asarray(b, np.float32)).shape[:2]) for b in t["boxes_page"]], name
            seen["tall"] += any(np.hypot(*np.subtract(b[0], b[3])) >= 1.5 * np.hypot(*np.subtract(b[0], b[1]))
                                for b in t["boxes_page"])
        assert not tab.errors, tab.errors
    # the cases reach what they are named for: a turned crop, a letterboxed page, a crop turned by 90
    assert all(seen.values()), seen


#: in the page: the numeric helpers and the glue's steps on arrays Python made
STEPS = """c => {
  const o = window.glue;
  const bytes = s => Uint8Array.from(atob(s), ch => ch.charCodeAt(0));
  const f32 = s => new Float32Array(bytes(s).buffer);
  const cropDiff = c.crops.map(k => {
    const r = o.crop(o.image(k.h, k.w, 3, bytes(k.img)), k.box), want = bytes(k.out);
    let n = 0;
    for (let i = 0; i < want.length; i++) n += r.data[i] !== want[i];
    return {shape: [r.h, r.w], differ: n};
  });
  return {rint: c.halves.map(o.rint), py: c.pairs.map(([x, y]) => o.pyHypot(x, y)),
          np: c.pairs.map(([x, y]) => o.npHypot(x, y)), sums: c.sums.map(a => o.npSum(Float64Array.from(a))),
          argsort: o.argsortStable(c.ties), crops: cropDiff,
          maps: c.maps.map(m => o.dbBoxes({data: f32(m.data), dims: m.dims}, m.ph, m.pw, c.det)),
          offsets: c.offsets.map(k => o.roundOffset(k.path, k.delta)),
          distances: c.grown.map(k => o.unclipDistance(k.path, c.det.unclip_ratio)),
          ctc: o.ctcDecode({data: f32(c.ctc.data), dims: c.ctc.dims}, o.readCharacters(c.characters))};
}"""


@needs_browser
def test_the_glue_computes_as_numpy_and_python_do(tmp_path, monkeypatch):
    """Halves round to even; np.hypot is glibc's (not correctly rounded: 1 ulp off in about 1 pair
    in 250), math.hypot CPython's; a float64 sum is numpy's pairwise sum; argsort is stable; the
    map is compared with the threshold in float32; DB boxes of rotated regions are identical
    integers, and so are the round offsets that grow them (pyclipper's rules: the arcs, the ties
    rounded away from zero), the distances they are grown by identical doubles; CTC scores
    identical doubles; crops of slanted boxes, sampled at the mapped position, identical bytes (a
    perspective transform's last bits, LAPACK's there, could move a value across a half)."""
    import math

    from edgeship.tasks.ocr import ctc_decode, db_boxes
    from ocr_cases import blob_map, made_offsets, record_offsets, slanted_crops

    rng = np.random.default_rng(7)
    halves = [k + 0.5 for k in range(-6, 7)] + [2.4999999999999996, -0.5000000000000001, 1e15 + 0.5]
    pairs = [(float(a), float(b)) for a, b in rng.integers(0, 3000, (4000, 2))]
    pairs += [(float(a), float(b)) for a, b in rng.normal(0, 50, (4000, 2))] + [(0.0, 0.0), (3.0, 0.0), (1e-300, 2e-300)]
    sums = [rng.normal(0, 1, n).tolist() for n in (0, 1, 7, 8, 9, 16, 17, 127, 128, 129, 255, 256, 1000, 3001)]
    ties = rng.integers(0, 4, 40).astype(float).tolist()
    det = TextDetection(box_thresh=0.3)
    maps = [blob_map(rng) for _ in range(40)]
    edge = np.zeros((64, 96), np.float32)  # a block exactly at the threshold (as float32) beside one above it
    edge[10:30, 10:50], edge[10:30, 50:90] = np.float32(det.thresh), 0.9
    maps.append(edge)
    sizes = [(int(m.shape[0] * rng.uniform(0.5, 3)), int(m.shape[1] * rng.uniform(0.5, 3))) for m in maps]
    preds = rng.dirichlet(np.full(len(CHARACTERS) + 2, 0.3), (30, 60)).astype(np.float32)
    crops = slanted_crops(rng)
    grown = record_offsets(monkeypatch)  # what db_boxes grows each box by, and the offsets it gets
    want_maps = [db_boxes(m[None, None], ph, pw, det) for m, (ph, pw) in zip(maps, sizes)]
    offsets = grown + made_offsets(rng)
    case = {"halves": halves, "pairs": pairs, "sums": sums, "ties": ties, "det": det.model_dump(mode="json"),
            "crops": [{"img": b64(c["img"]), "h": c["img"].shape[0], "w": c["img"].shape[1], "box": c["box"].tolist(),
                       "out": b64(c["out"])} for c in crops],
            "maps": [{"data": b64(m), "dims": [1, 1, *m.shape], "ph": ph, "pw": pw} for m, (ph, pw) in zip(maps, sizes)],
            "offsets": [{"path": c["path"], "delta": c["delta"]} for c in offsets], "grown": grown,
            "ctc": {"data": b64(preds), "dims": list(preds.shape)}, "characters": "\n".join(CHARACTERS)}
    with Tab(_glue_folder(tmp_path), "/glue.html", {"/glue.html": GLUE_PAGE}) as tab:
        tab.page.wait_for_function("window.glue", timeout=30_000)
        got = tab.page.evaluate(STEPS, case)
    assert got["rint"] == np.rint(halves).tolist()
    assert got["py"] == [math.hypot(a, b) for a, b in pairs]
    assert got["np"] == [float(np.hypot(a, b)) for a, b in pairs]
    assert sum(math.hypot(a, b) != float(np.hypot(a, b)) for a, b in pairs) > 0  # the two differ: both matter
    assert got["sums"] == [float(np.sum(np.asarray(s, np.float64))) for s in sums]
    assert got["argsort"] == np.argsort(ties, kind="stable").tolist()
    for k, (boxes, scores) in enumerate(want_maps):
        assert got["maps"][k] == [[b.tolist() for b in boxes], scores], k
    assert sum(len(b) for b, _ in want_maps) > 60 and len(got["maps"][-1][0]) == 1  # the block at the threshold is not text
    assert len(grown) > 60 and got["distances"] == [c["delta"] for c in grown]
    bad = [(c, g) for c, g in zip(offsets, got["offsets"]) if g != c["want"]]
    assert not bad, f"{len(bad)} of {len(offsets)} offsets differ, the first {bad[0]}"
    assert got["ctc"] == [list(r) for r in ctc_decode(preds, read_characters("\n".join(CHARACTERS)))]
    assert [c["shape"] for c in got["crops"]] == [list(c["out"].shape[:2]) for c in crops]
    values = sum(c["out"].size for c in crops)
    differ = sum(c["differ"] for c in got["crops"])
    assert differ <= values * 1e-5, f"{differ} of {values} crop values differ"


# ---- the page, end to end, on onnxruntime-web ------------------------------------------------

def _npy(bundle: Path, a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    data = buf.getvalue()
    rel = f"golden/t/{hashlib.sha256(data).hexdigest()[:16]}.npy"
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(data)
    return rel


def pipeline_fixture(bundle: Path, models: dict[str, Path], tasks: dict[str, object], characters: str,
                     golden_page: np.ndarray, extra: dict[str, tuple[bytes, str | None]] | None = None,
                     sets: list[dict[str, str]] | None = None) -> dict[str, Path]:
    """A pipeline release folder laid out as ``edgeship deploy PIPELINE.yaml`` lays one out (see
    bundle/pipeline.py), with what the page reads: per stage artifacts/<stage>-onnx-fp32/ and
    <stage>-web-fp32/ (model.onnx and, for web, the vendored onnxruntime-web as the web target
    writes it), bundle.json, pipeline.json, characters.txt, golden/golden.json (each artifact's
    inputs on ``golden_page`` and its native ONNX Runtime outputs) and the page.

    ``extra``: more web artifacts, before the others in their stage's fallback order: id ->
    (model bytes, the artifact whose golden vectors it must meet, or None for none). ``sets``:
    pipeline.json's set_order ({stage: artifact id} each; None: no set order)."""
    stages = list(models)
    fed: dict[str, list[np.ndarray]] = {s: [] for s in stages}
    run = sessions(models)

    def recording(stage: str):  # noqa: ANN202
        return lambda x: fed[stage].append(x) or run[stage](x)

    read_page(golden_page, Stages(det=recording("det"), rec=recording("rec"), cls=recording("cls") if "cls" in run else None,
                                  det_task=tasks["det"], rec_task=tasks["rec"], cls_task=tasks.get("cls"),
                                  characters=read_characters(characters)))
    artifacts, order, golden = [], {s: [f"{s}-onnx-fp32"] for s in stages}, {"schema": "edgeship.golden/1", "artifacts": {}}
    for aid in extra or {}:
        order[aid.split("-", 1)[0]].append(aid)
    for s in stages:
        order[s].append(f"{s}-web-fp32")
        for aid in order[s]:
            d = bundle / "artifacts" / aid
            d.mkdir(parents=True)
            data, expect = (extra or {}).get(aid, (models[s].read_bytes(), aid))
            (d / "model.onnx").write_bytes(data)
            fmt = aid.split("-")[1]
            if fmt == "web":
                vendor_runtime(d / "ort")
            artifacts.append({"id": aid, "target": fmt, "format": fmt, "precision": aid.rsplit("-", 1)[1], "stage": s,
                              "path": f"artifacts/{aid}", "model_file": f"artifacts/{aid}/model.onnx",
                              "task": tasks[s].model_dump(mode="json")})
            if expect is not None:
                x = fed[s][0]
                golden["artifacts"][aid] = {"inputs": {f"{s}-0": [_npy(bundle, x)]},
                                            "outputs": {f"{s}-0": [_npy(bundle, run[s](x))]},
                                            "expected_from": f"{expect} on native ONNX Runtime",
                                            "tolerance": {"cosine_min": 0.9999, "max_abs_rel_to_scale": 1e-3}}
    (bundle / "characters.txt").write_text(characters)
    pipeline = {"schema": "edgeship.pipeline/1", "kind": "ocr", "name": "tiny-ocr", "stages": stages,
                "tasks": {s: tasks[s].model_dump(mode="json") for s in stages}, "fallback_order": order,
                **({"set_order": [{"id": f"set-{k}", "artifacts": a} for k, a in enumerate(sets)]} if sets else {})}
    doc = {"schema": "edgeship.bundle/1", "name": "tiny-ocr", "version": "0.1.0", "pipeline": "pipeline.json",
           "artifacts": artifacts, "fallback_order": [i for s in stages for i in order[s]], "golden": "golden/golden.json"}
    (bundle / "golden" / "golden.json").write_text(json.dumps(golden, indent=1))
    (bundle / "pipeline.json").write_text(json.dumps(pipeline, indent=1))
    (bundle / "bundle.json").write_text(json.dumps(doc, indent=1))
    written = write_ocr_web(bundle, pipeline, doc)
    assert [p.relative_to(bundle).as_posix() for p in written] == [OCR_SCRIPT, OCR_BUNDLE_SCRIPT, OCR_PAGE]
    return {s: bundle / "artifacts" / f"{s}-web-fp32" / "model.onnx" for s in stages}


def save_png(rgb: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def page_reads(tab: Tab, urls: list[str], timeout: float = 120_000) -> list[dict]:
    tab.page.wait_for_function("window.edgeshipReady", timeout=timeout)
    ready = tab.page.evaluate("window.edgeshipReady")
    assert "error" not in ready, ready
    return [tab.page.evaluate("u => window.edgeshipOcr(u)", u) for u in urls]


def assert_same_reading(got: dict, want: list, where: str) -> None:
    assert [ln["text"] for ln in got["lines"]] == [ln.text for ln in want], where
    assert [ln["turned"] for ln in got["lines"]] == [ln.turned for ln in want], where
    assert [ln["box"] for ln in got["lines"]] == [ln.box for ln in want], where
    np.testing.assert_allclose([ln["score"] for ln in got["lines"]], [ln.score for ln in want], atol=1e-4, err_msg=where)


@needs_browser
@pytest.mark.parametrize("stages, with_sets", [(("det", "cls", "rec"), True), (("det", "rec"), False)],
                         ids=["three-stage set order", "two-stage per stage"])
def test_the_page_reads_what_python_reads_and_follows_the_fallback_order(tmp_path, stages, with_sets):
    write_tiny_ocr(tmp_path / "models")
    characters = (tmp_path / "models" / "characters.txt").read_text()
    tasks = {s: TINY_TASKS[s] for s in stages}
    bundle = tmp_path / "bundle"
    # tried first: a det model that does not load, a rec model that misses its golden vectors
    other = onnx.ModelProto()
    other.CopyFrom(tiny_rec(seed=1))
    extra = {"det-web-int8": (b"not an onnx model", "det-web-fp32"),
             "rec-web-int8": (other.SerializeToString(), "rec-web-fp32")}
    # sets as a deploy measures them: web int8, then one with det back at fp32 (mixed), onnx, web fp32
    fp32 = {s: f"{s}-web-fp32" for s in stages}
    sets = [{**fp32, "det": "det-web-int8", "rec": "rec-web-int8"}, {**fp32, "rec": "rec-web-int8"},
            {s: f"{s}-onnx-fp32" for s in stages}, fp32] if with_sets else None
    models = pipeline_fixture(bundle, {s: tmp_path / "models" / f"{s}.onnx" for s in stages}, tasks, characters,
                              tiny_page(0), extra, sets)
    py = python_stages(models, tasks, read_characters(characters))
    pages = [tiny_page(1), tiny_page(2), tiny_page(5, lines=1, size=(22, 400))]
    urls = [f"/golden/pages/page-{k}.png" for k in range(len(pages))]
    for rgb, url in zip(pages, urls):
        save_png(rgb, bundle / url.lstrip("/"))
    t0 = time.monotonic()
    with Tab(bundle, "/" + OCR_PAGE) as tab:
        results = page_reads(tab, urls)
        ready = tab.page.evaluate("window.edgeshipReady")
        assert ready["servedBy"] == {s: f"{s}-web-fp32" for s in stages}
        assert [(s["stage"], s["artifact"]) for s in ready["skipped"]] == [("det", "det-web-int8"), ("rec", "rec-web-int8")]
        reasons = {s["artifact"]: s["reason"] for s in ready["skipped"]}
        assert reasons["det-web-int8"].startswith("does not load here") and "golden" in reasons["rec-web-int8"]
        skipped_shown = tab.page.locator("#skipped li").all_text_contents()
        assert any("det-web-int8" in s for s in skipped_shown) and any("rec-web-int8" in s for s in skipped_shown)
        for got, rgb, url in zip(results, pages, urls):
            want = read_page(rgb, py).lines
            assert want and got["servedBy"] == ready["servedBy"]
            assert_same_reading(got, want, url)
            assert (got["width"], got["height"]) == (rgb.shape[1], rgb.shape[0])
        # a file chosen in the page: drawn on the canvas, its lines listed
        tab.page.set_input_files("#file", str(bundle / urls[0].lstrip("/")))
        tab.page.wait_for_function("window.edgeshipResult", timeout=60_000)
        chosen = tab.page.evaluate("window.edgeshipResult")
        assert chosen["image"] == "page-0.png" and chosen["lines"] == results[0]["lines"]
        assert tab.page.locator("#lines li").all_text_contents()[0].startswith(results[0]["lines"][0]["text"])
        assert tab.page.evaluate("[canvas.width, canvas.height]") == [pages[0].shape[1], pages[0].shape[0]]
        drawn = tab.page.evaluate("""() => { const c = document.getElementById('canvas');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
          for (let i = 0; i < d.length; i += 4) n += d[i + 1] > 100 && d[i] < 60 && d[i + 2] < 90; return n; }""")
        assert drawn > 50, "no box drawn"  # green outlines over a grey page
        assert "served by det: det-web-fp32" in tab.page.text_content("#served")
        assert not tab.errors, tab.errors
    print(f"\n{'+'.join(stages)}: loaded and read {len(pages) + 1} pages in {time.monotonic() - t0:.1f} s; "
          f"page ms {[round(r['ms']['total']) for r in results]}")


@needs_browser
@pytest.mark.parametrize("with_sets, broken", [(True, "model"), (False, "model"), (True, "golden")],
                         ids=["set order", "per stage", "golden vectors missing"])
def test_a_bundle_with_no_working_model_for_a_stage_says_which_and_why(tmp_path, with_sets, broken):
    write_tiny_ocr(tmp_path / "models")
    characters = (tmp_path / "models" / "characters.txt").read_text()
    tasks = {s: TINY_TASKS[s] for s in ("det", "rec")}
    bundle = tmp_path / "bundle"
    sets = [{"det": "det-onnx-fp32", "rec": "rec-onnx-fp32"}, {"det": "det-web-fp32", "rec": "rec-web-fp32"}]
    pipeline_fixture(bundle, {s: tmp_path / "models" / f"{s}.onnx" for s in tasks}, tasks, characters, tiny_page(0),
                     sets=sets if with_sets else None)
    if broken == "model":
        (bundle / "artifacts" / "rec-web-fp32" / "model.onnx").unlink()
        stage, reason = "rec", "rec-web-fp32 does not load here"
    else:  # a bundle naming golden vectors it does not hold serves nothing unchecked
        (bundle / "golden" / "golden.json").unlink()
        stage, reason = "det", "det-web-fp32 fails its golden vectors: golden/golden.json"
    with Tab(bundle, "/" + OCR_PAGE) as tab:
        tab.page.wait_for_function("window.edgeshipReady", timeout=120_000)
        ready = tab.page.evaluate("window.edgeshipReady")
        said = (f"no artifact set of this bundle serves here (the {stage} stage: {reason}" if with_sets
                else f"no {stage} model of this bundle serves here: {reason}")
        assert ready["error"].startswith(said) and "HTTP 404" in ready["error"], ready
        assert [(s["stage"], s["artifact"]) for s in ready["skipped"]] == [(stage, f"{stage}-web-fp32")]
        assert ready["error"] in tab.page.text_content("#status")
        with pytest.raises(Exception, match="serves here"):
            tab.page.evaluate("u => window.edgeshipOcr(u)", "/golden/t/none.png")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``edgeship deploy pipeline.yaml --targets onnx,web`` of the tiny three-stage pipeline. Not
    isolated: in the limited child (an address-space cap) Chromium does not start, so the web
    set would not be measured and the release would hold no web artifact."""
    from edgeship import api

    root = tmp_path_factory.mktemp("ocr-web-deploy")
    spec = write_tiny_ocr(root / "models")
    res = api.deploy(str(spec), out=root / "out", targets=["onnx", "web"], isolate=False)
    return root / "out", res.record


@needs_browser
@pytest.mark.slow
def test_a_deployed_pipeline_bundle_reads_in_the_page_as_its_golden_vectors_say(deployed):
    from edgeship import api
    from edgeship.bundle.pipeline import set_key

    out, record = deployed
    bundle = out / record["bundle"]["folder"]
    assert api.verify_bundle(bundle, key=out / record["bundle"]["public_key"])["ok"] is True
    pdoc, bdoc = (json.loads((bundle / n).read_text()) for n in ("pipeline.json", "bundle.json"))
    page_files = {OCR_PAGE, OCR_SCRIPT, OCR_BUNDLE_SCRIPT}
    if (bundle / OCR_PAGE).exists():
        assert page_files <= {f["path"] for f in bdoc["files"]}  # signed with the release
    else:  # bundle/pipeline.py does not write the page yet: written here as it will be there
        assert {p.relative_to(bundle).as_posix() for p in write_ocr_web(bundle, pdoc, bdoc)} == page_files
    web_set = next(x["artifacts"] for x in pdoc["set_order"] if all("-web-" in a for a in x["artifacts"].values()))
    golden = json.loads((bundle / "golden" / "pipeline.json").read_text())
    expected = golden["sets"][set_key(web_set)]  # what a device serving the web set reads on the golden pages
    urls = ["/" + img["file"] for img in golden["images"]]
    with Tab(bundle, "/" + OCR_PAGE) as tab:
        results = page_reads(tab, urls)
        ready = tab.page.evaluate("window.edgeshipReady")
        assert not tab.errors, tab.errors
    assert ready["servedBy"] == web_set and ready["skipped"] == []
    # the port of the glue checked on the bundle's own trace (golden/pipeline.json), no model run
    with Tab(bundle, "/glue.html", {"/glue.html": GLUE_PAGE}) as tab:
        tab.page.wait_for_function("window.glue", timeout=30_000)
        for img in golden["images"]:
            t = img["trace"]
            arrays = {"det_map": np.load(bundle / t["det_map"]),
                      "cls": [{"scores": np.load(bundle / c["scores"])} for c in t.get("cls", [])],
                      "rec": [{"logits": np.load(bundle / r["logits"])} for r in t.get("rec", [])]}
            rgb = np.asarray(Image.open(bundle / img["file"]).convert("RGB"))
            got = tab.page.evaluate(RUN_ON_TRACE, trace_case(rgb, arrays, pdoc["tasks"], (bundle / "characters.txt").read_text()))
            assert got["det_input_shape"] == t["det_input_shape"] and got["boxes_page"] == t["boxes_page"], img["name"]
            assert [[c[1], c[2]] for c in got["calls"] if c[0] == "rec"] == [[r["index"], r["shape"]] for r in t["rec"]]
            want = img["expected"]["lines"]
            assert [(ln["text"], ln["turned"], ln["box"], round(ln["score"], 6)) for ln in got["lines"]] == \
                [(ln["text"], ln["turned"], ln["box"], ln["score"]) for ln in want], img["name"]
    py = python_stages({n: bundle / "artifacts" / a / "model.onnx" for n, a in web_set.items()}, _tasks(pdoc),
                       read_characters((bundle / "characters.txt").read_text()))
    for got, want, url in zip(results, expected, urls):
        assert want, url
        assert [ln["text"] for ln in got["lines"]] == [ln["text"] for ln in want], url
        assert [ln["turned"] for ln in got["lines"]] == [ln["turned"] for ln in want], url
        assert [ln["box"] for ln in got["lines"]] == [ln["box"] for ln in want], url
        np.testing.assert_allclose([ln["score"] for ln in got["lines"]], [ln["score"] for ln in want], atol=2e-6)
        rgb = np.asarray(Image.open(bundle / url.lstrip("/")).convert("RGB"))
        assert_same_reading(got, read_page(rgb, py).lines, url)  # and the Python glue on native ONNX Runtime


def _tasks(pdoc: dict) -> dict[str, object]:
    from edgeship.tasks import parse_task

    return {n: parse_task(t, f"pipeline.json tasks.{n}") for n, t in pdoc["tasks"].items()}


def test_no_page_for_a_bundle_a_browser_cannot_run(tmp_path):
    pipeline = {"kind": "ocr", "stages": ["det", "cls", "rec"],
                "fallback_order": {"det": ["det-web-fp32", "det-onnx-fp32"], "cls": ["cls-onnx-fp32"], "rec": ["rec-web-fp32"]}}
    bundle = {"artifacts": [{"id": i, "format": i.split("-")[1]} for i in
                            ("det-web-fp32", "det-onnx-fp32", "cls-onnx-fp32", "rec-web-fp32")]}
    assert write_ocr_web(tmp_path, pipeline, bundle) == []  # cls has no web artifact
    assert not (tmp_path / "integration").exists()
    from edgeship.errors import FormatError

    with pytest.raises(FormatError, match="no rec stage"):
        write_ocr_web(tmp_path, {**pipeline, "stages": ["det"]}, bundle)
    with pytest.raises(FormatError, match="'ocr' pipelines"):
        write_ocr_web(tmp_path, {**pipeline, "kind": "asr"}, bundle)


# ---- the real PaddleOCR models (rapidocr-onnxruntime's files), slow lane ----------------------

def _rapidocr_models() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    return Path(list(spec.submodule_search_locations)[0], "models") if spec and spec.submodule_search_locations else None


@needs_browser
@pytest.mark.slow
@pytest.mark.skipif(_rapidocr_models() is None, reason="rapidocr-onnxruntime is not installed (pip install --no-deps)")
def test_the_page_reads_rendered_pages_as_python_does_on_paddleocr_models(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_inputs import phrases, rec_characters, render_page

    src = _rapidocr_models()
    files = {"det": src / "ch_PP-OCRv4_det_infer.onnx", "cls": src / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
             "rec": src / "ch_PP-OCRv4_rec_infer.onnx"}
    chars = rec_characters(str(files["rec"]))
    characters = "".join(c + "\n" for c in chars[1:-1])
    tasks = {"det": TextDetection(), "cls": TextDirection(), "rec": TextRecognition()}
    pages = []
    for k in range(2):
        rgb = render_page(phrases(6, seed=100 + k), random.Random(100 + k))
        pages.append(np.ascontiguousarray(rgb[::-1, ::-1]) if k == 1 else rgb)  # the second one upside down
    bundle = tmp_path / "bundle"
    models = pipeline_fixture(bundle, files, tasks, characters, pages[0][:240, :240])
    py = python_stages(models, tasks, read_characters(characters))
    urls = [f"/golden/pages/page-{k}.png" for k in range(len(pages))]
    for rgb, url in zip(pages, urls):
        save_png(rgb, bundle / url.lstrip("/"))
    t0 = time.monotonic()
    with Tab(bundle, "/" + OCR_PAGE) as tab:
        results = page_reads(tab, urls, timeout=300_000)
        load_s = time.monotonic() - t0
        assert not tab.errors, tab.errors
    for k, (got, rgb) in enumerate(zip(results, pages)):
        t1 = time.monotonic()
        want = read_page(rgb, py).lines
        py_ms = 1000 * (time.monotonic() - t1)
        assert len(want) >= 4 and all(ln.turned for ln in want) == (k == 1)
        assert [ln["text"] for ln in got["lines"]] == [ln.text for ln in want], k
        assert [ln["turned"] for ln in got["lines"]] == [ln.turned for ln in want], k
        for g, w in zip(got["lines"], want):
            assert np.abs(np.subtract(g["box"], w.box)).max() <= 1, (k, g["box"], w.box)
        ms = got["ms"]
        print(f"\npage {k}: browser {ms['total']:.0f} ms (det {ms['det']:.0f}, cls {ms['cls']:.0f}, rec {ms['rec']:.0f}), "
              f"Python {py_ms:.0f} ms; {len(want)} lines: {' | '.join(ln.text for ln in want)}")
    print(f"page load (runtime, three sessions, golden checks): {load_s:.1f} s")
    shutil.rmtree(bundle, ignore_errors=True)
