"""``edgeship sweep CONFIG``: models x recipes x targets x precisions x thread counts, run as Ray tasks.

The tasks are deploy's own: one per (model, recipe, target), the same worker unit ``deploy --jobs``
runs (:func:`edgeship.pipeline.workers.group_child` in an isolated child, the one child mechanism), scheduled by
Ray instead of by deploy's own pool. A local Ray is started when no cluster is named; ``--address
auto`` or ``ray://HOST:PORT`` joins one. Built artifacts travel back through Ray's object store
(as a tar of the task's folders: no file system needs to be shared), so do the figures.

Benchmarks run after every conversion ended, one model's artifacts side by side in one benchmark
run (with the model in PyTorch eager as the baseline), on one node, and one benchmark at a time
per machine: a node's whole CPU share is asked for, so nothing else runs there, and two nodes of
one machine (same host) never measure at once. Each figure names its node and CPU model; figures
measured on different CPU models are never ranked together.

A failed task (an error, its worker killed, a verification below budget) is a row with its error;
the sweep goes on. Nothing is retried unless asked (``retries``): a killed worker is reported.

"vs eager" is the artifact's speed-up over the model in PyTorch eager at the same thread count on
the same node (the median of the rounds' ratios). Each row says which figure it came from
(``eager_p50_ms`` at ``eager_threads``, ``vs_eager_from``), and a ratio not to be believed is
flagged (``vs_eager_flag``, and a line in ``notes``): a baseline slower at more threads than at
fewer (PyTorch oversubscribed, or a busy machine: it inflates every ratio at that count), or a
ratio far outside the model's others.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from . import cpus, pipeline
from ._util import Progress, atomic_dir, atomic_write_text, safe_name
from .config import CommaList, ConfigModel, DeployConfig, IntList, SourceConfig, load_config
from .errors import EdgeshipError, MissingExtraError, UsageError, first_line
from .pipeline import source_kind
from .pipeline.workers import worker_context

__all__ = ["SweepConfig", "sweep", "SWEEP_JSON", "SWEEP_CSV", "SCHEMA"]

SCHEMA = "edgeship.sweep/1"
SWEEP_JSON = "sweep.json"
SWEEP_CSV = "sweep.csv"

#: what every task's deploy options are, whatever the sweep says: built here, measured by the sweep
_FIXED = {"jobs": 1, "benchmark": False, "package": False, "isolate": False, "dry_run": False}


class SweepConfig(ConfigModel):
    """A sweep file (YAML or JSON). ``models``: names, factories or files, or mappings with
    ``model`` (and ``name``, and deploy options for that model, e.g. ``input_shape``)."""

    command: ClassVar[str] = "sweep"

    models: list[str | dict[str, Any]] = Field(description="the models: built-in names, factories pkg.mod:fn, files, "
                                                           "or {model: ..., name: ..., <deploy options>}")
    targets: CommaList = Field(default_factory=lambda: ["onnx"], description="targets, as deploy --targets")
    precisions: CommaList = Field(default_factory=lambda: ["fp32"], description="precisions: fp32, int8, fp16, ...")
    recipes: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": {}},
                                               description="named sets of deploy options (quantisation recipes)")
    threads: IntList = Field(default_factory=lambda: [1], description="benchmark thread counts")
    options: dict[str, Any] = Field(default_factory=dict, description="deploy options for every task")
    benchmark: bool = Field(True, description="benchmark every artifact (one model's side by side, with PyTorch eager)")
    bench_seconds: float = Field(2.0, gt=0, description="seconds of timed calls per artifact and thread count at most")
    bench_runs: int = Field(300, ge=1, description="timed warm calls per artifact and thread count at most")
    bench_rounds: int = Field(1, ge=1, le=100, description="benchmark rounds, each a fresh process per artifact")
    task_cpus: float = Field(1, gt=0, le=256, description="CPUs Ray reserves for each conversion task")
    retries: int = Field(0, ge=0, le=10, description="times Ray retries a task whose worker died (0: reported)")
    out: Path = Field(Path("sweep-out"), description="output folder: artifacts, sweep.json, sweep.csv, report.html")
    overwrite: bool = Field(False, description="replace an existing output folder")

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if not self.models:
            raise ValueError("models: give at least one model")
        if not self.targets or not self.precisions or not self.recipes:
            raise ValueError("targets, precisions and recipes: give at least one each")
        if any(t < 1 for t in self.threads):
            raise ValueError("threads: give thread counts of 1 or more")
        if "all" in self.targets:
            raise ValueError("targets: name them (a sweep compares what it names; 'all' depends on the machine)")
        return self


def _models(cfg: SweepConfig) -> list[dict[str, Any]]:
    """Each model as {name, model, options}, with a unique short name for folders and tables."""
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, m in enumerate(cfg.models):
        spec = {"model": m} if isinstance(m, str) else dict(m)
        if not isinstance(spec.get("model"), str) or not spec["model"]:
            raise UsageError(f"models[{i}]: give the model as a string or a mapping with 'model'",
                             hint="e.g. - model: pkg.mod:make_net\n    input_shape: [1,3,64,64]")
        model = spec.pop("model")
        name = str(spec.pop("name", "") or model.rsplit(":", 1)[-1].rsplit("/", 1)[-1].removesuffix(".onnx")
                   .removesuffix(".pt2"))
        name = safe_name(name, 32)
        base, n = name, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        taken.add(name)
        out.append({"name": name, "model": model, "options": spec})
    return out


def tasks(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The conversion tasks, each checked as deploy checks its plan (unknown options, targets and
    precisions, missing extras) before anything starts: a bad sweep file fails here, not in a worker."""
    from . import cache

    out = []
    reduced = [p for p in cfg.precisions if p != "fp32"]
    for m in _models(cfg):
        for recipe, recipe_opts in cfg.recipes.items():
            for target in cfg.targets:
                opts = {**cfg.options, **m["options"], **recipe_opts, **_FIXED, "model": m["model"],
                        "targets": [target], "quantize": reduced, "out": str(cfg.out)}
                where = f"model {m['name']}, recipe {recipe}, target {target}"
                try:
                    dcfg = DeployConfig.build(**opts)
                    p = pipeline.plan(dcfg)
                    pipeline.check_plan(p)
                except EdgeshipError as e:
                    raise type(e)(f"{where}: {e.message}", hint=e.hint) from None
                dcfg = dcfg.model_copy(update={"cache": cache.enabled(dcfg.cache)})  # this machine's say, for every node
                out.append({"id": f"{m['name']}/{recipe}/{target}", "model": m["name"], "recipe": recipe,
                            "target": target, "source": m["model"], "options": dcfg.model_dump(mode="json"),
                            "steps": [dict(s) for s in p.steps], "skipped": [dict(s) for s in p.skipped]})
    return out


# ---- what runs on the nodes --------------------------------------------------------------

def _node() -> dict[str, Any]:
    """Where this runs: the Ray node, its host and CPU model."""
    import platform

    from .bench.peaks import cpu_model

    node_id = None
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray
        pass
    return {"node_id": node_id, "host": platform.node(), "cpu": cpu_model(), "cpus": os.cpu_count()}


def _tar(folder: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for n in names:
            tar.add(folder / n, arcname=n)
    return buf.getvalue()


def _untar(blob: bytes, dest: Path) -> list[str]:
    """Extract a task's artifacts (:func:`edgeship._archive.safe_extract`: no entry leaves ``dest``)."""
    from ._archive import safe_extract

    with tempfile.NamedTemporaryFile(suffix=".tar") as fh:
        fh.write(blob)
        fh.flush()
        safe_extract(fh.name, dest)
    return sorted(p.name for p in dest.iterdir() if p.is_dir())


def _convert_task(task: dict[str, Any], context: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """A Ray task: build one (model, recipe, target)'s steps in an isolated child on CPUs of its
    own; return what happened (JSON) and the artifact folders (a tar, through the object store)."""
    import math

    from .isolate import run_isolated
    from .reporting.artifacts import fidelity_of
    from .targets import load_artifact

    t0 = time.perf_counter()
    node = _node()
    held = cpus.claim(max(1, math.floor(context.get("task_cpus", 1))))
    try:
        with tempfile.TemporaryDirectory(prefix="edgeship-sweep-") as tmp:
            stage = Path(tmp)
            private = None if task["options"].get("cache") else str(stage / ".tasks")
            doc: dict[str, Any] = {"node": node, "cpus": held.cpus}
            try:
                res = run_isolated("edgeship.pipeline.workers:group_child",
                                   {"options": task["options"], "steps": task["steps"], "stage": str(stage),
                                    "private_cache": private, "context": {**context, "cpus": held.cpus}},
                                   what=f"{task['source']} ({task['id']})")
            except EdgeshipError as e:
                doc.update(error=_failure_of(e), seconds=round(time.perf_counter() - t0, 2))
                return doc, b""
            steps = []
            for s in res.get("steps", []):
                if s.get("failed"):
                    steps.append({"id": s["name"], "failed": s["failed"]})
                    continue
                art = load_artifact(stage / s["name"])
                rec = art.record()
                steps.append({"id": s["name"], "target": art.target, "precision": art.precision,
                              "size_bytes": art.size_bytes, "digest": art.digest, "seconds": s.get("seconds"),
                              "fidelity": fidelity_of(rec)})
            built = [s["id"] for s in steps if "failed" not in s]
            doc.update(steps=steps, cache=res.get("cache", {}), peak_rss_bytes=res.get("peak_rss_bytes"),
                       seconds=round(time.perf_counter() - t0, 2))
            return doc, _tar(stage, built)
    finally:
        held.release()


def _bench_task(spec: dict[str, Any], context: dict[str, Any], *blobs: bytes) -> dict[str, Any]:
    """A Ray task holding a whole node: one model's artifacts benchmarked side by side (with the
    model in PyTorch eager), on this node; the figures with the node, its CPU and how busy the
    machine was just before."""
    from .bench import run_benchmark
    from .bench.peaks import wait_for_quiet

    worker_context({"sys_path": context.get("sys_path"), "targets": context.get("targets")}, None)
    node = _node()
    with tempfile.TemporaryDirectory(prefix="edgeship-sweep-bench-") as tmp:
        folders = []
        for i, blob in enumerate(blobs):
            dest = Path(tmp) / spec["labels"][i]
            folders += [dest / n for n in _untar(blob, dest)]
        busy = wait_for_quiet(lambda _m: None, "latencies")  # the unpacking above, a conversion's child exiting
        t0 = time.perf_counter()
        report = run_benchmark(folders, threads=spec["threads"], runs=spec["runs"], max_seconds=spec["seconds"],
                               rounds=spec["rounds"], auto_baseline=False, baseline=spec.get("baseline"),
                               baseline_options=spec.get("baseline_options"))
        data = report.data
        for r in data.get("results", []):  # where a result came from: the task label and its folder
            path = Path(r["path"]) if r.get("path") else None
            r["task"] = path.parent.relative_to(tmp).as_posix() if path else None
            r["path"] = path.name if path else None
    return {"node": node, "busy_before": busy, "seconds": round(time.perf_counter() - t0, 2),
            "results": data.get("results", []), "notes": data.get("notes", [])}


# ---- the driver --------------------------------------------------------------------------

def _ray(address: str | None, progress: Progress) -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("edgeship sweep runs on Ray, which is not installed",
                                hint="pip install 'edgeship[sweep]' (ray)") from None
    import logging

    kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address is None:
        progress(f"starting a local Ray ({os.cpu_count()} CPUs)")
        kw.update(num_cpus=os.cpu_count(), include_dashboard=False)
    else:
        if address.startswith("ray://"):
            try:
                import grpc  # noqa: F401 - Ray Client needs it
            except ImportError:
                raise MissingExtraError(f"--address {address}: Ray Client needs ray[client]",
                                        hint="pip install 'ray[client]', or run the sweep on a cluster node with "
                                             "--address auto") from None
        kw["address"] = address
    try:
        ray.init(**kw)
    except ConnectionError as e:
        token = "" if os.environ.get("RAY_AUTH_MODE") else (
            "; a cluster with token authentication (what `ray start --head` makes since Ray 2.5x) needs "
            "RAY_AUTH_MODE=token in this shell, or --address auto on one of its nodes")
        raise UsageError(f"could not join the Ray cluster at {address}: {e}",
                         hint="start one with `ray start --head` (and `ray start --address HEAD:6379` on the "
                              f"other nodes), or leave --address out for a local Ray{token}") from None
    return ray


def _hosts(ray: Any) -> dict[str, dict[str, Any]]:
    """One node per machine (the one with most CPUs), by host address: where benchmarks run."""
    best: dict[str, dict[str, Any]] = {}
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        cpus = n.get("Resources", {}).get("CPU", 0)
        host = n.get("NodeManagerAddress") or n.get("NodeManagerHostname")
        if cpus and (host not in best or cpus > best[host]["cpus"]):
            best[host] = {"node_id": n["NodeID"], "cpus": cpus, "host": host}
    return best


#: Ray's errors for a task that did not run to its end, as a task failure says them
_DIED = {"WorkerCrashedError": "the Ray worker running it died (killed, or the machine ran out of memory)",
         "NodeDiedError": "the Ray node running it died",
         "OutOfMemoryError": "Ray's memory monitor killed it (the node was out of memory)",
         "TaskCancelledError": "it was cancelled"}


def _failure_of(e: BaseException) -> dict[str, Any]:
    """An error as a task failure: a dead worker says so; an edgeship error (raised here, or in the
    task and wrapped by Ray) keeps its type, message and hint."""
    name = type(e).__name__
    if name in _DIED:
        return {"error": name, "message": _DIED[name], "hint": "run it again alone; raise retries in the sweep file to retry"}
    err = e if isinstance(e, EdgeshipError) else getattr(e, "cause", None)
    if isinstance(err, EdgeshipError):
        return {"error": type(err).__name__, "message": err.message, "hint": err.hint}

    return {"error": type(err or e).__name__, "message": first_line(err or e), "hint": None}


def sweep(cfg: SweepConfig | None = None, *, address: str | None = None, progress: Progress = lambda _: None,
          **options: Any) -> dict[str, Any]:
    """Run a sweep on Ray (a local one unless ``address``); write its artifacts, ``sweep.json``,
    ``sweep.csv`` and ``report.html`` into ``cfg.out`` (replaced whole at the end: an interrupted
    sweep leaves the folder as it was). Returns the sweep document."""
    import sys

    cfg = cfg or SweepConfig.build(**options)
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not cfg.overwrite)):
        raise UsageError(f"{out} exists and is not empty", hint="choose another --out, or --overwrite to replace it")
    todo = tasks(cfg)
    context = {"sys_path": list(sys.path), "task_cpus": cfg.task_cpus,
               "targets": {t: r for t in cfg.targets if (r := pipeline.portable_target(t)) is not None}}
    ray = _ray(address, progress)
    t0 = time.perf_counter()
    submitted: list[Any] = []
    try:
        with atomic_dir(out) as stage:
            doc = _run(ray, cfg, todo, context, stage, progress, submitted)
            doc["seconds"] = round(time.perf_counter() - t0, 2)
            doc["address"] = address or "local"
            _write(stage, doc)
    except BaseException:
        # Ctrl-C (or a failure of the driver itself): a cluster would go on with the tasks for no one
        for ref in submitted:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if address is None:
            ray.shutdown()
    return doc


def _run(ray: Any, cfg: SweepConfig, todo: list[dict[str, Any]], context: dict[str, Any], stage: Path,
         progress: Progress, submitted: list[Any]) -> dict[str, Any]:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total_cpus = sum(n.get("Resources", {}).get("CPU", 0) for n in nodes)
    progress(f"sweep: {len(todo)} conversion tasks on Ray ({len(nodes)} node(s), {total_cpus:g} CPUs)")
    convert = ray.remote(_convert_task).options(num_cpus=cfg.task_cpus, max_retries=cfg.retries, num_returns=2)
    pending: dict[Any, tuple[dict[str, Any], Any]] = {}
    for t in todo:
        doc_ref, blob_ref = convert.remote(t, context)
        pending[doc_ref] = (t, blob_ref)
        submitted.append(doc_ref)
    results: dict[str, dict[str, Any]] = {}
    blobs: dict[str, Any] = {}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            t, blob_ref = pending.pop(ref)
            done += 1
            try:
                r = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the task's failure, reported; the sweep goes on
                r = {"error": _failure_of(e)}
                with contextlib.suppress(Exception):  # its other return holds the same error: seen, not "unhandled"
                    ray.get(blob_ref)
            results[t["id"]] = r
            if "error" in r:
                progress(f"[{done}/{len(todo)}] {t['id']}: failed: {r['error']['message']}")
                continue
            blob = ray.get(blob_ref)
            dest = stage / t["model"] / t["recipe"]
            if blob:
                _untar(blob, dest / ".incoming")
                for p in (dest / ".incoming").iterdir():
                    os.replace(p, dest / p.name)
                (dest / ".incoming").rmdir()
                blobs[t["id"]] = blob_ref
            bad = [s for s in r["steps"] if "failed" in s]
            progress(f"[{done}/{len(todo)}] {t['id']}: {len(r['steps']) - len(bad)} built"
                     + (f", {len(bad)} not written" if bad else "") + f" in {r['seconds']:.0f} s")
    bench = _benchmarks(ray, cfg, todo, results, blobs, context, progress, submitted) if cfg.benchmark else {}
    doc = _document(cfg, todo, results, bench, nodes)
    for note in doc["notes"]:  # an implausible "vs eager" is said, not only written
        progress(f"flagged: {note}")
    return doc


def _benchmarks(ray: Any, cfg: SweepConfig, todo: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                blobs: dict[str, Any], context: dict[str, Any], progress: Progress,
                submitted: list[Any]) -> dict[str, dict[str, Any]]:
    """One benchmark task per model (its artifacts of every recipe and target side by side), on
    one node per machine, one at a time per machine, each holding its node's CPUs."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


    hosts = list(_hosts(ray).values())
    per_model: dict[str, list[dict[str, Any]]] = {}
    for t in todo:
        if t["id"] in blobs:
            per_model.setdefault(t["model"], []).append(t)
    queues: dict[str, list[tuple[str, dict[str, Any], list[Any]]]] = {h["host"]: [] for h in hosts}
    for i, (model, ts) in enumerate(per_model.items()):
        h = hosts[i % len(hosts)]  # a model's figures all on one machine: its ratios compare like with like
        first = ts[0]["options"]
        spec = {"labels": [f"{t['recipe']}/{t['target']}" for t in ts], "threads": cfg.threads, "runs": cfg.bench_runs,
                "seconds": cfg.bench_seconds, "rounds": cfg.bench_rounds}
        if source_kind(first["model"]) == "torch":
            spec["baseline"] = first["model"]
            spec["baseline_options"] = {k: first[k] for k in SourceConfig.model_fields if k in first}
        queues[h["host"]].append((model, spec, [blobs[t["id"]] for t in ts]))
    out: dict[str, dict[str, Any]] = {}
    running: dict[Any, tuple[str, str]] = {}
    node_of = {h["host"]: h for h in hosts}
    count = sum(len(q) for q in queues.values())

    def submit(host: str) -> None:
        if not queues[host]:
            return
        model, spec, refs = queues[host].pop(0)
        h = node_of[host]
        task = ray.remote(_bench_task).options(
            num_cpus=h["cpus"], max_retries=cfg.retries,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=h["node_id"], soft=False))
        progress(f"benchmark: {model} on {host} ({len(refs)} task(s), threads {','.join(map(str, cfg.threads))})")
        ref = task.remote(spec, context, *refs)
        running[ref] = (model, host)
        submitted.append(ref)

    for host in queues:
        submit(host)
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            model, host = running.pop(ref)
            try:
                out[model] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - reported with the model's rows
                out[model] = {"error": _failure_of(e)}
            progress(f"benchmark: {model} done ({len(out)}/{count})")
            submit(host)
    return out


#: a baseline this much slower at more threads than at fewer is suspect (beyond timing noise)
EAGER_SLOWER = 1.1
#: a ratio this many times above (or below) the median of the model's other ratios is flagged
RATIO_OUTLIER = 5.0


def _eager_flags(b: dict[str, Any]) -> dict[Any, str]:
    """Per thread count, why the model's PyTorch eager baseline there is suspect: slower than at
    a lower thread count."""
    eager = {x.get("threads"): ((x.get("latency_ms") or {}).get("p50")) for x in b.get("results", [])
             if x.get("role") == "baseline" and x.get("status", "ok") == "ok"}
    eager = {th: p for th, p in eager.items() if isinstance(th, int) and isinstance(p, int | float) and p > 0}
    flags: dict[Any, str] = {}
    for hi in sorted(eager):
        lower = [lo for lo in sorted(eager) if lo < hi and eager[hi] > EAGER_SLOWER * eager[lo]]
        if lower:
            lo = min(lower, key=lambda t: eager[t])
            flags[hi] = (f"PyTorch eager is slower at {hi} threads (p50 {eager[hi]:.4g} ms) than at {lo} "
                         f"(p50 {eager[lo]:.4g} ms): the {hi}-thread baseline is suspect (threads oversubscribed, or a "
                         f"busy machine), and so is every ratio over it")
    return flags


def _flag_ratios(rows: list[dict[str, Any]], bench: dict[str, dict[str, Any]]) -> list[str]:
    """Mark each row whose "vs eager" is not to be believed (``vs_eager_flag``); the notes, one
    per model and reason."""
    import statistics

    notes: list[str] = []
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and isinstance(r.get("vs_eager"), int | float) and r["vs_eager"] > 0:
            by_model.setdefault(r["model"], []).append(r)
    for model, rs in by_model.items():
        eager = _eager_flags(bench.get(model) or {})
        for th, why in eager.items():
            hit = [r for r in rs if r.get("threads") == th]
            for r in hit:
                r["vs_eager_flag"] = why
            if hit:
                notes.append(f"{model}: {why} ({len(hit)} ratio(s), up to {max(r['vs_eager'] for r in hit):.4g}×)")
        trusted = [r for r in rs if "vs_eager_flag" not in r]  # a suspect baseline's ratios define no "rest"
        for r in trusted:
            others = [o["vs_eager"] for o in trusted if o is not r]
            if len(others) < 2:
                continue
            med = statistics.median(others)
            if r["vs_eager"] > RATIO_OUTLIER * med or r["vs_eager"] * RATIO_OUTLIER < med:
                why = (f"vs eager {r['vs_eager']:.4g}× is far outside this model's other ratios (median {med:.3g}×): "
                       f"check its baseline (PyTorch eager p50 {r.get('eager_p50_ms')} ms at {r.get('eager_threads')} "
                       "thread(s)) and its own p50")
                r["vs_eager_flag"] = why
                notes.append(f"{model} {r['recipe']}/{r['target']} {r['precision']} at {r.get('threads')} thread(s): {why}")
    return notes


def _document(cfg: SweepConfig, todo: list[dict[str, Any]], results: dict[str, dict[str, Any]],
              bench: dict[str, dict[str, Any]], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's rows: one per (model, recipe, target, precision, threads) asked for, each with
    its status (ok, failed, skipped), fidelity, size, and the figures with the node they were
    measured on; and the machines (CPU models) the figures come from."""
    rows: list[dict[str, Any]] = []
    machines: dict[str, dict[str, Any]] = {}
    for t in todo:
        r = results.get(t["id"]) or {}
        b = bench.get(t["model"]) or {}
        if b.get("node"):
            n = b["node"]
            machines.setdefault(n["node_id"] or n["host"], {**n, "busy_before": b.get("busy_before")})
        figures = {(x.get("task"), x.get("path"), x.get("threads")): x for x in b.get("results", [])}
        eager = {x.get("threads"): x for x in b.get("results", []) if x.get("role") == "baseline"}
        steps = {s["id"]: s for s in r.get("steps", [])}
        for precision in cfg.precisions:
            sid = safe_name(f"{t['target']}-{precision}")
            base = {"model": t["model"], "recipe": t["recipe"], "target": t["target"], "precision": precision,
                    "task": t["id"], "node": (r.get("node") or {}).get("node_id")}
            skip = next((s for s in t["skipped"] if s["precision"] == precision), None)
            if skip is not None:
                rows.append({**base, "status": "skipped", "reason": skip["reason"]})
                continue
            if "error" in r:
                rows.append({**base, "status": "failed", **r["error"]})
                continue
            s = steps.get(sid)
            if s is None:
                rows.append({**base, "status": "failed", "error": "missing", "message": "the task returned no result"})
                continue
            if "failed" in s:
                f = s["failed"]
                rows.append({**base, "status": "failed", "error": f["error"], "message": f["message"], "hint": f.get("hint")})
                continue
            fid = s["fidelity"]
            art = {**base, "status": "ok", "size_bytes": s["size_bytes"], "digest": s["digest"],
                   "convert_s": s.get("seconds"), "fidelity": fid.get("value"), "fidelity_metric": fid.get("metric"),
                   "verification": fid.get("status"),
                   "cosine": fid.get("cosine")}
            label = f"{t['recipe']}/{t['target']}"
            for th in (cfg.threads if cfg.benchmark else [None]):
                row = {**art, "threads": th}
                x = figures.get((label, sid, th))
                if cfg.benchmark and "error" in b:
                    row["bench_error"] = b["error"]["message"]
                elif x is not None and x.get("status") == "ok":
                    lat = x["latency_ms"]
                    vs = x.get("vs_baseline") or {}
                    by_rounds = vs.get("speedup_p50_median_of_rounds")
                    ratio = by_rounds or vs.get("speedup_p50")
                    base_p50 = vs.get("baseline_p50_ms") or ((eager.get(th) or {}).get("latency_ms") or {}).get("p50")
                    row.update(p50_ms=lat.get("p50"), p90_ms=lat.get("p90"), p99_ms=lat.get("p99"),
                               cold_s=(x.get("cold_start_s") or {}).get("total"),
                               peak_rss_bytes=(x.get("memory") or {}).get("peak_rss_bytes"),
                               vs_eager=ratio, eager_p50_ms=base_p50,
                               eager_threads=x.get("threads") if ratio else None,  # the baseline runs at the row's count
                               bench_node=b["node"]["node_id"], cpu=b["node"]["cpu"], host=b["node"]["host"])
                    if ratio:
                        n = len(vs.get("speedup_p50_by_round") or [])
                        row["vs_eager_from"] = (
                            f"PyTorch eager p50 {base_p50:.4g} ms at {x.get('threads')} thread(s) / this p50 "
                            f"{lat.get('p50'):.4g} ms" if isinstance(base_p50, int | float) and lat.get("p50") else
                            "PyTorch eager at the same thread count") + (
                            f" (median of {n} rounds' ratios)" if by_rounds and n > 1 else "")
                elif x is not None:
                    row["bench_error"] = x.get("reason") or "incomplete"
                rows.append(row)
    ok = sum(1 for r in rows if r["status"] == "ok")
    failed = sorted({r["task"] for r in rows if r["status"] == "failed"})
    notes = _flag_ratios(rows, bench)
    return {"schema": SCHEMA, "config": cfg.model_dump(mode="json"), "rows": rows,
            # ratios not to be believed, and why (each flagged row has its vs_eager_flag)
            "notes": notes,
            "tasks": {t["id"]: {k: v for k, v in (results.get(t["id"]) or {}).items() if k != "steps"} for t in todo},
            "machines": list(machines.values()),
            # each model's benchmark run: where, how long, and its notes (a busy machine, a short p99)
            "benchmarks": {m: {k: b[k] for k in ("node", "busy_before", "seconds", "notes", "error") if k in b}
                           for m, b in bench.items()},
            "cluster": [{"node_id": n["NodeID"], "host": n.get("NodeManagerAddress"),
                         "cpus": n.get("Resources", {}).get("CPU")} for n in nodes],
            "summary": {"rows": len(rows), "ok": ok, "failed_tasks": failed,
                        "skipped": sum(1 for r in rows if r["status"] == "skipped")}}


CSV_FIELDS = ["model", "recipe", "target", "precision", "threads", "status", "size_bytes", "fidelity",
              "fidelity_metric", "cosine", "p50_ms", "p90_ms", "p99_ms", "vs_eager", "eager_p50_ms", "eager_threads",
              "vs_eager_flag", "cold_s", "peak_rss_bytes", "convert_s", "cpu", "host", "bench_node", "node", "digest",
              "error", "message"]


def to_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in doc["rows"]:
        w.writerow(r)
    return buf.getvalue()


def _write(folder: Path, doc: dict[str, Any]) -> None:
    from .reporting.sweep import write_sweep_report

    atomic_write_text(folder / SWEEP_JSON, json.dumps(doc, indent=2, default=str) + "\n")
    atomic_write_text(folder / SWEEP_CSV, to_csv(doc))
    write_sweep_report(folder, doc)


def load(path: str | Path, **overrides: Any) -> SweepConfig:
    """A sweep file (YAML or JSON) with ``overrides`` (the CLI's flags) on top."""
    data = load_config(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return SweepConfig.build(**data)
