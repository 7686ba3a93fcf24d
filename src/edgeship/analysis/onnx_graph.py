"""ONNX front end: shape inference, then per-node formulas.

Dynamic input dimensions are fixed before inference (batch → 1, others → 1 unless the caller
gives input shapes) and the report says which. The module path of a node is read from the name
of the weight it uses (``_blocks.0._depthwise_conv.weight`` → ``_blocks.0._depthwise_conv``) or
from the exporter's ``pkg.torch.onnx.name_scopes`` metadata when present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError
from ..formats.onnx import module_path
from ..formats.onnx import node_attribute as _attr
from .graph import Graph, Layer, Tensor, conv_macs

__all__ = ["load_model", "graph_from_onnx"]

_ALIAS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}
# op -> index of the weight input and of the data input, for the MAC formulas
_CONV_W = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3), "FusedConv": (0, 1), "NhwcConv": (0, 1)}
_MATMUL_A = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0, "QGemm": 0, "FusedMatMul": 0,
             "MatMulNBits": 0}
_CANON = {"ConvInteger": "Conv", "QLinearConv": "Conv", "FusedConv": "Conv", "NhwcConv": "Conv",
          "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul", "QGemm": "Gemm", "FusedMatMul": "MatMul",
          "MatMulNBits": "MatMul"}


def load_model(path: Path) -> Any:
    """Parse and check an ONNX file (external data confined to its folder)."""
    from ..sources import load_onnx_model, sniff_format

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such model file: {path}")
    kind = sniff_format(path)
    if kind != "onnx":
        raise FormatError(f"{path} is not an ONNX file (it looks like {kind})")
    return load_onnx_model(path)


def _fix_inputs(model: Any, input_shapes: Sequence[Sequence[int]] | None, notes: list[str]) -> Any:
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    ins = [v for v in m.graph.input if v.name not in inits]
    if input_shapes is not None and len(input_shapes) != len(ins):
        from ..errors import UsageError

        raise UsageError(f"{len(input_shapes)} --input-shape given, the model has {len(ins)} inputs",
                         hint=f"inputs: {', '.join(v.name for v in ins)}")
    for k, v in enumerate(ins):
        dims = v.type.tensor_type.shape.dim
        if input_shapes is not None:
            shape = list(input_shapes[k])
            if len(shape) != len(dims):
                from ..errors import UsageError

                raise UsageError(f"--input-shape {shape} has {len(shape)} dims, input {v.name!r} has {len(dims)}")
            for d, s in zip(dims, shape):
                d.ClearField("dim_param")
                d.dim_value = int(s)
            continue
        for i, d in enumerate(dims):
            if not d.HasField("dim_value"):
                notes.append(f"input {v.name!r} dimension {i} ({d.dim_param or '?'}) is dynamic: analysed at 1"
                             + ("" if i == 0 else "; give --input-shape for the real size"))
                d.ClearField("dim_param")
                d.dim_value = 1
    return m


def _elem_size(elem_type: int) -> tuple[int, str]:
    import numpy as np
    from onnx import helper

    try:
        dt = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
        return dt.itemsize, dt.name
    except Exception:
        return 4, str(elem_type)


def graph_from_onnx(model: Any, input_shapes: Sequence[Sequence[int]] | None = None) -> Graph:
    from onnx import numpy_helper, shape_inference

    notes: list[str] = []
    m = _fix_inputs(model, input_shapes, notes)
    try:
        m = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception as e:  # inference is best effort; unknown shapes are reported per op
        notes.append(f"ONNX shape inference failed ({str(e).splitlines()[0][:160]}); shapes may be missing")
    g = m.graph
    tensors: dict[str, Tensor] = {}

    def add_vi(v: Any) -> None:
        tt = v.type.tensor_type
        if not tt.HasField("shape"):
            shape = None
        else:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
            shape = None if any(d is None for d in dims) else tuple(int(d) for d in dims)
        size, dt = _elem_size(tt.elem_type)
        tensors[v.name] = Tensor(v.name, shape, size, dt)

    for v in list(g.input) + list(g.value_info) + list(g.output):
        add_vi(v)
    weights: dict[str, Tensor] = {}
    total_params = 0
    for init in g.initializer:
        size, dt = _elem_size(init.data_type)
        t = Tensor(init.name, tuple(int(d) for d in init.dims), size, dt)
        tensors[init.name] = weights[init.name] = t
        total_params += (t.elems or 0) if _is_param(t) else 0
    for node in g.node:  # Constant nodes hold weights too (small ones); not activations
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    arr = numpy_helper.to_array(a.t)
                    t = Tensor(node.output[0], tuple(arr.shape), arr.dtype.itemsize, arr.dtype.name)
                    tensors[node.output[0]] = weights[node.output[0]] = t

    layers: list[Layer] = []
    uncounted: set[str] = set()
    unnamed = 0
    for node in g.node:
        if node.op_type == "Constant":
            continue
        name = node.name
        if not name:
            unnamed += 1
            name = f"{node.op_type}_{unnamed}"
        ins = [i for i in node.input if i and i not in weights]
        wts = [i for i in node.input if i and i in weights]
        module = module_path(node)
        if module is None:
            for w in wts:
                if w.endswith((".weight", ".weight_bias", ".bias", ".in_proj_weight")):
                    module = w.rsplit(".", 1)[0]
                    break
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        layer = Layer(name=name, op=op, type=_CANON.get(node.op_type, node.op_type), module=module,
                      inputs=ins, outputs=[o for o in node.output if o], weights=wts,
                      params=sum(weights[w].elems or 0 for w in wts if _is_param(weights[w])),
                      alias=node.op_type in _ALIAS)
        for o in layer.outputs:
            tensors.setdefault(o, Tensor(o, None))
        _count(layer, node, tensors, uncounted)
        layers.append(layer)
    if uncounted:
        notes.append("MACs not counted where shapes are unknown: " + ", ".join(sorted(uncounted)))
    inputs = [v.name for v in g.input if v.name not in weights]
    return Graph(frontend="onnx", layers=layers, tensors=tensors, graph_inputs=inputs,
                 graph_outputs=[v.name for v in g.output], weights=weights, total_params=total_params, notes=notes,
                 source_model=m)


def _is_param(t: Tensor) -> bool:
    """A weight that counts as parameters: float or (u)int8/int4 data with more than one element
    (scalars, quantisation scales/zero points and int64 shape tensors do not)."""
    return (t.elems or 0) > 1 and t.dtype.startswith(("float", "bfloat", "int8", "uint8", "int4", "uint4"))


def _count(layer: Layer, node: Any, tensors: dict[str, Tensor], uncounted: set[str]) -> None:
    op = node.op_type
    out = tensors.get(node.output[0]).shape if node.output and node.output[0] in tensors else None

    def shape(i: int) -> tuple[int, ...] | None:
        if i >= len(node.input) or not node.input[i]:
            return None
        t = tensors.get(node.input[i])
        return t.shape if t else None

    if op in _CONV_W:
        xi, wi = _CONV_W[op]
        x, w = shape(xi), shape(wi)
        if x is None or w is None or out is None:
            uncounted.add(f"{op} {layer.name}")
            return
        groups = int(_attr(node, "group", 1))
        if groups < 1 or int(x[1]) % groups:
            raise FormatError(f"{op} node {layer.name!r}: its group attribute ({groups}) does not divide its "
                              f"{x[1]} input channels", hint="the file is corrupt or hand-edited (ONNX Runtime "
                                                             "refuses it too); export the model again")
        kernel = tuple(w[2:])
        layer.macs = conv_macs(out, x[1], groups, kernel)
        strides = list(_attr(node, "strides", [1] * len(kernel)))
        layer.conv = {"c_in": int(x[1]), "c_out": int(out[1]), "kernel": [int(k) for k in kernel],
                      "stride": [int(s) for s in strides], "groups": groups,
                      "spatial_out": [int(d) for d in out[2:]], "layout": "NCHW"}
    elif op == "ConvTranspose":
        x, w = shape(0), shape(1)
        if x is None or w is None:
            uncounted.add(f"{op} {layer.name}")
            return
        layer.macs = int(math.prod(x)) * int(w[1]) * int(math.prod(w[2:]))
    elif op in _MATMUL_A:
        a = shape(_MATMUL_A[op])
        if a is None or out is None:
            uncounted.add(f"{op} {layer.name}")
            return
        k = a[0] if (op in ("Gemm", "QGemm") and _attr(node, "transA", 0)) else a[-1]
        layer.macs = int(math.prod(out)) * int(k)
    elif op == "Einsum":
        uncounted.add(f"{op} {layer.name}")
