"""Issue 37's "done when" figures: the OCR pipeline against RapidOCR's own Python code.

On a held-out set of rendered text (:func:`held_out_set`: pages and single lines in fonts the
calibration pages never use, several sizes, some turned by 180 degrees, a few with mild noise;
ground truth = the rendered strings):

1. RapidOCR itself (``rapidocr_onnxruntime.RapidOCR()``, default config, its original models),
2. edgeship's glue (``edgeship.tasks.ocr.read_page``) on onnxruntime sessions of the same model
   files ("ours", the fp32 pipeline every shipped precision is compared with),
3. a shipped pipeline bundle (``--bundle DIR``) through ``edgeship.runtime.Pipeline``,
4. the bundle's web page in Chromium (``--browser``).

Run (RapidOCR needs cv2, pyclipper and shapely; edgeship itself never imports it)::

    .venv/bin/python benchmarks/check_ocr_pipeline.py                 # RapidOCR vs ours
    .venv/bin/python benchmarks/check_ocr_pipeline.py --bundle DIR    # + a bundle's artifact sets
    .venv/bin/python benchmarks/check_ocr_pipeline.py --save DIR      # write the set's images

CER is the edit distance over the reference's characters, summed over a set; against the truth
each recognised line is assigned to the drawn line it overlaps most (split lines joined in
reading order), against another reader lines are paired by box IoU (``tasks.ocr.match_lines``):
an unpaired line counts all its characters.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import real_inputs as ri  # noqa: E402

#: the held-out set's seed: 37xx, used by nothing else (the pipeline deploy draws its calibration
#: and evaluation pages with edgeship.tasks.pages from seeds 1001 and 2002, in upright faces only)
SEED = 3701

# (set, count, page size (h, w) or None for a single line, turned by 180, noisy)
LAYOUT = (
    ("pages", 3, (480, 640), False, False),
    ("pages", 1, (640, 480), False, False),
    ("turned", 1, (480, 640), True, False),
    ("turned", 1, (360, 800), True, False),
    ("noisy", 1, (480, 640), False, True),
    ("noisy", 1, (480, 640), True, True),
    ("lines", 5, None, False, False),
    ("lines", 3, None, True, False),
    ("lines", 2, None, False, True),
)
SETS = ("pages", "turned", "noisy", "lines")


#: a reader: an RGB uint8 image in, its lines out ({"box": 4 points, "text", "score"})
Reader = Callable[[np.ndarray], list[dict[str, Any]]]


@dataclass
class Sample:
    name: str
    set: str
    rgb: np.ndarray
    truth: list[tuple[str, list[list[float]]]]  # each drawn line's text and ink box, in the image
    turned: bool
    noisy: bool


def held_out_set(seed: int = SEED) -> list[Sample]:
    """The held-out images, reproducible from ``seed``: 8 pages (480x640, 640x480, 360x800; two
    turned by 180 degrees, two with mild noise, one of them turned) and 10 single lines (three
    turned, two noisy), in slanted and extra-light faces (ri.HELD_OUT_FONTS) at 16-40 px."""
    out: list[Sample] = []
    k = 0
    for set_name, count, size, turned, noisy in LAYOUT:
        for _ in range(count):
            rng = random.Random(seed * 1000 + k)
            if size is None:
                (text,) = ri.held_out_phrases(1, seed=seed * 1000 + k, max_chars=rng.choice((12, 18, 30)))
                rgb, box = ri.render_text_line(text, rng)
                truth = [(text, box)]
            else:
                rgb, truth = ri.render_text_page(ri.held_out_phrases(12, seed=seed * 1000 + k), rng, size=size)
            if noisy:
                rgb = ri.mild_noise(rgb, rng)
            if turned:
                rgb, boxes = ri.turn_180(rgb, [b for _, b in truth])
                truth = [(t, b) for (t, _), b in zip(truth, boxes)]
            out.append(Sample(f"{set_name}-{k:02d}", set_name, rgb, truth, turned, noisy))
            k += 1
    return out


def save_set(samples: list[Sample], folder: Path) -> None:
    """Each image as PNG with its truth beside it (``truth.json``)."""
    import json

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        Image.fromarray(s.rgb).save(folder / f"{s.name}.png")
    (folder / "truth.json").write_text(json.dumps(
        {s.name: {"set": s.set, "turned": s.turned, "noisy": s.noisy,
                  "lines": [{"text": t, "box": b} for t, b in s.truth]} for s in samples}, indent=1))


# ---------------------------------------------------------------- readers
def rapidocr_reader() -> Reader:
    """RapidOCR itself, default config and original models (it takes an ndarray as BGR)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        raise SystemExit(f"RapidOCR cannot be imported ({e}): pip install --no-deps rapidocr-onnxruntime "
                         "opencv-python-headless pyclipper shapely") from None
    eng = RapidOCR()

    def read(rgb: np.ndarray) -> list[dict[str, Any]]:
        res, _ = eng(np.ascontiguousarray(rgb[..., ::-1]))
        return [{"box": [[float(v) for v in p] for p in box], "text": text, "score": float(score)}
                for box, text, score in (res or [])]
    return read


def original_models() -> dict[str, Path]:
    """The model files RapidOCR ships (its config.yaml's)."""
    d = ri.site_file("rapidocr_onnxruntime", "models")
    files = {"det": d / "ch_PP-OCRv4_det_infer.onnx", "cls": d / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
             "rec": d / "ch_PP-OCRv4_rec_infer.onnx"}
    for f in files.values():
        if not f.is_file():
            raise SystemExit(f"{f} is missing: pip install --no-deps --force-reinstall rapidocr-onnxruntime")
    return files


def ours_reader() -> Reader:
    """edgeship's glue (tasks.ocr.read_page) on onnxruntime sessions of the original model files,
    the task records' defaults (RapidOCR's config.yaml) and the character list in the recogniser's
    metadata."""
    import onnxruntime as ort

    from edgeship.tasks import TextDetection, TextDirection, TextRecognition
    from edgeship.tasks.ocr import Stages, read_characters, read_page

    sessions = {k: ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
                for k, f in original_models().items()}

    def model(s: Any) -> Callable[[np.ndarray], np.ndarray]:
        name = s.get_inputs()[0].name
        return lambda x: s.run(None, {name: x})[0]

    chars = read_characters(sessions["rec"].get_modelmeta().custom_metadata_map["character"])
    st = Stages(det=model(sessions["det"]), rec=model(sessions["rec"]), cls=model(sessions["cls"]),
                det_task=TextDetection(), rec_task=TextRecognition(), cls_task=TextDirection(), characters=chars)
    return lambda rgb: [ln.to_dict() for ln in read_page(rgb, st).lines]


def on_pixels(reader: Reader) -> Callable[[Sample], list[dict[str, Any]]]:
    return lambda s: reader(s.rgb)


@dataclass
class Run:
    """One reader over the set: each image's lines and seconds."""
    label: str
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run(label: str, reader: Callable[[Sample], list[dict[str, Any]]], samples: list[Sample]) -> Run:
    r = Run(label)
    for s in samples:
        t = time.perf_counter()
        r.lines[s.name] = reader(s)
        r.seconds[s.name] = time.perf_counter() - t
    return r


def bundle_sets(folder: Path, precisions: list[str], set_ids: list[str]) -> list[dict[str, Any]]:
    """The artifact sets of a pipeline bundle to read with: those named (``set_ids``), those of
    the precisions asked (a set's precision is its id's second field: "onnx-int8-det+rec-fp32"
    is an int8 set), else every set the bundle ships (``pipeline.json`` ``set_order``)."""
    doc = json.loads((folder / "pipeline.json").read_text())
    shipped = [x for x in doc.get("set_order") or [] if isinstance(x, dict) and x.get("artifacts")]
    if set_ids:
        by_id = {x["id"]: x for x in shipped}
        missing = [i for i in set_ids if i not in by_id]
        if missing:
            raise SystemExit(f"{folder}: no artifact set {missing} (it ships {sorted(by_id)})")
        return [by_id[i] for i in set_ids]
    if precisions:
        chosen = [x for x in shipped if str(x["id"]).split("-")[1:2] and str(x["id"]).split("-")[1] in precisions]
        if not chosen:
            raise SystemExit(f"{folder}: no artifact set of precision {precisions} (it ships "
                             f"{[x['id'] for x in shipped]})")
        return chosen
    return shipped


def bundle_reader(folder: Path, artifacts: dict[str, str], threads: int) -> tuple[Reader, Any]:
    """``edgeship.runtime.Pipeline`` of a bundle, serving exactly ``artifacts`` ({stage: id})."""
    try:
        from edgeship.runtime import Pipeline
    except ImportError as e:
        raise SystemExit(f"edgeship.runtime.Pipeline is not in this edgeship ({e}): update it") from None
    p = Pipeline.from_bundle(folder, threads=threads, artifacts=artifacts)
    return (lambda rgb: [ln.to_dict() for ln in p.read(rgb).lines]), p


class BrowserReader:
    """The bundle's web page (``integration/web/ocr.html``) in headless Chromium: each image
    served from memory beside the bundle and read by ``window.edgeshipOcr(url)``."""

    def __init__(self, folder: Path, samples: list[Sample], timeout_s: float = 300, set_id: str | None = None) -> None:
        import io

        from PIL import Image

        from edgeship.targets.web import _Browser, serve_folder

        page = folder / "integration" / "web" / "ocr.html"
        if not page.is_file():
            raise SystemExit(f"{page} is missing: this bundle has no web page (package it with an edgeship that "
                             "writes integration/web/ocr.html)")
        images = {}
        for s in samples:
            buf = io.BytesIO()
            Image.fromarray(s.rgb).save(buf, format="PNG")
            images[f"/check-ocr/{s.name}.png"] = buf.getvalue()
        self.server = serve_folder(folder, images, isolated=False)
        origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.errors: list[str] = []

        def route(r: Any) -> Any:
            if r.request.url.startswith(origin + "/"):
                return r.continue_()
            self.outside.append(r.request.url)
            return r.abort()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(origin + "/integration/web/ocr.html" + (f"?set={set_id}" if set_id else ""))
        self.page.wait_for_function("window.edgeshipReady", timeout=timeout_s * 1000)
        self.ready = self.page.evaluate("window.edgeshipReady")
        if "error" in self.ready:
            self.close()
            raise SystemExit(f"{page} did not load its pipeline: {self.ready['error']}")
        self.served_by = self.ready.get("servedBy")

    def __call__(self, s: Sample) -> list[dict[str, Any]]:
        got = self.page.evaluate("u => window.edgeshipOcr(u)", f"/check-ocr/{s.name}.png")
        return [{"box": ln["box"], "text": ln["text"], "score": ln["score"], "turned": ln.get("turned")}
                for ln in got["lines"]]

    def close(self) -> None:
        from edgeship.targets.web import _Browser

        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- measures
def _extent(box: Any) -> tuple[float, float, float, float]:
    a = np.asarray(box, np.float64)
    return a[:, 0].min(), a[:, 1].min(), a[:, 0].max(), a[:, 1].max()


def _overlap(a: Any, b: Any) -> tuple[float, float, float]:
    """(intersection, area of a, area of b) of two boxes' axis-aligned extents."""
    ax0, ay0, ax1, ay1 = _extent(a)
    bx0, by0, bx1, by1 = _extent(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    return inter, (ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0)


def truth_edits(s: Sample, lines: list[dict[str, Any]]) -> tuple[int, int]:
    """(character edits, characters) of ``lines`` against the drawn text: each line assigned to
    the drawn line it overlaps most (at least half the smaller of the two boxes), the lines
    assigned to one drawn line joined with a space in reading order (right to left on a page
    turned by 180 degrees); a line assigned to none counts its characters, a drawn line that
    got none counts its own."""
    from edgeship.tasks.ocr import edits

    parts: list[list[tuple[float, str]]] = [[] for _ in s.truth]
    extra = 0
    for ln in lines:
        best, at = 0.0, -1
        for i, (_, box) in enumerate(s.truth):
            inter, a, b = _overlap(ln["box"], box)
            if inter >= 0.5 * min(a, b) and inter > best:
                best, at = inter, i
        if at < 0:
            extra += len(ln["text"])
            continue
        x = _extent(ln["box"])[0]
        parts[at].append((-x if s.turned else x, ln["text"]))
    n = sum(len(t) for t, _ in s.truth)
    e = extra + sum(edits(t, " ".join(txt for _, txt in sorted(p))) for (t, _), p in zip(s.truth, parts))
    return e, n


@dataclass
class Versus:
    """One reader against another on some images: character edits over the reference's
    characters, paired lines, box IoU of the pairs, lines whose text differs."""
    edits: int = 0
    chars: int = 0
    ref_lines: int = 0
    got_lines: int = 0
    paired: int = 0
    ious: list[float] = field(default_factory=list)
    differing: list[tuple[str, str, str]] = field(default_factory=list)  # (image, reference, got)

    def add(self, name: str, ref: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
        from edgeship.tasks.ocr import edits, match_lines

        self.ref_lines += len(ref)
        self.got_lines += len(got)
        self.chars += sum(len(r["text"]) for r in ref)
        for i, j, iou in match_lines(ref, got):
            rt = ref[i]["text"] if i is not None else ""
            gt = got[j]["text"] if j is not None else ""
            self.edits += edits(rt, gt) if rt else len(gt)
            if i is not None and j is not None:
                self.paired += 1
                self.ious.append(iou)
            if rt != gt:
                self.differing.append((name, rt, gt))

    @property
    def cer(self) -> float:
        return self.edits / max(self.chars, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"cer": self.cer, "edits": self.edits, "chars": self.chars, "ref_lines": self.ref_lines,
                "got_lines": self.got_lines, "paired": self.paired,
                "iou_mean": float(np.mean(self.ious)) if self.ious else None,
                "iou_min": float(np.min(self.ious)) if self.ious else None,
                "differing": [list(d) for d in self.differing]}


def figures(samples: list[Sample], r: Run, ref: Run | None) -> dict[str, dict[str, Any]]:
    """Per set (and "all"): images, drawn lines, CER against the truth, seconds per image and,
    with ``ref``, the comparison with it."""
    out: dict[str, dict[str, Any]] = {}
    for name in (*SETS, "all"):
        part = [s for s in samples if name in ("all", s.set)]
        if not part:
            continue
        e = n = 0
        vs = Versus()
        for s in part:
            de, dn = truth_edits(s, r.lines[s.name])
            e, n = e + de, n + dn
            if ref is not None:
                vs.add(s.name, ref.lines[s.name], r.lines[s.name])
        out[name] = {"images": len(part), "lines": sum(len(s.truth) for s in part), "chars": n,
                     "truth_edits": e, "truth_cer": e / max(n, 1),
                     "seconds_per_image": sum(r.seconds[s.name] for s in part) / len(part),
                     **({"versus": vs.to_dict()} if ref is not None else {})}
    return out


# ---------------------------------------------------------------- tables (80 columns)
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table_reference(rapid: dict[str, Any], ours: dict[str, Any]) -> str:
    """RapidOCR and ours against the truth, and ours against RapidOCR, per set."""
    head = (f"{'set':<7}{'imgs':>5}{'lines':>6}{'CER rapid':>10}{'ours':>7}{'diff pt':>8}"
            f"{'vs rapid':>9}{'paired':>8}{'IoU mean':>9}{'min':>6}{'s/img':>6}")
    rows = [head, "-" * len(head)]
    for name, a in rapid.items():
        b = ours[name]
        v = b["versus"]
        diff = 100 * (b["truth_cer"] - a["truth_cer"])
        rows.append(f"{name:<7}{a['images']:>5}{a['lines']:>6}{_pct(a['truth_cer']):>10}{_pct(b['truth_cer']):>7}"
                    f"{diff:>+8.2f}{_pct(v['cer']):>9}{v['paired']:>4}/{v['ref_lines']:<3}"
                    f"{_f3(v['iou_mean']):>9}{_f3(v['iou_min']):>6}{b['seconds_per_image']:>6.2f}")
    rows.append("CER rapid/ours: against the drawn text; diff pt: ours - rapid, in points;")
    rows.append("vs rapid: ours' CER taking RapidOCR's lines as the reference; paired:")
    rows.append("lines paired by box IoU > 0.3 / RapidOCR's lines; s/img: ours, per image.")
    return "\n".join(rows)


def table_bundle(fig: dict[str, Any], vs_rapid: dict[str, Any]) -> str:
    """A bundle's artifact set against the truth, RapidOCR and the fp32 pipeline, per set."""
    head = (f"{'set':<7}{'imgs':>5}{'lines':>6}{'CER':>8}{'vs rapid':>9}{'vs fp32':>8}{'paired':>9}"
            f"{'IoU mean':>9}{'min':>6}{'s/img':>7}")
    rows = [head, "-" * len(head)]
    for name, f in fig.items():
        v, r = f["versus"], vs_rapid[name]["versus"]
        rows.append(f"{name:<7}{f['images']:>5}{f['lines']:>6}{_pct(f['truth_cer']):>8}{_pct(r['cer']):>9}"
                    f"{_pct(v['cer']):>8}{v['paired']:>5}/{v['ref_lines']:<3}{_f3(v['iou_mean']):>9}"
                    f"{_f3(v['iou_min']):>6}{f['seconds_per_image']:>7.2f}")
    rows.append("CER: against the drawn text; vs rapid / vs fp32: taking RapidOCR's / the fp32")
    rows.append("pipeline's (ours on the original models) lines as the reference; paired and")
    rows.append("IoU: lines paired with the fp32 pipeline's by box IoU > 0.3.")
    return "\n".join(rows)


def verdict(fig: dict[str, Any], rapid: dict[str, Any], what: str) -> str:
    """Issue 37's test: the CER against the drawn text within 0.5 pt of RapidOCR's."""
    a, b = rapid["all"]["truth_cer"], fig["all"]["truth_cer"]
    d = 100 * (b - a)
    return (f"{what}: CER {_pct(b)} against the drawn text, RapidOCR {_pct(a)}: {d:+.2f} pt "
            f"({'within' if abs(d) <= 0.5 else 'NOT within'} 0.5 pt)")


def differing(label: str, v: dict[str, Any], limit: int = 12) -> list[str]:
    out = []
    for name, rt, gt in v["differing"][:limit]:
        out.append(f"  {label} {name}: {rt!r} -> {gt!r}"[:80])
    if len(v["differing"]) > limit:
        out.append(f"  ... and {len(v['differing']) - limit} more")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import hashlib
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED, help="the held-out set's seed")
    ap.add_argument("--save", type=Path, help="write the set's images and truth.json there, then stop")
    ap.add_argument("--bundle", type=Path, action="append", default=[], help="a pipeline bundle folder (repeat)")
    ap.add_argument("--precision", action="append", default=[],
                    help="only the bundle's artifact sets of this precision (fp32, fp16, int8...; repeat)")
    ap.add_argument("--set", dest="set_ids", action="append", default=[], help="only this artifact set id (repeat)")
    ap.add_argument("--browser", action="store_true", help="also read with each bundle's web page in Chromium")
    ap.add_argument("--browser-set", default=None, help="the artifact set the page serves (ocr.html?set=ID; default: "
                                                        "the first of the bundle's set order)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads of the bundle's runtime (RapidOCR and ours keep onnxruntime's default)")
    ap.add_argument("--json", action="store_true", help="print the figures (and each image's lines) as JSON")
    args = ap.parse_args(argv)
    samples = held_out_set(args.seed)
    digest = hashlib.sha256(b"".join(s.rgb.tobytes() for s in samples)).hexdigest()[:12]
    n = sum(len(s.truth) for s in samples)
    if args.save:
        save_set(samples, args.save)
        print(f"{len(samples)} images, {n} lines (pixels sha256 {digest}) -> {args.save}")
        return 0
    for b in args.bundle:
        if not (b / "pipeline.json").is_file():
            raise SystemExit(f"{b} is not a pipeline bundle (no pipeline.json): give OUT/release/NAME-VERSION")
    say = (lambda m: print(m, file=sys.stderr)) if args.json else print
    rapid = run("rapidocr", on_pixels(rapidocr_reader()), samples)
    ours = run("ours", on_pixels(ours_reader()), samples)
    fig_rapid, fig_ours = figures(samples, rapid, None), figures(samples, ours, rapid)
    out: dict[str, Any] = {"seed": args.seed, "pixels_sha256": digest, "images": [s.name for s in samples],
                           "rapidocr": {"figures": fig_rapid, "lines": rapid.lines},
                           "ours": {"figures": fig_ours, "lines": ours.lines}, "bundles": []}
    if not args.json:
        print(f"held-out set (seed {args.seed}, pixels sha256 {digest}): {len(samples)} images, {n} drawn lines")
        print(f"RapidOCR {rapid_seconds(rapid, samples):.2f} s/img; ours on the original models:")
        print(table_reference(fig_rapid, fig_ours))
        print(verdict(fig_ours, fig_rapid, "ours"))
        for line in differing("rapid->ours", fig_ours["all"]["versus"]):
            print(line)
    for folder in args.bundle:
        for st in bundle_sets(folder, args.precision, args.set_ids):
            reader, p = bundle_reader(folder, st["artifacts"], args.threads)
            try:
                r = run(st["id"], on_pixels(reader), samples)
            finally:
                p.close()
            fig, vs_rapid = figures(samples, r, ours), figures(samples, r, rapid)
            out["bundles"].append({"bundle": str(folder), "set": st["id"], "served_by": p.served_by,
                                   "skipped": p.skipped, "figures": fig, "versus_rapidocr": vs_rapid,
                                   "lines": r.lines})
            if not args.json:
                print(f"\n{folder.name} set {st['id']} (Python, {args.threads} threads):")
                print(table_bundle(fig, vs_rapid))
                print(verdict(fig, fig_rapid, st["id"]))
                for line in differing("fp32->set", fig["all"]["versus"]):
                    print(line)
        if args.browser:
            say(f"\n{folder.name}: the web page in Chromium...")
            br = BrowserReader(folder, samples, set_id=args.browser_set)
            try:
                r = run("browser", br, samples)
            finally:
                br.close()
            python = next((b for b in out["bundles"] if b["bundle"] == str(folder) and b["served_by"] == br.served_by),
                          None)
            ref = Run("python", python["lines"]) if python else ours
            fig, vs_rapid = figures(samples, r, ref), figures(samples, r, rapid)
            out["bundles"].append({"bundle": str(folder), "set": "browser", "served_by": br.served_by,
                                   "against": "python" if python else "fp32", "figures": fig,
                                   "versus_rapidocr": vs_rapid, "lines": r.lines, "page_errors": br.errors,
                                   "outside_requests": br.outside})
            if not args.json:
                against = "the same set in Python" if python else "the fp32 pipeline (the set it served was not run)"
                print(f"\n{folder.name} web page in Chromium, served by {br.served_by};")
                print(f"'vs fp32' is against {against}:")
                print(table_bundle(fig, vs_rapid))
                print(verdict(fig, fig_rapid, "web page"))
                for line in differing("python->web", fig["all"]["versus"]):
                    print(line)
                if br.errors or br.outside:
                    print(f"page errors {br.errors[:3]}, requests outside its origin {br.outside[:3]}")
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


def rapid_seconds(r: Run, samples: list[Sample]) -> float:
    return sum(r.seconds.values()) / max(len(samples), 1)


if __name__ == "__main__":
    sys.exit(main())
