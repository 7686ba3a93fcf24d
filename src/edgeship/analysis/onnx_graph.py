"""ONNX front end: shape inference, then per-node formulas.

Dynamic input dimensions are fixed before inference (batch → 1, others → 1 unless the caller
gives input shapes) and the report says which. The module path of a node is read from the name
of the weight it uses (``_blocks.0._depthwise_conv.weight`` → ``_blocks.0._depthwise_conv``) or
from the exporter's ``pkg.torch.onnx.name_scopes`` metadata when present.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import FormatError, InputError, UsageError
from ..formats.onnx import module_path, node_subgraphs
from ..formats.onnx import node_attribute as _attr
from .graph import RNN_GATES, Graph, Layer, Tensor, conv_macs, recurrent_macs

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


def _fix_inputs(model: Any, input_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None,
                notes: list[str], placeholders: dict[str, list[int]] | None = None) -> Any:
    """A copy of ``model`` whose inputs have static shapes: the shapes given (in input order, or by
    input name), declared sizes kept, and every dynamic dim (symbolic, unset, 0 or -1, or given as
    0 / -1) set to a placeholder 1, recorded in ``placeholders`` and said in ``notes``."""
    import onnx


    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    ins = [v for v in m.graph.input if v.name not in inits]
    given: dict[str, Sequence[int]] = {}
    if isinstance(input_shapes, Mapping):
        unknown = [n for n in input_shapes if n not in {v.name for v in ins}]
        if unknown:
            raise UsageError(f"--input-shape names {unknown[0]!r}, which is not an input of the model",
                             hint=f"inputs: {', '.join(v.name for v in ins)}")
        given = dict(input_shapes)
    elif input_shapes is not None:
        if len(input_shapes) != len(ins):
            raise UsageError(f"{len(input_shapes)} --input-shape given, the model has {len(ins)} inputs",
                             hint=f"inputs: {', '.join(v.name for v in ins)}; or give them by name: NAME=1,3,224,224")
        given = {v.name: s for v, s in zip(ins, input_shapes)}
    for v in list(m.graph.output) + list(m.graph.value_info):  # a declared -1 / 0 is a dynamic dim: let inference fill it
        for d in v.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value <= 0:
                d.ClearField("dim_value")
    for v in ins:
        tt = v.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = tt.shape.dim
        shape = given.get(v.name)
        if shape is not None and len(shape) != len(dims):
            raise UsageError(f"--input-shape {list(shape)} has {len(shape)} dims, input {v.name!r} has {len(dims)}")
        for i, d in enumerate(dims):
            size = int(shape[i]) if shape is not None else (d.dim_value if d.HasField("dim_value") else 0)
            if size > 0:
                d.ClearField("dim_param")
                d.dim_value = size
                continue
            if placeholders is not None:
                placeholders.setdefault(v.name, []).append(i)
            notes.append(f"input {v.name!r} dimension {i} ({d.dim_param or '?'}) is dynamic: analysed at 1"
                         + ("" if i == 0 else f"; give --input-shape {v.name}=... for the real size"))
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


def graph_from_onnx(model: Any, input_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]] | None = None,
                    input_values: Mapping[str, Sequence[float]] | None = None) -> Graph:
    """The common graph of an ONNX model, subgraphs included.

    ``input_shapes``: in input order or by input name (dims <= 0 stay dynamic, analysed at 1).
    ``input_values``: the values an input takes ({"sr": [16000]}); one value decides an ``If`` on it.

    Every ``If`` of the main graph is replaced by the branch it takes (its condition folded from
    shapes, constants and ``input_values``; else the branch with more MACs, said in a note), nested
    ones too, and shapes are inferred again: ONNX shape inference propagates values (a ``Pad``'s
    computed pads) in the main graph only, so a branch counted in place would lose its shapes. What
    is left (``Loop``/``Scan`` bodies, an ``If`` inside them) is counted by :class:`_Walker`. The
    parameters are those of the whole file, every branch included."""
    notes: list[str] = []
    placeholders: dict[str, list[int]] = {}
    _folds_left[0] = MAX_FOLDS
    m = _infer_folded(_fix_inputs(model, input_shapes, notes, placeholders), input_values, notes)
    every = _Walker(input_values)
    every.collect(m.graph, top=True)
    flat = _Flat(input_values)
    fm = flat.flatten(m, 0, None) if any(n.op_type == "If" for n in m.graph.node) else m
    w = _Walker(input_values, flat.scopes)
    w.opset = _opset(fm)
    w.collect(fm.graph, top=True)
    part = w.graph(fm.graph, None, 1)
    part.notes[:0] = flat.notes
    part.decided += flat.decided
    total_params = sum((t.elems or 0) for t in every.weights.values() if _is_param(t))
    guessed = [n for n in part.notes if n.startswith("If ") and "known only when it runs" in n]
    if len(guessed) > 8:  # a few said in full, the rest counted
        part.notes = [n for n in part.notes if n not in guessed[8:]]
        part.notes.append(f"... and {len(guessed) - 8} more If nodes decided only when they run: each counted with "
                          "its branch of more MACs")
    notes += part.notes
    if part.decided:
        notes.append(f"{part.decided} If node(s) decided from shapes or input values known before running: "
                     "only the branch each takes is counted")
    counted = {n for lay in part.layers for n in lay.weights}
    idle = sum(t.elems or 0 for n, t in every.weights.items() if _is_param(t) and n not in counted
               and n not in every.top_weights)
    if idle:
        notes.append(f"params and weight bytes count every subgraph's weights (the file holds them all): {idle:,} "
                     "of the params are in branches not counted for MACs")
    if part.uncounted:
        notes.append("MACs not counted where shapes are unknown: " + ", ".join(sorted(part.uncounted)))
    tensors = {**every.tensors, **w.tensors}
    inputs = [v.name for v in m.graph.input if v.name not in every.weights]
    return Graph(frontend="onnx", layers=part.layers, tensors=tensors, graph_inputs=inputs,
                 graph_outputs=[v.name for v in m.graph.output], weights=every.weights, total_params=total_params,
                 notes=notes, source_model=m, placeholder_dims=placeholders, derived=w.derived)


def _infer(m: Any, notes: list[str] | None = None) -> Any:
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception as e:  # inference is best effort; unknown shapes are reported per op
        if notes is not None:
            notes.append(f"ONNX shape inference failed ({str(e).splitlines()[0][:160]}); shapes may be missing")
        return m


#: at most this many If nodes are replaced by a branch (each costs shape inferences), and for at most
#: this long (a crafted file of thousands of Ifs stays bounded); the rest are counted in place
MAX_INLINED_IFS = 64
MAX_INLINE_SECONDS = 5.0
#: reference evaluations of small constant ops per model (each ~0.3 ms)
MAX_FOLDS = 20_000
_folds_left = [MAX_FOLDS]


class _Flat:
    """Replaces the main graph's ``If`` nodes by the branch each takes (see :func:`graph_from_onnx`)."""

    def __init__(self, input_values: Mapping[str, Sequence[float]] | None) -> None:
        self.input_values = input_values
        self.scopes: dict[str, str] = {}  # inlined node name -> the subgraph it came from
        self.notes: list[str] = []
        self.decided = 0
        self.budget = MAX_INLINED_IFS
        self.deadline = time.monotonic() + MAX_INLINE_SECONDS
        self.stopped = False

    def flatten(self, m: Any, lo: int, hi: int | None) -> Any:
        """``m`` (shapes inferred) with every If among its nodes [lo, hi) inlined, shapes inferred again."""
        k = lo
        while True:
            nodes = m.graph.node
            end = len(nodes) if hi is None else hi
            idx = next((i for i in range(k, end) if nodes[i].op_type == "If" and nodes[i].domain in ("", "ai.onnx")),
                       None)
            if idx is None:
                return m
            if self.budget <= 0 or time.monotonic() > self.deadline:
                if not self.stopped:
                    self.stopped = True
                    self.notes.append(f"more If nodes than analyze inlines ({MAX_INLINED_IFS}, {MAX_INLINE_SECONDS:.0f} s): "
                                      "the rest are counted in place, the branch with more MACs, shapes as ONNX infers them")
                return m
            node = nodes[idx]
            branches = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch") and a.HasField("g")}
            if len(branches) != 2:
                k = idx + 1
                continue
            w = _Walker(self.input_values)
            w.collect(m.graph, top=True)
            for n in nodes[:idx]:
                _fold(n, w.values, w.tensors, _opset(m))
            cond = w.values.get(node.input[0]) if node.input else None
            name = node.name or f"If_{idx}"
            known = cond is not None and getattr(cond, "size", 0) >= 1
            choices = (["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"] if known
                       else ["then_branch", "else_branch"])
            tried: dict[str, tuple[Any, _Flat, int, int]] = {}
            for b in choices:
                self.budget -= 1
                sub = _Flat(self.input_values)
                sub.budget, sub.scopes, sub.deadline = self.budget, dict(self.scopes), self.deadline
                cand, n_new = _inline_if(m, idx, b, name, sub.scopes)
                cand = sub.flatten(_infer_folded(cand, self.input_values), idx, idx + n_new)
                grown = len(cand.graph.node) - len(nodes) + 1  # nodes that replaced the If
                macs = _total_macs(cand, self.input_values, sub.scopes)
                tried[b] = (cand, sub, grown, macs)
                self.budget = sub.budget
            if known:
                chosen = choices[0]
                self.decided += 1
            else:
                chosen = max(tried, key=lambda b: (tried[b][3], b == "then_branch"))
                self.notes.append(_undecided_if(name, chosen, w.inputs_behind(node.input[0]),
                                                {b: t[3] for b, t in tried.items()}, "the model: {} MACs with it"))
            m, sub, grown, _ = tried[chosen]
            self.scopes = sub.scopes
            self.notes += sub.notes
            self.decided += sub.decided
            self.stopped = self.stopped or sub.stopped
            k = idx + grown
            if hi is not None:
                hi += grown - 1


def _inline_if(m: Any, idx: int, branch: str, name: str, scopes: dict[str, str]) -> tuple[Any, int]:
    """A copy of ``m`` with node ``idx`` (an If) replaced by the nodes of its ``branch`` and an
    Identity per output; (the copy, how many nodes replaced it)."""
    import onnx
    from onnx import helper

    node = m.graph.node[idx]
    br = next(a.g for a in node.attribute if a.name == branch)
    where = f"{scopes[name]}/{name}/{branch}" if name in scopes else f"{name}/{branch}"
    new = onnx.ModelProto()
    new.CopyFrom(m)
    g = new.graph
    inlined = []
    for j, n in enumerate(br.node):
        c = onnx.NodeProto()
        c.CopyFrom(n)
        if not c.name:
            c.name = f"{where}/{c.op_type}_{j}"
        scopes[c.name] = where
        inlined.append(c)
    for j, (src, dst) in enumerate(zip(br.output, node.output)):
        if dst:
            inlined.append(helper.make_node("Identity", [src.name], [dst], name=name if j == 0 else f"{name}/output_{j}"))
    g.initializer.extend(br.initializer)
    rest = list(g.node)
    del g.node[:]
    g.node.extend(rest[:idx] + inlined + rest[idx + 1:])
    return new, len(inlined)


def _total_macs(m: Any, input_values: Mapping[str, Sequence[float]] | None, scopes: dict[str, str]) -> int:
    w = _Walker(input_values, scopes)
    w.opset = _opset(m)
    w.collect(m.graph, top=True)
    return sum(lay.macs for lay in w.graph(m.graph, None, 1).layers)


@dataclasses.dataclass
class _Part:
    """The layers of one (sub)graph as counted, with what could not be counted and what was assumed."""

    layers: list[Layer] = dataclasses.field(default_factory=list)
    uncounted: set[str] = dataclasses.field(default_factory=set)
    notes: list[str] = dataclasses.field(default_factory=list)
    decided: int = 0  # If nodes whose branch was known before running

    def take(self, other: _Part) -> None:
        self.layers += other.layers
        self.uncounted |= other.uncounted
        self.notes += other.notes
        self.decided += other.decided


class _Walker:
    """Walks a graph and its subgraphs in execution order.

    Weights are initializers and ``Constant`` nodes at every level (Paddle2ONNX and the torch
    exporter's inlined functions keep them in ``Constant`` nodes). A control-flow node's subgraph is
    counted where it runs: the layers of an ``If``'s branch come before the ``If`` (the branch its
    condition picks when shapes, constants or ``input_values`` decide it, else the one with more
    MACs, said in a note with the other's MACs); a ``Loop``'s or ``Scan``'s body counts once per
    iteration (``Layer.repeat``): the trip count or the scanned axis when known, else once (said).
    Small constant tensors are folded (Shape, Gather, Cast, Equal, ...) to decide conditions."""

    def __init__(self, input_values: Mapping[str, Sequence[float]] | None = None,
                 scopes: dict[str, str] | None = None) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.weights: dict[str, Tensor] = {}
        self.values: dict[str, Any] = {}  # small tensors whose values are known before running
        self.producer: dict[str, Any] = {}  # tensor -> node, over every graph
        self.top_weights: set[str] = set()
        self.input_values = input_values or {}
        self.scopes = scopes or {}  # node name -> subgraph it was inlined from
        self.unnamed = 0
        self.opset = 18
        self.derived: set[str] = set()  # tensors computed from weights alone

    # -- tensors and weights ----------------------------------------------------------------
    def _vi(self, v: Any) -> None:
        tt = v.type.tensor_type
        if not tt.HasField("shape"):
            shape = None
        else:
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
            shape = None if any(d is None for d in dims) else tuple(int(d) for d in dims)
        old = self.tensors.get(v.name)
        if old is not None and old.shape is not None and shape is None:
            return  # a subgraph's re-declaration without a shape keeps what is known
        size, dt = _elem_size(tt.elem_type)
        self.tensors[v.name] = Tensor(v.name, shape, size, dt)

    def _weight(self, name: str, t: Any, top: bool) -> None:
        """A weight from a TensorProto (``t``) or an array; its values are kept only when small."""
        from onnx import numpy_helper

        if hasattr(t, "dims"):
            size, dt = _elem_size(t.data_type)
            shape = tuple(int(d) for d in t.dims)
            arr = None
            if math.prod(shape) <= _FOLD_MAX and not (t.data_location == 1 and not t.raw_data):
                arr = numpy_helper.to_array(t)
        else:
            arr, size, dt, shape = t, t.dtype.itemsize, t.dtype.name, tuple(int(d) for d in t.shape)
        self.tensors[name] = self.weights[name] = Tensor(name, shape, size, dt)
        if top:
            self.top_weights.add(name)
        if arr is not None and arr.size <= _FOLD_MAX:
            self.values[name] = arr

    def collect(self, g: Any, top: bool = False) -> None:
        import numpy as np
        from onnx import helper

        for v in list(g.input) + list(g.value_info) + list(g.output):
            self._vi(v)
        if top:
            for name, vals in self.input_values.items():
                t = self.tensors.get(name)
                if t is not None and len(vals) == 1:
                    try:
                        self.values[name] = np.full(t.shape or (), vals[0], dtype=np.dtype(t.dtype))
                    except (TypeError, ValueError):
                        pass
        for init in g.initializer:
            self._weight(init.name, init, top)
        for node in g.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            if node.op_type == "Constant" and node.output and node.domain in ("", "ai.onnx"):
                for a in node.attribute:  # value, value_float(s), value_int(s); sparse and string ones are skipped
                    if a.name == "value":
                        self._weight(node.output[0], a.t, top)
                    elif a.name in ("value_float", "value_floats", "value_int", "value_ints"):
                        v = helper.get_attribute_value(a)
                        arr = np.asarray(v, dtype=np.float32 if "float" in a.name else np.int64)
                        self._weight(node.output[0], arr, top)
            for sub in node_subgraphs(node):
                self.collect(sub)

    # -- layers -------------------------------------------------------------------------------
    def graph(self, g: Any, scope: str | None, repeat: int) -> _Part:
        part = _Part()
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                continue
            layer = self._layer(node, self.scopes.get(node.name, scope), repeat)
            if node.op_type in _CONTROL and node.domain in ("", "ai.onnx"):
                self._control(node, layer, scope, repeat, part)
            else:
                _count(layer, node, self.tensors, part.uncounted)
                layer.macs *= repeat
            _fold(node, self.values, self.tensors, self.opset)
            consts = [i for i in node.input if i]
            if consts and node.op_type not in _CONTROL and all(i in self.weights or i in self.derived for i in consts):
                self.derived.update(layer.outputs)  # a weight reshaped or cast (LSTM weights unsqueezed): not an activation
            part.layers.append(layer)
        return part

    def _layer(self, node: Any, scope: str | None, repeat: int) -> Layer:
        name = node.name
        if not name:
            self.unnamed += 1
            name = f"{node.op_type}_{self.unnamed}"
        ins = [i for i in node.input if i and i not in self.weights and i not in self.derived]
        wts = [i for i in node.input if i and (i in self.weights or i in self.derived)]
        module = module_path(node)
        if module is None:
            for w in wts:
                if w.endswith((".weight", ".weight_bias", ".bias", ".in_proj_weight")):
                    module = w.rsplit(".", 1)[0]
                    break
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        layer = Layer(name=name, op=op, type=_CANON.get(node.op_type, node.op_type), module=module,
                      inputs=ins, outputs=[o for o in node.output if o], weights=wts,
                      params=sum(self.weights[w].elems or 0 for w in wts if w in self.weights and _is_param(self.weights[w])),
                      alias=node.op_type in _ALIAS, scope=scope, repeat=repeat)
        for o in layer.outputs:
            self.tensors.setdefault(o, Tensor(o, None))
        return layer

    def _control(self, node: Any, layer: Layer, scope: str | None, repeat: int, part: _Part) -> None:
        where = f"{scope}/{layer.name}" if scope else layer.name
        subs = {a.name: a.g for a in node.attribute if a.HasField("g")}
        if node.op_type == "If":
            parts = {b: self.graph(subs[b], f"{where}/{b}", repeat) for b in ("then_branch", "else_branch") if b in subs}
            if not parts:
                return
            macs = {b: sum(lay.macs for lay in p.layers) for b, p in parts.items()}
            cond = self.values.get(node.input[0]) if node.input else None
            if cond is not None and getattr(cond, "size", 0) >= 1 and len(parts) == 2:
                chosen = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
                part.decided += 1
            else:
                chosen = max(parts, key=lambda b: (macs[b], b == "then_branch"))
                if len(parts) == 2:
                    part.notes.append(_undecided_if(layer.name, chosen, self.inputs_behind(node.input[0]), macs, "{} MACs"))
            part.take(parts[chosen])
            outs = [o.name for o in subs[chosen].output]
            layer.inputs = list(dict.fromkeys(layer.inputs + [o for o in outs if o not in self.weights]))
            return
        body = subs.get("body")
        if body is None:
            return
        trips, why = None, ""
        if node.op_type == "Loop":
            v = self.values.get(node.input[0]) if node.input and node.input[0] else None
            if v is not None and v.size >= 1 and 0 <= int(v.reshape(-1)[0]) <= _MAX_TRIPS:
                trips = int(v.reshape(-1)[0])
            else:
                why = "its trip count is known only when it runs (or it ends on its condition)"
        else:  # Scan: iterations = the scanned axis of its first scan input
            n_scan = int(_attr(node, "num_scan_inputs", 0))
            axes = list(_attr(node, "scan_input_axes", [])) or [0]
            first = node.input[len(node.input) - n_scan] if 0 < n_scan <= len(node.input) else None
            t = self.tensors.get(first) if first else None
            if t is not None and t.shape is not None and -len(t.shape) <= int(axes[0]) < len(t.shape):
                trips = int(t.shape[int(axes[0])])
            else:
                why = "the length of its scanned axis is unknown"
        if trips is None:
            trips = 1
            part.notes.append(f"{node.op_type} {layer.name}: {why}; its body is counted once")
        part.take(self.graph(body, f"{where}/body", repeat * trips))

    def inputs_behind(self, name: str) -> list[str]:
        """The graph inputs a tensor's value depends on (through every producer, subgraphs included)."""
        seen: set[str] = set()
        todo = [name]
        found: list[str] = []
        while todo:
            t = todo.pop()
            if t in seen or not t:
                continue
            seen.add(t)
            node = self.producer.get(t)
            if node is None:
                if t not in self.weights and t in self.tensors:
                    found.append(t)
                continue
            todo.extend(node.input)
        return sorted(found)


_CONTROL = {"If", "Loop", "Scan"}
_FOLD_MAX = 4096  # elements: constants up to this size are kept as values to decide If conditions
_MAX_TRIPS = 10_000_000  # a Loop trip count above this is an exporter's "until the condition" marker


def _undecided_if(name: str, chosen: str, dep: Sequence[str], macs: Mapping[str, int], what: str) -> str:
    """The note for an If whose condition is known only when it runs: which branch was counted
    (``what`` formats its MACs), the other's figure, and the input that decides it."""
    other = "else_branch" if chosen == "then_branch" else "then_branch"
    said = f" (it depends on input {', '.join(map(repr, dep))})" if dep else ""
    given = f"; --input-value {dep[0]}=V decides it" if dep else ""
    return (f"If {name}: its condition is known only when it runs{said}; counted its {chosen} "
            f"({what.format(_count_text(macs[chosen]))}), not its {other} ({what.format(_count_text(macs[other]))}){given}")


def _count_text(x: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return str(int(x))


#: ops never folded: control flow (handled by the walker), randomness, and those a reference run would make large
_NO_FOLD = {"If", "Loop", "Scan", "Constant", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
            "Multinomial", "Bernoulli", "Dropout"}
_GROWS = {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot", "EyeLike"}


def _fold(node: Any, values: dict[str, Any], tensors: dict[str, Tensor], opset: int = 18) -> None:
    """Compute a node's outputs when its inputs are known and they are small (a shape counts as known:
    the inputs' shapes are fixed), with ONNX's reference implementation of the op."""
    import numpy as np

    op = node.op_type
    if not node.output or not node.output[0] or node.domain not in ("", "ai.onnx") or op in _NO_FOLD:
        return
    try:
        if op in ("Shape", "Size"):
            t = tensors.get(node.input[0])
            if t is None or t.shape is None:
                return
            if op == "Size":
                values[node.output[0]] = np.array(t.elems, np.int64)
            else:
                start, end = int(_attr(node, "start", 0)), _attr(node, "end", None)
                values[node.output[0]] = np.array(t.shape[start:None if end is None else int(end)], np.int64)
            return
        feeds = {i: values.get(i) for i in node.input if i}
        if not feeds or any(v is None for v in feeds.values()):
            return
        out = tensors.get(node.output[0])
        if out is not None and out.shape is not None:
            if (out.elems or 0) > _FOLD_MAX:
                return
        elif op in _GROWS:
            return
        if _folds_left[0] <= 0:
            return
        _folds_left[0] -= 1
        from onnx.reference import ReferenceEvaluator

        with np.errstate(all="ignore"):
            res = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
        for name, v in zip(node.output, res):
            if name and v is not None and np.asarray(v).size <= _FOLD_MAX:
                values[name] = np.asarray(v)
    except Exception:  # noqa: BLE001 - folding is best effort: an op it cannot compute stays unknown
        return


def _opset(m: Any) -> int:
    return next((int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), 18)


def _infer_folded(m: Any, input_values: Mapping[str, Sequence[float]] | None, notes: list[str] | None = None) -> Any:
    """``m`` with shapes inferred where ONNX's own data propagation stops: the main graph's nodes whose
    values are known (shape arithmetic, padding computed from constants) are replaced by constants in
    a shadow copy, shapes are inferred on that, and its shapes are put back on ``m``'s own nodes."""
    import onnx
    from onnx import numpy_helper

    cur = _infer(m, notes)
    done: set[str] = set()
    for _ in range(4):
        w = _Walker(input_values)
        w.collect(cur.graph, top=True)
        opset = _opset(cur)
        for n in cur.graph.node:
            _fold(n, w.values, w.tensors, opset)
        folded = [n for n in cur.graph.node if n.op_type != "Constant" and n.output
                  and all(o in w.values for o in n.output if o) and n.output[0] not in done]
        if not folded:
            return cur
        done.update(n.output[0] for n in folded)
        shadow = onnx.ModelProto()
        shadow.CopyFrom(m)
        nodes = []
        for n in shadow.graph.node:
            if n.op_type != "Constant" and n.output and n.output[0] in done and all(o in w.values for o in n.output if o):
                nodes += [onnx.helper.make_node("Constant", [], [o], value=numpy_helper.from_array(w.values[o], o))
                          for o in n.output if o]
            else:
                nodes.append(n)
        del shadow.graph.node[:]
        shadow.graph.node.extend(nodes)
        inferred = _infer(shadow)
        out = onnx.ModelProto()
        out.CopyFrom(m)
        del out.graph.value_info[:]
        out.graph.value_info.extend(inferred.graph.value_info)
        outs = {v.name: v for v in inferred.graph.output}
        for v in out.graph.output:
            if v.name in outs and outs[v.name].type.tensor_type.HasField("shape"):
                v.CopyFrom(outs[v.name])
        cur = out
    return cur


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
    elif op in RNN_GATES:  # LSTM / GRU / RNN: X [seq, batch, input] (layout 1: [batch, seq, input]), W [dirs, gates*hidden, input]
        x, w = shape(0), shape(1)
        if x is None or w is None or len(x) != 3 or len(w) != 3:
            uncounted.add(f"{op} {layer.name}")
            return
        hidden = int(_attr(node, "hidden_size", 0)) or int(w[1]) // RNN_GATES[op]
        seq, batch = (x[1], x[0]) if int(_attr(node, "layout", 0)) == 1 else (x[0], x[1])
        layer.macs = recurrent_macs(op, seq, batch, int(w[2]), hidden, int(w[0]))
    elif op == "Einsum":
        uncounted.add(f"{op} {layer.name}")
