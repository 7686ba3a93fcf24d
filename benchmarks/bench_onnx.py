"""Issue 3's figures on the default EfficientNet-Lite0 ONNX artifact, all measured in one run.

    .venv/bin/python benchmarks/bench_onnx.py [--out DIR] [--pairs 10] [--runs 150] [--baseline-runs 600]

Deploys the default model to DIR (or reuses DIR if it already holds the artifact), then:

A. ``--pairs`` pairs, each of two fresh processes pinned to CPU 0 at 1 thread, run back to back in
   alternating order: a plain onnxruntime loop written here, independently of edgeship
   (``intra_op_num_threads=1``, ``session.run`` timed with ``perf_counter``), and
   ``edgeship.api.benchmark`` on the artifact. Done when edgeship's warm p50 is within 10% of the
   plain loop's (median over the pairs; the median of the per-pair ratios is printed too, since
   it is the figure that survives a machine whose load changes from second to second).
B. One ``edgeship.api.benchmark`` run of the out dir against its source in PyTorch eager (the
   harness interleaves them in fresh processes): the ratio to torch, the cold-start split,
   memory, throughput, roofline, energy estimate.

Exit code 1 when the 10% check fails. A script, not a test: about a minute and a half on a quiet
machine. It prints the load average, because on a shared machine that explains a noisy figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PLAIN_LOOP = r"""
import json, os, sys, time
os.sched_setaffinity(0, {0})
import numpy as np
import onnxruntime as ort
path, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
for _ in range(warmup):
    sess.run(None, {inp.name: x})
times, cpu = [], 0.0
for _ in range(runs):
    c0 = time.process_time()
    t0 = time.perf_counter()
    sess.run(None, {inp.name: x})
    times.append((time.perf_counter() - t0) * 1e3)
    cpu += time.process_time() - c0
print(json.dumps({"wall_ms": times, "cpu_ms_mean": cpu / runs * 1e3}))
"""


def plain_ort(model: Path, warmup: int, runs: int) -> tuple[float, float]:
    """(p50 wall ms, mean CPU ms per call) of the plain loop."""
    r = subprocess.run([sys.executable, "-c", PLAIN_LOOP, str(model), str(warmup), str(runs)],
                       capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    doc = json.loads(r.stdout)
    return statistics.median(doc["wall_ms"]), doc["cpu_ms_mean"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgeship-bench-lite0"))
    ap.add_argument("--pairs", type=int, default=10, help="plain-loop / edgeship pairs (part A)")
    ap.add_argument("--runs", type=int, default=150, help="timed calls per process in part A")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--baseline-runs", type=int, default=600, help="timed calls per candidate in part B (3 rounds)")
    args = ap.parse_args()

    import edgeship
    from edgeship import api

    art_dir = args.out / "onnx-fp32"
    if not ((args.out / "manifest.json").is_file() and (art_dir / "artifact.json").is_file()):
        print(f"deploying the default model to {args.out} ...", file=sys.stderr)
        edgeship.deploy(out=args.out)
    art = edgeship.load_artifact(art_dir)
    load_start = os.getloadavg()

    def log(m: str) -> None:
        print(f"  · {m}", file=sys.stderr)

    # ---- A: edgeship vs a plain onnxruntime loop, paired ----------------------------------
    def ours() -> tuple[float, float]:
        rep = api.benchmark(art_dir, threads=[1], cpus=[0], runs=args.runs, warmup=args.warmup, rounds=1,
                            batch_sizes="none", progress=log)
        if rep.incomplete:
            raise SystemExit(f"incomplete: {rep.incomplete}")
        r = rep.results[0]
        return r["latency_ms"]["p50"], r["energy"]["cpu_ms_per_inference"]

    def plain() -> tuple[float, float]:
        return plain_ort(art.model_path, args.warmup, args.runs)

    pairs = []
    for i in range(args.pairs):
        print(f"pair {i + 1}/{args.pairs}", file=sys.stderr)
        if i % 2 == 0:
            p = plain()
            o = ours()
        else:
            o = ours()
            p = plain()
        pairs.append((p, o))
    med = statistics.median
    plain_p50, ours_p50 = med(p[0] for p, _ in pairs), med(o[0] for _, o in pairs)
    plain_cpu, ours_cpu = med(p[1] for p, _ in pairs), med(o[1] for _, o in pairs)
    paired = med(o[0] / p[0] for p, o in pairs)
    within = abs(ours_p50 / plain_p50 - 1.0) <= 0.10

    # ---- B: the harness, artifact against torch eager -------------------------------------
    print("edgeship benchmark against the torch baseline", file=sys.stderr)
    rep = api.benchmark(args.out, threads=[1], cpus=[0], runs=args.baseline_runs, warmup=args.warmup, rounds=3,
                        batch_sizes=[8], progress=log)
    load_end = os.getloadavg()
    d = rep.to_dict()

    print(f"\nEfficientNet-Lite0 ONNX fp32 ({art.size_bytes / 1e6:.1f} MB), 1 thread pinned to CPU 0, {d['machine']['cpu']}; "
          f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end\n")
    print(f"A. warm latency, batch 1, p50 ms: {args.pairs} pairs of fresh processes, {args.runs} timed calls each, "
          f"warm-up {args.warmup}, alternating order")
    print(f"{'pair':>6} | {'plain ORT loop':>14} | {'edgeship':>9} | {'edgeship/plain':>14} || CPU ms per call: "
          f"{'plain':>6} | {'edgeship':>8}")
    for i, (p, o) in enumerate(pairs, 1):
        print(f"{i:>6} | {p[0]:>14.3f} | {o[0]:>9.3f} | {o[0] / p[0]:>14.3f} || {'':>16} {p[1]:>6.3f} | {o[1]:>8.3f}")
    print(f"{'median':>6} | {plain_p50:>14.3f} | {ours_p50:>9.3f} | {ours_p50 / plain_p50:>14.3f} || {'':>16} "
          f"{plain_cpu:>6.3f} | {ours_cpu:>8.3f}")
    print(f"median of the per-pair p50 ratios: {paired:.3f}")
    print(f"edgeship warm p50 within 10% of the plain onnxruntime loop: {'YES' if within else 'NO'} "
          f"({100 * (ours_p50 / plain_p50 - 1):+.1f}%)")

    onnx = rep.result("onnx-fp32")
    base = next(x for x in rep.results if x["role"] == "baseline")
    if onnx is None or rep.incomplete:
        print(f"incomplete: {rep.incomplete}")
        return 1
    vs = onnx["vs_baseline"]
    print(f"\nB. edgeship benchmark {args.out} --threads 1 --cpus 0 --runs {args.baseline_runs} --rounds 3 "
          f"(artifact and torch eager alternating in fresh processes)")
    print(f"{'':>12} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} | {'start':>6} | {'import':>6} | {'load':>6} | "
          f"{'1st run':>7} | {'cold':>6} | {'peak RSS':>9}")
    for label, r in (("onnxruntime", onnx), ("torch eager", base)):
        lat, c = r["latency_ms"], r["cold_start_s"]
        print(f"{label:>12} | {lat['p50']:>7.3f} | {lat['p90']:>7.3f} | {lat['p99']:>7.3f} | {c['process_start']:>6.3f} | "
              f"{c['runtime_import']:>6.3f} | {c['model_load']:>6.3f} | {c['first_inference']:>7.3f} | {c['total']:>6.3f} | "
              f"{r['memory']['peak_rss_bytes'] / 1e6:>6.1f} MB")
    print("  cold start, s, median of 3 fresh processes: start = spawn to the worker's first line (interpreter +")
    print("  edgeship import), import = the runtime module, load = session / model, 1st run = first inference")
    print(f"ratio to torch eager: ONNX Runtime is {vs['speedup_p50']:.2f}x faster at p50 (pooled); per round "
          f"{', '.join(f'{x:.2f}x' for x in vs['speedup_p50_by_round'])}, median {vs['speedup_p50_median_of_rounds']:.2f}x; "
          f"CPU time per inference {vs['cpu_time_ratio']:.2f}x less")
    comp, energy = onnx["compute"], onnx["energy"]
    tp = ", ".join(f"batch {t['batch']}: {t['items_per_s']:.0f} images/s" for t in onnx["throughput"])
    print(f"throughput: {tp or '-'}")
    if comp["gops"] is not None:
        print(f"roofline: {comp['gops']:.1f} GOP/s = {comp['percent_of_peak']:.1f}% of this machine's {comp['peak_kind']} "
              f"GEMM peak {comp['peak_gops']} GOP/s ({comp['macs'] / 1e6:.0f} M MACs)")
    else:
        print(f"roofline: {comp['note']} (peak {comp['peak_kind']} {comp['peak_gops']} GOP/s)")
    print(f"energy: {energy['mj_per_inference']:.1f} mJ/inference ({energy['method']})")

    print("\nthe harness's own tables (part B):")
    from rich.console import Console

    rep.print(Console(width=120))
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
