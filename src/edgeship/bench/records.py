"""What a benchmark run records: the candidates and their jobs, one record per complete or
incomplete (candidate, thread count), the roofline figures (MACs against the machine's peak) and
the ratios to the baseline (schema in :mod:`edgeship.bench`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._util import article
from ..artifact import Artifact
from .config import BenchConfig
from .stats import latency_quantiles, latency_stats

__all__ = ["Item", "Job", "incomplete_record", "result_record", "models_macs_of", "share_macs", "add_ratios"]

# ---- what runs --------------------------------------------------------------------------

@dataclasses.dataclass
class Item:
    id: str
    role: str  # artifact | baseline
    artifact: Artifact | None = None
    origin: str | None = None
    source_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    baseline: str | None = None  # id of this artifact's baseline
    problem: str | None = None  # known before running: reported incomplete
    skip: str | None = None  # cannot run on this machine at all: listed once as skipped


@dataclasses.dataclass
class Job:
    item: Item
    threads: int
    cpus: list[int]
    rounds: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    failed: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.item.id} @{self.threads}t"



# ---- records ----------------------------------------------------------------------------

def _identity(j: Job) -> dict[str, Any]:
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


def incomplete_record(j: Job) -> dict[str, Any]:
    f = j.failed or {}
    return {**_identity(j), "status": "incomplete", "reason": f.get("reason"), "kind": f.get("kind"),
            "phase": f.get("phase"), "round": f.get("round")}


def _median(xs: Sequence[float | None]) -> float | None:
    vals = sorted(x for x in xs if x is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def models_macs_of(arts: list[Artifact]) -> dict[str, tuple[int | None, str | None]]:
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


def result_record(j: Job, cfg: BenchConfig, peak: dict[str, Any] | None, power: Any,
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


def share_macs(results: list[dict[str, Any]], jobs: list[Job], peaks: dict[int, dict[str, Any]],
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


def add_ratios(results: list[dict[str, Any]], jobs: list[Job]) -> None:
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
