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
from .._version import __version__
from .templating import REPORT_HTML, environment
from .verdict import budget_of, within_budget

__all__ = ["sweep_page", "problems", "write_sweep_report"]


_SHOWN = ("model", "recipe", "target", "precision", "threads", "size_bytes", "fidelity", "fidelity_metric", "p50_ms",
          "p99_ms", "vs_eager", "eager_p50_ms", "eager_threads", "vs_eager_from", "vs_eager_flag", "cold_s", "convert_s",
          "host", "cpu", "verification")


def problems(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows not built (failed) or not asked of a target (skipped): one per task and reason, its
    precisions listed."""
    grouped: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "ok":
            continue
        why = r.get("reason") if r["status"] == "skipped" else r.get("message")
        key = (r["model"], r["recipe"], r["target"], r["status"], why)
        if key in grouped:
            grouped[key]["precision"] += f", {r['precision']}"
        else:
            grouped[key] = {**{k: r.get(k) for k in ("model", "recipe", "target", "precision", "status", "hint")},
                            "why": why}
    return list(grouped.values())


def sweep_page(doc: dict[str, Any]) -> dict[str, Any]:
    """The page model of a sweep document (JSON-ready)."""
    cfg = doc.get("config") or {}
    budget = budget_of(cfg.get("options") or {})
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in doc["rows"]:
        if r["status"] != "ok":
            continue
        row = {k: r.get(k) for k in _SHOWN} | {"best": False}
        if r.get("bench_error"):
            row["bench_error"] = r["bench_error"]
        groups.setdefault((r["model"], r.get("cpu")), []).append(row)
    sections = []
    for (model, cpu), rows in groups.items():
        for th in sorted({r.get("threads") for r in rows}, key=lambda x: x or 0):
            timed = [r for r in rows if r.get("threads") == th and r.get("p50_ms")
                     and r.get("verification") in (None, "verified") and within_budget(
                {"fidelity": {"passed": True, "value": r["fidelity"], "metric": r["fidelity_metric"]}}, budget) is not False]
            if timed:
                min(timed, key=lambda r: r["p50_ms"])["best"] = True
        hosts = sorted({r["host"] for r in rows if r.get("host")})
        sections.append({"model": model, "cpu": cpu, "hosts": hosts, "rows": rows,
                         "eager": sorted({(r["threads"], r["eager_p50_ms"]) for r in rows if r.get("eager_p50_ms")})})
    s = doc.get("summary") or {}
    return {"title": f"sweep of {len({r['model'] for r in doc['rows']})} model(s)", "sections": sections,
            "problems": problems(doc["rows"]), "machines": doc.get("machines") or [], "cluster": doc.get("cluster") or [],
            "notes": doc.get("notes") or [],
            "summary": s, "seconds": doc.get("seconds"), "address": doc.get("address"), "budget": budget,
            "config": cfg}


def write_sweep_report(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Render the page of ``doc`` to ``folder/report.html`` (atomically)."""
    html = environment().get_template("sweep.html.j2").render(p=sweep_page(doc), version=__version__)
    dest = Path(folder) / REPORT_HTML
    atomic_write_text(dest, html)
    return dest
