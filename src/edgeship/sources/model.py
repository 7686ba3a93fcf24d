"""The loaded model: :class:`Source` (what every stage converts and verifies against), what a
factory returns (:class:`TorchModel`), running the source itself, and its default real inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import cache, data
from .._util import article
from ..artifact import Preprocess, TensorSpec
from ..errors import UnsupportedError
from ..formats.onnx import OnnxRunner
from .ranges import random_like

SourceKind = Literal["torch", "pt2", "onnx", "tflite"]


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
    #: what the model's inputs and outputs are (an :mod:`edgeship.tasks` record; deploy --task-record wins)
    task: Any = None


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
    #: the task record (edgeship.tasks) deploy --task or a pipeline file gave
    task: Any = None

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
            **({"task": self.task.model_dump(mode="json")} if self.task is not None else {}),
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
            return [(data.preprocess_image(img, self.preprocess),) for img in data.sample_photos().values()][:limit]
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
            return base + [(x,) for x in data.augmented_crops(self.preprocess, limit - len(base), seed=1)]
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
        if data.is_stream(self):
            return ("synthetic speech-like audio streams (not real data: give --eval / --calib a folder of .wav "
                    "recordings)")
        if self.sample_inputs:
            if len(self.sample_inputs) < 4 and purpose != "verification":
                return ("all sample inputs given with the model, for evaluation and calibration alike (fewer than 4: "
                        "give --eval / --calib data)")
            return {"evaluation": "the first half of the sample inputs given with the model",
                    "calibration": "the second half of the sample inputs given with the model"}.get(
                        purpose, "sample inputs given with the model")
        if self.preprocess is not None and len(self.inputs) == 1:
            return {"verification": "sample photos",
                    "evaluation": f"the {len(data.SAMPLE_PHOTOS)} sample photos and augmented crops of them",
                    "calibration": f"augmented crops of {len(data.CALIBRATION_PHOTOS)} other photos (none of them evaluated "
                                   "on)"}.get(purpose, "sample photos")
        return "seeded random inputs (no preprocessing or sample inputs known: give --eval / --calib data)"

    def calibration_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]:
        """Inputs for static quantisation, kept apart from verification/evaluation: augmented crops
        of photos never evaluated on (:data:`~edgeship.data.CALIBRATION_PHOTOS`) for image models,
        else seeded random inputs (seeds 2000+)."""
        if self.sample_inputs:
            return self._sample_split()[1][:limit]
        if self.preprocess is not None and len(self.inputs) == 1:
            return [(x,) for x in data.augmented_crops(self.preprocess, limit, seed=0, names=data.CALIBRATION_PHOTOS)]
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
            runner = onnx_reference_runner(self.path)
            return runner.run(list(inputs))
        raise UnsupportedError(f"running {article(self.kind)} source needs its runtime target",
                               hint="use edgeship classify or benchmark on the file")

    def evaluation(self, spec: str | None, limit: int) -> tuple[list[tuple[np.ndarray, ...]], list[int] | None,
                                                                 list[list[np.ndarray]]]:
        """The evaluation set (``--eval`` data ``spec``, else the source's own, ``limit`` inputs), its
        labels, and this source's outputs on each input: computed once per process and data, so the
        int8 budget and verify judge against the same reference run once (every figure once)."""
        key = (id(self), self.digest, spec, limit, _data_stamp(spec))
        held = _EVALUATION.get(key)
        if held is None or held[0] is not self:
            samples, labels = data.load_samples(spec, self, limit, "evaluation")
            refs = [self.run(s) for s in samples]
            _EVALUATION.drop()  # one source and set at a time: a deploy's budget and verify share it
            held = (self, samples, labels, refs)
            if key[-1] is not None:  # data whose contents can be stamped (not a callable's samples)
                _EVALUATION.put(key, held)
        return held[1], held[2], held[3]


#: (source id, digest, spec, limit, data stamp) -> (source, samples, labels, outputs): the last evaluation set
_EVALUATION = cache.Memo("the evaluation set and the source's outputs on it")


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


#: (path, mtime, size) -> session; a few files at once (a deploy's fp32 and the models it compares)
_ONNX_RUNNERS = cache.Memo("ONNX reference sessions", keep=4)


def onnx_reference_runner(path: Path | None) -> Any:
    """One ONNX Runtime session per model file, kept while the file is unchanged (a file written
    again at the same path gets a new session)."""
    assert path is not None
    st = path.stat()
    key = (path.resolve(), st.st_mtime_ns, st.st_size)
    if key not in _ONNX_RUNNERS:
        _ONNX_RUNNERS.drop(lambda k: k[0] == key[0])
    return _ONNX_RUNNERS.made(key, lambda: OnnxRunner(path, threads=0))


def flatten_outputs(out: Any) -> list[Any]:
    """Tensors of a model's output in order: a tensor, nested tuples/lists, or dict values."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in flatten_outputs(v)]
    if hasattr(out, "logits") and not hasattr(out, "shape"):  # HF-style ModelOutput
        return flatten_outputs(out.to_tuple())
    return [out]
