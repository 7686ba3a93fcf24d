"""The OCR glue: detection map -> boxes -> crops -> direction -> recognised text, in numpy.

What runs between PaddleOCR's three models, reproduced from RapidOCR 1.4.4's Python code
(``main.py``, ``ch_ppocr_det/utils.py``, ``ch_ppocr_det/text_detect.py``,
``ch_ppocr_cls/text_cls.py``, ``ch_ppocr_rec/text_recognize.py``, ``ch_ppocr_rec/utils.py``) with
numpy and nothing else: no cv2, pyclipper or shapely, none of the package imported. This module is
the light runtime's (a device runs it with numpy, Pillow and the models' runtime) and the one
source the generated Kotlin, Swift and JavaScript follow step by step, so every step is plain
float64 arithmetic on small arrays, written to be ported line for line:

* **page**: BGR; the long side brought to at most ``max_side_len`` and the short side to at least
  ``min_side_len`` (each a multiple of 32); a page lower than ``min_height`` or wider than
  ``width_height_ratio`` x its height padded with black rows top and bottom;
* **detection input**: the short side scaled to ``limit_side_len`` (``limit_type`` min), both sides
  rounded to multiples of 32, bilinear (:func:`resize`, cv2's INTER_LINEAR: half-pixel centres,
  no antialiasing), ``(x / 255 - mean) / std``, NCHW float32;
* **boxes** (:func:`db_boxes`): the map above ``thresh``, dilated by a 2x2 square; each 8-connected
  region's minimum-area rectangle (rotating calipers on its convex hull, as ``cv2.minAreaRect``);
  regions whose short side is under ``min_size``, or whose mean map score inside the rectangle is
  under ``box_thresh``, dropped; the rectangle grown by ``area * unclip_ratio / perimeter`` on each
  side by pyclipper's round offset (reproduced point for point), then its min-area rectangle,
  scaled back to the page and rounded; points ordered clockwise from the top-left, clipped, boxes
  of 3 pixels or less dropped, sorted top to bottom then left to right (within 10 pixels);
* **crops** (:func:`crop`): the box's quadrilateral sampled by a perspective transform onto a
  ``max(edge)`` x ``max(edge)`` rectangle (bicubic, a = -0.75, at the mapped position itself,
  borders replicated: ``cv2.warpPerspective(INTER_CUBIC, BORDER_REPLICATE)``), turned by 90
  degrees when 1.5 times taller than wide;
* **direction**: crops resized to the classifier's height, at most its width, zero-padded; a crop
  turned by 180 degrees when the "180" label scores above ``thresh``;
* **recognition**: crops sorted by width/height, ``batch`` at a time, each batch as wide as its
  widest crop needs (at least the model's width); greedy CTC (argmax per step, repeats merged,
  blank 0 dropped), a text's score the mean of its characters' maxima; texts under
  ``text_score`` dropped.

Known differences from cv2 (measured against RapidOCR in ``benchmarks/check_ocr_pipeline.py``):
cv2 resizes and warps uint8 images with fixed-point weights where this uses float64, and
``findContours(RETR_LIST)`` also returns the inner borders of regions with holes, which this does
not (a DB map of text lines rarely has any).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["OcrLine", "OcrResult", "Stages", "read_page", "prepare_page", "det_input", "db_boxes", "crop",
           "direction_input", "apply_direction", "recognition_batches", "ctc_decode", "resize", "params",
           "box_iou", "cer", "match_lines"]

#: a model as the glue calls it: one float32 batch in, its first output out
Model = Callable[[np.ndarray], np.ndarray]


def params(task: Any) -> SimpleNamespace:
    """A task record (pydantic) or its JSON dict as attributes."""
    if isinstance(task, SimpleNamespace):
        return task
    if isinstance(task, dict):
        return SimpleNamespace(**task)
    return SimpleNamespace(**task.model_dump(mode="json"))


# ---------------------------------------------------------------- images
def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height))`` (INTER_LINEAR) of an HxWxC uint8 image: source
    coordinate ``(d + 0.5) * in / out - 0.5``, clamped at the borders, no antialiasing when
    shrinking; rounded to uint8."""
    h, w = img.shape[:2]
    y0, y1, fy = _axis(height, h)
    x0, x1, fx = _axis(width, w)
    a = img.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = n_in / n_out
    x = np.maximum((np.arange(n_out) + 0.5) * s - 0.5, 0.0)
    x0 = np.floor(x).astype(np.int64)
    f = x - x0
    x0 = np.minimum(x0, n_in - 1)
    return x0, np.minimum(x0 + 1, n_in - 1), f


def _side32(v: float) -> int:
    return int(round(int(v) / 32) * 32)


def prepare_page(bgr: np.ndarray, det: Any) -> tuple[np.ndarray, dict[str, float]]:
    """The page the detector and the crops work on, and how to map its boxes back:
    ``{"ratio_h", "ratio_w", "top"}`` (RapidOCR's ``preprocess`` and ``maybe_add_letterbox``)."""
    d = params(det)
    h, w = bgr.shape[:2]
    ratio_h = ratio_w = 1.0
    for limit, shrink in ((d.max_side_len, True), (d.min_side_len, False)):
        h, w = bgr.shape[:2]
        side = max(h, w) if shrink else min(h, w)
        if (side > limit) if shrink else (side < limit):
            r = float(limit) / (h if (h > w if shrink else h < w) else w)
            rh, rw = _side32(h * r), _side32(w * r)
            if rh <= 0 or rw <= 0:
                raise ValueError(f"a {w}x{h} page cannot be resized for detection")
            bgr = resize(bgr, rw, rh)
            ratio_h, ratio_w = h / rh, w / rw
    h, w = bgr.shape[:2]
    top = 0
    wide = d.width_height_ratio != -1 and w / h > d.width_height_ratio
    if h <= d.min_height or wide:
        new_h = max(int(w / d.width_height_ratio) if d.width_height_ratio != -1 else 0, d.min_height) * 2
        top = int(abs(new_h - h) / 2)
        pad = np.zeros((h + 2 * top, w, bgr.shape[2]), np.uint8)
        pad[top:top + h] = bgr
        bgr = pad
    return bgr, {"ratio_h": ratio_h, "ratio_w": ratio_w, "top": top}


def det_input(bgr: np.ndarray, det: Any) -> np.ndarray:
    """The detector's input for a prepared page: [1, 3, H', W'] float32."""
    d = params(det)
    h, w = bgr.shape[:2]
    if d.limit_type == "max":
        ratio = float(d.limit_side_len) / (h if h > w else w) if max(h, w) > d.limit_side_len else 1.0
    else:
        ratio = float(d.limit_side_len) / (h if h < w else w) if min(h, w) < d.limit_side_len else 1.0
    rh, rw = _side32(h * ratio), _side32(w * ratio)
    if rh <= 0 or rw <= 0:
        raise ValueError(f"a {w}x{h} page is too small for detection")
    img = resize(bgr, rw, rh).astype(np.float32)
    mean, std = np.asarray(d.mean, np.float64), np.asarray(d.std, np.float64)
    x = (img * (1 / 255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


# ---------------------------------------------------------------- DB boxes
def _regions(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected regions of a boolean mask, each as the end points of its runs
    ([n, 2] int64 x, y): enough for its convex hull. Runs are joined row to row, in the order of
    their first pixel (top to bottom, left to right)."""
    h, w = mask.shape
    runs: list[tuple[int, int, int]] = []  # (y, x0, x1)
    row_runs: list[list[int]] = []
    m = np.zeros((h, w + 2), np.int8)
    m[:, 1:-1] = mask
    d = np.diff(m, axis=1)
    for y in range(h):
        starts = np.flatnonzero(d[y] == 1)
        ends = np.flatnonzero(d[y] == -1) - 1
        row_runs.append(list(range(len(runs), len(runs) + len(starts))))
        runs.extend((y, int(a), int(b)) for a, b in zip(starts, ends))
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(1, h):
        prev, cur = row_runs[y - 1], row_runs[y]
        j = 0
        for i in cur:
            _, a, b = runs[i]
            while j < len(prev) and runs[prev[j]][2] < a - 1:
                j += 1
            k = j
            while k < len(prev) and runs[prev[k]][1] <= b + 1:
                ra, rb = find(i), find(prev[k])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                k += 1
    groups: dict[int, list[int]] = {}
    for i in range(len(runs)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for root in sorted(groups):
        pts = [(runs[i][1], runs[i][0]) for i in groups[root]] + [(runs[i][2], runs[i][0]) for i in groups[root]]
        out.append(np.asarray(pts, np.int64))
    return out


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull (Andrew's monotone chain), counter-clockwise, no collinear points."""
    pts = sorted({(int(x), int(y)) for x, y in points})
    if len(pts) <= 2:
        return np.asarray(pts, np.float64)

    def cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[int, int]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[int, int]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], np.float64)


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(the four corners [4, 2], width, height) of the smallest rectangle holding ``points``:
    one side lies along an edge of their convex hull (rotating calipers)."""
    hull = _hull(points)
    if len(hull) == 1:
        return np.repeat(hull, 4, axis=0), 0.0, 0.0
    best: tuple[float, np.ndarray, float, float] | None = None
    n = len(hull)
    for i in range(n if n > 2 else 1):
        ex, ey = hull[(i + 1) % n] - hull[i]
        norm = math.hypot(ex, ey)
        ux, uy = ex / norm, ey / norm
        u = hull[:, 0] * ux + hull[:, 1] * uy
        v = -hull[:, 0] * uy + hull[:, 1] * ux
        u0, u1, v0, v1 = u.min(), u.max(), v.min(), v.max()
        area = (u1 - u0) * (v1 - v0)
        if best is None or area < best[0] - 1e-9:
            corners = np.array([[a * ux - b * uy, a * uy + b * ux] for a, b in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
            best = (area, corners, float(u1 - u0), float(v1 - v0))
    assert best is not None
    return best[1], best[2], best[3]


def _mini_box(corners: np.ndarray) -> np.ndarray:
    """RapidOCR's ``get_mini_boxes`` order: of the points sorted by x, the upper of the left two
    first, then the upper of the right two, the lower right, the lower left."""
    pts = corners[np.argsort(corners[:, 0], kind="stable")]
    i1, i4 = (0, 1) if pts[1][1] > pts[0][1] else (1, 0)
    i2, i3 = (2, 3) if pts[3][1] > pts[2][1] else (3, 2)
    return pts[[i1, i2, i3, i4]]


def _round_half_away(v: float) -> int:
    return int(v - 0.5) if v < 0 else int(v + 0.5)


def _round_offset(path: np.ndarray, delta: float, arc_tolerance: float = 0.25) -> list[tuple[int, int]]:
    """``pyclipper.PyclipperOffset`` (Clipper 6.4: ``AddPath(path, JT_ROUND, ET_CLOSEDPOLYGON)``,
    ``Execute(delta)``) of a convex polygon: its points truncated to integers, each edge moved out
    by ``delta``, each corner an arc of points rounded to integers (half away from zero). Clipper
    then unions the result with itself, which only drops points on its straight runs: the
    convex hull, all the minimum-area rectangle needs, is the same."""
    pts: list[tuple[int, int]] = []
    for x, y in path:
        p = (int(x), int(y))
        if not pts or pts[-1] != p:
            pts.append(p)
    while len(pts) > 1 and pts[0] == pts[-1]:
        pts.pop()
    if len(pts) < 3:
        return []
    signed = sum((pts[i - 1][0] + pts[i][0]) * (pts[i - 1][1] - pts[i][1]) for i in range(len(pts)))
    if signed > 0:  # Clipper's Area() < 0: its orientation is fixed by reversing the path
        pts = pts[::-1]
    if abs(delta) < 1e-20:
        return pts
    y = arc_tolerance if arc_tolerance <= abs(delta) * arc_tolerance else abs(delta) * arc_tolerance
    steps = math.pi / math.acos(1 - y / abs(delta))
    steps = min(steps, abs(delta) * math.pi)
    sin_s, cos_s = math.sin(2 * math.pi / steps), math.cos(2 * math.pi / steps)
    per_rad = steps / (2 * math.pi)
    if delta < 0:
        sin_s = -sin_s
    n = len(pts)
    normals = []
    for j in range(n):
        dx, dy = pts[(j + 1) % n][0] - pts[j][0], pts[(j + 1) % n][1] - pts[j][1]
        f = 1.0 / math.sqrt(dx * dx + dy * dy) if dx or dy else 0.0
        normals.append((dy * f, -dx * f))
    out: list[tuple[int, int]] = []

    def at(sx: int, sy: int, nx: float, ny: float) -> tuple[int, int]:
        return _round_half_away(sx + nx * delta), _round_half_away(sy + ny * delta)

    k = n - 1
    for j in range(n):
        (kx, ky), (jx, jy), (sx, sy) = normals[k], normals[j], pts[j]
        sin_a = kx * jy - jx * ky
        if abs(sin_a * delta) < 1.0 and kx * jx + jy * ky > 0:
            out.append(at(sx, sy, kx, ky))
            continue  # Clipper's OffsetPoint returns here without k = j
        sin_a = max(-1.0, min(1.0, sin_a))
        if sin_a * delta < 0:
            out += [at(sx, sy, kx, ky), (sx, sy), at(sx, sy, jx, jy)]
        else:
            a = math.atan2(sin_a, kx * jx + ky * jy)
            x, yy = kx, ky
            for _ in range(max(_round_half_away(per_rad * abs(a)), 1)):
                out.append(at(sx, sy, x, yy))
                x, yy = x * cos_s - sin_s * yy, x * sin_s + yy * cos_s
            out.append(at(sx, sy, jx, jy))
        k = j
    return out


def _box_score(pred: np.ndarray, box: np.ndarray) -> float:
    """The mean map score inside the quadrilateral ``box`` (its integer points, pixels whose
    centre is inside or on it): RapidOCR's ``box_score_fast``."""
    h, w = pred.shape
    xmin = min(max(math.floor(box[:, 0].min()), 0), w - 1)
    xmax = min(max(math.ceil(box[:, 0].max()), 0), w - 1)
    ymin = min(max(math.floor(box[:, 1].min()), 0), h - 1)
    ymax = min(max(math.ceil(box[:, 1].max()), 0), h - 1)
    q = np.trunc(box).astype(np.float64)
    total, count = 0.0, 0
    for y in range(ymin, ymax + 1):
        lo, hi = math.inf, -math.inf
        for k in range(4):
            (x0, y0), (x1, y1) = q[k], q[(k + 1) % 4]
            if y0 == y1:
                if y == y0:
                    lo, hi = min(lo, x0, x1), max(hi, x0, x1)
                continue
            if min(y0, y1) <= y <= max(y0, y1):
                x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                lo, hi = min(lo, x), max(hi, x)
        if lo > hi:
            continue
        a, b = max(math.ceil(lo - 1e-9), xmin), min(math.floor(hi + 1e-9), xmax)
        if a <= b:
            total += float(pred[y, a:b + 1].astype(np.float64).sum())
            count += b - a + 1
    return total / count if count else 0.0


def db_boxes(pred: np.ndarray, page_h: int, page_w: int, det: Any) -> tuple[list[np.ndarray], list[float]]:
    """Text boxes (each [4, 2] float32, clockwise from the top-left, in page pixels) and their
    scores from a DB probability map ([1, 1, H, W] or [H, W]), sorted in reading order."""
    d = params(det)
    pm = np.asarray(pred, np.float32).reshape(pred.shape[-2:])
    mh, mw = pm.shape
    mask = pm > d.thresh
    if d.use_dilation:  # cv2.dilate with a 2x2 kernel, anchor (1, 1): the max of (y-1..y, x-1..x)
        m = mask.copy()
        m[1:, :] |= mask[:-1, :]
        m[:, 1:] |= mask[:, :-1]
        m[1:, 1:] |= mask[:-1, :-1]
        mask = m
    boxes, scores = [], []
    for pts in _regions(mask)[:d.max_candidates]:
        corners, rw, rh = min_area_rect(pts)
        if min(rw, rh) < d.min_size:
            continue
        box = _mini_box(corners)
        score = _box_score(pm, box)
        if d.box_thresh > score:
            continue
        # the distance shapely gives for the box; pyclipper's round offset of its truncated points;
        # the minimum-area rectangle of the offset's integer points
        fb = box.astype(np.float32).astype(np.float64)
        area = 0.5 * abs(float(np.dot(fb[:, 0], np.roll(fb[:, 1], -1)) - np.dot(fb[:, 1], np.roll(fb[:, 0], -1))))
        length = float(np.sum(np.hypot(*(np.roll(fb, -1, axis=0) - fb).T)))
        distance = area * d.unclip_ratio / length if length else 0.0
        offset = _round_offset(fb, distance)
        if not offset:
            continue
        c2, gw, gh = min_area_rect(np.asarray(offset, np.int64))
        if min(gw, gh) < d.min_size + 2:
            continue
        grown = _mini_box(c2)
        out = np.empty((4, 2), np.float64)
        out[:, 0] = np.clip(np.round(grown[:, 0] / mw * page_w), 0, page_w)
        out[:, 1] = np.clip(np.round(grown[:, 1] / mh * page_h), 0, page_h)
        boxes.append(out.astype(np.int32))
        scores.append(score)
    kept, kept_scores = [], []
    for box, score in zip(boxes, scores):
        b = _clockwise(box.astype(np.float32))
        b[:, 0] = np.minimum(np.maximum(b[:, 0], 0), page_w - 1).astype(np.int64)
        b[:, 1] = np.minimum(np.maximum(b[:, 1], 0), page_h - 1).astype(np.int64)
        if int(np.linalg.norm(b[0] - b[1])) <= 3 or int(np.linalg.norm(b[0] - b[3])) <= 3:
            continue
        kept.append(b)
        kept_scores.append(score)
    order = _reading_order(kept)
    return [kept[i] for i in order], [kept_scores[i] for i in order]


def _clockwise(pts: np.ndarray) -> np.ndarray:
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], np.float32)


def _reading_order(boxes: Sequence[np.ndarray]) -> list[int]:
    """RapidOCR's ``sorted_boxes``: by the first point's (y, x), then a box within 10 pixels of
    the one before it in y and left of it moves before it."""
    idx = sorted(range(len(boxes)), key=lambda i: (float(boxes[i][0][1]), float(boxes[i][0][0])))
    for i in range(len(idx) - 1):
        for j in range(i, -1, -1):
            a, b = boxes[idx[j]], boxes[idx[j + 1]]
            if abs(float(b[0][1]) - float(a[0][1])) < 10 and float(b[0][0]) < float(a[0][0]):
                idx[j], idx[j + 1] = idx[j + 1], idx[j]
            else:
                break
    return idx


# ---------------------------------------------------------------- crops
def _perspective(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 matrix mapping the four points ``src`` onto ``dst`` (cv2.getPerspectiveTransform)."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i in range(4):
        x, y = src[i]
        u, v = dst[i]
        a[i] = [x, y, 1, 0, 0, 0, -x * u, -y * u]
        a[i + 4] = [0, 0, 0, x, y, 1, -x * v, -y * v]
        b[i], b[i + 4] = u, v
    m = np.linalg.solve(a, b)
    return np.append(m, 1.0).reshape(3, 3)


def _cubic(t: np.ndarray) -> np.ndarray:
    """cv2's bicubic weights (a = -0.75) for the four taps around a fractional offset ``t``."""
    a = -0.75
    x0, x1, x2 = t + 1, t, 1 - t
    w0 = ((a * x0 - 5 * a) * x0 + 8 * a) * x0 - 4 * a
    w1 = ((a + 2) * x1 - (a + 3)) * x1 * x1 + 1
    w2 = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1
    return np.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=-1)


def crop(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The text line inside ``box`` straightened to a rectangle (RapidOCR's
    ``get_rotate_crop_image``), turned by 90 degrees when 1.5 times taller than wide."""
    pts = np.asarray(box, np.float32).astype(np.float64)
    cw = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    ch = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    cw, ch = max(cw, 1), max(ch, 1)
    rect = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64)
    inv = _perspective(rect, pts)  # destination pixel -> source position
    ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float64)
    wgt = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    wgt = np.where(wgt != 0, 1.0 / np.where(wgt != 0, wgt, 1.0), 0.0)
    sx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) * wgt
    sy = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) * wgt
    # opencv-python 5.x (what rapidocr-onnxruntime installs) interpolates at the position itself;
    # 4.x first put it on a grid of 1/32 pixel, up to 6 levels apart on a slanted box
    ix, iy = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    wx, wy = _cubic(sx - ix), _cubic(sy - iy)
    h, w = bgr.shape[:2]
    src = bgr.astype(np.float64)
    out = np.zeros((ch, cw, bgr.shape[2]))
    for j in range(4):
        yy = np.clip(iy + j - 1, 0, h - 1)
        row = np.zeros_like(out)
        for i in range(4):
            xx = np.clip(ix + i - 1, 0, w - 1)
            row += src[yy, xx] * wx[..., i:i + 1]
        out += row * wy[..., j:j + 1]
    img = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if img.shape[0] * 1.0 / img.shape[1] >= 1.5:
        img = np.ascontiguousarray(np.rot90(img))
    return img


# ---------------------------------------------------------------- direction and recognition
def _norm_padded(img: np.ndarray, height: int, width: int, fit_width: int) -> np.ndarray:
    """``resize_norm_img``: resized to ``height`` and ``ceil(height * w / h)`` wide (at most
    ``fit_width``), ``(x / 255 - 0.5) / 0.5``, zero-padded to ``width``: [3, height, width]."""
    h, w = img.shape[:2]
    rw = min(fit_width, int(math.ceil(height * (w / float(h)))))
    rw = max(rw, 1)
    r = resize(img, rw, height).astype(np.float32).transpose(2, 0, 1) / 255
    r -= 0.5
    r /= 0.5
    out = np.zeros((img.shape[2], height, width), np.float32)
    out[:, :, :rw] = r
    return out


def direction_input(crops: Sequence[np.ndarray], cls: Any) -> list[tuple[list[int], np.ndarray]]:
    """The classifier's batches: (crop indices, [n, 3, height, width] float32), crops in order of
    width/height as RapidOCR batches them."""
    c = params(cls)
    order = np.argsort(np.array([im.shape[1] / float(im.shape[0]) for im in crops]), kind="stable").tolist()
    return [(order[i:i + c.batch], np.stack([_norm_padded(crops[k], c.height, c.width, c.width)
                                              for k in order[i:i + c.batch]]))
            for i in range(0, len(order), c.batch)]


def apply_direction(crops: list[np.ndarray], index: Sequence[int], scores: np.ndarray, cls: Any) -> list[tuple[str, float]]:
    """Turn by 180 degrees the crops of one batch (``index``) whose "180" label scores above the
    threshold; each crop's (label, score)."""
    c = params(cls)
    out = []
    for k, row in zip(index, np.asarray(scores).reshape(len(index), -1)):
        j = int(np.argmax(row))
        label, score = str(c.labels[j]) if j < len(c.labels) else str(j), float(row[j])
        if "180" in label and score > c.thresh:
            crops[k] = np.ascontiguousarray(crops[k][::-1, ::-1])
        out.append((label, score))
    return out


def recognition_batches(crops: Sequence[np.ndarray], rec: Any) -> list[tuple[list[int], np.ndarray]]:
    """The recogniser's batches (crop indices, [n, 3, height, W] float32): crops in order of
    width/height, ``batch`` at a time, each batch ``int(height * max ratio)`` wide."""
    r = params(rec)
    ratios = [im.shape[1] / float(im.shape[0]) for im in crops]
    order = np.argsort(np.array(ratios), kind="stable").tolist()
    out = []
    for i in range(0, len(order), r.batch):
        idx = order[i:i + r.batch]
        wide = max([r.width / r.height] + [ratios[k] for k in idx])
        width = int(r.height * wide)
        out.append((idx, np.stack([_norm_padded(crops[k], r.height, width, width) for k in idx])))
    return out


def ctc_decode(preds: np.ndarray, characters: Sequence[str]) -> list[tuple[str, float]]:
    """Greedy CTC over ``characters`` (index 0 the blank): per row of [n, T, C] scores, the text
    and the mean score of its characters (0 for none)."""
    p = np.asarray(preds)
    idx, prob = p.argmax(axis=2), p.max(axis=2)
    out = []
    for row, pr in zip(idx, prob):
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        keep &= row != 0
        chars = [characters[i] if i < len(characters) else "" for i in row[keep]]
        conf = pr[keep].astype(np.float64)
        out.append(("".join(chars), float(conf.mean()) if conf.size else 0.0))
    return out


def read_characters(text: str) -> tuple[str, ...]:
    """The CTC alphabet from a character list (one per line): blank first, a space last."""
    return ("blank", *text.splitlines(), " ")


# ---------------------------------------------------------------- the whole
@dataclass
class OcrLine:
    box: list[list[float]]  # four (x, y) points in the input image, clockwise from the top-left
    text: str
    score: float
    turned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"box": self.box, "text": self.text, "score": round(self.score, 6), "turned": self.turned}


@dataclass
class OcrResult:
    lines: list[OcrLine]
    #: what each model was given and gave, for golden vectors and app-code checks (trace=True)
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(ln.text for ln in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": [ln.to_dict() for ln in self.lines], "text": self.text}


@dataclass
class Stages:
    """The models and their task records: ``det``/``rec`` required, ``cls`` optional."""
    det: Model
    rec: Model
    det_task: Any
    rec_task: Any
    characters: Sequence[str]
    cls: Model | None = None
    cls_task: Any = None


def read_page(rgb: np.ndarray, s: Stages, trace: bool = False) -> OcrResult:
    """Every text line of an RGB uint8 image: boxes (in the image's pixels), text and score."""
    bgr = np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., :3][..., ::-1])
    page, mapping = prepare_page(bgr, s.det_task)
    x = det_input(page, s.det_task)
    pred = np.asarray(s.det(x))
    boxes, _ = db_boxes(pred, page.shape[0], page.shape[1], s.det_task)
    t: dict[str, Any] = {"det_input_shape": list(x.shape), "det_map": pred, "page_shape": list(page.shape[:2]),
                         "boxes_page": [b.tolist() for b in boxes]} if trace else {}
    if not boxes:
        return OcrResult([], t)
    crops = [crop(page, b) for b in boxes]
    directions: list[tuple[str, float]] = [("0", 0.0)] * len(crops)
    if s.cls is not None:
        if trace:
            t["cls"] = []
        for idx, batch in direction_input(crops, s.cls_task):
            scores = np.asarray(s.cls(batch))
            if trace:
                t["cls"].append({"index": idx, "scores": scores})
            for k, d in zip(idx, apply_direction(crops, idx, scores, s.cls_task)):
                directions[k] = d
    texts: list[tuple[str, float]] = [("", 0.0)] * len(crops)
    if trace:
        t["rec"] = []
    for idx, batch in recognition_batches(crops, s.rec_task):
        logits = np.asarray(s.rec(batch))
        if trace:
            t["rec"].append({"index": idx, "shape": list(batch.shape), "logits": logits})
        for k, r in zip(idx, ctc_decode(logits, s.characters)):
            texts[k] = r
    thresh = float(params(s.rec_task).text_score)
    c = params(s.cls_task) if s.cls_task is not None else None
    lines = []
    for b, (text, score), (label, dscore) in zip(boxes, texts, directions):
        if score < thresh:
            continue
        pts = b.astype(np.float32).copy()
        pts[:, 1] -= mapping["top"]
        pts[:, 0] *= mapping["ratio_w"]
        pts[:, 1] *= mapping["ratio_h"]
        pts = np.maximum(pts, 0)
        pts[:, 0] = np.minimum(pts[:, 0], rgb.shape[1])
        pts[:, 1] = np.minimum(pts[:, 1], rgb.shape[0])
        turned = c is not None and "180" in label and dscore > c.thresh
        lines.append(OcrLine([[float(v) for v in p] for p in pts], text, score, turned))
    return OcrResult(lines, t)


# ---------------------------------------------------------------- the measures
def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: the edit distance over the reference's length (1 per character of
    the hypothesis when the reference is empty and it is not)."""
    if not reference:
        return float(len(hypothesis) > 0)
    prev = list(range(len(hypothesis) + 1))
    for i, a in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, b in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b))
        prev = cur
    return prev[-1] / len(reference)


def edits(reference: str, hypothesis: str) -> int:
    return round(cer(reference, hypothesis) * len(reference)) if reference else len(hypothesis)


def box_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """Intersection over union of two boxes' axis-aligned extents."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ax0, ay0, ax1, ay1 = a[:, 0].min(), a[:, 1].min(), a[:, 0].max(), a[:, 1].max()
    bx0, by0, bx1, by1 = b[:, 0].min(), b[:, 1].min(), b[:, 0].max(), b[:, 1].max()
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0


def match_lines(reference: Sequence[Any], got: Sequence[Any]) -> list[tuple[int | None, int | None, float]]:
    """Pairs (reference index, got index, IoU) matched greedily by box IoU (> 0.3); unmatched
    lines on either side paired with None. Lines are anything with ``.box`` or a ``"box"`` key."""
    def box(x: Any) -> Any:
        return x["box"] if isinstance(x, dict) else x.box

    cand = sorted(((box_iou(box(r), box(g)), i, j) for i, r in enumerate(reference) for j, g in enumerate(got)),
                  reverse=True)
    used_r: set[int] = set()
    used_g: set[int] = set()
    pairs: list[tuple[int | None, int | None, float]] = []
    for iou, i, j in cand:
        if iou <= 0.3 or i in used_r or j in used_g:
            continue
        used_r.add(i)
        used_g.add(j)
        pairs.append((i, j, iou))
    pairs += [(i, None, 0.0) for i in range(len(reference)) if i not in used_r]
    pairs += [(None, j, 0.0) for j in range(len(got)) if j not in used_g]
    return pairs
