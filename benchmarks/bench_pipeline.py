"""How fast is the whole deploy, cold and cached? (issue 18's figures, measured in one run)

    .venv/bin/python benchmarks/bench_pipeline.py [--quick] [--model M] [--out DIR]

Runs, one after another on this machine, the full default deploy
(``edgeship deploy M --targets all --quantize int8,fp16 --benchmark``):

A. cold, workers in parallel (``--jobs 0``), into an empty cache;
B. the same command again: every artifact from the cache, its files re-checked;
C. cold, one process, no cache (``--jobs 1 --no-cache``): the way deploy ran before the task graph
   (left out with ``--quick``).

and prints the wall time of each, what was built and reused, the slowest steps, and whether B
gave every artifact A gave with the same fidelity figures (and which bytes differ between A and
C, i.e. which formats are not reproducible). The cache is a fresh folder (the onnxruntime-web
package is linked from the usual cache so nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeship._util import cache_dir

ROOT = Path(__file__).resolve().parent.parent
EDGESHIP = [sys.executable, "-m", "edgeship"]


def _deploy(model: str, out: Path, cache: Path, *extra: str) -> tuple[float, dict]:
    env = {**os.environ, "EDGESHIP_CACHE_DIR": str(cache), "COLUMNS": "100"}
    env.pop("EDGESHIP_NO_CACHE", None)
    cmd = [*EDGESHIP, "deploy", model, "--targets", "all", "--quantize", "int8,fp16", "--benchmark", "--no-package",
           "--out", str(out), "--overwrite", *extra]
    print("$ " + " ".join(cmd[2:]), flush=True)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if run.returncode != 0:
        sys.stderr.write(run.stderr[-4000:])
        raise SystemExit(f"deploy failed ({run.returncode})")
    return wall, json.loads((out / "manifest.json").read_text())


def _fidelity(m: dict) -> dict[str, tuple]:
    out = {}
    for a in m["artifacts"]:
        v = a.get("verification") or {}
        out[a["id"]] = (v.get("passed"), v.get("top1_agreement"), round(min((o["cosine"] for o in v.get("outputs", [])
                                                                            if o.get("cosine") is not None), default=1.0), 7))
    return out


def _row(name: str, wall: float, m: dict) -> list[str]:
    c = m["stages"]["convert"]
    cache = c.get("cache") or {}
    t = m["timings_s"]
    workers = c.get("workers") or {}
    convert = sum(v for k, v in t.items() if k.startswith("convert."))
    return [name, f"{wall:.1f}", str(len(cache.get("built", m["artifacts"]))), str(len(cache.get("reused", []))),
            f"{workers.get('seconds', convert):.1f}", f"{t.get('benchmark', 0):.1f}", str(workers.get("jobs", 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--quick", action="store_true", help="leave out the cold one-process run (C)")
    ap.add_argument("--out", type=Path, default=None, help="keep the output folders here")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="edgeship-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    for shared in cache_dir().glob("onnxruntime-web-*"):  # the web runtime package: linked, not downloaded
        (cache / shared.name).symlink_to(shared)
    runs = []
    wall, a = _deploy(args.model, work / "A", cache, "--jobs", "0")
    runs.append(("A cold, parallel", wall, a))
    wall, b = _deploy(args.model, work / "B", cache, "--jobs", "0")
    runs.append(("B same again", wall, b))
    c = None
    if not args.quick:
        wall, c = _deploy(args.model, work / "C", cache, "--jobs", "1", "--no-cache")
        runs.append(("C cold, 1 process", wall, c))
    print()
    head = ["run", "wall s", "built", "reused", "build s", "bench s", "jobs"]
    rows = [_row(n, w, m) for n, w, m in runs]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(x.ljust(widths[i]) if i == 0 else x.rjust(widths[i]) for i, x in enumerate(r)))
    print()
    slow = sorted(((k.removeprefix("convert."), v) for k, v in a["timings_s"].items() if k.startswith("convert.")),
                  key=lambda kv: -kv[1])[:6]
    print("A: slowest steps (s, in their worker): " + ", ".join(f"{k} {v:.0f}" for k, v in slow))
    for u in (a["stages"]["convert"].get("workers") or {}).get("units", []):
        print(f"   worker {u['name']:<18} from {u['started_s']:6.1f} s for {u['seconds']:6.1f} s, peak {u['peak_rss_mb']} MB")
    da = {x["id"]: x["digest"] for x in a["artifacts"]}
    db = {x["id"]: x["digest"] for x in b["artifacts"]}
    reused_all = sorted(b["stages"]["convert"]["cache"]["reused"]) == sorted(da)
    print(f"B: every artifact reused from the cache: {reused_all}; same bytes as A: {da == db}; "
          f"fidelity figures unchanged: {_fidelity(a) == _fidelity(b)}")
    if c is not None:
        dc = {x["id"]: x["digest"] for x in c["artifacts"]}
        differ = sorted(k for k in da if da[k] != dc.get(k))
        print(f"C vs A (two cold builds): {len(da) - len(differ)} of {len(da)} artifacts byte-identical"
              + (f"; differ: {', '.join(differ)}" if differ else ""))
        print(f"speed-up of the cold build, parallel vs one process: {runs[2][1] / runs[0][1]:.2f}x")
    print(f"done when: cold full deploy <= 120 s: {'met' if runs[0][1] <= 120 else 'not met'} ({runs[0][1]:.0f} s); "
          f"cached re-run <= 10 s: {'met' if runs[1][1] <= 10 else 'not met'} ({runs[1][1]:.1f} s)")
    print(f"output folders: {work}")


if __name__ == "__main__":
    main()
