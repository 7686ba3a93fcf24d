"""The common form every front end (torch, ONNX, TFLite) lowers a model to, and what is computed on it.

A :class:`Layer` is one op of the graph in execution order, with the tensors it reads and writes.
MACs are counted here, once, from shapes: convolutions (incl. depthwise, grouped, transposed),
dense layers, matrix products, attention and recurrent layers (LSTM, GRU, RNN: every time step).
Everything else (activations, adds, pooling, normalisation, padding, reshapes) counts 0 MACs; its
memory traffic still shows in the roofline. A layer inside a loop body runs ``repeat`` times: its
MACs already include the repeats.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["Layer", "Tensor", "Graph", "conv_macs", "recurrent_macs", "separable_macs", "layer_kind",
           "peak_activation", "RNN_GATES"]

# canonical op types (ONNX spelling) whose MACs we count
MAC_TYPES = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Attention", "LSTM", "GRU", "RNN"}
# gates of a recurrent cell: each is a dense layer over [input, hidden] per time step
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclasses.dataclass
class Tensor:
    name: str
    shape: tuple[int, ...] | None
    itemsize: int = 4
    dtype: str = "float32"

    @property
    def elems(self) -> int | None:
        return None if self.shape is None else int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        e = self.elems
        return 0 if e is None else e * self.itemsize


@dataclasses.dataclass
class Layer:
    name: str  # node name in the graph
    op: str  # the op as the front end spells it: aten.conv2d.default, Conv, CONV_2D
    type: str  # canonical (ONNX spelling): Conv, Gemm, MatMul, Clip, Add, ...
    module: str | None = None  # source module path (torch) or the path its weights name (ONNX)
    inputs: list[str] = dataclasses.field(default_factory=list)  # activation tensors read
    outputs: list[str] = dataclasses.field(default_factory=list)
    weights: list[str] = dataclasses.field(default_factory=list)  # weight tensors read
    params: int = 0  # trainable parameters (torch) / initializer elements (ONNX/TFLite) of this layer
    macs: int = 0
    conv: dict[str, Any] | None = None  # for convolutions: c_in, c_out, kernel, stride, groups, h_out, w_out
    alias: bool = False  # output shares its input's memory (reshape, view, dropout at inference)
    note: str | None = None
    scope: str | None = None  # the subgraph it lives in (ONNX If branch, Loop/Scan body): "If_0/then_branch"
    repeat: int = 1  # times it runs per inference (a Loop/Scan body's iterations); macs include them


@dataclasses.dataclass
class Graph:
    """Layers in execution order plus every tensor they touch."""

    frontend: str  # torch | onnx | tflite
    layers: list[Layer]
    tensors: dict[str, Tensor]
    graph_inputs: list[str]
    graph_outputs: list[str]
    weights: dict[str, Tensor]  # weight tensors (deduplicated), by name
    total_params: int
    notes: list[str] = dataclasses.field(default_factory=list)
    source_model: Any = None  # the front end's own model object (ONNX: the shape-inferred, fixed-shape proto)
    #: dynamic input dims the graph was analysed at a placeholder size (1) for: {input: [axis, ...]}
    placeholder_dims: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    #: tensors computed from weights alone (a weight reshaped or cast in the graph): not activations,
    #: and not counted again as weights
    derived: set[str] = dataclasses.field(default_factory=set)

    def weight_bytes_fp32(self) -> int:
        return sum((t.elems or 0) * 4 for t in self.weights.values())


# ---- MAC formulas -----------------------------------------------------------------------

def conv_macs(out_shape: Sequence[int], c_in: int, groups: int, kernel: Sequence[int]) -> int:
    """MACs of a (grouped) convolution: every output element reads C_in/groups × prod(kernel) inputs.

    ``out_shape`` is channels-first (N, C_out, *spatial) or channels-last; only its product matters.
    """
    return int(math.prod(out_shape)) * (int(c_in) // int(groups)) * int(math.prod(kernel))


def recurrent_macs(op: str, seq_len: int, batch: int, input_size: int, hidden: int, directions: int = 1) -> int:
    """MACs of an LSTM / GRU / RNN layer: per time step and direction, each gate is a dense layer over
    the input and the previous hidden state, ``gates · (input + hidden) · hidden`` per sequence in
    the batch (LSTM 4 gates, GRU 3, RNN 1); the element-wise gate arithmetic is not counted."""
    return int(RNN_GATES[op]) * (int(input_size) + int(hidden)) * int(hidden) * int(seq_len) * int(batch) * int(directions)


def separable_macs(h_out: int, w_out: int, c_in: int, c_out: int, kh: int, kw: int) -> dict[str, int]:
    """The seed's worked example, generalised: a standard kh×kw conv vs its depthwise-separable replacement.

    standard  = H·W·C_in·C_out·kh·kw
    depthwise = H·W·C_in·kh·kw        (one kh×kw filter per input channel)
    pointwise = H·W·C_in·C_out        (1×1 conv mixing channels)
    ratio     = (depthwise + pointwise) / standard = 1/C_out + 1/(kh·kw)
    """
    standard = h_out * w_out * c_in * c_out * kh * kw
    depthwise = h_out * w_out * c_in * kh * kw
    pointwise = h_out * w_out * c_in * c_out
    return {"standard": standard, "depthwise": depthwise, "pointwise": pointwise,
            "separable": depthwise + pointwise, "saving": standard - depthwise - pointwise}


def layer_kind(layer: Layer) -> str:
    """A coarse class for ranking and advice: conv_kxk, pointwise, depthwise, grouped_conv,
    conv_transpose, dense, matmul, attention, recurrent, normalization, activation, elementwise, pool,
    shape, other."""
    t = layer.type
    if t == "Conv" and layer.conv:
        c = layer.conv
        k = int(math.prod(c["kernel"]))
        if c["groups"] > 1 and c["groups"] == c["c_in"]:
            return "depthwise"
        if c["groups"] > 1:
            return "grouped_conv"
        return "pointwise" if k == 1 else "conv_kxk"
    return _KIND_BY_TYPE.get(t, "other")


_KIND_BY_TYPE = {
    "Conv": "conv_kxk", "ConvTranspose": "conv_transpose", "Gemm": "dense", "MatMul": "matmul",
    "Attention": "attention", "LSTM": "recurrent", "GRU": "recurrent", "RNN": "recurrent",
    "BatchNormalization": "normalization", "LayerNormalization": "normalization",
    "InstanceNormalization": "normalization", "GroupNormalization": "normalization",
    "Relu": "activation", "Clip": "activation", "Sigmoid": "activation", "HardSigmoid": "activation",
    "HardSwish": "activation", "Tanh": "activation", "Gelu": "activation", "Softmax": "activation",
    "LeakyRelu": "activation", "PRelu": "activation", "Elu": "activation", "Silu": "activation",
    "Erf": "activation", "LogSoftmax": "activation",
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise",
    "Pow": "elementwise", "Sqrt": "elementwise", "Where": "elementwise", "Neg": "elementwise",
    "AveragePool": "pool", "MaxPool": "pool", "GlobalAveragePool": "pool", "GlobalMaxPool": "pool",
    "ReduceMean": "pool",
    "Reshape": "shape", "Flatten": "shape", "Squeeze": "shape", "Unsqueeze": "shape",
    "Transpose": "shape", "Concat": "shape", "Slice": "shape", "Pad": "shape", "Identity": "shape",
    "Dropout": "shape", "Expand": "shape", "Gather": "shape", "Split": "shape", "Cast": "shape",
    "Shape": "shape",
}


# ---- tensor lifetimes -------------------------------------------------------------------

def peak_activation(g: Graph) -> dict[str, Any]:
    """Peak bytes of live activations over the execution order, from tensor lifetimes.

    A tensor lives from the layer that writes it (graph inputs: from the start) to the last layer
    that reads it (graph outputs: to the end). While a layer runs its inputs and outputs are both
    live. An alias (reshape, view, dropout at inference) allocates nothing and keeps its source
    alive as long as the alias is read. Weights are not activations and are not counted.
    """
    root: dict[str, str] = {}

    def base(name: str) -> str:
        while name in root:
            name = root[name]
        return name

    for layer in g.layers:
        if layer.alias and layer.inputs:
            for o in layer.outputs:
                root[o] = layer.inputs[0]
    last_use: dict[str, int] = {}
    n = len(g.layers)
    for i, layer in enumerate(g.layers):
        for t in layer.inputs:
            last_use[base(t)] = i
    for t in g.graph_outputs:
        last_use[base(t)] = n
    live: dict[str, int] = {}
    for t in g.graph_inputs:
        if t in g.tensors:
            live[t] = g.tensors[t].nbytes
    peak, at = sum(live.values()), None
    for i, layer in enumerate(g.layers):
        if not layer.alias:
            for o in layer.outputs:
                if o in g.tensors and o not in g.weights and o not in g.derived:
                    live[o] = g.tensors[o].nbytes
        now = sum(live.values())
        if now > peak:
            peak, at = now, layer.name
        for t in list(live):
            if last_use.get(t, -1) <= i and t not in g.graph_outputs:
                del live[t]
    return {"bytes": int(peak), "at_layer": at}
