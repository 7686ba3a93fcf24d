"""Cases for the ports of the OCR glue (JavaScript, Kotlin) where Python's answer is the reference:
DB-like maps of slanted bars, the round offsets db_boxes grows their boxes by (recorded as it
calls them), offsets made to take every branch of pyclipper's rules, and crops of slanted boxes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgeship.tasks import ocr
from edgeship.tasks.ocr import _round_offset, crop


def blob_map(rng: np.random.Generator) -> np.ndarray:
    """A DB-like map: a few rotated bars (lines of text at an angle) and noise."""
    h, w = int(rng.integers(2, 8)) * 32, int(rng.integers(2, 10)) * 32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 6))):
        cx, cy, a = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-0.6, 0.6)
        length, thick = rng.uniform(3, w / 2), rng.uniform(1.5, 12)
        u = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)
        v = -(xx - cx) * math.sin(a) + (yy - cy) * math.cos(a)
        m = np.maximum(m, np.clip(1.2 - np.maximum(np.abs(u) / length, np.abs(v) / thick), 0, 1))
    return np.clip(m + rng.normal(0, 0.05, m.shape), 0, 1).astype(np.float32)


def record_offsets(monkeypatch: Any) -> list[dict]:
    """From now on, each call db_boxes makes to ``_round_offset``: {"path" (the box's float32
    corners), "delta" (the distance it computed), "want" (the offset's integer points)}."""
    calls: list[dict] = []

    def recording(path: np.ndarray, delta: float, arc_tolerance: float = 0.25) -> list[tuple[int, int]]:
        out = _round_offset(path, delta, arc_tolerance)
        calls.append({"path": np.asarray(path, np.float64).tolist(), "delta": float(delta), "want": [list(p) for p in out]})
        return out

    monkeypatch.setattr(ocr, "_round_offset", recording)
    return calls


def _box(cx: float, cy: float, a: float, length: float, thick: float) -> np.ndarray:
    return np.array([[cx + su * length * math.cos(a) - sv * thick * math.sin(a),
                      cy + su * length * math.sin(a) + sv * thick * math.cos(a)]
                     for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1))]).astype(np.float32).astype(np.float64)


def made_offsets(rng: np.random.Generator, n: int = 400) -> list[dict]:
    """Boxes (float32 corners) and distances that take each branch of the round offset: slanted and
    axis-aligned boxes, either way round (Clipper reverses a clockwise path), small ones whose
    corners get one or two arc points (a distance under 2: steps = distance * pi), distances of
    an integer and a half on axis-aligned boxes (Python's int(v + 0.5) rounds those ties away from
    zero, numpy's rint to even), boxes that truncate to a line (no offset) and a distance of 0."""
    out = []
    for k in range(n):
        a = rng.uniform(-math.pi, math.pi) if k % 3 else 0.0
        size = (rng.uniform(0.5, 4), rng.uniform(0.3, 3)) if k % 4 == 0 else (rng.uniform(2, 200), rng.uniform(1, 30))
        box = _box(rng.uniform(0, 600), rng.uniform(0, 400), a, *size)
        if k % 2:
            box = box[::-1].copy()
        delta = [rng.uniform(0, 2), rng.uniform(0, 30), float(rng.integers(0, 12)) + 0.5, 0.0][k % 4 if k % 7 else 3]
        out.append({"path": box.tolist(), "delta": delta, "want": [list(p) for p in _round_offset(box, delta)]})
    flat = [[10.2, 5.1], [20.7, 5.1], [20.7, 5.4], [10.2, 5.4]]  # truncated: one line, no offset
    out.append({"path": flat, "delta": 2.0, "want": [list(p) for p in _round_offset(np.asarray(flat), 2.0)]})
    sizes = [len(c["want"]) for c in out]
    assert sizes.count(0) >= 1 and sum(0 < s <= 8 for s in sizes) >= 20 and sum(s >= 20 for s in sizes) >= 20, sizes
    return out


def slanted_crops(rng: np.random.Generator, n: int = 30) -> list[dict]:
    """Random images and boxes at an angle (integer corners, or any float32 corners), each with the
    crop Python samples from it: {"img" (h x w x 3 uint8), "box" (float32 [4, 2]), "out"}."""
    out = []
    while len(out) < n:
        h, w = int(rng.integers(20, 120)), int(rng.integers(20, 160))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cx, cy, a = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-0.5, 0.5)
        box = _box(cx, cy, a, rng.uniform(2, w / 2), rng.uniform(1, h / 3))
        box = np.clip(box if len(out) % 2 else np.round(box), 0, [w - 1, h - 1]).astype(np.float32)
        if len({tuple(p) for p in box.tolist()}) < 4:  # corners clipped onto one another: no quadrilateral
            continue
        try:
            out.append({"img": img, "box": box, "out": crop(img, box)})
        except np.linalg.LinAlgError:  # corners on one line
            continue
    return out
