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

import datetime as _dt
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._util import Progress, article, noop_progress
from .._version import __version__
from ..artifact import Artifact
from ..cpus import allowed as allowed_cpus
from ..errors import EdgeshipError, InputError, UsageError
from ..locate import locate
from ..profiles import load_profile
from ..sources import BUILTIN_MODELS, sniff_format
from ..targets import builtin_targets, load_artifact, registered, registered_ref
from . import peaks as machine
from .child import WorkerOutcome, run_worker
from .config import BenchConfig
from .records import Item, Job, add_ratios, incomplete_record, models_macs_of, result_record, share_macs
from .stats import MIN_RUNS_FOR_P99

__all__ = ["run", "run_worker", "WorkerOutcome"]

SCHEMA = "edgeship.benchmark/1"
_SOURCE_OPTION_KEYS = ("input_shape", "input_dtype", "input_value", "input_range", "weights", "dynamic_batch")  # never allow_pickle


MIN_BUDGET_RUNS = 30  # timed calls a time budget never cuts below (over all rounds)


# ---- what to benchmark ------------------------------------------------------------------

def _unique(wanted: str, taken: set[str]) -> str:
    name, i = wanted, 2
    while name in taken:
        name, i = f"{wanted}-{i}", i + 1
    taken.add(name)
    return name


def _baseline_item(origin: str, options: dict[str, Any], items: list[Item], taken: set[str]) -> Item:
    for it in items:
        if it.role == "baseline" and it.origin == origin and it.source_options == options:
            return it
    short = origin.rsplit(":", 1)[-1] if ":" in origin else Path(origin).stem or origin
    it = Item(id=_unique(f"torch:{short}", taken), role="baseline", origin=origin, source_options=options)
    items.append(it)
    return it


def _target_class(art: Artifact, register: dict[str, str]) -> Any:
    """The class of the target that made ``art`` (a plugin's from ``register``), or None when it
    does not import here (the worker reports that)."""
    import importlib

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
             explicit_options: dict[str, Any]) -> list[Item]:
    if not paths:
        raise UsageError("nothing to benchmark", hint="give artifact folders or an out dir written by edgeship deploy")
    items: list[Item] = []
    taken: set[str] = set()
    explicit = None
    if cfg.baseline:
        _check_explicit_baseline(cfg.baseline)
        explicit = cfg.baseline

    def add_artifact(art: Artifact | None, folder: Path, baseline: Item | None, problem: str | None = None) -> None:
        wanted = folder.name if folder.name not in taken else f"{folder.parent.name}/{folder.name}"
        items.append(Item(id=_unique(wanted, taken), role="artifact", artifact=art,
                           baseline=baseline.id if baseline else None, problem=problem))

    for p in paths:
        if isinstance(p, Artifact):
            add_artifact(p, p.root, _baseline_item(explicit, explicit_options, items, taken) if explicit else None)
            continue
        p = Path(p)
        loc = locate(p)  # FormatError (exit 3) for a manifest that cannot be read
        if loc.kind == "outdir":
            m = loc.manifest
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
        art = loc.artifact or load_artifact(p)  # a typed InputError/FormatError for a wrong path
        add_artifact(art, art.location, _baseline_item(explicit, explicit_options, items, taken) if explicit else None)
    # the baselines run after the artifacts in a round's first order
    return [i for i in items if i.role == "artifact"] + [i for i in items if i.role == "baseline"]


def _registrations(cfg: BenchConfig, notes: list[str]) -> dict[str, str]:
    """Targets registered in this process (importable ones), then the explicit ones."""
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


def run(paths: Sequence[str | Path | Artifact], cfg: BenchConfig, progress: Progress = noop_progress,
        baseline_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Benchmark ``paths`` under ``cfg``; the JSON-ready report (schema in :mod:`edgeship.bench`)."""
    notes: list[str] = []
    load_start = _loadavg()
    busy_start = machine.machine_busy()  # the share of CPU time other work takes, just before (0.5 s)
    profile = load_profile(cfg.profile) if cfg.profile else None
    power_profile = profile or load_profile("host-1core")
    threads = list(dict.fromkeys(cfg.threads or ([profile.threads] if profile else [1])))
    available = allowed_cpus()
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

    jobs: list[Job] = []
    for t in threads:
        cpus = _cpus_for(t, cfg, profile, available)
        if t > len(cpus):
            notes.append(f"{t} threads on {len(cpus)} CPU(s) {cpus}: oversubscribed, expect slower figures")
        for it in items:
            jobs.append(Job(it, t, cpus))
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
        for t in threads:
            peaks[t] = machine.machine_peaks(t, _cpus_for(t, cfg, profile, available), cfg.timeout, progress)

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

    macs_cache = models_macs_of([j.item.artifact for j in jobs if not j.failed and j.item.artifact is not None])
    results: list[dict[str, Any]] = []
    incomplete: list[dict[str, Any]] = []
    for j in jobs:
        if j.failed and j.failed.get("kind") == "skipped":
            if j.item.id not in skipped:  # once, not once per thread count: it runs at none here
                skipped.add(j.item.id)
                incomplete.append(incomplete_record(j))
        elif j.failed:
            incomplete.append(incomplete_record(j))
        else:
            results.append(result_record(j, cfg, peaks.get(j.threads), power_profile, macs_cache))
    share_macs(results, jobs, peaks, macs_cache)
    add_ratios(results, jobs)
    if cfg.runs < MIN_RUNS_FOR_P99:
        notes.append(f"{cfg.runs} runs: the p99 is the slowest one or two calls; use --runs {MIN_RUNS_FOR_P99} or more "
                     "for a stable p99")
    load_end = _loadavg()
    busy_end = machine.machine_busy()
    # the busy share, not the load average: a minute's average still counts work that just ended
    # (a deploy's conversions) and misses load that started a second ago
    busy = max((b for b in (busy_start, busy_end) if b is not None), default=None)
    if busy is not None and busy > machine.QUIET_BUSY:
        notes.append(f"the machine was busy ({busy:.0%} of all CPUs' time taken by other work just before or after "
                     "the benchmark): latencies include waiting for a CPU; trust the interleaved ratios and the CPU "
                     "time per inference (energy.cpu_ms_per_inference) more than absolute milliseconds")
    return {
        "schema": SCHEMA,
        "ok": True,
        "edgeship_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu": machine.cpu_model(), "cpu_count": os.cpu_count(), "available_cpus": available,
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
