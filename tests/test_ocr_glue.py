"""The OCR glue's pieces (edgeship.tasks.ocr) where the answer is known without cv2: the
minimum-area rectangle, 8-connected regions, CTC decoding, RapidOCR's reading order, the
measures, crops of axis-aligned boxes, the page letterbox. Then, where cv2, pyclipper, shapely
and rapidocr-onnxruntime are installed (not on CI), the DB boxes, crops and resizes against
RapidOCR's own code on a real detection map, within the tolerances measured there."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edgeship.tasks import TextDetection, TextRecognition, ocr


# ---------------------------------------------------------------- min-area rectangle, regions
def _lattice_inside(corners: np.ndarray) -> np.ndarray:
    """The integer points inside or on a convex quadrilateral (corners in order round it)."""
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    p = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    inside = np.ones(len(p), bool)
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        cross = (b[0] - a[0]) * (p[:, 1] - a[1]) - (b[1] - a[1]) * (p[:, 0] - a[0])
        inside &= cross >= -1e-9
    return p[inside].astype(np.int64)


def test_min_area_rect_of_a_rotated_rectangles_pixels_is_that_rectangle():
    # a rectangle turned by atan(3/4) whose corners are lattice points: sides 10 and 5
    corners = np.array([[10, 10], [18, 16], [15, 20], [7, 14]], np.float64)
    pts = _lattice_inside(corners)
    assert len(pts) > 40
    got, w, h = ocr.min_area_rect(pts)
    assert sorted([round(w, 9), round(h, 9)]) == [5.0, 10.0]
    assert sorted(map(tuple, np.round(got, 9).tolist())) == sorted(map(tuple, corners.tolist()))
    # RapidOCR's order: of the two leftmost, the upper first; then the upper, the lower of the right
    assert ocr._mini_box(got).round(9).tolist() == [[10, 10], [18, 16], [15, 20], [7, 14]]


def test_min_area_rect_of_an_axis_aligned_block():
    ys, xs = np.mgrid[3:9, 20:41]
    got, w, h = ocr.min_area_rect(np.stack([xs.ravel(), ys.ravel()], axis=1))
    assert sorted([w, h]) == [5.0, 20.0]
    assert ocr._mini_box(got).tolist() == [[20, 3], [40, 3], [40, 8], [20, 8]]


def test_regions_are_8_connected_in_order_of_their_first_pixel():
    m = np.zeros((10, 12), bool)
    m[1:3, 6:9] = True  # A: first pixel (6, 1)
    m[3:5, 9:11] = True  # touches A only at a corner (8, 2)-(9, 3): 8-connected, one region
    m[6:9, 1:3] = True  # B: apart
    m[8, 5] = True  # C: one pixel, apart from B by a gap of two columns
    regions = ocr._regions(m)
    assert len(regions) == 3
    a, b, c = ({tuple(p) for p in r.tolist()} for r in regions)
    assert (6, 1) in a and (10, 4) in a and (8, 2) in a and (9, 3) in a
    assert {(1, 6), (2, 8)} <= b and all(x <= 2 for x, _ in b)
    assert c == {(5, 8)}
    # 4-connectivity would have split A: the diagonal touch is what joins it
    m2 = m.copy()
    m2[3:5, 9:11] = False
    m2[3, 10] = True  # no corner contact with A (its last pixel is (8, 2))
    assert len(ocr._regions(m2)) == 4
    # a run touching the row above only at its corner, on either side, joins it
    for upper, lower in (((0, 3), (1, 2)), ((0, 0), (1, 1)), ((0, 5), (1, 2))):
        m3 = np.zeros((2, 6), bool)
        m3[upper], m3[lower] = True, True
        assert len(ocr._regions(m3)) == (2 if upper == (0, 5) else 1), (upper, lower)


def test_db_boxes_of_a_drawn_map_give_the_drawn_rectangle_grown():
    det = TextDetection()
    pm = np.zeros((64, 96), np.float32)
    pm[20:30, 10:70] = 0.9  # one line: 60 x 10 map pixels
    boxes, scores = ocr.db_boxes(pm, 64 * 2, 96 * 2, det)
    # dilated one pixel down and right: pixel centres x 10..70, y 20..30, a 60 x 10 rectangle whose
    # mean score counts its last row and column (zeros): 0.9 * 600 / 671
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9 * 600 / 671, abs=1e-6)
    # grown by area * 1.6 / perimeter = 6.857 on each side, mapped to a page twice the map's size
    assert boxes[0].tolist() == [[6, 26], [154, 26], [154, 74], [6, 74]]
    pm[20:30, 10:70] = 0.45  # over thresh, its mean under box_thresh: no box
    assert ocr.db_boxes(pm, 64, 96, det) == ([], [])


# ---------------------------------------------------------------- CTC, reading order
def test_ctc_decode_merges_repeats_drops_blanks_and_means_the_kept_maxima():
    chars = ("blank", "a", "b", "c")
    seq = [0, 1, 1, 0, 1, 2, 2, 0, 3]
    best = [0.9, 0.8, 0.6, 0.7, 0.5, 0.95, 0.4, 0.99, 0.7]
    logits = np.full((1, len(seq), 4), 0.01, np.float32)
    for t, (k, p) in enumerate(zip(seq, best)):
        logits[0, t, k] = p
    (text, score), = ocr.ctc_decode(logits, chars)
    assert text == "aabc"
    # the first step of each run counts: a at 1, a at 4, b at 5, c at 8
    assert score == pytest.approx(np.mean([0.8, 0.5, 0.95, 0.7]), abs=1e-6)
    empty = np.zeros((1, 3, 4), np.float32)
    empty[0, :, 0] = 1
    assert ocr.ctc_decode(empty, chars) == [("", 0.0)]


def _box(x: float, y: float) -> np.ndarray:
    return np.array([[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]], np.float32)


def test_reading_order_swaps_within_10_pixels_only():
    # the second box is 9 px lower but left of the first: read first
    assert ocr._reading_order([_box(200, 100), _box(10, 109)]) == [1, 0]
    # 10 px lower: another line, read after
    assert ocr._reading_order([_box(200, 100), _box(10, 110)]) == [0, 1]
    # sorted by (y, x) first
    assert ocr._reading_order([_box(10, 300), _box(10, 100), _box(300, 200)]) == [1, 2, 0]


# ---------------------------------------------------------------- measures
def test_cer_box_iou_and_match_lines():
    assert ocr.cer("abc", "abc") == 0.0
    assert ocr.cer("abc", "abd") == pytest.approx(1 / 3)
    assert ocr.cer("abcd", "ab") == pytest.approx(0.5)
    assert ocr.cer("", "") == 0.0 and ocr.cer("", "x") == 1.0
    assert ocr.edits("kitten", "sitting") == 3
    a = [[0, 0], [10, 0], [10, 10], [0, 10]]
    b = [[5, 0], [15, 0], [15, 10], [5, 10]]
    assert ocr.box_iou(a, a) == 1.0
    assert ocr.box_iou(a, b) == pytest.approx(50 / 150)
    assert ocr.box_iou(a, [[20, 20], [30, 20], [30, 30], [20, 30]]) == 0.0
    ref = [{"box": a}, {"box": [[0, 50], [10, 50], [10, 60], [0, 60]]}]
    got = [{"box": [[0, 51], [10, 51], [10, 61], [0, 61]]}, {"box": b}, {"box": [[90, 90], [99, 90], [99, 99], [90, 99]]}]
    pairs = ocr.match_lines(ref, got)
    assert pairs[0][:2] == (1, 0) and pairs[0][2] == pytest.approx(9 / 11)
    assert pairs[1][:2] == (0, 1) and pairs[1][2] == pytest.approx(1 / 3)
    assert pairs[2:] == [(None, 2, 0.0)]
    # IoU 0.3 or less pairs nothing
    c = [[7, 0], [17, 0], [17, 10], [7, 10]]  # IoU 3/17 with a
    assert ocr.match_lines([{"box": a}], [{"box": c}]) == [(0, None, 0.0), (None, 0, 0.0)]


# ---------------------------------------------------------------- images
def test_crop_of_an_axis_aligned_box_is_the_slice():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (60, 90, 3)).astype(np.uint8)
    box = np.array([[12, 7], [70, 7], [70, 31], [12, 31]], np.float32)
    got = ocr.crop(img, box)
    assert got.shape == (24, 58, 3)
    assert np.abs(got.astype(int) - img[7:31, 12:70].astype(int)).max() <= 1
    tall = np.array([[5, 2], [15, 2], [15, 40], [5, 40]], np.float32)
    t = ocr.crop(img, tall)  # 1.5 times taller than wide: turned by 90 degrees
    assert t.shape == (10, 38, 3)
    assert np.abs(t.astype(int) - np.rot90(img[2:40, 5:15]).astype(int)).max() <= 1


def test_resize_is_exact_on_integer_ratios_and_half_pixel_centred():
    img = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10
    assert np.array_equal(ocr.resize(img, 4, 2), img)
    down = ocr.resize(img, 2, 1)  # each output pixel the mean of a 2x2 block (centre at 0.5, 0.5)
    want = img.reshape(1, 2, 2, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.array_equal(down, np.rint(want).astype(np.uint8))


def test_prepare_page_letterboxes_a_wide_page():
    det = TextDetection()
    img = np.full((40, 400, 3), 200, np.uint8)
    page, mapping = ocr.prepare_page(img, det)
    # wider than 8 x its height: padded to 2 x max(400 / 8, 30) = 100 rows, the image in the middle
    assert page.shape == (100, 400, 3) and mapping == {"ratio_h": 1.0, "ratio_w": 1.0, "top": 30}
    assert not page[:30].any() and not page[70:].any() and (page[30:70] == 200).all()
    page2, m2 = ocr.prepare_page(np.full((100, 400, 3), 9, np.uint8), det)  # 4:1, high enough: as it is
    assert page2.shape == (100, 400, 3) and m2["top"] == 0
    x = ocr.det_input(page, det)  # the short side to 736, both sides multiples of 32
    assert x.shape == (1, 3, 736, 2944) and x.dtype == np.float32


def test_recognition_batches_are_as_wide_as_their_widest_crop():
    rec = TextRecognition(batch=2)
    crops = [np.zeros((48, w, 3), np.uint8) for w in (100, 600, 200)]
    batches = ocr.recognition_batches(crops, rec)
    assert [idx for idx, _ in batches] == [[0, 2], [1]]
    assert batches[0][1].shape == (2, 3, 48, 320) and batches[1][1].shape == (1, 3, 48, 600)


# ---------------------------------------------------------------- against RapidOCR's own code
_MISSING = [m for m in ("cv2", "pyclipper", "shapely", "rapidocr_onnxruntime") if importlib.util.find_spec(m) is None]
needs_rapidocr = pytest.mark.skipif(bool(_MISSING), reason=f"compares with RapidOCR's own code: needs {', '.join(_MISSING)} "
                                    "(pip install --no-deps rapidocr-onnxruntime opencv-python-headless pyclipper shapely)")


@pytest.fixture(scope="module")
def rapid_page():
    from rapidocr_onnxruntime import RapidOCR

    from edgeship.tasks.pages import text_pages

    eng = RapidOCR()
    (rgb, _), = text_pages(1, seed=3737)
    page, _ = ocr.prepare_page(np.ascontiguousarray(rgb[..., ::-1]), TextDetection())
    pred = eng.text_det.infer(ocr.det_input(page, TextDetection()))[0]
    return eng, page, pred


@needs_rapidocr
def test_db_boxes_within_a_pixel_of_dbpostprocess_on_a_real_map(rapid_page):
    eng, page, pred = rapid_page
    det = TextDetection()
    want, _ = eng.text_det.postprocess_op(pred, page.shape[:2])
    want = eng.sorted_boxes(eng.text_det.filter_tag_det_res(want, page.shape[:2]))
    got, _ = ocr.db_boxes(pred, page.shape[0], page.shape[1], det)
    assert len(got) == len(want) >= 4
    # measured: every corner within 1 pixel (half of them off by one: the grown rectangle stands
    # for pyclipper's rounded offset and a second cv2.minAreaRect of its integer points)
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(want, got)) <= 1


@needs_rapidocr
def test_resize_within_one_level_of_cv2(rapid_page):
    import cv2

    _, page, _ = rapid_page
    for w, h in ((992, 736), (317, 211), (100, 48)):
        d = np.abs(cv2.resize(page, (w, h)).astype(int) - ocr.resize(page, w, h).astype(int))
        assert d.max() <= 1  # cv2 weighs in fixed point, the glue in float64


@needs_rapidocr
def test_crop_of_an_axis_aligned_box_is_cv2s(rapid_page):
    eng, page, _ = rapid_page
    box = np.array([[31, 40], [301, 40], [301, 75], [31, 75]], np.float32)
    (want,) = eng.get_crop_img_list(page, [box.copy()])
    assert np.array_equal(ocr.crop(page, box), want)


@needs_rapidocr
def test_crop_of_a_slanted_box_within_one_level_of_cv2s(rapid_page):
    eng, page, _ = rapid_page
    for k, box in enumerate(np.array([[[30, 40], [300, 47], [299, 80], [29, 73]],
                                      [[100, 120], [420, 112], [421, 150], [101, 158]]], np.float32)):
        (want,) = eng.get_crop_img_list(page, [box.copy()])
        got = ocr.crop(page, box)
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, f"box {k}"
