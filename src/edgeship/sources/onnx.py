"""ONNX files: parsed with external data confined to the model's folder and every value vetted,
edgeship's own metadata (preprocessing, labels), the :class:`Source` of a file with its examples
(checked by running it once), and a model specialised for inputs given one value (kept in the
cache by content)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import cache
from .._util import check_example_size, confined, quiet
from ..artifact import Preprocess, TensorSpec, clean_labels, sha256_file, validation_detail
from ..errors import EdgeshipError, FormatError, InputError, UsageError
from ..formats.onnx import already_quantised, check_io, io_specs
from ..readers.onnx import parse_onnx
from .model import Source, onnx_reference_runner
from .ranges import DEFAULT_ID_RANGE, Ranges, by_name, draw, values_for


def load_onnx_model(path: Path, weights: bool = True) -> Any:
    """Parse an ONNX file; external data may only come from inside its folder. Every value the
    rest of edgeship reads from it is vetted here: external-data locations, offsets and lengths, the
    graph's input and output types and dimensions (:func:`edgeship.formats.onnx.check_io`).
    ``weights=False`` vets the same but leaves external data unread and skips the checker (a
    description of the file: ONNX Runtime checks the graph when it loads it)."""
    import onnx

    model = parse_onnx(path)
    if not model.graph.node and not model.graph.output:
        raise FormatError(f"{path} is not a valid ONNX model (no graph)",
                          hint="the file is corrupt or of another format; export it again")
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    root = path.parent
    size_of: dict[str, int] = {}
    for t in _get_all_tensors(model):
        if uses_external_data(t):
            info = {e.key: e.value for e in t.external_data}
            loc = info.get("location", "")
            target = confined(root, loc, f"{path}: external data of tensor {t.name!r}")
            if not target.is_file():
                raise FormatError(f"external data file {loc!r} of tensor {t.name!r} is missing",
                                  hint=f"keep it beside {path.name}")
            size = size_of.setdefault(loc, target.stat().st_size)
            end = _byte_count(info, "offset", t.name, path) + _byte_count(info, "length", t.name, path)
            if end > size:
                raise FormatError(f"external data of tensor {t.name!r} runs past the end of {loc!r}",
                                  hint="the data file is truncated; export the model again")
    try:
        if weights:
            onnx.load_external_data_for_model(model, str(root))
            onnx.checker.check_model(model)
    except Exception as e:
        raise FormatError(f"{path} is not a valid ONNX model: {str(e).splitlines()[0][:300]}",
                          hint="check it with onnx.checker; export it again") from None
    check_io(model, str(path))
    return model


def _byte_count(info: dict[str, str], key: str, tensor: str, path: Path) -> int:
    """An external-data ``offset`` or ``length`` (absent: 0): decimal digits only, nothing else."""
    raw = info.get(key, "")
    if raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
        raise FormatError(f"{path}: external data field {key!r} of tensor {tensor!r} is {raw[:40]!r}, not a byte count",
                          hint="the file is corrupt or hand-edited; export the model again")
    return int(raw)


def _onnx_embedding_readers(model: Any, inputs: Sequence[TensorSpec]) -> dict[int, tuple[str, int]]:
    """Graph input index -> (table, rows) for each Gather of a constant table by a graph input."""
    consts = {t.name: (tuple(t.dims)) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value" and a.t.dims:
                    consts[n.output[0]] = tuple(a.t.dims)
    index = {s.name: i for i, s in enumerate(inputs)}
    found: dict[int, tuple[str, int]] = {}
    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) >= 2 and n.input[1] in index and n.input[0] in consts:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            dims = consts[n.input[0]]
            if axis == 0 and dims:
                i, rows = index[n.input[1]], int(dims[0])
                if i not in found or rows < found[i][1]:
                    found[i] = (n.input[0], rows)
    return found


ONNX_METADATA_PREFIX = "edgeship."


def onnx_metadata(model: Any, path: Path) -> tuple[Preprocess | None, tuple[str, ...] | None, dict[str, str]]:
    """The preprocessing and labels edgeship embedded in an ONNX file's metadata (None where absent),
    and all of its ``edgeship.*`` entries; a malformed entry is a FormatError naming it."""
    meta = {p.key[len(ONNX_METADATA_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(ONNX_METADATA_PREFIX)}
    pre = labels = None
    if "preprocess" in meta:
        try:
            pre = Preprocess.model_validate_json(meta["preprocess"])
        except ValueError as e:
            raise FormatError(f"{path}: its metadata entry edgeship.preprocess is not valid preprocessing: "
                              f"{validation_detail(e)}",
                              hint="give --preprocess to state it, or export the model again") from None
    if "labels" in meta:
        try:
            raw = json.loads(meta["labels"])
        except (ValueError, RecursionError):
            raw = None
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise FormatError(f"{path}: its metadata entry edgeship.labels is not a JSON list of strings",
                              hint="give --labels labels.txt to state them, or export the model again")
        labels = clean_labels(raw)
    return pre, labels, meta


def onnx_source(path: Path, ranges: Any = None, shapes: Any = None, values: dict[str, Sequence[float]] | None = None) -> Source:
    model = load_onnx_model(path)
    folded = _fold_constant_inputs(path, model, shapes, values)
    if folded is not None:
        return folded
    quantised = already_quantised(model)
    inputs, outputs = io_specs(model)
    pre, labels, meta = onnx_metadata(model, path)
    if pre is not None and not any(i.name == pre.input for i in inputs):
        pre = None  # metadata of another graph: not ours to trust
    inputs = tuple(i.model_copy(update={"layout": pre.layout}) if pre and pre.input == i.name else i for i in inputs)
    names = [s.name for s in inputs]
    given = _shapes_for(shapes, inputs, path)
    rg = Ranges(names, [s.dtype for s in inputs], ranges)
    vals = values_for(values, names, [s.dtype for s in inputs])
    for i, (table, rows) in _onnx_embedding_readers(model, inputs).items():
        if i in rg.open():
            rg.embedding(i, table, rows)
    for i in rg.open():
        if not (i < len(vals) and vals[i]):
            rg.default(i, None)
    notes = list(rg.notes)
    examples = []
    for i, s in enumerate(inputs):
        v = vals[i] if i < len(vals) else None
        examples.append(_example_for_spec(s, rg.ranges[i], given[i], v))
        if v:
            notes.append(f"input {s.name!r}: takes {', '.join(f'{x:g}' for x in v)} (--input-value)")
        placeholder = [k for k, d in enumerate(s.shape) if not isinstance(d, int) and k > 0]
        if given[i] is None and placeholder:
            notes.append(f"input {s.name!r}: dynamic dims {', '.join(map(str, placeholder))} of {_dims(s.shape)} set to 1 for "
                         f"examples and random inputs (give --input-shape {s.name}=... for the real size)")
    examples_t = tuple(examples)
    outputs = _returned_outputs(path, inputs, outputs, examples_t, given, notes)
    if quantised:
        notes.append(f"already quantised ({quantised}): deployed as it is, verified against itself; no reduced "
                     "precision is built from it")
    return Source(name=path.stem, kind="onnx", origin=str(path), digest=sha256_file(path), inputs=inputs,
                  outputs=outputs, path=path, example_inputs=examples_t, input_ranges=tuple(rg.ranges),
                  input_values=vals, preprocess=pre, labels=labels, quantised=quantised,
                  notes=tuple(notes) + (("preprocessing and labels read from the file's edgeship metadata",)
                                        if pre is not None or labels else ()))


def _fold_constant_inputs(path: Path, model: Any, shapes: Any, values: dict[str, Sequence[float]] | None) -> Source | None:
    """A scalar input given one value (``--input-value sr=16000``) is a constant: the model is
    specialised for it (the input becomes a constant and onnxslim folds what follows from it, an
    ``If`` on it included: Silero VAD's network lives inside one, which ONNX Runtime's quantiser
    does not enter and OpenVINO cannot read). The specialised model is checked against the
    original on the example inputs (equal, or it is not used) and kept in the cache folder by
    content; the Source says so in its notes and takes the other inputs. None: nothing to fold."""
    import onnx

    if not values:
        return None
    inputs, _ = io_specs(model)
    values_for(values, [s.name for s in inputs], [s.dtype for s in inputs])  # names and whole numbers checked first
    fold = {s.name: values[s.name][0] for s in inputs if s.name in values and len(values[s.name]) == 1 and not s.shape}
    if not fold:
        return None
    digest = sha256_file(path)
    key = hashlib.sha256((digest + json.dumps(sorted(fold.items()))).encode()).hexdigest()[:24]
    target = cache.derived("specialised", key, f"{path.stem}.onnx")
    rest_shapes = ({k: v for k, v in shapes.items() if k not in fold} if isinstance(shapes, dict)
                   else [x for x, s in zip(shapes, inputs) if s.name not in fold] if shapes else shapes)
    rest_values = {k: v for k, v in values.items() if k not in fold}
    if not target.is_file():
        from onnx import numpy_helper

        m = onnx.ModelProto()
        m.CopyFrom(model)
        for name, v in fold.items():
            vi = next(i for i in m.graph.input if i.name == name)
            dt = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            m.graph.input.remove(vi)
            m.graph.initializer.append(numpy_helper.from_array(np.array(v).astype(dt), name))
        try:
            import onnxslim

            with quiet("onnxslim"):
                m = onnxslim.slim(m)
        except Exception:  # noqa: BLE001 - folding is an optimisation: without it the model is taken as given
            return None
        cache.write_derived(target, lambda tmp: onnx.save(m, str(tmp)))
    try:
        special = onnx_source(target, None, rest_shapes, rest_values)
    except EdgeshipError:
        target.unlink(missing_ok=True)
        return None
    # equal to the original on the examples, with the folded values fed: else not used
    names = [s.name for s in inputs]
    feeds = []
    for s in inputs:
        if s.name in fold:
            feeds.append(np.array(fold[s.name]).astype(np.dtype(s.dtype)))
        else:
            feeds.append(special.example_inputs[[i.name for i in special.inputs].index(s.name)])
    try:
        want = onnx_reference_runner(path).run(feeds)
        got = special.run(list(special.example_inputs))
    except EdgeshipError:
        return None
    if len(want) != len(got) or not all(np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=1e-5, atol=1e-6)
                                        for a, b in zip(want, got)):
        return None
    said = ", ".join(f"{k}={v:g}" for k, v in fold.items())
    note = (f"specialised for {said} (--input-value with one value): "
            f"{'that input is' if len(fold) == 1 else 'those inputs are'} folded into the model and what follows from it "
            "simplified (an If on it included); the artifacts take " + ", ".join(repr(n) for n in names if n not in fold)
            + "; equal to the original on the examples")
    return dataclasses.replace(special, name=path.stem, origin=str(path), digest=digest, notes=(note, *special.notes))


def _dims(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _shapes_for(shapes: Any, inputs: Sequence[TensorSpec], path: Path) -> list[tuple[int, ...] | None]:
    """``--input-shape`` per input of a model file (None: not given), checked against what the file
    declares: the rank, and every fixed dimension. A shape for an input the model does not have,
    or more shapes than inputs, is a UsageError: a shape given is a shape used."""
    names = [s.name for s in inputs]
    if not shapes:
        return [None] * len(inputs)
    if isinstance(shapes, dict):
        by_name(shapes, names, "--input-shape")
        given = [tuple(shapes[n]) if n in shapes else None for n in names]
    else:
        if len(shapes) != len(inputs):
            raise UsageError(f"{len(shapes)} --input-shape given in order, {path.name} has {len(inputs)} inputs "
                             f"({', '.join(names)})",
                             hint="give the shapes by input name: " + " ".join(f"--input-shape {s.name}=..." for s in inputs))
        given = [tuple(x) for x in shapes]
    for s, g in zip(inputs, given):
        if g is None:
            continue
        if len(g) != len(s.shape):
            raise UsageError(f"--input-shape {s.name}={','.join(map(str, g))}: input {s.name!r} of {path.name} has "
                             f"{len(s.shape)} dims {_dims(s.shape)}, not {len(g)}",
                             hint=f"give {len(s.shape)} dims" + (" (nothing after '=' for a scalar)" if not s.shape else ""))
        fixed = [(k, d) for k, d in enumerate(s.shape) if isinstance(d, int) and g[k] != d]
        if fixed:
            k, d = fixed[0]
            raise UsageError(f"--input-shape {s.name}={','.join(map(str, g))}: dim {k} of input {s.name!r} is fixed at {d} "
                             f"in {path.name} {_dims(s.shape)}", hint="change only its dynamic dims")
    return given


def _returned_outputs(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                      examples: Sequence[np.ndarray], given: Sequence[Any], notes: list[str]) -> tuple[TensorSpec, ...]:
    """Run the file once on its examples (ONNX Runtime): a model that fails on them fails here, with
    the shapes it was given and the flag that changes them; an output declared with a shape the
    model does not return (rank 0, a wrong dim) is described by what it returns (said in notes)."""
    try:
        outs = onnx_reference_runner(path).run(list(examples))
    except EdgeshipError as e:
        fed = ", ".join(f"{s.name} {list(np.shape(a))} {np.asarray(a).dtype}" for s, a in zip(inputs, examples))
        dyn = [s for s, g in zip(inputs, given) if g is None and s.dynamic_axes]
        hint = ("give the real sizes of the dynamic dims: " + " ".join(f"--input-shape {s.name}=..." for s in dyn)
                if dyn else "check the --input-shape / --input-value given")
        ints = [s.name for s in inputs if np.issubdtype(np.dtype(s.dtype), np.integer)]
        if ints:
            hint += f"; the values an integer input takes: --input-value {ints[0]}=V[,V...] or --input-range {ints[0]}=LO,HI"
        raise InputError(f"{path.name} does not run on its example inputs ({fed}): {e.message}", hint=hint) from None
    fixed = list(outputs)
    batch_dynamic = bool(inputs) and all(s.shape and not isinstance(s.shape[0], int) for s in inputs)
    for k, (spec, got) in enumerate(zip(outputs, outs)):
        shape = tuple(np.shape(got))
        if spec.fits(shape):
            continue
        dims: list[int | str] = list(shape)
        if len(spec.shape) == len(shape):
            dims = [d if not isinstance(d, int) else shape[i] for i, d in enumerate(spec.shape)]
        elif dims and batch_dynamic and dims[0] == np.shape(examples[0])[0]:
            dims[0] = "batch"
        fixed[k] = spec.model_copy(update={"shape": tuple(dims)})
        notes.append(f"output {spec.name!r} is declared {_dims(spec.shape)} but returns {list(shape)}: described as "
                     f"{_dims(dims)}")
    return tuple(fixed)


def _example_for_spec(s: TensorSpec, r: tuple[float, float] | None = None, shape: tuple[int, ...] | None = None,
                      values: Sequence[float] | None = None) -> np.ndarray:
    shape = tuple(shape) if shape is not None else s.concrete_shape(1)
    rng = np.random.default_rng(0)
    dt = np.dtype(s.dtype)
    check_example_size(shape, dt.itemsize, f"input {s.name!r}")
    if values:
        return np.full(shape, values[0]).astype(dt)
    if r is not None and dt != np.bool_:
        return draw(rng, shape, dt, r)
    if np.issubdtype(dt, np.integer):
        return rng.integers(*DEFAULT_ID_RANGE, size=shape).astype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dt)
