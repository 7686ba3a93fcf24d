"""What ``edgeship ocr`` shows without ``--json``: per image a table of its text lines (number,
text, score, the box's extent), then which artifact served each stage, the ones skipped and why."""

from __future__ import annotations

import math
from typing import Any

from rich.cells import cell_len
from rich.console import Console

from .._table import print_table

__all__ = ["box_extent", "print_ocr", "served_text"]

#: the columns beside the text at their widest: "#" (3), score (5), box "2000,2000 2000,2000" (19)
_OTHER_COLUMNS = 3 + 5 + 19 + 3 * 4 + 1


def box_extent(box: list[list[float]]) -> str:
    """A line's box as the rectangle it spans, in whole pixels: ``x0,y0 x1,y1`` (the four corners
    are in --json)."""
    xs, ys = [p[0] for p in box], [p[1] for p in box]
    return f"{math.floor(min(xs))},{math.floor(min(ys))} {math.ceil(max(xs))},{math.ceil(max(ys))}"


def _fold(text: str, width: int) -> str:
    """``text`` with each word wider than ``width`` cells cut into lines of at most ``width``, so
    the table wraps a long word (a URL, a run of CJK characters) instead of giving up its layout."""
    width = max(width, 8)
    words = []
    for word in text.split(" "):
        if cell_len(word) <= width:
            words.append(word)
            continue
        pieces, cur = [], ""
        for ch in word:
            if cell_len(cur + ch) > width:
                pieces.append(cur)
                cur = ""
            cur += ch
        words.append("\n".join([*pieces, cur]))
    return " ".join(words)


def served_text(served_by: dict[str, str]) -> str:
    return ", ".join(f"{stage}={aid}" for stage, aid in served_by.items())


def print_ocr(c: Console, doc: dict[str, Any], key_checked: bool) -> None:
    tables = 0
    for r in doc["results"]:
        if "error" in r:
            c.print(f"{r['image']}: not read (see below)", markup=False, highlight=False)
            continue
        lines = r["lines"]
        if not lines:
            c.print(f"{r['image']}: no text found", markup=False, highlight=False)
            continue
        turned = any(ln.get("turned") for ln in lines)
        room = c.width - _OTHER_COLUMNS - (len("turned") + 3 if turned else 0)
        rows = [[str(i), _fold(ln["text"], room), f"{ln['score']:.3f}", box_extent(ln["box"]),
                 "yes" if ln.get("turned") else ""] for i, ln in enumerate(lines, 1)]
        headers = ["#", "text", "score", "box", "turned"]
        if not turned:
            headers, rows = headers[:-1], [row[:-1] for row in rows]
        print_table(c, f"{r['image']}: {len(lines)} line{'s' if len(lines) != 1 else ''}", headers, rows,
                    right=("#", "score"), wrap=("text",), optional=("turned",),
                    notes={"turned": "read turned by 180 degrees"})
        tables += 1
    if tables:
        c.print("box: x0,y0 x1,y1, the line's extent in the image's pixels (corners: --json)",
                markup=False, highlight=False)
    c.print(f"served by {served_text(doc['served_by'])}", markup=False, highlight=False)
    for s in doc["skipped"]:
        c.print(f"skipped {s['artifact']} ({s['stage']}): {s['reason']}", markup=False, highlight=False)
    if not key_checked:
        c.print("signature not checked: give --key PUB to refuse a tampered bundle", markup=False, highlight=False)
