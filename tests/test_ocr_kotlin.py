"""The OCR glue generated for Android (Kotlin) and iOS (Swift) from a pipeline bundle: rendered
from pipeline.json (hostile names escaped), parsed, and the Kotlin compiled and run on a JVM against
edgeship.tasks.ocr, bit for bit. Python runs each page through ``read_page`` with the models and
keeps what they were given; the Kotlin glue replays the traced model outputs (the models' own
answers, as golden/pipeline.json holds them) and must give the same detector input, boxes,
direction and recognition batches (float32 tensors: identical bits), texts, scores, turned flags
and boxes in the image."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle.ocr_app import write_ocr_app_code
from edgeship.errors import FormatError
from edgeship.tasks import TextDetection, TextDirection, TextRecognition, task_dict
from edgeship.tasks.ocr import Stages, crop, read_characters, read_page

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_kotlin = pytest.mark.skipif(shutil.which("kotlinc") is None and not CI, reason="no kotlinc here (CI installs it)")
HOSTILE = 'o"c$r ${x} \\n é 😀 */'
#: a detection record unlike the rendered one: the long side capped, no dilation, two regions
LIMIT_MAX = {"limit_type": "max", "limit_side_len": 320, "use_dilation": False, "max_candidates": 2, "unclip_ratio": 2.0}
TINY_TASKS = {"det": TextDetection(limit_side_len=96, box_thresh=0.3), "cls": TextDirection(),
              "rec": TextRecognition(text_score=0.0)}


def _docs(tasks: dict, stages: tuple[str, ...] = ("det", "cls", "rec"), name: str = HOSTILE) -> tuple[dict, dict]:
    """A pipeline.json and a bundle.json of the contract: per stage an ONNX artifact, an ORT one
    and a web one (which the phone readers do not load)."""
    arts = []
    for s in stages:
        for fmt, file in (("ort", "model.ort"), ("web", "model.onnx"), ("onnx", "model.onnx")):
            arts.append({"id": f"{s}-{fmt}-fp32", "stage": s, "format": fmt, "path": f"artifacts/{s}-{fmt}-fp32",
                         "model_file": f"artifacts/{s}-{fmt}-fp32/{file}", "task": task_dict(tasks[s])})
    order = {s: [a["id"] for a in arts if a["stage"] == s] for s in stages}
    pipeline = {"schema": "edgeship.pipeline/1", "kind": "ocr", "name": name, "stages": list(stages),
                "tasks": {s: task_dict(tasks[s]) for s in stages}, "fallback_order": order, "golden": "golden/pipeline.json"}
    bundle = {"name": name, "version": "1.2.3", "artifacts": arts, "pipeline": "pipeline.json",
              "fallback_order": [i for s in stages for i in order[s]]}
    return pipeline, bundle


def _parses(path: Path, grammar: str) -> bool:
    from tree_sitter import Language, Parser

    mod = __import__(f"tree_sitter_{grammar}")
    return not Parser(Language(mod.language())).parse(path.read_bytes()).root_node.has_error


def test_the_app_code_is_rendered_from_the_pipeline_and_parses(tmp_path):
    pipeline, bundle = _docs(TINY_TASKS)
    written = write_ocr_app_code(tmp_path, pipeline, bundle)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "integration/android/EdgeshipOcr.kt", "integration/android/EdgeshipOcrReader.kt", "integration/ios/EdgeshipOcr.swift"]
    for p in written:
        assert _parses(p, "swift" if p.suffix == ".swift" else "kotlin"), p
    kt, reader, swift = (p.read_text() for p in written)
    assert "limitSideLen = 96," in kt and "boxThresh = 0.3," in kt and "textScore = 0.0," in kt
    assert "limitSideLen: 96," in swift and "boxThresh: 0.3," in swift
    assert 'const val NAME = "o\\"c\\$r \\${x} \\\\n \\u00e9 \\ud83d\\ude00 */"' in kt  # escaped, not altered
    assert "*/" not in kt.split("\n", 1)[0]  # the header comment cannot be closed by a name
    # the readers load ONNX and ORT files in the fallback order; the web artifacts are not theirs
    assert 'Pair("det-ort-fp32", "det-ort-fp32/model.ort"), Pair("det-onnx-fp32", "det-onnx-fp32/model.onnx")' in reader
    assert '(id: "rec-ort-fp32", path: "rec-ort-fp32/model.ort"), (id: "rec-onnx-fp32"' in swift
    assert "web" not in reader.split("package")[1] and "import android" not in kt and "import android" in reader
    assert 'listOf<String>("cls-ort-fp32", "cls-web-fp32", "cls-onnx-fp32")' in kt  # the record keeps every artifact

    two = tmp_path / "two"
    pipeline, bundle = _docs(TINY_TASKS, ("det", "rec"))
    kt2, _, swift2 = (p.read_text() for p in write_ocr_app_code(two, pipeline, bundle))
    assert "val CLS: TextDirectionTask? = null" in kt2 and "static let cls: TextDirectionTask? = nil" in swift2
    assert _parses(two / "integration/android/EdgeshipOcr.kt", "kotlin") and _parses(two / "integration/ios/EdgeshipOcr.swift", "swift")


def test_a_pipeline_that_is_not_ocr_is_refused_naming_the_field(tmp_path):
    pipeline, bundle = _docs(TINY_TASKS)
    with pytest.raises(FormatError, match=r"stages \['cls', 'rec'\]"):
        write_ocr_app_code(tmp_path, {**pipeline, "stages": ["cls", "rec"]}, bundle)
    bad = {**pipeline, "tasks": {**pipeline["tasks"], "det": {**pipeline["tasks"]["det"], "thresh": 3}}}
    with pytest.raises(FormatError, match=r"tasks.det: task (text_detection.)?thresh: Input should be less than 1"):
        write_ocr_app_code(tmp_path, bad, bundle)
    with pytest.raises(FormatError, match="no task record for the stage 'rec'"):
        write_ocr_app_code(tmp_path, {**pipeline, "tasks": {s: pipeline["tasks"][s] for s in ("det", "cls")}}, bundle)
    assert not (tmp_path / "integration").exists()


# ---- the Kotlin glue on a JVM, against Python ----------------------------------------------------

class Recorder:
    """A model that keeps what it was given (the Python side of the comparison)."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn, self.inputs = fn, []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.inputs.append(x.copy())
        return np.asarray(self.fn(x))


class Upside:
    """The tiny direction classifier, except that every other crop is said to be upside down
    (score 0.97 for "180"): the tiny model never is that sure, a real one is (the slow test)."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn, self.n = fn, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = np.asarray(self.fn(x)).copy()
        s[[i for i in range(len(s)) if (self.n + i) % 2 == 0]] = [0.03, 0.97]
        self.n += len(s)
        return s


def _sessions(folder: Path, files: dict[str, str]) -> dict:
    import onnxruntime as ort

    out = {}
    for stage, name in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        s = ort.InferenceSession(str(folder / name), opts)
        out[stage] = (lambda se, n: lambda x: se.run(None, {n: x})[0])(s, s.get_inputs()[0].name)
    return out


def _vertical_page() -> np.ndarray:
    """A page with a line of text running down it (its crop is turned by 90 degrees)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (160, 200), (235, 235, 230))
    line = Image.new("RGB", (150, 24), (235, 235, 230))
    ImageDraw.Draw(line).text((4, 2), "bcdefghijabc", font=ImageFont.load_default(16), fill=(20, 20, 30))
    im.paste(line.rotate(90, expand=True), (60, 20))
    ImageDraw.Draw(im).text((5, 5), "ab", font=ImageFont.load_default(16), fill=(20, 20, 30))
    return np.asarray(im)


def _anagram_page() -> np.ndarray:
    """Eight anagrams of one word: crops of one shape but not one content, whose order among
    equals decides which batch slot each takes."""
    import itertools

    from PIL import Image, ImageDraw, ImageFont

    words = ["".join(p) for p in list(itertools.permutations("abcde"))[::13]][:8]
    im = Image.new("RGB", (400, 200), (235, 235, 230))
    d = ImageDraw.Draw(im)
    for i, word in enumerate(words):
        d.text((30 + 200 * (i % 2), 10 + 40 * (i // 2)), word, font=ImageFont.load_default(16), fill=(20, 20, 30))
    return np.asarray(im)


def _turned(rgb: np.ndarray, degrees: float) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).rotate(degrees, expand=True, fillcolor=(235, 235, 230), resample=Image.BILINEAR))


def _golden(cases: dict, models: dict, tasks: dict, characters_txt: str, work: Path) -> dict:
    """Python's run of each case (the trace, the models' inputs) and the case folder for the driver."""
    from kotlin_harness import write_ocr_case

    out = {}
    for name, (rgb, cls, *changes) in cases.items():
        det_changes = changes[0] if changes else {}
        rec = {s: Recorder(m) for s, m in (("det", models["det"]), ("rec", models["rec"]), ("cls", cls)) if m is not None}
        st = Stages(det=rec["det"], rec=rec["rec"], cls=rec.get("cls"), det_task=tasks["det"].model_copy(update=det_changes),
                    rec_task=tasks["rec"], cls_task=tasks["cls"] if cls is not None else None,
                    characters=read_characters(characters_txt))
        result = read_page(rgb, st, trace=True)
        out[name] = (result, rec, write_ocr_case(work / name, rgb, result.trace, characters_txt, cls is not None, det_changes))
    return out


def _mismatches(result, recorders: dict, got: dict) -> list:  # noqa: ANN001
    """Where the Kotlin glue's run differs from Python's (nothing: bit for bit)."""
    t = result.trace
    bad = []
    if got["det_input_shape"] != t["det_input_shape"] or list(got["page"]) != t["page_shape"]:
        bad.append(("shapes", got["det_input_shape"], got["page"], t["det_input_shape"], t["page_shape"]))
    if got["boxes"] != [np.asarray(b, np.float32).ravel().tolist() for b in t["boxes_page"]]:
        bad.append(("boxes", got["boxes"], t["boxes_page"]))
    for stage in ("det", "cls", "rec"):
        want = recorders[stage].inputs if stage in recorders else []
        if len(want) != len(got["inputs"][stage]):
            bad.append((stage, "calls", len(want), len(got["inputs"][stage])))
            continue
        for n, (a, b) in enumerate(zip(want, got["inputs"][stage])):
            if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():  # identical bits
                bad.append((stage, n, a.shape, b.shape, float(np.abs(a - b).max()) if a.shape == b.shape else None))
    want_lines = [(np.asarray(ln.box, np.float32).ravel().tolist(), ln.text, ln.score, ln.turned) for ln in result.lines]
    got_lines = [(ln["box"], ln["text"], ln["score"], ln["turned"]) for ln in got["lines"]]
    if want_lines != got_lines:
        bad.append(("lines", want_lines, got_lines))
    return bad


@pytest.fixture(scope="session")
def tiny_ocr_kotlin(tmp_path_factory) -> dict:
    """The tiny pipeline's app code (a hostile name), its Kotlin glue compiled with the driver once."""
    from kotlin_harness import compile_ocr
    from tinyocr import write_tiny_ocr

    root = tmp_path_factory.mktemp("ocr-kotlin")
    write_tiny_ocr(root / "models")
    pipeline, bundle = _docs(TINY_TASKS)
    write_ocr_app_code(root / "bundle", pipeline, bundle)
    return {"root": root, "jar": compile_ocr(root / "bundle/integration/android/EdgeshipOcr.kt", root),
            "models": _sessions(root / "models", {"det": "det.onnx", "cls": "cls.onnx", "rec": "rec.onnx"}),
            "characters": (root / "models/characters.txt").read_text(encoding="utf-8")}


@needs_kotlin
def test_the_kotlin_glue_reads_what_python_reads_bit_for_bit(tiny_ocr_kotlin):
    """Pages that take every branch: upright and upside down, turned by 12 and -25 degrees (boxes
    that are not axis-aligned), a long page (shrunk), a short one (enlarged), a wide one
    (letterboxed), a long page of twelve lines (shrunk: every box mapped back), eight anagrams
    (crops of one shape: ties in the batch order), a line running down (a crop turned by 90 degrees), crops said to be upside down
    (turned by 180), a pipeline without a direction classifier, and a detection record that caps
    the long side, does not dilate and looks at two regions only."""
    from kotlin_harness import read_ocr_result, run_ocr
    from tinyocr import tiny_page

    k = tiny_ocr_kotlin
    m = k["models"]
    cases = {f"page-{s}": (tiny_page(s), m["cls"]) for s in range(3)}
    cases |= {"upside-down": (np.ascontiguousarray(tiny_page(4)[::-1, ::-1]), m["cls"]),
              "wide": (tiny_page(5, lines=1, size=(40, 420)), m["cls"]),
              "short": (tiny_page(2, lines=1, size=(28, 200)), m["cls"]),
              "long": (tiny_page(7, lines=1, size=(64, 2100)), m["cls"]),
              "vertical": (_vertical_page(), m["cls"]),
              "turned-12": (_turned(tiny_page(8), 12), m["cls"]), "turned-25": (_turned(tiny_page(9), -25), m["cls"]),
              "said-upside-down": (tiny_page(10), Upside(m["cls"])), "no-direction": (tiny_page(11), None),
              "long-side-limit": (tiny_page(12, lines=4, size=(300, 500)), m["cls"], LIMIT_MAX),
              "anagrams": (_anagram_page(), m["cls"]), "shrunk": (tiny_page(18, lines=12, size=(460, 2200)), m["cls"])}
    golden = _golden(cases, m, TINY_TASKS, k["characters"], k["root"] / "cases")
    run_ocr(k["jar"], [g[2] for g in golden.values()])
    for name, (result, recorders, folder) in golden.items():
        got = read_ocr_result(folder)
        assert _mismatches(result, recorders, got) == [], name

    # every branch was taken (the cases above are what takes them)
    def first_box(name: str) -> np.ndarray:
        return np.asarray(golden[name][0].trace["boxes_page"][0])

    assert golden["wide"][0].trace["page_shape"] == [104, 420]  # letterboxed: 32 black rows on each side
    assert golden["long"][0].trace["page_shape"] == [496, 1984] and golden["long"][0].lines  # shrunk, then letterboxed
    assert golden["short"][0].trace["page_shape"] == [32, 224] and golden["short"][0].lines  # enlarged
    v = first_box("vertical")
    assert np.linalg.norm(v[0] - v[3]) >= 1.5 * np.linalg.norm(v[0] - v[1])  # its crop turned by 90 degrees
    assert all(b[0][1] != b[1][1] for b in golden["turned-12"][0].trace["boxes_page"])  # not axis-aligned
    assert [ln.turned for ln in golden["said-upside-down"][0].lines].count(True) == 1
    assert "cls" not in golden["no-direction"][0].trace and golden["no-direction"][0].lines
    assert golden["long-side-limit"][0].trace["det_input_shape"] == [1, 3, 192, 320]  # the long side to 320
    assert 1 <= len(golden["long-side-limit"][0].lines) <= 2  # of four lines: max_candidates
    assert golden["shrunk"][0].trace["page_shape"] == [416, 1984] and len(golden["shrunk"][0].lines) >= 8
    page = np.ascontiguousarray(cases["anagrams"][0][..., ::-1])
    crops = [crop(page, np.asarray(b, np.float32)) for b in golden["anagrams"][0].trace["boxes_page"]]
    ratio = [c.shape[1] / c.shape[0] for c in crops]
    tied = [i for i in range(len(crops)) if ratio.count(ratio[i]) > 1]
    assert len(crops) == 8 and len({crops[i].tobytes() for i in tied}) >= 2, ratio  # equal ratios, different crops
    assert sum(len(g[0].lines) for g in golden.values()) >= 20


@needs_kotlin
def test_the_kotlin_glue_grows_and_crops_boxes_as_python_does(tiny_ocr_kotlin, monkeypatch):
    """The DB boxes of maps of slanted bars, the round offsets that grow them (recorded as
    db_boxes makes them) and offsets made to take every branch of pyclipper's rules (small boxes with one arc point a
    corner, ties rounded away from zero, clockwise paths, a box that truncates to a line): the same
    integer points; the distances the boxes are grown by: identical doubles; crops of slanted boxes,
    sampled at the mapped position: identical bytes (the perspective transform's last bits,
    LAPACK's in Python, could move a value across a half)."""
    from edgeship.tasks.ocr import db_boxes
    from kotlin_harness import run_ocr_parts
    from ocr_cases import blob_map, made_offsets, record_offsets, slanted_crops

    rng = np.random.default_rng(11)
    det = TINY_TASKS["det"]  # the record the glue was rendered with
    maps = [(m, int(m.shape[0] * rng.uniform(0.5, 3)), int(m.shape[1] * rng.uniform(0.5, 3)))
            for m in (blob_map(rng) for _ in range(40))]
    grown = record_offsets(monkeypatch)
    want = [db_boxes(m, ph, pw, det) for m, ph, pw in maps]
    offsets = grown + made_offsets(rng)
    crops = slanted_crops(rng)
    got = run_ocr_parts(tiny_ocr_kotlin["jar"], tiny_ocr_kotlin["root"] / "parts", offsets,
                        [(c["path"], det.unclip_ratio) for c in grown], crops, maps)
    assert got["boxes"] == [([b.tolist() for b in boxes], scores) for boxes, scores in want]
    assert sum(len(boxes) for boxes, _ in want) > 40
    assert len(grown) > 40 and got["distances"] == [c["delta"] for c in grown]
    bad = [(c, g) for c, g in zip(offsets, got["offsets"]) if g != c["want"]]
    assert len(got["offsets"]) == len(offsets) and not bad, f"{len(bad)} of {len(offsets)} offsets differ: {bad[:1]}"
    assert [g.shape for g in got["crops"]] == [c["out"].shape for c in crops]
    differ = sum(int((g != c["out"]).sum()) for g, c in zip(got["crops"], crops))
    assert differ <= sum(c["out"].size for c in crops) * 1e-5, f"{differ} crop values differ"


@needs_kotlin
def test_the_android_reader_typechecks_against_onnxruntime_android(tmp_path):
    """EdgeshipOcrReader.kt (ONNX Runtime's Java API, Android's Context and Bitmap) compiles with the
    glue against stubs of those APIs with their real signatures."""
    from kotlin_harness import ORT_STUBS, typecheck_android

    pipeline, bundle = _docs(TINY_TASKS)
    write_ocr_app_code(tmp_path / "b", pipeline, bundle)
    build = typecheck_android(tmp_path / "b/integration/android", tmp_path, ORT_STUBS)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / "out/ai/edgeship/generated/EdgeshipOcrReader.class").is_file()


# ---- the real PaddleOCR models (RapidOCR's) ------------------------------------------------------

def _rapidocr_models() -> Path | None:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0], "models")


@pytest.mark.slow
@needs_kotlin
@pytest.mark.skipif(_rapidocr_models() is None, reason="rapidocr_onnxruntime is not installed (its models are)")
def test_the_kotlin_glue_on_real_paddleocr_models_bit_for_bit(tmp_path):
    """Rendered text pages (one upside down: the real direction classifier turns its crops) through
    PaddleOCR's det, cls and rec models with RapidOCR's default task records."""
    import onnx

    from kotlin_harness import compile_ocr, read_ocr_result, run_ocr

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from real_inputs import phrases, render_page

    models = _rapidocr_models()
    rec_file = "ch_PP-OCRv4_rec_infer.onnx"
    meta = {p.key: p.value for p in onnx.load(str(models / rec_file), load_external_data=False).metadata_props}
    tasks = {"det": TextDetection(), "cls": TextDirection(), "rec": TextRecognition()}
    pipeline, bundle = _docs(tasks, name="paddleocr")
    write_ocr_app_code(tmp_path / "bundle", pipeline, bundle)
    jar = compile_ocr(tmp_path / "bundle/integration/android/EdgeshipOcr.kt", tmp_path)
    m = _sessions(models, {"det": "ch_PP-OCRv4_det_infer.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "rec": rec_file})
    rng = random.Random(3)
    cases = {"page": (render_page(phrases(12, 1), rng), m["cls"]),
             "upside-down": (np.ascontiguousarray(render_page(phrases(12, 2), rng)[::-1, ::-1]), m["cls"])}
    golden = _golden(cases, m, tasks, meta["character"], tmp_path / "cases")
    run_ocr(jar, [g[2] for g in golden.values()])
    for name, (result, recorders, folder) in golden.items():
        assert _mismatches(result, recorders, read_ocr_result(folder)) == [], name
        assert len(result.lines) >= 5, [ln.text for ln in result.lines]
    assert all(ln.turned for ln in golden["upside-down"][0].lines)
    assert not any(ln.turned for ln in golden["page"][0].lines)
