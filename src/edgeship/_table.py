"""Text for people, shared by every part that prints: sizes and counts in about three digits, and
the one table printer (a rich table that fits the console's width without cutting a cell). The
command line's views, the benchmark report's tables and the HTML report's figures use it."""

from __future__ import annotations

from typing import Any

__all__ = ["print_table", "size_text", "count_text"]


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
