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


def _doc(pre: dict) -> dict:
    def art(i: str, fmt: str, model: str) -> dict:
        return {"id": i, "format": fmt, "path": f"artifacts/{i}", "model_file": f"artifacts/{i}/{model}",
                "runtime": {"tested_version": "1.0", "requires": "iOS16"}}

    return {"name": HOSTILE, "version": "1.0.0", "source": {"preprocess": pre}, "labels": "labels.txt", "labels_count": 3,
            "golden": "golden/golden.json", "fallback_order": ["tflite-int8", "coreml-fp32", "web-fp32", "onnx-fp32"],
            "artifacts": [art("tflite-int8", "tflite", 'm"o$del.tflite'), art("coreml-fp32", "coreml", "model.mlpackage"),
                          art("web-fp32", "web", "model.onnx"), art("onnx-fp32", "onnx", "model.onnx")]}


def _parses(path: Path, grammar: str) -> bool:
    from tree_sitter import Language, Parser

    mod = __import__(f"tree_sitter_{grammar}")
    tree = Parser(Language(mod.language())).parse(path.read_bytes())
    return not tree.root_node.has_error


def test_generated_code_survives_hostile_names_and_parses(tmp_path):
    written = write_integration(tmp_path, _doc(DEFAULT_PRE))
    out = tmp_path / "integration"
    assert sorted(written) == sorted(f"integration/{p}" for p in (
        "README.md", "android/EdgeshipPreprocessing.kt", "android/EdgeshipClassifier.kt", "ios/EdgeshipClassifier.swift",
        "python/classify.py", "web/edgeship-classifier.js", "web/index.html"))
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


MAIN_KT = """
import ai.edgeship.generated.EdgeshipPreprocessing
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun main(args: Array<String>) {
    val w = args[1].toInt()
    val h = args[2].toInt()
    val rgb = File(args[0]).readBytes()
    val argb = IntArray(w * h) { i -> (0xFF shl 24) or ((rgb[3 * i].toInt() and 0xFF) shl 16) or
        ((rgb[3 * i + 1].toInt() and 0xFF) shl 8) or (rgb[3 * i + 2].toInt() and 0xFF) }
    val x = EdgeshipPreprocessing.toFloatInput(argb, w, h)
    val buf = ByteBuffer.allocate(x.size * 4).order(ByteOrder.LITTLE_ENDIAN)
    buf.asFloatBuffer().put(x)
    File(args[3]).writeBytes(buf.array())
    val sb = ByteBuffer.wrap(File(args[4]).readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    val scores = FloatArray(sb.remaining())
    sb.get(scores)
    val labels = File(args[5]).readLines(Charsets.UTF_8)
    File(args[6]).writeText(EdgeshipPreprocessing.INPUT_NAME, Charsets.UTF_8)
    for ((label, p) in EdgeshipPreprocessing.topK(scores, labels, 3, 0.001)) println("$p\\t$label")
}
"""


@needs_kotlin
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_generated_kotlin_compiles_and_matches_the_python_preprocessing(tmp_path, layout):
    pre = {**DEFAULT_PRE, "layout": layout, "height": 160 if layout == "NHWC" else 224, "mean": [123.7, 116.3, 103.5],
           "std": [58.4, 57.1, 57.4], "color": "BGR" if layout == "NHWC" else "RGB"}
    write_integration(tmp_path, _doc(pre))
    kt = tmp_path / "integration/android/EdgeshipPreprocessing.kt"
    (tmp_path / "Main.kt").write_text(MAIN_KT)
    jar = tmp_path / "t.jar"
    build = subprocess.run(["kotlinc", str(kt), str(tmp_path / "Main.kt"), "-include-runtime", "-d", str(jar)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]

    img = sample_photos()["coffee"]  # the golden image of the default model
    h, w, _ = img.shape
    (tmp_path / "rgb.bin").write_bytes(np.ascontiguousarray(img).tobytes())
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(5).astype(np.float32) * 3
    scores.tofile(tmp_path / "scores.bin")
    labels = ["a'b", 'quo"te', "ünï $x", "back\\slash", "five"]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    run = subprocess.run(["java", "-jar", str(jar), *(str(tmp_path / n) for n in ("rgb.bin",)), str(w), str(h),
                          str(tmp_path / "x.bin"), str(tmp_path / "scores.bin"), str(tmp_path / "labels.txt"),
                          str(tmp_path / "name.txt")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]

    want = preprocess_image(img, Preprocess.model_validate(pre))
    got = np.fromfile(tmp_path / "x.bin", dtype="<f4").reshape(want.shape)
    np.testing.assert_array_equal(got, want)  # the same tensor, bit for bit
    assert (tmp_path / "name.txt").read_bytes().decode("utf-8") == HOSTILE

    p = np.exp(scores.astype(np.float64) - scores.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:3]
    lines = [ln.split("\t", 1) for ln in run.stdout.strip().splitlines()]
    assert [lab for _, lab in lines] == [labels[i] for i in order]
    np.testing.assert_allclose([float(c) for c, _ in lines], p[order], rtol=1e-12)


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
