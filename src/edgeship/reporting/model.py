"""The page model: everything the HTML report shows, computed from an output folder's manifest.

Pure data (JSON-ready dicts and lists), no HTML: :mod:`edgeship.reporting.charts` draws it and
:mod:`edgeship.reporting` renders the page. Every value read from the manifest is checked for its
type here (a crafted or old manifest gives a page with gaps, never a crash), and every gap carries
a sentence saying why it is empty.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .._util import share_text
from ..data import small_evaluation
from ..errors import printable
from ..manifest import Manifest, is_current, record_digests

__all__ = ["page_model", "compare_models", "REGRESSION_RULES"]

# When the new release is worse than the old by more than this, the comparison marks it.
REGRESSION_RULES: dict[str, tuple[float, str]] = {
    "size_bytes": (0.01, "size grew by more than 1%"),
    "fidelity": (0.005, "fidelity fell by more than 0.5 points"),
    "p50_ms": (0.05, "p50 latency grew by more than 5%"),
    "p99_ms": (0.10, "p99 latency grew by more than 10%"),
    "cold_start_s": (0.10, "cold start grew by more than 10%"),
    "peak_rss_bytes": (0.05, "peak memory grew by more than 5%"),
}


def _num(x: Any) -> float | None:
    """A finite number from the manifest, else None (a string, a bool, NaN, an absurd 1e300: a gap,
    not a crash)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) and abs(x) < 1e18 else None


def _pos(x: Any) -> float | None:
    """A duration or a size: a positive number, else a gap."""
    v = _num(x)
    return v if v is not None and v > 0 else None


def _text(x: Any, limit: int = 300) -> str:
    """A string from the manifest as data: no control characters, bounded length."""
    s = printable("" if x is None else str(x))
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}


def _list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else []


def fidelity_of(rec: dict[str, Any]) -> dict[str, Any]:
    """How close an artifact is to its source: the figure, its name, and how it was verified
    (``status``: verified, unverified — a reduced precision judged only on random inputs, its figure
    said to be on random inputs —, failed, structural, none; ``passed`` only when verified or structural)."""
    from ..artifact import verification_status

    v = _dict(rec.get("verification"))
    outs = [o for o in _list(v.get("outputs")) if isinstance(o, dict)]
    status = verification_status(v, _text(rec.get("precision"), 20) or None) if v else "none"
    structural = status == "structural"
    top1 = _num(v.get("top1_agreement"))
    cosines = [c for o in outs if (c := _num(o.get("cosine"))) is not None]
    max_abs = [c for o in outs if (c := _num(o.get("max_abs"))) is not None]
    samples = _num(v.get("samples"))
    q = _dict(_dict(rec.get("details")).get("quantization"))
    steps = [s for s in _list(q.get("steps")) if isinstance(s, dict)]
    chosen = q.get("chosen") if isinstance(q.get("chosen"), int) and 0 <= q["chosen"] < len(steps) else None
    if chosen is not None and _num(steps[chosen].get("top1_agreement")) is not None and not structural:
        # the budget's own figure, on the larger evaluation set
        top1 = _num(steps[chosen]["top1_agreement"])
        samples = _num(q.get("eval_samples")) or samples
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
            "note": _text(v.get("note"), 400) or None,
            "criterion": _text(v.get("criterion"), 200), "reference": _text(v.get("reference"), 200)}


def _bench_rows(bench: dict[str, Any], digests: dict[str, str],
                stale: list[Any] = ()) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, dict[str, str]]:
    """(artifact id -> its benchmark figures, the baseline's, artifact id -> why it has none). A
    figure measured on other bytes than its artifact's now (``digests``) is not shown as its."""
    by_id: dict[str, dict[str, Any]] = {}
    baseline = None
    missing = {}
    threads = _dict(bench.get("settings")).get("threads")
    first_threads = threads[0] if isinstance(threads, list) and threads else None
    for r in [*_list(bench.get("stale")), *stale]:
        if isinstance(r, dict) and isinstance(r.get("id"), str):
            missing[r["id"]] = ("its figures were measured on its earlier bytes (stale): edgeship benchmark "
                                "OUTDIR measures it again")
    for r in _list(bench.get("results")):
        if not isinstance(r, dict):
            continue
        if r.get("role") != "baseline" and not is_current(r, digests):
            if isinstance(r.get("id"), str):
                missing[r["id"]] = "its figures were measured on other bytes (stale): edgeship benchmark OUTDIR measures it again"
            continue
        if first_threads is not None and r.get("threads") != first_threads:
            continue  # the report shows the first thread count (the deploy runs one)
        lat = _dict(r.get("latency_ms"))
        cold = _dict(r.get("cold_start_s"))
        mem = _dict(r.get("memory"))
        comp = _dict(r.get("compute"))
        vs = _dict(r.get("vs_baseline"))
        quant = [q for x in _list(r.get("latency_quantiles_ms")) if (q := _pos(x)) is not None]
        row = {
            "p50": _pos(lat.get("p50")), "p90": _pos(lat.get("p90")), "p99": _pos(lat.get("p99")),
            "min": _pos(lat.get("min")), "max": _pos(lat.get("max")), "n": _num(lat.get("n")),
            "quantiles": quant if len(quant) == 101 and quant == sorted(quant) else None,
            "cold_start_s": _pos(cold.get("total")), "peak_rss_bytes": _pos(mem.get("peak_rss_bytes")),
            "speedup": _num(vs.get("speedup_p50")), "cpu_time_ratio": _num(vs.get("cpu_time_ratio")),
            "macs": _pos(comp.get("macs")), "peak_gops": _pos(comp.get("peak_gops")),
            "percent_of_peak": _num(comp.get("percent_of_peak")), "peak_kind": _text(comp.get("peak_kind"), 20),
            "threads": r.get("threads") if isinstance(r.get("threads"), int) else None,
            "cpus": [c for c in _list(r.get("cpus")) if isinstance(c, int) and not isinstance(c, bool)][:64],
            "runtime": {_text(k, 60): _text(v, 60) for k, v in _dict(_dict(r.get("runtime")).get("modules")).items()},
            "energy_mj": _num(_dict(r.get("energy")).get("mj_per_inference")),
            "name": _text(r.get("name") or r.get("id"), 80),
        }
        cpu_ms, mean = _num(_dict(r.get("energy")).get("cpu_ms_per_inference")), _num(lat.get("mean"))
        outside = r.get("format") == "web" or r.get("target") == "web"  # its compute is in the browser's processes
        row["cpu_share"] = cpu_ms / mean if cpu_ms and mean and r.get("threads") == 1 and not outside else None
        if row["macs"] and row["peak_gops"]:
            row["roofline_ms"] = 2 * row["macs"] / (row["peak_gops"] * 1e9) * 1e3
        if r.get("role") == "baseline":
            baseline = row
        elif isinstance(r.get("id"), str):
            by_id[r["id"]] = row
    for r in _list(bench.get("not_measured")) + _list(bench.get("incomplete")):
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("role") != "baseline":
            missing[r["id"]] = _text(r.get("reason"), 200)
    return by_id, baseline, missing


def _artifact_rows(m: Manifest, bench: dict[str, dict[str, Any]], missing: dict[str, str],
                   has_bench: bool) -> list[dict[str, Any]]:
    rows = []
    for rec in m.records:
        aid = _text(rec.get("id") or rec.get("path"), 80)
        b = bench.get(aid)
        if b is None:
            why = missing.get(aid) or ("no benchmark in this run (deploy --benchmark measures it)" if not has_bench
                                       else "not in the benchmark")
        else:
            why = None
        rows.append({"id": aid, "target": _text(rec.get("target"), 40), "format": _text(rec.get("format"), 40),
                     "digest": _text(rec.get("digest"), 64) or None,
                     "precision": _text(rec.get("precision"), 20), "size_bytes": _pos(rec.get("size_bytes")),
                     "fidelity": fidelity_of(rec), "bench": b, "no_bench": why,
                     "notes": [_text(n, 400) for n in _list(rec.get("notes"))[:8]]
                     + [n for n in [small_evaluation(_dict(_dict(rec.get("details")).get("quantization")))] if n],
                     "layers": _layer_errors(rec)})
    return rows


#: the per-layer figures a backend may measure, each its own metric (never drawn or ranked as one):
#: key in the report's rows, key in the record, label
LAYER_METRICS = (("weight_db", "weight_sqnr_db", "weight SQNR"), ("output_db", "output_sqnr_db", "output SQNR"))


def _layer_errors(rec: dict[str, Any]) -> dict[str, Any] | None:
    """An int8 artifact's per-layer quantisation error: rows {node, module, weight_db, output_db,
    injected_db} (each dB figure the backend measured, else None) and, per metric the rows carry
    (``by_metric``: weight SQNR, output SQNR), what it measures against (``reference``), the rows
    worst first, whether some figures are lower bounds, and whether it can be set beside other
    artifacts' figures of that metric (``comparable``: a torch-side int8 recorded before edgeship
    measured it against the float weights gave its rounded weights' SQNR against themselves, ~150
    dB). ``metric``/``label``/``rows``: the figure the record ranks its layers by (output SQNR where
    measured, else weight SQNR) for the technique table; nothing ranks one metric with another."""
    q = _dict(_dict(rec.get("details")).get("quantization"))
    layers = [r for r in _list(q.get("layers")) or _list(q.get("most_sensitive_layers")) if isinstance(r, dict)]
    rows = [{"node": _text(r.get("node"), 120), "module": _text(r.get("module"), 120) or None,
             "weight_db": _num(r.get("weight_sqnr_db")), "output_db": _num(r.get("output_sqnr_db")),
             "injected_db": _num(r.get("injected_db")), "bound": _text(r.get("bound"), 20) or None,
             "techniques": {_text(t, 40): _num(v) for t, v in list(_dict(r.get("by_technique")).items())[:8]}}
            for r in layers]
    measured = [_text(t, 40) for t in _list(_dict(q.get("techniques")).get("measured"))[:8]]
    measured = [t for t in measured if any(x["techniques"].get(t) is not None for x in rows)]
    by_metric = {}
    for key, record_key, label in LAYER_METRICS:
        kept = sorted((x for x in rows if x[key] is not None), key=lambda x: x[key])
        if kept:
            by_metric[key] = {"label": label, "rows": kept, "bound": any(x["bound"] for x in kept),
                              **_reference(q, record_key, any(x["output_db"] is not None for x in rows))}
    if not by_metric:
        return None
    key = "output_db" if "output_db" in by_metric else "weight_db"
    for x in rows:
        x["db"] = x[key]
    kept = [x for x in rows if x["db"] is not None]
    with_plain = [x for x in kept if x["techniques"].get("plain") is not None]
    named = _dict(q.get("layer_metric"))
    return {"metric": key, "label": by_metric[key]["label"], "rows": kept, "complete": bool(_list(q.get("layers"))),
            "by_metric": by_metric,
            "unattributed": [_text(n, 120) for n in _list(named.get("unattributed"))[:20]],
            # per layer, its output SQNR after each technique (the layers plain int8 hurt most first)
            "techniques": measured if len(measured) > 1 else [],
            "by_technique": sorted(with_plain, key=lambda x: x["techniques"]["plain"])[:8] if len(measured) > 1 else []}


def _reference(q: dict[str, Any], record_key: str, onnx: bool) -> dict[str, Any]:
    """What a record's per-layer ``record_key`` figures measure against, and whether they compare
    with other artifacts' (``comparable``; ``why`` when not)."""
    if record_key == "output_sqnr_db":
        return {"reference": "the layer's output in the float model, on the profiling inputs", "comparable": True}
    named = _dict(q.get("layer_metric"))
    if named.get("metric") == record_key and named.get("reference"):
        return {"reference": _text(named["reference"], 200), "comparable": True}
    equalised = _dict(q.get("equalization")).get("chosen") == "on"
    base = "the float weights after cross-layer equalisation" if equalised else "the original float weights"
    if onnx:  # the ONNX quantiser compares with its fp32 ONNX model (equalised when it kept equalisation)
        return {"reference": base + " (the fp32 ONNX model's)", "comparable": True}
    if _dict(q.get("rounding")).get("chosen") == "adaround":
        return {"reference": "the weights already rounded to their int8 grid", "comparable": False,
                "why": "recorded before edgeship measured a torch-side int8's layers against the float weights: its "
                       "weights were measured against themselves after learned rounding, so it says nothing of their "
                       "error (deploy again for figures against the original float weights)"}
    return {"reference": base, "comparable": True}


def sensitive_layers(rows: list[dict[str, Any]], per_artifact: int = 3) -> list[dict[str, Any]]:
    """The report's "most sensitive layers", one ranking per metric (weight SQNR, output SQNR),
    never one list of both: per metric, each artifact's ``per_artifact`` worst layers with what the
    figure measures against; the artifacts whose figures of it do not compare, apart (``apart``)."""
    out = []
    for key, _record_key, label in LAYER_METRICS:
        items, apart = [], []
        for r in rows:
            m = _dict(_dict(r.get("layers")).get("by_metric")).get(key)
            if not m:
                continue
            if not m["comparable"]:
                apart.append({"id": r["id"], "why": m.get("why") or "", "reference": m["reference"]})
                continue
            items += [{"id": r["id"], "node": x["node"], "module": x["module"], "db": x[key], "bound": x["bound"],
                       "reference": m["reference"]} for x in m["rows"][:per_artifact]]
        if items or apart:
            out.append({"metric": key, "label": label, "rows": items, "apart": apart})
    return out


def _budget(config: dict[str, Any]) -> dict[str, Any]:
    max_drop = _num(config.get("max_drop"))
    min_cos = _num(config.get("min_cosine"))
    return {"min_top1": 1 - max_drop if max_drop is not None else 0.95, "min_cosine": min_cos if min_cos is not None else 0.99}


def _within(row: dict[str, Any], budget: dict[str, Any]) -> bool | None:
    f = row["fidelity"]
    if f.get("status") in ("unverified", "structural"):
        return None  # no verdict: figures on random inputs only, or no outputs computed
    if not f["passed"]:
        return False
    if f["value"] is None:
        return None  # unknown
    if f["metric"] == "top-1 agreement":
        return f["value"] >= budget["min_top1"] - 1e-9
    return f["value"] >= budget["min_cosine"] - 1e-9


def _pct(x: float) -> str:
    return share_text(x, 1 if x < 0.995 else 2)


def _fid_text(f: dict[str, Any]) -> str:
    if f["value"] is None:
        return "fidelity not measured (structural check only)" if f["how"] == "structural" else "fidelity unknown"
    text = f"{_pct(f['value'])} top-1 agreement" if f["metric"] == "top-1 agreement" else f"cosine {f['value']:.4f}"
    return text + " on random inputs, unverified" if f.get("status") == "unverified" else text


def _counts(row: dict[str, Any], budget: dict[str, Any]) -> bool:
    """Whether an artifact can be recommended or ranked: verified, and not outside the budget."""
    return row["fidelity"].get("status") == "verified" and _within(row, budget) is not False


def _not_verified(mine: list[dict[str, Any]]) -> str:
    """Why the artifacts of ``mine`` that have no verdict are not recommended ("" when all have one)."""
    parts = []
    unverified = [r["id"] for r in mine if r["fidelity"].get("status") == "unverified"]
    if unverified:
        parts.append(f"unverified, judged only on random inputs: {', '.join(unverified)} (give real data with --eval "
                     "data.npz or an image folder; --allow-unverified to ship them anyway)")
    structural = [r["id"] for r in mine if r["fidelity"].get("status") == "structural"]
    if structural:
        parts.append(f"structural check only, outputs not computed here: {', '.join(structural)} (run them on the "
                     "device before shipping)")
    return "; ".join(parts)


def _recommend(rows: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: the fastest artifact inside the fidelity budget, and why."""
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        fp32_size = next((r["size_bytes"] for r in mine if r["precision"] == "fp32" and r["size_bytes"]), None)
        # a reduced precision that is not smaller than fp32 (a tiny model's int8: its quantisation
        # parameters outweigh its weights) buys nothing a device wants
        bigger = [r for r in mine if r["precision"] != "fp32" and fp32_size and r["size_bytes"]
                  and r["size_bytes"] >= fp32_size]
        ok = [r for r in mine if _counts(r, budget) and r not in bigger]
        unknown = _not_verified(mine)
        if bigger:
            unknown = "; ".join(x for x in [unknown, "larger than fp32, as its quantisation parameters outweigh its "
                                            f"weights: {', '.join(r['id'] for r in bigger)}"] if x)
        timed = [r for r in ok if r["bench"] and r["bench"]["p50"]]
        fp32 = next((r for r in mine if r["precision"] == "fp32"), None)
        if timed:
            best = min(timed, key=lambda r: r["bench"]["p50"])
            why = f"fastest inside the fidelity budget: {best['bench']['p50']:.2f} ms p50"
            ref = fp32 if fp32 is not None and fp32 is not best and fp32["bench"] and fp32["bench"]["p50"] else None
            if ref is not None:
                why += (f", {ref['bench']['p50'] / best['bench']['p50']:.1f}× faster than fp32 at "
                        f"{_fid_text(best['fidelity'])} and {best['size_bytes'] / ref['size_bytes']:.0%} of its size"
                        if best["size_bytes"] and ref["size_bytes"] else "")
            else:
                why += f", {_fid_text(best['fidelity'])}"
            others = [r for r in mine if r not in ok and _within(r, budget) is False]
            if others:
                why += "; outside the budget: " + ", ".join(f"{r['id']} ({_fid_text(r['fidelity'])})" for r in others)
        elif ok:
            best = min(ok, key=lambda r: r["size_bytes"] or math.inf)
            reason = next((r["no_bench"] for r in ok if r["no_bench"]), "no latency measured")
            why = f"smallest inside the budget ({_size(best['size_bytes'])}); no latency to rank by: {reason}"
        else:
            why = "no verified artifact inside the fidelity budget"
            out.append({"target": target, "artifact": None, "why": why + (f"; {unknown}" if unknown else "")})
            continue
        if unknown:
            why += f"; not recommended, {unknown}"
        out.append({"target": target, "artifact": best["id"], "precision": best["precision"], "why": why})
    return out


def _size(n: float | None) -> str:
    from ..analysis.report import size_text

    return size_text(n)


def _headline(rows: list[dict[str, Any]], baseline: dict[str, Any] | None, budget: dict[str, Any]) -> str:
    """The one sentence that matters most."""
    timed = [r for r in rows if r["bench"] and r["bench"]["p50"] and _counts(r, budget)]
    if not timed:
        if not any(r["bench"] for r in rows):
            verified = sum(1 for r in rows if r["fidelity"].get("status") == "verified")
            rest = {k: sum(1 for r in rows if r["fidelity"].get("status") == k) for k in ("unverified", "structural")}
            more = "".join(f", {n} {'unverified (random inputs only)' if k == 'unverified' else 'structural only'}"
                           for k, n in rest.items() if n)
            return (f"{verified} artifact(s) verified{more}; no latency was measured (run edgeship deploy --benchmark "
                    "to rank them by speed)")
        return "no verified artifact inside the fidelity budget ran here"
    best = min(timed, key=lambda r: r["bench"]["p50"])
    fp32 = next((r for r in rows if r["target"] == best["target"] and r["precision"] == "fp32"
                 and r["bench"] and r["bench"]["p50"]), None)
    s = f"{best['target']} {best['precision']} is the fastest artifact inside the budget: {best['bench']['p50']:.2f} ms p50"
    if fp32 is not None and fp32 is not best:
        s += (f", {fp32['bench']['p50'] / best['bench']['p50']:.1f}× faster than {best['target']} fp32 "
              f"at {_fid_text(best['fidelity'])}")
        if best["size_bytes"] and fp32["size_bytes"]:
            s += f" and {best['size_bytes'] / fp32['size_bytes']:.0%} of its size"
    else:
        s += f" at {_fid_text(best['fidelity'])}"
    if baseline and baseline["p50"]:
        s += f"; {baseline['p50'] / best['bench']['p50']:.1f}× the PyTorch eager baseline ({baseline['p50']:.2f} ms)"
    return s + "."


def pareto(points: list[tuple[float, float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower latency, smaller size, higher fidelity
    (each point ``(latency, size, fidelity)``); a point equal to another in all three stays."""
    front = []
    for i, (lat, size, fid) in enumerate(points):
        dominated = any(
            o[0] <= lat and o[1] <= size and o[2] >= fid and (o[0] < lat or o[1] < size or o[2] > fid)
            for j, o in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _environment(m: Manifest, bench: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    env = _dict(m.doc.get("environment"))
    machine = _dict(bench.get("machine"))
    settings = _dict(bench.get("settings"))
    load = _dict(machine.get("load_average"))
    cpus = _num(env.get("cpu_count")) or _num(machine.get("cpu_count"))
    versions = {_text(k, 60): _text(v, 60) for k, v in _dict(env.get("tool_versions")).items()}
    for r in rows:
        if r["bench"]:
            versions.update({k: v for k, v in r["bench"]["runtime"].items() if v not in ("", "?")})
    start = [x for x in _list(load.get("start")) if _num(x) is not None]
    end = [x for x in _list(load.get("end")) if _num(x) is not None]
    warnings = []
    # did the timed calls get their CPU? one thread that waits shows as CPU time below wall time
    shares = sorted(r["bench"]["cpu_share"] for r in rows if r["bench"] and r["bench"].get("cpu_share") is not None)
    cpu_share = shares[len(shares) // 2] if shares else None
    if cpu_share is not None and cpu_share < 0.85:
        warnings.append(f"the timed calls waited for a CPU: CPU time was {cpu_share:.0%} of wall time (median over the "
                        "1-thread artifacts); compare ratios, not absolute milliseconds, or re-run on a quiet machine")
    noisy = [r["id"] for r in rows if r["bench"] and r["bench"]["p50"] and r["bench"]["p99"]
             and r["bench"]["p99"] > 3 * r["bench"]["p50"]]
    if noisy:
        warnings.append(f"p99 is more than 3× p50 for {', '.join(noisy)}: a long tail (other load, or the runtime "
                        "itself); compare p50s, or re-run on a quiet machine")
    peaks = {}
    for k, p in _dict(machine.get("peaks")).items():
        p = _dict(p)
        if _num(p.get("fp32_gops")) is not None:
            peaks[_text(k, 8)] = {"fp32_gops": _num(p.get("fp32_gops")), "int8_gops": _num(p.get("int8_gops"))}
    return {
        "python": _text(env.get("python"), 40), "platform": _text(env.get("platform"), 120),
        "machine": _text(env.get("machine"), 40), "cpu": _text(machine.get("cpu"), 120),
        "cpu_count": int(cpus) if cpus else None,
        "threads": [t for t in _list(settings.get("threads")) if isinstance(t, int)],
        "cpus": _text(settings.get("cpus"), 60) if settings.get("cpus") is not None else
        ", ".join(sorted({",".join(map(str, r["bench"]["cpus"])) for r in rows if r["bench"] and r["bench"]["cpus"]})) or None,
        "runs": _num(settings.get("runs")), "rounds": _num(settings.get("rounds")),
        "warmup": _num(settings.get("warmup")),
        "load_start": start[:3], "load_end": end[:3], "peaks": peaks, "cpu_share": cpu_share,
        "versions": dict(sorted(versions.items())), "warnings": warnings,
        "bench_notes": [_text(n, 300) for n in _list(bench.get("notes"))[:10]],
    }


def _analysis(m: Manifest) -> dict[str, Any] | None:
    a = _dict(m.stages.get("analysis"))
    if not a:
        return None
    if a.get("error"):
        return {"error": _text(a["error"])}
    totals = _dict(a.get("totals"))
    layers = []
    for r in _list(a.get("layers")):
        if isinstance(r, dict) and _num(r.get("index")) is not None:
            layers.append({"index": int(r["index"]), "name": _text(r.get("name"), 120),
                           "module": _text(r.get("module"), 120) or None, "kind": _text(r.get("kind"), 30),
                           "macs": _num(r.get("macs")) or 0.0, "params": _num(r.get("params")) or 0.0})
    adv = _dict(a.get("advice"))
    sep = [s for s in _list(adv.get("separable")) if isinstance(s, dict)]
    roof = _dict(a.get("roofline"))
    return {
        "error": None, "of": _text(a.get("of"), 80),
        "macs": _num(totals.get("macs")), "params": _num(totals.get("params")), "layers_count": _num(totals.get("layers")),
        "peak_activation_bytes": _num(totals.get("peak_activation_bytes")),
        "peak_activation_at": _text(_dict(totals.get("peak_activation_at")).get("module")
                                    or _dict(totals.get("peak_activation_at")).get("layer"), 120),
        "weight_bytes": {k: _num(_dict(totals.get("weight_bytes")).get(k)) for k in ("fp32", "fp16", "int8", "as_stored")},
        "macs_by_kind": {_text(k, 30): _num(v) for k, v in _dict(a.get("macs_by_kind")).items() if _num(v)},
        "top_layers": [{"index": r.get("index"), "name": _text(r.get("module") or r.get("name"), 120),
                        "kind": _text(r.get("kind"), 30), "macs": _num(r.get("macs")), "share": _num(r.get("macs_share"))}
                       for r in _list(a.get("top_layers"))[:10] if isinstance(r, dict)],
        "separable": [{"name": _text(s.get("module") or s.get("name"), 120), "macs": _num(s.get("macs")),
                       "saving": _num(s.get("saving_macs")), "share": _num(s.get("saving_share_of_model")),
                       "ratio": _num(s.get("ratio"))} for s in sep],
        "separable_count": _num(adv.get("separable_count")) or len(sep),
        "patterns": _patterns(adv),
        "roofline": {"profile": _text(_dict(roof.get("profile")).get("name") or roof.get("profile"), 80),
                     "total_ms": _num(roof.get("total_ms")), "int8_total_ms": _num(roof.get("int8_total_ms"))}
        if roof else None,
        "layers": layers,
        "notes": [_text(n, 300) for n in _list(a.get("notes"))[:8]],
    }


def _patterns(adv: dict[str, Any]) -> list[dict[str, Any]]:
    """The lighter-layer advice, one entry per suggestion (the layers it applies to listed once)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for p in _list(adv.get("patterns")):
        if isinstance(p, dict):
            where = _text(p.get("module") or p.get("layer") or p.get("where"), 120)
            text = _text(p.get("suggestion"), 400)
            grouped.setdefault((_text(p.get("pattern"), 40), text), []).append(where)
    return [{"pattern": k[0], "suggestion": k[1], "where": [w for w in v if w]} for k, v in grouped.items()]


def _bundle(m: Manifest) -> dict[str, Any] | None:
    b = _dict(m.stages.get("bundle"))
    if not b:
        return None
    return {"version": _text(b.get("version"), 40), "release": b.get("release") if isinstance(b.get("release"), int) else None,
            "tarball": _text(b.get("tarball"), 200), "public_key": _text(b.get("public_key"), 200),
            "fallback_order": [_text(x, 80) for x in _list(b.get("fallback_order"))],
            "contents": {_text(k, 120): v for k, v in _dict(_dict(b.get("contents")).get("parts")).items() if _num(v) is not None},
            "files": _num(_dict(b.get("contents")).get("files")), "bytes": _num(_dict(b.get("contents")).get("bytes")),
            "tarball_bytes": _num(_dict(b.get("contents")).get("tarball_bytes"))}


def _predictions(m: Manifest) -> dict[str, Any] | None:
    """The sample photos' top-1 as each model saw it: one row per model (the source first), one
    column per photo."""
    p = _dict(m.stages.get("predictions"))
    models = [_text(c, 80) for c in _list(p.get("artifacts"))]
    photos = {k: _list(v) for k, v in list(_dict(p.get("photos")).items())[:12]}
    if not models or not photos:
        return None
    rows = []
    for i, name in enumerate(models):
        cells = []
        for preds in photos.values():
            top = next((x for x in _list(preds[i] if i < len(preds) else None) if isinstance(x, dict)), None)
            cells.append(None if top is None else {"label": _text(top.get("label"), 80), "confidence": _num(top.get("confidence"))})
        rows.append({"model": name, "cells": cells})
    return {"photos": [_text(k, 60) for k in photos], "rows": rows}


def _compression(m: Manifest) -> dict[str, Any] | None:
    """How ``edgeship compress`` made this model (stages.compression), when it did."""
    c = _dict(m.stages.get("compression"))
    if not c:
        return None
    fid, before = _dict(c.get("fidelity")), _dict(c.get("before_fine_tuning"))
    key = "accuracy" if _num(fid.get("accuracy")) is not None else "top1_agreement" \
        if _num(fid.get("top1_agreement")) is not None else "cosine"
    rows = []
    for t, v in list(_dict(c.get("latency")).items())[:8]:
        v = _dict(v)
        rows.append({"runtime": _text(t, 40), "original": _pos(v.get("original_p50_ms")),
                     "pruned": _pos(v.get("pruned_p50_ms")), "speedup": _pos(v.get("speedup"))})
    macs, params = _dict(c.get("macs")), _dict(c.get("params"))
    return {"from": _text(c.get("from"), 200), "method": _text(c.get("method"), 20), "ratio": _num(c.get("ratio")),
            "macs_before": _num(macs.get("before")), "macs_after": _num(macs.get("after")),
            "macs_removed": _num(macs.get("removed")), "params_before": _num(params.get("before")),
            "params_after": _num(params.get("after")),
            "metric": {"accuracy": "accuracy", "top1_agreement": "top-1 agreement with the original"}.get(key, "cosine"),
            "value": _num(fid.get(key)), "original": _num(fid.get("accuracy_fp32")) if key == "accuracy" else None,
            "before_tuning": _num(before.get(key)), "data": _text(fid.get("data"), 200),
            "note": _text(fid.get("note"), 300), "latency": rows}


def _cloud(m: Manifest) -> dict[str, Any] | None:
    """``edgeship compare-cloud``'s figures, if it ran on this folder (every value checked: the
    manifest is a file like any other)."""
    c = _dict(m.stages.get("compare_cloud"))
    if not c or (isinstance(c.get("artifact_id"), str)
                 and not is_current({"id": c["artifact_id"], "digest": c.get("digest")}, record_digests(m.doc))):
        return None  # measured on bytes the folder no longer holds

    def side(name: str, r: Any) -> dict[str, Any]:
        r = _dict(r)
        return {"name": name, "p50_ms": _num(r.get("p50_ms")), "p99_ms": _num(r.get("p99_ms")),
                "bytes_sent": _num(r.get("bytes_sent")), "bytes_received": _num(r.get("bytes_received")),
                "error_rate": _num(r.get("error_rate")), "error": _text(r.get("error"), 200) if r.get("error") else None}

    sides = [side(f"edge: {_text(c.get('artifact'), 80)}", c.get("edge"))]
    fast = _dict(c.get("edge_fastest"))
    if fast:
        sides.append(side(f"edge: {_text(fast.get('artifact'), 80)} (the fastest)", fast))
    sides += [side(f"cloud, {_text(n, 20)}", r) for n, r in _dict(c.get("cloud")).items()]
    sat, cost, img = _dict(c.get("saturation")), _dict(c.get("cost")), _dict(c.get("image"))
    nets = [{"name": _text(n, 20), "rtt_ms": _num(_dict(v).get("rtt_ms")), "jitter_ms": _num(_dict(v).get("jitter_ms")),
             "down_mbit": _num(_dict(v).get("down_mbit")), "up_mbit": _num(_dict(v).get("up_mbit")),
             "source": _text(_dict(v).get("source"), 200)} for n, v in _dict(c.get("networks")).items() if v]
    return {"sides": sides, "networks": nets, "emulation": _text(c.get("emulation"), 40),
            "emulation_note": _text(c.get("emulation_note"), 400),
            "image": {"what": _text(img.get("what"), 200), "bytes": _num(img.get("bytes"))},
            "saturation": {"clients": _num(sat.get("clients")), "throughput": _num(sat.get("throughput_per_s")),
                           "p99_ms": _num(sat.get("p99_ms"))},
            "cost": {"price_per_hour": _num(cost.get("price_per_hour")), "per_million": _num(cost.get("per_million"))}
            if cost else None,
            "requests": _num(c.get("requests"))}


def page_model(m: Manifest) -> dict[str, Any]:
    """Everything the report shows about one output folder."""
    bench_doc = _dict(m.stages.get("benchmark"))
    bench, baseline, missing = _bench_rows(bench_doc, record_digests(m.doc), _list(m.stages.get("stale")))
    rows = _artifact_rows(m, bench, missing, bool(bench_doc))
    budget = _budget(m.config)
    for r in rows:
        r["within_budget"] = _within(r, budget)
        if baseline and baseline["p50"] and r["bench"] and r["bench"]["p50"] and r["bench"]["speedup"] is None:
            r["bench"]["speedup"] = baseline["p50"] / r["bench"]["p50"]
    # the Pareto front over what was measured: latency, size, fidelity
    pts = [(r["bench"]["p50"], r["size_bytes"] or math.inf, r["fidelity"]["value"])
           for r in rows if r["bench"] and r["bench"]["p50"] and r["fidelity"]["value"] is not None]
    ids = [r["id"] for r in rows if r["bench"] and r["bench"]["p50"] and r["fidelity"]["value"] is not None]
    front = {ids[i] for i in pareto(pts)}
    for r in rows:
        r["pareto"] = r["id"] in front
    convert = _dict(m.stages.get("convert"))
    src = m.source
    return {
        "title": _text(src.get("name") or "model", 80),
        "source": {"name": _text(src.get("name"), 80), "kind": _text(src.get("kind"), 20),
                   "origin": _text(src.get("origin"), 200), "digest": _text(src.get("digest"), 64)},
        "folder": _text(m.folder.resolve(), 300),
        "created": _text(m.doc.get("created"), 40), "edgeship_version": _text(m.doc.get("edgeship_version"), 20),
        "budget": budget, "artifacts": rows, "baseline": baseline, "benchmarked": bool(bench_doc),
        "sensitive_layers": sensitive_layers([r for r in rows if r["layers"] and r["precision"] in ("int8", "uint8")]),
        "recommendations": _recommend(rows, budget), "headline": _headline(rows, baseline, budget),
        "failed": [{"what": f"{_text(f.get('target'), 40)} {_text(f.get('precision'), 20)}", "message": _text(f.get("message"), 400)}
                   for f in _list(convert.get("failed")) if isinstance(f, dict)],
        "skipped": [{"what": f"{_text(s.get('target'), 40)} {_text(s.get('precision'), 20)}", "reason": _text(s.get("reason"), 300)}
                    for s in _list(convert.get("skipped")) if isinstance(s, dict)],
        "analysis": _analysis(m), "environment": _environment(m, bench_doc, rows), "bundle": _bundle(m),
        "predictions": _predictions(m), "compression": _compression(m), "cloud": _cloud(m),
        "timings": {_text(k, 60): v for k, v in _dict(m.doc.get("timings_s")).items() if _num(v) is not None},
    }


def _change(old: float | None, new: float | None, key: str, higher_is_better: bool = False) -> dict[str, Any]:
    if old is None or new is None:
        return {"old": old, "new": new, "delta": None, "rel": None, "regressed": False, "improved": False}
    delta = new - old
    rel = delta / old if old else None
    limit = REGRESSION_RULES[key][0]
    if key == "fidelity":
        worse, better = -delta > limit, delta > limit
    else:
        worse = rel is not None and (rel > limit if not higher_is_better else -rel > limit)
        better = rel is not None and (-rel > limit if not higher_is_better else rel > limit)
    return {"old": old, "new": new, "delta": delta, "rel": rel, "regressed": worse, "improved": better}


PERF = {"p50_ms": "p50", "p99_ms": "p99", "cold_start_s": "cold_start_s", "peak_rss_bytes": "peak_rss_bytes"}
LABELS = {"size_bytes": "size", "fidelity": "fidelity", "p50_ms": "p50", "p99_ms": "p99", "cold_start_s": "cold start",
          "peak_rss_bytes": "peak memory"}


def machine_drift(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """How much the machine itself changed between two runs, per figure: the median new/old ratio
    over what did not change (``pairs`` of old/new benchmark figures of the same bytes, and of
    the same PyTorch baseline). Two runs on one machine differ by more than a regression
    threshold all the time (other load, thermal state, page cache); only what is left after this
    drift is the artifacts'."""
    out = {}
    for key, field in PERF.items():
        ratios = sorted(n[field] / o[field] for o, n in pairs if o.get(field) and n.get(field))
        if ratios:
            mid = len(ratios) // 2
            med = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
            out[key] = {"ratio": med, "from": len(ratios)}
    return out


def _perf_change(ob: dict[str, Any], nb: dict[str, Any], key: str, drift: dict[str, dict[str, Any]],
                 unchanged: bool) -> dict[str, Any]:
    """A latency, cold-start or memory change, marked only when it is the artifact's: the artifact's
    bytes changed, and its change beyond the machine's drift is over the threshold and (for p50)
    outside the run-to-run noise (the interquartile ranges, the old one scaled by the drift, do
    not overlap)."""
    field = PERF[key]
    ch = _change(ob.get(field), nb.get(field), key)
    if ch["delta"] is None:
        return ch
    if unchanged:
        return {**ch, "regressed": False, "improved": False}
    d = drift.get(key, {}).get("ratio", 1.0)
    ch["rel_after_drift"] = ch["new"] / (ch["old"] * d) - 1
    limit = REGRESSION_RULES[key][0]
    ch["regressed"], ch["improved"] = ch["rel_after_drift"] > limit, -ch["rel_after_drift"] > limit
    if abs(d - 1) > 0.01 and (ch["rel"] > limit) != ch["regressed"]:
        ch["note"] = f"{ch['rel']:+.0%} as measured, {ch['rel_after_drift']:+.0%} after the machine's own {d - 1:+.0%}"
    oq, nq = ob.get("quantiles"), nb.get("quantiles")
    if key == "p50_ms" and (ch["regressed"] or ch["improved"]) and oq and nq:
        lo, hi = oq[25] * d, oq[75] * d
        if not (nq[25] > hi or lo > nq[75]):
            ch.update(regressed=False, improved=False,
                      note="within run-to-run noise: the two runs' interquartile ranges overlap")
    return ch


def compare_models(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from the ``old`` page model to the ``new`` one: per artifact (matched by id) the
    change in size, fidelity, p50/p99, cold start and memory with regressions marked; artifacts
    added and removed; the layers whose quantisation error grew most.

    An artifact whose bytes did not change (same digest) cannot have regressed: its figures moved
    with the machine, and they measure that drift (:func:`machine_drift`), which is taken out of
    the changes of the artifacts that did change before they are judged."""
    olds = {r["id"]: r for r in old["artifacts"]}
    same = {r["id"] for r in new["artifacts"] if r["id"] in olds and r["digest"] and r["digest"] == olds[r["id"]]["digest"]}
    pairs = [(olds[i]["bench"], r["bench"]) for r in new["artifacts"] if (i := r["id"]) in same and olds[i]["bench"] and r["bench"]]
    if old["baseline"] and new["baseline"] and old["source"]["digest"] == new["source"]["digest"]:
        pairs.append((old["baseline"], new["baseline"]))
    drift = machine_drift(pairs)
    rows = []
    for r in new["artifacts"]:
        o = olds.get(r["id"])
        if o is None:
            continue
        ob, nb = o["bench"] or {}, r["bench"] or {}
        unchanged = r["id"] in same
        ch = {
            "size_bytes": _change(o["size_bytes"], r["size_bytes"], "size_bytes"),
            "fidelity": _change(o["fidelity"]["value"], r["fidelity"]["value"], "fidelity", True),
            **{k: _perf_change(ob, nb, k, drift, unchanged) for k in PERF},
        }
        rows.append({"id": r["id"], "target": r["target"], "precision": r["precision"], "changes": ch,
                     "unchanged": unchanged, "fidelity_metric": r["fidelity"]["metric"] or o["fidelity"]["metric"],
                     "regressions": [REGRESSION_RULES[k][1] for k, c in ch.items() if c["regressed"]],
                     "notes": [f"{LABELS[k]}: {c['note']}" for k, c in ch.items() if c.get("note")],
                     "improvements": [k for k, c in ch.items() if c["improved"]]})
    grew = []
    for r in new["artifacts"]:
        o = olds.get(r["id"])
        if o is None or not r["layers"] or not o["layers"]:
            continue
        for key, m in r["layers"]["by_metric"].items():  # one metric against itself, measured the same way
            om = o["layers"]["by_metric"].get(key)
            if om is None or not (m["comparable"] and om["comparable"]) or om["reference"] != m["reference"]:
                continue
            before = {x["node"]: x[key] for x in om["rows"]}
            for x in m["rows"]:
                if x["node"] in before and x[key] is not None and before[x["node"]] is not None:
                    grew.append({"artifact": r["id"], "node": x["node"], "module": x["module"],
                                 "metric": m["label"], "old_db": before[x["node"]], "new_db": x[key],
                                 "worse_db": before[x["node"]] - x[key]})
    grew.sort(key=lambda g: (g["metric"], -g["worse_db"]))  # each metric's layers together, never one ranking of both
    new_ids = {r["id"] for r in new["artifacts"]}
    return {
        "old": {"folder": old["folder"], "created": old["created"], "title": old["title"]},
        "rows": rows,
        "added": [r["id"] for r in new["artifacts"] if r["id"] not in olds],
        "removed": [i for i in olds if i not in new_ids],
        "unchanged": sorted(same),
        "drift": drift,
        "drift_text": ", ".join(f"{LABELS[k]} {v['ratio'] - 1:+.0%}" for k, v in drift.items()),
        "drift_from": max((v["from"] for v in drift.values()), default=0),
        "layers_worse": [g for g in grew if g["worse_db"] > 0][:10],
        "regressed": sum(1 for r in rows if r["regressions"]),
        "rules": [text for _, text in REGRESSION_RULES.values()],
        "same_model": old["source"]["digest"] == new["source"]["digest"],
    }


def folder_of(path: Path) -> Path:
    """The output folder ``path`` names (a manifest.json file is taken as its folder)."""
    p = Path(path)
    return p.parent if p.name == "manifest.json" else p
