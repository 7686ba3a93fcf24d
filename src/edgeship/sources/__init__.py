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
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._util import confined
from ..artifact import Preprocess, TensorSpec
from ..errors import FormatError, InputError, SecurityError, UnsupportedError, UsageError

__all__ = ["TorchModel", "Source", "load_source", "sniff_format", "BUILTIN_MODELS"]

SourceKind = Literal["torch", "pt2", "onnx", "tflite"]

BUILTIN_MODELS = {"efficientnet-lite0": "edgeship.sources.default:efficientnet_lite0"}


@dataclasses.dataclass(frozen=True)
class TorchModel:
    """What a factory may return to describe its model fully.

    ``sample_inputs`` are real inputs for verification (each a tuple of arrays matching
    ``example_inputs``); without them edgeship uses the sample photos for image models and
    seeded random inputs around ``example_inputs`` for the rest.
    """

    module: Any
    example_inputs: tuple[Any, ...]
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] | None = None
    name: str | None = None
    sample_inputs: tuple[tuple[np.ndarray, ...], ...] | None = None


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
        return [random_like(self.example_inputs, seed=i) for i in range(min(limit, 4))]

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
        return base + [random_like(self.example_inputs, seed=1000 + i) for i in range(limit - len(base))]

    def _sample_split(self) -> tuple[list[tuple[np.ndarray, ...]], list[tuple[np.ndarray, ...]]]:
        """The model's own sample inputs split in two, evaluation then calibration, so a quantised
        artifact is never judged on its calibration data (under 4 samples both get all of them)."""
        samples = [tuple(np.asarray(a) for a in s) for s in self.sample_inputs or ()]
        if len(samples) < 4:
            return samples, samples
        half = len(samples) // 2
        return samples[:half], samples[half:]

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
            return {"verification": "sample photos", "evaluation": "sample photos and augmented crops (seed 1)",
                    "calibration": "augmented crops of the sample photos (seed 0)"}.get(purpose, "sample photos")
        return "seeded random inputs (no preprocessing or sample inputs known: give --eval / --calib data)"

    def calibration_inputs(self, limit: int = 64) -> list[tuple[np.ndarray, ...]]:
        """Inputs for static quantisation, kept apart from verification/evaluation: augmented crops
        of the sample photos (seed 0) for image models, else seeded random inputs (seeds 2000+)."""
        if self.sample_inputs:
            return self._sample_split()[1][:limit]
        if self.preprocess is not None and len(self.inputs) == 1:
            from ..data import augmented_crops

            return [(x,) for x in augmented_crops(self.preprocess, limit, seed=0)]
        return [random_like(self.example_inputs, seed=2000 + i) for i in range(limit)]

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
        raise UnsupportedError(f"running a {self.kind} source needs its runtime target",
                               hint="use edgeship classify or benchmark on the file")


_ONNX_RUNNERS: dict[Path, Any] = {}


def _onnx_reference_runner(path: Path | None) -> Any:
    from ..targets.onnx import OnnxRunner

    assert path is not None
    if path not in _ONNX_RUNNERS:
        _ONNX_RUNNERS[path] = OnnxRunner(path, threads=0)
    return _ONNX_RUNNERS[path]


def clean_labels(labels: Sequence[str] | None) -> tuple[str, ...] | None:
    """Labels as single printable lines (labels.txt has one per line; generated code quotes them)."""
    if labels is None:
        return None
    out = []
    for lab in labels:
        text = " ".join(str(lab).split())  # newlines, tabs, runs of spaces -> one space
        text = "".join(ch for ch in text if ch.isprintable())
        out.append(text[:256])
    return tuple(out)


def random_like(examples: Sequence[np.ndarray], seed: int) -> tuple[np.ndarray, ...]:
    """Seeded inputs shaped like ``examples``: floats around their scale, ints in their range."""
    rng = np.random.default_rng(1234 + seed)
    out = []
    for a in examples:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.integer):
            lo, hi = int(a.min()), int(a.max())
            out.append(rng.integers(lo, max(hi, lo) + 1, size=a.shape).astype(a.dtype))
        elif a.dtype == np.bool_:
            out.append(rng.random(a.shape) < 0.5)
        else:
            scale = float(np.std(a)) or 1.0
            out.append((rng.standard_normal(a.shape) * scale + float(np.mean(a))).astype(a.dtype))
    return tuple(out)


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
    """'onnx', 'tflite', 'pt2', 'torch-zip', 'torch-pickle', 'npy' — from the bytes, not the name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a model file",
                         hint="give a .onnx/.pt2/.tflite/.pt file or a factory 'pkg.module:fn'") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    if not head:
        raise FormatError(f"{path} is empty", hint="the file was probably truncated; export it again")
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            raise FormatError(f"{path} looks like a zip archive but is damaged") from None
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
) -> Source:
    """Load ``spec`` (a built-in name, a factory or a model file) as a :class:`Source`."""
    if spec in BUILTIN_MODELS:
        return _from_factory(BUILTIN_MODELS[spec], spec, input_shapes, input_dtypes, weights, dynamic_batch)
    path = Path(spec)
    if path.exists():
        if weights is not None:
            raise UsageError("--weights goes with a factory 'pkg.module:fn', not with a model file")
        return _from_file(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch)
    if ":" in spec:
        return _from_factory(spec, spec, input_shapes, input_dtypes, weights, dynamic_batch)
    raise InputError(
        f"no such model file: {spec}",
        hint=f"give a model file, a factory 'package.module:function', or a built-in name ({', '.join(BUILTIN_MODELS)})",
    )


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
        raise InputError(f"cannot import {mod_name!r} for factory {ref!r}: {e}",
                         hint="install the package or run from the folder that holds it") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise InputError(f"{mod_name!r} has no attribute {attr!r}",
                         hint=f"names it has: {', '.join(n for n in dir(module) if not n.startswith('_'))[:300]}")
    return fn


def _from_factory(ref, name, input_shapes, input_dtypes, weights, dynamic_batch) -> Source:
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
    examples = _example_inputs(tm.example_inputs, input_shapes, input_dtypes, ref)
    return _torch_source(module, examples, tm, name=tm.name or name, origin=ref, kind="torch",
                         dynamic_batch=dynamic_batch, digest=_module_digest(module))


def _example_inputs(given, input_shapes, input_dtypes, ref) -> tuple[np.ndarray, ...]:
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
                out.append(rng.integers(0, 100, size=tuple(shape)).astype(np_dt))
            else:
                out.append(rng.standard_normal(tuple(shape)).astype(np_dt))
        return tuple(out)
    if not given:
        raise UsageError(f"the model from {ref!r} has no example input",
                         hint="give --input-shape 1,3,224,224 (and --input-dtype), or return "
                              "(module, example_inputs) from the factory")
    return tuple(np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t) for t in given)


def _module_digest(module: Any) -> str:
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
                  exported=None, allow_pickle=False) -> Source:
    import torch

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
    in_names = list(tm.input_names or (["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]))
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
                  example_inputs=tuple(examples), sample_inputs=tm.sample_inputs, allow_pickle=allow_pickle)


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
        raise SecurityError(f"{path} needs arbitrary code execution to load (a pickle beyond plain tensors): "
                            f"{str(e).splitlines()[0][:200]}",
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


def _from_file(path: Path, input_shapes, input_dtypes, allow_pickle, dynamic_batch) -> Source:
    kind = sniff_format(path)
    if kind == "onnx":
        return _onnx_source(path)
    if kind == "tflite":
        from ..artifact import sha256_file

        return Source(name=path.stem, kind="tflite", origin=str(path), digest=sha256_file(path),
                      inputs=(), outputs=(), path=path,
                      notes=("a .tflite file is run, analysed and benchmarked as it is; edgeship does not convert from it",))
    if kind == "pt2":
        return _pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch)
    if kind in ("torch-zip", "torch-pickle"):
        return _checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch)
    raise FormatError(f"{path} is a numpy array file, not a model",
                      hint="give it as calibration or evaluation data instead")


def _checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch) -> Source:
    import torch
    from ..artifact import sha256_file

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if not allow_pickle:
            raise SecurityError(
                f"{path} is a pickle that runs code when loaded ({str(e).splitlines()[0][:160]})",
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
                             digest=sha256_file(path), allow_pickle=allow_pickle)
    if _state_dict_of(obj) is not None:
        raise UsageError(
            f"{path} holds weights only (a state_dict), not an architecture",
            hint=f"give the architecture as a factory and the checkpoint as weights: "
                 f"edgeship deploy pkg.module:build_model --weights {path}",
        )
    raise FormatError(f"{path} is a torch file holding {type(obj).__name__}, not a model")


def _check_pt2_pickles(path: Path, allow_pickle: bool) -> None:
    """torch.export.load unpickles weights without weights_only: vet every pickle first."""
    import torch

    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            n = info.filename
            if "custom_obj" in n or "opaque_obj" in n:
                if not allow_pickle:
                    raise SecurityError(f"{path} holds a pickled custom object ({n})",
                                        hint="load it only if you trust its author: add --allow-pickle")
                continue
            with z.open(info) as fh:
                head = fh.read(4)
            if head[:1] == b"\x80" or head == b"PK\x03\x04":
                if allow_pickle:
                    continue
                try:
                    torch.load(io.BytesIO(z.read(info)), weights_only=True, map_location="cpu")
                except Exception:
                    raise SecurityError(f"{path} member {n} is a pickle that runs code when loaded",
                                        hint="load it only if you trust its author: add --allow-pickle") from None


def _pt2_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch) -> Source:
    import torch
    from ..artifact import sha256_file

    _check_pt2_pickles(path, allow_pickle)
    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise FormatError(f"{path} is not a loadable torch.export program: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                          hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
    given = ()
    if not input_shapes:
        given = tuple(_example_from_meta(n) for n in ep.graph.nodes if n.op == "placeholder"
                      and n.name in {s.arg.name for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"})
    examples = _example_inputs(given, input_shapes, input_dtypes, str(path))
    module = ep.module()
    return _torch_source(module, examples, TorchModel(module=module, example_inputs=()), name=path.stem,
                         origin=str(path), kind="pt2", dynamic_batch=dynamic_batch, digest=sha256_file(path),
                         exported=ep, allow_pickle=allow_pickle)


def _example_from_meta(node: Any) -> np.ndarray:
    import torch

    val = node.meta.get("val")
    shape = tuple(int(d) if isinstance(d, int) else 2 for d in val.shape)
    if val.dtype.is_floating_point:
        return torch.randn(shape, dtype=val.dtype, generator=torch.Generator().manual_seed(0)).numpy()
    return torch.zeros(shape, dtype=val.dtype).numpy()


# ---- onnx -------------------------------------------------------------------------------

def load_onnx_model(path: Path) -> Any:
    """Parse an ONNX file; external data may only come from inside its folder."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise FormatError(f"{path} is not a valid ONNX model ({type(e).__name__})",
                          hint="the file is corrupt or of another format; export it again") from None
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
            target = confined(root, loc, f"external data of tensor {t.name!r}")
            if not target.is_file():
                raise FormatError(f"external data file {loc!r} of tensor {t.name!r} is missing",
                                  hint=f"keep it beside {path.name}")
            size = size_of.setdefault(loc, target.stat().st_size)
            end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
            if end > size:
                raise FormatError(f"external data of tensor {t.name!r} runs past the end of {loc!r}",
                                  hint="the data file is truncated; export the model again")
    try:
        onnx.load_external_data_for_model(model, str(root))
        onnx.checker.check_model(model)
    except Exception as e:
        raise FormatError(f"{path} is not a valid ONNX model: {str(e).splitlines()[0][:300]}",
                          hint="check it with onnx.checker; export it again") from None
    return model


def _onnx_source(path: Path) -> Source:
    from ..artifact import sha256_file
    from ..targets.onnx import io_specs

    model = load_onnx_model(path)
    inputs, outputs = io_specs(model)
    examples = tuple(_example_for_spec(s) for s in inputs)
    return Source(name=path.stem, kind="onnx", origin=str(path), digest=sha256_file(path), inputs=inputs,
                  outputs=outputs, path=path, example_inputs=examples)


def _example_for_spec(s: TensorSpec) -> np.ndarray:
    shape = s.concrete_shape(1)
    rng = np.random.default_rng(0)
    dt = np.dtype(s.dtype)
    if np.issubdtype(dt, np.integer):
        return rng.integers(0, 100, size=shape).astype(dt)
    if dt == np.bool_:
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dt)
