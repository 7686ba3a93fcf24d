"""The int8 ladder rung by rung, per target, judged on held-out crops, beside NNCF's default.

    .venv/bin/python benchmarks/bench_int8_ladder.py [--quick] [--targets onnx,openvino] [--json]

1. The default model (EfficientNet-Lite0, embedded) is deployed once to fp32 for every target
   (onnx, tflite, executorch, openvino; cache off, one job), the reference of everything below.
2. Per target and rung, int8 is deployed in a fresh process (``edgeship.deploy``, cache off, so
   every timing is cold and no in-process memo of an earlier cell helps):
     nearest           --rounding nearest  --equalization off  --max-float-layers 0 --max-drop 1
     +equalisation     --rounding nearest  --equalization on   --max-float-layers 0 --max-drop 1
     +learned rounding --rounding adaround --equalization off  --max-float-layers 0 --max-drop 1
     default ladder    --rounding auto     --equalization auto (float layers allowed)
   Bias correction is on throughout (the first rung is nearest rounding + bias correction).
   "int8 s" is the int8 cell's wall time inside the deploy (from "T int8: converting" to the
   cell's end: calibration, every ladder step, edgeship's own verification); "deploy s" the whole
   child (imports, model load, the target's fp32 rebuilt by deploy, the int8 cell, the report).
   A target that refuses an option is "n/a (reason)"; a budget miss is a ValidationError, shown as
   "miss" with the top-1 agreement edgeship measured on its own evaluation data (its last step).
3. Every int8 artifact is judged here, not by edgeship's verify: ``--samples`` (240) random crops of
   the 5 sample photos (seed 11; edgeship's evaluation uses seed 1, its calibration other photos),
   preprocessed by each artifact's own spec, run through the artifact's own runtime
   (``runner_for(load_artifact(folder), threads=1)``) and through the same target's fp32 artifact:
   top-1 agreement of the two; then the p50 of ``--calls`` timed 1-thread calls on one input after
   a warm-up, int8 and fp32.
4. NNCF's default ``nncf.quantize(ov_model, nncf.Dataset(calib))`` of the openvino fp32 IR, on the
   calibration inputs edgeship uses by default (``source.calibration_inputs(128)``), compiled for
   CPU (1 thread, f32 hint, as edgeship's runner), judged the same way; its seconds are quantize +
   compile. The ratios: edgeship's default-ladder int8 seconds (openvino, onnx) over NNCF's.

``--quick``: 40 held-out crops, the onnx target, the nearest and default rungs (a smoke check,
a few minutes). The full run builds 16 int8 artifacts, some with AdaRound: about an hour here.
A script, not a test; it has no done-when and exits 0 unless a step crashes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "efficientnet-lite0"
TARGETS = ("onnx", "tflite", "executorch", "openvino")
RUNGS = {  # name: deploy options
    # the fixed rungs take any figure (--max-drop 1): the rung itself is measured here, never a miss
    "nearest": {"rounding": "nearest", "equalization": "off", "max_float_layers": 0, "max_drop": 1.0, "min_cosine": 0.0},
    "+equalisation": {"rounding": "nearest", "equalization": "on", "max_float_layers": 0, "max_drop": 1.0,
                      "min_cosine": 0.0},
    "+learned rounding": {"rounding": "adaround", "equalization": "off", "max_float_layers": 0, "max_drop": 1.0,
                          "min_cosine": 0.0},
    "default ladder": {"rounding": "auto", "equalization": "auto"},
}
QUICK_RUNGS = ("nearest", "default ladder")
SEED = 11  # edgeship's evaluation crops use seed 1, its calibration crops seed 0 (of other photos)
MARK = "@@ROW "

# One int8 deploy in a fresh process: its progress messages timed, the outcome as one JSON line.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import edgeship
from edgeship.errors import EdgeshipError
a = json.loads(sys.argv[1])
marks = []
row = {}
try:
    res = edgeship.deploy(a["model"], out=a["out"], targets=[a["target"]], quantize="int8", cache=False,
                          package=False, jobs=a["jobs"], progress=lambda m: marks.append((time.perf_counter() - t0, m)),
                          **a["options"])
    int8 = [x for x in res.artifacts if x.precision == "int8"]
    fp32 = [x for x in res.artifacts if x.precision == "fp32"]
    row["status"] = "ok" if int8 else "n/a"
    if int8:
        q = int8[0].details.get("quantization") or {}
        steps = q.get("steps") or []
        row.update(int8=str(int8[0].root), reached=q.get("rung"), steps=steps,
                   own_top1=steps[q["chosen"]].get("top1_agreement") if steps else None)
    else:
        skipped = res.manifest.get("stages", {}).get("convert", {}).get("skipped") or []
        row["reason"] = "; ".join(s.get("reason", "") for s in skipped) or "no int8 artifact built"
    if fp32:
        row["fp32_digest"] = fp32[0].digest
except EdgeshipError as e:
    failed = (e.details or {}).get("failed") or []
    cell = next((f for f in failed if f.get("precision") == "int8"), failed[0] if failed else {})
    row.update(status="error", error=cell.get("error") or type(e).__name__, reason=cell.get("message") or e.message,
               steps=(cell.get("details") or {}).get("steps") or (e.details or {}).get("steps") or [])
row["marks"] = marks
print(__MARK__ + json.dumps(row, default=str), flush=True)
""".replace("__MARK__", repr(MARK))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what converters and NNCF print (progress bars, native logs) to stderr, at the file
    descriptor, so stdout holds the table or the JSON alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def build_int8(target: str, rung: str, work: Path, jobs: int) -> dict[str, Any]:
    """Deploy ``target`` int8 at ``rung`` in a fresh process; the child's row with the timings."""
    out = work / f"{target}-{rung.strip('+').replace(' ', '-')}"
    arg = json.dumps({"model": MODEL, "out": str(out), "target": target, "jobs": jobs, "options": RUNGS[rung]})
    env = {**os.environ, "EDGESHIP_NO_CACHE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "error", "error": f"exit {r.returncode}", "reason": tail[:300], "deploy_s": wall}
    row = json.loads(line[len(MARK):])
    row["deploy_s"] = wall
    row["int8_s"] = _cell_seconds(row.pop("marks"), target)
    if row["status"] == "error":
        # a refused option is UnsupportedError: n/a; a missed budget is ValidationError: its last step's figure
        row["status"] = {"UnsupportedError": "n/a", "MissingExtraError": "n/a", "ValidationError": "missed"}.get(row["error"], "error")
        last = (row.get("steps") or [{}])[-1]
        row["own_top1"] = last.get("top1_agreement")
    return row


def _cell_seconds(marks: list[list[Any]], target: str) -> float | None:
    """The int8 cell's wall time from the deploy's progress messages: from '<target> int8:
    converting' to the first message of another stage (or its 'not written')."""
    head = f"{target} int8: "
    start = next((t for t, m in marks if m.startswith(head + "converting")), None)
    if start is None:
        return None
    for t, m in marks:
        if t > start and (not m.startswith(head) or "not written" in m):
            return t - start
    return marks[-1][0] - start if marks else None


class HeldOut:
    """The held-out crops, preprocessed per artifact by its own spec (same crops for every spec)."""

    def __init__(self, source: Any, n: int, seed: int) -> None:
        from edgeship.data import SAMPLE_PHOTOS, augmented_crops

        self.source, self.n, self.seed = source, n, seed
        self.photos, self.crops = SAMPLE_PHOTOS, augmented_crops
        self._by_spec: dict[str, list[list[np.ndarray]]] = {}

    def samples(self, art: Any) -> list[list[np.ndarray]]:
        from edgeship.verify import map_inputs

        spec = art.preprocess or self.source.preprocess
        key = spec.model_dump_json()
        if key not in self._by_spec:
            xs = self.crops(spec, self.n, self.seed, names=self.photos)
            if art.preprocess is None:  # the artifact does not say: the source's crops, mapped as verify maps them
                names = [i.name for i in self.source.inputs]
                self._by_spec[key] = [map_inputs(self.source.preprocess, names, None, [x]) for x in xs]
            else:
                self._by_spec[key] = [[x] for x in xs]
        return self._by_spec[key]


def measure(run: Any, feeds: list[Any], calls: int) -> tuple[np.ndarray, float]:
    """(top-1 class per input, p50 ms of ``calls`` timed calls on the first input after a warm-up)."""
    top1 = np.array([int(np.argmax(np.asarray(run(f)[0]).reshape(-1))) for f in feeds])
    for _ in range(5):
        run(feeds[0])
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        run(feeds[0])
        times.append(time.perf_counter() - t)
    return top1, float(np.median(times) * 1e3)


def measure_artifact(folder: str | Path, held: HeldOut, calls: int) -> tuple[np.ndarray, float]:
    """Run an artifact with its own runtime (1 thread) on the held-out crops."""
    from edgeship.targets import load_artifact, runner_for

    art = load_artifact(folder)
    runner = runner_for(art, threads=1)
    try:  # the feeds named and cast once, so the timed calls are the runtime's
        return measure(runner.run_prepared, [runner.prepare(s) for s in held.samples(art)], calls)
    finally:
        runner.close()


def nncf_default(source: Any, fp32_folder: Path, held: HeldOut, calls: int) -> dict[str, Any]:
    """NNCF's default quantize of the openvino fp32 IR on edgeship's default calibration inputs."""
    import nncf
    import openvino as ov

    from edgeship.targets import load_artifact
    from edgeship.verify import map_inputs

    art = load_artifact(fp32_folder)
    core = ov.Core()
    model = core.read_model(str(art.model_path))
    names = [p.get_any_name() for p in model.inputs]
    calib = [map_inputs(source.preprocess, [i.name for i in source.inputs], art.preprocess, s)
             for s in source.calibration_inputs(128)]
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf.Dataset(calib, lambda s: dict(zip(names, s))))
    t1 = time.perf_counter()
    compiled = core.compile_model(quantized, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                                     "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"})
    t2 = time.perf_counter()
    request = compiled.create_infer_request()
    out = compiled.outputs[0]

    feeds = [dict(enumerate(np.ascontiguousarray(a) for a in s)) for s in held.samples(art)]
    top1, p50 = measure(lambda f: [request.infer(f)[out]], feeds, calls)
    return {"top1": top1, "p50": p50, "quantize_s": t1 - t0, "compile_s": t2 - t1, "seconds": t2 - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 held-out crops, onnx only, the nearest and default rungs")
    ap.add_argument("--targets", default=None, help=f"comma separated, from {','.join(TARGETS)} (default: all; --quick: onnx)")
    ap.add_argument("--rungs", default=None, help=f"comma separated, from {','.join(RUNGS)} (default: all; --quick: nearest and default)")
    ap.add_argument("--samples", type=int, default=None, help="held-out crops (default 240; --quick 40)")
    ap.add_argument("--calls", type=int, default=50, help="timed 1-thread calls per artifact after a warm-up")
    ap.add_argument("--jobs", type=int, default=1, help="deploy --jobs (default 1: one conversion at a time)")
    ap.add_argument("--no-nncf", action="store_true", help="leave out NNCF's default quantisation")
    ap.add_argument("--out", type=Path, default=None, help="work folder, kept (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = ap.parse_args()
    targets = [t.strip() for t in (args.targets or ("onnx" if args.quick else ",".join(TARGETS))).split(",") if t.strip()]
    rungs = [r.strip() for r in args.rungs.split(",")] if args.rungs else list(QUICK_RUNGS if args.quick else RUNGS)
    bad = [t for t in targets if t not in TARGETS] + [r for r in rungs if r not in RUNGS]
    if bad:
        ap.error(f"unknown target or rung: {', '.join(bad)}")
    n = args.samples or (40 if args.quick else 240)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        return run(args, args.out, targets, rungs, n)
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-ladder-") as d:
        return run(args, Path(d), targets, rungs, n)


def run(args: argparse.Namespace, work: Path, targets: list[str], rungs: list[str], n: int) -> int:
    with stdout_to_stderr():
        rows, fp32_targets, fp32_s = measure_all(args, work, targets, rungs, n)
    report(args, rows, fp32_targets, fp32_s, n)
    return 0


def measure_all(args: argparse.Namespace, work: Path, targets: list[str], rungs: list[str], n: int
                ) -> tuple[list[dict[str, Any]], list[str], float]:
    import edgeship
    from edgeship.api import load

    nncf_on = not args.no_nncf
    fp32_targets = list(dict.fromkeys(targets + (["openvino"] if nncf_on else [])))
    log(f"work folder: {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    log(f"fp32: deploying {MODEL} to {', '.join(fp32_targets)} (cache off)")
    t0 = time.perf_counter()
    res = edgeship.deploy(MODEL, out=work / "fp32", targets=fp32_targets, cache=False, package=False, jobs=args.jobs,
                          progress=lambda m: log(f"  {m}"))
    fp32_s = time.perf_counter() - t0
    fp32 = {a.target: a for a in res.artifacts if a.precision == "fp32"}
    source = load(MODEL)  # what deploy loads: load_source(model, **DeployConfig(...).source_kwargs())
    held = HeldOut(source, n, SEED)

    ref: dict[str, tuple[np.ndarray, float]] = {}
    for t in fp32_targets:
        log(f"fp32 {t}: {n} held-out crops, {args.calls} timed calls")
        ref[t] = measure_artifact(fp32[t].root, held, args.calls)

    rows: list[dict[str, Any]] = []
    for t in targets:
        for rung in rungs:
            log(f"int8 {t} {rung}: deploying in a fresh process")
            cell = build_int8(t, rung, work, args.jobs)
            row = {"target": t, "rung": rung, "options": RUNGS[rung], "status": cell["status"], "samples": n,
                   "agreement": None, "int8_s": cell.get("int8_s"), "deploy_s": cell["deploy_s"], "int8_p50_ms": None,
                   "fp32_p50_ms": ref[t][1], "reached": cell.get("reached"), "own_top1": cell.get("own_top1"),
                   "reason": cell.get("reason"), "same_fp32": cell.get("fp32_digest") == fp32[t].digest
                   if cell.get("fp32_digest") else None}
            if cell["status"] == "ok":
                top1, p50 = measure_artifact(cell["int8"], held, args.calls)
                row.update(agreement=float(np.mean(top1 == ref[t][0])), int8_p50_ms=p50)
            log(f"  {line(row)}")
            rows.append(row)

    if nncf_on:
        log(f"NNCF default quantize of the openvino fp32 IR, {n} held-out crops")
        got = nncf_default(source, fp32["openvino"].root, held, args.calls)
        row = {"target": "openvino", "rung": "NNCF default", "options": {"nncf.quantize": "defaults", "calibration": 128},
               "status": "ok", "samples": n, "agreement": float(np.mean(got["top1"] == ref["openvino"][0])),
               "int8_s": got["seconds"], "deploy_s": None, "int8_p50_ms": got["p50"], "fp32_p50_ms": ref["openvino"][1],
               "quantize_s": got["quantize_s"], "compile_s": got["compile_s"]}
        for t in ("openvino", "onnx"):
            mine = next((r for r in rows if r["target"] == t and r["rung"] == "default ladder" and r["int8_s"]), None)
            row[f"edgeship_default_{t}_over_nncf"] = mine["int8_s"] / got["seconds"] if mine else None
        rows.append(row)
    return rows, fp32_targets, fp32_s


def report(args: argparse.Namespace, rows: list[dict[str, Any]], fp32_targets: list[str], fp32_s: float, n: int) -> None:
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return
    nncf_on = not args.no_nncf
    print(f"\n{MODEL} int8 ladder. agree: top-1 agreement with the target's fp32")
    print(f"on {n} held-out crops of the sample photos (seed {SEED}); ms: p50 at 1 thread")
    print(f"({args.calls} timed calls each; fp32 deploy of {len(fp32_targets)} targets: {fp32_s:.0f} s)")
    print(f"{'target':<11}{'rung':<18}{'agree':>10}{'int8 s':>8}{'deploy s':>9}{'int8 ms':>9}{'fp32 ms':>9}")
    for r in rows:
        print(line(r))
    notes = [textwrap.fill(f"{r['target']} {r['rung']}: {r['reason']}", 80, initial_indent="  ", subsequent_indent="    ")
             for r in rows if r.get("reason")]
    reached = [f"{r['target']} -> {r['reached']}" for r in rows if r["rung"] == "default ladder" and r.get("reached")]
    if reached:
        print(textwrap.fill("default ladder stopped at: " + ", ".join(reached), 80, subsequent_indent="  "))
    if any(r["status"] == "missed" for r in rows):
        print("miss: budget missed, nothing written; the figure is edgeship's own (last step,\n"
              "its evaluation data)")
    if notes:
        print("reasons:\n" + "\n".join(notes))
    nn = rows[-1] if nncf_on else None
    if nn is not None:
        print(f"NNCF default: quantize {nn['quantize_s']:.1f} s + compile {nn['compile_s']:.1f} s")
        print("int8 s, edgeship default ladder / NNCF:")
        for t in ("openvino", "onnx"):
            x = nn[f"edgeship_default_{t}_over_nncf"]
            print(f"  {t:<9} {f'{x:.1f}x' if x is not None else 'n/a (no default-ladder row)'}")
    same = [r for r in rows if r.get("same_fp32") is False]
    if same:
        print("note: the fp32 that deploy rebuilt differs from the reference for:\n  "
              + ", ".join(f"{r['target']} {r['rung']}" for r in same))


def line(r: dict[str, Any]) -> str:
    """One table line (80 columns): target, rung, agreement, int8 s, deploy s, int8 ms, fp32 ms."""
    def num(x: float | None, fmt: str) -> str:
        return format(x, fmt) if x is not None else "-"

    head = f"{r['target']:<11}{r['rung']:<18}"
    if r["status"] == "n/a":  # the whole reason is printed under the table
        why = (r.get("reason") or "").replace(f"the {r['target']} target's int8 does not take", "takes no")
        return (head + f"n/a ({why}")[:79] + ")"
    if r["status"] == "error":
        return (head + f"error ({r.get('reason') or ''}")[:79] + ")"
    agree = f"{r['agreement']:.1%}" if r["agreement"] is not None else \
        f"miss {r['own_top1']:.1%}" if r.get("own_top1") is not None else "missed budget"
    return (f"{head}{agree:>10}{num(r['int8_s'], '.1f'):>8}{num(r['deploy_s'], '.1f'):>9}"
            f"{num(r['int8_p50_ms'], '.2f'):>9}{num(r['fp32_p50_ms'], '.2f'):>9}")


if __name__ == "__main__":
    sys.exit(main())
