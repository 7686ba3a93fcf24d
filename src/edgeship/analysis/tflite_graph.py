"""TFLite front end: a graph from the LiteRT interpreter's op and tensor tables
(:func:`edgeship.formats.tflite.read_tflite`, read in an isolated child process, which also lets
the default XNNPACK delegate claim its nodes: the compatibility preview reports the real
delegated share).

Supported: the main subgraph's builtin ops with static shapes; MACs for CONV_2D,
DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, BATCH_MATMUL and the recurrent builtins (LSTM,
RNN and their sequence forms: every weight matrix once per time step). Not supported: control-flow
subgraphs (WHILE/IF bodies are not walked), dynamic shapes (-1 dims count as 1), custom ops'
MACs. Module paths are recovered from litert-torch's tensor names (``pkg.Model/...Conv2d_0``).
"""

from __future__ import annotations

import math
from typing import Any

from ..formats.tflite import module_from_tensor_name
from .graph import Graph, Layer, Tensor

__all__ = ["graph_from_tflite", "TFLITE_TYPES"]

TFLITE_TYPES = {
    "CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "TRANSPOSE_CONV": "ConvTranspose", "CONV_3D": "Conv",
    "FULLY_CONNECTED": "Gemm", "BATCH_MATMUL": "MatMul", "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div",
    "RELU": "Relu", "RELU6": "Clip", "RELU_N1_TO_1": "Clip", "LOGISTIC": "Sigmoid", "TANH": "Tanh",
    "HARD_SWISH": "HardSwish", "GELU": "Gelu", "SOFTMAX": "Softmax", "LOG_SOFTMAX": "LogSoftmax",
    "LEAKY_RELU": "LeakyRelu", "PRELU": "PRelu", "ELU": "Elu",
    "AVERAGE_POOL_2D": "AveragePool", "MAX_POOL_2D": "MaxPool", "MEAN": "ReduceMean", "SUM": "ReduceSum",
    "RESHAPE": "Reshape", "SQUEEZE": "Squeeze", "EXPAND_DIMS": "Unsqueeze", "TRANSPOSE": "Transpose",
    "CONCATENATION": "Concat", "PAD": "Pad", "PADV2": "Pad", "STRIDED_SLICE": "Slice", "SLICE": "Slice",
    "GATHER": "Gather", "SPLIT": "Split", "SPLIT_V": "Split", "CAST": "Cast", "QUANTIZE": "QuantizeLinear",
    "DEQUANTIZE": "DequantizeLinear", "RESIZE_BILINEAR": "Resize", "RESIZE_NEAREST_NEIGHBOR": "Resize",
    "DEPTH_TO_SPACE": "DepthToSpace", "SQRT": "Sqrt", "RSQRT": "Sqrt", "POW": "Pow", "EXP": "Exp",
    "SELECT_V2": "Where", "SELECT": "Where", "NEG": "Neg", "ABS": "Abs", "LOG": "Log",
    "LSTM": "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM": "LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM": "LSTM", "RNN": "RNN",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "RNN", "BIDIRECTIONAL_SEQUENCE_RNN": "RNN",
}
_ALIAS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
_RECURRENT = {"LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN",
              "BIDIRECTIONAL_SEQUENCE_RNN"}


def graph_from_tflite(data: dict[str, Any]) -> Graph:
    tinfo = {t["index"]: t for t in data["tensors"]}
    produced = {i for o in data["ops"] for i in o["outputs"]}
    graph_inputs = set(data["inputs"])

    def tname(i: int) -> str:
        return f"t{i}:{tinfo[i]['name']}" if i in tinfo else f"t{i}"

    tensors: dict[str, Tensor] = {}
    weights: dict[str, Tensor] = {}
    for i, t in tinfo.items():
        shape = tuple(max(int(d), 1) for d in t["shape"])
        tt = Tensor(tname(i), shape, int(t["itemsize"]), t["dtype"])
        tensors[tt.name] = tt
        if i not in produced and i not in graph_inputs:
            weights[tt.name] = tt
    total_params = sum(w.elems or 0 for w in weights.values()
                       if (w.elems or 0) > 1 and w.dtype.startswith(("float", "int8", "uint8")))
    layers: list[Layer] = []
    for o in data["ops"]:
        ins = [tname(i) for i in o["inputs"] if i >= 0]
        outs = [tname(i) for i in o["outputs"] if i >= 0]
        acts = [n for n in ins if n not in weights]
        wts = [n for n in ins if n in weights]
        module = next((m for i in [*o["outputs"], *o["inputs"]] if i >= 0
                       for m in [module_from_tensor_name(tinfo[i]["name"])] if m), None)
        layer = Layer(name=f"{o['op'].lower()}_{o['index']}", op=o["op"], type=TFLITE_TYPES.get(o["op"], o["op"]),
                      module=module, inputs=acts, outputs=outs, weights=wts,
                      params=sum(weights[w].elems or 0 for w in wts if (weights[w].elems or 0) > 1
                                 and weights[w].dtype.startswith(("float", "int8", "uint8"))),
                      alias=o["op"] in _ALIAS)
        _count(layer, o, tinfo)
        layers.append(layer)
    notes = ["TFLite: only the main subgraph is walked; MACs are counted for CONV_2D, DEPTHWISE_CONV_2D, "
             "TRANSPOSE_CONV, FULLY_CONNECTED, BATCH_MATMUL and the LSTM/RNN builtins"]
    return Graph(frontend="tflite", layers=layers, tensors=tensors, graph_inputs=[tname(i) for i in data["inputs"]],
                 graph_outputs=[tname(i) for i in data["outputs"]], weights=weights, total_params=total_params,
                 notes=notes)


def _count(layer: Layer, o: dict[str, Any], tinfo: dict[int, Any]) -> None:
    def shape(k: int) -> list[int] | None:
        idx = o["inputs"][k] if k < len(o["inputs"]) else -1
        return [max(int(d), 1) for d in tinfo[idx]["shape"]] if idx >= 0 else None

    out = [max(int(d), 1) for d in tinfo[o["outputs"][0]]["shape"]] if o["outputs"] else None
    op = o["op"]
    try:
        if op == "CONV_2D":  # NHWC; filter [C_out, kh, kw, C_in/groups]
            x, w = shape(0), shape(1)
            layer.macs = math.prod(out) * w[1] * w[2] * w[3]
            groups = x[3] // w[3]
            layer.conv = {"c_in": x[3], "c_out": out[3], "kernel": [w[1], w[2]], "stride": None, "groups": groups,
                          "spatial_out": [out[1], out[2]], "layout": "NHWC"}
        elif op == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C_out]
            x, w = shape(0), shape(1)
            layer.macs = math.prod(out) * w[1] * w[2]
            layer.conv = {"c_in": x[3], "c_out": out[3], "kernel": [w[1], w[2]], "stride": None, "groups": x[3],
                          "spatial_out": [out[1], out[2]], "layout": "NHWC"}
        elif op == "TRANSPOSE_CONV":  # inputs: output_shape, filter [C_out, kh, kw, C_in], input
            w, x = shape(1), shape(2)
            layer.macs = math.prod(x) * w[0] * w[1] * w[2]
        elif op == "FULLY_CONNECTED":  # filter [out, in]
            w = shape(1)
            layer.macs = math.prod(out) * w[1]
        elif op == "BATCH_MATMUL":
            a = shape(0)
            layer.macs = math.prod(out) * a[-1]
        elif op in _RECURRENT:  # every 2-D weight matrix (gates, recurrent, projection) is used once per step
            mats = [shape(k) for k in range(1, len(o["inputs"]))]
            layer.macs = math.prod(out[:-1]) * sum(math.prod(m) for m in mats if m is not None and len(m) == 2)
    except (TypeError, IndexError, KeyError):
        layer.note = "MACs not counted: unexpected operand shapes"

