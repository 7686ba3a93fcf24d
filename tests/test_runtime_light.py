"""What a device runs stays light: ``edgeship.runtime`` and the bundle's generated Python script
classify with numpy, Pillow and ONNX Runtime, and import neither pydantic, the CLI, torch nor a
converter (the time this saves is measured by benchmarks/bench_app_runtime.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import edgeship

HEAVY = ("pydantic", "typer", "rich", "torch", "onnx", "onnxscript", "onnxslim", "jinja2", "model_signing",
         "edgeship.targets", "edgeship.api", "edgeship.config")

CHECK = """
import json, runpy, sys
what, target, photo = sys.argv[1:4]
if what == "script":
    sys.argv = [target, photo, "--json"]
    try:
        runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        assert not e.code, e.code
else:
    from edgeship.runtime import Classifier
    clf = Classifier(target) if what == "folder" else Classifier.from_bundle(target)
    print(json.dumps({"top": clf.classify(photo, top_k=1)[0].label, "served_by": clf.served_by}))
print(json.dumps(sorted(m for m in HEAVY if m in sys.modules)), file=sys.stderr)
""".replace("HEAVY", repr(HEAVY))


def test_the_app_side_runtime_imports_nothing_heavy(tmp_path, photo_file):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx"])
    bundle = res.out / res.manifest["stages"]["bundle"]["folder"]
    want = edgeship.Classifier(res.artifacts[0]).classify(photo_file, top_k=1)[0].label  # the full path
    for what, target in (("folder", res.artifacts[0].root), ("bundle", bundle),
                         ("script", bundle / "integration/python/classify.py")):
        run = subprocess.run([sys.executable, "-c", CHECK, what, str(target), str(photo_file)],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads(run.stderr.strip().splitlines()[-1]) == [], what
        out = json.loads(run.stdout.strip().splitlines()[-1])
        top = out["top"] if what != "script" else out["results"][0]["predictions"][0]["label"]
        assert top == want, what


def test_a_record_the_light_reader_does_not_take_goes_through_the_full_loader(tmp_path, photo_file):
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx"], package=False)
    folder = res.artifacts[0].root
    rec = json.loads((folder / "artifact.json").read_text())
    rec["preprocess"]["height"] = 0  # hostile: the full loader names the field
    (folder / "artifact.json").write_text(json.dumps(rec))
    try:
        edgeship.Classifier(folder)
    except edgeship.FormatError as e:
        assert "height" in e.message
    else:
        raise AssertionError("a record with height 0 was accepted")
