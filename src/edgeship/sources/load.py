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
    record = _task(task) if task is not None else None
    if record is not None and getattr(record, "kind", None) == "voice_activity":
        input_shapes, input_values = _stream_inputs(spec, record, input_shapes, input_values)
    src = _load(spec, input_shapes, input_dtypes, weights, allow_pickle, dynamic_batch, input_ranges, input_values,
                preprocess, labels)
    record = record if record is not None else src.task  # the user's record wins over the factory's
    if record is None:
        return src
    return with_task(src, record)


def _stream_inputs(spec: str, task: Any, shapes: Any, values: Any) -> tuple[Any, Any]:
    """An ONNX file's input shapes and values as its stream task declares them, where the user
    gave none: the audio input [1, context + chunk], the rate input the task's sample rate (one
    value: the model is specialised for it, :func:`edgeship.sources.onnx._fold_constant_inputs`).
    Only for inputs the file has; other sources (factories) give their own example inputs."""
    path = Path(spec)
    if not path.is_file() or sniff_format(path) != "onnx" or isinstance(shapes, (list, tuple)):
        return shapes, values
    from ..readers.onnx import parse_onnx

    graph = parse_onnx(path).graph
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    shapes = dict(shapes or {})
    values = dict(values or {})
    if task.audio_input in names and task.audio_input not in shapes:
        shapes[task.audio_input] = (1, task.context + task.chunk)
    if task.rate_input and task.rate_input in names and task.rate_input not in values:
        values[task.rate_input] = [task.sample_rate]
    return shapes or None, values or None


def with_task(src: Source, task: Any) -> Source:
    """``src`` with its task record, checked against the model: the inputs and outputs it names
    exist; an embedding's WordPiece vocabulary read (``tokenizer.json`` or ``vocab.txt``: its
    rules and digest go into the record) and, for a model whose factory gives no tokenizer, the
    tokenizer text data goes through."""
    names = [i.name for i in src.inputs]
    outs = [o.name for o in src.outputs]
    kind = getattr(task, "kind", None)
    where = f"the task record of {src.name}"
    if kind == "voice_activity":
        if task.audio_input not in names:
            raise FormatError(f"{where}: audio_input {task.audio_input!r} is not an input of the model "
                              f"(inputs: {', '.join(names)})", hint="set audio_input to the model's audio input")
        for out, inp in task.carry.items():
            if out not in outs or inp not in names:
                raise FormatError(f"{where}: carry {out!r} -> {inp!r}: the model has outputs {', '.join(outs)} and "
                                  f"inputs {', '.join(names)}",
                                  hint='name an output and the input it feeds on the next call, like {"stateN": "state"}')
        if task.probability is not None and task.probability not in outs:
            raise FormatError(f"{where}: probability {task.probability!r} is not an output (outputs: {', '.join(outs)})")
        extra = [n for n in names if n != task.audio_input and n not in task.carry.values() and n != task.rate_input]
        if extra:
            raise FormatError(f"{where}: the model's input(s) {', '.join(extra)} are neither the audio, the rate nor "
                              "a carried state", hint="name them in carry (output -> input) or rate_input")
    tokenize = src.tokenize
    if kind == "embedding" and task.tokenizer == "wordpiece":
        from ..readers.tokenizer import read_tokenizer
        from ..tasks.text import WordPiece

        vocab, fields = read_tokenizer(task.vocabulary)
        given = {k: getattr(task, k) for k in task.model_fields_set if k != "vocabulary"}
        task = type(task).model_validate({**task.model_dump(), **fields, **given,
                                          "vocabulary": str(Path(task.vocabulary).resolve())})
        for n in (task.ids_input, task.mask_input, task.type_input):
            if n is not None and n not in names:
                raise FormatError(f"{where}: {n!r} is not an input of the model (inputs: {', '.join(names)})",
                                  hint="set ids_input / mask_input / type_input to the model's input names (null: none)")
        if tokenize is None:
            tokenize = WordPiece(vocab, task).batch
    return dataclasses.replace(src, task=task, tokenize=tokenize)


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
