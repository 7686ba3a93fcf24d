"""The app code of a real bundle, against that bundle: the compiled Kotlin preprocessing feeds each
shipped artifact the tensor its record and golden vectors say (layout, dtype, byte size, values);
every image reader (Python, the web page, Kotlin) applies a photo's EXIF orientation as Pillow
does; the page answers a photo chosen while it still loads; classify.py runs where edgeship,
torch and pydantic cannot be imported, on the runtime the bundle carries, and says what to
install when numpy, Pillow or onnxruntime is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeship
from edgeship.artifact import Preprocess
from edgeship.data import preprocess_image, sample_photos
from edgeship.runtime import Classifier
from edgeship.targets.web import _Browser, chromium_path, serve_folder

CI = bool(os.environ.get("EDGESHIP_CI"))
needs_browser = pytest.mark.skipif(chromium_path() is None and not CI, reason="no Chromium here (CI installs it)")
needs_kotlin = pytest.mark.skipif(shutil.which("kotlinc") is None and not CI, reason="no kotlinc here (CI installs it)")

#: EXIF orientation -> the operation that stores an upright photo so that the orientation shows it
#: upright again (the inverse of what Pillow's exif_transpose applies)
STORED_AS = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
             7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def oriented_jpegs(folder: Path) -> dict[int, Path]:
    """The coffee photo as eight JPEGs, one per EXIF orientation, each stored turned or mirrored
    so that its orientation tag (0x0112) shows it upright."""
    folder.mkdir(parents=True, exist_ok=True)
    upright = Image.fromarray(sample_photos()["coffee"][:, :592])  # 400 x 592: whole JPEG blocks either way
    out = {}
    for o, op in STORED_AS.items():
        exif = Image.Exif()
        exif[0x0112] = o
        p = folder / f"coffee-orientation-{o}.jpg"
        (upright if op is None else upright.transpose(op)).save(p, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
        out[o] = p
    return out


def stored_pixels(path: Path) -> tuple[np.ndarray, int]:
    """A JPEG's pixels as stored (as Android's BitmapFactory decodes them: EXIF ignored) and its
    EXIF orientation (as androidx ExifInterface reads it)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), int(im.getexif().get(0x0112, 1))


def _bundle(res: edgeship.DeployResult) -> Path:
    return res.out / res.manifest["stages"]["bundle"]["folder"]


@pytest.fixture(scope="module", params=["nchw", "nhwc"])
def android_bundle(request, tmp_path_factory) -> Path:
    """A tiny classifier's release with tflite (fp32, int8 taking uint8 pixels) and onnx (fp32,
    int8) artifacts: the tflite ones NCHW (as ``--targets all`` ships them) or NHWC
    (``--tflite-nhwc``), the onnx ones NCHW."""
    out = tmp_path_factory.mktemp(f"android-{request.param}")
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["tflite", "onnx"], quantize=["int8"],
                          tflite_nhwc=request.param == "nhwc")
    return _bundle(res)


@pytest.fixture(scope="module")
def web_bundle(tmp_path_factory) -> Path:
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path_factory.mktemp("web"), targets=["onnx", "web"])
    return _bundle(res)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[int, Path]:
    return oriented_jpegs(tmp_path_factory.mktemp("oriented"))


# ---- Android: each artifact's own input, its golden vectors, EXIF orientation (4a, 1) ---------

@needs_kotlin
def test_kotlin_feeds_every_shipped_artifact_its_golden_inputs_and_applies_exif(android_bundle, photos, tmp_path):
    """Issue 4a: the generated Kotlin filled an NCHW float buffer (602,112 bytes for a 150,528-byte
    tensor) for a tflite int8 that takes uint8, NHWC or not. Each shipped artifact's spec, compiled,
    must give exactly the bytes of its golden input tensors (dtype, shape, byte size, values), and
    issue 1: with a photo's pixels as stored and its EXIF orientation, the tensor Python gives."""
    from kotlin_harness import Driver, compile_preprocessing, read_input

    doc = json.loads((android_bundle / "bundle.json").read_text())
    golden = json.loads((android_bundle / "golden/golden.json").read_text())
    jar = compile_preprocessing(android_bundle / "integration/android/EdgeshipPreprocessing.kt", tmp_path)
    drv = Driver(jar, tmp_path)
    names = [i["name"] for i in golden["inputs"]]
    images = sample_photos(tuple(names))
    jobs = {(e["id"], n): drv.pixels(images[n], 1, e["id"]) for e in doc["artifacts"] for n in names}
    first = doc["fallback_order"][0]
    oriented = {o: drv.pixels(*stored_pixels(p), first) for o, p in photos.items()}
    got = drv.run()

    assert list(got["specs"]) == doc["fallback_order"]  # a spec for every shipped artifact, in order
    tflite = [e for e in doc["artifacts"] if e["format"] == "tflite"]
    assert {e["precision"] for e in tflite} == {"fp32", "int8"}
    for e in doc["artifacts"]:
        spec, rec = got["specs"][e["id"]], e["inputs"][0]
        assert spec["model_file"] == e["model_file"] and spec["format"] == e["format"]
        assert spec["dtype"] == rec["dtype"] and spec["layout"] == rec["layout"] == e["preprocess"]["layout"], e["id"]
        assert spec["shape"] == [d if isinstance(d, int) else 1 for d in rec["shape"]], e["id"]
        for n in names:
            want = np.load(android_bundle / golden["artifacts"][e["id"]]["inputs"][n][0])
            assert spec["bytes"] == want.nbytes, (e["id"], spec["bytes"], want.nbytes)  # the byte size the model takes
            x = read_input(jobs[e["id"], n], spec)
            assert x.dtype == want.dtype and x.shape == want.shape, e["id"]
            np.testing.assert_array_equal(x, want, err_msg=f"{e['id']} {n}")  # bit for bit
    int8 = next(e for e in tflite if e["precision"] == "int8")
    assert got["specs"][int8["id"]]["raw"] and got["specs"][int8["id"]]["dtype"] == "uint8"

    spec = got["specs"][first]
    pre = Preprocess.model_validate(next(e for e in doc["artifacts"] if e["id"] == first)["preprocess"])
    upright = preprocess_image(photos[1], pre)
    for o, p in photos.items():
        want = preprocess_image(p, pre)  # Python's reader: exif_transpose
        x = read_input(oriented[o], spec)
        assert got["sizes"][str(oriented[o])] == (592, 400), o  # shown upright: width 592, height 400
        np.testing.assert_allclose(x.astype(np.float64), want.astype(np.float64), atol=1e-6, err_msg=f"orientation {o}")
        # and close to the upright photo's (the JPEG of a turned photo is compressed a little differently)
        assert np.abs(x.astype(np.float64) - upright.astype(np.float64)).mean() < 0.05 * np.abs(upright).max(), o


@needs_kotlin
def test_kotlin_orientation_is_pillows_exif_transpose(tmp_path):
    """The plain-pixel orientation function (what EdgeshipClassifier applies to a bitmap with the
    ExifInterface orientation) is Pillow's exif_transpose, pixel for pixel, for all eight tags, on a
    small image whose width and height differ."""
    from edgeship.bundle.integration import write_integration
    from kotlin_harness import Driver, compile_preprocessing

    pre = {"kind": "image", "input": "x", "height": 5, "width": 3, "layout": "NHWC", "color": "RGB",
           "mean": [0.0] * 3, "std": [1.0] * 3, "crop_fraction": 1.0, "resample": "bilinear", "dtype": "uint8",
           "output": "logits"}
    doc = {"name": "m", "version": "1.0.0", "source": {"preprocess": pre}, "labels": "labels.txt", "labels_count": 2,
           "golden": "golden/golden.json", "fallback_order": ["onnx-a"],
           "artifacts": [{"id": "onnx-a", "format": "onnx", "path": "artifacts/onnx-a", "model_file": "artifacts/onnx-a/m.onnx",
                          "preprocess": pre, "inputs": [{"name": "x", "shape": [1, 5, 3, 3], "dtype": "uint8", "layout": "NHWC"}]}]}
    write_integration(tmp_path, doc)
    jar = compile_preprocessing(tmp_path / "integration/android/EdgeshipPreprocessing.kt", tmp_path)
    drv = Driver(jar, tmp_path)
    rng = np.random.default_rng(3)
    outs = {}
    for o, op in STORED_AS.items():
        upright = rng.integers(0, 256, size=(5, 3, 3), dtype=np.uint8)  # 3 wide, 5 high
        stored = upright if op is None else np.asarray(Image.fromarray(upright).transpose(op))
        outs[o] = (upright, drv.pixels(stored, o, "onnx-a"))
    got = drv.run()
    for o, (upright, path) in outs.items():
        assert got["sizes"][str(path)] == (3, 5), o
        np.testing.assert_array_equal(np.frombuffer(path.read_bytes(), np.uint8).reshape(5, 3, 3), upright, err_msg=str(o))


# ---- Python: the bundle's own light runtime, no edgeship (10), EXIF (1) ------------------------

BLOCKED_RUN = r"""
import importlib.abc, runpy, sys
blocked = set(sys.argv[1].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
script = sys.argv[2]
sys.argv = sys.argv[2:]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("edgeship", "torch", "pydantic", "onnx", "jinja2"))
print("MODULES", heavy, file=sys.stderr)
sys.exit(code)
"""

NO_EDGESHIP = "edgeship,torch,pydantic,onnx,onnxscript,jinja2,typer,rich,litert_torch,ai_edge_litert"


def run_blocked(script: Path, args: list[str], blocked: str, cwd: Path) -> subprocess.CompletedProcess:
    """classify.py in a fresh Python where the modules ``blocked`` cannot be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, blocked, str(script), *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env=env)


def test_classify_py_runs_without_edgeship_on_the_runtime_the_bundle_carries(android_bundle, photos, tmp_path):
    """Issue 10: integration/python/classify.py died with ModuleNotFoundError: edgeship where only
    numpy, Pillow and onnxruntime are installed. It must answer, and agree with edgeship's own
    runtime; issue 1: each EXIF orientation of a photo gets the upright photo's answer."""
    script = android_bundle / "integration/python/classify.py"
    files = [str(photos[o]) for o in sorted(photos)]
    run = run_blocked(script, [*files, "--json", "--threshold", "0"], NO_EDGESHIP, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == "MODULES []", run.stderr[-500:]  # nothing of edgeship, torch, ...
    out = json.loads(run.stdout)
    doc = json.loads((android_bundle / "bundle.json").read_text())
    light = [i for i in doc["fallback_order"] if i.startswith("onnx")]
    assert out["served_by"] == light[0]
    # the tflite artifacts before it: skipped, saying the light runtime runs ONNX/ORT, not a traceback
    before = doc["fallback_order"][:doc["fallback_order"].index(light[0])]
    assert [s["artifact"] for s in out["skipped"]] == before
    assert all("ONNX and ORT" in s["reason"] for s in out["skipped"])

    full = Classifier(android_bundle / "artifacts" / light[0])  # edgeship's own runtime, in this process
    results = {r["image"]: r["predictions"] for r in out["results"]}
    up = results[str(photos[1])]
    for o, p in photos.items():
        want = full.classify(p, top_k=3, threshold=0)
        got = results[str(p)]
        assert [g["label"] for g in got] == [w.label for w in want], o
        np.testing.assert_allclose([g["confidence"] for g in got], [w.confidence for w in want], atol=1e-6)
        assert got[0]["label"] == up[0]["label"], o  # upright, whatever the orientation
        assert abs(got[0]["confidence"] - up[0]["confidence"]) < 0.02, o


def test_classify_py_names_what_to_install(android_bundle, photos, tmp_path):
    script = android_bundle / "integration/python/classify.py"
    for missing in ("numpy", "onnxruntime", "PIL"):
        run = run_blocked(script, [str(photos[1])], f"{NO_EDGESHIP},{missing}", tmp_path)
        assert run.returncode == 2, (missing, run.stderr[-2000:])
        assert "Traceback" not in run.stderr, run.stderr
        assert "pip install -r integration/python/requirements.txt" in run.stderr
        assert {"numpy": "  - numpy: ", "onnxruntime": "  - onnxruntime: ", "PIL": "  - Pillow: "}[missing] in run.stderr
        assert all(len(line) <= 80 for line in run.stderr.splitlines()[:-2]), run.stderr  # a terminal's width
    reqs = (android_bundle / "integration/python/requirements.txt").read_text().split()
    import importlib.metadata as md

    for dist in ("numpy", "pillow", "onnxruntime"):
        assert f"{dist}=={md.version(dist)}" in reqs
    readme = (android_bundle / "integration/README.md").read_text()
    assert "pip install -r integration/python/requirements.txt" in readme


def test_the_carried_runtime_is_the_light_closure_and_a_heavy_import_fails_packaging(tmp_path, android_bundle):
    import edgeship as pkg
    from edgeship.bundle.light import LightRuntimeError, light_closure

    src = Path(pkg.__file__).parent
    files = light_closure(src)
    assert "runtime/__init__.py" in files and "readers/images.py" in files  # the one image reader: EXIF applied there
    assert {"runtime/streams.py", "tasks/vad.py", "tasks/text.py", "readers/tokenizer.py"} <= set(files)  # streams, text
    assert not {"artifact.py", "config.py", "api.py", "cli.py", "verify.py"} & set(files)
    carried = android_bundle / "integration/python/edgeship_light"
    for rel in files:
        text = (carried / rel).read_text()
        assert text.split("\n", 1)[1] == (src / rel).read_text(), rel  # unchanged but for its first line
    # a copy of edgeship in which one module grows a heavy import: packaging refuses, naming it
    for rel, line in (("data.py", "import torch\n"), ("runtime/streams.py", "from ..artifact import Preprocess\n"),
                      ("readers/images.py", "from ..verify import map_inputs\n"), ("fidelity.py", "import pydantic\n")):
        fake = tmp_path / rel.replace("/", "-") / "edgeship"
        shutil.copytree(src, fake, ignore=shutil.ignore_patterns("__pycache__"))
        text = (fake / rel).read_text()
        head, sep, rest = text.partition("from __future__ import annotations\n")
        (fake / rel).write_text(head + sep + line + rest)
        with pytest.raises(LightRuntimeError) as e:
            light_closure(fake)
        assert rel in str(e.value), str(e.value)


# ---- the web page: EXIF (1), a photo chosen while it loads (16) --------------------------------

class Page:
    """The bundle's integration/web/index.html, served on loopback (every other request blocked),
    in headless Chromium; requests for ``.onnx`` files held until ``release()`` when ``hold``."""

    def __init__(self, bundle: Path, hold: bool = False) -> None:
        self.server = serve_folder(bundle, {}, isolated=False)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.ctx = _Browser.acquire().new_context()
        self.outside: list[str] = []
        self.held: list = []
        self.hold = hold

        def route(r):  # noqa: ANN001
            if not r.request.url.startswith(self.origin + "/"):
                self.outside.append(r.request.url)
                return r.abort()
            if self.hold and r.request.url.endswith(".onnx"):
                self.held.append(r)  # answered later: the model is "still downloading"
                return None
            return r.continue_()

        self.ctx.route("**/*", route)
        self.page = self.ctx.new_page()
        self.page.goto(f"{self.origin}/integration/web/index.html", wait_until="domcontentloaded")

    def release(self) -> None:
        self.hold = False
        while self.held:
            self.held.pop(0).continue_()

    def classify(self, image: Path, timeout: float = 120_000) -> dict:
        self.page.evaluate("window.edgeshipResult = undefined")
        self.page.set_input_files("#file", str(image))
        self.page.wait_for_function("window.edgeshipResult", timeout=timeout)
        return self.page.evaluate("window.edgeshipResult")

    def close(self) -> None:
        _Browser.release(self.ctx)
        self.server.shutdown()
        self.server.server_close()
        assert not self.outside, f"the page asked for {self.outside}"


@needs_browser
def test_the_page_classifies_every_exif_orientation_upright(web_bundle, photos):
    """Issue 1: the page reads a photo upright (createImageBitmap with imageOrientation
    'from-image', said explicitly) and answers what Python answers for that file."""
    js = (web_bundle / "integration/web/edgeship-classifier.js").read_text()
    assert 'imageOrientation: "from-image"' in js
    py = Classifier.from_bundle(web_bundle)
    up = py.classify(photos[1], top_k=3, threshold=0)
    page = Page(web_bundle)
    try:
        page.page.wait_for_function("window.edgeshipReady", timeout=120_000)
        assert "error" not in page.page.evaluate("window.edgeshipReady")
        config = json.loads(js.split("export const CONFIG = ", 1)[1].split(";\n", 1)[0])
        served = page.page.evaluate("window.edgeshipReady.servedBy")
        pre = Preprocess.model_validate(next(c for c in config["candidates"] if c["id"] == served)["preprocess"])
        for o, p in photos.items():
            got = page.classify(p)
            assert got["image"] == p.name and "error" not in got, got
            want = py.classify(p, top_k=3, threshold=0)
            assert got["predictions"][0]["label"] == want[0].label == up[0].label, o
            assert abs(got["predictions"][0]["confidence"] - want[0].confidence) < 0.01, o
            # the tensor the page built from the file (a tiny model's top-1 hardly depends on how
            # the photo is turned; the tensor does): Python's, not the stored pixels'
            x = page.page.evaluate(TENSOR_OF_CHOSEN_FILE, served)
            assert (x["width"], x["height"]) == (592, 400), o  # shown upright
            got_x = np.asarray(x["data"], np.float64).reshape(x["dims"])
            want_x = preprocess_image(p, pre).astype(np.float64)
            stored_x = preprocess_image(stored_pixels(p)[0], pre).astype(np.float64)
            assert np.abs(got_x - want_x).mean() < 0.01 and np.abs(got_x - want_x).max() < 0.2, o  # JPEG decoders
            if o != 1:
                assert np.abs(stored_x - want_x).mean() > 0.05, o  # the check would see a photo left as stored
    finally:
        page.close()


#: in the page: the input tensor edgeship-classifier.js builds for the file chosen in #file, for
#: the candidate ``id`` (the module the page imported: the same instance)
TENSOR_OF_CHOSEN_FILE = """async id => {
  const m = await import("./edgeship-classifier.js");
  const {data, width, height} = await m.readPixels(document.getElementById("file").files[0]);
  const x = m.preprocess(data, width, height, m.CONFIG.candidates.find(c => c.id === id).preprocess);
  return {width, height, dims: x.dims, data: Array.from(x.data)};
}"""


@needs_browser
def test_a_photo_chosen_while_the_page_loads_is_answered_when_ready(web_bundle, photos):
    """Issue 16: a photo chosen while the runtime and model still load was dropped: nothing
    happened, no message. It is queued ("loading…" said meanwhile) and answered when ready."""
    page = Page(web_bundle, hold=True)
    try:
        deadline = time.monotonic() + 60
        while not page.held and time.monotonic() < deadline:  # the page is fetching the model
            page.page.wait_for_timeout(100)
        assert page.held, "the page never asked for its model"
        page.page.evaluate("window.edgeshipResult = undefined")
        page.page.set_input_files("#file", str(photos[1]))
        page.page.wait_for_function("window.edgeshipPending", timeout=10_000)
        status = page.page.text_content("#status")
        assert "loading" in status and photos[1].name in status, status
        assert page.page.evaluate("window.edgeshipResult === undefined && window.edgeshipReady === undefined")
        page.release()
        page.page.wait_for_function("window.edgeshipResult", timeout=120_000)
        got = page.page.evaluate("window.edgeshipResult")
        want = Classifier.from_bundle(web_bundle).classify(photos[1], top_k=3, threshold=0.1)
        assert [p["label"] for p in got["predictions"]] == [w.label for w in want]
        assert "served by" in page.page.text_content("#status")
        assert page.page.locator("#results li").count() == len(want)
    finally:
        page.close()
