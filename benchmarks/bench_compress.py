"""Issue 17's figures: structured pruning and distillation, the trade-off measured end to end in one run.

    .venv/bin/python benchmarks/bench_compress.py [--out DIR] [--sections AB] [--lite0-epochs 5]

A. A small CNN on scikit-learn's digits (benchmarks/digits.py: trained here, seeded), pruned at
   0.25, 0.5 and 0.75 of its channels as one sweep (``edgeship compress --prune 0.25,0.5,0.75``),
   each fine-tuned with distillation from the original on the 1400 training digits (labels too),
   accuracy on the 397 test digits; the original and every pruned model converted to ONNX and LiteRT
   and timed at 1 thread side by side in one benchmark run.
   Done when (some ratio): >= 50% of MACs removed, test accuracy within 1.0 point of the original,
   ONNX Runtime >= 1.5x faster at 1 thread.
B. EfficientNet-Lite0 (the embedded default), without data at 0.1, 0.2 and 0.3 of its channels (the
   fidelity fall said plainly), then at 0.1 fine-tuned by distillation (no labels) on 300 images:
   random crops of 15 scikit-image pictures that are *not* the evaluation photos (camera, brick,
   grass, coins, retina, ...); fidelity (top-1 agreement with the original) on the default 256
   evaluation inputs (the 5 sample photos and their crops). Latency on ONNX Runtime and LiteRT.
   Done when: the distilled model agrees with the original measurably more often than the pruned
   one without data.

Exit code 1 when a done-when check fails. A script, not a test; about 15 minutes here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN_PICTURES = ("camera", "brick", "grass", "gravel", "moon", "page", "text", "clock", "immunohistochemistry",
                  "hubble_deep_field", "retina", "colorwheel", "coins", "logo", "cell")


def _row(label: str, r: dict, runtimes: list[str]) -> str:
    f = r.get("fidelity") or {}
    acc = f.get("accuracy", f.get("top1_agreement"))
    before = ((r.get("evaluation") or {}).get("pruned") or {})
    b = before.get("accuracy", before.get("top1_agreement"))
    lat = " ".join(f"{(r.get('latency') or {}).get(t, {}).get('pruned_p50_ms') or 0:8.3f} "
                   f"{(r.get('latency') or {}).get(t, {}).get('speedup') or 0:5.2f}x" for t in runtimes)
    return (f"{label:<8} {r['macs']['removed']:8.1%} {r['params']['after']:>9,} {acc:8.1%} "
            f"{'' if b is None or 'fine_tuned' not in (r.get('evaluation') or {}) else f'{b:.1%}':>8} {lat}")


def _table(title: str, doc: dict, runtimes: list[str]) -> None:
    runs = doc.get("runs") or [doc]
    first = runs[0]
    f0 = first.get("fidelity") or {}
    print(f"\n{title}")
    print(f"{'ratio':<8} {'MACs -':>8} {'params':>9} {'acc/agr':>8} {'untuned':>8} "
          + " ".join(f"{t + ' ms':>8} {'speed':>6}" for t in runtimes))
    base = f0.get("accuracy_fp32", 1.0)
    lat = " ".join(f"{(first.get('latency') or {}).get(t, {}).get('original_p50_ms') or 0:8.3f} {'1.00x':>6}"
                   for t in runtimes)
    print(f"{'original':<8} {0:8.1%} {first['params']['before']:>9,} {base:8.1%} {'':>8} {lat}")
    for r in runs:
        print(_row(f"{r['ratio']:g}", r, runtimes))


def digits(edgeship, out: Path) -> dict[str, bool]:
    sys.path.insert(0, str(HERE))
    import digits as dg

    print("A. digits CNN: training the original (seeded) ...", flush=True)
    acc = dg.train(out / "digits")
    print(f"   original test accuracy {acc:.1%}", flush=True)
    doc = edgeship.compress(f"{HERE / 'digits.py'}:model", weights=str(out / "digits" / "weights.pt"),
                            prune="0.25,0.5,0.75", train_data=str(out / "digits" / "train.npz"),
                            eval_data=str(out / "digits" / "test.npz"), eval_samples=400, epochs=10,
                            latency="onnx,tflite", bench_runs=600, out=out / "digits-pruned", overwrite=True,
                            progress=_progress)
    _table("A. digits CNN, pruned and distilled (accuracy on the 397 test digits; 1 thread)", doc, ["onnx", "tflite"])
    ok = [r for r in doc["runs"] if r["macs"]["removed"] >= 0.5
          and r["fidelity"]["accuracy"] >= r["fidelity"]["accuracy_fp32"] - 0.01
          and (r["latency"]["onnx"].get("speedup") or 0) >= 1.5]
    met = ", ".join(f"{r['ratio']:g}" for r in ok)
    print(f"done when (some ratio: MACs -50%, accuracy within 1 pt, ONNX >= 1.5x): {'met by ' + met if ok else 'NOT MET'}")
    return {"A digits": bool(ok)}


def _train_folder(folder: Path, per_picture: int = 20) -> Path:
    """300 JPEG crops of 15 scikit-image pictures that are not the evaluation photos."""
    import numpy as np
    import skimage.data as d
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PICTURES:
        img = np.asarray(getattr(d, name)())
        img = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        for i in range(per_picture):
            s = int(min(h, w) * rng.uniform(0.3, 1.0))
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            crop = img[top:top + s, left:left + s]
            Image.fromarray(np.ascontiguousarray(crop if rng.random() < 0.5 else crop[:, ::-1])).save(
                folder / f"{name}-{i:02d}.jpg", quality=92)
    return folder


def lite0(edgeship, out: Path, epochs: int) -> dict[str, bool]:
    print("\nB. EfficientNet-Lite0 without data (0.1, 0.2, 0.3) ...", flush=True)
    plain = edgeship.compress("efficientnet-lite0", prune="0.1,0.2,0.3", latency="onnx,tflite", bench_runs=300,
                              out=out / "lite0-pruned", overwrite=True, progress=_progress)
    _table("B1. Lite0 pruned, no data (top-1 agreement with the original on 256 evaluation inputs)", plain,
           ["onnx", "tflite"])
    folder = _train_folder(out / "lite0-train")
    print(f"\nB2. Lite0 at 0.1, distilled for {epochs} epochs on {len(list(folder.iterdir()))} images ...", flush=True)
    tuned = edgeship.compress("efficientnet-lite0", prune="0.1", train_data=str(folder), epochs=epochs, lr=1e-4,
                              latency="onnx,tflite", bench_runs=300, out=out / "lite0-distilled", overwrite=True,
                              progress=_progress)
    _table("B2. Lite0 at 0.1, distilled (top-1 agreement; untuned: the same pruned model before)", tuned,
           ["onnx", "tflite"])
    e = tuned["evaluation"]
    gain = e["fine_tuned"]["top1_agreement"] - e["pruned"]["top1_agreement"]
    print(f"   fine-tuning: {tuned['fine_tuning']['kept']}; history "
          + json.dumps([{k: round(v, 4) for k, v in h.items()} for h in tuned["fine_tuning"]["history"]]))
    print(f"done when (distillation recovers measurably): top-1 agreement {e['pruned']['top1_agreement']:.1%} -> "
          f"{e['fine_tuned']['top1_agreement']:.1%} ({100 * gain:+.1f} pt): {'met' if gain >= 0.05 else 'NOT MET'}")
    return {"B lite0 distillation": gain >= 0.05}


_last = [""]


def _progress(msg: str) -> None:
    head = msg.split(":")[0]
    if head != _last[0] and "round" not in msg:
        _last[0] = head
        print(f"   · {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--sections", default="AB", help="which sections to run (letters, default all)")
    ap.add_argument("--lite0-epochs", type=int, default=8, help="distillation epochs of Lite0 in B")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgeship-bench-compress-"))
    import edgeship

    print(f"work folder: {out}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    checks: dict[str, bool] = {}
    if "A" in args.sections.upper():
        checks.update(digits(edgeship, out))
    if "B" in args.sections.upper():
        checks.update(lite0(edgeship, out, args.lite0_epochs))
    print("\n" + "\n".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
