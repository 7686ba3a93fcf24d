"""``compress``: prune a torch model (one ratio or a sweep), fine-tune it with distillation, and
time the original beside each pruned model on the runtimes asked for, in one benchmark run."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from .. import pruning
from .._util import Progress, atomic_dir, noop_progress
from ..artifact import Artifact
from ..bench import run_benchmark
from ..config import DeployConfig
from ..errors import EdgeshipError
from ..pruning import LABELS_FILE, MODEL_FILE, PREPROCESS_FILE
from ..pruning.config import CompressConfig
from ..reporting.compress import write_compress_report
from ..sources import Source, load_source
from ..targets import get_target
from .build import convert

__all__ = ["compress"]


def compress(model: str | Path, progress: Progress = noop_progress, **options: Any) -> dict[str, Any]:
    """Prune, fine-tune and time a torch model (see :func:`edgeship.compress`); a failure leaves
    ``out`` as it was."""
    cfg = CompressConfig.build(**options)
    for t in cfg.latency:
        get_target(t)  # an unknown runtime is refused before any work
    source = load_source(str(model), **cfg.source_kwargs())
    pruning.check_request(source, cfg)
    out = Path(cfg.out)
    sweep = len(cfg.prune) > 1
    data = pruning.load_data(source, cfg, progress)
    names = [f"prune-{r:g}" for r in cfg.prune]  # each ratio's folder in a sweep; a single ratio: out itself
    subs = names if sweep else [""]
    with atomic_dir(out) as tmp:
        records = []
        for ratio, sub in zip(cfg.prune, subs):
            say = (lambda m, r=ratio: progress(f"prune {r:g}: {m}")) if sweep else progress
            records.append(pruning.build(source, cfg, ratio, data, tmp / sub, out / sub, say))
        if cfg.latency:
            latency = _latency(source, [tmp / sub for sub in subs], names, cfg, progress)
            for i, r in enumerate(records):
                r["latency"] = {t: {**v["original"], **v["pruned"][i]} for t, v in latency.items()}
        for r, sub in zip(records, subs):
            pruning.finish(tmp / sub, r)
        doc = {"schema": "edgeship.compress-sweep/1", "source": source.record(), "method": cfg.method,
               "out": str(out), "runs": records} if sweep else records[0]
        if sweep:
            pruning.finish(tmp, doc)
        write_compress_report(tmp, doc)
    return {**doc, "report": str(out / "report.html")}


def _latency(source: Source, folders: list[Path], names: list[str], cfg: CompressConfig,
             progress: Progress) -> dict[str, Any]:
    """Per runtime, the original and each pruned model converted (fp32, verified) and timed at 1
    thread in one benchmark run, interleaved in the same rounds: {runtime: {"original": {...},
    "pruned": [{...} per folder]}}; a runtime that cannot be used here says why."""
    pruned = [load_source(str(f / MODEL_FILE), preprocess=str(f / PREPROCESS_FILE) if (f / PREPROCESS_FILE).exists()
                          else None, labels=str(f / LABELS_FILE) if (f / LABELS_FILE).exists() else None)
              for f in folders]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgeship-compress-latency-") as td:
        arts: dict[str, list[Artifact]] = {}
        for t in cfg.latency:
            try:
                arts[t] = [convert(s, t, Path(td) / f"{t}-{name}", DeployConfig.build(model=s.origin), progress=progress)
                           for name, s in zip(["original", *names], [source, *pruned])]
            except EdgeshipError as e:  # this runtime cannot be used here: said, the rest measured
                out[t] = {"original": {"error": e.message}, "pruned": [{"error": e.message}] * len(pruned)}
        if arts:
            progress(f"timing {len(arts) * (1 + len(pruned))} models at 1 thread, side by side ({cfg.bench_runs} calls each)")
            rep = run_benchmark([a for v in arts.values() for a in v], progress=progress, threads=[1], runs=cfg.bench_runs,
                                rounds=3, auto_baseline=False, roofline=False)
            by_path = {r.get("path"): r for r in rep.data.get("results", [])}
            for t, v in arts.items():
                rs = [by_path.get(str(a.root), {}) for a in v]
                base = rs[0]
                out[t] = {"original": {"runtime": base.get("runtime"), "original_p50_ms": _p50(base)},
                          "pruned": [{"pruned_p50_ms": _p50(r), "speedup": _speedup(base, r)} for r in rs[1:]]}
    return out


def _p50(r: dict[str, Any]) -> float | None:
    return (r.get("latency_ms") or {}).get("p50")


def _speedup(base: dict[str, Any], r: dict[str, Any]) -> float | None:
    """original / pruned: the median over rounds of each round's ratio (both timed in every round)."""
    pairs = [a / b for a, b in zip(base.get("p50_by_round_ms") or [], r.get("p50_by_round_ms") or []) if a and b]
    return round(statistics.median(pairs), 3) if pairs else None
