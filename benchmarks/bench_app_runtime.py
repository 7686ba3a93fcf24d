"""Issue 13's light app-side runtime: a new process that classifies one photo with the ONNX artifact
through ``edgeship.runtime.Classifier``, against a 15-line onnxruntime script doing the same, both
timed as whole processes, side by side in one run.

    .venv/bin/python benchmarks/bench_app_runtime.py [--out DIR] [--pairs 10]

Deploys the default model to DIR (or reuses it), writes the coffee photo as a PNG, then runs
``--pairs`` pairs of fresh processes back to back in alternating order: the hand-written script
(numpy, Pillow, onnxruntime; one intra-op thread, as ``Classifier`` runs by default, so both do the
same work) and the edgeship one (``Classifier(folder).classify(photo)``). Both
print their top-1; they must agree. Prints the median wall time of each, the median of the per-pair
ratios (the figure that survives a machine whose load changes), ``import edgeship`` alone, and the
modules of note the edgeship process imported. Exit code 1 when the median ratio exceeds 1.1 or
the runtime imports pydantic, typer, rich, torch or a converter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HAND = r"""
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image
folder, photo = sys.argv[1], sys.argv[2]
labels = open(f"{folder}/labels.txt").read().splitlines()
im = Image.open(photo).convert("RGB")
s = 224 / 0.875 / min(im.size)
im = im.resize((max(224, round(im.size[0] * s)), max(224, round(im.size[1] * s))), Image.BILINEAR)
l, t = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
x = ((np.asarray(im.crop((l, t, l + 224, t + 224)), np.float32) - 127) / 128).transpose(2, 0, 1)[None]
so = ort.SessionOptions(); so.intra_op_num_threads = 1  # as Classifier's default: the same work
sess = ort.InferenceSession(f"{folder}/model.onnx", so, providers=["CPUExecutionProvider"])
z = sess.run(None, {sess.get_inputs()[0].name: x})[0][0].astype(np.float64)
p = np.exp(z - z.max()); p /= p.sum()
print(labels[int(p.argmax())], round(float(p.max()), 4))
"""

EDGESHIP = r"""
import sys
from edgeship.runtime import Classifier
top = Classifier(sys.argv[1]).classify(sys.argv[2], top_k=1)[0]
print(top.label, round(top.confidence, 4))
heavy = ("pydantic", "typer", "rich", "torch", "onnx", "onnxscript", "onnxslim", "tensorflow", "coremltools",
         "openvino", "executorch", "litert_torch", "ai_edge_quantizer", "jinja2", "model_signing")
print("IMPORTED", ",".join(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""

IMPORT_ONLY = "import time; t = time.perf_counter(); import edgeship; print((time.perf_counter() - t) * 1e3)"


def _timed(code: str, *args: str) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"a process failed:\n{r.stderr[-2000:]}")
    return wall, r.stdout.strip(), r.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="edgeship-out-app-runtime")
    ap.add_argument("--pairs", type=int, default=10)
    args = ap.parse_args()

    out = Path(args.out)
    folder = out / "onnx-fp32"
    if not (folder / "artifact.json").is_file():
        subprocess.run([sys.executable, "-m", "edgeship", "deploy", "--targets", "onnx", "--out", str(out), "--no-package"],
                       check=True)
    photo = out / "coffee.png"
    if not photo.is_file():
        from PIL import Image

        from edgeship.data import sample_photos

        Image.fromarray(sample_photos()["coffee"]).save(photo)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.pairs} pairs of fresh processes, alternating order")

    hand, ours, ratios = [], [], []
    imported = ""
    for i in range(args.pairs):
        runs = {}
        for which in (("hand", "edgeship") if i % 2 == 0 else ("edgeship", "hand")):
            code = HAND if which == "hand" else EDGESHIP
            runs[which] = _timed(code, str(folder), str(photo))
        if runs["hand"][1].split()[0] != runs["edgeship"][1].split()[0]:
            sys.exit(f"the two disagree: {runs['hand'][1]} vs {runs['edgeship'][1]}")
        imported = next((ln.split(" ", 1)[1] if " " in ln else "" for ln in runs["edgeship"][2].splitlines()
                         if ln.startswith("IMPORTED")), "")
        hand.append(runs["hand"][0])
        ours.append(runs["edgeship"][0])
        ratios.append(runs["edgeship"][0] / runs["hand"][0])
    imports = [float(_timed(IMPORT_ONLY)[1]) for _ in range(5)]
    doc = {"hand_written_s": round(statistics.median(hand), 3), "edgeship_s": round(statistics.median(ours), 3),
           "ratio_of_medians": round(statistics.median(ours) / statistics.median(hand), 3),
           "median_pair_ratio": round(statistics.median(ratios), 3),
           "import_edgeship_ms": round(statistics.median(imports), 1), "top1": runs["edgeship"][1],
           "heavy_modules_imported": [m for m in imported.split(",") if m]}
    print(json.dumps(doc, indent=1))
    ok = doc["median_pair_ratio"] <= 1.1 and not doc["heavy_modules_imported"]
    print("OK: within 1.1x of the hand-written script, nothing heavy imported" if ok else
          "MISSED: the runtime is over 1.1x of the hand-written script or imports something heavy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
