"""A sweep on Ray, locally and on a two-node cluster, and a worker killed mid-sweep (issue 18's figures).

    .venv/bin/python benchmarks/bench_sweep.py [--out DIR] [--skip-kill]

Runs, one after another on this machine, the same ``edgeship sweep`` (2 models x 3 targets x 2
precisions x 2 thread counts, no cache: every task does its work):

A. on a local Ray (``ray.init()`` with no cluster);
B. on a two-node Ray cluster started here (``ray start --head`` and a second ``ray start
   --address``; both nodes on this machine's 2 cores), with ``--address auto``;
C. on a local Ray again, with one conversion task's Ray worker killed (SIGKILL) while it works.

and prints A's table, whether B gave the same results (status, fidelity, size and bytes per row;
latencies are measurements and differ), where each run's figures were measured, and for C which
task was killed, how it was reported, and that the sweep finished with the others.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SWEEP = f"""\
models:
  - efficientnet-lite0
  - model: {ROOT / 'benchmarks' / 'digits.py'}:model
    name: digits
    weights: @WEIGHTS@
targets: [onnx, tflite, openvino]
precisions: [fp32, int8]
recipes:
  nearest: {{rounding: nearest}}
threads: [1, 2]
bench_seconds: 1
options: {{cache: false}}
"""
KEY = ("model", "recipe", "target", "precision", "threads")
SAME = ("status", "fidelity", "size_bytes", "digest", "error")


def _sweep(spec: Path, out: Path, *extra: str) -> tuple[float, dict, subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "edgeship", "sweep", str(spec), "--out", str(out), *extra]
    print("$ edgeship " + " ".join(cmd[3:]), flush=True)
    t0 = time.perf_counter()
    run = subprocess.run(cmd, env={**os.environ, "COLUMNS": "80"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    doc = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").is_file() else {}
    if not doc:
        print(run.stderr[-3000:])
    return wall, doc, run


def _ray(*args: str, env: dict | None = None) -> None:
    subprocess.run([str(BIN / "ray"), *args], check=True, capture_output=True, text=True, env=env)


def _where(doc: dict) -> str:
    return "; ".join(f"{m['host']} node {(m.get('node_id') or '')[:6]} ({m['cpu']}, {m['cpus']} CPUs)"
                     for m in doc.get("machines", []))


def _kill_one_worker(proc: subprocess.Popen, after_s: float = 5.0) -> str | None:
    """SIGKILL the Ray worker of the first conversion task seen working for ``after_s``."""
    seen: dict[int, float] = {}
    while proc.poll() is None:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::_convert_task"):
                pid = int(d.name)
                first = seen.setdefault(pid, time.monotonic())
                if time.monotonic() - first >= after_s:
                    os.kill(pid, signal.SIGKILL)
                    return f"pid {pid} ({cmd.strip()}) after {after_s:g} s of work"
        time.sleep(0.2)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="keep the sweeps' folders here (default: a temp folder)")
    ap.add_argument("--skip-kill", action="store_true", help="leave out run C")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="edgeship-bench-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "digits" / "weights.pt"
    if not weights.is_file():  # the digits CNN trained on scikit-learn's digits (seeded, ~1 min)
        print("training the digits model (benchmarks/digits.py)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "digits.py"), str(weights.parent)], check=True,
                       capture_output=True)
    spec = work / "sweep.yaml"
    spec.write_text(SWEEP.replace("@WEIGHTS@", str(weights)))
    print(spec.read_text())

    wall_a, a, run_a = _sweep(spec, work / "A", "--overwrite")
    print(run_a.stdout)

    port = "6390"
    _ray("stop", "--force")
    _ray("start", "--head", "--port", port, "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard=false")
    try:  # the second node joins with the token the head made (~/.ray/auth_token)
        _ray("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2", "--disable-usage-stats",
             env={**os.environ, "RAY_AUTH_MODE": "token"})
        wall_b, b, run_b = _sweep(spec, work / "B", "--overwrite", "--address", "auto")
    finally:
        _ray("stop", "--force")

    ra = {tuple(r.get(k) for k in KEY): r for r in a.get("rows", [])}
    rb = {tuple(r.get(k) for k in KEY): r for r in b.get("rows", [])}
    differ = [k for k in ra if k not in rb or any(ra[k].get(f) != rb[k].get(f) for f in SAME)]
    print(f"A local Ray:        {wall_a:6.1f} s, {len(a.get('tasks', {}))} tasks, {len(a.get('cluster', []))} node(s), "
          f"{a.get('summary', {}).get('ok')} rows ok, failed tasks {a.get('summary', {}).get('failed_tasks')}")
    print(f"   figures measured on {_where(a)}")
    print(f"B 2-node cluster:   {wall_b:6.1f} s, {len(b.get('tasks', {}))} tasks, {len(b.get('cluster', []))} node(s), "
          f"{b.get('summary', {}).get('ok')} rows ok, failed tasks {b.get('summary', {}).get('failed_tasks')}")
    print(f"   figures measured on {_where(b)}")
    nodes_b = sorted({(t.get('node') or {}).get('node_id', '')[:6] for t in b.get("tasks", {}).values()})
    print(f"   conversion tasks ran on nodes {', '.join(nodes_b)}")
    print(f"same results table (rows, status, fidelity, size, bytes): {not differ and len(ra) == len(rb)}"
          + (f" — differ: {differ}" if differ else ""))
    p50 = [(k, ra[k].get("p50_ms"), rb[k].get("p50_ms")) for k in ra if k in rb and ra[k].get("p50_ms")]
    if p50:
        print("p50 ms, A vs B (same CPU model, measured apart):")
        for k, x, y in p50:
            print(f"   {k[0]:<18} {k[2]:<9} {k[3]:<5} {k[4]} thr  {x:8.3f}  {y if y is None else round(y, 3)}")

    if not args.skip_kill:
        cmd = [sys.executable, "-m", "edgeship", "sweep", str(spec), "--out", str(work / "C"), "--overwrite"]
        print("$ edgeship " + " ".join(cmd[3:]) + "   (one conversion task's Ray worker killed)", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, "COLUMNS": "80"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        killed = _kill_one_worker(proc)
        out, err = proc.communicate()
        wall_c = time.perf_counter() - t0
        c = json.loads((work / "C" / "sweep.json").read_text()) if (work / "C" / "sweep.json").is_file() else {}
        crashed = {r["task"]: r.get("message") for r in c.get("rows", []) if r.get("error") == "WorkerCrashedError"}
        others = [r for r in c.get("rows", []) if r["task"] not in crashed]
        print(f"C kill mid-sweep:   {wall_c:6.1f} s, exit code {proc.returncode}; killed {killed}")
        print(f"   reported as failed: {crashed}")
        print(f"   the sweep finished: {bool(c)}; other rows ok: {sum(r['status'] == 'ok' for r in others)} of "
              f"{len(others)}; same as A for them: "
              f"{all(ra.get(tuple(r.get(k) for k in KEY), {}).get('digest') == r.get('digest') for r in others)}")
        if not c:
            print(err[-3000:])
    print(f"folders: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
