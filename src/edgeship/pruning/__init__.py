"""Compression beyond quantisation: structural channel pruning and magnitude sparsity, with
fine-tuning by distillation (:mod:`.distill`).

The API (``edgeship.api.compress``) checks the request (:func:`check_request`), reads the data once
(:func:`load_data`), builds each ratio into a staging folder (:func:`build`: ``model.pt2``, a
``torch.export`` program with raw weights that edgeship loads without ``--allow-pickle``, and its
preprocessing and labels), times the original and the pruned models on the runtimes, and writes
the records (:func:`finish`, ``compress.json``) before the folder moves into place:

- ``channel``: structural pruning with the dependency-aware ``torch-pruning`` library (DepGraph):
  channels that must change together (a residual add, a depthwise group, a concatenation) are
  removed together; importance is each channel group's L2 weight magnitude (or first-order Taylor
  on data); the layers that produce the model's outputs keep their channels (the output shapes
  never change); each layer keeps a multiple of ``round_to`` channels. The result is a smaller
  dense model: fewer MACs and parameters on every runtime.
- ``magnitude``: unstructured sparsity (the smallest weights of every conv/linear set to zero,
  globally). Same shapes and MACs: no faster on most edge runtimes, only smaller once compressed;
  the record says so.

The record has params, MACs (counted on the exported graph, as ``edgeship analyze`` counts them),
the .pt2 size and its SHA-256 (:func:`lineage` reads it back when the .pt2 is deployed), and the
accuracy (with labels) or fidelity to the original (top-1 agreement for classifiers, cosine and
SQNR for every output) before and after fine-tuning; without training data the fall is said plainly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util import article
from ..analysis.torch_graph import export_program, graph_from_program
from ..artifact import sha256_file
from ..data import load_samples
from ..errors import EdgeshipError, UnsupportedError, UsageError
from ..fidelity import judge, source_is_classifier
from ..readers import read_json
from ..sources import Source, flatten_outputs, load_source
from . import distill  # the module: a test stands in for distill.distill

if TYPE_CHECKING:
    from .config import CompressConfig

__all__ = ["check_request", "load_data", "build", "finish", "lineage", "Data", "RECORD_FILE", "MODEL_FILE"]

COMPENSATION_SAMPLES = 64  # calibration inputs the removed channels' means are measured on
RECORD_FILE = "compress.json"
MODEL_FILE = "model.pt2"
PREPROCESS_FILE = "preprocess.json"
LABELS_FILE = "labels.txt"


def _weighted() -> tuple[type, ...]:
    """The layer types pruning reads and writes: convolutions and linear layers."""
    import torch

    return torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear


def _macs_params(module: Any, examples: tuple[np.ndarray, ...]) -> tuple[int, int]:
    """(MACs, parameters) of ``module`` on ``examples``, from its exported graph."""
    probe = Source(name="probe", kind="torch", origin="", digest="", inputs=(), outputs=(), module=module,
                   example_inputs=examples)
    g = graph_from_program(export_program(probe))
    return int(sum(layer.macs or 0 for layer in g.layers)), int(g.total_params)


def _outputs(module: Any, samples: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    import torch

    outs: list[list[np.ndarray]] = []
    with torch.no_grad():
        for s in samples:
            o = flatten_outputs(module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in s]))
            outs.append([t.detach().numpy() for t in o])
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def _head_layers(module: Any, args: tuple[Any, ...]) -> list[Any]:
    """The conv/linear layers whose output reaches a model output with its channel axis intact:
    the last weighted layer run (a classifier's head, an embedding's projection). Their output
    channels are the model's contract and are never pruned."""
    import torch

    order: list[Any] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for m in module.modules()
             if isinstance(m, _weighted())]
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for h in hooks:
            h.remove()
    return order[-1:]


def _input_means(model: Any, samples: list[tuple[np.ndarray, ...]]) -> dict[Any, np.ndarray]:
    """Per conv/linear layer, the mean of each of its input channels (features) on ``samples``."""
    import torch

    sums: dict[Any, list[Any]] = {}

    def hook(mod: Any, args: Any) -> None:
        x = args[0].detach().double()
        axis = x.ndim - 1 if isinstance(mod, torch.nn.Linear) else 1
        per = x.transpose(0, axis).reshape(x.shape[axis], -1)
        acc = sums.setdefault(mod, [0.0, 0])
        acc[0], acc[1] = acc[0] + per.sum(1), acc[1] + per.shape[1]

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, _weighted())]
    try:
        with torch.no_grad():
            for s in samples:
                model(*[torch.from_numpy(np.ascontiguousarray(a)) for a in s])
    finally:
        for h in hooks:
            h.remove()
    return {m: (t / n).numpy() for m, (t, n) in sums.items()}


def _taylor_gradients(model: Any, samples: list[tuple[np.ndarray, ...]], labels: list[int] | None) -> None:
    """Gradients of the cross-entropy on ``samples`` in ``model``'s parameters, for the first-order
    Taylor importance (Molchanov et al. 2019): against ``labels``, else against the model's own
    top-1 (a loss whose gradient is not zero at the model itself, as distillation's would be)."""
    import torch
    import torch.nn.functional as F

    model.zero_grad(set_to_none=True)
    for i in range(0, len(samples), 16):
        logits = flatten_outputs(model(*distill.stack(samples[i:i + 16])))[0]
        logits = logits.reshape(logits.shape[0], -1)
        target = torch.tensor(labels[i:i + 16]) if labels is not None else logits.detach().argmax(1)
        (F.cross_entropy(logits, target, reduction="sum") / len(samples)).backward()


def prune_channels(module: Any, examples: tuple[np.ndarray, ...], ratio: float,
                   samples: list[tuple[np.ndarray, ...]] | None = None, round_to: int | None = None,
                   importance: str = "magnitude", labels: list[int] | None = None) -> tuple[Any, int]:
    """A copy of ``module`` with ``ratio`` of each prunable layer's channels removed (torch-pruning,
    L2 magnitude of each coupled group), its outputs' shapes unchanged; and how many layers were
    compensated. With ``samples``, what each removed input channel contributed on average
    (its mean on the samples through the reading layer's weights) is added to that layer's bias:
    a pruned channel is rarely zero (a batch norm's shift through ReLU6 is a constant the next
    layer relies on), and this keeps the next layer's mean output where it was."""
    import copy

    import torch

    try:
        import torch_pruning as tp
    except ImportError:
        raise UnsupportedError("channel pruning needs torch-pruning, which is not installed",
                               hint='pip install "edgeship[compress]" (torch-pruning 1.6)') from None
    model = copy.deepcopy(module).eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in examples)
    with torch.no_grad():
        before = [t.shape for t in flatten_outputs(model(*args))]
    means = _input_means(model, samples) if samples else {}
    present = {m: list(range(len(v))) for m, v in means.items()}  # original channel ids still in each layer
    compensated: set[Any] = set()
    readers = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)
    try:
        if importance == "taylor":
            if not samples:
                raise UsageError("--importance taylor needs inputs to measure gradients on",
                                 hint="give --train-data, or use --importance magnitude")
            imp = tp.importance.GroupTaylorImportance()
        else:
            imp = tp.importance.GroupMagnitudeImportance(p=2)
        pruner = _rounding_pruner(tp)(model, args if len(args) > 1 else args[0], importance=imp,
                                      pruning_ratio=ratio, ignored_layers=_head_layers(model, args),
                                      round_to=round_to if round_to and round_to > 1 else None)
        if importance == "taylor":
            _taylor_gradients(model, samples, labels)  # type: ignore[arg-type]
        for group in pruner.step(interactive=True):
            for dep, idxs in group:
                layer = dep.target.module
                if dep.handler not in readers or layer not in means or not idxs:
                    continue
                ids = present[layer]
                gone = sorted(set(idxs))
                if getattr(layer, "groups", 1) == 1:  # a depthwise layer loses the output with the input
                    _compensate(layer, gone, means[layer][[ids[i] for i in gone]])
                    compensated.add(layer)
                present[layer] = [c for i, c in enumerate(ids) if i not in set(gone)]
            group.prune()
        with torch.no_grad():
            after = [t.shape for t in flatten_outputs(model(*args))]
        model.zero_grad(set_to_none=True)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - torch-pruning's tracer failed on this model: say so, with its words
        raise UnsupportedError(f"torch-pruning cannot prune this model: {type(e).__name__}: "
                               f"{(str(e).strip().splitlines() or [''])[0][:300]}",
                               hint="try --method magnitude (no graph needed), or simplify the model's forward "
                                    "(torch-pruning traces it with the example input)") from None
    if after != before:
        raise UnsupportedError(f"pruning changed the model's output shapes ({before} -> {after})",
                               hint="the layer that makes an output was not recognised; try --method magnitude")
    return model, len(compensated)


def _rounding_pruner(tp: Any) -> type:
    """torch-pruning's MetaPruner whose ``round_to`` keeps the *nearest* multiple of N channels (at
    least N; a layer narrower than N is kept whole), where the library rounds the kept channels down
    (16 channels at 10% would keep 8)."""

    class Pruner(tp.pruner.MetaPruner):  # type: ignore[misc, name-defined]
        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            if current_channels <= round_to:
                return 0
            keep = int(round((current_channels - n_pruned) / round_to)) * round_to
            return current_channels - min(current_channels, max(round_to, keep))

    return Pruner


def _compensate(layer: Any, gone: list[int], mean: np.ndarray) -> None:
    """Add to ``layer``'s bias what its input channels ``gone`` (about to be removed) gave on
    average: ``sum_c W[:, c] · mean_c`` (spatially summed for a convolution)."""
    import torch

    with torch.no_grad():
        w = layer.weight.detach().double()[:, gone]  # [out, len(gone), *kernel] or [out, len(gone)]
        add = (w.reshape(w.shape[0], len(gone), -1).sum(2) * torch.from_numpy(mean)).sum(1)
        if layer.bias is None:
            layer.bias = torch.nn.Parameter(torch.zeros(w.shape[0], dtype=layer.weight.dtype))
        layer.bias.add_(add.to(layer.bias.dtype))


def prune_magnitude(module: Any, ratio: float) -> tuple[Any, float]:
    """A copy of ``module`` with the ``ratio`` smallest-magnitude conv/linear weights (globally) set
    to zero, and the share of all its weights that are now zero."""
    import copy

    from torch.nn.utils import prune

    model = copy.deepcopy(module).eval()
    layers = [(m, "weight") for m in model.modules() if isinstance(m, _weighted())]
    if not layers:
        raise UnsupportedError("the model has no conv or linear layer to sparsify")
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=ratio)
    for m, name in layers:
        prune.remove(m, name)
    return model, _sparsity(model)


def _zipped_bytes(path: Path) -> int:
    """What the file costs to download: its size after zlib (zeros cost nearly nothing)."""
    import zlib

    return len(zlib.compress(path.read_bytes(), 6))


def check_request(source: Source, cfg: CompressConfig) -> None:
    """Refuse, before any work, what cannot be compressed or where the result cannot go."""
    if source.module is None:
        raise UsageError(f"{source.name} is {article(source.kind)} model; pruning needs a torch model",
                         hint="give the PyTorch model (a factory pkg.mod:fn, a .pt2 or a checkpoint), not an exported file")
    if cfg.method == "channel" and not any(isinstance(m, _weighted()) for m in source.module.modules()):
        raise UnsupportedError(f"{source.name} has no conv or linear layer torch-pruning can see (a .pt2 export holds "
                               "a graph of operators, not layers)",
                               hint="give the model's factory (pkg.module:fn, with --weights for a checkpoint), or "
                                    "--method magnitude")
    out = Path(cfg.out)
    if out.exists() and not cfg.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not empty", hint="give another --out, or --overwrite")


@dataclass
class Data:
    """What every ratio of one compression (or a sweep) is built and judged against, read and
    computed once: fine-tuning and evaluation samples and labels, the original's outputs on the
    evaluation samples, its MACs and parameters."""

    train: list[tuple[np.ndarray, ...]] | None
    train_labels: list[int] | None
    train_origin: str | None
    evaluation: list[tuple[np.ndarray, ...]]
    eval_labels: list[int] | None
    eval_origin: str
    classifier: bool
    reference: list[np.ndarray]  # the original's outputs on ``evaluation``
    macs: int  # the original's
    params: int


def load_data(source: Source, cfg: CompressConfig, say: Any) -> Data:
    train = labels = None
    if cfg.train_data is not None:
        say(f"reading the training data {cfg.train_data}")
        train, labels = load_samples(cfg.train_data, source, cfg.train_samples, "training")
    evaluation, eval_labels = load_samples(cfg.eval_data, source, cfg.eval_samples, "evaluation")
    if train is not None and cfg.eval_data is None:
        say("no --eval-data: fidelity is measured on the model's own evaluation inputs, not on held-out data")
    say(f"the original's outputs on {len(evaluation)} evaluation inputs, its MACs and parameters")
    ref = _outputs(source.module, evaluation)
    macs, params = _macs_params(source.module, tuple(np.asarray(a) for a in source.example_inputs))
    return Data(train, labels, cfg.train_data, evaluation, eval_labels,
                cfg.eval_data or source.inputs_origin("evaluation"),
                source_is_classifier(ref[0], source, None, truth=eval_labels), ref, macs, params)


def _fidelity(model: Any, data: Data) -> dict[str, Any]:
    fid = judge(data.reference, _outputs(model, data.evaluation), classifier=data.classifier, min_cosine=0.0, max_drop=1.0,
                labels=data.eval_labels)
    return {k: fid[k] for k in ("top1_agreement", "top5_agreement", "cosine", "sqnr_db", "accuracy", "accuracy_fp32")
            if fid.get(k) is not None}


def build(source: Source, cfg: CompressConfig, ratio: float, data: Data, work: Path, final: Path,
          say: Any) -> dict[str, Any]:
    """Prune ``source`` at ``ratio`` (and fine-tune it when there is training data) into
    ``work/model.pt2`` with its preprocessing and labels; return the record (written by :func:`finish`).
    ``final`` is where the folder will be, for the deploy command the record gives."""
    import torch

    t0 = time.perf_counter()
    examples = tuple(np.asarray(a) for a in source.example_inputs)
    macs0, params0 = data.macs, data.params
    record: dict[str, Any] = {"schema": "edgeship.compress/1", "source": source.record(), "method": cfg.method,
                              "ratio": ratio, "seed": cfg.seed}
    if cfg.method == "channel":
        say(f"pruning {ratio:.0%} of the channels (torch-pruning, {cfg.importance} importance per coupled group)")
        if data.train is not None:  # the removed channels' means: on training inputs when there are some
            cal, cal_origin = data.train[:COMPENSATION_SAMPLES], f"{data.train_origin} (training data)"
        else:  # never the evaluation inputs
            cal, cal_origin = source.calibration_inputs(COMPENSATION_SAMPLES), source.inputs_origin("calibration")
        cal_labels = data.train_labels[:COMPENSATION_SAMPLES] if data.train is not None and data.train_labels else None
        pruned, compensated = prune_channels(source.module, examples, ratio, cal, round_to=cfg.round_to,
                                             importance=cfg.importance, labels=cal_labels if data.classifier else None)
        record["round_to"], record["importance"] = cfg.round_to, cfg.importance
        record["compensation"] = {"layers": compensated, "samples": len(cal), "data": cal_origin,
                                  "what": "each removed input channel's mean contribution added to its reader's bias"}
        sparsity = None
        macs1, params1 = _macs_params(pruned, examples)
        if params1 == params0:
            raise UnsupportedError(f"pruning {ratio:.0%} of the channels removed none",
                                   hint="every layer is an output layer or too narrow to prune: give a larger ratio, "
                                        "or --method magnitude")
    else:
        say(f"zeroing the smallest {ratio:.0%} of the conv/linear weights")
        pruned, sparsity = prune_magnitude(source.module, ratio)
        macs1, params1 = macs0, params0

    say(f"fidelity to the original on {len(data.evaluation)} evaluation inputs")
    evaluation: dict[str, Any] = {"data": data.eval_origin, "samples": len(data.evaluation),
                                  "labels": data.eval_labels is not None, "pruned": _fidelity(pruned, data)}
    if data.train is not None:
        settings = distill.DistillSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                                           temperature=cfg.temperature, alpha=cfg.alpha, seed=cfg.seed, distill=cfg.distill)
        key = {"source": source.digest, "method": cfg.method, "ratio": ratio, "data": distill.data_digest(data.train,
               data.train_labels), "settings": settings.__dict__}
        if cfg.method == "magnitude":  # keep the zeros while training: the mask is the pruned weights' zeros
            _keep_zeros(pruned)
        record["fine_tuning"] = distill.distill(pruned, source.module, data.train, data.train_labels, settings,
                                                classifier=data.classifier, checkpoint=distill.checkpoint_path(key), say=say)
        record["fine_tuning"]["data"] = data.train_origin
        if cfg.method == "magnitude":
            _drop_masks(pruned)
            sparsity = _sparsity(pruned)
        evaluation["fine_tuned"] = _fidelity(pruned, data)
    final_fid = evaluation.get("fine_tuned", evaluation["pruned"])
    record["evaluation"] = evaluation
    record["fidelity"] = {"data": data.eval_origin, "samples": len(data.evaluation), **final_fid,
                          "note": f"fine-tuned on {data.train_origin}, kept: {record['fine_tuning']['kept']}"
                          if data.train is not None else "no training data: the pruned model as it is, not fine-tuned"}

    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in examples)
    try:
        with torch.no_grad():
            ep = torch.export.export(pruned.eval(), args)
    except Exception as e:  # noqa: BLE001
        raise UnsupportedError(f"the pruned model does not export with torch.export: {type(e).__name__}: "
                               f"{(str(e).strip().splitlines() or [''])[0][:300]}") from None
    work.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(work / MODEL_FILE))
    size = (work / MODEL_FILE).stat().st_size
    record["model_sha256"] = sha256_file(work / MODEL_FILE)
    record.update({
        "params": {"before": params0, "after": params1, "removed": 1 - params1 / max(params0, 1)},
        "macs": {"before": macs0, "after": macs1, "removed": 1 - macs1 / max(macs0, 1)},
        "pt2_bytes": size, "pt2_zlib_bytes": _zipped_bytes(work / MODEL_FILE),
        "model": MODEL_FILE,
    })
    if sparsity is not None:
        record["sparsity"] = sparsity
        record["note"] = ("magnitude pruning zeroes weights but keeps every shape and MAC: no faster on ONNX "
                          "Runtime, LiteRT, ExecuTorch or OpenVINO CPU; smaller only once compressed "
                          f"(pt2 {size} bytes, {record['pt2_zlib_bytes']} zlib-compressed)")
    # the file must load as any .pt2 a user brings does (never unpickled), and its inputs are named by that loader
    reloaded = load_source(str(work / MODEL_FILE))
    names = dict(zip((i.name for i in source.inputs), (i.name for i in reloaded.inputs)))
    # its own --out: the default one holds the original's artifacts, and another model there needs --overwrite
    deploy = [f"edgeship deploy {final / MODEL_FILE} --out {final.parent / (final.name + '-out')}"]
    if source.preprocess is not None:  # a .pt2 carries neither: written beside it, named in the command
        pre = source.preprocess.model_copy(update={"input": names.get(source.preprocess.input, source.preprocess.input)})
        (work / PREPROCESS_FILE).write_text(pre.model_dump_json(indent=1) + "\n")
        deploy.append(f"--preprocess {final / PREPROCESS_FILE}")
    if source.labels:
        (work / LABELS_FILE).write_text("\n".join(source.labels) + "\n")
        deploy.append(f"--labels {final / LABELS_FILE}")
    record["deploy"] = " ".join(deploy)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["out"] = str(final)
    return record


def _keep_zeros(model: Any) -> None:
    """Hold every conv/linear weight's zeros at zero while training (torch's pruning masks)."""
    from torch.nn.utils import prune

    for m in model.modules():
        if isinstance(m, _weighted()):
            prune.custom_from_mask(m, "weight", mask=(m.weight != 0))


def _drop_masks(model: Any) -> None:
    from torch.nn.utils import prune

    for m in model.modules():
        if isinstance(m, _weighted()) and prune.is_pruned(m):
            prune.remove(m, "weight")


def _sparsity(model: Any) -> float:
    layers = [m for m in model.modules() if isinstance(m, _weighted())]
    return sum(int((m.weight == 0).sum()) for m in layers) / max(sum(m.weight.numel() for m in layers), 1)


RECORD_LIMIT = 4 << 20  # bytes of a compress.json read at most


def lineage(source: Source) -> dict[str, Any] | None:
    """What ``edgeship compress`` did to make ``source``, when it is a ``.pt2`` with the
    ``compress.json`` that describes exactly this file beside it (its SHA-256 matches): the method,
    ratio, MACs and params before and after, fidelity and latency. The record is a file like any
    other: only numbers and short strings of the expected fields are taken from it."""
    origin = Path(source.origin) if source.kind == "pt2" else None
    rec_path = origin.parent / RECORD_FILE if origin is not None else None
    if rec_path is None or not rec_path.is_file() or not origin.is_file() or rec_path.stat().st_size > RECORD_LIMIT:
        return None
    try:
        rec = read_json(rec_path, "compress record", max_bytes=RECORD_LIMIT, links=False)
    except EdgeshipError:
        return None
    if not isinstance(rec, dict) or rec.get("schema") != "edgeship.compress/1" or rec.get("model_sha256") != sha256_file(origin):
        return None

    def nums(d: Any, keys: tuple[str, ...]) -> dict[str, float]:
        d = d if isinstance(d, dict) else {}
        return {k: d[k] for k in keys if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool)}

    def text(x: Any) -> str | None:
        return x[:300] if isinstance(x, str) else None

    fid_keys = ("top1_agreement", "top5_agreement", "cosine", "sqnr_db", "accuracy", "accuracy_fp32", "samples")
    src = rec.get("source") if isinstance(rec.get("source"), dict) else {}
    ev = rec.get("evaluation") if isinstance(rec.get("evaluation"), dict) else {}
    ft = rec.get("fine_tuning") if isinstance(rec.get("fine_tuning"), dict) else None
    lat = rec.get("latency") if isinstance(rec.get("latency"), dict) else {}
    return {
        "record": str(rec_path), "from": text(src.get("origin")), "from_name": text(src.get("name")),
        "method": text(rec.get("method")), **nums(rec, ("ratio", "round_to", "sparsity")),
        "macs": nums(rec.get("macs"), ("before", "after", "removed")),
        "params": nums(rec.get("params"), ("before", "after", "removed")),
        "fidelity": {**nums(rec.get("fidelity"), fid_keys), "data": text((rec.get("fidelity") or {}).get("data")),
                     "note": text((rec.get("fidelity") or {}).get("note"))},
        "before_fine_tuning": nums(ev.get("pruned"), fid_keys) if ft is not None else None,
        "fine_tuning": {"data": text(ft.get("data")), "kept": text(ft.get("kept"))} if ft is not None else None,
        "latency": {str(t)[:40]: nums(v, ("original_p50_ms", "pruned_p50_ms", "speedup"))
                    for t, v in list(lat.items())[:8] if isinstance(v, dict)},
    }


def finish(folder: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as ``folder/compress.json``."""
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=1, default=str) + "\n")
