"""Issue 37's "done when" figures: the OCR pipeline against RapidOCR's own Python code.

On a held-out set of rendered text (:func:`held_out_set`: pages and single lines in fonts the
calibration pages never use, several sizes, some turned by 180 degrees, a few with mild noise;
ground truth = the rendered strings):

1. RapidOCR itself (``rapidocr_onnxruntime.RapidOCR()``, default config, its original models),
2. edgeship's glue (``edgeship.tasks.ocr.read_page``) on onnxruntime sessions of the same model
   files ("ours", the fp32 pipeline every shipped precision is compared with),
3. a shipped pipeline bundle (``--bundle DIR``) through ``edgeship.runtime.Pipeline``,
4. the bundle's web page in Chromium (``--browser``).

Run (RapidOCR needs cv2, pyclipper and shapely; edgeship itself never imports it)::

    .venv/bin/python benchmarks/check_ocr_pipeline.py                 # RapidOCR vs ours
    .venv/bin/python benchmarks/check_ocr_pipeline.py --bundle DIR    # + a bundle's artifact sets
    .venv/bin/python benchmarks/check_ocr_pipeline.py --save DIR      # write the set's images

CER is the edit distance over the reference's characters, summed over a set; against the truth
each recognised line is assigned to the drawn line it overlaps most (split lines joined in
reading order), against another reader lines are paired by box IoU (``tasks.ocr.match_lines``):
an unpaired line counts all its characters.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import real_inputs as ri  # noqa: E402

#: the held-out set's seed: 37xx, used by nothing else (the calibration pages are drawn with
#: edgeship.tasks helpers, DejaVu fonts and their own seeds)
SEED = 3701

# (set, count, page size (h, w) or None for a single line, turned by 180, noisy)
LAYOUT = (
    ("pages", 3, (480, 640), False, False),
    ("pages", 1, (640, 480), False, False),
    ("turned", 1, (480, 640), True, False),
    ("turned", 1, (360, 800), True, False),
    ("noisy", 1, (480, 640), False, True),
    ("noisy", 1, (480, 640), True, True),
    ("lines", 5, None, False, False),
    ("lines", 3, None, True, False),
    ("lines", 2, None, False, True),
)
SETS = ("pages", "turned", "noisy", "lines")


@dataclass
class Sample:
    name: str
    set: str
    rgb: np.ndarray
    truth: list[tuple[str, list[list[float]]]]  # each drawn line's text and ink box, in the image
    turned: bool
    noisy: bool


def held_out_set(seed: int = SEED) -> list[Sample]:
    """The held-out images, reproducible from ``seed``: 8 pages (480x640, 640x480, 360x800; two
    turned by 180 degrees, two with mild noise, one of them turned) and 10 single lines (three
    turned, two noisy), Liberation fonts at 16-40 px."""
    out: list[Sample] = []
    k = 0
    for set_name, count, size, turned, noisy in LAYOUT:
        for _ in range(count):
            rng = random.Random(seed * 1000 + k)
            if size is None:
                (text,) = ri.phrases(1, seed=seed * 1000 + k, max_chars=rng.choice((12, 18, 30)))
                rgb, box = ri.render_text_line(text, rng)
                truth = [(text, box)]
            else:
                rgb, truth = ri.render_text_page(ri.phrases(12, seed=seed * 1000 + k, max_chars=30), rng, size=size)
            if noisy:
                rgb = ri.mild_noise(rgb, rng)
            if turned:
                rgb, boxes = ri.turn_180(rgb, [b for _, b in truth])
                truth = [(t, b) for (t, _), b in zip(truth, boxes)]
            out.append(Sample(f"{set_name}-{k:02d}", set_name, rgb, truth, turned, noisy))
            k += 1
    return out


def save_set(samples: list[Sample], folder: Path) -> None:
    """Each image as PNG with its truth beside it (``truth.json``)."""
    import json

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        Image.fromarray(s.rgb).save(folder / f"{s.name}.png")
    (folder / "truth.json").write_text(json.dumps(
        {s.name: {"set": s.set, "turned": s.turned, "noisy": s.noisy,
                  "lines": [{"text": t, "box": b} for t, b in s.truth]} for s in samples}, indent=1))


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=SEED, help="the held-out set's seed")
    ap.add_argument("--save", type=Path, help="write the set's images and truth.json there, then stop")
    args = ap.parse_args(argv)
    samples = held_out_set(args.seed)
    if args.save:
        save_set(samples, args.save)
        n = sum(len(s.truth) for s in samples)
        print(f"{len(samples)} images, {n} lines -> {args.save}")
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
