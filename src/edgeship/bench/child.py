"""One benchmark worker process: :func:`run_worker` runs :func:`edgeship.bench.worker.run` on a
spec through the one child-process protocol (:func:`edgeship.isolate.run_child`: the limits of
every untrusted run, the JSON result, the phases on stderr) and words how it ended as a
:class:`WorkerOutcome` with a one-line reason. The harness and the machine peaks both run their
workers here."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from typing import Any

from ..isolate import PHASE_MARK, ChildOutcome, Limits, debug_enabled, run_child, write_log

__all__ = ["run_worker", "WorkerOutcome", "WORKER"]

#: the function a benchmark worker process runs, by its module path
WORKER = "edgeship.bench.worker:run"
_TRACEBACK = "Traceback (most recent call last):"


@dataclasses.dataclass
class WorkerOutcome:
    ok: bool
    result: dict[str, Any] | None = None
    reason: str | None = None
    kind: str | None = None  # timeout | crash | limit | error
    phase: str | None = None
    wall_s: float = 0.0
    stderr: str = dataclasses.field(default="", repr=False)  # the worker's own output, for EDGESHIP_DEBUG


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    """The last lines a dead worker printed, for its one-line reason. A Python traceback is not
    dumped there: its exception line stands for it and the whole output goes to a log file."""
    text = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith(PHASE_MARK))
    if _TRACEBACK in text:
        after = text.rsplit(_TRACEBACK, 1)[1].splitlines()
        exc = next((ln.strip() for ln in reversed(after) if ln.strip() and not ln[:1].isspace()), "")
        log = write_log("bench-worker", stderr)
        where = f"traceback in {log}" if log is not None else "traceback not saved"
        return f"{exc[:400]}; {where}" if exc else where
    keep = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(keep[-lines:])[-600:]


def run_worker(spec: dict[str, Any], timeout: float, threads: int = 1) -> WorkerOutcome:
    """Run a benchmark worker on ``spec`` in ``python -P -m edgeship._child``; never raises for the
    child's failures.

    ``-P``: the current folder is not put first on the worker's import path, so nothing lying there
    shadows edgeship, a runtime or a factory's module (the worker appends the parent's import path,
    ``spec["sys_path"]``, after its own). With ``EDGESHIP_DEBUG=1`` the output of a worker that
    failed is copied to this process's stderr."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)  # libraries that read it agree with the explicit count
    limits = Limits.from_env()  # the limits of every untrusted run (SECURITY.md), applied first in the worker
    if spec.get("memory_limit"):  # the target's kind of memory cap (Target.memory_limit)
        limits = dataclasses.replace(limits, memory_kind=spec["memory_limit"])
    spec = dict(spec)
    spec.setdefault("sys_path", [p for p in sys.path if p and os.path.isdir(p)])
    spec["spawned_at"] = time.monotonic()
    child = run_child(WORKER, {"spec": spec}, limits=limits, timeout=timeout, env=env, what="the artifact",
                      subject="the benchmark worker", log_dir=spec.get("log_dir"), log_prefix="bench-worker",
                      safe_path=True, capture_stderr=True, clean_exit=True)
    outcome = _outcome(child, timeout)
    if not outcome.ok and outcome.stderr and debug_enabled():
        sys.stderr.write(outcome.stderr if outcome.stderr.endswith("\n") else outcome.stderr + "\n")
    return outcome


def _outcome(child: ChildOutcome, timeout: float) -> WorkerOutcome:
    """The worker's outcome with its one-line reason."""
    phase, wall, err = child.phase, child.wall_s, child.stderr
    during = phase or "start-up"
    if child.ok:
        return WorkerOutcome(True, result=child.result or {}, phase=phase, wall_s=wall)
    if child.kind == "timeout":
        return WorkerOutcome(False, reason=f"timeout: no result after {timeout:g} s (during {during}); "
                                           "the process was killed", kind="timeout", phase=phase, wall_s=wall,
                             stderr=err)
    if child.error is not None:
        e = child.error
        exc = e.get("exception")
        if isinstance(exc, dict):  # an unexpected exception: its own name and line, and where its traceback is
            log = (e.get("details") or {}).get("log")
            msg = f"{exc.get('type', 'Error')}: {exc.get('message', '')}" + (f" (traceback in {log})" if log else "")
        else:
            msg = f"{e.get('type', 'Error')}: {e.get('message', '')}" + (f" ({e['hint']})" if e.get("hint") else "")
        return WorkerOutcome(False, reason=f"error during {during}: {msg}", kind=child.kind, phase=phase, wall_s=wall,
                             stderr=err)
    if child.limit is not None:
        return WorkerOutcome(False, reason=f"limit: {child.limit[0]} during {during} ({child.limit[1]})", kind="limit",
                             phase=phase, wall_s=wall, stderr=err)
    rc = child.returncode
    tail = _stderr_tail(err)
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return WorkerOutcome(False, reason=f"crashed: killed by {name} during {during}" + (f" ({tail})" if tail else ""),
                             kind="crash", phase=phase, wall_s=wall, stderr=err)
    return WorkerOutcome(False, reason=f"crashed: exit code {rc} during {during}" + (f" ({tail})" if tail else "")
                                       + ", no result", kind="crash", phase=phase, wall_s=wall, stderr=err)
