"""The page of ``edgeship compress``: what pruning (and fine-tuning) gained and lost, per ratio.

The page model is built from the record(s) ``compress.json`` holds (one ratio, or a sweep); the
trade-off plot puts each ratio's accuracy (or fidelity to the original, without labels) against its
measured latency on the first runtime timed (MACs when none was).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util import atomic_write_text
from .._version import __version__
from . import charts
from .templating import REPORT_HTML, environment

__all__ = ["compress_page", "write_compress_report", "REPORT_HTML"]


def _metric(runs: list[dict[str, Any]]) -> str:
    fid = [r.get("fidelity") or {} for r in runs]
    if all(f.get("accuracy") is not None for f in fid):
        return "accuracy"
    if all(f.get("top1_agreement") is not None for f in fid):
        return "top-1 agreement"
    return "cosine"


_KEY = {"accuracy": "accuracy", "top-1 agreement": "top1_agreement", "cosine": "cosine"}


def compress_page(doc: dict[str, Any]) -> dict[str, Any]:
    """The page model of a compress record or sweep (JSON-ready)."""
    runs = doc["runs"] if "runs" in doc else [doc]
    metric = _metric(runs)
    key = _KEY[metric]
    runtimes = [t for t in (runs[0].get("latency") or {})]
    timed = next((t for t in runtimes if all((r.get("latency") or {}).get(t, {}).get("pruned_p50_ms") for r in runs)), None)
    first = runs[0]
    f0 = first.get("fidelity") or {}
    original = {"label": "original", "ratio": 0.0, "macs": first["macs"]["before"], "params": first["params"]["before"],
                "value": f0.get("accuracy_fp32") if metric == "accuracy" else 1.0, "before_tuning": None,
                "latency": {t: {"p50_ms": (first["latency"][t] or {}).get("original_p50_ms"), "speedup": 1.0 if
                                (first["latency"][t] or {}).get("original_p50_ms") else None,
                                "error": (first["latency"][t] or {}).get("error")} for t in runtimes}}
    rows = [original]
    for r in runs:
        ev = r.get("evaluation") or {}
        lat = r.get("latency") or {}
        rows.append({"label": f"{r['ratio']:g}", "ratio": r["ratio"], "macs": r["macs"]["after"],
                     "params": r["params"]["after"], "macs_removed": r["macs"]["removed"],
                     "value": (r.get("fidelity") or {}).get(key),
                     "before_tuning": (ev.get("pruned") or {}).get(key) if "fine_tuned" in ev else None,
                     "latency": {t: {"p50_ms": (lat.get(t) or {}).get("pruned_p50_ms"),
                                     "speedup": (lat.get(t) or {}).get("speedup"),
                                     "error": (lat.get(t) or {}).get("error")} for t in runtimes},
                     "deploy": r.get("deploy"), "note": r.get("note"), "sparsity": r.get("sparsity"),
                     "history": (r.get("fine_tuning") or {}).get("history") or []})
    for row in rows:
        row["p50_ms"] = (row["latency"].get(timed) or {}).get("p50_ms") if timed else None
    src = doc.get("source") or {}
    return {"title": f"{src.get('name', 'model')}: {doc.get('method', first.get('method'))} pruning",
            "source": src, "method": doc.get("method", first.get("method")), "metric": metric, "runtimes": runtimes,
            "timed": timed, "rows": rows, "evaluation": f0.get("data"), "samples": f0.get("samples"),
            "tuning": f0.get("note"), "fine_tuned": any(r.get("fine_tuning") for r in runs)}


def write_compress_report(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Render the page of ``doc`` to ``folder/report.html`` (atomically)."""
    page = compress_page(doc)
    chart = charts.trade_off_chart(page["rows"], page["timed"], page["metric"])
    html = environment().get_template("compress.html.j2").render(p=page, chart=chart, version=__version__)
    dest = Path(folder) / REPORT_HTML
    atomic_write_text(dest, html)
    return dest
