"""This machine's GEMM peaks (fp32 and int8), measured once with ONNX Runtime and cached.

The roofline figure "% of peak" divides a model's achieved GOP/s by the rate a large matrix
multiply reaches on the same cores with the same thread count: fp32 ``MatMul`` and uint8 x int8
``MatMulInteger`` (the recipe that makes CNN int8 fast), square sizes 512 and 1024,
best call over ~0.4 s each, in a pinned child process (:mod:`edgeship.bench.worker`).

The cache is ``$EDGESHIP_CACHE_DIR/machine-peaks.json`` (default ``$XDG_CACHE_HOME/edgeship`` or
``~/.cache/edgeship``), keyed by CPU model, CPU count, ONNX Runtime version and thread count.
Delete the file to measure again.

Only a peak measured on a quiet machine is cached: the share of all CPUs' time other work takes
(``/proc/stat`` over half a second, up to a few tries) is measured first, and the share other work
took *during* the measurement itself (:func:`others_during`: all CPUs' busy time over the run,
less the CPU time of the measuring process) after it; both are recorded with
the load average. Busy before or during, the peak is used for this run with a note and measured
again next time — a busy first run once cached 115 GFLOP/s where a quiet one measures ~248, and a
run that started quiet and was joined by other work cached 178 as "quiet" with a load average of
4.79 on 2 CPUs; every later "% of peak" was wrong. An entry cached by an older edgeship whose load
average was above half the CPUs is measured again.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import cache
from .._util import Progress, atomic_write_text, noop_progress
from ..errors import EdgeshipError
from ..readers import read_json
from .child import run_worker

__all__ = ["cpu_model", "machine_peaks", "machine_busy", "others_during", "PEAKS_FILE"]

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


def _cpu_ticks(cpus: Sequence[int] | None) -> tuple[int, int] | None:
    """(all, busy) clock ticks so far of ``cpus`` (every CPU when None), from ``/proc/stat``; busy
    is all but idle and iowait (steal counts as busy: a hypervisor running someone else)."""
    try:
        with open("/proc/stat") as fh:
            lines = [ln.split() for ln in fh if ln.startswith("cpu")]
    except OSError:
        return None
    want = {f"cpu{c}" for c in cpus} if cpus else {"cpu"}
    total = busy = 0
    found = False
    for parts in lines:
        if parts and parts[0] in want:
            vals = [int(x) for x in parts[1:9]]
            total += sum(vals)
            busy += sum(vals) - vals[3] - vals[4]
            found = True
    return (total, busy) if found else None


class _Others:
    """The share of all CPUs' time other work took while a measurement ran: ``/proc/stat``'s busy
    ticks, less the CPU time of the measuring child process (waited for, so its time is in
    RUSAGE_CHILDREN). Other work on any CPU counts: it shares the caches, the memory bus and the
    clock boost, and a process the scheduler moves may land on the measuring CPUs."""

    def __init__(self, threads: int) -> None:
        import resource
        import time

        self.cpus: list[int] | None = None
        self.threads = threads
        self.t0 = time.monotonic()
        self.ticks = _cpu_ticks(self.cpus)
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)

    def share(self) -> float | None:
        import resource
        import time

        after = _cpu_ticks(self.cpus)
        if self.ticks is None or after is None or after[0] <= self.ticks[0]:
            return None
        wall = time.monotonic() - self.t0
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours = (ch.ru_utime - self.children.ru_utime) + (ch.ru_stime - self.children.ru_stime)
        # the measuring child runs at most `threads` threads on these CPUs (more would be another
        # child of ours that ended meanwhile: other work, as far as this measurement goes)
        ours = min(ours, wall * min(self.threads, os.cpu_count() or 1))
        total, busy = after[0] - self.ticks[0], after[1] - self.ticks[1]
        return max(0.0, min(1.0, (busy - ours * hz) / total))


def others_during(threads: int) -> _Others:
    """Start watching the share of all CPUs' time that work other than a measuring child of
    ``threads`` threads takes; ``.share()`` on what this returns, once the child was waited for,
    gives it (None where ``/proc/stat`` cannot be read)."""
    return _Others(threads)


def _quiet_enough(entry: dict[str, Any]) -> bool:
    """Whether a cached entry may be believed: measured quiet, before and during (or, written
    before that was recorded, with a load average under half the CPUs)."""
    load = entry.get("load_average")
    loaded = (isinstance(load, list) and load and isinstance(load[0], (int, float))
              and load[0] > 0.5 * (os.cpu_count() or 1))
    if "quiet" in entry and "busy_during" in entry:
        return entry["quiet"] is True
    # an older edgeship judged the machine just before the run only: its load average after it is
    # all there is to tell whether other work joined the run
    return not loaded and entry.get("quiet", True) is True


def wait_for_quiet(progress: Progress, what: str = "the GEMM peaks", tries: int = 6) -> float | None:
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
                  progress: Progress = noop_progress, seconds_per_size: float = 0.4) -> dict[str, Any]:
    """``{"fp32_gops", "int8_gops", "threads", "cached", "measured", "method"}``, or ``{"error"}``
    when it cannot be measured (no ONNX Runtime, the measuring process failed).
    ``seconds_per_size``: how long each GEMM size is timed (the best call counts)."""
    if _ort_version() is None:
        return {"error": "onnxruntime is not installed: the GEMM peaks are measured with it"}
    path = cache.kept(PEAKS_FILE)
    key = _key(threads)
    cached = _read(path)["entries"].get(key)
    if isinstance(cached, dict) and "fp32_gops" in cached and "int8_gops" in cached and _quiet_enough(cached):
        return {**cached, "cached": True, "cache_file": str(path)}
    busy = wait_for_quiet(progress)
    quiet_before = busy is None or busy <= QUIET_BUSY
    progress(f"measuring this machine's GEMM peaks at {threads} thread(s) (once; cached in {path})")
    watch = others_during(threads)
    outcome = run_worker({"kind": "peaks", "threads": threads, "cpus": list(cpus) if cpus else None,
                          "seconds_per_size": seconds_per_size}, timeout=min(timeout, 120.0), threads=threads)
    during = watch.share()
    if not outcome.ok:
        return {"error": f"measuring the GEMM peaks failed: {outcome.reason}"}
    quiet_during = during is None or during <= QUIET_BUSY
    quiet = quiet_before and quiet_during
    r = outcome.result
    entry = {
        "fp32_gops": r["fp32_gops"], "int8_gops": r["int8_gops"], "threads": threads,
        "measured": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # best call of many: robust, not immune, to load
        "busy_before": None if busy is None else round(busy, 3),
        "busy_during": None if during is None else round(during, 3), "quiet": quiet,
        "method": f"best of ONNX Runtime MatMul (fp32) and MatMulInteger (u8 x s8) at 512 and 1024, "
                  f"{r['runtime']}, {threads} thread(s) pinned to CPUs {r.get('cpus')}",
    }
    if not quiet:  # used for this run, said, and measured again next time
        when = (f"{busy:.0%} of the CPUs were busy with other work before it" if not quiet_before else
                f"other work took {during:.0%} of the CPUs' time while it ran")
        entry["note"] = (f"measured while {when}: the peaks may be low and '% of peak' high; not cached (measured "
                         "again next run)")
        return {**entry, "cached": False, "cache_file": str(path)}
    try:
        data = _read(path)
        data["entries"][key] = entry
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as e:  # an unwritable cache costs a re-measurement next time, nothing else
        entry["note"] = f"could not write the cache {path}: {e.strerror}"
    return {**entry, "cached": False, "cache_file": str(path)}
