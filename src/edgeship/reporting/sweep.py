"""The page of ``edgeship sweep``: every (model, recipe, target, precision, threads) in one place.

Figures are grouped by model and by the CPU model they were measured on: a model's artifacts are
benchmarked side by side on one machine, and figures from different CPUs are shown apart, never
ranked together. The fastest artifact within the fidelity budget is marked per model, CPU and
thread count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util import atomic_write_text

__all__ = ["sweep_page", "write_sweep_report"]


_SHOWN = ("model", "recipe", "target", "precision", "threads", "size_bytes", "fidelity", "fidelity_metric", "p50_ms",
          "p99_ms", "vs_eager", "eager_p50_ms", "cold_s", "convert_s", "host", "cpu")


def _fid_ok(r: dict[str, Any], budget: dict[str, Any]) -> bool:
    """Within the sweep's budget: top-1 agreement >= 1 - max_drop, or cosine >= min_cosine."""
    v = r.get("fidelity")
    if v is None:
        return True  # fp32 verified against its tolerances, or structural: the verification passed
    if r.get("fidelity_metric") == "top-1 agreement":
        return v >= 1 - budget["max_drop"]
    return v >= budget["min_cosine"]


def sweep_page(doc: dict[str, Any]) -> dict[str, Any]:
    """The page model of a sweep document (JSON-ready)."""
    cfg = doc.get("config") or {}
    opts = cfg.get("options") or {}
    budget = {"max_drop": float(opts.get("max_drop", 0.05)), "min_cosine": float(opts.get("min_cosine", 0.99))}
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    problems = []
    for r in doc["rows"]:
        if r["status"] != "ok":
            why = r.get("reason") if r["status"] == "skipped" else r.get("message")
            same = next((x for x in problems if (x["model"], x["recipe"], x["target"], x["status"], x["why"])
                         == (r["model"], r["recipe"], r["target"], r["status"], why)), None)
            if same is not None:  # one line per task and reason, its precisions listed
                same["precision"] += f", {r['precision']}"
                continue
            problems.append({**{k: r.get(k) for k in ("model", "recipe", "target", "precision", "status", "hint")},
                             "why": why})
            continue
        row = {k: r.get(k) for k in _SHOWN} | {"best": False}
        if r.get("bench_error"):
            row["bench_error"] = r["bench_error"]
        groups.setdefault((r["model"], r.get("cpu")), []).append(row)
    sections = []
    for (model, cpu), rows in groups.items():
        for th in sorted({r.get("threads") for r in rows}, key=lambda x: x or 0):
            timed = [r for r in rows if r.get("threads") == th and r.get("p50_ms") and _fid_ok(r, budget)]
            if timed:
                min(timed, key=lambda r: r["p50_ms"])["best"] = True
        hosts = sorted({r["host"] for r in rows if r.get("host")})
        sections.append({"model": model, "cpu": cpu, "hosts": hosts, "rows": rows,
                         "eager": sorted({(r["threads"], r["eager_p50_ms"]) for r in rows if r.get("eager_p50_ms")})})
    s = doc.get("summary") or {}
    return {"title": f"sweep of {len({r['model'] for r in doc['rows']})} model(s)", "sections": sections,
            "problems": problems, "machines": doc.get("machines") or [], "cluster": doc.get("cluster") or [],
            "summary": s, "seconds": doc.get("seconds"), "address": doc.get("address"), "budget": budget,
            "config": cfg}


def write_sweep_report(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Render the page of ``doc`` to ``folder/report.html`` (atomically)."""
    from .._version import __version__
    from . import REPORT_HTML, environment

    html = environment().get_template("sweep.html.j2").render(p=sweep_page(doc), version=__version__)
    dest = Path(folder) / REPORT_HTML
    atomic_write_text(dest, html)
    return dest
