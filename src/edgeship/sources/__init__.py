"""Model sources, detected by content rather than by file extension.

``load_source(spec)`` accepts:

* ``efficientnet-lite0`` — the embedded default (pretrained, with preprocessing and labels);
* ``package.module:callable`` or ``path/to/file.py:callable`` — a factory returning an
  ``nn.Module``, a ``(module, example_inputs)`` pair, or a :class:`TorchModel`;
* a ``torch.export`` program (``.pt2`` archive);
* an ONNX file (external data only from inside the model's own folder);
* a ``.tflite`` flatbuffer (recognised; conversion from it is not offered);
* a torch checkpoint: a full pickled module only with ``allow_pickle``; a bare state_dict
  needs its architecture as a factory (``--weights``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import io
import json
import os
import pickle
import sys
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._util import article, confined
from ..artifact import Preprocess, TensorSpec, clean_labels, validation_detail
from ..errors import (
    EdgeshipError,
    FormatError,
    InputError,
    SecurityError,
    UnsupportedError,
    UsageError,
    first_line,
)
from ..readers import parse_json

__all__ = ["TorchModel", "Source", "load_source", "sniff_format", "module_digest", "BUILTIN_MODELS"]

SourceKind = Literal["torch", "pt2", "onnx", "tflite"]

BUILTIN_MODELS = {"efficientnet-lite0": "edgeship.sources.default:efficientnet_lite0"}


@dataclasses.dataclass(frozen=True)
class TorchModel:
    """What a factory may return to describe its model fully.

    ``sample_inputs`` are real inputs for verification (each a tuple of arrays matching
    ``example_inputs``); without them edgeship uses the sample photos for image models and
    seeded random inputs around ``example_inputs`` for the rest.

    ``tokenize`` (for text models) turns a list of strings into the model's inputs: a tuple of
    arrays in input order, or a dict by input name, each with one row per string. With it, a text
    file of sentences (one per line) is calibration and evaluation data: ``--calib sentences.txt``.
    """

    module: Any
    example_inputs: tuple[Any, ...]
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] | None = None
    name: str | None = None
    sample_inputs: tuple[tuple[np.ndarray, ...], ...] | None = None
    tokenize: Callable[[list[str]], Any] | None = None


@dataclasses.dataclass(frozen=True)
class Source:
    """A loaded model, ready to be converted and used as the reference for verification."""

    name: str
    kind: SourceKind
    origin: str
    digest: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] | None = None
    module: Any = None  # torch.nn.Module (or ExportedProgram.module()) for torch/pt2
    exported: Any = None  # torch.export.ExportedProgram for pt2
    path: Path | None = None
    example_inputs: tuple[np.ndarray, ...] = ()
    sample_inputs: tuple[tuple[np.ndarray, ...], ...] | None = None
    allow_pickle: bool = False
    notes: tuple[str, ...] = ()
    #: per input, the [low, high) its random values are drawn from (None: around the example input)
    input_ranges: tuple[tuple[float, float] | None, ...] = ()
    #: the factory's tokenizer (text models): list of strings -> the model's inputs
    tokenize: Callable[[list[str]], Any] | None = None
    #: per input, the values it takes (``--input-value sr=16000,8000``; None: any in its range)
    input_values: tuple[tuple[float, ...] | None, ...] = ()
    #: what makes the model already quantised ("38 QDQ pairs, 2 QLinearConv"), None for a float model
    quantised: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "origin": self.origin,
            "digest": self.digest,
            "inputs": [i.model_dump(mode="json") for i in self.inputs],
            "outputs": [o.model_dump(mode="json") for o in self.outputs],
            "preprocess": self.preprocess.model_dump(mode="json") if self.preprocess else None,
            "labels_count": len(self.labels) if self.labels else 0,
            "allow_pickle": self.allow_pickle,
            "tokenizer": self.tokenize is not None,
            "input_ranges": [list(r) if r else None for r in self.input_ranges],
            "input_values": [list(v) if v else None for v in self.input_values],
            "quantised": self.quantised,
            "notes": list(self.notes),
        }

    # ---- real inputs and the reference outputs -------------------------------------------
    def verification_inputs(self, limit: int = 8) -> list[tuple[np.ndarray, ...]]:
        """Real inputs (batch 1 each) to compare an artifact with this source."""
        if self.sample_inputs:
            return [tuple(np.asarray(a) for a in s) for s in self.sample_inputs[:limit]]
        if self.preprocess is not None and len(self.inputs) == 1:
            from ..data import preprocess_image, sample_photos

            return [(preprocess_image(img, self.preprocess),) for img in sample_photos().values()][:limit]
        return [random_like(self.example_inputs, seed=i, ranges=self.input_ranges, values=self.input_values) for i in range(min(limit, 4))]

    def evaluation_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]:
        """More real inputs, for judging reduced-precision artifacts: the verification inputs
        first, then augmented crops of the sample photos (seed 1) for image models, or more seeded
        random inputs. Never the calibration inputs."""
        if self.sample_inputs:
            return self._sample_split()[0][:limit]
        base = self.verification_inputs(limit=limit)
        if len(base) >= limit:
            return base[:limit]
        if self.preprocess is not None and len(self.inputs) == 1:
            from ..data import augmented_crops

            return base + [(x,) for x in augmented_crops(self.preprocess, limit - len(base), seed=1)]
        return base + [random_like(self.example_inputs, seed=1000 + i, ranges=self.input_ranges, values=self.input_values)
                       for i in range(limit - len(base))]

    def _sample_split(self) -> tuple[list[tuple[np.ndarray, ...]], list[tuple[np.ndarray, ...]]]:
        """The model's own sample inputs split in two, evaluation then calibration, so a quantised
        artifact is never judged on its calibration data (under 4 samples both get all of them)."""
        samples = [tuple(np.asarray(a) for a in s) for s in self.sample_inputs or ()]
        if len(samples) < 4:
            return samples, samples
        half = len(samples) // 2
        return samples[:half], samples[half:]

    @property
    def real_inputs(self) -> bool:
        """Whether the source's own inputs are real (its sample inputs, or the sample photos through
        its preprocessing) rather than seeded random ones: what :meth:`inputs_origin` words."""
        return bool(self.sample_inputs) or (self.preprocess is not None and len(self.inputs) == 1)

    def inputs_origin(self, purpose: str = "verification") -> str:
        """What the default inputs for ``purpose`` (verification, evaluation, calibration) are, in words."""
        if self.sample_inputs:
            if len(self.sample_inputs) < 4 and purpose != "verification":
                return ("all sample inputs given with the model, for evaluation and calibration alike (fewer than 4: "
                        "give --eval / --calib data)")
            return {"evaluation": "the first half of the sample inputs given with the model",
                    "calibration": "the second half of the sample inputs given with the model"}.get(
                        purpose, "sample inputs given with the model")
        if self.preprocess is not None and len(self.inputs) == 1:
            from ..data import CALIBRATION_PHOTOS, SAMPLE_PHOTOS

            return {"verification": "sample photos",
                    "evaluation": f"the {len(SAMPLE_PHOTOS)} sample photos and augmented crops of them",
                    "calibration": f"augmented crops of {len(CALIBRATION_PHOTOS)} other photos (none of them evaluated "
                                   "on)"}.get(purpose, "sample photos")
        return "seeded random inputs (no preprocessing or sample inputs known: give --eval / --calib data)"

    def calibration_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]:
        """Inputs for static quantisation, kept apart from verification/evaluation: augmented crops
        of photos never evaluated on (:data:`~edgeship.data.CALIBRATION_PHOTOS`) for image models,
        else seeded random inputs (seeds 2000+)."""
        if self.sample_inputs:
            return self._sample_split()[1][:limit]
        if self.preprocess is not None and len(self.inputs) == 1:
            from ..data import CALIBRATION_PHOTOS, augmented_crops

            return [(x,) for x in augmented_crops(self.preprocess, limit, seed=0, names=CALIBRATION_PHOTOS)]
        return [random_like(self.example_inputs, seed=2000 + i, ranges=self.input_ranges, values=self.input_values) for i in range(limit)]

    def embedding_tables(self) -> list[tuple[str, int]]:
        """(name, bytes) of each embedding table (lookup weights) in the model: the torch module's
        Embedding layers, or an ONNX graph's constant tables read by Gather."""
        if self.module is not None:
            import torch.nn as nn

            return [(n, m.weight.numel() * m.weight.element_size()) for n, m in self.module.named_modules()
                    if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
        if self.kind == "onnx" and self.path is not None:
            import onnx

            model = onnx.load(str(self.path), load_external_data=False)
            inits = {i.name: i for i in model.graph.initializer}
            out = []
            for n in model.graph.node:
                if n.op_type == "Gather" and n.input and n.input[0] in inits:
                    t = inits[n.input[0]]
                    out.append((t.name, int(np.prod(t.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize))
            return list(dict(out).items())
        return []

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the source model itself (torch eager or ONNX Runtime) on numpy inputs."""
        if self.kind in ("torch", "pt2"):
            import torch

            with torch.no_grad():
                out = self.module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
            return [t.detach().cpu().numpy() for t in flatten_outputs(out)]
        if self.kind == "onnx":
            runner = _onnx_reference_runner(self.path)
            return runner.run(list(inputs))
        raise UnsupportedError(f"running {article(self.kind)} source needs its runtime target",
                               hint="use edgeship classify or benchmark on the file")

    def evaluation(self, spec: str | None, limit: int) -> tuple[list[tuple[np.ndarray, ...]], list[int] | None,
                                                                 list[list[np.ndarray]]]:
        """The evaluation set (``--eval`` data ``spec``, else the source's own, ``limit`` inputs), its
        labels, and this source's outputs on each input: computed once per process and data, so the
        int8 budget and verify judge against the same reference run once (every figure once)."""
        from ..data import load_samples

        key = (id(self), self.digest, spec, limit, _data_stamp(spec))
        held = _EVALUATION.get(key)
        if held is None or held[0] is not self:
            samples, labels = load_samples(spec, self, limit, "evaluation")
            refs = [self.run(s) for s in samples]
            _EVALUATION.clear()  # one source and set at a time: a deploy's budget and verify share it
            held = (self, samples, labels, refs)
            if key[-1] is not None:  # data whose contents can be stamped (not a callable's samples)
                _EVALUATION[key] = held
        return held[1], held[2], held[3]


#: (source id, digest, spec, limit, data stamp) -> (source, samples, labels, outputs): the last evaluation set
_EVALUATION: dict[tuple, tuple[Any, Any, Any, Any]] = {}


def _data_stamp(spec: str | None) -> Any:
    """What changes when evaluation data ``spec`` changes: "" for the source's own, a file's size and
    time, a folder's files' sizes and times; None for a callable (its samples may change: never kept)."""
    if spec is None:
        return ""
    p = Path(spec)
    try:
        if p.is_file():
            st = p.stat()
            return (st.st_size, st.st_mtime_ns)
        if p.is_dir():
            return tuple((str(f), st.st_size, st.st_mtime_ns) for f in sorted(p.rglob("*")) if f.is_file()
                         for st in [f.stat()])
    except OSError:
        return None
    return None


_ONNX_RUNNERS: dict[tuple[Path, int, int], Any] = {}


def _onnx_reference_runner(path: Path | None) -> Any:
    """One ONNX Runtime session per model file, kept while the file is unchanged (a file written
    again at the same path gets a new session)."""
    from ..formats.onnx import OnnxRunner

    assert path is not None
    st = path.stat()
    key = (path.resolve(), st.st_mtime_ns, st.st_size)
    if key not in _ONNX_RUNNERS:
        for old in [k for k in _ONNX_RUNNERS if k[0] == key[0]]:
            del _ONNX_RUNNERS[old]
        _ONNX_RUNNERS[key] = OnnxRunner(path, threads=0)
    return _ONNX_RUNNERS[key]


def random_like(examples: Sequence[np.ndarray], seed: int,
                ranges: Sequence[tuple[float, float] | None] = (),
                values: Sequence[Sequence[float] | None] = ()) -> tuple[np.ndarray, ...]:
    """Seeded inputs shaped like ``examples``: one of ``values[i]`` where given (a sample rate: the
    same value for the whole tensor), values in ``ranges[i]`` (``[low, high)``) where given, else
    floats around the example's scale and ints in its range."""
    rng = np.random.default_rng(1234 + seed)
    out = []
    for k, a in enumerate(examples):
        a = np.asarray(a)
        r = ranges[k] if k < len(ranges) else None
        v = values[k] if k < len(values) else None
        if v:
            out.append(np.full(a.shape, v[int(rng.integers(len(v)))]).astype(a.dtype))
        elif r is not None and a.dtype != np.bool_:
            out.append(_draw(rng, a.shape, a.dtype, r))
        elif np.issubdtype(a.dtype, np.integer):
            lo, hi = int(a.min()), int(a.max())
            out.append(rng.integers(lo, max(hi, lo) + 1, size=a.shape).astype(a.dtype))
        elif a.dtype == np.bool_:
            out.append(rng.random(a.shape) < 0.5)
        else:
            scale = float(np.std(a)) or 1.0
            out.append((rng.standard_normal(a.shape) * scale + float(np.mean(a))).astype(a.dtype))
    return tuple(out)


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, r: tuple[float, float]) -> np.ndarray:
    """Values in ``[low, high)``: integers for integer dtypes, uniform floats otherwise."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        lo, hi = int(r[0]), int(r[1])
        return rng.integers(lo, max(hi, lo + 1), size=shape).astype(dt)
    return rng.uniform(float(r[0]), float(r[1]), size=shape).astype(dt)


# ---- value ranges of integer inputs (token ids) -------------------------------------------

DEFAULT_ID_RANGE = (0, 100)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class _Ranges:
    """Decides the value range of each input and says in words where it came from."""

    def __init__(self, names: Sequence[str], dtypes: Sequence[Any], given: Sequence[tuple[float, float]] | None) -> None:
        self.names, self.dtypes = list(names), [np.dtype(d) for d in dtypes]
        self.ranges: list[tuple[float, float] | None] = [None] * len(self.names)
        self.notes: list[str] = []
        if isinstance(given, dict):  # by input name: the others keep their own range
            given = [given.get(n) for n in by_name(given, self.names, "--input-range")]
        elif given:
            if len(given) not in (1, len(self.names)):
                raise UsageError(f"{len(given)} --input-range for {len(self.names)} inputs",
                                 hint="give one range for all inputs or one per input")
            given = list(given) * len(self.names) if len(given) == 1 else list(given)
        for i, r in enumerate(given or ()):
            if r is not None:
                self.ranges[i] = tuple(r)  # type: ignore[assignment]
                self.notes.append(f"input {self.names[i]!r}: random values in [{_fmt(r[0])}, {_fmt(r[1])}) "
                                  "from --input-range")

    def is_int(self, i: int) -> bool:
        return bool(np.issubdtype(self.dtypes[i], np.integer))

    def open(self) -> list[int]:
        """Integer inputs whose range is not decided yet."""
        return [i for i in range(len(self.names)) if self.is_int(i) and self.ranges[i] is None]

    def embedding(self, i: int, table: str, rows: int) -> None:
        self.ranges[i] = (0, rows)
        self.notes.append(f"input {self.names[i]!r}: random ids in [0, {rows}), the rows of embedding {table!r} "
                          "that reads it (--input-range to change)")

    def smallest_table(self, i: int, tables: Sequence[tuple[str, int]]) -> None:
        name, rows = min(tables, key=lambda t: t[1])
        self.ranges[i] = (0, rows)
        self.notes.append(f"input {self.names[i]!r}: random ids in [0, {rows}), the smallest embedding "
                          f"({name!r}); which embedding reads it was not seen (--input-range to say)")

    def default(self, i: int, example: np.ndarray | None) -> None:
        if example is not None and example.size:
            lo, hi = int(example.min()), int(example.max()) + 1
            self.ranges[i] = (lo, hi)
            self.notes.append(f"input {self.names[i]!r}: random ids in [{lo}, {hi}), the range of the example input "
                              "(no embedding shows the vocabulary: give --input-range LO,HI for the real one)")
        else:
            self.ranges[i] = DEFAULT_ID_RANGE
            self.notes.append(f"input {self.names[i]!r}: random ids in [0, 100), a guess (no embedding shows the "
                              "vocabulary: give --input-range LO,HI for the real one)")


def by_name(given: dict[str, Any], names: Sequence[str], flag: str) -> list[str]:
    """``names`` after checking that every key of ``given`` (an option stated by input name) names
    one of them: a value given for an input the model does not have is an error, never ignored."""
    unknown = [k for k in given if k not in names]
    if unknown:
        raise UsageError(f"{flag} names input {unknown[0]!r}, which the model does not have",
                         hint=f"its inputs: {', '.join(names) or 'none'}")
    return list(names)


def _values_for(values: dict[str, Sequence[float]] | None, names: Sequence[str],
                dtypes: Sequence[Any]) -> tuple[tuple[float, ...] | None, ...]:
    """``--input-value`` per input in order (None where not given); integer inputs take integers."""
    if not values:
        return ()
    by_name(values, names, "--input-value")
    out = []
    for n, dt in zip(names, dtypes):
        v = values.get(n)
        if v is not None and np.issubdtype(np.dtype(dt), np.integer) and any(float(x) != int(x) for x in v):
            raise UsageError(f"--input-value {n}={','.join(f'{x:g}' for x in v)}: input {n!r} is {np.dtype(dt).name}, "
                             "its values are whole numbers")
        out.append(tuple(v) if v is not None else None)
    return tuple(out)


def _embedding_tables(module: Any) -> list[tuple[str, int]]:
    import torch.nn as nn

    return [(n, int(m.num_embeddings)) for n, m in module.named_modules()
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]


def _embedding_readers(module: Any, examples: Sequence[np.ndarray]) -> dict[int, tuple[str, int]]:
    """Which example input each embedding table reads directly (the same tensor), seen with
    pre-hooks during one forward; the smallest table when several read one input."""
    import torch
    import torch.nn as nn

    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in examples]
    ptrs = {t.data_ptr(): i for i, t in enumerate(tensors) if t.numel() and not t.is_floating_point()}
    found: dict[int, tuple[str, int]] = {}
    hooks = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            def pre(mod: Any, args: Any, name: str = name) -> None:
                if args and isinstance(args[0], torch.Tensor):
                    i = ptrs.get(args[0].data_ptr())
                    if i is not None and (i not in found or mod.num_embeddings < found[i][1]):
                        found[i] = (name, int(mod.num_embeddings))
            hooks.append(m.register_forward_pre_hook(pre))
    if not hooks:
        return found
    try:
        with torch.no_grad():
            module(*tensors)
    except Exception:  # the forward is checked (with a clear error) right after this
        pass
    finally:
        for h in hooks:
            h.remove()
    return found


def _torch_ranges(module: Any, examples: list[np.ndarray], names: Sequence[str], given, generated: bool,
                  readers: dict[int, tuple[str, int]] | None = None,
                  seed_base: int = 0) -> tuple[list[np.ndarray], _Ranges]:
    """Decide each input's range; generated integer examples are redrawn inside it. ``readers``
    (input -> embedding table) replaces the forward-hook search (a torch.export graph shows it)."""
    rg = _Ranges(names, [a.dtype for a in examples], given)
    tables = list(readers.values()) if readers is not None else _embedding_tables(module)
    if rg.open():
        if tables and generated:  # ids 0..99 could index past a small table before we learn which one reads them
            safe = min(t[1] for t in tables)
            for i in rg.open():
                examples[i] = _draw(np.random.default_rng(seed_base + i), examples[i].shape, examples[i].dtype, (0, safe))
        found = readers if readers is not None else _embedding_readers(module, examples)
        for i, (table, rows) in found.items():
            if i in rg.open():
                rg.embedding(i, table, rows)
        for i in rg.open():
            if tables:
                rg.smallest_table(i, tables)
            else:
                rg.default(i, None if generated else examples[i])
    if generated:
        for i, r in enumerate(rg.ranges):
            if r is not None:
                examples[i] = _draw(np.random.default_rng(seed_base + i), examples[i].shape, examples[i].dtype, r)
    return examples, rg


def flatten_outputs(out: Any) -> list[Any]:
    """Tensors of a model's output in order: a tensor, nested tuples/lists, or dict values."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in flatten_outputs(v)]
    if hasattr(out, "logits") and not hasattr(out, "shape"):  # HF-style ModelOutput
        return flatten_outputs(out.to_tuple())
    return [out]


# ---- format detection -------------------------------------------------------------------

def sniff_format(path: Path) -> str:
    """'onnx', 'tflite', 'pt2', 'torch-zip', 'torch-pickle', 'npy' — from the bytes, not the name.
    A folder, a FIFO or a device is refused before anything opens it (:func:`edgeship.readers.regular_file`)."""
    from ..readers import regular_file
    from ..readers.archives import open_zip

    if Path(path).is_dir():
        raise InputError(f"{path} is a folder, not a model file",
                         hint="give a .onnx/.pt2/.tflite/.pt file or a factory 'pkg.module:fn'")
    regular_file(path, "model file", hint="give a .onnx/.pt2/.tflite/.pt file or a factory 'pkg.module:fn'")
    with open(path, "rb") as fh:  # a regular file: reading its head cannot block
        head = fh.read(64)
    if not head:
        raise FormatError(f"{path} is empty", hint="the file was probably truncated; export it again")
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        with open_zip(path, "model archive") as z:
            names = z.namelist()
        if any(n.endswith("archive_format") for n in names) or any("/models/" in n and n.endswith(".json") for n in names):
            return "pt2"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        raise FormatError(f"{path} is a zip archive but neither a torch checkpoint nor a .pt2 program")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"
    return "onnx"  # protobuf has no magic; parsing confirms or refuses


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
) -> Source:
    """Load ``spec`` (a built-in name, a factory or a model file) as a :class:`Source`.

    ``input_shapes`` are in input order, or a dict by input name (``()`` a scalar); ``input_ranges``
    (``[low, high)`` per input, one for all, or a dict by name) are the values random inputs are
    drawn from; integer inputs read by an embedding default to its rows (said in ``Source.notes``);
    ``input_values`` (by name) the only values an input takes (a sample rate). A shape, range or
    value given for an input the model does not have is a UsageError.
    ``preprocess`` (a spec, a JSON file or a :class:`Preprocess`) and ``labels`` (a file or a list)
    state what a model file does not carry; they replace what it does."""
    ranges: Any = (dict(input_ranges) if isinstance(input_ranges, dict) else list(input_ranges)) if input_ranges else None
    values = dict(input_values) if input_values else None
    if spec in BUILTIN_MODELS:
        src = _from_factory(BUILTIN_MODELS[spec], spec, input_shapes, input_dtypes, weights, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    path = Path(spec)
    if path.exists():
        if weights is not None:
            raise UsageError("--weights goes with a factory 'pkg.module:fn', not with a model file")
        src = _from_file(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    if ":" in spec:
        src = _from_factory(spec, spec, input_shapes, input_dtypes, weights, dynamic_batch, ranges, values)
        return with_preprocess_and_labels(src, preprocess, labels)
    raise InputError(
        f"no such model file: {spec}",
        hint=f"give a model file, a factory 'package.module:function', or a built-in name ({', '.join(BUILTIN_MODELS)})",
    )


# ---- preprocessing and labels stated by the user ----------------------------------------

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
        from ..readers import read_json

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


def read_labels(spec: str | Path | Sequence[str], outputs: Sequence[TensorSpec] = ()) -> tuple[str, ...]:
    """``--labels``: labels.txt (one per line) or a JSON list of strings; one per class of the
    first of ``outputs`` when its class count is known."""
    labels = _read_labels(spec)
    n = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if isinstance(n, int) and n != len(labels):
        raise InputError(f"{len(labels)} labels, but output {outputs[0].name!r} has {n} classes",
                         hint="give one label per class, in the order of the model's output")
    return labels


def _read_labels(spec: str | Path | Sequence[str]) -> tuple[str, ...]:
    if not isinstance(spec, (str, Path)):
        return clean_labels([str(x) for x in spec]) or ()
    from ..readers import parse_json, read_text

    p = Path(spec)
    hint = "give labels.txt (one label per line) or a JSON list"
    text = read_text(p, "labels file", hint=hint)
    if text.lstrip().startswith("["):
        data = parse_json(text, f"labels file {p}", hint=hint)
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise InputError(f"{p} must be a JSON list of strings")
        labels = data
    else:
        labels = [line for line in text.splitlines() if line.strip()]
    if not labels:
        raise InputError(f"labels file {p} is empty")
    return clean_labels(labels) or ()


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


# ---- torch ------------------------------------------------------------------------------

def _import_factory(ref: str) -> Callable[..., Any]:
    mod_name, _, attr = ref.rpartition(":")
    if not mod_name or not attr:
        raise UsageError(f"a factory is 'package.module:function', got {ref!r}")
    try:
        if mod_name.endswith(".py"):
            file = Path(mod_name)
            if not file.is_file():
                raise InputError(f"no such file: {file}", hint="give the path of the Python file that builds the model")
            # as `python path/file.py` does: the file's own folder comes first, so it imports its siblings
            folder = str(file.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            modspec = importlib.util.spec_from_file_location(f"_edgeship_user_{file.stem}", file)
            assert modspec and modspec.loader
            module = importlib.util.module_from_spec(modspec)
            modspec.loader.exec_module(module)
        else:
            import os

            # like `python -m`, uvicorn and gunicorn: a module in the current folder is importable
            # (appended, so it never shadows an installed package)
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())
            module = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        top = mod_name.split(".")[0]
        if mod_name.endswith(".py") or (e.name and e.name != top and not mod_name.startswith(f"{e.name}.")):
            # the factory's own module was found; something it imports is missing
            raise InputError(f"{mod_name} (factory {ref!r}) imports {e.name!r}, which is not installed",
                             hint=f"pip install the package that provides {e.name!r}, or put {e.name}.py "
                                  f"beside {mod_name if mod_name.endswith('.py') else 'the factory module'}") from None
        raise InputError(f"cannot import {mod_name!r} for factory {ref!r}: {e}",
                         hint="install the package, or run from the folder that holds "
                              f"{mod_name.replace('.', '/')}.py, or give the file: path/to/file.py:{attr}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise InputError(f"{mod_name!r} has no attribute {attr!r}",
                         hint=f"names it has: {', '.join(n for n in dir(module) if not n.startswith('_'))[:300]}")
    return fn


def _from_factory(ref, name, input_shapes, input_dtypes, weights, dynamic_batch, ranges=None, values=None) -> Source:
    import torch

    fn = _import_factory(ref)
    made = fn() if callable(fn) and not isinstance(fn, torch.nn.Module) else fn
    if isinstance(made, TorchModel):
        tm = made
    elif isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
        ex = made[1] if isinstance(made[1], (tuple, list)) else (made[1],)
        tm = TorchModel(module=made[0], example_inputs=tuple(ex))
    elif isinstance(made, torch.nn.Module):
        ex = getattr(made, "example_inputs", None)
        tm = TorchModel(module=made, example_inputs=tuple(ex) if ex is not None else ())
    else:
        raise InputError(f"factory {ref!r} returned {type(made).__name__}, not a torch.nn.Module",
                         hint="return an nn.Module, (module, example_inputs) or edgeship.TorchModel")
    module = tm.module
    if weights is not None:
        sd = _load_state_dict(Path(weights))
        try:
            module.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise InputError(f"{weights} does not fit the model from {ref!r}: {str(e).splitlines()[0]}",
                             hint="check that the checkpoint was saved from this architecture") from None
    module.eval()
    examples = _example_inputs(tm.example_inputs, input_shapes, input_dtypes, ref, tm.input_names)
    return _torch_source(module, examples, tm, name=tm.name or name, origin=ref, kind="torch",
                         dynamic_batch=dynamic_batch, digest=module_digest(module), ranges=ranges,
                         generated=bool(input_shapes), values=values)


def _example_inputs(given, input_shapes, input_dtypes, ref, names=None) -> tuple[np.ndarray, ...]:
    if isinstance(input_shapes, dict) and input_shapes:
        # by input name: the factory's input names, else the defaults (input, or input_0, input_1, ...)
        count = len(given) or len(input_shapes)
        known = list(names or (["input"] if count == 1 else [f"input_{i}" for i in range(count)]))
        by_name(input_shapes, known, "--input-shape")
        if given and len(given) == len(known):
            keep = [np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t) for t in given]
            made = _example_inputs((), [input_shapes[n] for n in known if n in input_shapes], input_dtypes, ref)
            it = iter(made)
            return tuple(next(it) if n in input_shapes else keep[k] for k, n in enumerate(known))
        missing = [n for n in known if n not in input_shapes]
        if missing:
            raise UsageError(f"--input-shape gives no shape for input {missing[0]!r} of {ref!r}, which has no example input",
                             hint=f"give every input's shape: {', '.join(f'{n}=...' for n in known)}")
        input_shapes = [input_shapes[n] for n in known]
    if input_shapes:
        dtypes = list(input_dtypes or ["float32"])
        if len(dtypes) == 1:
            dtypes *= len(input_shapes)
        if len(dtypes) != len(input_shapes):
            raise UsageError(f"{len(input_shapes)} --input-shape but {len(dtypes)} --input-dtype",
                             hint="give one dtype for all inputs or one per input")
        out = []
        for i, (shape, dt) in enumerate(zip(input_shapes, dtypes)):
            try:
                np_dt = np.dtype(dt)
            except TypeError:
                raise UsageError(f"unknown --input-dtype {dt!r}", hint="e.g. float32, float16, int64, uint8") from None
            rng = np.random.default_rng(i)
            if np.issubdtype(np_dt, np.integer):
                out.append(rng.integers(*DEFAULT_ID_RANGE, size=tuple(shape)).astype(np_dt))
            else:
                out.append(rng.standard_normal(tuple(shape)).astype(np_dt))
        return tuple(out)
    if not given:
        raise UsageError(f"the model from {ref!r} has no example input",
                         hint="give --input-shape 1,3,224,224 (and --input-dtype), or return "
                              "(module, example_inputs) from the factory")
    return tuple(np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t) for t in given)


def module_digest(module: Any) -> str:
    """sha256 over the state_dict: names, dtypes, shapes and bytes."""
    import torch

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _torch_source(module, examples, tm: TorchModel, *, name, origin, kind, dynamic_batch, digest,
                  exported=None, allow_pickle=False, ranges=None, generated=False, values=None) -> Source:
    import torch

    in_names = list(tm.input_names or (["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]))
    if len(in_names) != len(examples):
        raise InputError(f"the model has {len(examples)} inputs, but names were given for {len(in_names)}")
    examples, rg = _torch_ranges(module, list(examples), in_names, ranges, generated,
                                 readers=_exported_embedding_readers(exported) if exported is not None else None)
    vals = _values_for(values, in_names, [a.dtype for a in examples])
    for i, v in enumerate(vals):
        if v:  # the example takes the first of the values the input takes
            examples[i] = np.full(np.shape(examples[i]), v[0]).astype(np.asarray(examples[i]).dtype)
    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in examples])
    except Exception as e:  # the user's model rejected the input: say which shapes we tried
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in examples)
        raise InputError(f"the model does not accept input {shapes}: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                         hint="give the model's real input with --input-shape/--input-dtype") from None
    outs = flatten_outputs(out)
    if not all(isinstance(t, torch.Tensor) for t in outs):
        raise UnsupportedError("the model returns something other than tensors",
                               hint="wrap it so forward() returns a tensor, a tuple of tensors or a dict of tensors")
    if isinstance(out, dict) and not tm.output_names:
        out_names = list(out.keys())
    else:
        out_names = list(tm.output_names or (["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]))
    if len(in_names) != len(examples) or len(out_names) != len(outs):
        raise InputError(f"the model has {len(examples)} inputs and {len(outs)} outputs, "
                         f"but names were given for {len(in_names)} and {len(out_names)}")
    batch = "batch" if dynamic_batch else None

    def spec(n, shape, dtype, image_layout=None):
        dims = tuple((batch if (i == 0 and batch) else d) for i, d in enumerate(shape))
        return TensorSpec(name=n, shape=dims, dtype=str(dtype).replace("torch.", ""), layout=image_layout)

    pre = tm.preprocess
    inputs = tuple(
        spec(n, a.shape, a.dtype, pre.layout if pre and pre.input == n else None) for n, a in zip(in_names, examples)
    )
    outputs = tuple(spec(n, tuple(t.shape), t.dtype) for n, t in zip(out_names, outs))
    return Source(name=name, kind=kind, origin=origin, digest=digest, inputs=inputs, outputs=outputs,
                  preprocess=pre, labels=clean_labels(tm.labels), module=module, exported=exported,
                  example_inputs=tuple(examples), sample_inputs=tm.sample_inputs, allow_pickle=allow_pickle,
                  input_ranges=tuple(rg.ranges), notes=tuple(rg.notes), tokenize=tm.tokenize, input_values=vals)


def _pickle_reason(e: BaseException) -> str:
    """What a weights-only unpickling refused, in a few words (torch's message is a page)."""
    import re

    text = str(e)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text) or re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return f"it imports {m.group(1)}"
    m = re.search(r"Unsupported operand (\d+)", text)
    if m:
        return f"pickle opcode {m.group(1)} is not allowed"
    return (text.strip().splitlines() or [type(e).__name__])[0][:160]


def _load_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"no such checkpoint: {path}")
    import torch

    kind = sniff_format(path)
    if kind not in ("torch-zip", "torch-pickle"):
        raise FormatError(f"{path} is not a torch checkpoint (it looks like {kind})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SecurityError(f"{path} needs arbitrary code execution to load (a pickle beyond plain tensors: "
                            f"{_pickle_reason(e)})",
                            hint="save a plain state_dict (model.state_dict()), or a .pt2 program") from None
    sd = _state_dict_of(obj)
    if sd is None:
        raise FormatError(f"{path} holds no state_dict of tensors")
    return sd


def _state_dict_of(obj: Any) -> dict | None:
    import torch

    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        for key in ("state_dict", "model_state_dict", "model", "weights"):
            if isinstance(obj.get(key), dict):
                return _state_dict_of(obj[key])
    return None


def _from_file(path: Path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    kind = sniff_format(path)
    if kind == "onnx":
        if input_dtypes:
            raise UsageError(f"--input-dtype does not apply to {path.name}: an ONNX file declares its input types",
                             hint="leave --input-dtype out")
        return _onnx_source(path, ranges, input_shapes, values)
    if kind == "tflite":
        from ..artifact import sha256_file

        return Source(name=path.stem, kind="tflite", origin=str(path), digest=sha256_file(path),
                      inputs=(), outputs=(), path=path,
                      notes=("a .tflite file is run, analysed and benchmarked as it is; edgeship does not convert from it",))
    if kind == "pt2":
        return _pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
    if kind in ("torch-zip", "torch-pickle"):
        return _checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges, values)
    raise FormatError(f"{path} is a numpy array file, not a model",
                      hint="give it as calibration or evaluation data instead")


def _checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    import torch

    from ..artifact import sha256_file

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not allow_pickle:
            raise SecurityError(
                f"{path} is a pickle that runs code when loaded ({_pickle_reason(e)})",
                hint="load it only if you trust its author: add --allow-pickle (recorded in the manifest)",
            ) from None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e2:
            raise FormatError(f"{path} could not be unpickled: {type(e2).__name__}: {str(e2)[:200]}") from None
    if isinstance(obj, torch.nn.Module):
        obj.eval()
        examples = _example_inputs(getattr(obj, "example_inputs", ()), input_shapes, input_dtypes, str(path))
        return _torch_source(obj, examples, TorchModel(module=obj, example_inputs=()), name=path.stem,
                             origin=str(path), kind="torch", dynamic_batch=dynamic_batch,
                             digest=sha256_file(path), allow_pickle=allow_pickle, ranges=ranges,
                             generated=bool(input_shapes), values=values)
    if _state_dict_of(obj) is not None:
        raise UsageError(
            f"{path} holds weights only (a state_dict), not an architecture",
            hint=f"give the architecture as a factory and the checkpoint as weights: "
                 f"edgeship deploy pkg.module:build_model --weights {path}",
        )
    raise FormatError(f"{path} is a torch file holding {type(obj).__name__}, not a model")


# members of a .pt2 that torch.export.load reads as text or JSON, never unpickles (after the
# archive's top folder); weights and constants stored raw are allowed by their config files
_PT2_TEXT = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")


def _check_pt2_pickles(path: Path, allow_pickle: bool) -> None:
    """torch.export.load unpickles parts of a .pt2 with ``weights_only=False`` (weights and
    constants its configs mark ``use_pickle``, the sample inputs, legacy state dicts, custom
    objects), and any pickle protocol runs code, protocol 0 included, whose first byte is neither
    ``\x80`` nor ``PK``. So every member is vetted by what torch will do with it, not by its
    first bytes: the text and JSON members and the raw tensors the configs name (``use_pickle``
    false) are read as bytes; every other member must load with torch's safe unpickler
    (``weights_only=True``), and custom objects are refused; unless ``allow_pickle``."""
    if allow_pickle:
        return
    import torch

    def refuse(member: str, why: str) -> SecurityError:
        return SecurityError(f"{path} member {member} {why}",
                             hint="load it only if you trust its author: add --allow-pickle")

    from ..readers.archives import open_zip

    with open_zip(path, "torch.export program") as z:
        infos = {i.filename.split("/", 1)[1] if "/" in i.filename else i.filename: i for i in z.infolist()}
        raw: set[str] = set()
        pickled: set[str] = set()
        configs = {rel for rel in infos if rel.rpartition("/")[0] in ("data/weights", "data/constants")
                   and rel.endswith("_config.json")}
        tops = {i.filename.split("/", 1)[0] for i in z.infolist()}
        if len(tops) != 1:  # torch reads the members of one folder; the vetting must see those same ones
            raise FormatError(f"{path} holds {len(tops)} top folders, not one",
                              hint="save the program with torch.export.save")
        for rel in configs:
            folder = rel.rpartition("/")[0]
            try:
                doc = parse_json(z.read(infos[rel]).decode("utf-8"), f"{path} member {rel}")
                for e in (doc.get("config") or {}).values():
                    if not isinstance(e["path_name"], str):
                        raise TypeError("path_name is not text")
                    (pickled if e.get("use_pickle") else raw).add(f"{folder}/{e['path_name']}")
            except (ValueError, AttributeError, TypeError, KeyError, UnicodeDecodeError, FormatError, OSError,
                    EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError):
                raise FormatError(f"{path} member {rel} is not a valid payload config",
                                  hint="save the program with torch.export.save") from None
        for rel, info in infos.items():
            name = rel.rpartition("/")[2]
            # torch unpickles custom and opaque objects whatever their config says: checked first
            if name.startswith(("custom_obj", "opaque_obj")) or "custom_obj" in rel or "opaque_obj" in rel:
                raise refuse(rel, "holds a pickled custom object, which runs code when loaded")
            text = (rel in _PT2_TEXT or rel in configs or rel.startswith("extra/")
                    or (rel.startswith("models/") and rel.endswith(".json")))
            if info.is_dir() or (rel not in pickled and (rel in raw or text)):
                continue
            try:
                member = z.read(info)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as e:
                raise FormatError(f"{path} member {rel} cannot be read: {type(e).__name__}: {str(e)[:200]}",
                                  hint="the archive is damaged; save the program again") from None
            try:
                torch.load(io.BytesIO(member), weights_only=True, map_location="cpu")
            except pickle.UnpicklingError as e:
                if "weights only" in str(e).lower() or "weights_only" in str(e):
                    raise refuse(rel, "is a pickle (or data torch would unpickle) that can run code when loaded") from None
                raise refuse(rel, f"is not a pickle torch's safe loader reads ({first_line(e, 160)})") from None
            except Exception as e:  # noqa: BLE001 - torch's reader on a damaged member: any error, all refused
                raise FormatError(f"{path} member {rel} is damaged: {type(e).__name__}: {first_line(e, 200)}",
                                  hint="save the program again with torch.export.save") from None


def _pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    import torch

    from ..artifact import sha256_file

    _check_pt2_pickles(path, allow_pickle)
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise FormatError(f"{path} is not a loadable torch.export program: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                          hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
    try:  # a program torch loaded may still be incoherent (its signature, its placeholders' metadata)
        user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
        given = tuple(_example_from_meta(n) for n in ep.graph.nodes if n.op == "placeholder" and n.name in set(user))
        module = ep.module()
    except EdgeshipError:
        raise
    except Exception as e:  # noqa: BLE001 - torch on a hand-edited program: any error, all typed
        raise FormatError(f"{path} is not a usable torch.export program: {type(e).__name__}: {first_line(e, 200)}",
                          hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
    examples = _example_inputs(given, input_shapes, input_dtypes, str(path))  # by the names the Source gives
    return _torch_source(module, examples, TorchModel(module=module, example_inputs=()), name=path.stem,
                         origin=str(path), kind="pt2", dynamic_batch=dynamic_batch, digest=sha256_file(path),
                         exported=ep, allow_pickle=allow_pickle, ranges=ranges, generated=True, values=values)


def _exported_embedding_readers(ep: Any) -> dict[int, tuple[str, int]]:
    """User input index -> (weight name, rows) for each ``aten.embedding`` that reads a user input."""
    import torch

    user = [s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    params = {s.arg.name: s.target for s in ep.graph_signature.input_specs if s.kind.name != "USER_INPUT"}
    found: dict[int, tuple[str, int]] = {}
    for n in ep.graph.nodes:
        if n.op == "call_function" and n.target in (torch.ops.aten.embedding.default,) and len(n.args) >= 2:
            weight, idx = n.args[0], n.args[1]
            val = getattr(weight, "meta", {}).get("val")
            if getattr(idx, "name", None) in user and val is not None and len(val.shape) >= 1:
                i, rows = user.index(idx.name), int(val.shape[0])
                if i not in found or rows < found[i][1]:
                    found[i] = (str(params.get(weight.name, weight.name)), rows)
    return found


def _example_from_meta(node: Any) -> np.ndarray:
    import torch

    val = node.meta.get("val")
    shape = tuple(int(d) if isinstance(d, int) else 2 for d in val.shape)
    if val.dtype.is_floating_point:
        return torch.randn(shape, dtype=val.dtype, generator=torch.Generator().manual_seed(0)).numpy()
    return torch.zeros(shape, dtype=val.dtype).numpy()


# ---- onnx -------------------------------------------------------------------------------

def load_onnx_model(path: Path, weights: bool = True) -> Any:
    """Parse an ONNX file; external data may only come from inside its folder. Every value the
    rest of edgeship reads from it is vetted here: external-data locations, offsets and lengths, the
    graph's input and output types and dimensions (:func:`edgeship.formats.onnx.check_io`).
    ``weights=False`` vets the same but leaves external data unread and skips the checker (a
    description of the file: ONNX Runtime checks the graph when it loads it)."""
    import onnx

    from ..readers.onnx import parse_onnx

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
    from ..formats.onnx import check_io

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
    import json

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


def _onnx_source(path: Path, ranges: Any = None, shapes: Any = None, values: dict[str, Sequence[float]] | None = None) -> Source:
    from ..artifact import sha256_file
    from ..formats.onnx import already_quantised, io_specs

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
    rg = _Ranges(names, [s.dtype for s in inputs], ranges)
    vals = _values_for(values, names, [s.dtype for s in inputs])
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

    from .._util import cache_dir
    from ..artifact import sha256_file
    from ..formats.onnx import io_specs

    if not values:
        return None
    inputs, _ = io_specs(model)
    _values_for(values, [s.name for s in inputs], [s.dtype for s in inputs])  # names and whole numbers checked first
    fold = {s.name: values[s.name][0] for s in inputs if s.name in values and len(values[s.name]) == 1 and not s.shape}
    if not fold:
        return None
    digest = sha256_file(path)
    key = hashlib.sha256((digest + json.dumps(sorted(fold.items()))).encode()).hexdigest()[:24]
    target = cache_dir() / "specialised" / key / f"{path.stem}.onnx"
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

            from .._util import quiet

            with quiet("onnxslim"):
                m = onnxslim.slim(m)
        except Exception:  # noqa: BLE001 - folding is an optimisation: without it the model is taken as given
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        onnx.save(m, str(tmp))
        os.replace(tmp, target)
    try:
        special = _onnx_source(target, None, rest_shapes, rest_values)
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
        want = _onnx_reference_runner(path).run(feeds)
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
    from ..errors import EdgeshipError

    try:
        outs = _onnx_reference_runner(path).run(list(examples))
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
    from .._util import check_example_size

    shape = tuple(shape) if shape is not None else s.concrete_shape(1)
    rng = np.random.default_rng(0)
    dt = np.dtype(s.dtype)
    check_example_size(shape, dt.itemsize, f"input {s.name!r}")
    if values:
        return np.full(shape, values[0]).astype(dt)
    if r is not None and dt != np.bool_:
        return _draw(rng, shape, dt, r)
    if np.issubdtype(dt, np.integer):
        return rng.integers(*DEFAULT_ID_RANGE, size=shape).astype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dt)
