"""The per-layer int8 figures an artifact ships (``details.quantization.layers``): each layer's
int8 weights against the float weights before any rounding, named by its source module.

:meth:`~edgeship.targets.base.Target.int8_under_budget` calls :func:`shipped_layer_errors` on the
candidate it ships; :func:`layer_modules` traces a backend's layer names to the source's modules.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EdgeshipError

if TYPE_CHECKING:
    from ..sources import Source

__all__ = ["LANDED", "shipped_layer_errors", "layer_modules"]

#: a backend's int8 weights "land on" the learned levels when their own error against the rounded
#: weights is below this share of the rounding's error (amplitude): the figure is then the rounding's
LANDED = 1e-3


def shipped_layer_errors(source: Source, rows: list[dict[str, Any]], rounded: list[dict[str, Any]] | None,
                         equalized: bool) -> dict[str, Any]:
    """``details.quantization``'s per-layer figures of the int8 an :meth:`Target.int8_under_budget`
    ships, from the backend's ``rows`` of that candidate (each layer's int8 weights against the
    float weights the backend was given, worst first): every layer named by its source module where
    the backend's name can be traced to one (:func:`layer_modules`), and measured against the float
    weights before any rounding (the source's, or its equalised copy's: the same function).

    When the backend quantised weights already rounded the learned way (``rounded``: that
    rounding's per-layer figures, :func:`edgeship.quant.rounding.round_torch_module`), its own rows
    only say how far its int8 is from those rounded weights (~150 dB, or none at all, when it lands
    on the learned levels). A rounded layer's figure is then the rounding's error against the float
    weights combined with the backend's: exact when the backend lands on the learned levels, else the
    lower bound the triangle inequality gives (``bound``: the true figure is at least that; never
    above the rounding's own). A layer that cannot be traced to a source module is left out and
    named in ``layer_metric.unattributed``: its figure is against weights nobody can name."""
    from ..quant import layer_errors

    modules = layer_modules(source, rows)
    by_module = {r["module"]: r for r in rounded or [] if r.get("module")}
    out: list[dict[str, Any]] = []
    unattributed: list[str] = []
    for r in rows:
        module = modules.get(r["node"])
        row = {**r, "module": module or r.get("module")}
        if rounded is not None:
            if module is None:
                unattributed.append(r["node"])
                continue
            done = by_module.get(module)
            if done is not None:  # quantised from rounded weights: the rounding's error first
                db, exact = _composed_db(done.get("weight_sqnr_db"), r.get("weight_sqnr_db"))
                if db is None:
                    unattributed.append(r["node"])
                    continue
                row["weight_sqnr_db"] = round(db, 2)
                if not exact:
                    row["bound"] = "at least"
        out.append(row)
    out.sort(key=lambda r: r["weight_sqnr_db"] if r.get("weight_sqnr_db") is not None else math.inf)
    compact = layer_errors(out)
    for c, r in zip(compact, out):
        if r.get("bound"):
            c["bound"] = r["bound"]
    reference = ("the float weights after cross-layer equalisation (the original model's function, its channels "
                 "rescaled between layer pairs)" if equalized else "the original float weights")
    metric: dict[str, Any] = {
        "metric": "weight_sqnr_db", "label": "weight SQNR",
        "reference": reference,
        "how": "each layer's int8 weights (dequantised) against " + reference + " (a batch norm after the layer folded "
               "into it, as the backend quantises it)"
               + (": for a layer rounded the learned way, the rounding's error against them (measured on the torch "
                  "model) combined with the backend's own against the rounded weights; exact where the backend's "
                  "int8 lands on the learned levels, else a lower bound (bound: at least)" if rounded is not None else ""),
        "named_by": "source module" if all(r.get("module") for r in out) else
                    "source module where the backend's layer names trace to one, else the backend's own layer name"}
    if unattributed:
        metric["unattributed"] = unattributed
        metric["unattributed_why"] = ("their int8 weights were measured against the rounded weights and their names "
                                      "do not trace to a source module, so no figure against " + reference + " is known")
    return {"layers": compact, "most_sensitive_layers": compact[:5], "layers_measured": len(compact), "layer_metric": metric}


def _composed_db(rounding_db: Any, backend_db: Any) -> tuple[float | None, bool]:
    """The SQNR (dB) of int8 weights against float weights ``W``, from the rounding's figure (the
    rounded weights ``R`` against ``W``) and the backend's (its int8 weights ``Q`` against ``R``):
    ``|Q - W| <= |R - W| + |Q - R|`` and ``|R| <= |W| (1 + |R - W| / |W|)``, so the relative error is at
    most ``a + b (1 + a)`` (``a``, ``b`` the two relative amplitudes). Whether that bound is the figure
    itself: the backend's error is negligible (:data:`LANDED`). (None, False) when either is missing."""
    def amplitude(db: Any) -> float | None:
        if not isinstance(db, (int, float)) or math.isnan(db):
            return None
        return 0.0 if math.isinf(db) and db > 0 else 10 ** (-float(db) / 20)

    a, b = amplitude(rounding_db), amplitude(backend_db)
    if a is None or b is None:
        return None, False
    total = a + b * (1 + a)
    exact = b * (1 + a) <= LANDED * a
    if total == 0:
        return math.inf, True
    return (float(rounding_db) if exact else -20 * math.log10(total)), exact


def layer_modules(source: Source, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per row (by its node name) the weighted source module it is, in the source's own names: the
    row's ``module`` (a unique tail, as LiteRT's '6._project_conv', made whole; a submodule of the
    layer, as LiteRT's '_blocks.3._depthwise_conv.static_padding' for a convolution it fused with
    its padding, taken to the layer), else what its ``source_ref`` points at in the source (a torch
    source's k-th convolution, linear layer or the layer its k-th batch norm reads, checked against
    the weight's ``shape``; an ONNX source's node). Rows that name none are left out."""
    names, graph = _source_layers(source, need_graph=any(r.get("module") is None and r.get("source_ref") for r in rows))
    out = {}
    for r in rows:
        module = _whole(r.get("module"), names) if r.get("module") else None
        if module is None and r.get("source_ref") and graph is not None:
            module = _resolve(r["source_ref"], r.get("shape"), graph)
        if module is not None:
            out[r["node"]] = module
    return out


def _whole(module: str, names: tuple[set[str], set[str]] | None) -> str | None:
    """``module`` as one of the weighted layers (``names``: every module's name and the weighted
    ones'; None: the source has no torch module, the name stands): the module it names, or the one
    it is the unique tail of, or the nearest weighted module it sits in."""
    if names is None:
        return module
    every, weighted = names
    if module not in every:
        tails = [n for n in every if n.endswith("." + module)]
        if len(tails) != 1:
            return None
        module = tails[0]
    parts = module.split(".")
    return next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in weighted), None)


def _source_layers(source: Source, need_graph: bool) -> tuple[tuple[set[str], set[str]] | None, dict[str, Any] | None]:
    """The source's module names and its weighted layers' (None when it has no torch module: names
    are taken as given), and when asked its weighted layers in graph order: {"conv": [(module,
    shape)...], "linear": [...], "bn_input": [...], "onnx": {node name: module}}."""
    if source.module is None:
        if not need_graph or source.kind != "onnx" or source.path is None:
            return None, None
        from ..formats.onnx import module_path
        from ..sources import load_onnx_model

        try:
            model = load_onnx_model(Path(source.path), weights=False)
        except EdgeshipError:
            return None, None
        return None, {"onnx": {n.name: m for n in model.graph.node if (m := module_path(n))}}
    # every module, and the weighted layers: those holding a weight of two or more dimensions
    every = {n for n, _ in source.module.named_modules() if n}
    names = (every, {n for n, m in source.module.named_modules()
                     if n and "weight" in dict(m.named_parameters(recurse=False)) and m.weight.ndim >= 2})
    if not need_graph:
        return names, None
    import torch

    from ..quant.pt2e import graph_attr, weighted_ops

    conv, linear = weighted_ops()
    try:
        with torch.no_grad():
            gm = torch.export.export(source.module, tuple(torch.from_numpy(np.ascontiguousarray(a))
                                                          for a in source.example_inputs)).module()
    except Exception:  # noqa: BLE001 - naming is a help: the rows keep the backend's names
        return names, None

    def module(n: Any) -> str | None:
        stack = n.meta.get("nn_module_stack") or {}
        return next(reversed(list(stack.values())))[0] if stack else None

    def shape(n: Any) -> tuple[int, ...] | None:
        w = n.args[1] if len(n.args) > 1 else None
        return tuple(graph_attr(gm, w.target).shape) if getattr(w, "op", None) == "get_attr" else None

    graph: dict[str, Any] = {"conv": [], "linear": [], "bn_input": []}
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        if n.target in conv or n.target in linear:
            graph["conv" if n.target in conv else "linear"].append((module(n), shape(n)))
        elif "batch_norm" in str(n.target):
            x = n.args[0] if n.args else None
            graph["bn_input"].append((module(x), shape(x)) if getattr(x, "target", None) in conv else (None, None))
    return names, graph


def _resolve(ref: dict[str, Any], shape: Any, graph: dict[str, Any]) -> str | None:
    if "onnx_nodes" in ref:
        return next((graph["onnx"][n] for n in ref["onnx_nodes"] if n in graph.get("onnx", {})), None)
    layers = graph.get(ref.get("kind"), [])
    k = ref.get("index")
    if not isinstance(k, int) or not 0 <= k < len(layers):
        return None
    module, want = layers[k]
    if module is None or want is None or shape is None:
        return None
    # the same weight: as many values, as many output channels (a linear layer's may be stored transposed)
    same = int(np.prod(want)) == int(np.prod(shape)) and (ref.get("kind") == "linear" or want[0] == shape[0])
    return module if same else None

