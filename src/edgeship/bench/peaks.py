"""This machine's GEMM peaks (fp32 and int8), measured once with ONNX Runtime and cached.

The roofline figure "% of peak" divides a model's achieved GOP/s by the rate a large matrix
multiply reaches on the same cores with the same thread count: fp32 ``MatMul`` and uint8 x int8
``MatMulInteger`` (the recipe that makes CNN int8 fast), square sizes 512 and 1024,
best call over ~0.4 s each, in a pinned child process (:mod:`edgeship.bench.worker`).

The cache is ``$EDGESHIP_CACHE_DIR/machine-peaks.json`` (default ``$XDG_CACHE_HOME/edgeship`` or
``~/.cache/edgeship``), keyed by CPU model, CPU count, ONNX Runtime version and thread count.
Delete the file to measure again.
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

__all__ = ["cache_dir", "cpu_model", "machine_peaks", "PEAKS_FILE"]

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
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("schema") == SCHEMA and isinstance(data.get("entries"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"schema": SCHEMA, "entries": {}}


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
    if isinstance(cached, dict) and "fp32_gops" in cached and "int8_gops" in cached:
        return {**cached, "cached": True, "cache_file": str(path)}
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
        "method": f"best of ONNX Runtime MatMul (fp32) and MatMulInteger (u8 x s8) at 512 and 1024, "
                  f"{r['runtime']}, {threads} thread(s) pinned to CPUs {r.get('cpus')}",
    }
    try:
        data = _read(path)
        data["entries"][key] = entry
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:  # an unwritable cache costs a re-measurement next time, nothing else
        entry["note"] = f"could not write the cache {path}: {e.strerror}"
    return {**entry, "cached": False, "cache_file": str(path)}
