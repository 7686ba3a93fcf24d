"""The page model: everything the HTML report shows, computed from an output folder's manifest.

Pure data (JSON-ready dicts and lists), no HTML: :mod:`edgeship.reporting.charts` draws it and
:mod:`edgeship.reporting` renders the page. Every value read from the manifest is checked for its
type (:func:`edgeship.manifest.as_num` and its siblings: a crafted or old manifest gives a page with
gaps, never a crash), and every gap carries a sentence saying why it is empty. Each part of the page
is built in its own module: the artifacts table (:mod:`.artifacts`), the per-layer figures
(:mod:`.layers`), the recommendations and headline (:mod:`.verdict`), the stage sections
(:mod:`.sections`) and the comparison of two runs (:mod:`.compare`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..manifest import Manifest, as_list, as_num, as_text
from . import sections
from .artifacts import artifact_rows, bench_rows, fidelity_of
from .compare import REGRESSION_RULES, compare_models
from .layers import sensitive_layers
from .verdict import budget_of, headline, pareto, recommend, within_budget

__all__ = ["page_model", "compare_models", "folder_of", "fidelity_of", "pareto", "REGRESSION_RULES"]


def page_model(m: Manifest) -> dict[str, Any]:
    """Everything the report shows about one output folder."""
    figures = m.bench_figures()
    bench, baseline, missing = bench_rows(figures)
    rows = artifact_rows(m, bench, missing, bool(figures.doc))
    budget = budget_of(m.config)
    for r in rows:
        r["within_budget"] = within_budget(r, budget)
        if baseline and baseline["p50"] and r["bench"] and r["bench"]["p50"] and r["bench"]["speedup"] is None:
            r["bench"]["speedup"] = baseline["p50"] / r["bench"]["p50"]
    # the Pareto front over what was measured: latency, size, fidelity
    pts = [(r["bench"]["p50"], r["size_bytes"] or math.inf, r["fidelity"]["value"])
           for r in rows if r["bench"] and r["bench"]["p50"] and r["fidelity"]["value"] is not None]
    ids = [r["id"] for r in rows if r["bench"] and r["bench"]["p50"] and r["fidelity"]["value"] is not None]
    front = {ids[i] for i in pareto(pts)}
    for r in rows:
        r["pareto"] = r["id"] in front
    convert = m.stage("convert")
    src = m.source
    return {
        "title": as_text(src.get("name") or "model", 80),
        "source": {"name": as_text(src.get("name"), 80), "kind": as_text(src.get("kind"), 20),
                   "origin": as_text(src.get("origin"), 200), "digest": as_text(src.get("digest"), 64)},
        "folder": as_text(m.folder.resolve(), 300),
        "created": as_text(m.doc.get("created"), 40), "edgeship_version": as_text(m.doc.get("edgeship_version"), 20),
        "budget": budget, "artifacts": rows, "baseline": baseline, "benchmarked": bool(figures.doc),
        "sensitive_layers": sensitive_layers([r for r in rows if r["layers"] and r["precision"] in ("int8", "uint8")]),
        "recommendations": recommend(rows, budget), "headline": headline(rows, baseline, budget),
        "failed": [{"what": f"{as_text(f.get('target'), 40)} {as_text(f.get('precision'), 20)}", "message": as_text(f.get("message"), 400)}
                   for f in as_list(convert.get("failed")) if isinstance(f, dict)],
        "skipped": [{"what": f"{as_text(s.get('target'), 40)} {as_text(s.get('precision'), 20)}", "reason": as_text(s.get("reason"), 300)}
                    for s in as_list(convert.get("skipped")) if isinstance(s, dict)],
        "analysis": sections.analysis(m), "environment": sections.environment(m, figures.doc, rows),
        "bundle": sections.bundle(m), "predictions": sections.predictions(m), "compression": sections.compression(m),
        "cloud": sections.cloud(m), "task": sections.task(m, rows),
        "timings": {as_text(k, 60): v for k, v in m.timings.items() if as_num(v) is not None},
    }


def folder_of(path: Path) -> Path:
    """The output folder ``path`` names (a manifest.json file is taken as its folder)."""
    p = Path(path)
    return p.parent if p.name == "manifest.json" else p
