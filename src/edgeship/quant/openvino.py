"""OpenVINO int8 (NNCF) and what it stored: the quantisation of an fp32 IR, and the per-layer
attribution of an int8 IR's weights against the fp32 one's (:func:`weight_report`), each layer traced to
the source module where the IR tells it (:func:`ir_source`). The target (:mod:`edgeship.targets.openvino`)
builds and saves the IRs; OpenVINO and NNCF are imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UnsupportedError, first_line
from ..fidelity import db_from_sums

if TYPE_CHECKING:
    from ..sources import Source

__all__ = ["nncf_int8", "weight_report", "ir_source", "ov_message"]


def nncf_int8(source: Source, model: Any, config: dict[str, Any], calib: list, quiet: Callable[[], Any],
              bias_correction: bool = True, excluded: Sequence[str] = ()) -> Any:
    """NNCF post-training int8 of the OpenVINO ``model`` (default preset, full bias correction unless
    ``bias_correction`` is False), calibrated on ``calib``, with the ops named in ``excluded`` kept in
    float; for an image model the first conv (it sees the image itself) too; integer token inputs
    quantise as ``ModelType.TRANSFORMER``. What it did goes into ``config``. An op type NNCF fails on
    is kept in float (up to three, named in ``config["kept_float_types"]``); else an
    UnsupportedError naming the ops. ``quiet()``: the context that keeps the converters' chatter off
    the screen (the target's)."""
    import logging

    import nncf

    names = [p.get_any_name() for p in model.inputs]
    transformer = any(np.issubdtype(np.asarray(a).dtype, np.integer) for a in source.example_inputs)
    ignored: list[str] = []
    if source.preprocess is not None and len(source.inputs) == 1:
        # the first conv sees the image itself; int8 there costs Lite0 top-1 agreement 92% -> 98% kept float
        stem = next((op.get_friendly_name() for op in model.get_ordered_ops()
                     if op.get_type_name() in ("Convolution", "GroupConvolution")), None)
        ignored = [stem] if stem else []
    ignored += [name for name in excluded if name not in ignored]
    ops = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    missing = [name for name in ignored if name not in ops]
    if missing:  # NNCF matches ignored names against the IR's op names: a stale name is a bug, not a knob
        weighted = [f"{n} ({t})" for n, t in ops.items() if t in _WEIGHTED]
        raise UnsupportedError(f"NNCF int8 of {source.name}: cannot keep {', '.join(missing)} in float: "
                               f"no op of that name in the IR", hint=f"its weighted ops: {', '.join(weighted[:12])}"
                               + (f" and {len(weighted) - 12} more" if len(weighted) > 12 else ""), nodes=missing)
    model_type = nncf.ModelType.TRANSFORMER if transformer else None
    config.update({"tool": "nncf.quantize", "preset": "performance", "calibration_samples": len(calib),
                   "model_type": "transformer" if transformer else "default", "kept_float": ignored,
                   "fast_bias_correction": False, "bias_correction": bias_correction})
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    float_types: list[str] = []  # op types kept in float after NNCF failed on one of them
    try:
        while True:
            try:
                with quiet():
                    dataset = nncf.Dataset(calib, lambda s: dict(zip(names, s)))
                    kwargs: dict[str, Any] = {"subset_size": len(calib), "fast_bias_correction": False}
                    if ignored or float_types:
                        kwargs["ignored_scope"] = nncf.IgnoredScope(names=ignored, types=float_types)
                    if model_type is not None:
                        kwargs["model_type"] = model_type
                    if not bias_correction:  # --no-bias-correction reaches NNCF too
                        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

                        kwargs["advanced_parameters"] = AdvancedQuantizationParameters(disable_bias_correction=True)
                    return nncf.quantize(model, dataset, **kwargs)
            except Exception as e:
                message = ov_message(e)
                nodes = [n for n in ops if n and re.search(rf"(?<![\w/#.]){re.escape(n)}(?![\w/#.])", message)]
                fresh = [ops[n] for n in nodes if ops[n] not in float_types]
                if fresh and len(float_types) < 3:
                    # NNCF cannot take that op (an LSTMSequence whose lengths are not a Constant): keep
                    # every op of its type in float and quantise the rest, said in the record
                    float_types.append(fresh[0])
                    config["kept_float_types"] = list(float_types)
                    config.setdefault("nncf_failures", []).append(f"{', '.join(nodes[:2])}: {message[:200]}")
                    continue
                where = f" at {', '.join(f'{n} ({ops[n]})' for n in nodes[:4])}" if nodes else ""
                also = f" (also with {', '.join(float_types)} kept in float)" if float_types else ""
                raise UnsupportedError(f"NNCF int8 quantisation failed for {source.name}{where}{also}: "
                                       f"{type(e).__name__}: {message}",
                                       hint="build the fp32 (or fp16) artifact only", nodes=nodes[:4]) from None
    finally:
        nncf_log.setLevel(level)


_WEIGHTED = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def _constant_value(node: Any, depth: int = 0) -> np.ndarray | None:
    """The value of a weight's constant subgraph (Constant, Convert, Subtract, Multiply, Reshape of
    constants), as NNCF stores int8 weights; None for anything else."""
    kind = node.get_type_name()
    if kind == "Constant":
        return np.asarray(node.get_data(), np.float64)
    if depth > 6:
        return None
    ins = [_constant_value(node.input_value(i).get_node(), depth + 1) for i in range(node.get_input_size())]
    if any(v is None for v in ins[:2]):
        return None
    if kind == "Convert":
        return ins[0]
    if kind == "Multiply":
        return ins[0] * ins[1]
    if kind == "Subtract":
        return ins[0] - ins[1]
    if kind == "Reshape" and ins[1] is not None:
        return ins[0].reshape([int(d) for d in ins[1]])
    return None


def weight_report(fp32_xml: Path, int8_xml: Path) -> list[dict[str, Any]]:
    """Per-layer attribution of an NNCF int8 IR: for every weighted op whose weights it stores as
    int8, the SQNR of those weights against the fp32 IR's (matched by op name), worst first.

    Each row names its source module when the IR can tell it (:func:`ir_source`: a weight constant
    named after its parameter, as an ONNX file's initializers are; or the op's own name), and
    otherwise says where the op came from (``source_ref``: the k-th convolution / linear layer of
    a torch program, the layer its k-th batch norm reads, or the ONNX node) for whoever holds the
    source to name it (:func:`edgeship.targets.layer_modules`), with the weight's ``shape`` to check
    it against. The IR's op names themselves (``Convolution#0``, ``Multiply_671618``) are not the
    model's layer names: OpenVINO makes them up when it fuses a batch norm into a convolution."""
    import openvino as ov

    core = ov.Core()
    floats, sources = {}, {}
    for op in core.read_model(str(fp32_xml)).get_ordered_ops():
        if op.get_type_name() in _WEIGHTED and op.get_input_size() > 1:
            floats[op.get_friendly_name()] = _constant_value(op.input_value(1).get_node())
            sources[op.get_friendly_name()] = ir_source(op)
    rows = []
    for op in core.read_model(str(int8_xml)).get_ordered_ops():
        if op.get_type_name() not in _WEIGHTED or op.get_input_size() < 2:
            continue
        wnode = op.input_value(1).get_node()
        if wnode.get_type_name() == "Constant":
            continue  # kept float
        w, wq = floats.get(op.get_friendly_name()), _constant_value(wnode)
        if w is None or wq is None or w.size != wq.size:
            continue
        module, ref = sources.get(op.get_friendly_name(), (None, None))
        shape = list(w.shape)
        if op.get_type_name() == "GroupConvolution" and len(shape) > 2:  # [G, O/G, I/G, k...] -> [O, I/G, k...]
            shape = [shape[0] * shape[1], *shape[2:]]
        w, wq = w.reshape(-1), wq.reshape(-1)
        rows.append({"node": op.get_friendly_name(), "module": module, "op": op.get_type_name(),
                     "weight_sqnr_db": round(db_from_sums(float(np.sum(w ** 2)), float(np.sum((wq - w) ** 2))), 2),
                     "shape": shape, **({"source_ref": ref} if ref else {})})
    return sorted(rows, key=lambda r: r["weight_sqnr_db"])


#: the torch frontend names an op '<fx node>/aten.<op>.<overload>/<OpenVINO type>', the fx node being
#: '<op>' or '<op>_<k>' (the k-th of that op in the program OpenVINO decomposed, in graph order)
_TORCH_NAME = re.compile(r"^(?P<node>\w+)/aten\.(?P<op>\w+)\.\w+/")
_TORCH_KINDS = {"convolution": "conv", "linear": "linear", "_native_batch_norm_legit_no_training": "bn_input"}
_PARAM_NAME = re.compile(r"^(?P<module>[\w.]+)\.weight$")


def ir_source(op: Any) -> tuple[str | None, dict[str, Any] | None]:
    """(source module, reference) of a weighted op of an fp32 IR, from what the IR keeps: its weight
    constant's tensor names ('features.4.weight', an ONNX initializer: the module itself), the
    torch frontend's op name ('convolution_2/aten.convolution.default/Convolution': the third
    convolution of the program), or, for a convolution whose name OpenVINO replaced when it folded
    a batch norm into it, the name of the batch norm's Add that follows. An ONNX source's ops are
    named after its nodes (``onnx_nodes``)."""
    for name in op.input_value(1).get_names():
        m = _PARAM_NAME.match(name)  # the torch frontend's are 'features_4_weight:0': no module
        if m:
            return m["module"], None
    names = [op.get_friendly_name()]
    names += [c.get_node().get_friendly_name() for c in op.output(0).get_target_inputs()
              if c.get_node().get_type_name() == "Add"]
    for i, name in enumerate(names):
        m = _TORCH_NAME.match(name)
        kind = _TORCH_KINDS.get(m["op"]) if m else None
        rest = m["node"][len(m["op"]):] if m and m["node"].startswith(m["op"]) else None
        # the op's own name is a convolution or linear layer; an Add after it, the batch norm folded into it
        if kind and rest is not None and (rest == "" or (rest[:1] == "_" and rest[1:].isdigit())) \
                and (kind == "bn_input") == (i > 0):
            return None, {"kind": kind, "index": int(rest[1:]) if rest else 0}
    candidates = [n.removesuffix("/WithoutBiases") for n in names]
    return None, {"onnx_nodes": list(dict.fromkeys(candidates))}


def ov_message(e: BaseException, limit: int = 400) -> str:
    """The lines of an OpenVINO/NNCF exception worth showing: its summary, not the C++ assertion
    ("Check 'false' failed at src/...") or the API wrapper line that open it."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Check '", "FrontEnd API failed with", "Exception from src/", "Summary:"))]
    summary = [ln.lstrip("- ").strip() for ln in useful if ln.startswith("--")]
    text = "; ".join(summary or useful[:2]) or first_line(e)
    return text[:limit]
