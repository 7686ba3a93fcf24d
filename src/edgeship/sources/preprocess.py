"""``--preprocess``: the preprocessing a user states for a model (presets, key=value pairs or a
JSON file), checked against the model's inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifact import Preprocess, TensorSpec
from ..errors import UsageError
from ..readers import read_json

_PRESETS = {
    "imagenet": {"mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)},
    "tflite": {"mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0)},
    "unit": {"mean": (0.0, 0.0, 0.0), "std": (255.0, 255.0, 255.0)},
}
_PRE_KEYS = {"input", "size", "height", "width", "layout", "color", "mean", "std", "crop", "crop_fraction",
             "resample", "output", "dtype"}


def parse_preprocess(spec: str | Preprocess, inputs: Sequence[TensorSpec]) -> Preprocess:
    """``--preprocess``: a JSON file of :class:`Preprocess` fields, or ``key=value`` pairs with presets
    (``imagenet``, ``tflite`` = (x-127)/128, ``unit`` = x/255); the input, its layout and size default
    to what the model's image input shows."""
    if isinstance(spec, Preprocess):
        return spec
    text = str(spec).strip()
    values: dict[str, Any] = {}
    p = Path(text)
    if text.endswith(".json") or (p.exists() and "=" not in text):
        values = read_json(p, "--preprocess file", max_bytes=1 << 20,
                           hint="a JSON object of preprocessing fields, e.g. {\"mean\": 127, \"std\": 128}")
        if not isinstance(values, dict):
            raise UsageError(f"--preprocess {text} must hold an object of preprocessing fields")
    else:
        for part in (x.strip() for x in text.split(",") if x.strip()):
            key, eq, val = part.partition("=")
            key = key.strip().lower().replace("-", "_")
            if not eq:
                if key not in _PRESETS:
                    raise UsageError(f"--preprocess: unknown preset {key!r}",
                                     hint=f"presets: {', '.join(_PRESETS)}; or key=value pairs like mean=127,std=128")
                values.update(_PRESETS[key])
                continue
            if key not in _PRE_KEYS:
                raise UsageError(f"--preprocess: unknown key {key!r}", hint=f"keys: {', '.join(sorted(_PRE_KEYS))}")
            val = val.strip()
            if key in ("mean", "std"):
                nums = [float(x) for x in val.replace(":", "/").split("/") if x.strip()] if val else []
                if len(nums) not in (1, 3):
                    raise UsageError(f"--preprocess {key}={val}: give one number or three (a/b/c)")
                values[key] = tuple(nums * 3 if len(nums) == 1 else nums)
            elif key in ("size", "height", "width"):
                values[key] = val
            elif key in ("crop", "crop_fraction"):
                values["crop_fraction"] = val
            elif key in ("layout", "color"):
                values[key] = val.upper()
            else:
                values[key] = val
    if "size" in values:
        size = str(values.pop("size")).lower().replace("x", ",").split(",")
        try:
            hw = [int(x) for x in size if x.strip()]
        except ValueError:
            hw = []
        if not hw:
            raise UsageError(f"--preprocess size={','.join(size)[:40]!r}: give H or HxW, e.g. size=224") from None
        values.setdefault("height", hw[0])
        values.setdefault("width", hw[-1])
    image_inputs = [i for i in inputs if len(i.shape) == 4]
    if "input" not in values:
        if len(image_inputs) != 1:
            raise UsageError("--preprocess: say which input it feeds (input=NAME)",
                             hint=f"the model's inputs: {', '.join(i.name for i in inputs) or 'none known'}")
        values["input"] = image_inputs[0].name
    target = next((i for i in inputs if i.name == values["input"]), None)
    if inputs and target is None:
        raise UsageError(f"--preprocess input={values['input']}: the model has no such input",
                         hint=f"its inputs: {', '.join(i.name for i in inputs)}")
    if target is not None and len(target.shape) == 4:
        shape = target.shape
        if "layout" not in values:
            values["layout"] = "NHWC" if shape[3] == 3 and shape[1] != 3 else "NCHW"
        h_at = 1 if values["layout"] == "NHWC" else 2
        for key, at in (("height", h_at), ("width", h_at + 1)):
            if key not in values and isinstance(shape[at], int):
                values[key] = shape[at]
    try:
        return Preprocess(**values)
    except ValueError as e:
        errs = getattr(e, "errors", lambda: [])()
        first = errs[0] if errs else {"loc": (), "msg": str(e)}
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise UsageError(f"--preprocess: {where or 'value'}: {str(first.get('msg')).removeprefix('Value error, ')}",
                         hint="e.g. --preprocess 'imagenet,size=224' or --preprocess 'mean=127,std=128'") from None
