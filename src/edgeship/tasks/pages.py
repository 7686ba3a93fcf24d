"""Real text images for an OCR pipeline's calibration, evaluation and golden vectors.

Pages of short real phrases (words of the Zen of Python and of a shop's receipt, dates, prices)
rendered with Pillow in the fonts this machine has (DejaVu and Liberation when installed, else
Pillow's own), in several sizes, dark on light, some pages turned by 180 degrees. Each set is
made from its own seed: calibration and evaluation never share a page or a phrase list."""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["text_pages", "phrases", "FONT_DIRS"]

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
_ZEN = ("beautiful is better than ugly explicit implicit simple complex complicated flat nested sparse dense "
        "readability counts special cases are not enough to break the rules although practicality beats purity "
        "errors should never pass silently unless explicitly silenced in face of ambiguity refuse temptation "
        "guess there one and preferably only obvious way do it now often right implementation hard explain "
        "bad idea easy may be good namespaces honking great let us more those")
_RECEIPT = ("total", "cash", "change", "receipt", "coffee", "milk", "bread", "tea", "sugar", "butter", "apples",
            "station", "platform", "ticket", "return", "single", "adult", "child", "invoice", "date", "amount",
            "order", "table", "number", "open", "closed", "exit", "entrance", "monday", "friday", "street",
            "north", "south", "road", "avenue", "phone", "email", "card", "paid", "balance", "item", "price")


@lru_cache(maxsize=1)
def _words() -> tuple[str, ...]:
    return tuple(sorted(set(_ZEN.split()) | set(_RECEIPT)))


@lru_cache(maxsize=1)
def _fonts() -> tuple[str, ...]:
    found = sorted(str(p) for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf")
                   if not any(k in p.name for k in ("ExtraLight", "Oblique", "Italic")))
    return tuple(found)


@lru_cache(maxsize=64)
def _font(path: str | None, size: int):  # noqa: ANN202 - a Pillow font
    from PIL import ImageFont

    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def phrases(n: int, seed: int, max_chars: int = 20) -> list[str]:
    """``n`` short phrases: words, a date, a price, a number."""
    rng = random.Random(seed)
    words = _words()
    out: list[str] = []
    while len(out) < n:
        k = rng.random()
        if k < 0.15:
            t = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2030)}"
        elif k < 0.3:
            t = f"{rng.choice(words).capitalize()} {rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        else:
            t = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        t = t[:max_chars].strip()
        if len(t) >= 3:
            out.append(t)
    return out


def text_pages(n: int, seed: int, size: tuple[int, int] = (480, 640), lines: int = 7,
               turned_every: int = 4) -> list[tuple[np.ndarray, list[str]]]:
    """``n`` RGB pages (``size`` = height, width) and the lines written on each, top to bottom;
    every ``turned_every``-th page turned by 180 degrees (0: none)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    fonts = _fonts() or (None,)
    h, w = size
    out = []
    for k in range(n):
        bg = tuple(rng.randint(215, 255) for _ in range(3))
        im = Image.new("RGB", (w, h), bg)
        d = ImageDraw.Draw(im)
        y = rng.randint(8, 24)
        written = []
        for t in phrases(lines, rng.randint(0, 1 << 30)):
            font = _font(rng.choice(fonts), rng.randint(max(12, h // 28), max(16, h // 15)))
            x0, y0, x1, y1 = font.getbbox(t)
            if y + (y1 - y0) > h - 8 or x1 - x0 > w - 16:
                continue
            x = rng.randint(8, max(9, w - (x1 - x0) - 8))
            d.text((x - x0, y - y0), t, font=font, fill=tuple(rng.randint(0, 80) for _ in range(3)))
            written.append(t)
            y += (y1 - y0) + rng.randint(max(8, h // 40), max(12, h // 14))
        a = np.asarray(im).astype(np.int16) + np.random.default_rng(rng.randint(0, 1 << 30)).integers(-5, 6, (h, w, 1))
        a = np.clip(a, 0, 255).astype(np.uint8)
        if turned_every and k % turned_every == turned_every - 1:
            a = np.ascontiguousarray(a[::-1, ::-1])
            written = written[::-1]
        out.append((a, written))
    return out


def text_lines(n: int, seed: int, turned_every: int = 3) -> list[tuple[np.ndarray, list[str]]]:
    """``n`` RGB images of one line of text each, cut close as a camera app's crop or a screenshot
    of a field is (a detector scales such an image up: its short side to 736 for PaddleOCR), in
    several fonts and sizes, dark on light or light on dark; every ``turned_every``-th turned by
    180 degrees (0: none)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    fonts = _fonts() or (None,)
    out = []
    for k, t in enumerate(phrases(n, rng.randint(0, 1 << 30), max_chars=16)):
        font = _font(rng.choice(fonts), rng.randint(20, 40))
        x0, y0, x1, y1 = font.getbbox(t)
        m = rng.randint(4, 12)
        bg = tuple(rng.randint(200, 255) for _ in range(3))
        fg = tuple(rng.randint(0, 70) for _ in range(3))
        if rng.random() < 0.2:
            bg, fg = fg, bg
        im = Image.new("RGB", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), bg)
        ImageDraw.Draw(im).text((m - x0, m - y0), t, font=font, fill=fg)
        a = np.asarray(im)
        if turned_every and k % turned_every == turned_every - 1:
            a = np.ascontiguousarray(a[::-1, ::-1])
        out.append((a, [t]))
    return out
