"""The HTML report of a pipeline deploy: ``OUT/report.html``, beside ``OUT/pipeline.json``.

Made by the same mechanism as one model's report (the jinja environment of
:mod:`edgeship.reporting.templating`, autoescaped and strict; the shared style; one self-contained
file with no script and no external request, as its Content-Security-Policy says). It shows:

* the pipeline: its stages, each model file, the key parameters of its task record and a link to
  the stage's own report (``models/<stage>/report.html``);
* the data the models were calibrated and judged on, with the one-model report's warning when the
  evaluation set is small;
* the fidelity of the whole: every artifact set read end to end against the fp32 pipeline (CER,
  box IoU, lines missed and extra, CER against the text written on the pages when known, seconds
  per page, within the budget or not; a mixed set says which stage went back to fp32 and why),
  beside each model's own verification figures from its stage's manifest;
* the pictures: the release's golden pages (``golden/pipeline.json``: the pages are the first
  evaluation pages, with each shipped set's reading of them) with the boxes drawn as inline SVG
  over the page (a downscaled PNG in a data URI) and the text of each line, the fp32 set beside the
  set a device serves first (the lowest precision within the budget), differences marked;
* the release: version, folder, the order of the sets a device tries, and what was left out.

Everything read from the record, the manifests and the release is data: type-checked (a wrong type
is a gap with a sentence, never a crash), stripped of control characters and HTML-escaped.
"""

from __future__ import annotations

import base64
import difflib
import functools
import io
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._util import atomic_write_text, confined, share_text
from .._version import __version__
from ..data import small_evaluation
from ..errors import EdgeshipError, UsageError
from ..manifest import as_dict, as_list, as_num, as_pos, as_text, load_manifest
from ..readers import read_bytes, read_json
from ..readers.images import IMAGE_LIMIT, decode_image
from ..tasks.ocr import match_lines
from .artifacts import fidelity_of
from .templating import REPORT_HTML, environment

__all__ = ["pipeline_page", "render_pipeline", "write_pipeline_report", "PICTURE_SIDE", "PICTURE_COLOURS",
           "MAX_PAGES", "SAME_BOX_IOU"]

PIPELINE_RECORD = "pipeline.json"
#: the longest side of a page as embedded in the report (pixels), and its palette: enough to read
#: the text on a screen; the page's boxes are drawn over it in the page's own coordinates
PICTURE_SIDE = 480
PICTURE_COLOURS = 32
#: golden pages drawn (a release holds two)
MAX_PAGES = 4
MAX_LINES = 300  # per page and set
#: a line whose box overlaps its fp32 line's by less than this is marked as moved
SAME_BOX_IOU = 0.9
_STAGE_WHAT = {"text_detection": "text detection", "text_direction": "direction (turn by 180°)",
               "text_recognition": "recognition (CTC)", "class_scores": "classification", "embedding": "embedding"}
#: the parameters of each task kind worth a glance (the whole record is one click away)
_KEY_PARAMS = {"text_detection": ("limit_side_len", "limit_type", "thresh", "box_thresh", "unclip_ratio",
                                  "use_dilation", "max_candidates"),
               "text_direction": ("height", "width", "labels", "thresh", "batch"),
               "text_recognition": ("height", "width", "batch", "text_score", "characters")}
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ---------------------------------------------------------------- small readers of the record
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v[:12])
    if isinstance(v, float):
        return f"{v:g}"
    return as_text(v, 80)


def _precision(aid: str) -> str:
    return aid.rsplit("-", 1)[1] if "-" in aid else aid


def _pct(x: Any, digits: int = 2) -> str:
    v = as_num(x)
    return "–" if v is None else share_text(v, digits)


def _floor(x: Any, digits: int) -> str:
    """A figure at most 1 (a cosine, an IoU) cut, never rounded up: 0.99999 is 0.9999, only 1 is 1."""
    v = as_num(x)
    if v is None:
        return "–"
    return f"{math.floor(v * 10 ** digits) / 10 ** digits:.{digits}f}" if v < 1 else f"{1:.{digits}f}"


def _iou(x: Any) -> str:
    return _floor(x, 4)


def _per_page(x: Any) -> str:
    v = as_pos(x)
    return "–" if v is None else f"{v * 1e3:.0f} ms" if v < 1 else f"{v:.2f} s"


def _inside(out: Path, rel: Any, what: str) -> Path | None:
    """``out/rel`` when ``rel`` is a relative path of plain names inside ``out``, else None."""
    if not isinstance(rel, str) or not rel or not all(_PART.match(p) for p in rel.split("/")):
        return None
    try:
        return confined(out, rel, what)
    except EdgeshipError:
        return None


# ---------------------------------------------------------------- the stages
def _stages(out: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    spec = as_dict(as_dict(record.get("pipeline")).get("stages"))
    run = as_dict(record.get("stages"))
    names = [n for n in spec if isinstance(n, str)] + [n for n in run if isinstance(n, str) and n not in spec]
    rows = []
    for name in names[:8]:
        s, r = as_dict(spec.get(name)), as_dict(run.get(name))
        task = as_dict(s.get("task"))
        kind = as_text(task.get("kind"), 40)
        keys = _KEY_PARAMS.get(kind) or tuple(k for k in task if k not in ("kind", "input"))
        params = [(as_text(k, 40), _value(task[k])) for k in keys if k in task and task[k] is not None][:12]
        if kind == "text_recognition" and as_num(record.get("characters")) is not None:
            params.append(("characters in the list", f"{int(record['characters'])}"))
        folder = _inside(out, r.get("out"), "a stage's folder")
        link = None
        if folder is not None and (folder / REPORT_HTML).is_file():
            link = quote(f"{r['out']}/{REPORT_HTML}")  # plain names checked by _inside: relative to OUT
        model = as_text(s.get("model"), 300)
        err = as_dict(r.get("error"))
        rows.append({"name": as_text(name, 20), "kind": kind, "what": _STAGE_WHAT.get(kind, kind or "?"),
                     "model": model, "model_name": Path(model).name if model else "?", "params": params,
                     "task": [(as_text(k, 40), _value(v)) for k, v in list(task.items())[:40] if k != "kind"],
                     "ok": r.get("ok") is True, "ran": bool(r),
                     "error": as_text(err.get("message"), 400) or None, "hint": as_text(err.get("hint"), 300) or None,
                     "artifacts": [as_text(a, 80) for a in as_list(r.get("artifacts"))[:40]],
                     "failed": [as_text(as_dict(f).get("message") or f, 300) for f in as_list(r.get("failed"))[:10]],
                     "seconds": as_pos(r.get("seconds")), "link": link,
                     "out": as_text(r.get("out"), 200) or f"models/{as_text(name, 20)}", "folder": folder})
    return rows


def _models(stages: list[dict[str, Any]], shipped: set[str]) -> list[dict[str, Any]]:
    """Each stage's artifacts with their own verification figures (the stage's manifest)."""
    out = []
    for st in stages:
        entry: dict[str, Any] = {"stage": st["name"], "rows": [], "gap": None}
        m = None
        if st["folder"] is None:
            entry["gap"] = "its folder is not named in pipeline.json"
        else:
            try:
                m = load_manifest(st["folder"])
            except EdgeshipError as e:
                entry["gap"] = f"its manifest is unreadable: {as_text(e.message, 300)}"
            if m is None and entry["gap"] is None:
                entry["gap"] = f"{st['out']} has no manifest.json (the stage did not get as far as writing one)"
        for rec in m.records if m else []:
            aid = as_text(rec.get("id") or rec.get("path"), 80)
            f = fidelity_of(rec)
            q = as_dict(as_dict(rec.get("details")).get("quantization"))
            small = small_evaluation(q)
            entry["rows"].append({
                "id": aid, "precision": as_text(rec.get("precision"), 20), "size_bytes": as_pos(rec.get("size_bytes")),
                "fidelity": f, "cosine": _floor(f["cosine"], 6), "top1": _pct(f["value"], 1) if f["metric"] == "top-1 agreement" else None,
                "shipped": f"{st['name']}-{aid}" in shipped if shipped else None,
                "notes": [n for n in [small] if n]})
        out.append(entry)
    return out


# ---------------------------------------------------------------- the sets, end to end
def _explain_mixed(s: dict[str, Any], stages: dict[str, dict[str, Any]], by_id: dict[str, dict[str, Any]]) -> str:
    """Which stage went back to fp32 in a mixed set, and why."""
    p, t = s["precision"], s["target"]
    back = [c["stage"] for c in s["cells"] if c["back"]]
    if not back:
        return ""
    whys = []
    for n in back:
        if f"{t}-{p}" not in (stages.get(n) or {}).get("artifacts", []):
            whys.append(f"{n} at fp32: it has no {p} artifact (not built, or it failed its own verification)")
    full = by_id.get(f"{t}-{p}")
    over = [n for n in back if f"{t}-{p}" in (stages.get(n) or {}).get("artifacts", [])]
    if over:
        was = (f"{t}-{p}, every stage at {p}, read CER {full['cer_text']}" if full and full["cer"] is not None
               else f"the set with every stage at {p} was over the budget")
        whys.append(f"{' and '.join(over)} back at fp32: {was}; with {'them' if len(over) > 1 else 'it'} at fp32 "
                    "the set was measured again")
    return "; ".join(whys)


def _sets(record: dict[str, Any], stages: list[dict[str, Any]], models: list[dict[str, Any]],
          order: list[str]) -> list[dict[str, Any]]:
    max_cer = as_num(record.get("max_cer"))
    own = {(m["stage"], r["id"]): r for m in models for r in m["rows"]}
    st_by = {s["name"]: s for s in stages}
    rows = []
    for s in as_list(record.get("sets"))[:200]:
        s = as_dict(s)
        sid = as_text(s.get("id"), 80)
        precision = as_text(s.get("precision"), 20)
        arts = {as_text(k, 20): as_text(v, 80) for k, v in as_dict(s.get("artifacts")).items()}
        cells = [{"stage": n, "artifact": arts.get(n), "back": bool(arts.get(n)) and _precision(arts[n]) != precision,
                  "own": own.get((n, arts.get(n, "")))} for n in st_by if n in arts]
        lines, missed, extra = as_num(s.get("lines")), as_num(s.get("missed")), as_num(s.get("extra"))
        cer = as_num(s.get("cer"))
        row = {"id": sid, "by_stage": {c["stage"]: c for c in cells}, "anchor": re.sub(r"[^A-Za-z0-9_-]", "_", sid), "target": as_text(s.get("target"), 40),
               "precision": precision, "mixed": s.get("mixed") is True, "cells": cells,
               "cer": cer, "cer_text": _pct(cer), "edits": as_num(s.get("edits")), "chars": as_num(s.get("chars")),
               "iou_mean": _iou(s.get("iou_mean")), "iou_min": _iou(s.get("iou_min")),
               "lines": int(lines) if lines is not None else None, "missed": int(missed) if missed is not None else None,
               "extra": int(extra) if extra is not None else None, "truth_cer": _pct(s.get("truth_cer")),
               "per_page": _per_page(s.get("seconds_per_page")), "passed": s.get("passed") is True,
               "error": as_text(s.get("error"), 300) if s.get("error") else None,
               "served": order.index(sid) + 1 if sid in order else None}
        why = None
        if not row["passed"] and not row["error"]:
            if cer is not None and max_cer is not None and cer > max_cer:
                why = f"CER {row['cer_text']} is over the budget ({_pct(max_cer)})"
            elif lines is not None and missed is not None and extra is not None and missed + extra > max(1, lines // 20):
                why = (f"{int(missed + extra)} line(s) missed or extra, more than {max(1, int(lines) // 20)} of "
                       f"{int(lines)}")
            else:
                why = "over the budget"
        row["why"] = why
        rows.append(row)
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        r["mixed_why"] = _explain_mixed(r, st_by, by_id) if r["mixed"] or any(c["back"] for c in r["cells"]) else ""
    return rows


# ---------------------------------------------------------------- the release and its pictures
def _release(out: Path, record: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any], str | None]:
    """(the release's summary, its pipeline.json, its golden/pipeline.json, why there is none)."""
    b = as_dict(record.get("bundle"))
    if not b:
        return None, {}, {}, ("No release in this run (a pipeline deploy packages one unless --no-package, and only "
                              "when some artifact set reads the pages within the budget).")
    folder = _inside(out, b.get("folder"), "the release folder")
    rel = {"version": as_text(b.get("version"), 40), "release": b.get("release") if isinstance(b.get("release"), int)
           else None, "folder": as_text(b.get("folder"), 200), "tarball": as_text(b.get("tarball"), 200),
           "public_key": as_text(b.get("public_key"), 200),
           "fallback_order": [as_text(x, 80) for x in as_list(b.get("fallback_order"))[:60]],
           "left_out": [{"id": as_text(as_dict(x).get("id"), 80), "status": as_text(as_dict(x).get("status"), 40),
                         "why": as_text(as_dict(x).get("why"), 300), "fix": as_text(as_dict(x).get("fix"), 300)}
                        for x in as_list(b.get("left_out"))[:60]],
           "set_order": [], "created": None}
    if folder is None:
        return rel, {}, {}, f"the release folder {rel['folder']!r} is not a folder inside {out}"
    try:
        pdoc = as_dict(read_json(folder / "pipeline.json", "the release's pipeline.json"))
        bdoc = as_dict(read_json(folder / "bundle.json", "the release's bundle.json"))
        gpath = _inside(folder, pdoc.get("golden"), "the release's golden pipeline file")
        if gpath is None:
            return rel, pdoc, {}, "the release's pipeline.json names no golden pipeline file inside the release"
        gdoc = as_dict(read_json(gpath, "the release's golden pipeline file"))
    except EdgeshipError as e:
        return rel, {}, {}, f"the release cannot be read: {as_text(e.message, 300)}"
    rel["created"] = as_text(bdoc.get("created"), 40) or None
    rel["set_order"] = [{"id": as_text(as_dict(s).get("id"), 80),
                         "artifacts": {as_text(k, 20): as_text(v, 80) for k, v in as_dict(as_dict(s).get("artifacts")).items()}}
                        for s in as_list(pdoc.get("set_order"))[:40]]
    return rel, pdoc, gdoc, None


def _embed(path: Path) -> tuple[str, int, int]:
    """The page at ``path`` as a downscaled palette PNG data URI, and its size in pixels."""
    from PIL import Image

    rgb = decode_image(io.BytesIO(read_bytes(path, "golden page", max_bytes=IMAGE_LIMIT)), str(path))
    h, w = rgb.shape[:2]
    im = Image.fromarray(rgb)
    k = min(1.0, PICTURE_SIDE / max(w, h))
    if k < 1.0:
        im = im.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    # octree keeps the few colours most pixels have (a page's paper, its ink): a noisy background
    # becomes one colour, where median cut spends the palette on its noise (10 kB against 80 kB)
    im.quantize(PICTURE_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), w, h


def _lines(raw: Any) -> list[dict[str, Any]]:
    lines = []
    for x in as_list(raw)[:MAX_LINES]:
        x = as_dict(x)
        pts = [p for p in as_list(x.get("box"))[:4] if isinstance(p, list) and len(p) == 2
               and as_num(p[0]) is not None and as_num(p[1]) is not None]
        if len(pts) != 4:
            continue
        box = [[float(p[0]), float(p[1])] for p in pts]
        lines.append({"box": box, "points": " ".join(f"{a:.1f},{b:.1f}" for a, b in box),
                      "x": min(a for a, _ in box), "top": min(b for _, b in box),
                      "text": as_text(x.get("text"), 200), "score": as_num(x.get("score")), "turned": x.get("turned") is True})
    return lines


def _segments(ref: str, got: str) -> list[tuple[str, bool]]:
    """``got`` in pieces, each marked True where it differs from ``ref``."""
    segs = []
    for op, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, ref, got, autojunk=False).get_opcodes():
        if j2 > j1:
            segs.append((got[j1:j2], op != "equal"))
    return segs


def _compare(fp32: list[dict[str, Any]], low: list[dict[str, Any]]) -> None:
    """Mark each line of both readings: the same, other text, moved, missed or extra."""
    for ln in fp32 + low:
        ln.update(state="same", was=None, segments=[(ln["text"], False)])
    for i, j, iou in match_lines(fp32, low):
        if j is None and i is not None:
            fp32[i]["state"] = "missed"
        elif i is None and j is not None:
            low[j]["state"] = "extra"
            low[j]["segments"] = [(low[j]["text"], True)]
        elif i is not None and j is not None:
            a, b = fp32[i], low[j]
            if a["text"] != b["text"]:
                b.update(state="text", was=a["text"], segments=_segments(a["text"], b["text"]))
                a["state"] = "text"
            elif iou < SAME_BOX_IOU:
                b["state"] = a["state"] = "moved"
                b["iou"] = iou


def _set_label(arts: dict[str, str], known: list[dict[str, Any]]) -> str:
    return next((s["id"] for s in known if s["artifacts"] == arts), None) or " + ".join(arts.values())


def _pictures(folder: Path | None, pdoc: dict[str, Any], gdoc: dict[str, Any], set_order: list[dict[str, Any]],
              sets: list[dict[str, Any]]) -> dict[str, Any]:
    """The golden pages with the fp32 set's reading beside the first set a device serves."""
    fp32_arts = {as_text(k, 20): as_text(v, 80) for k, v in as_dict(gdoc.get("expected_from")).items()}
    by_set = {}
    for key, pages in as_dict(gdoc.get("sets")).items():  # "cls=...,det=...,rec=..." -> each page's lines
        arts = dict(p.split("=", 1) for p in str(key).split(",") if "=" in p)
        by_set[tuple(sorted(arts.items()))] = as_list(pages)
    low = set_order[0] if set_order else None
    low_id = low["id"] if low else None
    low_row = next((s for s in sets if s["id"] == low_id), None)
    if low is not None and low["artifacts"] == fp32_arts:
        low = None  # the release serves fp32 first: nothing lower passed
    low_pages = by_set.get(tuple(sorted(low["artifacts"].items()))) if low else None
    doc: dict[str, Any] = {
        "fp32_label": _set_label(fp32_arts, set_order) if fp32_arts else "fp32", "fp32_artifacts": fp32_arts,
        "low_label": low_id if low else None, "low_artifacts": low["artifacts"] if low else {},
        "low_row": low_row, "pages": [],
        "low_gap": None if low is None or low_pages is not None else
        f"the release's golden file holds no reading of the set {low_id} (written by an older edgeship)",
        "only_fp32": low is None and bool(set_order)}
    for k, im in enumerate(as_list(gdoc.get("images"))[:MAX_PAGES]):
        im = as_dict(im)
        name = as_text(im.get("name"), 60) or f"page-{k}"
        page: dict[str, Any] = {"name": name, "anchor": f"pg-{k}", "gap": None, "src": None}
        path = _inside(folder, im.get("file"), "a golden page") if folder is not None else None
        if path is None:
            page["gap"] = f"{name}: its image is not a file inside the release ({as_text(im.get('file'), 120)!r})"
        else:
            try:
                page["src"], page["w"], page["h"] = _embed(path)
                page["label_size"] = max(10, round(max(page["w"], page["h"]) / 36))
            except EdgeshipError as e:
                page["gap"] = f"{name}: {as_text(e.message, 300)}"
        page["fp32"] = _lines(as_dict(im.get("expected")).get("lines"))
        page["low"] = _lines(low_pages[k]) if low_pages is not None and k < len(low_pages) else None
        for ln in page["fp32"] + (page["low"] or []):  # a number above its box, inside it at the page's top
            size = page.get("label_size", 10)
            ln["label_y"] = ln["top"] - 2 if ln["top"] >= size else ln["top"] + size
        _compare(page["fp32"], page["low"] or [])
        page["differ"] = sum(ln["state"] != "same" for ln in page["low"] or []) + \
            sum(ln["state"] == "missed" for ln in page["fp32"])
        doc["pages"].append(page)
    if not doc["pages"]:
        doc["gap"] = "The release's golden pipeline file holds no page."
    return doc


# ---------------------------------------------------------------- the page
def _headline(sets: list[dict[str, Any]], order: list[str], max_cer: float | None) -> str:
    budget = f"the {_pct(max_cer)} CER budget" if max_cer is not None else "the budget"
    served = next((s for s in sets if order and s["id"] == order[0]), None)
    best = served or next((s for s in sets if s["passed"] and s["precision"] != "fp32"), None) or \
        next((s for s in sets if s["passed"]), None)
    if best is None:
        return (f"No artifact set reads the evaluation pages within {budget}." if sets
                else "No artifact set was read end to end: see the stages below.")
    what = "the release serves it first" if served else "the lowest precision within the budget"
    missed = f", {best['missed']} line(s) missed, {best['extra']} extra" if best["missed"] or best["extra"] else ""
    return (f"{best['id']} reads the evaluation pages with CER {best['cer_text']} against the fp32 pipeline "
            f"(box IoU {best['iou_mean']}{missed}), within {budget}: {what}.")


def pipeline_page(out: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Everything the pipeline report shows about the deploy in ``out`` (its ``record``, the
    stages' manifests and the release), JSON-ready apart from the stages' folders."""
    out = Path(out)
    record = as_dict(record)
    spec = as_dict(record.get("pipeline"))
    stages = _stages(out, record)
    rel, pdoc, gdoc, rel_gap = _release(out, record)
    set_order = rel["set_order"] if rel else []
    shipped = {a for s in set_order for a in s["artifacts"].values()}
    shipped |= set(rel["fallback_order"]) if rel else set()
    models = _models(stages, shipped)
    for st in stages:
        del st["folder"]  # a Path: the page model is JSON-ready
    order = [s["id"] for s in set_order]
    sets = _sets(record, stages, models, order)
    ref = as_dict(record.get("reference"))
    data = as_dict(record.get("data"))
    pages, lines = as_num(ref.get("pages")), as_num(ref.get("lines"))
    small = small_evaluation({"eval_sources": int(pages), "eval_samples": int(lines) if lines is not None else "?"}) \
        if pages is not None else None
    folder = _inside(out, as_dict(record.get("bundle")).get("folder"), "the release folder") if rel else None
    pictures = _pictures(folder, pdoc, gdoc, set_order, sets) if rel and not rel_gap else \
        {"pages": [], "gap": f"No pictures: {rel_gap[0].lower() + rel_gap[1:] if rel_gap else 'no release'}"}
    pictures.setdefault("gap", None)
    max_cer = as_num(record.get("max_cer"))
    return {
        "title": as_text(spec.get("name") or "pipeline", 80), "kind": as_text(spec.get("kind"), 20) or "?",
        "spec_path": as_text(spec.get("path"), 300), "folder": as_text(out.resolve(), 300),
        "edgeship_version": __version__, "max_cer": max_cer, "max_cer_text": _pct(max_cer),
        "headline": _headline(sets, order, max_cer), "stages": stages,
        "failed_stages": [s for s in stages if s["ran"] and not s["ok"]],
        "data": {"calibration": as_text(data.get("calibration"), 300) or "not recorded",
                 "evaluation": as_text(data.get("evaluation"), 300) or "not recorded",
                 "samples": [{"stage": as_text(n, 20), "calibration": as_num(as_dict(v).get("calibration")),
                              "evaluation": as_num(as_dict(v).get("evaluation"))}
                             for n, v in list(as_dict(data.get("samples")).items())[:8]],
                 "small": small},
        "reference": {"pages": int(pages) if pages is not None else None, "lines": int(lines) if lines is not None else None,
                      "truth_cer": _pct(ref.get("truth_cer")) if as_num(ref.get("truth_cer")) is not None else None},
        "sets": sets, "stage_names": [s["name"] for s in stages], "models": models, "pictures": pictures,
        "any_top1": any(r["top1"] for m in models for r in m["rows"]),
        "release": rel, "release_gap": rel_gap,
        "timings": {as_text(k, 40): as_num(v) for k, v in as_dict(record.get("timings_s")).items() if as_pos(v)},
        "characters": as_num(record.get("characters")),
    }


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    return environment().get_template("pipeline.html.j2")  # compiled once per process (0.3 s)


def render_pipeline(page: dict[str, Any]) -> str:
    """The HTML of a :func:`pipeline_page`."""
    return _template().render(p=page)


def write_pipeline_report(out: str | Path, record: dict[str, Any] | None = None) -> Path:
    """Render the report of the pipeline deploy in ``out`` to ``out/report.html`` (atomically);
    ``record`` is what ``out/pipeline.json`` holds (read from there when None)."""
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out} is not a folder", hint="give the output folder of edgeship deploy PIPELINE.yaml")
    if record is None:
        record = as_dict(read_json(out / PIPELINE_RECORD, "pipeline record",
                                   hint="give the output folder of edgeship deploy PIPELINE.yaml"))
    dest = out / REPORT_HTML
    atomic_write_text(dest, render_pipeline(pipeline_page(out, record)))
    return dest
