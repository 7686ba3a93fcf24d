"""The report's verdict: the fidelity budget, the recommendation per target, the headline sentence
and the Pareto front."""

from __future__ import annotations

import math
from typing import Any

from .._table import size_text
from .._util import share_text
from ..manifest import as_num

__all__ = ["budget_of", "within_budget", "fid_text", "recommend", "headline", "pareto"]


def budget_of(config: dict[str, Any]) -> dict[str, Any]:
    """The fidelity budget of a run's options: the least top-1 agreement and the least cosine."""
    max_drop = as_num(config.get("max_drop"))
    min_cos = as_num(config.get("min_cosine"))
    return {"min_top1": 1 - max_drop if max_drop is not None else 0.95, "min_cosine": min_cos if min_cos is not None else 0.99}


def within_budget(row: dict[str, Any], budget: dict[str, Any]) -> bool | None:
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


def fid_text(f: dict[str, Any]) -> str:
    if f["value"] is None:
        return "fidelity not measured (structural check only)" if f["how"] == "structural" else "fidelity unknown"
    text = f"{_pct(f['value'])} top-1 agreement" if f["metric"] == "top-1 agreement" else f"cosine {f['value']:.4f}"
    return text + " on random inputs, unverified" if f.get("status") == "unverified" else text


def _counts(row: dict[str, Any], budget: dict[str, Any]) -> bool:
    """Whether an artifact can be recommended or ranked: verified, and not outside the budget."""
    return row["fidelity"].get("status") == "verified" and within_budget(row, budget) is not False


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


def recommend(rows: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
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
                        f"{fid_text(best['fidelity'])} and {best['size_bytes'] / ref['size_bytes']:.0%} of its size"
                        if best["size_bytes"] and ref["size_bytes"] else "")
            else:
                why += f", {fid_text(best['fidelity'])}"
            others = [r for r in mine if r not in ok and within_budget(r, budget) is False]
            if others:
                why += "; outside the budget: " + ", ".join(f"{r['id']} ({fid_text(r['fidelity'])})" for r in others)
        elif ok:
            best = min(ok, key=lambda r: r["size_bytes"] or math.inf)
            reason = next((r["no_bench"] for r in ok if r["no_bench"]), "no latency measured")
            why = f"smallest inside the budget ({size_text(best['size_bytes'])}); no latency to rank by: {reason}"
        else:
            why = "no verified artifact inside the fidelity budget"
            out.append({"target": target, "artifact": None, "why": why + (f"; {unknown}" if unknown else "")})
            continue
        if unknown:
            why += f"; not recommended, {unknown}"
        out.append({"target": target, "artifact": best["id"], "precision": best["precision"], "why": why})
    return out


def headline(rows: list[dict[str, Any]], baseline: dict[str, Any] | None, budget: dict[str, Any]) -> str:
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
              f"at {fid_text(best['fidelity'])}")
        if best["size_bytes"] and fp32["size_bytes"]:
            s += f" and {best['size_bytes'] / fp32['size_bytes']:.0%} of its size"
    else:
        s += f" at {fid_text(best['fidelity'])}"
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
