"""Torch models: a factory (``package.module:function`` or ``file.py:function``) and its weights
(``--weights``, a plain state_dict), a torch checkpoint (a pickled module only with
``allow_pickle``), and the :class:`Source` of a module with its examples, names and input ranges."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import TensorSpec, clean_labels, sha256_file
from ..errors import FormatError, InputError, SecurityError, UnsupportedError, UsageError
from .model import Source, TorchModel, flatten_outputs
from .ranges import DEFAULT_ID_RANGE, Ranges, by_name, draw, values_for
from .sniff import sniff_format


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
                  seed_base: int = 0) -> tuple[list[np.ndarray], Ranges]:
    """Decide each input's range; generated integer examples are redrawn inside it. ``readers``
    (input -> embedding table) replaces the forward-hook search (a torch.export graph shows it)."""
    rg = Ranges(names, [a.dtype for a in examples], given)
    tables = list(readers.values()) if readers is not None else _embedding_tables(module)
    if rg.open():
        if tables and generated:  # ids 0..99 could index past a small table before we learn which one reads them
            safe = min(t[1] for t in tables)
            for i in rg.open():
                examples[i] = draw(np.random.default_rng(seed_base + i), examples[i].shape, examples[i].dtype, (0, safe))
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
                examples[i] = draw(np.random.default_rng(seed_base + i), examples[i].shape, examples[i].dtype, r)
    return examples, rg


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


def from_factory(ref, name, input_shapes, input_dtypes, weights, dynamic_batch, ranges=None, values=None) -> Source:
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
    examples = make_examples(tm.example_inputs, input_shapes, input_dtypes, ref, tm.input_names)
    return source_from_module(module, examples, tm, name=tm.name or name, origin=ref, kind="torch",
                              dynamic_batch=dynamic_batch, digest=module_digest(module), ranges=ranges,
                              generated=bool(input_shapes), values=values)


def make_examples(given, input_shapes, input_dtypes, ref, names=None) -> tuple[np.ndarray, ...]:
    if isinstance(input_shapes, dict) and input_shapes:
        # by input name: the factory's input names, else the defaults (input, or input_0, input_1, ...)
        count = len(given) or len(input_shapes)
        known = list(names or (["input"] if count == 1 else [f"input_{i}" for i in range(count)]))
        by_name(input_shapes, known, "--input-shape")
        if given and len(given) == len(known):
            keep = [np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t) for t in given]
            made = make_examples((), [input_shapes[n] for n in known if n in input_shapes], input_dtypes, ref)
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


def source_from_module(module, examples, tm: TorchModel, *, name, origin, kind, dynamic_batch, digest,
                       exported=None, allow_pickle=False, ranges=None, generated=False, values=None,
                       readers: dict[int, tuple[str, int]] | None = None) -> Source:
    """The :class:`Source` of a torch ``module`` run on ``examples``; ``readers`` (input -> the
    embedding table that reads it) as a torch.export graph shows them, else found with hooks."""
    import torch

    in_names = list(tm.input_names or (["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]))
    if len(in_names) != len(examples):
        raise InputError(f"the model has {len(examples)} inputs, but names were given for {len(in_names)}")
    examples, rg = _torch_ranges(module, list(examples), in_names, ranges, generated, readers=readers)
    vals = values_for(values, in_names, [a.dtype for a in examples])
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
                  input_ranges=tuple(rg.ranges), notes=tuple(rg.notes), tokenize=tm.tokenize, input_values=vals,
                  task=_factory_task(tm.task, name))


def _pickle_reason(e: BaseException) -> str:
    """What a weights-only unpickling refused, in a few words (torch's message is a page)."""
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


def checkpoint_source(path, input_shapes, input_dtypes, allow_pickle, dynamic_batch, ranges=None, values=None) -> Source:
    import torch

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
        examples = make_examples(getattr(obj, "example_inputs", ()), input_shapes, input_dtypes, str(path))
        return source_from_module(obj, examples, TorchModel(module=obj, example_inputs=()), name=path.stem,
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



def _factory_task(task: Any, name: str) -> Any:
    """The task record a factory's TorchModel declares (a record, its dict or JSON), checked."""
    if task is None:
        return None
    from ..tasks.records import parse_task

    return parse_task(task.model_dump() if hasattr(task, "model_dump") else task, f"the factory of {name}: task")
