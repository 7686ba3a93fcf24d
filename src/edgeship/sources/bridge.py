"""The ONNX -> torch bridge: an ONNX source as a torch module, so the targets that convert torch
programs only (tflite through litert-torch, executorch through torch.export) take ONNX files.

``to_torch(source)`` converts with onnx2torch 1.5.15 (pinned: the converters below reach into its
registry and helpers) at the source's example shapes: the input shapes are fixed, onnxslim folds
the shape sub-graphs they decide, and the ops whose shape-like inputs are then constants are built
with those values baked in, so ``torch.export`` sees no data-dependent shapes. The artifact takes
those shapes only (said in the Source's notes). Verification stays against the ONNX model in ONNX
Runtime: the targets convert from the bridged module and are verified against the original source.

onnx2torch declares torchvision as a requirement and imports it in two converter modules (NMS and
RoiAlign); edgeship does not depend on torchvision (pip would replace the CPU torch wheel with a
CUDA build), so it is installed with ``pip install --no-deps onnx2torch==1.5.15`` and imported
without those two modules: a model using NonMaxSuppression or RoiAlign is refused by op name.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import math
import pkgutil
import sys
import types
from typing import Any

import numpy as np

from .._util import article, quiet
from ..errors import MissingExtraError, UnsupportedError, first_line
from ..formats.onnx import fix_input_shapes
from .model import flatten_outputs
from .onnx import load_onnx_model

__all__ = ["VERSION", "INSTALL", "available", "require", "to_torch", "torch_source", "bridge_notes", "NOTE_PREFIX"]

VERSION = "1.5.15"
INSTALL = f"pip install --no-deps onnx2torch=={VERSION}"
NOTE_PREFIX = "bridged from ONNX"

_failed: str | None = None  # why loading onnx2torch failed in this process (then the bridge is unavailable)
_convert: Any = None  # onnx2torch.converter.convert once loaded
_last: tuple[Any, Any] | None = None  # (key, bridged Source): a deploy's targets share one conversion


def available() -> str | None:
    """None when the bridge can be used, else why not and how to install it (cheap: no import)."""
    if _failed:
        return _failed
    try:
        found = importlib.util.find_spec("onnx2torch") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return f"the ONNX -> torch bridge needs onnx2torch {VERSION}, which is not installed: {INSTALL}"
    try:
        version = importlib.metadata.version("onnx2torch")
    except importlib.metadata.PackageNotFoundError:
        version = "an unknown version"
    if version != VERSION:
        return f"the ONNX -> torch bridge is pinned to onnx2torch {VERSION}, {version} is installed: {INSTALL}"
    return None


def require() -> None:
    """MissingExtraError (naming the install command) when the bridge cannot be used."""
    why = available()
    if why:
        raise MissingExtraError(why, hint=INSTALL)


def bridge_notes(source: Any) -> tuple[str, ...]:
    """The notes a bridged Source carries about the bridge (empty for any other source)."""
    return tuple(n for n in source.notes if n.startswith(NOTE_PREFIX))


def torch_source(source: Any) -> Any:
    """``source`` itself when it has a torch module, else its bridged torch Source (an ONNX file)."""
    if source.module is not None:
        return source
    if source.kind != "onnx" or source.path is None:
        raise UnsupportedError(f"{source.name} is {article(source.kind)} model: only ONNX files are bridged to torch")
    return to_torch(source)


def to_torch(source: Any) -> Any:
    """The ONNX ``source`` as a torch-kind Source whose module is the converted ``nn.Module``:
    same input and output names, example inputs copied, preprocessing and labels carried,
    specialised to the example shapes. UnsupportedError naming the ONNX op(s) it cannot take."""
    global _last
    require()
    shapes = {s.name: tuple(int(d) for d in np.shape(a)) for s, a in zip(source.inputs, source.example_inputs)}
    key = (source.digest, str(source.path), tuple(shapes.items()),
           tuple(np.asarray(a).dtype.str for a in source.example_inputs))
    if _last is not None and _last[0] == key:
        return _last[1]
    convert = _load()
    model = load_onnx_model(source.path)
    model = _static(model, shapes)
    missing = _missing_converters(model)
    if missing:
        ops = sorted({op for op, _ in missing})
        raise UnsupportedError(
            f"the ONNX -> torch bridge (onnx2torch {VERSION}) has no converter for {', '.join(ops)} in {source.name} "
            f"(node {', '.join(n for _, n in missing[:6])})",
            hint="use a target that takes ONNX directly (onnx, ort, openvino), or export the model from torch",
            ops=ops, nodes=[n for _, n in missing])
    try:
        import torch

        with _quiet():
            module = convert(model).eval()
    except Exception as e:  # noqa: BLE001 - a converter's failure is this model's refusal, named by its node
        op, node = _failing_onnx_node(e)
        raise UnsupportedError(
            f"the ONNX -> torch bridge (onnx2torch {VERSION}) cannot convert {source.name}"
            + (f": {op} node {node!r}" if op else "") + f": {type(e).__name__}: {first_line(e, 300)}",
            hint="use a target that takes ONNX directly (onnx, ort, openvino)",
            ops=[op] if op else [], nodes=[node] if node else []) from None
    examples = tuple(np.array(a, copy=True, order="C") for a in source.example_inputs)
    try:
        with torch.no_grad(), _quiet():
            got = [t.detach().numpy() for t in flatten_outputs(module(*[torch.from_numpy(a.copy()) for a in examples]))]
    except Exception as e:  # noqa: BLE001 - the bridged module failing on the examples is a refusal too
        where = _failing_module(e, module)
        raise UnsupportedError(
            f"the module onnx2torch {VERSION} made from {source.name} fails on the example inputs"
            + (f" at ONNX node {where!r}" if where else "") + f": {type(e).__name__}: {first_line(e, 300)}",
            hint="use a target that takes ONNX directly (onnx, ort, openvino)", nodes=[where] if where else []) from None
    if len(got) != len(source.outputs):
        raise UnsupportedError(f"the module onnx2torch {VERSION} made from {source.name} returns {len(got)} outputs, "
                               f"the ONNX model {len(source.outputs)}", hint="use a target that takes ONNX directly")
    want = source.run(list(examples))
    diff = max((float(np.max(np.abs(np.asarray(w, np.float64) - np.asarray(g, np.float64)))) if np.size(w) else 0.0)
               for w, g in zip(want, got)) if all(np.shape(w) == np.shape(g) for w, g in zip(want, got)) else None
    dims = ", ".join(f"{n}={list(s)}" for n, s in shapes.items())
    note = (f"{NOTE_PREFIX} with onnx2torch {VERSION} at the example shapes [{dims}]: the artifact takes those shapes "
            "only" + (f"; the bridged module differs from ONNX Runtime by {diff:.2g} (max abs) on the example" if diff is not None
                      else "; its output shapes differ from ONNX Runtime's on the example"))
    bridged = dataclasses.replace(
        source, kind="torch", module=module, exported=None, path=None, example_inputs=examples,
        inputs=tuple(s.model_copy(update={"shape": shapes[s.name]}) for s in source.inputs),
        outputs=tuple(s.model_copy(update={"shape": tuple(int(d) for d in g.shape), "dtype": g.dtype.name})
                      for s, g in zip(source.outputs, got)),
        notes=(*source.notes, note))
    _last = (key, bridged)
    return bridged


# ---- importing onnx2torch without torchvision ---------------------------------------------

#: converter modules left out: they import torchvision at module level (NonMaxSuppression,
#: RoiAlign); without them those ops have no converter and are refused by name
_SKIPPED = ("nms", "roialign")


def _load() -> Any:
    """onnx2torch's ``convert``, imported without torchvision, with edgeship's converters added.

    onnx2torch/__init__.py and node_converters/__init__.py star-import every converter module,
    nms.py and roialign.py included; so bare package objects stand in for those two __init__ files
    and every other converter module is imported by itself (its decorators fill the registry)."""
    global _convert, _failed
    if _convert is not None:
        return _convert
    try:
        if "onnx2torch.converter" not in sys.modules:
            for name in ("onnx2torch", "onnx2torch.node_converters"):
                spec = importlib.util.find_spec(name)  # locates the package without running its __init__
                assert spec is not None and spec.submodule_search_locations is not None
                pkg = types.ModuleType(name)
                pkg.__path__ = list(spec.submodule_search_locations)
                pkg.__spec__, pkg.__file__ = spec, spec.origin
                sys.modules[name] = pkg
            nc = sys.modules["onnx2torch.node_converters"]
            sys.modules["onnx2torch"].node_converters = nc  # type: ignore[attr-defined]
            registry = importlib.import_module("onnx2torch.node_converters.registry")
            # what converter.py imports from the package: `from onnx2torch.node_converters import get_converter`
            nc.get_converter, nc.OperationDescription, nc.TConverter = (  # type: ignore[attr-defined]
                registry.get_converter, registry.OperationDescription, registry.TConverter)
            for m in pkgutil.iter_modules(nc.__path__):
                if m.name not in (*_SKIPPED, "registry"):
                    importlib.import_module(f"onnx2torch.node_converters.{m.name}")
        converter = importlib.import_module("onnx2torch.converter")
        sys.modules["onnx2torch"].convert = converter.convert  # type: ignore[attr-defined]
        _register_converters()
    except Exception as e:  # noqa: BLE001 - any import failure makes the bridge unavailable, said once
        _failed = f"onnx2torch {VERSION} could not be imported ({type(e).__name__}: {first_line(e, 200)}): {INSTALL}"
        raise MissingExtraError(_failed, hint=INSTALL) from None
    _convert = converter.convert
    return _convert


# ---- preparing the ONNX graph -------------------------------------------------------------

def _static(model: Any, shapes: dict[str, tuple[int, ...]]) -> Any:
    """The model at fixed input shapes, shape sub-graphs folded, ready for onnx2torch."""
    import onnx

    g = model.graph
    fix_input_shapes(model, shapes)
    # Paddle2ONNX's -1 dims (dynamic) elsewhere: a name, as ONNX means it
    for k, vi in enumerate([*g.output, *g.value_info]):
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value < 0:
                d.dim_param = f"dyn_{k}_{i}"
    try:
        import onnxslim

        with quiet("onnxslim"):
            folded = onnxslim.slim(model)  # Shape -> Slice -> Concat -> Reshape chains become constants
        if folded is not None:
            model = folded
    except Exception:  # noqa: BLE001 - folding helps torch.export; onnx2torch converts the unfolded graph too
        pass
    g = model.graph
    # paddle2onnx and torch's exporters keep weights in Constant nodes; onnx2torch looks weights (Conv,
    # BatchNormalization, LSTM ...) up among the initializers only (KeyError: 'conv1_weights')
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    for node in g.node:  # a trailing "" (omitted optional input): onnx2torch's Clip takes it as a dynamic input
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
    # onnx2torch returns a multi-output node's whole tuple when a graph output is one of its outputs
    # (and a graph input passed through as it is, never): such outputs get an Identity of their own
    producers = {o: n for n in g.node for o in n.output}
    for out in g.output:
        n = producers.get(out.name)
        if n is None or len(n.output) > 1:
            inner = f"{out.name}__bridged"
            for node in g.node:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if i == out.name else i for i in node.input]
            g.node.append(onnx.helper.make_node("Identity", [inner], [out.name]))
    return model


def missing_converters(model: Any) -> list[tuple[str, str]]:
    """(op, node) of every node of the ONNX ``model`` the bridge has no converter for, at the
    model's opset: what ``deploy --targets tflite/executorch`` would refuse it for (``analyze``
    asks before any conversion). Empty when the bridge is not installed (it says so elsewhere)."""
    if available() is not None:
        return []
    _load()
    return _missing_converters(model)


def _missing_converters(model: Any) -> list[tuple[str, str]]:
    """(op, node) of every node onnx2torch has no converter for, at the model's opset."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    out = []
    for i, n in enumerate(model.graph.node):
        try:
            get_converter(operation_type=n.op_type, version=opsets.get(n.domain or "", 1), domain=n.domain or "")
        except NotImplementedError:
            out.append((n.op_type if not n.domain else f"{n.domain}.{n.op_type}", n.name or f"#{i}"))
    return out


def _failing_onnx_node(e: BaseException) -> tuple[str | None, str | None]:
    """(op type, node name) of the ONNX node onnx2torch was converting when ``e`` was raised."""
    tb = e.__traceback__
    found: tuple[str | None, str | None] = (None, None)
    while tb is not None:
        node = tb.tb_frame.f_locals.get("onnx_node") if tb.tb_frame.f_code.co_name == "convert" else None
        if node is not None:
            found = (node.operation_type, node.name or node.unique_name)
        tb = tb.tb_next
    return found


def _failing_module(e: BaseException, module: Any) -> str | None:
    """The ONNX node (onnx2torch names each submodule after it) whose forward raised ``e``."""
    names = {id(m): n for n, m in module.named_modules() if n}
    tb, found = e.__traceback__, None
    while tb is not None:
        name = names.get(id(tb.tb_frame.f_locals.get("self")))
        if name:
            found = name
        tb = tb.tb_next
    return found


def _quiet() -> Any:
    return quiet("onnx2torch", "onnxslim")


# ---- converters edgeship adds or replaces ---------------------------------------------------

def _register_converters() -> None:
    """Converters onnx2torch 1.5.15 lacks (GlobalMaxPool: magika; LSTM: Silero VAD; opset-18 Reduce*), and
    export-friendly replacements: where a shape-like input (Reshape's shape, Slice's starts, Pad's
    pads, Resize's sizes, Gather's indices ...) is a constant after folding, the value is baked in
    as Python ints. onnx2torch keeps such inputs as buffers read at run time (``.tolist()``,
    ``torch.any(shape == 0)``), which torch.export cannot trace (GuardOnDataDependentSymNode). With
    a non-constant input the stock converter is used."""
    import torch
    import torch.nn.functional as F
    from onnx2torch.node_converters import registry as R
    from onnx2torch.node_converters.pad import _onnx_padding_to_torch, _onnx_to_torch_mode
    from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
    from onnx2torch.node_converters.resize import _get_torch_align_corners, _onnx_mode_to_torch_mode
    from onnx2torch.node_converters.slice import _do_slice, _get_slices
    from onnx2torch.node_converters.squeeze import OnnxSqueezeStaticAxes
    from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
    from torch import nn

    def const(graph: Any, name: str | None) -> np.ndarray | None:
        return graph.initializers[name].to_numpy() if name and name in graph.initializers else None

    def result(node: Any, module: Any, inputs: tuple[str, ...] | None = None) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=OnnxMapping(
            inputs=inputs if inputs is not None else (node.input_values[0],), outputs=node.output_values))

    def override(op: str, versions: tuple[int, ...], make: Any) -> None:
        """``make(node, graph)`` -> a module taking the node's first input only, or None (stock converter)."""
        for v in versions:
            d = R.OperationDescription("", op, v)
            stock = R._CONVERTER_REGISTRY[d]

            def conv(node: Any, graph: Any, stock: Any = stock) -> Any:
                mod = make(node, graph)
                return stock(node, graph) if mod is None else result(node, mod)
            R._CONVERTER_REGISTRY[d] = conv

    def add(op: str, versions: tuple[int, ...], conv: Any) -> None:
        for v in versions:
            R._CONVERTER_REGISTRY.setdefault(R.OperationDescription("", op, v), conv)

    class Fn(nn.Module):
        """A module calling ``fn(x, *consts)``: the constants are plain Python values, not buffers."""

        def __init__(self, fn: Any, *consts: Any) -> None:
            super().__init__()
            self.fn, self.consts = fn, consts

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(x, *self.consts)

    # GlobalMaxPool (magika): no converter in onnx2torch
    add("GlobalMaxPool", (1,), lambda node, graph: OperationConverterResult(
        torch_module=Fn(lambda x: torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)),
        onnx_mapping=onnx_mapping_from_node(node=node)))

    def reshape(x: torch.Tensor, shape: list[int]) -> torch.Tensor:
        return torch.reshape(x, [x.shape[i] if d == 0 else d for i, d in enumerate(shape)])  # 0: keep that dim
    override("Reshape", (5, 13, 14), lambda node, graph: None if (s := const(graph, node.input_values[1])) is None
             else Fn(reshape, [int(v) for v in s]))

    def expand(x: torch.Tensor, shape: list[int]) -> torch.Tensor:
        nd = max(x.dim(), len(shape))
        shape = [1] * (nd - len(shape)) + shape
        xs = [1] * (nd - x.dim()) + list(x.shape)
        # repeat, not expand: ExecuTorch rejects tensors with 0 strides
        return x.reshape(xs).repeat([shape[i] if xs[i] == 1 and shape[i] != 1 else 1 for i in range(nd)])
    override("Expand", (8, 13), lambda node, graph: None if (s := const(graph, node.input_values[1])) is None
             else Fn(expand, [int(v) for v in s]))

    def mk_slice(node: Any, graph: Any) -> Any:
        names = [*node.input_values[1:5], *[None] * (5 - len(node.input_values))]
        vals = [const(graph, n) for n in names]
        if any(v is None for n, v in zip(names, vals) if n):
            return None
        starts, ends, axes, steps = [None if v is None else [int(t) for t in v] for v in vals]
        flip, pos, neg = _get_slices(starts, ends, None if axes is None else torch.tensor(axes),
                                     None if steps is None else torch.tensor(steps))

        def ints(s: Any) -> Any:
            return slice(*(None if v is None else int(v) for v in (s.start, s.stop, s.step))) if isinstance(s, slice) else s
        return Fn(_do_slice, [int(a) for a in flip], [ints(s) for s in pos], [ints(s) for s in neg])
    override("Slice", (10, 11, 13), mk_slice)

    def mk_resize(node: Any, graph: Any) -> Any:
        names = [*node.input_values, *[None] * (4 - len(node.input_values))]
        scales, sizes = const(graph, names[2]), const(graph, names[3])
        if (names[2] and scales is None) or (names[3] and sizes is None):
            return None
        scales_l = [float(v) for v in scales][2:] if scales is not None and scales.size else None
        sizes_l = [int(v) for v in sizes][2:] if sizes is not None and sizes.size else None
        mode = node.attributes.get("mode", "nearest")
        ac = _get_torch_align_corners(mode, node.attributes.get("coordinate_transformation_mode", "half_pixel"))
        return Fn(lambda x: F.interpolate(x, size=sizes_l, scale_factor=scales_l,
                                          mode=_onnx_mode_to_torch_mode(mode, x.dim() - 2), align_corners=ac))
    override("Resize", (11, 13), mk_resize)

    def mk_squeeze(node: Any, graph: Any) -> Any:
        if len(node.input_values) < 2:
            return OnnxSqueezeStaticAxes(axes=None)
        a = const(graph, node.input_values[1])
        return None if a is None else OnnxSqueezeStaticAxes(axes=[int(v) for v in a])
    override("Squeeze", (13, 21), mk_squeeze)

    def mk_pad(node: Any, graph: Any) -> Any:
        names = [*node.input_values, *[""] * (4 - len(node.input_values))]
        pads, cval = const(graph, names[1]), const(graph, names[2]) if names[2] else None
        if pads is None or (names[2] and cval is None) or names[3]:
            return None
        tp = _onnx_padding_to_torch([int(v) for v in pads])
        mode = _onnx_to_torch_mode(node.attributes.get("mode", "constant"))
        while len(tp) > 2 and tp[-2:] == [0, 0]:  # zero pads of the outer dims dropped (reflect/replicate need it)
            tp = tp[:-2]
        value = float(cval) if cval is not None and cval.size else 0.0
        return Fn(lambda x: F.pad(x, tp, mode="constant", value=value) if mode == "constant" else F.pad(x, tp, mode=mode))
    override("Pad", (11, 13), mk_pad)

    def gather(x: torch.Tensor, axis: int, idx: np.ndarray) -> torch.Tensor:
        ax = axis % x.dim()
        n = x.shape[ax]
        if idx.ndim == 0:
            return x.select(ax, int(idx) + n if int(idx) < 0 else int(idx))
        flat = [int(i) + n if i < 0 else int(i) for i in idx.reshape(-1)]
        y = x.narrow(ax, flat[0], 1) if len(flat) == 1 else torch.cat([x.narrow(ax, i, 1) for i in flat], dim=ax)
        return y.reshape(list(x.shape[:ax]) + list(idx.shape) + list(x.shape[ax + 1:]))
    override("Gather", (1, 11, 13), lambda node, graph: None if (i := const(graph, node.input_values[1])) is None
             else Fn(gather, int(node.attributes.get("axis", 0)), i))

    def flatten(x: torch.Tensor, axis: int) -> torch.Tensor:
        # onnx2torch uses nn.Flatten(start_dim=axis): IndexError on a 1-D input (MiniLM's pooler)
        ax = axis % x.dim() if axis < 0 else axis
        return x.reshape(math.prod(x.shape[:ax]), math.prod(x.shape[ax:]))
    override("Flatten", (9, 11, 13), lambda node, graph: Fn(flatten, int(node.attributes.get("axis", 1))))

    def mk_reduce(node: Any, graph: Any) -> Any:
        # opset 18 moved the axes of ReduceMean/Max/... from an attribute to an input; onnx2torch 1.5.15
        # converts them up to opset 13 only (torch.onnx's dynamo exporter writes opset 18)
        axes = const(graph, node.input_values[1]) if len(node.input_values) > 1 else None
        if len(node.input_values) > 1 and axes is None:
            raise NotImplementedError(f"{node.operation_type} with axes computed at run time")
        if (axes is None or not axes.size) and node.attributes.get("noop_with_empty_axes", 0):
            return result(node, Fn(lambda x: x))
        return result(node, OnnxReduceStaticAxes(node.operation_type, None if axes is None else [int(v) for v in axes],
                                                 node.attributes.get("keepdims", 1)))
    for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean", "ReduceProd", "ReduceSumSquare"):
        add(op, (18,), mk_reduce)
    add("ReduceMax", (18, 20), mk_reduce)
    add("ReduceMin", (18, 20), mk_reduce)

    class LSTM(nn.Module):
        """ONNX LSTM, forward, default activations, unrolled over the static sequence length with
        plain matmuls (torch.export, LiteRT and XNNPACK all take them). Gate order i, o, f, c."""

        def __init__(self, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None, hidden: int) -> None:
            super().__init__()
            self.register_buffer("w", w[0].clone())
            self.register_buffer("r", r[0].clone())
            self.register_buffer("b", (b[0, :4 * hidden] + b[0, 4 * hidden:]).clone() if b is not None
                                 else torch.zeros(4 * hidden))
            self.hidden = hidden

        def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None) -> Any:
            H = self.hidden
            h = h0[0] if h0 is not None else x.new_zeros(x.shape[1], H)
            c = c0[0] if c0 is not None else x.new_zeros(x.shape[1], H)
            ys = []
            for t in range(x.shape[0]):
                g = x[t] @ self.w.T + h @ self.r.T + self.b
                i, o, f, cc = (torch.sigmoid(g[:, :H]), torch.sigmoid(g[:, H:2 * H]), torch.sigmoid(g[:, 2 * H:3 * H]),
                               torch.tanh(g[:, 3 * H:]))
                c = f * c + i * cc
                h = o * torch.tanh(c)
                ys.append(h)
            return torch.stack(ys, 0).unsqueeze(1), h.unsqueeze(0), c.unsqueeze(0)

    def lstm(node: Any, graph: Any) -> Any:
        a = node.attributes
        x, w, r, b, seq, h0, c0, p = [*node.input_values, *[""] * (8 - len(node.input_values))]
        plain = (a.get("direction", "forward") == "forward" and not a.get("layout", 0) and "activations" not in a
                 and not a.get("input_forget", 0) and "clip" not in a and not seq and not p and bool(h0) == bool(c0))
        if not plain or any(n not in graph.initializers for n in (w, r, *([b] if b else []))):
            raise NotImplementedError("LSTM: edgeship's bridge takes forward LSTMs with constant weights, default "
                                      "activations, no peepholes, sequence_lens, clip or layout=1")
        weights = [graph.initializers[n].to_torch() if n else None for n in (w, r, b)]
        return result(node, LSTM(*weights, int(a["hidden_size"])), (x, *(v for v in (h0, c0) if v)))
    add("LSTM", (7, 14), lstm)
