"""``load_source``: a built-in name, a factory or a model file (by its bytes) as a :class:`Source`,
with the preprocessing and labels the user stated."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artifact import Preprocess, sha256_file
from ..errors import FormatError, InputError, UsageError
from .labels import read_labels
from .model import Source
from .onnx import onnx_source
from .preprocess import parse_preprocess
from .pt2 import pt2_source
from .sniff import sniff_format
from .torch import checkpoint_source, from_factory

BUILTIN_MODELS = {"efficientnet-lite0": "edgeship.sources.default:efficientnet_lite0"}


def load_source(
    spec: str,
    *,
    input_shapes: Sequence[Sequence[int]] | None = None,
    input_dtypes: Sequence[str] | None = None,
    weights: str | Path | None = None,
    allow_pickle: bool = False,
    dynamic_batch: bool = True,
    input_ranges: Sequence[tuple[float, float]] | dict[str, tuple[float, float]] | None = None,
    input_values: dict[str, Sequence[float]] | None = None,
    preprocess: str | Preprocess | None = None,
    labels: str | Path | Sequence[str] | None = None,
    task: str | Any = None,
) -> Source:
    """Load ``spec`` (a built-in name, a factory or a model file) as a :class:`Source`.

    ``input_shapes`` are in input order, or a dict by input name (``()`` a scalar); ``input_ranges``
    (``[low, high)`` per input, one for all, or a dict by name) are the values random inputs are
    drawn from; integer inputs read by an embedding default to its rows (said in ``Source.notes``);
    ``input_values`` (by name) the only values an input takes (a sample rate). A shape, range or
    value given for an input the model does not have is a UsageError.
    ``preprocess`` (a spec, a JSON file or a :class:`Preprocess`) and ``labels`` (a file or a list)
    state what a model file does not carry; they replace what it does. ``task`` (a task record,
    its JSON or a .json file; :mod:`edgeship.tasks`) travels into every artifact's record."""
    if task is not None:
        return dataclasses.replace(_load(spec, input_shapes, input_dtypes, weights, allow_pickle, dynamic_batch,
                                         input_ranges, input_values, preprocess, labels), task=_task(task))
    return _load(spec, input_shapes, input_dtypes, weights, allow_pickle, dynamic_batch, input_ranges, input_values,
                 preprocess, labels)


def _task(task: Any) -> Any:
    from ..readers import read_json
    from ..tasks.records import parse_task

    if isinstance(task, str) and not task.lstrip().startswith("{"):
        return parse_task(read_json(task, "task record"), task)
    return parse_task(task, "--task") if isinstance(task, (str, dict)) else task


def _load(spec: str, input_shapes: Any, input_dtypes: Any, weights: Any, allow_pickle: bool, dynamic_batch: bool,
          input_ranges: Any, input_values: Any, preprocess: Any, labels: Any) -> Source:
    ranges: Any = (dict(input_ranges) if isinstance(input_ranges, dict) else list(input_ranges)) if input_ranges else None
    values = dict(input_values) if input_values else None
    if spec in BUILTIN_MODELS:
        src = from_factory(BUILTIN_MODELS[spec], spec, input_shapes, input_dtypes, weights, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    path = Path(spec)
    if path.exists():
        if weights is not None:
            raise UsageError("--weights goes with a factory 'pkg.module:fn', not with a model file")
        src = _from_file(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    if ":" in spec:
        src = from_factory(spec, spec, input_shapes, input_dtypes, weights, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    raise InputError(
        f"no such model file: {spec}",
        hint=f"give a model file, a factory 'package.module:function', or a built-in name ({', '.join(BUILTIN_MODELS)})",
    )


def with_preprocess_and_labels(src: Source, preprocess: Any = None, labels: Any = None) -> Source:
    """The source with the preprocessing and labels the user stated (they win over the file's own)."""
    if preprocess is None and labels is None:
        return src
    pre = parse_preprocess(preprocess, src.inputs) if preprocess is not None else src.preprocess
    labs = read_labels(labels, src.outputs) if labels is not None else src.labels
    notes = list(src.notes)
    if preprocess is not None:
        notes.append("preprocessing as given with --preprocess")
    if labels is not None:
        notes.append(f"{len(labs or ())} labels as given with --labels")
    inputs = tuple(i.model_copy(update={"layout": pre.layout}) if pre and pre.input == i.name else i for i in src.inputs)
    return dataclasses.replace(src, preprocess=pre, labels=labs, inputs=inputs, notes=tuple(notes))


def _from_file(path: Path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    kind = sniff_format(path)
    if kind == "onnx":
        if input_dtypes:
            raise UsageError(f"--input-dtype does not apply to {path.name}: an ONNX file declares its input types",
                             hint="leave --input-dtype out")
        return onnx_source(path, ranges, input_shapes, values)
    if kind == "tflite":
        return Source(name=path.stem, kind="tflite", origin=str(path), digest=sha256_file(path),
                      inputs=(), outputs=(), path=path,
                      notes=("a .tflite file is run, analysed and benchmarked as it is; edgeship does not convert from it",))
    if kind == "pt2":
        return pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
    if kind in ("torch-zip", "torch-pickle"):
        return checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
    raise FormatError(f"{path} is a numpy array file, not a model",
                      hint="give it as calibration or evaluation data instead")
