"""A tiny OCR pipeline for the tests, built on the fly as ONNX files (no downloads, no torch):
a detector that marks dark strokes smeared along the line, a direction classifier and a CTC
recogniser over ten characters, each a handful of ONNX ops with fixed or seeded weights. Their
text is not English, but it is deterministic: what the tests check is that the glue, the
release and every port of the glue read the same from the same model outputs.

``write_tiny_ocr(folder)`` writes det.onnx, cls.onnx, rec.onnx, characters.txt and
pipeline.yaml (det, cls, rec; ``stages=("det", "rec")`` for a two-stage one) and returns the
yaml's path."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHARACTERS = tuple("abcdefghij")
OPSET = 18


def _model(nodes: list, inputs: list, outputs: list, inits: list[np.ndarray | tuple[str, np.ndarray]], name: str,
           meta: dict[str, str] | None = None) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(a, n) for n, a in inits]
    g = helper.make_graph(nodes, name, inputs, outputs, tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeship-tests")
    m.ir_version = 8
    for k, v in (meta or {}).items():
        m.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(m)
    return m


def tiny_det() -> onnx.ModelProto:
    """[N, 3, H, W] -> [N, 1, H, W]: 1 where the page is dark over a 5x21 window (a line of text)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", 1, "H", "W"])
    k = np.full((1, 3, 5, 21), 1.0 / (3 * 5 * 21), np.float32)
    nodes = [helper.make_node("Conv", ["x", "k"], ["m"], pads=[2, 10, 2, 10]),
             helper.make_node("Mul", ["m", "a"], ["s"]), helper.make_node("Add", ["s", "b"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["maps"])]
    return _model(nodes, [x], [y], [("k", k), ("a", np.array(-14.0, np.float32)), ("b", np.array(9.0, np.float32))],
                  "tiny_det")


def tiny_cls() -> onnx.ModelProto:
    """[N, 3, 48, 192] -> [N, 2] scores: is the ink heavier at the bottom (a line upside down)?"""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 48, 192])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])
    w = np.zeros((2, 3, 48, 1), np.float32)
    w[1, :, :24, 0], w[1, :, 24:, 0] = 1.0, -1.0
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["r"], keepdims=1),
             helper.make_node("Conv", ["r", "w"], ["c"]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Mul", ["f", "t"], ["g"]),
             helper.make_node("Softmax", ["g"], ["scores"], axis=1)]
    return _model(nodes, [x], [y], [("axes", np.array([3], np.int64)), ("w", w), ("t", np.array(0.05, np.float32))],
                  "tiny_cls")


def tiny_rec(seed: int = 0) -> onnx.ModelProto:
    """[N, 3, 48, W] -> [N, W/8, 12] CTC scores (blank, ten characters, space) from each 48x8
    column's colour, seeded weights; the character list rides in the metadata like PaddleOCR's."""
    rng = np.random.default_rng(seed)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 48, "W"])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", "T", len(CHARACTERS) + 2])
    w = rng.normal(0, 3.0, (len(CHARACTERS) + 2, 3, 48, 8)).astype(np.float32) / 48
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[48, 8]),  # [N, C, 1, W/8]
             helper.make_node("Squeeze", ["c", "ax2"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Softmax", ["t"], ["probs"], axis=2)]
    return _model(nodes, [x], [y], [("w", w), ("ax2", np.array([2], np.int64))], "tiny_rec",
                  meta={"character": "\n".join(CHARACTERS)})


PIPELINE_YAML = """\
# a tiny OCR pipeline (tests/tinyocr.py)
name: tiny-ocr
kind: ocr
models:
  det:
    model: det.onnx
    task: {{kind: text_detection, limit_side_len: 96, box_thresh: 0.3}}
{cls}  rec:
    model: rec.onnx
    task: {{kind: text_recognition, text_score: 0.0}}
"""
CLS_YAML = """\
  cls:
    model: cls.onnx
    task: {kind: text_direction}
"""


def write_tiny_ocr(folder: Path, stages: tuple[str, ...] = ("det", "cls", "rec")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(tiny_det(), folder / "det.onnx")
    onnx.save(tiny_cls(), folder / "cls.onnx")
    onnx.save(tiny_rec(), folder / "rec.onnx")
    (folder / "characters.txt").write_text("".join(c + "\n" for c in CHARACTERS))
    path = folder / "pipeline.yaml"
    path.write_text(PIPELINE_YAML.format(cls=CLS_YAML if "cls" in stages else ""))
    return path


def tiny_page(seed: int = 0, lines: int = 3, size: tuple[int, int] = (120, 200)) -> np.ndarray:
    """An RGB page with a few dark lines of text on a light background."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    h, w = size
    im = Image.new("RGB", (w, h), (235, 235, 230))
    d = ImageDraw.Draw(im)
    font = ImageFont.load_default(16)
    y = 10
    for _ in range(lines):
        text = "".join(rng.choice("abcdefghij ") for _ in range(rng.randint(5, 12))).strip() or "abc"
        d.text((rng.randint(5, 40), y), text, font=font, fill=(20, 20, 30))
        y += rng.randint(30, 36)
    return np.asarray(im)
