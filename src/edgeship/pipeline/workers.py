"""The worker scheduler: the plan's groups built in isolated worker processes (the one child
mechanism, :func:`edgeship.isolate.run_isolated`), each on CPUs of its own, started only while the
free memory holds one more; the shared learned rounding first. What a worker runs
(:func:`group_child`, :func:`rounding_child`) is here too, by its public name."""

from __future__ import annotations

import concurrent.futures as cf
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import cache, cpus
from .._util import Progress, safe_name
from ..artifact import Artifact
from ..config import DeployConfig
from ..errors import first_line
from ..isolate import kill_group, run_isolated
from ..sources import Source, load_source
from ..targets import load_artifact, register_target, registered_ref
from .build import build_steps, cell_failure, limits_for
from .keys import TaskKeys, rounding_cached
from .plan import ROUNDING_TASK, Plan, Step

__all__ = ["build_parallel", "portable_target", "worker_context", "group_child", "rounding_child",
           "child_progress", "WORKER_MEMORY_GUESS"]

#: the memory a worker is assumed to need before one has been measured for this model (bytes)
WORKER_MEMORY_GUESS = 3 << 30


def child_progress(msg: str) -> None:
    """Progress inside an isolated child: its stderr is the user's terminal (stdout carries the result)."""
    print(f"· {msg}", file=sys.stderr, flush=True)


def _memory_available() -> int | None:
    """MemAvailable from /proc/meminfo (bytes), None where there is none."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _in_plan_order(p: Plan, artifacts: list[Artifact]) -> list[Artifact]:
    order = {s.id: i for i, s in enumerate(p.steps)}
    return sorted(artifacts, key=lambda a: order.get(a.root.name, len(order)))


def build_parallel(cfg: DeployConfig, p: Plan, source: Source, stage: Path, keys: TaskKeys | None, jobs: int,
                   timings: dict[str, float], progress: Progress) -> tuple[list[Artifact], list[dict[str, Any]], dict[str, Any]]:
    """Run the plan's groups in up to ``jobs`` isolated worker processes (:func:`run_isolated`, the
    one child mechanism), each group's steps one after another in its worker, the shared learned
    rounding first in a worker of its own while the groups that do not need it start. A worker
    starts only while the free memory covers what one needs (as measured for this model before,
    else :data:`WORKER_MEMORY_GUESS`), one at least. Results come back through the staging folder;
    figures, failures and timings as JSON. A worker that dies fails its own cells; the others go
    on. Ctrl-C stops every worker."""
    options = cfg.model_dump(mode="json")
    private = str(stage / ".tasks") if keys is None else None  # --no-cache: the run's own, for the shared rounding
    groups = p.groups
    early: tuple[list[Artifact], list[dict[str, Any]]] = ([], [])
    refs = {s.target: portable_target(s.target) for s in p.steps}
    # here, not in a worker: a group the cache holds whole (a worker would only add its start-up), and a
    # target registered in this process that a new process cannot import (a class made in a function)
    here = [g for g in groups if any(refs[s.target] is None for s in g)
            or (keys is not None and all(cache.has(keys.convert(s.target, s.precision)) for s in g))]
    if here:
        early = build_steps(cfg, source, [s for g in here for s in g], stage, keys, timings, progress)
        groups = [g for g in groups if g not in here]
    todo = [s for g in groups for s in g]
    units: list[dict[str, Any]] = []
    if any(ROUNDING_TASK in s.after for s in todo) and not rounding_cached(cfg, source, keys):
        units.append({"name": ROUNDING_TASK, "after": set(), "func": "edgeship.pipeline.workers:rounding_child",
                      "kwargs": {"options": options, "private_cache": private}, "steps": []})
    for g in groups:
        after = {a for s in g for a in s.after if a == ROUNDING_TASK and units and units[0]["name"] == a}
        units.append({"name": g[0].group, "after": after, "func": "edgeship.pipeline.workers:group_child", "steps": g,
                      "kwargs": {"options": options, "steps": [s.to_dict() for s in g], "stage": str(stage),
                                 "private_cache": private}})
    context = {"sys_path": list(sys.path), "targets": {n: r for n, r in refs.items() if r is not None}}
    for u in units:  # a worker imports what this process did: the factory's module, plugin targets
        u["kwargs"]["context"] = context
        u["limits"] = limits_for(u["steps"])
    if len(units) < 2:  # one group left to build: in this process, no worker to start
        arts, fails = build_steps(cfg, source, todo, stage, keys, timings, progress)
        arts, fails = _in_plan_order(p, [*early[0], *arts]), [*early[1], *fails]
        return arts, fails, {"jobs": 1, "units": [], "note": "what was not in the cache is one group: built in this process"}
    last = {u["name"]: keys.last_worker(u["name"]) if keys is not None else (None, None) for u in units}
    need = {n: int(peak * 1.25) if peak else WORKER_MEMORY_GUESS for n, (peak, _) in last.items()}  # 1.25x last peak
    # the longest first (what each took for this model last time, else the most steps), so the last
    # to start is a short one and the run does not end waiting on one worker (the shared rounding,
    # which others wait for, stays first)
    units.sort(key=lambda u: (u["name"] != ROUNDING_TASK, -(last[u["name"]][1] or 0.0), -len(u["steps"])))
    results, errors, seconds = _schedule(cfg, units, need, jobs, progress)
    artifacts: list[Artifact] = list(early[0])
    failed: list[dict[str, Any]] = list(early[1])
    by_name = {f["name"]: f for r in results.values() for f in r.get("steps", [])}
    why = next(iter(errors.values()), None)
    for s in p.steps:
        r = by_name.get(s.id)
        if r is None:
            if s in todo:  # its worker died, or what it waited for did
                e = errors.get(s.group) or why
                failed.append(cell_failure(s.target, s.precision, e) if e is not None else
                              {"target": s.target, "precision": s.precision, "error": "InternalError",
                               "message": "its worker returned no result", "hint": "run again with --jobs 1"})
            continue
        if r.get("failed"):
            failed.append(r["failed"])
            continue
        art = load_artifact(stage / s.id)
        artifacts.append(art.model_copy(update={"root": stage / s.id}))
        timings[f"convert.{s.target}.{s.precision}"] = r["seconds"]
    artifacts = _in_plan_order(p, artifacts)
    if keys is not None:
        for r in results.values():
            for k in ("reused", "built", "notes"):
                getattr(keys, k).extend(r.get("cache", {}).get(k, []))
    for name, r in results.items():
        if keys is not None and r.get("peak_rss_bytes"):
            keys.remember_memory(name, int(r["peak_rss_bytes"]), float(r["seconds"]))
    workers = {"jobs": jobs, "seconds": round(seconds, 2),
               "units": [{"name": n, "started_s": r["started_s"], "seconds": r["seconds"],
                          "peak_rss_mb": round(r.get("peak_rss_bytes", 0) / 2**20)} for n, r in results.items()]}
    return artifacts, failed, workers


def _schedule(cfg: DeployConfig, units: list[dict[str, Any]], need: dict[str, int], jobs: int,
              progress: Progress) -> tuple[dict[str, dict[str, Any]], dict[str, BaseException], float]:
    """Run ``units`` (in order, each after what it waits for) in up to ``jobs`` workers at once:
    (results by unit, why each failed unit failed, the seconds it took)."""
    slots = cpus.shares(jobs)  # each running worker on CPUs of its own: runtimes size their thread pools to them
    free_slots = list(range(len(slots)))
    done: set[str] = set()
    results: dict[str, dict[str, Any]] = {}
    running: dict[cf.Future, dict[str, Any]] = {}
    started: list[subprocess.Popen] = []
    errors: dict[str, BaseException] = {}  # unit -> why it failed: its steps are failed cells, the rest go on
    t0 = time.perf_counter()
    progress(f"building in {jobs} worker processes: " + ", ".join(u["name"] for u in units))
    pool = cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="edgeship-worker")
    try:
        while units or running:
            free = _memory_available()
            for u in list(units):
                if len(running) >= jobs:
                    break
                if u["after"] & set(errors):
                    units.remove(u)  # what it waits for failed: its steps fail with it
                    continue
                if not u["after"] <= done:
                    continue
                reserved = sum(need[r["name"]] for r in running.values())
                if running and free is not None and reserved + need[u["name"]] > free:
                    continue  # wait for a running worker: the memory would not hold both
                units.remove(u)
                u["t0"] = time.perf_counter() - t0
                u["slot"] = free_slots.pop(0)
                kwargs = {**u["kwargs"], "context": {**u["kwargs"]["context"], "cpus": slots[u["slot"]]}}
                progress(f"worker: {u['name']} started")
                running[pool.submit(run_isolated, u["func"], kwargs, what=f"{cfg.model} ({u['name']})",
                                    started=started, limits=u["limits"])] = u
            if not running:
                if units:  # nothing could start: what they wait for failed
                    break
                continue
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for f in finished:
                u = running.pop(f)
                free_slots.append(u["slot"])
                free_slots.sort()
                try:
                    results[u["name"]] = {**(f.result() or {}), "started_s": round(u["t0"], 2),
                                          "seconds": round(time.perf_counter() - t0 - u["t0"], 2)}
                    done.add(u["name"])
                    progress(f"worker: {u['name']} done in {results[u['name']]['seconds']:.0f} s")
                except Exception as e:  # noqa: BLE001 - a worker that died: its cells fail, the others go on
                    errors[u["name"]] = e
                    progress(f"worker: {u['name']} failed ({first_line(e, 200)})")
    except BaseException:
        for proc in started:  # Ctrl-C: the workers run in their own sessions and would not see it
            if proc.poll() is None:
                kill_group(proc)
        raise
    finally:
        pool.shutdown(wait=True)
    return results, errors, time.perf_counter() - t0


def portable_target(target: str) -> str | None:
    """How a worker process registers ``target`` as this process has it: its 'module:Class'
    (None for a class it cannot import: made inside a function)."""
    ref = registered_ref(target)
    if ref is None or isinstance(ref, str):
        return ref
    if "<locals>" in ref.__qualname__ or ref.__module__ == "__main__":
        return None
    return f"{ref.__module__}:{ref.__qualname__}"


def worker_context(context: dict[str, Any] | None, private_cache: str | None) -> None:
    """In a worker: its CPUs, this deploy's import path and targets, and the run's private cache folder."""
    context = context or {}
    cpus.pin(context.get("cpus"))  # before torch or a runtime sizes its thread pool
    for entry in reversed(context.get("sys_path") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for name, ref in (context.get("targets") or {}).items():
        if registered_ref(name) != ref:
            register_target(name, ref)
    cache.use_private(private_cache)


def group_child(options: dict[str, Any], steps: list[dict[str, Any]], stage: str,
                private_cache: str | None = None, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """One worker: load the source and build one group's steps into ``stage`` (in order)."""
    worker_context(context, private_cache)
    cfg = DeployConfig.build(**options)
    source = load_source(cfg.model, **cfg.source_kwargs())
    mine = tuple(Step.from_dict(s) for s in steps)
    keys = TaskKeys(cfg, source, Plan(cfg.model, source.kind, cfg.out, mine)) if cache.enabled(cfg.cache) else None
    timings: dict[str, float] = {}
    artifacts, failed = build_steps(cfg, source, mine, Path(stage), keys, timings, child_progress)
    out = [{"name": a.root.name, "seconds": round(timings.get(f"convert.{a.target}.{a.precision}", 0.0), 3)}
           for a in artifacts]
    out += [{"name": safe_name(f"{f['target']}-{f['precision']}"), "failed": f} for f in failed]
    return {"steps": out, "cache": keys.record() if keys is not None else {}, "peak_rss_bytes": _peak_rss()}


def rounding_child(options: dict[str, Any], private_cache: str | None = None,
                   context: dict[str, Any] | None = None) -> dict[str, Any]:
    """The worker of the shared learned rounding: computed once and stored in the cache (or the
    run's private folder), where every int8 worker that starts from the torch source finds it."""
    from ..quant.rounding import rounded_source  # torch

    worker_context(context, private_cache)
    cfg = DeployConfig.build(**options)
    source = load_source(cfg.model, **cfg.source_kwargs())
    rounded_source(source, cfg, lambda m: child_progress(f"shared: {m}"))
    return {"peak_rss_bytes": _peak_rss()}
