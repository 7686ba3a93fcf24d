"""This machine's GEMM peaks (fp32 and int8), measured once with ONNX Runtime and cached.

The roofline figure "% of peak" divides a model's achieved GOP/s by the rate a large matrix
multiply reaches on the same cores with the same thread count: fp32 ``MatMul`` and uint8 x int8
``MatMulInteger`` (the recipe that makes CNN int8 fast), square sizes 512 and 1024,
best call over ~0.4 s each, in a pinned child process (:mod:`edgeship.bench.worker`).

The cache is ``$EDGESHIP_CACHE_DIR/machine-peaks.json`` (default ``$XDG_CACHE_HOME/edgeship`` or
``~/.cache/edgeship``), keyed by CPU model, CPU count, ONNX Runtime version and thread count.
Delete the file to measure again.

Only a peak measured on a quiet machine is cached: the share of all CPUs' time other work takes
(``/proc/stat`` over half a second, up to a few tries) is measured first and recorded with the
load average. Measured busy, the peak is used for this run with a note and measured again next
time — a busy first run once cached 115 GFLOP/s where a quiet one measures ~248, and every later
"% of peak" was wrong. An entry cached busy by an older edgeship (its load average above half the
CPUs) is measured again.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._util import atomic_write_text, cache_dir

__all__ = ["cache_dir", "cpu_model", "machine_peaks", "machine_busy", "PEAKS_FILE"]

PEAKS_FILE = "machine-peaks.json"
SCHEMA = "edgeship.machine-peaks/1"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ort_version() -> str | None:
    try:
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        return None


def _key(threads: int) -> str:
    return f"{cpu_model()} | cpus {os.cpu_count()} | onnxruntime {_ort_version()} | threads {threads}"


def _read(path: Path) -> dict[str, Any]:
    from ..errors import EdgeshipError
    from ..readers import read_json

    try:
        data = read_json(path, "machine peaks cache", max_bytes=16 << 20)
        if isinstance(data, dict) and data.get("schema") == SCHEMA and isinstance(data.get("entries"), dict):
            return data
    except EdgeshipError:
        pass
    return {"schema": SCHEMA, "entries": {}}


QUIET_BUSY = 0.25  # share of all CPUs' time other work may take for the machine to count as quiet


def machine_busy(window: float = 0.5) -> float | None:
    """The share of all CPUs' time spent busy over ``window`` seconds (``/proc/stat``); None where
    it cannot be read."""
    import time

    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                parts = fh.readline().split()
        except OSError:
            return None
        if not parts or parts[0] != "cpu":
            return None
        vals = [int(x) for x in parts[1:9]]
        return sum(vals), vals[3] + vals[4]  # total, idle + iowait

    a = sample()
    time.sleep(window)
    b = sample()
    if a is None or b is None or b[0] <= a[0]:
        return None
    return max(0.0, 1.0 - (b[1] - a[1]) / (b[0] - a[0]))


def _quiet_enough(entry: dict[str, Any]) -> bool:
    """Whether a cached entry may be believed: measured quiet (or, written before that was
    recorded, with a load average under half the CPUs)."""
    if "quiet" in entry:
        return entry["quiet"] is True
    load = entry.get("load_average")
    return not (isinstance(load, list) and load and isinstance(load[0], (int, float))
                and load[0] > 0.5 * (os.cpu_count() or 1))


def wait_for_quiet(progress: Callable[[str], None], what: str = "the GEMM peaks", tries: int = 6) -> float | None:
    """The share of CPU time other work takes, measured up to ``tries`` times 0.5 s until it is at
    most :data:`QUIET_BUSY` (work that just ended, a process exiting, settles): the last figure."""
    busy = machine_busy()
    for _ in range(tries - 1):
        if busy is None or busy <= QUIET_BUSY:
            break
        progress(f"waiting for a quiet machine to measure {what} ({busy:.0%} of the CPUs busy)")
        busy = machine_busy()
    return busy


def machine_peaks(threads: int, cpus: Sequence[int] | None, timeout: float,
                  progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """``{"fp32_gops", "int8_gops", "threads", "cached", "measured", "method"}``, or ``{"error"}``
    when it cannot be measured (no ONNX Runtime, the measuring process failed)."""
    from .harness import run_worker

    if _ort_version() is None:
        return {"error": "onnxruntime is not installed: the GEMM peaks are measured with it"}
    path = cache_dir() / PEAKS_FILE
    key = _key(threads)
    cached = _read(path)["entries"].get(key)
    if isinstance(cached, dict) and "fp32_gops" in cached and "int8_gops" in cached and _quiet_enough(cached):
        return {**cached, "cached": True, "cache_file": str(path)}
    busy = wait_for_quiet(progress)
    quiet = busy is None or busy <= QUIET_BUSY
    progress(f"measuring this machine's GEMM peaks at {threads} thread(s) (once; cached in {path})")
    outcome = run_worker({"kind": "peaks", "threads": threads, "cpus": list(cpus) if cpus else None},
                         timeout=min(timeout, 120.0), threads=threads)
    if not outcome.ok:
        return {"error": f"measuring the GEMM peaks failed: {outcome.reason}"}
    r = outcome.result
    entry = {
        "fp32_gops": r["fp32_gops"], "int8_gops": r["int8_gops"], "threads": threads,
        "measured": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # best call of many: robust, not immune, to load
        "busy_before": None if busy is None else round(busy, 3), "quiet": quiet,
        "method": f"best of ONNX Runtime MatMul (fp32) and MatMulInteger (u8 x s8) at 512 and 1024, "
                  f"{r['runtime']}, {threads} thread(s) pinned to CPUs {r.get('cpus')}",
    }
    if not quiet:  # used for this run, said, and measured again next time
        entry["note"] = (f"measured while {busy:.0%} of the CPUs were busy with other work: the peaks may be low and "
                         "'% of peak' high; not cached (measured again next run)")
        return {**entry, "cached": False, "cache_file": str(path)}
    try:
        data = _read(path)
        data["entries"][key] = entry
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:  # an unwritable cache costs a re-measurement next time, nothing else
        entry["note"] = f"could not write the cache {path}: {e.strerror}"
    return {**entry, "cached": False, "cache_file": str(path)}
