"""Honest benchmarking: one harness for every runtime.

Every artifact x thread count (and the source model in PyTorch eager, the baseline) runs in its
own child process (``python -P -m edgeship._child`` running :func:`edgeship.bench.worker.run`), pinned to the given CPUs with
``os.sched_setaffinity``, with the thread count set explicitly in the runtime through
``runner_for(artifact, threads)``. A run has ``rounds`` rounds; each round starts one fresh process
per candidate and alternates their order, so the comparison with the baseline holds on a noisy
machine. Any target registered with edgeship (entry point or ``register_target``) is benchmarked
with no change here: the worker asks the target for its runner.

A candidate whose process hangs (``timeout``), dies on a signal or raises is reported under
``incomplete`` with the reason and never under ``results``; the other candidates still run. An
artifact this machine cannot run at all (its target class's ``can_run_here()`` classmethod says so,
returning False or a one-line reason; a Core ML artifact off macOS) is not started: it is listed
once under ``incomplete`` with kind ``skipped``. A worker's Python traceback never lands in a
reason: it is written to a log file (``$EDGESHIP_CACHE_DIR/logs``) that the reason names, and
copied to stderr with ``EDGESHIP_DEBUG=1``.

An out dir's source is its default baseline only when it is a built-in model: a manifest never
selects code to run (see :mod:`edgeship.bench.harness`); any other source gets a note naming
``--baseline``.

JSON schema ``edgeship.benchmark/1`` (``edgeship benchmark --json``; manifest ``stages.benchmark``)
-----------------------------------------------------------------------------------------------

Top level::

    schema            "edgeship.benchmark/1"
    ok                true (errors that stop the whole run are {"ok": false, "error": {...}})
    edgeship_version, created
    machine           cpu, cpu_count, available_cpus, platform, python,
                      peaks: {"<threads>": {fp32_gops, int8_gops, threads, cached, measured, method,
                              cache_file} | {error}}        (absent figures when --no-roofline)
                      load_average: {start, end} (1/5/15-minute, os.getloadavg)
                      busy_share: {start, end} (the share of all CPUs' time other work took in
                              0.5 s just before and after: a busy machine explains noisy figures)
    settings          threads, cpus, runs, warmup, rounds, fresh_input, batch_sizes,
                      throughput_runs_per_round, timeout_s, profile (the device profile or null),
                      power_profile (the profile whose power the energy estimate uses)
    results           one record per complete candidate x thread count (below)
    incomplete        one record per candidate x thread count that did not finish (below)
    notes             run-wide remarks (oversubscription, a source not reloaded, a short p99 ...)

A result::

    id, role ("artifact" | "baseline"), status "ok", name, path, target, format, precision,
    threads, cpus             the pinning and the explicit runtime thread count
    runtime                   {target, modules: {module: version}}
    inputs                    [{name, shape, dtype}] as the runtime reported them
    latency_ms                warm, batch 1, pooled over the rounds:
                              {n, min, mean, p50, p90, p99, max, std}
    latency_quantiles_ms      the 0th..100th percentile of the same samples (101 values): the whole
                              distribution, which the HTML report draws
    p50_by_round_ms           each round's warm p50 (one fresh process per round): artifacts
                              interleaved in the same rounds compare steadiest round by round
    fresh_input               whether every call got a new input
    cold_start_s              medians over the fresh processes: process_start (spawn to the worker's
                              first line: interpreter + edgeship import), runtime_import, model_load
                              (artifact record + session/runner creation, or building the torch
                              model), first_inference, total (spawn to first result); processes
    memory                    peak_rss_bytes (VmHWM after the warm runs of the process that runs
                              the model, the browser's renderer for web; max over processes),
                              rss_after_import_bytes, rss_after_load_bytes,
                              peak_rss_throughput_bytes (VmHWM after the larger batches),
                              worker_peak_rss_bytes (the worker's own, when the model ran elsewhere)
    size_bytes                the artifact's files on disk (null for a baseline without a file)
    throughput                [{batch, items_per_s (batch / p50), latency_ms {...}}] when the batch
                              axis is dynamic, else [] and a note
    compute                   {macs, gops (2·MACs / p50), peak_kind (fp32|int8 by precision),
                               peak_gops, percent_of_peak, note}; null figures with a note when the
                              MAC count (edgeship.analysis.model_macs) or the peaks are unavailable.
                              A baseline (and a non-ONNX artifact) takes the count of an ONNX/TFLite
                              artifact of the same source: the same weights digest, or for a baseline
                              the same origin (a factory drawing new weights in each process)
    energy                    {estimate: true, mj_per_inference, cpu_ms_per_inference,
                               power_w_per_busy_cpu?, method}: CPU time in the calls x the device
                              profile's power per busy CPU, or RAPL package energy where readable
    vs_baseline               artifacts with a baseline: {baseline, baseline_p50_ms, speedup_p50
                              (baseline p50 / this p50), speedup_p50_by_round,
                              speedup_p50_median_of_rounds, cpu_time_ratio (baseline CPU ms per
                              inference / this one's: the figure that survives a busy machine)}
                              or {baseline, speedup_p50: null, note}
    rounds, notes
    source                    baselines only: {name, digest, kind, origin}

An incomplete record::

    id, role, name, path, target, format, precision, threads, cpus,
    status "incomplete", reason (e.g. "timeout: no result after 5 s (during first_inference); the
    process was killed", "crashed: killed by SIGSEGV during warm", "error during model_load:
    FormatError: ...", "skipped: Core ML prediction needs macOS ..."), kind ("timeout" | "crash" |
    "error" | "skipped"), phase, round (both null when skipped or refused before running). A
    skipped artifact is listed once, with the first thread count: it runs at none here.

CSV (``--csv FILE``): one row per result and incomplete record, columns
:data:`edgeship.bench.result.CSV_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._util import Progress, article, noop_progress
from ..artifact import Artifact
from ..config import SourceConfig
from .config import BenchConfig
from .result import CSV_COLUMNS, BenchReport

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["BenchConfig", "BenchReport", "CSV_COLUMNS", "SCHEMA", "run_benchmark", "deploy_stage"]

SCHEMA = "edgeship.benchmark/1"


def run_benchmark(paths: Sequence[str | Path | Artifact] | str | Path | Artifact, *,
                  progress: Progress = noop_progress, **options: Any) -> BenchReport:
    """Benchmark artifact folders, out dirs or Artifacts; ``options`` are :class:`BenchConfig` fields."""
    from .harness import run

    baseline_options = options.pop("baseline_options", None)
    cfg = options.pop("config", None) or BenchConfig.build(**options)
    if isinstance(paths, (str, Path, Artifact)):
        paths = [paths]
    return BenchReport(run(list(paths), cfg, progress, baseline_options=baseline_options))


def deploy_stage(cfg: DeployConfig, source: Source, artifacts: Sequence[Artifact],
                 progress: Progress = noop_progress) -> dict[str, Any]:
    """``edgeship deploy --benchmark``: the run's artifacts against the source in PyTorch eager.

    Incomplete candidates are recorded, never fatal: the artifacts are already built and verified.
    """
    options: dict[str, Any] = {"threads": cfg.bench_threads, "runs": cfg.bench_runs,
                               "max_seconds": cfg.bench_seconds, "auto_baseline": False,
                               "rounds": cfg.bench_rounds}
    notes = []
    if source.kind in ("torch", "pt2"):
        options["baseline"] = source.origin
        options["baseline_options"] = {k: (str(v) if isinstance(v, Path) else v)
                                       for k, v in cfg.model_dump(include=set(SourceConfig.model_fields)).items()}
    else:
        notes.append(f"no PyTorch eager baseline: the source is {article(source.kind)} model")
    report = run_benchmark(list(artifacts), progress=progress, **options)
    report.data["notes"].extend(notes)
    return report.data
