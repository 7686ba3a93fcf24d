"""Human-readable rendering of an analysis report (rich tables) for ``edgeship analyze``."""

from __future__ import annotations

from typing import Any

from .._util import share_text

__all__ = ["print_report", "print_table", "size_text", "count_text"]


# ---- tables that fit the terminal (used by every command's human output) ------------------

def size_text(n: float | None) -> str:
    """A size in bytes for people: 812 B, 3.1 kB, 45 kB, 4.87 MB, 1.2 GB (about three digits)."""
    if n is None:
        return "-"
    n = float(n)
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.2f} {unit}" if v < 10 else f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n:.0f} B"


def count_text(x: float | None, sep: str = " ", none: str = "-") -> str:
    """A count for people, three digits: 812, 33.5 k, 8.41 M, 1.2 G (``sep`` between number and unit)."""
    if x is None:
        return none
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{sep}{unit}"
    return f"{x:.0f}"


def _cell_widths(cell: Any) -> tuple[int, int]:
    """(longest word, whole text) in terminal cells; markup counts as what it shows."""
    from rich.text import Text

    text = cell if isinstance(cell, Text) else Text(str(cell))  # a string cell is text, never markup
    lines = text.plain.splitlines() or [""]
    words = [w for line in lines for w in line.split()] or [""]
    return max(Text(w).cell_len for w in words), max(Text(line).cell_len for line in lines)


def _layout(width: int, headers: list[str], rows: list[list[Any]], wrap: set[int]) -> list[int] | None:
    """Column widths that fit ``width`` with no cell cut (columns in ``wrap`` may wrap at spaces), or None."""
    n = len(headers)
    lo, hi = [0] * n, [0] * n
    for row in [headers, *rows]:
        for j, cell in enumerate(row):
            w_min, w_max = _cell_widths(cell)
            lo[j], hi[j] = max(lo[j], w_min if j in wrap else w_max), max(hi[j], w_max)
    room = width - (3 * n + 1)  # borders and padding of rich's default box
    if sum(hi) <= room:
        return hi
    if sum(lo) > room:
        return None
    widths, spare = list(lo), room - sum(lo)
    for j in sorted(wrap, key=lambda k: hi[k] - widths[k]):  # the rest: unwrap the columns that need least first
        extra = min(spare, hi[j] - widths[j])
        widths[j] += extra
        spare -= extra
    return widths


def _table(title: str | None, headers: list[str], rows: list[list[Any]], widths: list[int], right: set[int],
           caption: str | None, width: int) -> Any:
    from rich.table import Table

    t = Table(title=title, caption=caption, caption_justify="left")
    if title:  # a table narrower than its title widens (up to the console) rather than wrap the title
        t.min_width = min(_cell_widths(title)[1] + 4, width)
    for j, h in enumerate(headers):
        t.add_column(h, justify="right" if j in right else "left", width=widths[j], overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def print_table(c: Any, title: str | None, headers: list[str], rows: list[list[Any]], *, right: tuple[str, ...] = (),
                wrap: tuple[str, ...] = (), optional: tuple[str, ...] = (), caption: str | None = None,
                notes: dict[str, str] | None = None) -> None:
    """Print a table that fits the console's width without cutting a cell.

    As it is when it fits (``wrap`` columns may wrap at spaces); else without the ``optional``
    columns, dropped one at a time from the last named (the caption says which); else transposed:
    one column per row, in as many side-by-side chunks as the width needs, the first header heading
    the column of the others. ``notes`` explain columns in the caption (those shown).
    """
    rows = [["" if x is None else x for x in r] for r in rows]
    idx = {h: j for j, h in enumerate(headers)}
    keep = list(range(len(headers)))
    dropped: list[str] = []
    for name in [None, *reversed(optional)]:
        if name is not None and name in idx:
            keep.remove(idx[name])
            dropped.insert(0, name)
        hs = [headers[j] for j in keep]
        rs = [[r[j] for j in keep] for r in rows]
        widths = _layout(c.width, hs, rs, {k for k, j in enumerate(keep) if headers[j] in wrap})
        if widths is not None:
            said = "; ".join(f"{h}: {text}" for h, text in (notes or {}).items() if h in hs)
            note = (f"left out to fit {c.width} columns: {', '.join(dropped)} (--json has {'them' if len(dropped) > 1 else 'it'})"
                    if dropped else None)
            cap = "\n".join(x for x in (said, caption, note) if x) or None
            c.print(_table(title, hs, rs, widths, {k for k, j in enumerate(keep) if headers[j] in right}, cap, c.width))
            return
    # transposed: the labels column (no wrap) and one wrapping column per row, in chunks that fit
    labels = headers[1:]
    todo = list(rows)
    first = True
    while todo:
        take, widths = 1, None
        for k in range(len(todo), 0, -1):
            chunk = todo[:k]
            hs = [headers[0], *[r[0] for r in chunk]]
            rs = [[labels[i], *[r[i + 1] for r in chunk]] for i in range(len(labels))]
            widths = _layout(c.width, hs, rs, set(range(1, k + 1)))
            if widths is not None:
                take = k
                break
        chunk = todo[:take]
        hs = [headers[0], *[r[0] for r in chunk]]
        rs = [[labels[i], *[r[i + 1] for r in chunk]] for i in range(len(labels))]
        if widths is None:  # not even one fits: let it wrap (and fold long words) at the console's width
            room = max(2, c.width - 7)
            label = min(max(_cell_widths(x)[1] for x in [hs[0], *labels]), room // 2)
            widths = [max(1, label), max(1, room - label)]
        todo = todo[take:]
        if not todo:
            said = "; ".join(f"{h}: {t}" for h, t in (notes or {}).items() if h in headers)
            caption = "\n".join(x for x in (said, caption) if x) or None
        c.print(_table(title if first else None, hs, rs, widths, set(range(1, len(hs))),
                       caption if not todo else None, c.width))
        first = False


def _n(x: float | None) -> str:
    """A count for people: 128, 106.7k, 4.87M, 1.23G (the unit glued on: '106.7k MACs')."""
    if x is None:
        return "-"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            v = x / div
            return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{x:.0f}"


def _where(r: dict[str, Any]) -> str:
    return r.get("module") or r.get("name") or r.get("layer") or "?"


def print_report(c: Any, r: dict[str, Any], top: int = 10) -> None:
    from rich.text import Text

    m, t = r["model"], r["totals"]
    c.print(Text.assemble((m["name"], "bold"), f" ({m['kind']}, counted on the {m['frontend']} graph): "
                          f"{_n(t['macs'])} MACs, {_n(t['params'])} params, {t['layers']} layers"))
    wb = t["weight_bytes"]
    at = t["peak_activation_at"].get("module") or t["peak_activation_at"].get("layer")
    c.print(f"weights {size_text(wb['fp32'])} fp32 / {size_text(wb['fp16'])} fp16 / {size_text(wb['int8'])} int8; "
            f"peak activations {size_text(t['peak_activation_bytes'])} at {at}", highlight=False, markup=False)
    cc = r.get("cross_check")
    if cc:
        c.print(f"cross-check: torch {_n(cc['torch_macs'])} MACs vs ONNX {_n(cc['onnx_macs'])} MACs "
                f"({'agree' if cc['agree'] else 'DISAGREE'}, {cc['rel_diff']:.2%})", highlight=False)

    by_index = {row["index"]: row for row in r["layers"]}
    rows = []
    for b in r["top_layers"][:top]:
        row = by_index[b["index"]]
        rows.append([str(row["index"]), _where(row), row["kind"], _n(row["macs"]), f"{row['macs_share']:.1%}",
                     "x".join(map(str, row["output_shape"] or [])), f"{row['intensity'] or 0:.1f}",
                     row.get("bound") or "-", f"{row['est_us']:.1f}" if "est_us" in row else "-"])
    headers = ["#", "layer (module)", "kind", "MACs", "share", "out shape", "ops/byte", "bound", "est µs"]
    print_table(c, f"top {len(rows)} layers by MACs", headers, rows, right=("#", "MACs", "share", "ops/byte", "est µs"),
                optional=("out shape", "bound", "ops/byte"),
                notes={"ops/byte": "arithmetic intensity", "est µs": "roofline estimate"})

    print_table(c, "MACs by kind", ["kind", "layers", "MACs", "share", "heaviest"],
                [[kind, str(v["count"]), _n(v["macs"]), f"{v['macs_share']:.1%}", ", ".join(_where(x) for x in v["top"][:3])]
                 for kind, v in r["ranked_by_kind"].items()],
                right=("layers", "MACs", "share"), wrap=("heaviest",))

    sep = r["advice"]["separable"]
    if sep:
        rows = [[str(a["rank"]), _where(a), f"{a['kernel'][0]}x{a['kernel'][1]} {a['input_channels']}→{a['output_channels']}",
                 "x".join(map(str, a["output_hw"])), f"{a['macs']:,}", f"{a['separable_macs']['total']:,}",
                 f"{a['saving_macs']:,}", f"{a['ratio']:.3f} = {a['ratio_formula']}"] for a in sep[:top]]
        headers = ["rank", "layer (module)", "conv", "out HxW", "MACs", "separable", "saving", "ratio"]
        print_table(c, "lighter layers: standard k×k conv → depthwise-separable (ranked by saving)", headers, rows,
                    right=("rank", "MACs", "separable", "saving"), wrap=("conv", "ratio"),
                    optional=("out HxW", "MACs", "separable"))
    else:
        c.print("lighter layers: no standard k×k convolutions to make depthwise-separable")
    for p in r["advice"]["patterns"][:6]:
        where = f" {_where(p)}" if "layer" in p else ""
        c.print(Text.assemble("• ", (p["pattern"], "bold"), f"{where}: {p['suggestion']}"))

    roof = r.get("roofline")
    if roof:
        meas = roof.get("measured")
        line = Text.assemble("roofline ", ("estimate", "italic"), f" on {roof['profile']['name']} ({roof['precision']}): "
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
            c.print(f"measured: {roof.get('measured_note')}", highlight=False, markup=False)

    comp = r.get("compatibility") or {}
    if comp:
        rows = []
        for name, v in comp.items():
            share = v.get("macs_share_fast")
            uns = "; ".join(f"{u.get('type') or '?'} at {u.get('module') or u.get('node') or '?'}"
                            for u in v.get("unsupported", [])[:3]) or "-"
            if len(v.get("unsupported", [])) > 3:
                uns += f" (+{len(v['unsupported']) - 3})"
            style = {"ready": "green", "partial": "yellow", "unsupported": "red"}.get(v["status"], "dim")
            rows.append([name, Text(v["status"], style=style), "-" if share is None else share_text(share, 0), uns,
                         v.get("checked_with", "-")])
        print_table(c, "compatibility preview (before conversion)",
                    ["target", "status", "fast MACs", "unsupported ops", "checked with"], rows,
                    right=("fast MACs",), wrap=("unsupported ops", "checked with"), optional=("checked with",),
                    notes={"fast MACs": "share of the MACs on the target's fast kernels"})
        for name, v in comp.items():
            for u in v.get("unsupported", [])[:5]:
                c.print(f"  {name}: {u.get('op')} at node {u.get('node')} (module {u.get('module')}): {u.get('hint')}",
                        highlight=False, markup=False)
            # why a target is not ready, and what a placeholder shape changed (the rest is in --json)
            for note in v.get("notes", []):
                if v["status"] in ("not_applicable", "error", "unsupported", "unavailable") or "placeholder" in note:
                    c.print(f"  {name}: {note}", highlight=False, markup=False)
    for note in r.get("notes", []):
        c.print(f"note: {note}", highlight=False, markup=False)
