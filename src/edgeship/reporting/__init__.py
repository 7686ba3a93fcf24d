"""The HTML report of a deploy, and the comparison of two.

``write_report(folder)`` renders ``folder/report.html`` from the folder's ``manifest.json`` alone
(the artifacts' records, the benchmark, the analysis and the bundle stages in it), so a report can
be rebuilt at any time from any output folder, including one written before a stage existed:
where a figure is missing the page says why in place. ``write_report(new, old=old_folder)`` is the
same page with a "what changed" section: per artifact the change in size, fidelity, p50/p99, cold
start and memory, regressions marked (:data:`edgeship.reporting.compare.REGRESSION_RULES`), and the
layers whose quantisation error grew most.

The page is one self-contained HTML file: inline CSS, plots as inline SVG (see
:mod:`edgeship.reporting.charts` for why), no script, no external request (its Content-Security-Policy
forbids both). Everything read from the manifest is data: HTML-escaped and stripped of control
characters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._util import atomic_write_text, safe_name
from ..errors import InputError, UsageError
from ..manifest import Manifest, load_manifest
from . import charts
from .compare import compare_models
from .model import folder_of, page_model
from .templating import REPORT_HTML, environment

__all__ = ["write_report", "render", "build", "default_name", "REPORT_HTML"]


def _load(folder: str | Path) -> Manifest:
    f = folder_of(Path(folder))
    m = load_manifest(f)
    if m is None:
        raise InputError(f"{f} has no manifest.json", hint="give an output folder written by edgeship deploy")
    return m


def build(folder: str | Path, old: str | Path | None = None) -> dict[str, Any]:
    """The page model of ``folder`` (and its comparison with ``old``), JSON-ready."""
    new = page_model(_load(folder))
    doc: dict[str, Any] = {"report": new}
    if old is not None:
        doc["comparison"] = compare_models(page_model(_load(old)), new)
    return doc


def render(doc: dict[str, Any]) -> str:
    """The HTML page of a :func:`build` document."""
    m = doc["report"]
    cmp = doc.get("comparison")
    targets = [r["target"] for r in m["artifacts"]]
    int8_rows = [r for r in m["artifacts"] if r["layers"] and r["precision"] in ("int8", "uint8")]
    layers = (m["analysis"] or {}).get("layers") or []
    layers_svg, layer_notes = charts.layers_chart(layers, int8_rows, targets)
    rendered = {
        "pareto": charts.pareto_chart(m["artifacts"], m["budget"]),
        "latency": charts.latency_chart(m["artifacts"], m["baseline"]),
        "roofline": charts.roofline_chart(m["artifacts"], targets),
        "layers": layers_svg,
        "change": charts.change_chart(cmp["rows"]) if cmp else None,
    }
    no_bench = "No latency was measured in this run: edgeship deploy --benchmark (or edgeship benchmark) measures it."
    gaps = {
        "pareto": no_bench if not m["benchmarked"] else
        "No artifact has both a measured latency and a numeric fidelity (structural checks only, or none ran here).",
        "latency": no_bench if not m["benchmarked"] else "No artifact ran in the benchmark here.",
        "roofline": no_bench if not m["benchmarked"] else
        "No roofline floor: the MAC count or this machine's peak was not available (see the benchmark notes).",
        "layers": "No per-layer figures: this manifest has no analysis stage (deploy again, or edgeship analyze)."
        if not layers else "No layer carries MACs in the analysis.",
    }
    env = environment()
    best_ids = {r["artifact"] for r in m["recommendations"] if r["artifact"]}
    return env.get_template("report.html.j2").render(m=m, cmp=cmp, charts=rendered, gaps=gaps, int8_rows=int8_rows,
                                                     layer_notes=layer_notes, best_ids=best_ids)


def default_name(old: str | Path | None = None) -> str:
    """``report.html``, or ``report-vs-<old folder's name>.html`` for a comparison."""
    if old is None:
        return REPORT_HTML
    return f"report-vs-{safe_name(folder_of(Path(old)).resolve().name or 'old', limit=40)}.html"


def write_report(folder: str | Path, old: str | Path | None = None, dest: str | Path | None = None,
                 doc: dict[str, Any] | None = None) -> Path:
    """Render the report of ``folder`` (compared with ``old`` when given; ``doc`` when :func:`build`
    made it already) to ``dest`` (default ``folder/`` :func:`default_name`), atomically; nothing is
    written when a manifest is unreadable."""
    doc = doc if doc is not None else build(folder, old)
    dest = Path(dest) if dest is not None else folder_of(Path(folder)) / default_name(old)
    if dest.is_dir():
        raise UsageError(f"{dest} is a folder", hint="give a file name ending in .html")
    atomic_write_text(dest, render(doc))
    return dest
