"""Is this code as fast, and does it make the same things, as an earlier revision? (ratios, one run)

    .venv/bin/python benchmarks/bench_versus.py --base REV [--model M] [--rounds N] [--sweep]

For a change that must keep every behaviour and figure (a refactor), runs the same commands with
the code at ``REV`` (a git worktree made for the run) and with the code of this checkout, side by
side on this machine, alternating which goes first in each round, each into a fresh cache:

1. ``deploy M --targets onnx,ort,openvino,web --quantize int8,fp16 --benchmark`` (``--jobs 1``
   so the two sides do not share the two cores);
2. ``quantize OUT/onnx-fp32 --out Q`` (the onnx int8 again, from the fp32 deploy wrote);
3. ``benchmark OUT --threads 1 --runs 200`` (the artifacts' latencies);
4. with ``--sweep``, ``sweep`` of a two-recipe sweep file (Ray, local).

Prints per command the median wall time of each side and their ratio (this / base), and then
whether the two sides made the same things: each artifact's digest, its verification figures and
its size, the quantize result's digest, and the benchmark's p50 ratio per artifact. A deploy in
which some cells miss their budget (exit code 5, the others written) is compared like any other.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeship._util import cache_dir

ROOT = Path(__file__).resolve().parent.parent
TARGETS = "onnx,ort,openvino,web"


def _fresh_cache(tmp: Path, name: str) -> Path:
    """An empty cache folder with the onnxruntime-web package linked in (nothing downloaded)."""
    cache = tmp / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    for p in cache_dir().glob("onnxruntime-web-*"):
        (cache / p.name).symlink_to(p)
    return cache


def _run(src: Path, args: list[str], cache: Path) -> tuple[float, int]:
    env = {**os.environ, "EDGESHIP_CACHE_DIR": str(cache), "COLUMNS": "100",
           "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "tests")])}
    env.pop("EDGESHIP_NO_CACHE", None)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "edgeship", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode not in (0, 5):  # 5: some cells missed their budget, the others were written
        sys.stderr.write(run.stderr[-3000:])
        raise SystemExit(f"{' '.join(args[:2])} failed with the code in {src} ({run.returncode})")
    return wall, run.returncode


def _figures(out: Path) -> dict[str, tuple]:
    m = json.loads((out / "manifest.json").read_text())
    rows = {}
    for a in m["artifacts"]:
        v = a.get("verification") or {}
        cos = min((o["cosine"] for o in v.get("outputs", []) if o.get("cosine") is not None), default=None)
        rows[a["id"]] = (a.get("digest"), a.get("size_bytes"), v.get("status"), v.get("top1_agreement"),
                         None if cos is None else round(cos, 6))
    return rows


def _p50s(out: Path) -> dict[str, float]:
    m = json.loads((out / "manifest.json").read_text())
    res = ((m.get("stages") or {}).get("benchmark") or {}).get("results") or []
    return {f"{r.get('id') or r.get('path')}@{r.get('threads')}": r["latency_ms"]["p50"] for r in res
            if isinstance(r, dict) and r.get("latency_ms") and r.get("role") != "baseline"}


def _sweep_file(tmp: Path, model: str) -> Path:
    f = tmp / "sweep.json"
    f.write_text(json.dumps({"models": [model], "recipes": {"ptq": {}, "ptq-minmax": {"calibration": "minmax"}},
                             "targets": ["onnx"], "precisions": ["fp32", "int8"], "bench_runs": 30}))
    return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the git revision to compare with (e.g. main~3, a tag)")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sweep", action="store_true", help="also time a small sweep (needs ray)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeship-versus-") as td:
        tmp = Path(td)
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), a.base], check=True)
        try:
            sides = {"base": base / "src", "this": ROOT / "src"}
            walls: dict[tuple[str, str], list[float]] = {}
            codes: dict[tuple[str, str], set[int]] = {}
            last: dict[str, Path] = {}
            for r in range(a.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for side in order:
                    src = sides[side]
                    out, q, cache = tmp / f"out-{side}", tmp / f"q-{side}", _fresh_cache(tmp, side)
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(q, ignore_errors=True)
                    print(f"round {r + 1}/{a.rounds}: {side}", flush=True)
                    steps = [("deploy", ["deploy", a.model, "--targets", TARGETS, "--quantize", "int8,fp16", "--benchmark",
                                         "--no-package", "--jobs", "1", "--out", str(out), "--overwrite"]),
                             ("quantize", ["quantize", str(out / "onnx-fp32"), "--out", str(q), "--overwrite"]),
                             ("benchmark", ["benchmark", str(out), "--threads", "1", "--runs", "200"])]
                    if a.sweep:
                        steps.append(("sweep", ["sweep", str(_sweep_file(tmp, a.model)), "--out", str(tmp / f"sw-{side}"),
                                                "--overwrite"]))
                    for name, args in steps:
                        wall, rc = _run(src, args, cache)
                        walls.setdefault((name, side), []).append(wall)
                        codes.setdefault((name, side), set()).add(rc)
                    last[side] = out
            print(f"\n{'command':<10} {'base s':>8} {'this s':>8} {'this/base':>10}  exit codes base/this")
            for name in dict.fromkeys(n for n, _ in walls):
                b, t = statistics.median(walls[(name, "base")]), statistics.median(walls[(name, "this")])
                print(f"{name:<10} {b:>8.1f} {t:>8.1f} {t / b:>10.2f}  {sorted(codes[(name, 'base')])}/"
                      f"{sorted(codes[(name, 'this')])}")
            fb, ft = _figures(last["base"]), _figures(last["this"])
            same = [k for k in fb if fb[k] == ft.get(k)]
            print(f"\nartifacts with the same digest, size and verification figures: {len(same)} of {len(fb)}")
            for k in sorted(set(fb) | set(ft)):
                if fb.get(k) != ft.get(k):
                    print(f"  {k}: base {fb.get(k)}\n  {' ' * len(k)}  this {ft.get(k)}")
            qb = json.loads((tmp / "q-base" / "artifact.json").read_text()).get("files")
            qt = json.loads((tmp / "q-this" / "artifact.json").read_text()).get("files")
            print(f"quantize: {'the same files' if qb == qt else 'files differ'}")
            pb, pt = _p50s(last["base"]), _p50s(last["this"])
            ratios = [pt[k] / pb[k] for k in pb if k in pt and pb[k]]
            if ratios:
                print(f"benchmark p50, this/base per artifact: median {statistics.median(ratios):.2f} "
                      f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} artifacts)")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)


if __name__ == "__main__":
    main()
