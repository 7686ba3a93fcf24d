"""The artifacts table of the report: per artifact its fidelity, its benchmark figures (only those
of its bytes now) or why it has none, its notes and its per-layer figures."""

from __future__ import annotations

from typing import Any

from ..artifact import verification_status
from ..data import small_evaluation
from ..manifest import BenchFigures, Manifest, as_dict, as_list, as_num, as_pos, as_text
from .layers import layer_errors

__all__ = ["fidelity_of", "bench_rows", "artifact_rows"]

#: why an artifact shows no benchmark figures: the manifest moved them to a stale list, or they
#: name other bytes than its own now
STALE = "its figures were measured on its earlier bytes (stale): edgeship benchmark OUTDIR measures it again"
OTHER_BYTES = "its figures were measured on other bytes (stale): edgeship benchmark OUTDIR measures it again"


def fidelity_of(rec: dict[str, Any]) -> dict[str, Any]:
    """How close an artifact is to its source: the figure, its name, and how it was verified
    (``status``: verified, unverified — a reduced precision judged only on random inputs, its figure
    said to be on random inputs —, failed, structural, none; ``passed`` only when verified or structural)."""
    v = as_dict(rec.get("verification"))
    outs = [o for o in as_list(v.get("outputs")) if isinstance(o, dict)]
    status = verification_status(v, as_text(rec.get("precision"), 20) or None) if v else "none"
    structural = status == "structural"
    top1 = as_num(v.get("top1_agreement"))
    cosines = [c for o in outs if (c := as_num(o.get("cosine"))) is not None]
    max_abs = [c for o in outs if (c := as_num(o.get("max_abs"))) is not None]
    samples = as_num(v.get("samples"))
    q = as_dict(as_dict(rec.get("details")).get("quantization"))
    steps = [s for s in as_list(q.get("steps")) if isinstance(s, dict)]
    chosen = q.get("chosen") if isinstance(q.get("chosen"), int) and 0 <= q["chosen"] < len(steps) else None
    if chosen is not None and as_num(steps[chosen].get("top1_agreement")) is not None and not structural:
        # the budget's own figure, on the larger evaluation set
        top1 = as_num(steps[chosen]["top1_agreement"])
        samples = as_num(q.get("eval_samples")) or samples
    if structural:
        how = "structural"
        value, metric = None, None
    elif top1 is not None:
        how, value, metric = "numeric", top1, "top-1 agreement"
    elif cosines:
        how, value, metric = "numeric", min(cosines), "cosine"
    else:
        how, value, metric = "numeric" if outs else "none", None, None
    if status == "unverified":
        how = "unverified: random inputs only"
    return {"how": how, "value": value, "metric": metric, "cosine": min(cosines) if cosines else None,
            "max_abs": max(max_abs) if max_abs else None, "samples": int(samples) if samples else None,
            "passed": v.get("passed") is True and status in ("verified", "structural"), "status": status,
            "random_inputs": v.get("real_inputs") is False or str(v.get("inputs") or "").lower().startswith(("seeded random", "random")),
            "note": as_text(v.get("note"), 400) or None,
            "criterion": as_text(v.get("criterion"), 200), "reference": as_text(v.get("reference"), 200)}


def bench_rows(figures: BenchFigures) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, dict[str, str]]:
    """(artifact id -> its benchmark figures, the baseline's, artifact id -> why it has none). A
    figure measured on other bytes than its artifact's now is not shown as its
    (:meth:`edgeship.manifest.Manifest.bench_figures` sets it apart)."""
    by_id: dict[str, dict[str, Any]] = {}
    baseline = None
    missing = dict.fromkeys(figures.stale, STALE)
    missing.update(dict.fromkeys(figures.other_bytes, OTHER_BYTES))
    threads = as_dict(figures.doc.get("settings")).get("threads")
    first_threads = threads[0] if isinstance(threads, list) and threads else None
    for r in figures.results:
        if first_threads is not None and r.get("threads") != first_threads:
            continue  # the report shows the first thread count (the deploy runs one)
        lat = as_dict(r.get("latency_ms"))
        cold = as_dict(r.get("cold_start_s"))
        mem = as_dict(r.get("memory"))
        comp = as_dict(r.get("compute"))
        vs = as_dict(r.get("vs_baseline"))
        quant = [q for x in as_list(r.get("latency_quantiles_ms")) if (q := as_pos(x)) is not None]
        row = {
            "p50": as_pos(lat.get("p50")), "p90": as_pos(lat.get("p90")), "p99": as_pos(lat.get("p99")),
            "min": as_pos(lat.get("min")), "max": as_pos(lat.get("max")), "n": as_num(lat.get("n")),
            "quantiles": quant if len(quant) == 101 and quant == sorted(quant) else None,
            "cold_start_s": as_pos(cold.get("total")), "peak_rss_bytes": as_pos(mem.get("peak_rss_bytes")),
            "speedup": as_num(vs.get("speedup_p50")), "cpu_time_ratio": as_num(vs.get("cpu_time_ratio")),
            "macs": as_pos(comp.get("macs")), "peak_gops": as_pos(comp.get("peak_gops")),
            "percent_of_peak": as_num(comp.get("percent_of_peak")), "peak_kind": as_text(comp.get("peak_kind"), 20),
            "threads": r.get("threads") if isinstance(r.get("threads"), int) else None,
            "cpus": [c for c in as_list(r.get("cpus")) if isinstance(c, int) and not isinstance(c, bool)][:64],
            "runtime": {as_text(k, 60): as_text(v, 60) for k, v in as_dict(as_dict(r.get("runtime")).get("modules")).items()},
            "energy_mj": as_num(as_dict(r.get("energy")).get("mj_per_inference")),
            "name": as_text(r.get("name") or r.get("id"), 80),
        }
        cpu_ms, mean = as_num(as_dict(r.get("energy")).get("cpu_ms_per_inference")), as_num(lat.get("mean"))
        outside = r.get("format") == "web" or r.get("target") == "web"  # its compute is in the browser's processes
        row["cpu_share"] = cpu_ms / mean if cpu_ms and mean and r.get("threads") == 1 and not outside else None
        if row["macs"] and row["peak_gops"]:
            row["roofline_ms"] = 2 * row["macs"] / (row["peak_gops"] * 1e9) * 1e3
        if r.get("role") == "baseline":
            baseline = row
        elif isinstance(r.get("id"), str):
            by_id[r["id"]] = row
    for aid, reason in figures.not_measured:
        missing[aid] = as_text(reason, 200)
    return by_id, baseline, missing


def artifact_rows(m: Manifest, bench: dict[str, dict[str, Any]], missing: dict[str, str],
                  has_bench: bool) -> list[dict[str, Any]]:
    """One row per artifact record: what it is, its fidelity, its figures (``bench``, else why it
    has none: ``no_bench``), its notes and its per-layer figures."""
    rows = []
    for rec in m.records:
        aid = as_text(rec.get("id") or rec.get("path"), 80)
        b = bench.get(aid)
        if b is None:
            why = missing.get(aid) or ("no benchmark in this run (deploy --benchmark measures it)" if not has_bench
                                       else "not in the benchmark")
        else:
            why = None
        rows.append({"id": aid, "target": as_text(rec.get("target"), 40), "format": as_text(rec.get("format"), 40),
                     "digest": as_text(rec.get("digest"), 64) or None,
                     "precision": as_text(rec.get("precision"), 20), "size_bytes": as_pos(rec.get("size_bytes")),
                     "fidelity": fidelity_of(rec), "bench": b, "no_bench": why,
                     "notes": [as_text(n, 400) for n in as_list(rec.get("notes"))[:8]]
                     + [n for n in [small_evaluation(as_dict(as_dict(rec.get("details")).get("quantization")))] if n],
                     "layers": layer_errors(rec)})
    return rows
