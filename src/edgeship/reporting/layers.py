"""The per-layer figures of the report: an int8 artifact's quantisation error per layer, what each
metric measures against, and the most sensitive layers (one ranking per metric, never one of both)."""

from __future__ import annotations

from typing import Any

from ..manifest import as_dict, as_list, as_num, as_text

__all__ = ["LAYER_METRICS", "layer_errors", "sensitive_layers"]

#: the per-layer figures a backend may measure, each its own metric (never drawn or ranked as one):
#: key in the report's rows, key in the record, label
LAYER_METRICS = (("weight_db", "weight_sqnr_db", "weight SQNR"), ("output_db", "output_sqnr_db", "output SQNR"))


def layer_errors(rec: dict[str, Any]) -> dict[str, Any] | None:
    """An int8 artifact's per-layer quantisation error: rows {node, module, weight_db, output_db,
    injected_db} (each dB figure the backend measured, else None) and, per metric the rows carry
    (``by_metric``: weight SQNR, output SQNR), what it measures against (``reference``), the rows
    worst first, whether some figures are lower bounds, and whether it can be set beside other
    artifacts' figures of that metric (``comparable``: a torch-side int8 recorded before edgeship
    measured it against the float weights gave its rounded weights' SQNR against themselves, ~150
    dB). ``metric``/``label``/``rows``: the figure the record ranks its layers by (output SQNR where
    measured, else weight SQNR) for the technique table; nothing ranks one metric with another."""
    q = as_dict(as_dict(rec.get("details")).get("quantization"))
    layers = [r for r in as_list(q.get("layers")) or as_list(q.get("most_sensitive_layers")) if isinstance(r, dict)]
    rows = [{"node": as_text(r.get("node"), 120), "module": as_text(r.get("module"), 120) or None,
             "weight_db": as_num(r.get("weight_sqnr_db")), "output_db": as_num(r.get("output_sqnr_db")),
             "injected_db": as_num(r.get("injected_db")), "bound": as_text(r.get("bound"), 20) or None,
             "techniques": {as_text(t, 40): as_num(v) for t, v in list(as_dict(r.get("by_technique")).items())[:8]}}
            for r in layers]
    measured = [as_text(t, 40) for t in as_list(as_dict(q.get("techniques")).get("measured"))[:8]]
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
    named = as_dict(q.get("layer_metric"))
    return {"metric": key, "label": by_metric[key]["label"], "rows": kept, "complete": bool(as_list(q.get("layers"))),
            "by_metric": by_metric,
            "unattributed": [as_text(n, 120) for n in as_list(named.get("unattributed"))[:20]],
            # per layer, its output SQNR after each technique (the layers plain int8 hurt most first)
            "techniques": measured if len(measured) > 1 else [],
            "by_technique": sorted(with_plain, key=lambda x: x["techniques"]["plain"])[:8] if len(measured) > 1 else []}


def _reference(q: dict[str, Any], record_key: str, onnx: bool) -> dict[str, Any]:
    """What a record's per-layer ``record_key`` figures measure against, and whether they compare
    with other artifacts' (``comparable``; ``why`` when not)."""
    if record_key == "output_sqnr_db":
        return {"reference": "the layer's output in the float model, on the profiling inputs", "comparable": True}
    named = as_dict(q.get("layer_metric"))
    if named.get("metric") == record_key and named.get("reference"):
        return {"reference": as_text(named["reference"], 200), "comparable": True}
    equalised = as_dict(q.get("equalization")).get("chosen") == "on"
    base = "the float weights after cross-layer equalisation" if equalised else "the original float weights"
    if onnx:  # the ONNX quantiser compares with its fp32 ONNX model (equalised when it kept equalisation)
        return {"reference": base + " (the fp32 ONNX model's)", "comparable": True}
    if as_dict(q.get("rounding")).get("chosen") == "adaround":
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
            m = as_dict(as_dict(r.get("layers")).get("by_metric")).get(key)
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
