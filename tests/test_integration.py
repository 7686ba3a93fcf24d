"""The app code a bundle carries: generated from the bundle, escaped for every language, and run
where this machine can run it: the Kotlin logic compiled and compared with the Python
preprocessing on a real photo, the Swift and Kotlin parsed, the web page classifying in headless
Chromium like the Python runtime, and both following the fallback order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import edgeship
from edgeship.artifact import Preprocess
from edgeship.bundle.integration import write_integration
from edgeship.data import preprocess_image, sample_photos
from edgeship.runtime import Classifier
from edgeship.targets.web import _Browser, chromium_path, serve_folder

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
needs_kotlin = pytest.mark.skipif(shutil.which("kotlinc") is None and not CI, reason="no kotlinc here (CI installs it)")

HOSTILE = 'in"put\\ $x ${y} \n\r\t é 😀 */ """ </script>'
DEFAULT_PRE = {"kind": "image", "input": HOSTILE, "height": 224, "width": 224, "layout": "NCHW", "color": "RGB",
               "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "crop_fraction": 0.875,
               "resample": "bilinear", "dtype": "float32", "output": "logits"}


def _input(pre: dict, dtype: str = "float32") -> list[dict]:
    shape = ["batch", 3, pre["height"], pre["width"]] if pre["layout"] == "NCHW" else [1, pre["height"], pre["width"], 3]
    return [{"name": pre["input"], "shape": shape, "dtype": dtype, "layout": pre["layout"]}]


def _art(i: str, fmt: str, model: str, pre: dict, dtype: str = "float32") -> dict:
    return {"id": i, "format": fmt, "path": f"artifacts/{i}", "model_file": f"artifacts/{i}/{model}",
            "precision": i.rsplit("-", 1)[-1], "runtime": {"tested_version": "1.0", "requires": "iOS16"},
            "preprocess": pre, "inputs": _input(pre, dtype)}


def _doc(pre: dict) -> dict:
    return {"name": HOSTILE, "version": "1.0.0", "source": {"preprocess": pre}, "labels": "labels.txt", "labels_count": 3,
            "golden": "golden/golden.json", "fallback_order": ["tflite-int8", "coreml-fp32", "web-fp32", "onnx-fp32"],
            "artifacts": [_art("tflite-int8", "tflite", 'm"o$del.tflite', {**pre, "dtype": "uint8"}, "uint8"),
                          _art("coreml-fp32", "coreml", "model.mlpackage", pre), _art("web-fp32", "web", "model.onnx", pre),
                          _art("onnx-fp32", "onnx", "model.onnx", pre)]}


def _parses(path: Path, grammar: str) -> bool:
    from tree_sitter import Language, Parser

    mod = __import__(f"tree_sitter_{grammar}")
    tree = Parser(Language(mod.language())).parse(path.read_bytes())
    return not tree.root_node.has_error


def test_generated_code_survives_hostile_names_and_parses(tmp_path):
    written = write_integration(tmp_path, _doc(DEFAULT_PRE))
    out = tmp_path / "integration"
    light = [w for w in written if w.startswith("integration/python/edgeship_light/")]
    assert sorted(set(written) - set(light)) == sorted(f"integration/{p}" for p in (
        "README.md", "android/EdgeshipPreprocessing.kt", "android/EdgeshipClassifier.kt", "ios/EdgeshipClassifier.swift",
        "python/classify.py", "python/requirements.txt", "web/edgeship-classifier.js", "web/index.html"))
    assert "integration/python/edgeship_light/runtime/__init__.py" in light
    assert _parses(out / "android/EdgeshipPreprocessing.kt", "kotlin")
    assert _parses(out / "android/EdgeshipClassifier.kt", "kotlin")
    assert _parses(out / "ios/EdgeshipClassifier.swift", "swift")
    compile((out / "python/classify.py").read_text(), "classify.py", "exec")  # a SyntaxError fails the test
    js = (out / "web/edgeship-classifier.js").read_text()
    html = (out / "web/index.html").read_text()
    assert "</script>" not in js and html.count("</script>") == 1 and "&lt;/script&gt;" in html  # only its own
    config = json.loads(js.split("export const CONFIG = ", 1)[1].split(";\n", 1)[0])
    assert config["preprocess"]["input"] == HOSTILE  # escaped, not altered
    assert [c["id"] for c in config["candidates"]] == ["web-fp32", "onnx-fp32"]  # the fallback order, .onnx ones
    if shutil.which("node"):
        check = subprocess.run(["node", "--check", "--input-type=module"], input=js, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_no_app_code_for_a_model_without_image_preprocessing(tmp_path):
    doc = {**_doc(DEFAULT_PRE), "source": {"preprocess": None}, "labels_count": 0}
    assert write_integration(tmp_path, doc) == ["integration/README.md"]
    assert "no image preprocessing" in (tmp_path / "integration/README.md").read_text()


# ---- one bundle, artifacts of one format with different inputs (issue: 4a, 4c) ------------------

IMAGENET = {"mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4]}


def _mixed_doc() -> dict:
    """tflite artifacts that take four different tensors (NHWC float BGR, NHWC raw uint8, NCHW
    float, NCHW int8 quantised), an onnx one, and the source's own (NCHW float32) preprocessing."""
    src = {**DEFAULT_PRE, **IMAGENET, "height": 160}
    nhwc_bgr = {**src, "layout": "NHWC", "color": "BGR"}
    raw = {**src, "layout": "NHWC", "dtype": "uint8", "mean": [127.0] * 3, "std": [128.0] * 3}
    return {**_doc(src), "fallback_order": ["tflite-int8", "tflite-int8q", "coreml-fp16", "tflite-fp16", "web-fp32", "onnx-fp32",
                               "tflite-fp32"],
            "artifacts": [_art("tflite-fp32", "tflite", "model.tflite", nhwc_bgr),
                          _art("tflite-int8", "tflite", "model.tflite", raw, "uint8"),
                          _art("tflite-fp16", "tflite", "model.tflite", src),
                          _art("tflite-int8q", "tflite", "model.tflite", src, "int8"),
                          _art("web-fp32", "web", "model.onnx", src), _art("onnx-fp32", "onnx", "model.onnx", src),
                          _art("coreml-fp16", "coreml", "model.mlpackage", src)]}


QUANT = (0.0213, -3)  # what LiteRT reads from the int8q model file (there is none here)


@pytest.fixture
def mixed(tmp_path, monkeypatch):
    from edgeship.bundle import integration

    monkeypatch.setattr(integration, "_tflite_quantization", lambda model: QUANT if "int8q" in str(model) else None,
                        raising=False)
    doc = _mixed_doc()
    write_integration(tmp_path, doc)
    return tmp_path, doc


def test_each_artifact_gets_its_own_input_and_the_differences_are_said(mixed):
    """Issue 4a/4c: one EdgeshipPreprocessing constant set, the source model's (CHANNELS_FIRST =
    true, UINT8_INPUT = false), was written for every artifact: an NHWC uint8 tflite file was fed
    an NCHW float buffer four times its size."""
    root, doc = mixed
    out = root / "integration"
    kt = (out / "android/EdgeshipPreprocessing.kt").read_text()
    clf = (out / "android/EdgeshipClassifier.kt").read_text()
    readme = (out / "README.md").read_text()
    for ident, shape, dtype, layout, size in (("TFLITE_FP32", "1, 160, 224, 3", "float32", "NHWC", 4 * 3 * 160 * 224),
                                              ("TFLITE_INT8", "1, 160, 224, 3", "uint8", "NHWC", 3 * 160 * 224),
                                              ("TFLITE_FP16", "1, 3, 160, 224", "float32", "NCHW", 4 * 3 * 160 * 224),
                                              ("TFLITE_INT8Q", "1, 3, 160, 224", "int8", "NCHW", 3 * 160 * 224)):
        block = kt.split(f"val {ident} = EdgeshipInputSpec(", 1)[1].split(")\n", 1)[0]
        assert f"shape = intArrayOf({shape})" in block and f'dtype = "{dtype}"' in block
        assert f"channelsFirst = {'true' if layout == 'NCHW' else 'false'},  // {layout}" in block
        assert f"({size} bytes)" in kt.split(f"val {ident} =", 1)[0].rsplit("/**", 1)[1]  # its own comment
        aid = ident.lower().replace("_", "-")
        assert f"| {aid} | `artifacts/{aid}/model.tflite` | `" in readme
        row = next(ln for ln in readme.splitlines() if ln.startswith(f"| {aid} |"))
        assert f"| {layout} | {dtype} |" in row and f"| {size} |" in row
        assert f"EdgeshipArtifacts.{ident}" in clf and f"put artifacts/{aid}/model.tflite" in clf
    assert "rawPixels = true" in kt.split("val TFLITE_INT8 =", 1)[1].split(")\n", 1)[0]
    q = kt.split("val TFLITE_INT8Q =", 1)[1].split(")\n", 1)[0]
    assert f"inputScale = {QUANT[0]!r}" in q and f"inputZeroPoint = {QUANT[1]}" in q
    # the layouts differ within one format: said, per artifact, in the README and in the code
    note = "the tflite artifacts of this bundle differ in layout: tflite-int8 NHWC, tflite-int8q NCHW, tflite-fp16 NCHW"
    assert note in readme and note in kt and note in clf
    assert "differ in input type" in readme
    assert "onnx artifacts" not in readme  # one onnx artifact: nothing to say
    # the web page builds each candidate's own tensor
    js = (out / "web/edgeship-classifier.js").read_text()
    config = json.loads(js.split("export const CONFIG = ", 1)[1].split(";\n", 1)[0])
    assert {c["id"]: (c["input"]["layout"], c["preprocess"]["layout"]) for c in config["candidates"]} == {
        "web-fp32": ("NCHW", "NCHW"), "onnx-fp32": ("NCHW", "NCHW")}


def test_an_artifact_no_code_can_feed_is_named_not_guessed(tmp_path):
    doc = _mixed_doc()
    doc["artifacts"][3]["model_file"] = "artifacts/tflite-int8q/missing.tflite"  # its quantisation cannot be read
    write_integration(tmp_path, doc)
    readme = (tmp_path / "integration/README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith("| tflite-int8q |"))
    assert "no generated code feeds it" in row and "scale and zero point" in row
    assert "TFLITE_INT8Q" not in (tmp_path / "integration/android/EdgeshipPreprocessing.kt").read_text()


@needs_kotlin
def test_generated_kotlin_compiles_and_matches_the_python_preprocessing_per_artifact(mixed):
    """Each artifact's spec, compiled, gives the tensor Python's preprocessing gives for that
    artifact, bit for bit (the int8 one: quantised with its own scale and zero point)."""
    from kotlin_harness import Driver, compile_preprocessing, read_input

    root, doc = mixed
    work = root / "kt"
    work.mkdir()
    jar = compile_preprocessing(root / "integration/android/EdgeshipPreprocessing.kt", work)
    img = sample_photos()["coffee"]  # the golden image of the default model
    drv = Driver(jar, work)
    outs = {e["id"]: drv.pixels(img, 1, e["id"]) for e in doc["artifacts"]}
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(5).astype(np.float32) * 3
    labels = ["a'b", 'quo"te', "ünï $x", "back\\slash", "five"]
    drv.topk(scores, labels, 3, 0.001, "tflite-int8")
    got = drv.run()
    assert list(got["specs"]) == doc["fallback_order"]  # every artifact, in the fallback order
    assert got["input_names"] == [HOSTILE] * 7  # escaped, not altered
    for e in doc["artifacts"]:
        spec = got["specs"][e["id"]]
        pre = Preprocess.model_validate(e["preprocess"])
        want = preprocess_image(img, pre.model_copy(update={"dtype": "float32"}) if e["id"] == "tflite-int8q" else pre)
        if e["id"] == "tflite-int8q":
            want = np.clip(np.rint(want.astype(np.float64) / QUANT[0]) + QUANT[1], -128, 127).astype(np.int8)
        assert spec["shape"] == list(want.shape) and spec["bytes"] == want.nbytes, e["id"]
        np.testing.assert_array_equal(read_input(outs[e["id"]], spec), want, err_msg=e["id"])  # bit for bit

    p = np.exp(scores.astype(np.float64) - scores.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:3]
    assert [lab for _, lab in got["topk"]] == [labels[i] for i in order]
    np.testing.assert_allclose([c for c, _ in got["topk"]], p[order], rtol=1e-12)


@needs_kotlin
def test_generated_android_classifier_typechecks_against_the_android_and_litert_api(mixed):
    """EdgeshipClassifier.kt (which needs android.jar and LiteRT, not here) compiled against stubs
    with their real signatures: it uses ExifInterface, the spec's own input and checks it at load."""
    from kotlin_harness import typecheck_android

    root, _ = mixed
    work = root / "typecheck"
    work.mkdir()
    build = typecheck_android(root / "integration/android", work)
    assert build.returncode == 0, build.stderr[-3000:]


def test_every_image_reader_applies_the_exif_orientation(mixed):
    """Issue 1: Android's BitmapFactory ignores EXIF, Vision needs the orientation handed to it, and
    a browser applies it only by default: each generated reader says so in code."""
    root, _ = mixed
    out = root / "integration"
    kt = (out / "android/EdgeshipClassifier.kt").read_text()
    assert "ExifInterface(ByteArrayInputStream(encoded))" in kt and "ExifInterface.TAG_ORIENTATION" in kt
    assert "EdgeshipPreprocessing.orient(pixels, w, h, orientation)" in kt
    assert "fun orient(argb: IntArray, w: Int, h: Int, orientation: Int)" in (out / "android/EdgeshipPreprocessing.kt").read_text()
    swift = (out / "ios/EdgeshipClassifier.swift").read_text()
    assert "VNImageRequestHandler(cgImage: region, orientation: orientation, options: [:])" in swift
    assert "kCGImagePropertyOrientation" in swift and "image.imageOrientation" in swift
    js = (out / "web/edgeship-classifier.js").read_text()
    assert 'createImageBitmap(file, {imageOrientation: "from-image"' in js
    assert "image-orientation: from-image" in (out / "web/index.html").read_text()


# ---- a real bundle: the web page and the Python runtime, side by side --------------------------

def _page_result(bundle: Path, image: Path) -> tuple[dict, dict | None]:
    """Open integration/web/index.html from ``bundle`` (served on loopback, every other request
    blocked), wait until it is ready, classify ``image``; (ready, result)."""
    server = serve_folder(bundle, {}, isolated=False)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    browser = _Browser.acquire()
    ctx = browser.new_context()
    try:
        outside: list[str] = []

        def route(r):  # noqa: ANN001
            if r.request.url.startswith(origin + "/"):
                return r.continue_()
            outside.append(r.request.url)
            return r.abort()

        ctx.route("**/*", route)
        page = ctx.new_page()
        page.goto(f"{origin}/integration/web/index.html")
        page.wait_for_function("window.edgeshipReady", timeout=120_000)
        ready = page.evaluate("window.edgeshipReady")
        result = None
        if "error" not in ready:
            page.set_input_files("#file", str(image))
            page.wait_for_function("window.edgeshipResult", timeout=120_000)
            result = page.evaluate("window.edgeshipResult")
        assert not outside, f"the page asked for {outside}"
        return ready, result
    finally:
        _Browser.release(ctx)
        server.shutdown()
        server.server_close()


def _bundle(res: edgeship.DeployResult) -> Path:
    return res.out / res.manifest["stages"]["bundle"]["folder"]


@needs_browser
def test_the_page_and_the_python_runtime_agree_and_follow_the_fallback_order(tmp_path):
    from PIL import Image

    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx", "web"])
    bundle = _bundle(res)
    order = json.loads((bundle / "bundle.json").read_text())["fallback_order"]
    assert set(order) == {"onnx-fp32", "web-fp32"}
    png = tmp_path / "coffee.png"
    Image.fromarray(sample_photos()["coffee"]).save(png)

    py = Classifier.from_bundle(bundle)
    want = py.classify(png, top_k=3, threshold=0.1)
    ready, got = _page_result(bundle, png)
    assert ready["servedBy"] == order[0] and ready["skipped"] == []
    assert [p["label"] for p in got["predictions"]] == [p.label for p in want]
    np.testing.assert_allclose([p["confidence"] for p in got["predictions"]], [p.confidence for p in want], atol=0.01)

    # the first artifact gone: both serve the next one and say why
    shutil.rmtree(bundle / "artifacts" / order[0])
    py = Classifier.from_bundle(bundle)
    assert py.served_by == order[1] and [s["artifact"] for s in py.skipped] == [order[0]]
    ready, got = _page_result(bundle, png)
    assert ready["servedBy"] == order[1] and [s["artifact"] for s in ready["skipped"]] == [order[0]]
    assert "does not load here" in ready["skipped"][0]["reason"]
    assert [p["label"] for p in got["predictions"]] == [p.label for p in want]


@needs_browser
@pytest.mark.slow
def test_default_bundle_web_page_classifies_coffee_as_espresso(tmp_path):
    from PIL import Image

    res = edgeship.deploy(out=tmp_path / "out", targets=["onnx", "web"])
    bundle = _bundle(res)
    png = tmp_path / "coffee.png"
    Image.fromarray(sample_photos()["coffee"]).save(png)
    want = Classifier.from_bundle(bundle).classify(png)[0]
    ready, got = _page_result(bundle, png)
    top = got["predictions"][0]
    assert want.label == top["label"] == "espresso"
    assert abs(top["confidence"] - want.confidence) <= 0.01
    script = subprocess.run([os.sys.executable, str(bundle / "integration/python/classify.py"), str(png), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert script.returncode == 0, script.stderr[-2000:]
    assert json.loads(script.stdout)["results"][0]["predictions"][0]["label"] == "espresso"
