"""ONNX Runtime's quantiser failing on a model: the failure named (:func:`culprit`, read from the
library's own frames) and the fallback ladder (:class:`Fallback`) that each later quantisation of
the same model takes the same way, with the op types the recipes quantise.
:mod:`edgeship.quant.onnxruntime_recipes` calls the quantiser through it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import UnsupportedError, first_line

__all__ = ["WEIGHTED_OPS", "DYNAMIC_OPS", "MAX_FALLBACKS", "from_library", "culprit", "Fallback", "flatten_broadcast_biases", "input_users"]

#: the ops whose weights the quantiser quantises (per channel unless a fallback says per tensor)
WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
#: the op types dynamic int8 quantises (Gather: embedding tables become int8 rows dequantised after the lookup)
DYNAMIC_OPS = ("MatMul", "Gemm", "Attention", "Gather")
#: at most this many fallbacks are tried for one quantisation before it is refused
MAX_FALLBACKS = 8
_LIBRARIES = ("onnxruntime", "onnx")


def from_library(e: BaseException) -> bool:
    """Whether ``e`` was raised by ONNX Runtime or onnx (their code, or code they called), not by
    edgeship's own: a library's failure on a model is a fact about that cell; edgeship's own is a bug."""
    if (type(e).__module__ or "").split(".")[0] in _LIBRARIES:
        return True
    tb, after = e.__traceback__, []
    while tb is not None:
        mod = tb.tb_frame.f_globals.get("__name__", "") or ""
        after = [] if mod.split(".")[0] == "edgeship" else [*after, mod.split(".")[0]]
        tb = tb.tb_next
    return any(m in _LIBRARIES for m in after)


def culprit(e: BaseException, model: Any = None) -> dict[str, Any]:
    """What ONNX Runtime's quantiser was working on when it raised ``e``, read from its own frames
    (innermost first): ``node`` and ``op`` when known, ``bias`` when it was quantising a bias (or
    adjusting a weight's scale for one)."""
    frames = []
    tb = e.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    node = op = None
    bias = False
    for f in reversed(frames):
        if (f.f_globals.get("__name__", "") or "").split(".")[0] != "onnxruntime":
            continue
        bias = bias or "bias" in f.f_code.co_name
        loc = f.f_locals
        cands = [loc.get("node"), getattr(loc.get("self"), "node", None)]
        found = next((c for c in cands if hasattr(c, "op_type") and hasattr(c, "name")), None)
        if found is not None:
            node, op = found.name or None, found.op_type
            break
        name = getattr(loc.get("bias_info"), "node_name", None) or loc.get("node_name")
        if isinstance(name, str) and name:
            node = name
            break
    if node is None:  # ONNX Runtime's sessions name the node in their message
        m = _RUNNING.search(str(e))
        if m:
            op, node = m.group(1), m.group(2)
    if node and op is None and model is not None:
        op = next((n.op_type for n in model.graph.node if n.name == node), None)
    return {"node": node, "op": op, "bias": bias}


#: "Non-zero status code returned while running Conv node. Name:'conv1' Status Message: ..."
_RUNNING = re.compile(r"while running (\w+) node\. Name:'([^']*)'")


class Fallback:
    """How ONNX Runtime's quantiser is called for one model once it failed on the recipe as asked:
    every fallback taken is kept, so each later quantisation of the same model (bias correction,
    equalisation, learned rounding, the budget's steps) is built the same way; ``taken`` says what
    was done and why, for the report and the progress lines."""

    def __init__(self, cell: str = "int8", say: Any = None) -> None:
        self.cell = cell
        self.say = say or (lambda _m: None)
        self.exclude: list[str] = []        # nodes kept in float
        self.float_ops: list[str] = []      # op types kept in float
        self.per_tensor_ops: list[str] = []  # op types whose weights are per-tensor (per-channel elsewhere)
        self.per_channel = True
        self.flat_biases = False            # Gemm biases [1, N] given as [N]
        self.extra: dict[str, Any] = {}     # extra_options for ORT
        self.taken: list[dict[str, Any]] = []

    def notes(self) -> list[str]:
        return [t["done"] for t in self.taken]

    def next(self, c: dict[str, Any], model: Any, static: bool) -> str | None:
        """Take the next fallback for failure ``c``, least change first; None when none is left."""
        node, op, bias = c.get("node"), c.get("op"), c.get("bias")
        at = f"{node} ({op})" if node and op else node or (f"a {op} node" if op else "")
        if static and bias and not self.flat_biases and _broadcast_biases(model):
            self.flat_biases = True
            return f"Gemm biases of shape [1, N] given as [N] (the same values) for {at or 'the bias quantiser'}"
        if static and bias and not self.extra.get("QDQDisableWeightAdjustForInt32Bias"):
            self.extra["QDQDisableWeightAdjustForInt32Bias"] = True
            return f"ONNX Runtime's weight-scale adjustment for int32 biases turned off ({at or 'it failed'})"
        if static and self.per_channel and op in WEIGHTED_OPS and op not in self.per_tensor_ops:
            self.per_tensor_ops.append(op)
            return f"per-tensor int8 weights for {op} layers instead of per-channel ({at})"
        if node and node not in self.exclude:
            self.exclude.append(node)
            return f"{at} kept in float"
        if op and op not in self.float_ops:
            self.float_ops.append(op)
            return f"every {op} node kept in float"
        if static and bias and self.extra.get("QuantizeBias", True):
            self.extra["QuantizeBias"] = False
            return "biases kept in float"
        if self.per_channel and not op:
            self.per_channel = False
            return "per-tensor int8 weights everywhere instead of per-channel"
        return None

    def run(self, what: str, model_path: Path, build: Any, static: bool) -> None:
        """``build(path)`` (an ORT quantiser call on the model at ``path``, with this fallback's
        settings) until it works; ORT failing with no fallback left is an UnsupportedError naming the
        cell, the node and op, what was tried and ORT's message."""
        import onnx

        model = None
        last: tuple[BaseException, dict[str, Any]] | None = None
        for _ in range(MAX_FALLBACKS + 1):
            try:
                if self.flat_biases:
                    import tempfile

                    with tempfile.TemporaryDirectory(prefix="edgeship-flatbias-") as tmp:
                        build(flatten_broadcast_biases(model_path, Path(tmp) / "model.onnx"))
                else:
                    build(model_path)
                return
            except Exception as e:
                if not from_library(e):
                    raise
                model = model if model is not None else onnx.load(str(model_path))
                c = culprit(e, model)
                last = (e, c)
                done = self.next(c, model, static)
                if done is None:
                    raise self.error(what, e, c) from None
                self.taken.append({"done": done, "node": c["node"], "op": c["op"], "bias": c["bias"],
                                   "error": _first_line(e)})
                self.say(f"{what} failed{_at(c)}: {_first_line(e)[:160]}; retrying: {done}")
        assert last is not None
        raise self.error(what, *last) from None

    def error(self, what: str, e: BaseException, c: dict[str, Any]) -> UnsupportedError:
        tried = "; ".join(self.notes())
        return UnsupportedError(
            f"{self.cell}: ONNX Runtime's {what} failed{_at(c)}: {_first_line(e)}"
            + (f" (fallbacks tried: {tried})" if tried else ""),
            hint="this cell is not built; keep the fp32 artifact, or try another --method (dynamic, weight-only)",
            node=c.get("node"), op=c.get("op"), fallbacks=self.notes())

    def ort_kwargs(self, model_path: Path, static: bool) -> dict[str, Any]:
        """quantize_static / quantize_dynamic keyword arguments for this fallback's settings."""
        kw: dict[str, Any] = {"per_channel": self.per_channel}
        extra = dict(self.extra)
        if self.float_ops:
            from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

            # what ORT quantises when not told (static), or what edgeship's dynamic recipe asks for
            base = (set(QDQRegistry) | set(QLinearOpsRegistry)) if static else set(DYNAMIC_OPS)
            kw["op_types_to_quantize"] = sorted(base - set(self.float_ops))
        if static and self.per_tensor_ops and self.per_channel:
            import onnx

            model = onnx.load(str(model_path), load_external_data=False)
            inits = {i.name for i in model.graph.initializer}
            weights = {n.input[1] for n in model.graph.node if n.op_type in self.per_tensor_ops and len(n.input) > 1
                       and n.input[1] in inits}
            if weights:  # a per-tensor override (no axis) makes that weight per-tensor
                extra["TensorQuantOverrides"] = {w: [{"symmetric": True}] for w in sorted(weights)}
        if extra:
            kw["extra_options"] = extra
        return kw


def _first_line(e: BaseException) -> str:
    return first_line(e, 300)


def _at(c: dict[str, Any]) -> str:
    if c.get("node"):
        return f" at node {c['node']}" + (f" ({c['op']})" if c.get("op") else "")
    return f" at a {c['op']} node" if c.get("op") else ""


def _broadcast_biases(model: Any) -> list[Any]:
    """Gemm nodes whose bias C is an initializer of shape [1, N] (read by them alone): ONNX Runtime's
    per-channel bias code indexes it as if it were [N] and fails."""
    inits = {i.name: i for i in model.graph.initializer}
    users = input_users(model)
    return [n for n in model.graph.node if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2] in inits
            and len(inits[n.input[2]].dims) == 2 and inits[n.input[2]].dims[0] == 1 and users.get(n.input[2], 0) == 1]


def flatten_broadcast_biases(path: Path, out: Path) -> Path:
    """A copy of the model at ``path`` whose Gemm biases of shape [1, N] are [N]: the same values and
    the same result (C broadcasts over the rows either way)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    for n in _broadcast_biases(model):
        init = inits[n.input[2]]
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(-1), init.name))
    onnx.save(model, str(out))
    return out


def input_users(model: Any) -> dict[str, int]:
    """How many nodes read each tensor (a weight read by two layers is left alone)."""
    users: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    return users
