"""The comparison of two page models: per artifact the change in size, fidelity, p50/p99, cold start
and memory, regressions marked once the machine's own drift is taken out, and the layers whose
quantisation error grew most."""

from __future__ import annotations

from typing import Any

__all__ = ["compare_models", "machine_drift", "REGRESSION_RULES"]

# When the new release is worse than the old by more than this, the comparison marks it.
REGRESSION_RULES: dict[str, tuple[float, str]] = {
    "size_bytes": (0.01, "size grew by more than 1%"),
    "fidelity": (0.005, "fidelity fell by more than 0.5 points"),
    "p50_ms": (0.05, "p50 latency grew by more than 5%"),
    "p99_ms": (0.10, "p99 latency grew by more than 10%"),
    "cold_start_s": (0.10, "cold start grew by more than 10%"),
    "peak_rss_bytes": (0.05, "peak memory grew by more than 5%"),
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
