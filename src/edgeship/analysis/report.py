"""Human-readable rendering of an analysis report (rich tables) for ``edgeship analyze``."""

from __future__ import annotations

from typing import Any

__all__ = ["print_report"]


def _n(x: int | float | None) -> str:
    if x is None:
        return "-"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f}"


def _mb(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e6:.2f} MB"


def _where(r: dict[str, Any]) -> str:
    return r.get("module") or r.get("name") or r.get("layer") or "?"


def print_report(c: Any, r: dict[str, Any], top: int = 10) -> None:
    from rich.table import Table

    m, t = r["model"], r["totals"]
    c.print(f"[bold]{m['name']}[/] ({m['kind']}, counted on the {m['frontend']} graph): "
            f"{_n(t['macs'])}MACs, {_n(t['params'])} params, {t['layers']} layers", highlight=False)
    c.print(f"weights {_mb(t['weight_bytes']['fp32'])} fp32 / {_mb(t['weight_bytes']['fp16'])} fp16 / "
            f"{_mb(t['weight_bytes']['int8'])} int8; peak activations {_mb(t['peak_activation_bytes'])} at "
            f"{t['peak_activation_at'].get('module') or t['peak_activation_at'].get('layer')}", highlight=False)
    cc = r.get("cross_check")
    if cc:
        c.print(f"cross-check: torch {_n(cc['torch_macs'])}MACs vs ONNX {_n(cc['onnx_macs'])}MACs "
                f"({'agree' if cc['agree'] else 'DISAGREE'}, {cc['rel_diff']:.2%})", highlight=False)

    tt = Table(title=f"top {top} layers by MACs")
    for col in ("#", "layer (module)", "kind", "MACs", "share", "out shape", "ops/byte", "bound", "est µs"):
        tt.add_column(col, justify="right" if col in ("#", "MACs", "share", "ops/byte", "est µs") else "left")
    by_index = {row["index"]: row for row in r["layers"]}
    for b in r["top_layers"][:top]:
        row = by_index[b["index"]]
        tt.add_row(str(row["index"]), _where(row), row["kind"], _n(row["macs"]), f"{row['macs_share']:.1%}",
                   "x".join(map(str, row["output_shape"] or [])), f"{row['intensity'] or 0:.1f}",
                   row.get("bound") or "-", f"{row['est_us']:.1f}" if "est_us" in row else "-")
    c.print(tt)

    kt = Table(title="MACs by kind")
    for col in ("kind", "layers", "MACs", "share", "heaviest"):
        kt.add_column(col)
    for kind, v in r["ranked_by_kind"].items():
        kt.add_row(kind, str(v["count"]), _n(v["macs"]), f"{v['macs_share']:.1%}",
                   ", ".join(_where(x) for x in v["top"][:3]))
    c.print(kt)

    sep = r["advice"]["separable"]
    if sep:
        at = Table(title="lighter layers: standard k×k conv → depthwise-separable (ranked by saving)")
        for col in ("rank", "layer (module)", "conv", "out HxW", "MACs", "separable", "saving", "ratio"):
            at.add_column(col)
        for a in sep[:top]:
            at.add_row(str(a["rank"]), _where(a), f"{a['kernel'][0]}x{a['kernel'][1]} {a['input_channels']}→"
                       f"{a['output_channels']}", "x".join(map(str, a["output_hw"])), f"{a['macs']:,}",
                       f"{a['separable_macs']['total']:,}", f"{a['saving_macs']:,}",
                       f"{a['ratio']:.3f} = {a['ratio_formula']}")
        c.print(at)
    else:
        c.print("lighter layers: no standard k×k convolutions to make depthwise-separable")
    for p in r["advice"]["patterns"][:6]:
        where = f" {_where(p)}" if "layer" in p else ""
        c.print(f"• [bold]{p['pattern']}[/]{where}: {p['suggestion']}", highlight=False)

    roof = r.get("roofline")
    if roof:
        meas = roof.get("measured")
        line = (f"roofline [italic]estimate[/] on {roof['profile']['name']} ({roof['precision']}): "
                f"{roof['total_ms']:.2f} ms ({roof['compute_bound']['layers']} compute-bound layers "
                f"{roof['compute_bound']['ms']:.2f} ms, {roof['memory_bound']['layers']} memory-bound "
                f"{roof['memory_bound']['ms']:.2f} ms); int8 {roof['int8_total_ms']:.2f} ms")
        c.print(line, highlight=False)
        if roof.get("onnx_graph_total_ms") is not None:
            c.print(f"  on the ONNX export (BatchNorm and padding folded): {roof['onnx_graph_total_ms']:.2f} ms",
                    highlight=False)
        if meas:
            c.print(f"measured (benchmark in the deploy manifest): {meas['latency_ms']:.2f} ms  — estimate/measured "
                    f"{roof.get('estimate_over_measured')}", highlight=False)
        else:
            c.print(f"measured: {roof.get('measured_note')}", highlight=False)

    comp = r.get("compatibility") or {}
    if comp:
        ct = Table(title="compatibility preview (before conversion)")
        for col in ("target", "status", "MACs on fast kernels", "unsupported ops", "checked with"):
            ct.add_column(col)
        for name, v in comp.items():
            share = v.get("macs_share_fast")
            uns = "; ".join(f"{u.get('type') or '?'} at {u.get('module') or u.get('node') or '?'}"
                            for u in v.get("unsupported", [])[:3]) or "-"
            if len(v.get("unsupported", [])) > 3:
                uns += f" (+{len(v['unsupported']) - 3})"
            style = {"ready": "green", "partial": "yellow", "unsupported": "red"}.get(v["status"], "dim")
            ct.add_row(name, f"[{style}]{v['status']}[/]", "-" if share is None else f"{share:.0%}", uns,
                       v.get("checked_with", "-"))
        c.print(ct)
        for name, v in comp.items():
            for u in v.get("unsupported", [])[:5]:
                c.print(f"  {name}: {u.get('op')} at node {u.get('node')} (module {u.get('module')}): {u.get('hint')}",
                        highlight=False, markup=False)
    for note in r.get("notes", []):
        c.print(f"note: {note}", highlight=False, markup=False)
