"""ONNX helpers that every part may use: proto helpers, I/O specs, and the one ONNX Runtime
session factory (:class:`OnnxRunner`). Sources, quantisation, analysis and targets import these
from here, never from a target."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._util import MAX_DIM
from ..cpus import allowed as allowed_cpus
from ..errors import FormatError, UnsupportedError, first_line
from ..runner import Runner

if TYPE_CHECKING:
    from ..artifact import TensorSpec

__all__ = ["MAX_DIM", "SCOPE_KEY", "WEIGHT_ONLY_SESSION_CONFIG", "OnnxRunner", "check_io", "first_divergence", "io_specs",
           "node_subgraphs", "subgraphs", "all_nodes", "unique_initializer_names", "already_quantised",
           "requantising_refused", "QUANTISED_OPS",
           "module_path",
           "node_attribute", "onnx_intermediates", "ort_dtype", "ort_session"]

# weight-only int8 (DequantizeLinear on constant weights): fold the dequantisation at load
WEIGHT_ONLY_SESSION_CONFIG = {"session.disable_quant_qdq": "1"}

#: where torch's dynamo exporter records each node's module scopes
SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def module_path(node: Any) -> str | None:
    """The source module path of an exported ONNX node ('features.3'), when the exporter recorded it."""
    for p in node.metadata_props:
        if p.key == SCOPE_KEY:
            try:
                parts = [s for s in ast.literal_eval(p.value) if s]
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return None
            # cumulative scopes: ['', 'features', 'features.1', 'conv2d']: the deepest module, then the op
            return str(parts[-2]) if len(parts) >= 2 else None
    return None


def node_attribute(node: Any, name: str, default: Any) -> Any:
    """An ONNX node's attribute value by name, or ``default`` when the node does not set it."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def node_subgraphs(node: Any) -> list[Any]:
    """The graphs one node holds (an If's branches, a Loop's or Scan's body): the one place every
    walk of an ONNX model into its subgraphs asks."""
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else []) + list(a.graphs)]


def subgraphs(graph: Any) -> list[Any]:
    """The graphs held directly by ``graph``'s nodes (If branches, Loop and Scan bodies)."""
    return [g for n in graph.node for g in node_subgraphs(n)]


def all_nodes(graph: Any) -> list[Any]:
    """Every node of ``graph`` and of the subgraphs below it, at any depth."""
    return [x for n in graph.node for x in (n, *(m for g in node_subgraphs(n) for m in all_nodes(g)))]


def fix_input_shapes(model: Any, shapes: dict[str, Sequence[int]]) -> bool:
    """Fix, in place, the dims of the graph inputs named in ``shapes`` (an input whose rank differs
    is left as it is); whether any dim changed. What a converter that cannot follow dynamic dims
    is given, with onnxslim then folding what the fixed shapes decide."""
    changed = False
    for vi in model.graph.input:
        want = shapes.get(vi.name)
        dims = vi.type.tensor_type.shape.dim
        if want is None or len(dims) != len(want):
            continue
        for d, n in zip(dims, want):
            if not (d.HasField("dim_value") and d.dim_value == n):
                d.Clear()
                d.dim_value = int(n)
                changed = True
    return changed


def unique_initializer_names(model: Any) -> int:
    """Rename, in place, each subgraph initializer whose name another graph of ``model`` already
    uses (both branches of an If often hold weights of the same name), with every reference to it
    inside that subgraph and the graphs nested in it that do not shadow it. ONNX scopes names per
    graph, so the model means the same; tools that keep one table of names (ONNX Runtime's float16
    converter asserts on a repeat) can then read it. Returns how many were renamed."""
    seen = {i.name for i in model.graph.initializer}
    renamed = 0

    def rename_uses(graph: Any, old: str, new: str) -> None:
        for n in graph.node:
            for k, x in enumerate(n.input):
                if x == old:
                    n.input[k] = new
            for g in node_subgraphs(n):
                if old not in {i.name for i in g.initializer} | {i.name for i in g.input}:
                    rename_uses(g, old, new)

    def walk(graph: Any) -> None:
        nonlocal renamed
        for g in subgraphs(graph):
            for init in g.initializer:
                if init.name in seen:
                    old, new = init.name, f"{init.name}__{len(seen)}"
                    init.name = new
                    rename_uses(g, old, new)
                    renamed += 1
                seen.add(init.name)
            walk(g)

    walk(model.graph)
    return renamed


QUANTISED_OPS = frozenset({"QGemm", "QAttention", "QEmbedLayerNormalization", "ConvInteger", "MatMulInteger",
                           "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
                           "MatMulNBits", "MatMulBnb4", "GatherBlockQuantized", "QOrderedMatMul", "QOrderedGelu",
                           "QOrderedLayerNormalization", "QOrderedAttention", "QOrderedLongformerAttention"})


def already_quantised(model: Any) -> str | None:
    """What makes ``model`` (an ONNX ModelProto) already quantised, in words ("38 QDQ pairs, 52
    quantised weights (DequantizeLinear), 2 QLinearConv"), subgraphs (If, Loop, Scan bodies)
    included; None for a float model. Quantising such a model again is refused by name."""
    nodes = all_nodes(model.graph)
    q_out = {n.output[0] for n in nodes if n.op_type == "QuantizeLinear" and n.output}
    dqs = [n for n in nodes if n.op_type == "DequantizeLinear" and n.input]
    pairs = sum(1 for n in dqs if n.input[0] in q_out)
    counts: dict[str, int] = {}
    for n in nodes:
        if n.op_type.startswith("QLinear") or n.op_type in QUANTISED_OPS:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    parts = [f"{pairs} QDQ pair{'s' * (pairs != 1)}"] if pairs else []
    if len(dqs) > pairs:
        k = len(dqs) - pairs
        parts.append(f"{k} quantised tensor{'s' * (k != 1)} (DequantizeLinear)")
    lone_q = len(q_out - {n.input[0] for n in dqs})
    if lone_q and not parts:
        parts.append(f"{lone_q} QuantizeLinear")
    parts += [f"{k} {op}" for op, k in sorted(counts.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts) or None


def requantising_refused(name: str, found: str, precision: str) -> UnsupportedError:
    """The one refusal of a reduced precision built from an already-quantised model (``found``:
    what :func:`already_quantised` said), whichever command or target asked."""
    return UnsupportedError(f"{name} is already quantised ({found}); it is deployed as it is: the fp32 cell is the model "
                            f"as given, verified against itself, and no {precision} is built from it",
                            hint=f"leave {precision} out of --quantize", already_quantised=found)


MAX_RANK = 32  # axes of a graph input or output (numpy's own limit is 64; ONNX Runtime's kernels far fewer)


def check_io(model: Any, where: str) -> None:
    """Refuse, naming the value and ``where`` (the file), a graph input or output whose declared type
    edgeship cannot hold: not a tensor (a sequence, a map, no type), an element type ONNX does not
    define, a string tensor, a dimension below 1 or above :data:`MAX_DIM`. Read once, where the
    file is parsed, so no later stage meets a negative shape or an unknown dtype."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    for kind, values in (("input", [v for v in model.graph.input if v.name not in inits]),
                         ("output", list(model.graph.output))):
        for v in values:
            what = f"{where}: {kind} {v.name!r}"
            form = v.type.WhichOneof("value")
            if form != "tensor_type":
                raise UnsupportedError(f"{what} is {'a ' + form.removesuffix('_type') if form else 'untyped'}, "
                                       "not a tensor", hint="edgeship takes models whose inputs and outputs are tensors")
            tt = v.type.tensor_type
            try:
                dt = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
            except Exception:
                raise FormatError(f"{what} has element type {tt.elem_type}, which ONNX does not define",
                                  hint="the file is corrupt or hand-edited; export the model again") from None
            if dt.kind in "OSUV":
                raise UnsupportedError(f"{what} is a string tensor",
                                       hint="edgeship converts numeric models: keep tokenising and label lookup "
                                            "outside the model (labels: --labels labels.txt)")
            if len(tt.shape.dim) > MAX_RANK:
                raise UnsupportedError(f"{what} has {len(tt.shape.dim)} dimensions (at most {MAX_RANK})",
                                       hint="numpy and the runtimes hold at most 32 axes")
            for i, d in enumerate(tt.shape.dim):
                # a dim <= 0 is how some exporters (Paddle2ONNX: -1) mark a dynamic one; the ONNX
                # checker, ONNX Runtime and OpenVINO accept it: it is read as dynamic (io_specs)
                if d.HasField("dim_value") and d.dim_value > MAX_DIM:
                    raise FormatError(f"{what} declares dimension {i} as {d.dim_value}",
                                      hint=f"a dimension is at most {MAX_DIM}; the file is corrupt or "
                                           "hand-edited: export the model again")


def io_specs(model: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs (without initializers) and outputs of an ONNX ModelProto as TensorSpecs."""
    from onnx import helper

    from ..artifact import TensorSpec

    inits = {i.name for i in model.graph.initializer}

    def spec(v: Any) -> TensorSpec:
        tt = v.type.tensor_type
        dims: list[int | str] = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:  # symbolic, unnamed, or <= 0 (Paddle2ONNX's -1): dynamic
                dims.append(d.dim_param or f"d{i}")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        except Exception:
            dtype = str(tt.elem_type)
        return TensorSpec(name=v.name, shape=tuple(dims), dtype=dtype)

    ins = tuple(spec(v) for v in model.graph.input if v.name not in inits)
    outs = tuple(spec(v) for v in model.graph.output)
    return ins, outs


def ort_dtype(t: str) -> str:
    table = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
             "tensor(uint8)": "uint8", "tensor(bool)": "bool", "tensor(int16)": "int16"}
    return table.get(t, t)


def ort_session(model: Path | bytes, threads: int = 0, session_config: dict[str, str] | None = None,
                optimize: bool = True) -> Any:
    """The one ONNX Runtime session factory: CPU provider, ``threads`` intra-op threads (0: ORT's
    default), one inter-op thread, sequential, ORT's own logging off (its errors reach the caller as
    exceptions), graph optimisations on unless ``optimize`` is False (so every tensor keeps the
    meaning it has in the file). ``session_config`` entries are added as given."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    for k, v in (session_config or {}).items():  # e.g. weight-only int8: dequantise the weights once, at load
        so.add_session_config_entry(k, v)
    # 0: as many as this process may run on (a deploy worker is pinned to its share of the CPUs;
    # ONNX Runtime's own default counts the machine's cores and would oversubscribe the share)
    so.intra_op_num_threads = int(threads) or len(allowed_cpus())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 4
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=so,
                                providers=["CPUExecutionProvider"])


class OnnxRunner(Runner):
    def __init__(self, path: Path, threads: int = 1, session_config: dict[str, str] | None = None) -> None:
        super().__init__(path, threads)
        try:
            self.session = ort_session(path, threads, session_config)
        except ImportError:  # the runtime itself, not the file (a missing extra, or a memory limit at import)
            raise
        except Exception as e:  # failures reach the user as typed errors carrying ORT's message
            raise FormatError(f"ONNX Runtime cannot load {path}: {first_line(e)}",
                              hint="check the file with onnx.checker, or export it again") from None
        self._inputs: tuple[TensorSpec, ...] | None = None
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        if self._inputs is None:  # built on first use: the app-side runtime never needs them
            from ..artifact import TensorSpec

            self._inputs = tuple(
                TensorSpec(name=i.name, shape=tuple(d if isinstance(d, int) else (d or f"d{k}") for k, d in enumerate(i.shape)),
                           dtype=ort_dtype(i.type))
                for i in self.session.get_inputs())
        return self._inputs

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self.session.run(self.output_names, feeds))
        except Exception as e:  # ORT's own errors carry no type worth keeping
            raise FormatError(f"ONNX Runtime failed to run {self.path.name}: {first_line(e)}",
                              hint="check the input shapes and dtypes; a corrupt model or one that needs more "
                                   "memory than allowed fails here too") from None


# ---- where two runs of a graph part ways ------------------------------------------------------

def onnx_intermediates(path: Path, feeds: dict[str, np.ndarray], threads: int = 0,
                       optimize: bool = False) -> dict[str, np.ndarray]:
    """Every node output of an ONNX model on ``feeds``, by tensor name (ONNX Runtime, with each
    intermediate tensor exposed as a graph output; without graph optimisations unless asked, so a
    tensor keeps the meaning it has in the file)."""
    import onnx

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    names = [o for n in model.graph.node for o in n.output if o and o not in have]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    try:
        sess = ort_session(model.SerializeToString(), threads, optimize=optimize)
        outs = [o.name for o in sess.get_outputs()]
        return dict(zip(outs, sess.run(outs, feeds)))
    except Exception as e:  # noqa: BLE001 - a graph that cannot expose its tensors has no answer here
        raise FormatError(f"ONNX Runtime cannot expose the intermediate tensors of {path.name}: {first_line(e)}") from None


def first_divergence(reference: Path, ref: dict[str, np.ndarray], got: dict[str, np.ndarray],
                     atol: float, rtol: float) -> dict[str, Any] | None:
    """The first node of ``reference`` (in graph order) whose output, present in both runs with the
    same shape, differs beyond ``atol + rtol * |ref|``: its name, op type, source module, tensor
    and the error there. None when every shared tensor agrees."""
    import onnx

    model = onnx.load(str(reference), load_external_data=False)
    for node in model.graph.node:
        for t in node.output:
            a, b = ref.get(t), got.get(t)
            if a is None or b is None or np.shape(a) != np.shape(b) or not np.issubdtype(np.asarray(a).dtype, np.number):
                continue
            a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
            diff = np.abs(a64 - b64)
            if diff.size and not bool(np.all(diff <= atol + rtol * np.abs(a64))):
                scale = float(np.abs(a64).max()) or 1.0
                return {"node": node.name or t, "op": node.op_type, "module": module_path(node), "tensor": t,
                        "max_abs": float(diff.max()), "max_rel": float(diff.max()) / scale}
    return None
