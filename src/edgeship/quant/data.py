"""Calibration and evaluation data: an image folder, a .npy/.npz file, or a Python callable.

Each sample is a tuple of arrays with a batch axis of 1, in the order of the model's inputs.
Images go through the model's own preprocessing. In an image folder whose sub-folders are named
after the model's labels (``cat/1.jpg``), the folder names become ground-truth labels, so label
accuracy is measured beside agreement with fp32.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, UsageError

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

Samples = list[tuple[np.ndarray, ...]]


def load_samples(spec: str | None, source: Source, limit: int, purpose: str) -> tuple[Samples, list[int] | None]:
    """(samples, ground-truth label indices or None). ``spec`` None: the source's own defaults,
    kept apart (calibration: augmented crops with one seed; evaluation: photos + crops, another)."""
    if spec is None:
        s = source.calibration_inputs(limit) if purpose == "calibration" else source.evaluation_inputs(limit)
        return s, None
    p = Path(spec)
    if p.is_dir():
        return _image_folder(p, source, limit, purpose)
    if p.is_file():
        from ..data import load_arrays

        return _split_arrays(load_arrays(p), source, limit, str(p)), None
    if ":" in spec:
        return _callable(spec, source, limit), None
    raise InputError(f"no such {purpose} data: {spec}",
                     hint="give an image folder, a .npy/.npz file, or a callable 'package.module:function'")


def calibration_samples(source: Source, cfg: DeployConfig) -> Samples:
    """Static-quantisation inputs for any target: ``--calib`` data when given, else the source's own
    calibration inputs (augmented crops, kept apart from the evaluation inputs); ``--calib-samples``."""
    return load_samples(getattr(cfg, "calib", None), source, int(getattr(cfg, "calib_samples", 128)), "calibration")[0]


def _image_folder(folder: Path, source: Source, limit: int, purpose: str) -> tuple[Samples, list[int] | None]:
    from ..data import preprocess_image

    if source.preprocess is None or len(source.inputs) != 1:
        raise UsageError(f"an image folder as {purpose} data needs an image model with preprocessing",
                         hint="give a .npy/.npz file or a callable instead")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise InputError(f"{folder} holds no images", hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    files = files[:limit]
    samples = [(preprocess_image(f, source.preprocess),) for f in files]
    labels = None
    if source.labels:
        index = {lab.lower(): i for i, lab in enumerate(source.labels)}
        for i, lab in enumerate(source.labels):  # 'tabby, tabby cat' also answers to 'tabby'
            for alias in lab.lower().split(","):
                index.setdefault(alias.strip(), i)
        found = [index.get(f.parent.name.lower(), index.get(f.parent.name.lower().replace("_", " "))) for f in files]
        if all(x is not None for x in found) and any(f.parent != folder for f in files):
            labels = [int(x) for x in found]  # type: ignore[arg-type]
    return samples, labels


def _split_arrays(arrays: dict[str, np.ndarray], source: Source, limit: int, where: str) -> Samples:
    names = [i.name for i in source.inputs]
    if len(arrays) == 1 and len(names) == 1:
        cols = [next(iter(arrays.values()))]
    else:
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputError(f"{where} has arrays {sorted(arrays)}, the model takes {names}",
                             hint="name each array in the .npz after a model input")
        cols = [arrays[n] for n in names]
    n = min(len(c) for c in cols)
    if any(len(c) != n for c in cols):
        raise InputError(f"{where}: the arrays hold different numbers of samples ({[len(c) for c in cols]})")
    for spec, c in zip(source.inputs, cols):
        if not spec.fits((1, *c.shape[1:])):
            raise InputError(f"{where}: samples of {spec.name!r} have shape {c.shape[1:]}, the model takes {spec.shape[1:]}",
                             hint="the first axis counts samples; the rest must fit the model input")
    return [tuple(np.ascontiguousarray(c[i:i + 1]).astype(s.dtype) for c, s in zip(cols, source.inputs))
            for i in range(min(n, limit))]


def _callable(ref: str, source: Source, limit: int) -> Samples:
    mod, _, attr = ref.rpartition(":")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise InputError(f"cannot load data callable {ref!r}: {e}") from None
    out: Samples = []
    for item in fn():
        if len(out) >= limit:
            break
        if isinstance(item, dict):
            item = tuple(item[i.name] for i in source.inputs)
        elif not isinstance(item, (tuple, list)):
            item = (item,)
        arrs = tuple(np.asarray(a) for a in item)
        arrs = tuple(a[None] if a.ndim == len(s.shape) - 1 else a for a, s in zip(arrs, source.inputs))
        out.append(arrs)
    if not out:
        raise InputError(f"data callable {ref!r} yielded no samples")
    return out
