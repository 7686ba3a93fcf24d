"""The benchmark harness: every artifact x thread count in its own pinned child process.

``run(paths, cfg)`` resolves artifacts (an out dir gives all of its artifacts and, as the default
baseline, its source model in PyTorch eager), then runs ``cfg.rounds`` rounds; each round starts
one fresh worker process per (artifact or baseline, thread count) and alternates their order, so
slow drift of a shared machine lands on every candidate alike. A process that times out, dies
on a signal or raises is recorded as ``incomplete`` with the reason, its later rounds are skipped,
and its earlier samples are dropped: an incomplete candidate never yields figures. An artifact this
machine cannot run at all (its target's ``can_run_here()``; Core ML off macOS) is not started: it is
listed once under ``incomplete`` with ``kind`` "skipped" and a one-line reason.

A manifest's source becomes the default baseline only if it is one of edgeship's built-in models:
nothing a manifest says selects code to run. A factory ``pkg.mod:fn``, a ``.py`` file or a model
file named there is never imported, called or read on the strength of a manifest; the user names
it with ``--baseline`` (the notes say so).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._util import article
from ..artifact import ARTIFACT_JSON, Artifact
from ..errors import EdgeshipError, InputError, UsageError
from ..sources import BUILTIN_MODELS
from ..targets import load_artifact
from .config import BenchConfig
from .stats import MIN_RUNS_FOR_P99, latency_quantiles, latency_stats
from .worker import PHASE_MARK

__all__ = ["run", "run_worker", "WorkerOutcome"]

SCHEMA = "edgeship.benchmark/1"
Progress = Callable[[str], None]
_SOURCE_OPTION_KEYS = ("input_shape", "input_dtype", "input_value", "input_range", "weights", "dynamic_batch")  # never allow_pickle
_TRACEBACK = "Traceback (most recent call last):"


MIN_BUDGET_RUNS = 30  # timed calls a time budget never cuts below (over all rounds)


def _noop(_: str) -> None:
    pass


# ---- one child process ------------------------------------------------------------------

@dataclasses.dataclass
class WorkerOutcome:
    ok: bool
    result: dict[str, Any] | None = None
    reason: str | None = None
    kind: str | None = None  # timeout | crash | limit | error
    phase: str | None = None
    wall_s: float = 0.0
    stderr: str = dataclasses.field(default="", repr=False)  # the worker's own output, for EDGESHIP_DEBUG


def _last_phase(stderr: str) -> str | None:
    phase = None
    for line in stderr.splitlines():
        if line.startswith(PHASE_MARK):
            phase = line[len(PHASE_MARK):].strip()
    return phase


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    """The last lines a dead worker printed, for its one-line reason. A Python traceback is not
    dumped there: its exception line stands for it and the whole output goes to a log file."""
    text = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith(PHASE_MARK))
    if _TRACEBACK in text:
        from ..isolate import write_log

        after = text.rsplit(_TRACEBACK, 1)[1].splitlines()
        exc = next((ln.strip() for ln in reversed(after) if ln.strip() and not ln[:1].isspace()), "")
        log = write_log("bench-worker", stderr)
        where = f"traceback in {log}" if log is not None else "traceback not saved"
        return f"{exc[:400]}; {where}" if exc else where
    keep = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(keep[-lines:])[-600:]


def run_worker(spec: dict[str, Any], timeout: float, threads: int = 1) -> WorkerOutcome:
    """Run ``python -P -m edgeship.bench.worker`` on ``spec``; never raises for the child's failures.

    ``-P``: the current folder is not put first on the worker's import path, so nothing lying there
    shadows edgeship, a runtime or a factory's module. With ``EDGESHIP_DEBUG=1`` the output of a
    worker that failed is copied to this process's stderr."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)  # libraries that read it agree with the explicit count
    spec = dict(spec)
    spec.setdefault("sys_path", [p for p in sys.path if p and os.path.isdir(p)])
    spec["spawned_at"] = time.monotonic()
    t0 = time.monotonic()
    outcome = _run_worker(spec, env, timeout, t0)
    if not outcome.ok and outcome.stderr:
        from ..isolate import debug_enabled

        if debug_enabled():
            sys.stderr.write(outcome.stderr if outcome.stderr.endswith("\n") else outcome.stderr + "\n")
    return outcome


def _run_worker(spec: dict[str, Any], env: dict[str, str], timeout: float, t0: float) -> WorkerOutcome:
    from ..isolate import Limits, limit_reason, spawn

    limits = Limits.from_env()  # the limits of every untrusted run (SECURITY.md), applied first in the worker
    if spec.get("memory_limit"):  # the target's kind of memory cap (Target.memory_limit)
        limits = dataclasses.replace(limits, memory_kind=spec["memory_limit"])
    spec = {**spec, "limits": dataclasses.asdict(limits)}
    run = spawn([sys.executable, "-P", "-m", "edgeship.bench.worker"], json.dumps(spec), env, timeout)
    out, err = run.out, run.err
    if run.timed_out:
        phase = _last_phase(err)
        return WorkerOutcome(False, reason=f"timeout: no result after {timeout:g} s (during {phase or 'start-up'}); "
                                           "the process was killed", kind="timeout", phase=phase,
                             wall_s=time.monotonic() - t0, stderr=err)
    wall = time.monotonic() - t0
    phase = _last_phase(err)
    doc = None
    for line in reversed(out.strip().splitlines()):
        try:
            doc = json.loads(line)
            break
        except ValueError:
            continue
    rc = run.returncode
    if rc < 0:
        hit = limit_reason(rc, limits, "the artifact", run.wall_s)
        if hit is not None:
            return WorkerOutcome(False, reason=f"limit: {hit[0]} during {phase or 'start-up'} ({hit[1]})", kind="limit",
                                 phase=phase, wall_s=wall, stderr=err)
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        tail = _stderr_tail(err)
        return WorkerOutcome(False, reason=f"crashed: killed by {name} during {phase or 'start-up'}"
                                           + (f" ({tail})" if tail else ""), kind="crash", phase=phase, wall_s=wall,
                             stderr=err)
    if isinstance(doc, dict) and doc.get("ok") is True and rc == 0:
        return WorkerOutcome(True, result=doc, phase=phase, wall_s=wall)
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        e = doc["error"]
        msg = f"{e.get('type', 'Error')}: {e.get('message', '')}"
        if e.get("hint"):
            msg += f" ({e['hint']})"
        kind = "limit" if e.get("type") == "ResourceLimitError" else "error"
        return WorkerOutcome(False, reason=f"error during {phase or 'start-up'}: {msg}", kind=kind,
                             phase=phase, wall_s=wall, stderr=err)
    tail = _stderr_tail(err)
    return WorkerOutcome(False, reason=f"crashed: exit code {rc} during {phase or 'start-up'}"
                                       + (f" ({tail})" if tail else "") + ", no result", kind="crash",
                         phase=phase, wall_s=wall, stderr=err)


# ---- what to benchmark ------------------------------------------------------------------

@dataclasses.dataclass
class _Item:
    id: str
    role: str  # artifact | baseline
    artifact: Artifact | None = None
    origin: str | None = None
    source_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline: str | None = None  # id of this artifact's baseline
    problem: str | None = None  # known before running: reported incomplete
    skip: str | None = None  # cannot run on this machine at all: listed once as skipped


def _unique(wanted: str, taken: set[str]) -> str:
    name, i = wanted, 2
    while name in taken:
        name, i = f"{wanted}-{i}", i + 1
    taken.add(name)
    return name


def _baseline_item(origin: str, options: dict[str, Any], items: list[_Item], taken: set[str]) -> _Item:
    for it in items:
        if it.role == "baseline" and it.origin == origin and it.source_options == options:
            return it
    short = origin.rsplit(":", 1)[-1] if ":" in origin else Path(origin).stem or origin
    it = _Item(id=_unique(f"torch:{short}", taken), role="baseline", origin=origin, source_options=options)
    items.append(it)
    return it


def _target_class(art: Artifact, register: dict[str, str]) -> Any:
    """The class of the target that made ``art`` (a plugin's from ``register``), or None when it
    does not import here (the worker reports that)."""
    import importlib

    from ..targets import registered_ref

    try:
        ref = register.get(art.target) or registered_ref(art.target)
        if isinstance(ref, str):
            mod, _, qual = ref.partition(":")
            return getattr(importlib.import_module(mod), qual, None)
        return ref
    except Exception:  # noqa: BLE001 - the worker reports a target that cannot be imported
        return None


def _cannot_run_here(art: Artifact, register: dict[str, str]) -> str | None:
    """A one-line reason when this machine cannot run ``art`` at all, else None (then the worker
    finds out). Asked of the target class's ``can_run_here()`` classmethod when it has one (True, or
    False / a one-line reason; Core ML's says macOS)."""
    check = getattr(_target_class(art, register), "can_run_here", None)
    if callable(check):
        try:
            ok = check()
        except Exception:  # noqa: BLE001 - a check that fails does not stop the attempt
            return None
        if ok is True or ok is None:
            return None
        text = ok.strip().splitlines()[0] if isinstance(ok, str) and ok.strip() else ""
        return text or f"the {art.target} target cannot run on this machine"
    return None


def _check_explicit_baseline(spec: str) -> None:
    from ..sources import BUILTIN_MODELS, sniff_format

    if spec in BUILTIN_MODELS:
        return
    p = Path(spec)
    if p.exists():
        kind = sniff_format(p)
        if kind in ("onnx", "tflite", "npy"):
            raise UsageError(f"--baseline {spec} is {article(kind)} file; the baseline is the model in PyTorch eager",
                             hint="give a built-in name, a factory pkg.mod:fn, a .pt2 program or a checkpoint")
        return
    if ":" not in spec:
        raise InputError(f"--baseline {spec}: no such model file or factory",
                         hint="give a built-in name, a factory pkg.mod:fn, a .pt2 program or a checkpoint")


def _resolve(paths: Sequence[str | Path | Artifact], cfg: BenchConfig, notes: list[str],
             explicit_options: dict[str, Any]) -> list[_Item]:
    if not paths:
        raise UsageError("nothing to benchmark", hint="give artifact folders or an out dir written by edgeship deploy")
    items: list[_Item] = []
    taken: set[str] = set()
    explicit = None
    if cfg.baseline:
        _check_explicit_baseline(cfg.baseline)
        explicit = cfg.baseline

    def add_artifact(art: Artifact | None, folder: Path, baseline: _Item | None, problem: str | None = None) -> None:
        wanted = folder.name if folder.name not in taken else f"{folder.parent.name}/{folder.name}"
        items.append(_Item(id=_unique(wanted, taken), role="artifact", artifact=art,
                           baseline=baseline.id if baseline else None, problem=problem))

    for p in paths:
        if isinstance(p, Artifact):
            add_artifact(p, p.root, _baseline_item(explicit, explicit_options, items, taken) if explicit else None)
            continue
        p = Path(p)
        from ..manifest import MANIFEST, load_manifest

        if p.is_dir() and (p / MANIFEST).is_file() and not (p / ARTIFACT_JSON).is_file():
            m = load_manifest(p)  # FormatError (exit 3) when unreadable
            assert m is not None
            records, source, config = m.records, m.source, m.config
            base = None
            if explicit:
                base = _baseline_item(explicit, explicit_options, items, taken)
            elif cfg.auto_baseline:
                origin = str(source.get("origin") or "")
                if source.get("kind") == "torch" and origin in BUILTIN_MODELS:  # edgeship's own code, by name
                    opts = {k: config[k] for k in _SOURCE_OPTION_KEYS if config.get(k) not in (None, [])}
                    base = _baseline_item(origin, opts, items, taken)
                elif origin:
                    notes.append(f"{p}: the source {origin[:120]!r} ({str(source.get('kind'))[:20]}) is not reloaded "
                                 "from a manifest automatically (a manifest never selects code to run; only "
                                 "built-in models are); give --baseline to compare with it")
            for rec in records:
                folder = m.artifact_folder(rec)
                try:
                    art = load_artifact(folder)
                except EdgeshipError as e:
                    add_artifact(None, folder, base, problem=f"cannot load the artifact: {e}")
                    continue
                add_artifact(art, folder, base)
            if not records:
                notes.append(f"{p}: the manifest lists no artifacts")
            continue
        art = load_artifact(p)  # a typed InputError/FormatError for a wrong path
        add_artifact(art, art.location, _baseline_item(explicit, explicit_options, items, taken) if explicit else None)
    # the baselines run after the artifacts in a round's first order
    return [i for i in items if i.role == "artifact"] + [i for i in items if i.role == "baseline"]


def _registrations(cfg: BenchConfig, notes: list[str]) -> dict[str, str]:
    """Targets registered in this process (importable ones), then the explicit ones."""
    from ..targets import builtin_targets, registered

    builtin = builtin_targets()
    out: dict[str, str] = {}
    for name, ref in registered().items():
        if name in builtin and ref in (builtin[name],):
            continue
        if isinstance(ref, str):
            out[name] = ref
        else:
            mod, qual = getattr(ref, "__module__", ""), getattr(ref, "__qualname__", "")
            if name in builtin and f"{mod}:{qual}" == builtin[name]:
                continue
            if mod and mod != "__main__" and "<locals>" not in qual:
                out[name] = f"{mod}:{qual}"
            else:
                notes.append(f"target {name!r} ({qual}) is registered here but cannot be imported by the benchmark "
                             "processes; register it by module path (register_target=NAME=module:Class)")
    out.update(cfg.registrations())
    return out


# ---- the run ----------------------------------------------------------------------------

@dataclasses.dataclass
class _Job:
    item: _Item
    threads: int
    cpus: list[int]
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failed: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.item.id} @{self.threads}t"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: a busy machine explains a noisy figure."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpus_for(threads: int, cfg: BenchConfig, profile: Any, available: list[int]) -> list[int]:
    if cfg.cpus is not None:
        return list(cfg.cpus)
    if profile is not None and profile.cores:
        return list(profile.cores)
    return available[:max(1, min(threads, len(available)))]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def run(paths: Sequence[str | Path | Artifact], cfg: BenchConfig, progress: Progress = _noop,
        baseline_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Benchmark ``paths`` under ``cfg``; the JSON-ready report (schema in :mod:`edgeship.bench`)."""
    from ..profiles import load_profile
    from .peaks import QUIET_BUSY, machine_busy

    notes: list[str] = []
    load_start = _loadavg()
    busy_start = machine_busy()  # the share of CPU time other work takes, just before (0.5 s)
    profile = load_profile(cfg.profile) if cfg.profile else None
    power_profile = profile or load_profile("host-1core")
    threads = list(dict.fromkeys(cfg.threads or ([profile.threads] if profile else [1])))
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    pinned_cpus = cfg.cpus if cfg.cpus is not None else (profile.cores if profile is not None else None)
    if pinned_cpus:
        bad = [c for c in pinned_cpus if c not in available]
        if bad:
            src = "--cpus" if cfg.cpus is not None else f"profile {profile.name!r} cores"
            raise UsageError(f"{src}: CPU {', '.join(map(str, bad))} is not available to this process",
                             hint=f"available CPUs: {', '.join(map(str, available))}")
    items = _resolve(paths, cfg, notes, baseline_options or {})
    register = _registrations(cfg, notes)
    rounds = min(cfg.rounds, cfg.runs)
    per_round = _split(cfg.runs, rounds)
    tp_runs = max(3, min(20, cfg.runs // (rounds * 20)))

    jobs: list[_Job] = []
    for t in threads:
        cpus = _cpus_for(t, cfg, profile, available)
        if t > len(cpus):
            notes.append(f"{t} threads on {len(cpus)} CPU(s) {cpus}: oversubscribed, expect slower figures")
        for it in items:
            jobs.append(_Job(it, t, cpus))
    for it in items:
        if it.artifact is not None and not it.problem:
            it.skip = _cannot_run_here(it.artifact, register)
    skipped: set[str] = set()
    for j in jobs:
        if j.item.problem:
            j.failed = {"reason": j.item.problem, "kind": "error", "phase": None, "round": None}
        elif j.item.skip:
            j.failed = {"reason": f"skipped: {j.item.skip}", "kind": "skipped", "phase": None, "round": None}
        elif j.item.artifact is not None:
            try:
                j.item.artifact.verify_files()
            except EdgeshipError as e:
                j.failed = {"reason": str(e), "kind": "error", "phase": None, "round": None}

    peaks: dict[int, dict[str, Any]] = {}
    if cfg.roofline:
        from .peaks import machine_peaks

        for t in threads:
            peaks[t] = machine_peaks(t, _cpus_for(t, cfg, profile, available), cfg.timeout, progress)

    todo = sum(1 for j in jobs if not j.failed) * rounds
    done, t_start = 0, time.monotonic()
    for r in range(rounds):
        order = jobs if r % 2 == 0 else jobs[::-1]
        for j in order:
            if j.failed:
                continue
            left = ""
            if done:  # what is left, and roughly how long at the pace so far
                left = f" ({todo - done} left, ~{_duration((time.monotonic() - t_start) / done * (todo - done))})"
            progress(f"round {r + 1}/{rounds}: {j.label}{left}")
            done += 1
            spec: dict[str, Any] = {
                "kind": "artifact" if j.item.role == "artifact" else "source",
                "threads": j.threads, "cpus": j.cpus, "warmup": cfg.warmup, "runs": per_round[r],
                "max_seconds": cfg.max_seconds / rounds if cfg.max_seconds else None,
                "min_runs": max(1, MIN_BUDGET_RUNS // rounds),
                "fresh_input": cfg.fresh_input, "batch_sizes": cfg.batch_sizes, "throughput_runs": tp_runs,
                "register": register, "seed": r,
            }
            if j.item.role == "artifact":
                assert j.item.artifact is not None
                spec["artifact"] = str(j.item.artifact.location)  # a folder, or a bare model file
                spec["memory_limit"] = getattr(_target_class(j.item.artifact, register), "memory_limit", None)
            else:
                spec["origin"] = j.item.origin
                spec["source_options"] = j.item.source_options
            outcome = run_worker(spec, cfg.timeout, threads=j.threads)
            if outcome.ok:
                j.rounds.append(outcome.result or {})
            else:
                j.failed = {"reason": outcome.reason, "kind": outcome.kind, "phase": outcome.phase, "round": r + 1}
                j.rounds.clear()
                progress(f"{j.label}: incomplete — {outcome.reason}")

    macs_cache = _models_macs([j.item.artifact for j in jobs if not j.failed and j.item.artifact is not None])
    results: list[dict[str, Any]] = []
    incomplete: list[dict[str, Any]] = []
    for j in jobs:
        if j.failed and j.failed.get("kind") == "skipped":
            if j.item.id not in skipped:  # once, not once per thread count: it runs at none here
                skipped.add(j.item.id)
                incomplete.append(_incomplete_record(j))
        elif j.failed:
            incomplete.append(_incomplete_record(j))
        else:
            results.append(_result_record(j, cfg, peaks.get(j.threads), power_profile, macs_cache))
    _share_macs(results, jobs, peaks, macs_cache)
    _add_ratios(results, jobs)
    if cfg.runs < MIN_RUNS_FOR_P99:
        notes.append(f"{cfg.runs} runs: the p99 is the slowest one or two calls; use --runs {MIN_RUNS_FOR_P99} or more "
                     "for a stable p99")
    load_end = _loadavg()
    busy_end = machine_busy()
    # the busy share, not the load average: a minute's average still counts work that just ended
    # (a deploy's conversions) and misses load that started a second ago
    busy = max((b for b in (busy_start, busy_end) if b is not None), default=None)
    if busy is not None and busy > QUIET_BUSY:
        notes.append(f"the machine was busy ({busy:.0%} of all CPUs' time taken by other work just before or after "
                     "the benchmark): latencies include waiting for a CPU; trust the interleaved ratios and the CPU "
                     "time per inference (energy.cpu_ms_per_inference) more than absolute milliseconds")
    from .._version import __version__
    from .peaks import cpu_model

    return {
        "schema": SCHEMA,
        "ok": True,
        "edgeship_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "available_cpus": available,
            "platform": platform.platform(), "python": platform.python_version(),
            "peaks": {str(t): p for t, p in peaks.items()},
            "load_average": {"start": load_start, "end": load_end},
            "busy_share": {"start": busy_start, "end": busy_end},
        },
        "settings": {
            "threads": threads, "cpus": pinned_cpus, "runs": cfg.runs, "max_seconds": cfg.max_seconds, "warmup": cfg.warmup, "rounds": rounds,
            "fresh_input": cfg.fresh_input, "batch_sizes": cfg.batch_sizes, "throughput_runs_per_round": tp_runs,
            "timeout_s": cfg.timeout, "profile": profile.model_dump(mode="json") if profile else None,
            "power_profile": power_profile.name,
        },
        "results": results,
        "incomplete": incomplete,
        "notes": notes,
    }


# ---- records ----------------------------------------------------------------------------

def _identity(j: _Job) -> dict[str, Any]:
    it = j.item
    out: dict[str, Any] = {"id": it.id, "role": it.role, "threads": j.threads, "cpus": j.cpus}
    if it.artifact is not None:
        a = it.artifact
        # the digest of the bytes measured: a figure belongs to them, not to whatever later has the same name
        out.update(name=a.name, path=str(a.root), target=a.target, format=a.format.value, precision=a.precision,
                   digest=a.digest)
    elif it.role == "baseline":
        out.update(name=it.origin, path=None, target="torch-eager", format="torch", precision="fp32",
                   origin=it.origin)
    else:
        out.update(name=it.id, path=None, target=None, format=None, precision=None)
    return out


def _incomplete_record(j: _Job) -> dict[str, Any]:
    f = j.failed or {}
    return {**_identity(j), "status": "incomplete", "reason": f.get("reason"), "kind": f.get("kind"),
            "phase": f.get("phase"), "round": f.get("round")}


def _median(xs: Sequence[float | None]) -> float | None:
    vals = sorted(x for x in xs if x is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _models_macs(arts: list[Artifact]) -> dict[str, tuple[int | None, str | None]]:
    """model path -> (MACs, why not) of each artifact, from edgeship.analysis (another module owns
    the counter), all counted in one isolated child."""
    out: dict[str, tuple[int | None, str | None]] = {}
    countable = []
    for art in arts:
        if art.format.value in ("onnx", "tflite"):
            countable.append(art.model_path)
        else:
            out[str(art.model_path)] = (None, f"no MAC count for {article(art.format.value)} file (counted on ONNX and "
                                              "TFLite graphs)")
    if not countable:
        return out
    try:
        from ..analysis import models_macs
    except (ImportError, AttributeError):
        return {**out, **{str(p): (None, "MAC count unavailable: edgeship.analysis.models_macs is not installed")
                          for p in countable}}
    try:
        counted = models_macs(countable)
    except Exception as e:  # the roofline is an extra: say why it is missing, keep the latency figures
        why = f"MAC count failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        return {**out, **{str(p): (None, why) for p in countable}}
    for p in countable:
        macs = counted.get(str(p))
        out[str(p)] = ((int(macs), None) if macs is not None
                       else (None, "MAC count unavailable for this graph (edgeship.analyze could not count it)"))
    return out


def _compute(macs: int | None, note: str | None, p50_ms: float, precision: str,
             peak: dict[str, Any] | None) -> dict[str, Any]:
    kind = "int8" if any(k in (precision or "") for k in ("int8", "int4", "uint8")) else "fp32"
    out: dict[str, Any] = {"macs": macs, "gops": None, "peak_kind": kind, "peak_gops": None, "percent_of_peak": None}
    if macs is not None and p50_ms > 0:
        out["gops"] = round(2.0 * macs / (p50_ms / 1e3) / 1e9, 2)
    if peak and "error" not in peak:
        out["peak_gops"] = peak.get(f"{kind}_gops")
        if out["gops"] is not None and out["peak_gops"]:
            out["percent_of_peak"] = round(100.0 * out["gops"] / out["peak_gops"], 2)
        if peak.get("quiet") is False:
            note = "; ".join(x for x in (note, "the peak was measured on a busy machine: % of peak may read high") if x)
    elif peak:
        note = "; ".join(x for x in (note, peak["error"]) if x)
    elif macs is not None:
        note = "; ".join(x for x in (note, "peaks not measured (--no-roofline)") if x)
    out["note"] = note
    return out


def _result_record(j: _Job, cfg: BenchConfig, peak: dict[str, Any] | None, power: Any,
                   macs_cache: dict[str, tuple[int | None, str | None]]) -> dict[str, Any]:
    rs = j.rounds
    samples = [s for r in rs for s in r["warm"]["samples_ms"]]
    lat = latency_stats(samples)
    cold_keys = ("process_start", "runtime_import", "model_load", "first_inference", "total")
    cold = {k: (round(v, 4) if (v := _median([r["cold"].get(k) for r in rs])) is not None else None) for k in cold_keys}
    cold["processes"] = len(rs)
    mem = {k: max((r["memory"].get(k) or 0 for r in rs), default=0) or None
           for k in ("peak_rss_bytes", "rss_after_import_bytes", "rss_after_load_bytes", "peak_rss_throughput_bytes",
                     "worker_peak_rss_bytes")}
    throughput = []
    for b in cfg.batch_sizes:
        tps = [t for r in rs for t in r.get("throughput", []) if t["batch"] == b]
        if tps:
            st = latency_stats([s for t in tps for s in t["samples_ms"]])
            throughput.append({"batch": b, "items_per_s": round(b / (st["p50"] / 1e3), 2) if st["p50"] else None,
                               "latency_ms": st})
    n = len(samples)
    cpu_s = sum(r["warm"]["cpu_s"] for r in rs)
    rapl = [r["warm"].get("rapl_uj") for r in rs]
    cpu_ms = cpu_s / n * 1e3 if n else None
    if all(x is not None for x in rapl) and rapl:
        energy = {"estimate": True, "mj_per_inference": round(sum(rapl) / 1e3 / n, 4), "cpu_ms_per_inference": round(cpu_ms, 4),
                  "method": "RAPL package energy over the timed calls / calls (the whole package: other load counts too)"}
    else:
        w = power.power_active_w / max(1, power.threads)
        energy = {"estimate": True, "mj_per_inference": round(cpu_ms * w, 4) if cpu_ms is not None else None,
                  "cpu_ms_per_inference": round(cpu_ms, 4) if cpu_ms is not None else None, "power_w_per_busy_cpu": round(w, 3),
                  "method": f"estimate: process CPU time in the calls x {w:g} W per busy CPU, from device profile "
                            f"{power.name!r} ({power.power_active_w:g} W for {power.threads} thread(s); "
                            f"{power.source or 'nominal'}); RAPL is not readable here"}
    rec = _identity(j)
    art = j.item.artifact
    if art is not None:
        key = str(art.model_path)
        macs, note = macs_cache.get(key, (None, "MAC count unavailable"))
        size = art.size_bytes
    else:
        macs, note = None, None
        size = rs[0].get("size_bytes")
    notes = sorted({n_ for r in rs for n_ in r.get("notes", [])})
    rec.update(
        status="ok",
        runtime=rs[0].get("runtime"),
        inputs=rs[0].get("inputs"),
        latency_ms=lat,
        latency_quantiles_ms=latency_quantiles(samples),
        fresh_input=cfg.fresh_input,
        cold_start_s=cold,
        memory=mem,
        size_bytes=size,
        throughput=throughput,
        compute=_compute(macs, note, lat.get("p50", 0.0), rec.get("precision") or "fp32", peak),
        energy=energy,
        vs_baseline=None,
        rounds=len(rs),
        notes=notes,
    )
    if j.item.role == "baseline":
        rec["source"] = rs[0].get("source")
    # each round's p50 (one fresh process each): ratios between artifacts interleaved in the same
    # rounds are steadier per round than over the pooled samples on a noisy machine
    rec["p50_by_round_ms"] = [latency_stats(r["warm"]["samples_ms"]).get("p50") for r in rs]
    return rec


def _origin_key(origin: str | None) -> str | None:
    """A model spec in one spelling: a ``file.py:fn`` or model file by its resolved path."""
    if not origin:
        return None
    mod, sep, fn = origin.rpartition(":")
    if sep and mod.endswith(".py"):
        return f"{Path(mod).resolve()}:{fn}"
    if not sep and Path(origin).exists():
        return str(Path(origin).resolve())
    return origin


def _share_macs(results: list[dict[str, Any]], jobs: list[_Job], peaks: dict[int, dict[str, Any]],
                macs_cache: dict[str, tuple[int | None, str | None]]) -> None:
    """The baseline and non-ONNX artifacts run the same network as an ONNX artifact made from the
    same source (or from which they were made): use its MAC count, and say whose it is.

    The same source is the same weights digest, or, for a baseline, the same origin (the factory or
    file the artifact was built from): a factory that draws its weights anew in every process gives
    another digest each time, but the same network and so the same MACs."""
    by_digest: dict[str, tuple[int, str]] = {}
    by_origin: dict[str, tuple[int, str]] = {}
    counted: list[str] = []
    items = {j.item.id: j.item for j in jobs}
    seen: set[str] = set()
    # fp32 first: the network as the source has it, before a reduced precision rewrote any of it
    ordered = sorted(jobs, key=lambda j: 0 if j.item.artifact is not None and j.item.artifact.precision == "fp32" else 1)
    for j in ordered:
        a = j.item.artifact
        if a is None or j.item.id in seen:
            continue
        seen.add(j.item.id)
        macs = macs_cache.get(str(a.model_path), (None, None))[0]
        if macs is None:
            continue
        counted.append(j.item.id)
        for d in (a.digest, a.provenance.parent_digest):
            if d:
                by_digest.setdefault(d, (macs, j.item.id))
        key = _origin_key(a.provenance.source)
        if key:
            by_origin.setdefault(key, (macs, j.item.id))
    for res in results:
        if res["compute"].get("macs") is not None:
            continue
        item = items.get(res["id"])
        if res["role"] == "baseline":
            keys = [(res.get("source") or {}).get("digest")]
        elif item is not None and item.artifact is not None:
            keys = [item.artifact.provenance.parent_digest, item.artifact.digest]
        else:
            continue
        hit = next((by_digest[k] for k in keys if k and k in by_digest), None)
        note = f"MACs of {hit[1]}: the same network, counted on its graph" if hit else None
        if hit is None and res["role"] == "baseline" and item is not None:
            hit = by_origin.get(_origin_key(item.origin) or "")
            if hit is not None:
                note = (f"MACs of {hit[1]}: built from the same source {item.origin!r}, counted on its graph "
                        "(the weights differ from run to run, so the digests do not match; the network is the same)")
        if hit is None:
            if res["role"] != "baseline":
                continue
            if counted:
                note = (f"no MAC count: the artifacts with one ({', '.join(counted)}) were not made from this model "
                        "(neither the weights digest nor the source origin matches)")
            else:
                note = "no MAC count: no ONNX or TFLite artifact of this model was benchmarked with a MAC count"
        res["compute"] = _compute(hit[0] if hit else None, note, res["latency_ms"].get("p50", 0.0),
                                  res.get("precision") or "fp32", peaks.get(res["threads"]))


def _add_ratios(results: list[dict[str, Any]], jobs: list[_Job]) -> None:
    by_key = {(r["id"], r["threads"]): r for r in results}
    for j in jobs:
        if j.item.role != "artifact" or not j.item.baseline:
            continue
        res = by_key.get((j.item.id, j.threads))
        if res is None:
            continue
        base = by_key.get((j.item.baseline, j.threads))
        if base is None:
            res["vs_baseline"] = {"baseline": j.item.baseline, "speedup_p50": None,
                                  "note": "the baseline is incomplete: no ratio"}
            continue
        a, b = res["latency_ms"]["p50"], base["latency_ms"]["p50"]
        by_round = [round(y / x, 3) for x, y in zip(res["p50_by_round_ms"], base["p50_by_round_ms"]) if x and y]
        res["vs_baseline"] = {
            "baseline": base["id"],
            "baseline_p50_ms": b,
            "speedup_p50": round(b / a, 3) if a else None,
            "speedup_p50_by_round": by_round,
            "speedup_p50_median_of_rounds": _median(by_round),
            "cpu_time_ratio": _ratio(base["energy"].get("cpu_ms_per_inference"), res["energy"].get("cpu_ms_per_inference")),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None
