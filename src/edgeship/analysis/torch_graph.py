"""Torch front end: ``torch.export`` the source and walk its ATen graph.

Every call node becomes a :class:`~edgeship.analysis.graph.Layer` named by the FX node, with the
source module path from ``nn_module_stack``, shapes from the exported fake tensors, and MACs from
the formulas in :mod:`edgeship.analysis.graph`. Counting on the exported graph (not with module
hooks) sees functional ops too, e.g. the ``F.conv2d`` inside Lite0's padded conv subclass that
ptflops/thop miss.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UnsupportedError
from .graph import RNN_GATES, Graph, Layer, Tensor, conv_macs, recurrent_macs

__all__ = ["export_program", "graph_from_program", "canonical_type", "aten_name"]

_ALIAS = {"view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "dropout", "alias", "detach",
          "expand", "t", "transpose", "permute", "contiguous", "feature_dropout", "alpha_dropout", "lift_fresh_copy",
          "unflatten", "view_as", "reshape_as", "expand_as", "identity"}
_HIDDEN = {"getitem", "_assert_tensor_metadata", "sym_size", "sym_numel", "sym_stride", "_assert_scalar",
           "sym_constrain_range_for_size", "_assert_async", "scalar_tensor", "_local_scalar_dense"}

_TYPES = {
    "conv1d": "Conv", "conv2d": "Conv", "conv3d": "Conv", "convolution": "Conv", "_convolution": "Conv",
    "conv_transpose1d": "ConvTranspose", "conv_transpose2d": "ConvTranspose", "conv_transpose3d": "ConvTranspose",
    "linear": "Gemm", "addmm": "Gemm", "mm": "MatMul", "bmm": "MatMul", "matmul": "MatMul", "baddbmm": "MatMul",
    "scaled_dot_product_attention": "Attention", "_scaled_dot_product_flash_attention_for_cpu": "Attention",
    "batch_norm": "BatchNormalization", "_native_batch_norm_legit_no_training": "BatchNormalization",
    "native_batch_norm": "BatchNormalization", "layer_norm": "LayerNormalization",
    "native_layer_norm": "LayerNormalization", "group_norm": "GroupNormalization",
    "instance_norm": "InstanceNormalization",
    "relu": "Relu", "relu6": "Clip", "hardtanh": "Clip", "clamp": "Clip", "clip": "Clip", "sigmoid": "Sigmoid",
    "hardsigmoid": "HardSigmoid", "hardswish": "HardSwish", "silu": "Silu", "gelu": "Gelu", "tanh": "Tanh",
    "softmax": "Softmax", "_softmax": "Softmax", "log_softmax": "LogSoftmax", "_log_softmax": "LogSoftmax",
    "leaky_relu": "LeakyRelu", "prelu": "PRelu", "elu": "Elu", "erf": "Erf",
    "add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "sqrt": "Sqrt", "rsqrt": "Sqrt",
    "neg": "Neg", "where": "Where", "exp": "Exp", "log": "Log", "abs": "Abs",
    "avg_pool1d": "AveragePool", "avg_pool2d": "AveragePool", "max_pool1d": "MaxPool", "max_pool2d": "MaxPool",
    "max_pool2d_with_indices": "MaxPool", "adaptive_avg_pool2d": "AveragePool", "adaptive_avg_pool1d": "AveragePool",
    "adaptive_max_pool2d": "MaxPool", "mean": "ReduceMean", "sum": "ReduceSum", "amax": "ReduceMax",
    "view": "Reshape", "_unsafe_view": "Reshape", "reshape": "Reshape", "flatten": "Flatten", "unflatten": "Reshape",
    "squeeze": "Squeeze", "unsqueeze": "Unsqueeze", "permute": "Transpose", "transpose": "Transpose", "t": "Transpose",
    "cat": "Concat", "concat": "Concat", "stack": "Concat", "slice": "Slice", "select": "Gather", "narrow": "Slice",
    "split": "Split", "split_with_sizes": "Split", "chunk": "Split", "unbind": "Split",
    "pad": "Pad", "constant_pad_nd": "Pad", "dropout": "Dropout", "embedding": "Gather", "index_select": "Gather",
    "expand": "Expand", "to": "Cast", "_to_copy": "Cast", "type_as": "Cast", "contiguous": "Identity",
    "clone": "Identity", "alias": "Identity", "detach": "Identity", "lift_fresh_copy": "Identity",
    "upsample_nearest2d": "Resize", "upsample_bilinear2d": "Resize", "interpolate": "Resize",
    "pixel_shuffle": "DepthToSpace",
    "lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN",
}


def aten_name(target: Any) -> str:
    """'aten.conv2d.default' -> 'conv2d'; a Python builtin like operator.getitem -> 'getitem'."""
    name = getattr(target, "__name__", None) or str(target)
    if hasattr(target, "_schema"):  # an OpOverload
        name = target._schema.name.split("::")[-1]
    return name.split(".")[0]


def _op_string(target: Any) -> str:
    """'aten.conv2d.default' for ATen and edge-dialect ops alike."""
    if type(target).__name__ == "EdgeOpOverload":
        target = getattr(target, "_op", target)
    return str(target)


def canonical_type(short: str) -> str:
    s = _plain(short)
    return _TYPES.get(s, s)


def _plain(short: str) -> str:
    """In-place and edge-dialect spellings to the plain op: relu_ -> relu, view_copy -> view."""
    s = short[:-1] if short.endswith("_") and not short.startswith("_") else short
    if s.endswith("_copy") and s[:-5] in _TYPES:
        s = s[:-5]
    return {"_clone_dim_order": "clone", "_to_dim_order_copy": "_to_copy"}.get(s, s)


def export_program(source: Any) -> Any:
    """The source's ExportedProgram (a .pt2 already has one)."""
    import contextlib
    import io
    import warnings

    import numpy as np
    import torch

    if source.exported is not None:
        return source.exported
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in source.example_inputs)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return torch.export.export(source.module, args, strict=False)
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UnsupportedError(
            f"torch.export cannot capture {source.name} for analysis: {type(e).__name__}: {msg}",
            hint="analysis walks the exported graph; make the model torch.export-able (no data-dependent "
                 "control flow), or analyze its ONNX file instead") from None


def _val_shape(v: Any) -> tuple[int, ...] | None:
    shape = getattr(v, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):  # symbolic
        return None


def _itemsize(v: Any) -> int:
    dt = getattr(v, "dtype", None)
    return int(getattr(dt, "itemsize", 4) or 4)


def _module_path(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    return path or None


def graph_from_program(ep: Any) -> Graph:
    import torch.fx

    sig = ep.graph_signature
    kind_of: dict[str, str] = {}
    target_of: dict[str, str] = {}
    for spec in sig.input_specs:
        name = getattr(spec.arg, "name", None)
        if name is not None:
            kind_of[name] = spec.kind.name
            target_of[name] = spec.target or name

    tensors: dict[str, Tensor] = {}
    weights: dict[str, Tensor] = {}
    graph_inputs: list[str] = []
    param_names: set[str] = set()
    for node in ep.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        t = Tensor(node.name, _val_shape(val), _itemsize(val), str(getattr(val, "dtype", "")).replace("torch.", ""))
        tensors[node.name] = t
        kind = kind_of.get(node.name, "USER_INPUT")
        if kind == "USER_INPUT":
            graph_inputs.append(node.name)
        elif kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            weights[node.name] = t
            if kind == "PARAMETER":
                param_names.add(node.name)

    layers: list[Layer] = []
    notes: list[str] = []
    uncounted: set[str] = set()
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        short = aten_name(node.target)
        val = node.meta.get("val")
        outs: list[str] = []
        vals = val if isinstance(val, (tuple, list)) else [val]
        for i, v in enumerate(vals):
            if _val_shape(v) is None:
                continue
            oname = node.name if not isinstance(val, (tuple, list)) else f"{node.name}:{i}"
            tensors[oname] = Tensor(oname, _val_shape(v), _itemsize(v), str(getattr(v, "dtype", "")).replace("torch.", ""))
            outs.append(oname)
        ins: list[str] = []
        wts: list[str] = []
        for a in node.all_input_nodes:
            (wts if a.name in weights else ins).append(a.name)
        if short == "getitem" and node.args and isinstance(node.args[0], torch.fx.Node):
            src = f"{node.args[0].name}:{node.args[1]}"
            ins = [src] if src in tensors else ins
        layer = Layer(name=node.name, op=_op_string(node.target), type=canonical_type(short), module=_module_path(node),
                      inputs=ins, outputs=outs, weights=wts,
                      params=sum(weights[w].elems or 0 for w in wts if w in param_names))
        layer.alias = _plain(short) in _ALIAS or short == "getitem"
        if short in _HIDDEN or short.startswith("sym_"):
            layer.note = "hidden"
        _count(layer, node, short, tensors, uncounted)
        layers.append(layer)
    if uncounted:
        notes.append(f"MACs not counted for ops with unknown shapes or no formula: {', '.join(sorted(uncounted))}")
    outputs = [getattr(a, "name", None) for a in _flat(next(n for n in ep.graph.nodes if n.op == "output").args)]
    total_params = sum(weights[n].elems or 0 for n in param_names)
    return Graph(frontend="torch", layers=layers, tensors=tensors, graph_inputs=graph_inputs,
                 graph_outputs=[o for o in outputs if o], weights=weights, total_params=total_params, notes=notes)


def _flat(x: Any) -> list[Any]:
    if isinstance(x, (tuple, list)):
        return [y for v in x for y in _flat(v)]
    return [x]


def _shape(node_or_val: Any) -> tuple[int, ...] | None:
    import torch.fx

    if isinstance(node_or_val, torch.fx.Node):
        return _val_shape(node_or_val.meta.get("val"))
    return None


def _count(layer: Layer, node: Any, short: str, tensors: dict[str, Tensor], uncounted: set[str]) -> None:
    args = list(node.args)
    out = tensors[layer.outputs[0]].shape if layer.outputs else None
    try:
        if layer.type == "Conv" or layer.type == "ConvTranspose":
            x, w = _shape(args[0]), _shape(args[1])
            if short in ("convolution", "_convolution"):
                transposed = bool(args[6])
                groups = int(args[8])
                stride = args[3]
            elif layer.type == "ConvTranspose":
                transposed = True
                groups = int(args[6]) if len(args) > 6 else int(node.kwargs.get("groups", 1))
                stride = args[3] if len(args) > 3 else 1
            else:
                transposed = False
                groups = int(args[6]) if len(args) > 6 else int(node.kwargs.get("groups", 1))
                stride = args[3] if len(args) > 3 else node.kwargs.get("stride", 1)
            if x is None or w is None or out is None:
                uncounted.add(short)
                return
            kernel = tuple(w[2:])
            if transposed:
                layer.type = "ConvTranspose"
                layer.macs = int(math.prod(x)) * (w[1]) * int(math.prod(kernel))
                c_in, c_out = x[1], out[1]
            else:
                layer.macs = conv_macs(out, x[1], groups, kernel)
                c_in, c_out = x[1], out[1]
            stride_t = tuple(stride) if isinstance(stride, (list, tuple)) else (int(stride),) * len(kernel)
            layer.conv = {"c_in": int(c_in), "c_out": int(c_out), "kernel": [int(k) for k in kernel],
                          "stride": [int(s) for s in stride_t], "groups": groups,
                          "spatial_out": [int(d) for d in out[2:]], "layout": "NCHW"}
        elif short == "linear":
            x = _shape(args[0])
            layer.macs = int(math.prod(out)) * x[-1]
        elif short in ("addmm", "baddbmm"):
            a = _shape(args[1])
            layer.macs = int(math.prod(out)) * a[-1]
        elif short in ("mm", "bmm", "matmul"):
            a = _shape(args[0])
            layer.macs = int(math.prod(out)) * (a[-1] if len(a) >= 1 else 1)
        elif layer.type == "Attention":
            q, k, v = _shape(args[0]), _shape(args[1]), _shape(args[2])
            batch = int(math.prod(q[:-2]))
            layer.macs = batch * q[-2] * k[-2] * (q[-1] + v[-1])
        elif layer.type in RNN_GATES:  # aten.lstm.input(x, hx, params, has_biases, layers, dropout, train, bidir, batch_first)
            x, h = _shape(args[0]), _shape(_flat(args[1])[0])
            layers, bidir, batch_first = int(args[4]), bool(args[7]), bool(args[8])
            if x is None or h is None or len(x) != 3:
                uncounted.add(short)
                return
            seq, batch = (x[1], x[0]) if batch_first else (x[0], x[1])
            dirs, hidden = 2 if bidir else 1, int(h[-1])
            layer.macs = sum(recurrent_macs(layer.type, seq, batch, x[-1] if i == 0 else hidden * dirs, hidden, dirs)
                             for i in range(layers))
        elif short == "einsum":
            uncounted.add(short)
    except (TypeError, IndexError, ValueError):
        uncounted.add(short)
