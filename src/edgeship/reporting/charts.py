"""The report's plots, drawn with matplotlib as inline SVG.

Why SVG drawn here rather than a JavaScript plotting library inlined in the page: the report is read
offline, in CI artifact viewers, mail and code-review tools that block scripts, and printed. Inline
SVG needs no script at all (the page carries a Content-Security-Policy that forbids scripts), keeps
its text as text (searchable, selectable, sharp at any zoom), weighs tens of kilobytes rather than
megabytes, and renders the same everywhere. What it gives up is interactivity: every point is
identified by its colour (target) and marker (precision), and the table beside each plot holds the
exact figures.

Each function returns an SVG string (``None`` when there is nothing to draw; the page model says
why in place). Output is deterministic: fixed hash salts, no dates.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["pareto_chart", "latency_chart", "layers_chart", "roofline_chart", "change_chart", "trade_off_chart",
           "target_colour"]

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F", "#000000")
MARKERS = {"fp32": "o", "fp16": "s", "int8": "^", "uint8": "v"}
KIND_COLOURS = {"pointwise": "#0072B2", "depthwise": "#E69F00", "conv_kxk": "#009E73", "dense": "#CC79A7",
                "grouped_conv": "#56B4E9", "matmul": "#D55E00", "attention": "#D55E00"}
WIDTH_IN = 7.2


def target_colour(targets: Sequence[str], target: str) -> str:
    order = list(dict.fromkeys(targets))
    return PALETTE[order.index(target) % len(PALETTE)] if target in order else PALETTE[-2]


def _figure(height_in: float, rows: int = 1, sharex: bool = False, ratios: Sequence[float] | None = None) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in))
    kw: dict[str, Any] = {"sharex": sharex}
    if ratios:
        kw["gridspec_kw"] = {"height_ratios": list(ratios)}
    axes = fig.subplots(rows, 1, **kw)
    return fig, axes


def _svg(fig: Any, name: str, label: str) -> str:
    """The figure as an inline <svg> that scales with its container; ids unique to ``name``."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"edgeship-{name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # ids matplotlib writes (clip paths, glyph defs) get the chart's prefix: several charts share one page
    ids = set(re.findall(r'id="([^"]+)"', text))
    for i in sorted(ids, key=len, reverse=True):
        text = text.replace(f'id="{i}"', f'id="{name}-{i}"').replace(f"#{i})", f"#{name}-{i})") \
            .replace(f'"#{i}"', f'"#{name}-{i}"')
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return re.sub(r"<svg ([^>]*?)width=\"[^\"]+\" height=\"[^\"]+\"",
                  f'<svg class="chart" role="img" aria-label="{label}" \\1', text, count=1)


def _style(ax: Any) -> None:
    ax.grid(True, which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=9)


def _log_if_wide(ax: Any, values: Sequence[float], axis: str = "x") -> None:
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > 8:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        axis_ = ax.xaxis if axis == "x" else ax.yaxis
        axis_.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis_.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis_.set_minor_formatter(NullFormatter())


def pareto_chart(rows: list[dict[str, Any]], budget: dict[str, Any]) -> str | None:
    """Latency (x) against fidelity (y), marker area by size; the Pareto front joined and labelled."""
    pts = [r for r in rows if r["bench"] and r["bench"]["p50"] and r["fidelity"]["value"] is not None]
    if not pts:
        return None
    metric = max({r["fidelity"]["metric"] for r in pts}, key=lambda m: sum(r["fidelity"]["metric"] == m for r in pts))
    pts = [r for r in pts if r["fidelity"]["metric"] == metric]
    targets = [r["target"] for r in rows]
    fig, ax = _figure(4.2)
    _style(ax)
    biggest = max((r["size_bytes"] or 0) for r in pts) or 1
    pct = metric == "top-1 agreement"
    for r in pts:
        y = r["fidelity"]["value"] * (100 if pct else 1)
        area = 30 + 320 * math.sqrt((r["size_bytes"] or 0) / biggest)
        ax.scatter([r["bench"]["p50"]], [y], s=area, marker=MARKERS.get(r["precision"], "D"),
                   color=target_colour(targets, r["target"]), alpha=0.85,
                   edgecolors="black" if r["pareto"] else "white", linewidths=1.6 if r["pareto"] else 0.8, zorder=3)
    # the line: the latency/fidelity trade-off (nothing faster is as close); outlined: the 3-D front
    front = []
    for r in sorted(pts, key=lambda r: (r["bench"]["p50"], -r["fidelity"]["value"])):
        if not front or r["fidelity"]["value"] > front[-1]["fidelity"]["value"]:
            front.append(r)
    if len(front) > 1:
        ax.plot([r["bench"]["p50"] for r in front], [r["fidelity"]["value"] * (100 if pct else 1) for r in front],
                color="black", linewidth=0.8, linestyle="--", zorder=2)
    for r in front:
        ax.annotate(r["id"], (r["bench"]["p50"], r["fidelity"]["value"] * (100 if pct else 1)), xytext=(6, 6),
                    textcoords="offset points", fontsize=8.5, zorder=4)
    floor = budget["min_top1"] * 100 if pct else budget["min_cosine"]
    lo = min([floor, *(r["fidelity"]["value"] * (100 if pct else 1) for r in pts)])
    hi = 100 if pct else 1
    ax.set_ylim(lo - (hi - lo) * 0.08, hi + (hi - lo) * 0.06)
    ax.axhline(floor, color="#D55E00", linewidth=0.8, linestyle=":")
    ax.annotate("fidelity budget", (0.995, floor), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                fontsize=8, color="#D55E00")
    _log_if_wide(ax, [r["bench"]["p50"] for r in pts])
    ax.set_xlabel("warm latency p50 (ms, lower is better)", fontsize=9.5)
    ax.set_ylabel(f"{metric} ({'%' if pct else 'vs source'}, higher is better)", fontsize=9.5)
    _legend(ax, pts, targets, extra_size=True)
    return _svg(fig, "pareto", "latency against fidelity of every measured artifact, marker area by size")


def _legend(ax: Any, rows: list[dict[str, Any]], targets: list[str], extra_size: bool = False) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=target_colour(targets, t), label=t, markersize=7)
               for t in dict.fromkeys(r["target"] for r in rows)]
    handles += [Line2D([], [], marker=MARKERS.get(p, "D"), linestyle="", color="#555555", label=p, markersize=7)
                for p in dict.fromkeys(r["precision"] for r in rows)]
    if extra_size:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="black",
                              label="Pareto front", markersize=7))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="area = size" if extra_size else None, title_fontsize=8)


def latency_chart(rows: list[dict[str, Any]], baseline: dict[str, Any] | None) -> str | None:
    """One row per artifact (fastest at the top): the warm-latency distribution drawn from its
    percentiles (width = how many calls took that long), p50 marked, p99 as a dot."""
    items = [(r["id"], r["target"], r["bench"]) for r in rows if r["bench"] and r["bench"]["p50"]]
    if baseline and baseline["p50"]:
        items.append(("PyTorch eager (baseline)", "", baseline))
    if not items:
        return None
    items.sort(key=lambda t: -t[2]["p50"])
    targets = [r["target"] for r in rows]
    fig, ax = _figure(0.9 + 0.38 * len(items))
    _style(ax)
    ax.grid(False, axis="y")
    log = max(b["p99"] or b["p50"] for _, _, b in items) / min(b["min"] or b["p50"] for _, _, b in items) > 8
    for y, (_, target, b) in enumerate(items):
        colour = target_colour(targets, target) if target else "#444444"
        q = b.get("quantiles")
        if q:
            qs = q[:100]  # up to p99: the slowest call is a single sample, shown as its own mark
            xs, ws = [], []
            for k in range(len(qs) - 1):
                lo, hi = qs[k], qs[k + 1]
                span = (math.log(hi) - math.log(lo)) if log and lo > 0 else (hi - lo)
                xs.append((lo + hi) / 2)
                ws.append(0.01 / span if span > 0 else math.inf)
            finite = [w for w in ws if math.isfinite(w)]
            top = max(finite) if finite else 1.0
            ws = [min(w, top) for w in ws]
            # a 5-percentile moving average: percentiles of a few hundred calls are spiky, the calls are not
            ws = [sum(ws[max(0, k - 2):k + 3]) / len(ws[max(0, k - 2):k + 3]) for k in range(len(ws))]
            top = max(ws) or 1.0
            ws = [min(w, top) / top * 0.38 for w in ws]
            ax.fill_between(xs, [y - w for w in ws], [y + w for w in ws], color=colour, alpha=0.55, linewidth=0)
        else:
            lo, hi = b["min"] or b["p50"], b["p99"] or b["p50"]
            ax.plot([lo, hi], [y, y], color=colour, linewidth=1.2)
            if b["p90"]:
                ax.add_patch(_rect(b["p50"], b["p90"], y, colour))
        ax.plot([b["p50"], b["p50"]], [y - 0.36, y + 0.36], color="black", linewidth=1.4)
        if b["p99"]:
            ax.plot([b["p99"]], [y], marker="o", markersize=3.5, color="black")
        ax.annotate(f"{b['p50']:.2f} ms", (b["p50"], y + 0.4), fontsize=7.5, ha="center", va="bottom")
    ax.set_yticks(range(len(items)), [n for n, _, _ in items], fontsize=8.5)
    ax.set_ylim(-0.7, len(items) - 0.2)
    if log:
        _log_if_wide(ax, [v for _, _, b in items for v in (b["min"] or b["p50"], b["p99"] or b["p50"])])
    ax.set_xlabel("warm latency per call (ms); bar = p50, dot = p99, shape = distribution up to p99", fontsize=9)
    return _svg(fig, "latency", "warm latency distribution of every artifact")


def _rect(x0: float, x1: float, y: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x0, y - 0.15), x1 - x0, 0.3, color=colour, alpha=0.5, linewidth=0)


def place_layers(layers: list[dict[str, Any]], rows: list[dict[str, Any]], key: str = "db") -> list[tuple[int, float]]:
    """(position along the network, dB) of each row: by node name, else by source module (its
    largest layer; a module named by its tail, as LiteRT's '6._project_conv' for
    '_blocks.6._project_conv', when exactly one module ends so), else not placed."""
    by_name = {x["name"]: x["index"] for x in layers}
    by_module: dict[str, tuple[float, int]] = {}
    for x in layers:
        if x["module"] and (x["module"] not in by_module or x["macs"] > by_module[x["module"]][0]):
            by_module[x["module"]] = (x["macs"], x["index"])
    out = []
    for r in rows:
        i = by_name.get(r["node"])
        mod = r.get("module")
        if i is None and mod:
            if mod in by_module:
                i = by_module[mod][1]
            else:
                tails = [v[1] for k, v in by_module.items() if k.endswith("." + mod)]
                i = tails[0] if len(tails) == 1 else None
        if i is not None and r.get(key) is not None:
            out.append((i, r[key]))
    return sorted(out)


def layers_chart(layers: list[dict[str, Any]], int8: list[dict[str, Any]], targets: list[str]) -> tuple[str | None, list[str]]:
    """Per-layer MACs along the network (top) and each int8 artifact's per-layer quantisation error
    placed at the same layers (bottom). Returns (svg, notes on what could not be placed).

    The bottom plot has one metric: weight SQNR, the figure every backend measures, from the
    artifacts whose figures compare (measured against the float weights; ``by_metric``'s
    ``comparable``). An artifact whose weight figures do not compare, and output SQNR (another
    metric, on its own axis in no plot here: the table shows it), are never drawn on that axis."""
    if not layers or not any(x["macs"] for x in layers):
        return None, []
    notes = []
    placed: list[tuple[list[str], dict[str, Any], list[tuple[int, float]], set[int]]] = []
    references: list[str] = []
    for r in int8:
        m = r["layers"].get("by_metric", {}).get("weight_db")
        if not m:
            continue
        if not m["comparable"]:
            notes.append(f"{r['id']}: not drawn: its weight SQNR is against {m['reference']} ({m.get('why', '')})")
            continue
        pts = place_layers(layers, m["rows"], "weight_db")
        if not pts:
            continue
        if len(pts) < max(1, len(m["rows"]) // 2):
            notes.append(f"{r['id']}: its layer names ({m['rows'][0]['node']}, ...) do not match the analysed "
                         "graph's, so its errors are in the table only")
            continue
        bounds = {i for i, x in place_layer_rows(layers, m["rows"]) if x.get("bound")}
        same = next((p for p in placed if p[2] == pts), None)
        if same is not None:  # the same quantised model in another wrapper (web-int8 is onnx-int8's)
            same[0].append(r["id"])
        else:
            placed.append(([r["id"]], r, pts, bounds))
            references.append(m["reference"])
    fig, axes = _figure(4.6 if placed else 2.6, rows=2 if placed else 1, sharex=True, ratios=(1, 1.1) if placed else None)
    ax = axes[0] if placed else axes
    _style(ax)
    xs = [x["index"] for x in layers if x["macs"]]
    ms = [x["macs"] / 1e6 for x in layers if x["macs"]]
    cols = [KIND_COLOURS.get(x["kind"], "#999999") for x in layers if x["macs"]]
    ax.bar(xs, ms, width=max(1.0, len(layers) / 150), color=cols, linewidth=0)
    ax.set_ylabel("MMACs per layer", fontsize=9)
    from matplotlib.patches import Patch

    kinds = list(dict.fromkeys(x["kind"] for x in layers if x["macs"]))
    ax.legend(handles=[Patch(color=KIND_COLOURS.get(k, "#999999"), label=k) for k in kinds], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if placed:
        bx = axes[1]
        _style(bx)
        for ids, r, pts, bounds in placed:
            colour = target_colour(targets, r["target"])
            bx.plot([p[0] for p in pts], [p[1] for p in pts], marker=MARKERS.get(r["precision"], "D"), markersize=3.5,
                    linewidth=0.9, color=colour, label=" = ".join(ids) + (" (hollow: at least)" if bounds else ""))
            hollow = [p for p in pts if p[0] in bounds]
            if hollow:  # lower bounds: the figure is at least this
                bx.plot([p[0] for p in hollow], [p[1] for p in hollow], linestyle="none", marker="o", markersize=6,
                        markerfacecolor="white", markeredgecolor=colour)
        heads = {re.split(r" \(|,", ref)[0] for ref in references}
        against = heads.pop() if len(heads) == 1 else "the float weights"
        bx.set_ylabel(f"weight SQNR (dB) vs\n{_wrap(against, 28)}", fontsize=8.5)
        bx.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        bx.set_xlabel("layer, in execution order", fontsize=9)
    else:
        ax.set_xlabel("layer, in execution order", fontsize=9)
    return _svg(fig, "layers", "per-layer MACs and each int8 artifact's weight SQNR along the network"), notes


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])


def place_layer_rows(layers: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(position along the network, row) of each row :func:`place_layers` can place."""
    out = []
    for r in rows:
        pts = place_layers(layers, [{**r, "_one": 1.0}], "_one")
        if pts:
            out.append((pts[0][0], r))
    return out


def roofline_chart(rows: list[dict[str, Any]], targets: list[str]) -> str | None:
    """Per artifact: the measured p50 beside the roofline floor (2·MACs / the machine's measured
    peak for its precision), and the share of peak it reached."""
    items = [r for r in rows if r["bench"] and r["bench"]["p50"] and r["bench"].get("roofline_ms")]
    if not items:
        return None
    items.sort(key=lambda r: -r["bench"]["p50"])
    fig, ax = _figure(0.9 + 0.42 * len(items))
    _style(ax)
    ax.grid(False, axis="y")
    for y, r in enumerate(items):
        b = r["bench"]
        ax.barh(y + 0.18, b["p50"], height=0.34, color=target_colour(targets, r["target"]))
        ax.barh(y - 0.18, b["roofline_ms"], height=0.34, color="#bbbbbb", hatch="///", edgecolor="white")
        share = b["roofline_ms"] / b["p50"]
        ax.annotate(f"{share:.0%} of peak", (b["p50"], y + 0.18), xytext=(4, 0), textcoords="offset points",
                    fontsize=7.5, va="center")
    ax.set_yticks(range(len(items)), [r["id"] for r in items], fontsize=8.5)
    _log_if_wide(ax, [v for r in items for v in (r["bench"]["p50"], r["bench"]["roofline_ms"])])
    ax.set_xlabel("ms: coloured = measured p50, grey = compute-bound floor at the measured peak", fontsize=9)
    return _svg(fig, "roofline", "measured latency against the roofline estimate")


def change_chart(rows: list[dict[str, Any]]) -> str | None:
    """p50 of each artifact in the old release (hollow) and the new (filled), joined; red when it
    regressed, green when it improved."""
    items = [r for r in rows if r["changes"]["p50_ms"]["delta"] is not None]
    if not items:
        return None
    fig, ax = _figure(0.9 + 0.36 * len(items))
    _style(ax)
    ax.grid(False, axis="y")
    for y, r in enumerate(items):
        c = r["changes"]["p50_ms"]
        colour = "#C0392B" if c["regressed"] else "#1E8449" if c["improved"] else "#AAAAAA" if r.get("unchanged") else "#555555"
        ax.plot([c["old"], c["new"]], [y, y], color=colour, linewidth=1.5)
        ax.plot([c["old"]], [y], marker="o", markerfacecolor="white", color=colour, markersize=6)
        ax.plot([c["new"]], [y], marker="o", color=colour, markersize=6)
        text = (f"{c['rel']:+.0%}" + (" (same bytes)" if r.get("unchanged") else "")) if c["rel"] is not None else ""
        ax.annotate(text, (max(c["old"], c["new"]), y), xytext=(6, 0),
                    textcoords="offset points", fontsize=8, va="center", color=colour)
    ax.set_yticks(range(len(items)), [r["id"] for r in items], fontsize=8.5)
    _log_if_wide(ax, [v for r in items for v in (r["changes"]["p50_ms"]["old"], r["changes"]["p50_ms"]["new"])])
    ax.set_xlabel("warm latency p50 (ms): hollow = old, filled = new; grey = same bytes (the machine's drift)", fontsize=9)
    return _svg(fig, "change", "p50 latency of each artifact, old against new")


def trade_off_chart(rows: list[dict[str, Any]], runtime: str | None, metric: str) -> str | None:
    """A pruning sweep: latency on ``runtime`` (or MACs when none was timed) against accuracy or
    fidelity, one point per ratio and the original, joined in ratio order."""
    key = "p50_ms" if runtime else "macs"
    pts = [r for r in rows if r.get(key) and r.get("value") is not None]
    if len(pts) < 2:
        return None
    pct = metric != "cosine"
    fig, ax = _figure(3.8)
    _style(ax)
    xs = [r[key] / (1 if runtime else 1e6) for r in pts]
    ys = [r["value"] * (100 if pct else 1) for r in pts]
    ax.plot(xs, ys, color=PALETTE[0], linewidth=1.0, zorder=2)
    for r, x, y in zip(pts, xs, ys):
        ax.scatter([x], [y], s=60, color=PALETTE[1] if r["ratio"] == 0 else PALETTE[0], zorder=3,
                   edgecolors="black", linewidths=0.8)
        ax.annotate(r["label"], (x, y), xytext=(6, 5), textcoords="offset points", fontsize=8.5, zorder=4)
    ax.set_xlabel(f"warm latency p50 on {runtime}, 1 thread (ms)" if runtime else "MACs (millions)", fontsize=9.5)
    ax.set_ylabel(f"{metric} ({'%' if pct else 'vs original'})", fontsize=9.5)
    return _svg(fig, "tradeoff", f"{metric} against {'latency' if runtime else 'MACs'} for each pruning ratio")
