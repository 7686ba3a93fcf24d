"""ONNX Runtime quantisation recipes, the tensor-level report and per-layer error attribution.

Everything here uses ``onnxruntime.quantization``: ``quant_pre_process``, the calibrators (ranges
computed once and cached, so re-quantising with layers excluded is cheap), ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations), ``quantize_dynamic`` (per-channel, for
MatMul-heavy models), the fp16 converter, and ``qdq_loss_debug`` to match float and quantised
tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._util import join_samples
from .._util import quiet as _quiet
from ..errors import UnsupportedError
from ..fidelity import db_from_sums, sqnr_db
from ..formats.onnx import module_path, ort_session, unique_initializer_names
from ..formats.onnx import node_attribute as _attr
from .ort_fallback import (  # noqa: F401 - culprit, from_library: quant reads them here
    DYNAMIC_OPS,
    WEIGHTED_OPS,
    Fallback,
    culprit,
    from_library,
    input_users,
)

_FUSED_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}
CALIBRATIONS = ("minmax", "percentile", "entropy")


def quiet() -> Any:
    """ONNX Runtime's quantisation tools log and warn at every step: only errors reach the user."""
    return _quiet(stdout=False)


class _Reader:
    """CalibrationDataReader over samples, batched along a dynamic batch axis when there is one."""

    def __init__(self, names: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]], batch: int) -> None:
        self.names = list(names)
        self.batches = []
        for i in range(0, len(samples), batch):
            chunk = samples[i:i + batch]
            self.batches.append({n: join_samples(s[k] for s in chunk) for k, n in enumerate(self.names)})
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self) -> None:
        self.i = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def preprocess(fp32: Path, out: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet():
            quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantise the model as it is
        import shutil

        shutil.copy(fp32, out)
    return out


def calibrate(pre: Path, work: Path, names: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]],
              method: str, batch: int) -> Path:
    """Compute activation ranges once; return the cache file quantize_static reads."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    cache = work / f"calibration-{method}.json"
    if cache.is_file():
        return cache
    cm, extra = _method(method)
    with _quiet():  # ORT logs, warns and prints a line per histogram update
        cal = create_calibrator(pre, [], augmented_model_path=str(work / f"augmented-{method}.onnx"),
                                calibrate_method=cm, extra_options=extra)
        step = calibration_step(samples, method, batch)
        for i in range(0, len(samples), step):
            cal.collect_data(_Reader(names, samples[i:i + step], step))
        save_tensors_data(cal.compute_data(), cache)
    return cache


#: input bytes per sample up to which a calibrator call takes several samples (Lite0: 0.6 MB)
CALIB_STEP_BYTES = 4 << 20


def calibration_step(samples: Sequence[tuple[np.ndarray, ...]], method: str, batch: int) -> int:
    """Samples per calibrator call. A calibrator keeps every intermediate tensor of a call (several
    copies) before folding it into its ranges or histograms: Lite0 holds ~100 MB of activations
    per sample, a text detector at 736 x 992 over 1 GB, so a sample whose inputs exceed
    :data:`CALIB_STEP_BYTES` goes alone (four of them ran out of a 12 GB address space)."""
    cap = 4 if method == "minmax" else 2
    size = max((sum(a.nbytes for a in s) for s in samples[:8]), default=0)
    return max(1, min(batch, cap, CALIB_STEP_BYTES // size if size else cap))


def _method(method: str) -> tuple[Any, dict[str, Any]]:
    from onnxruntime.quantization import CalibrationMethod

    if method == "minmax":
        return CalibrationMethod.MinMax, {}
    if method == "percentile":
        return CalibrationMethod.Percentile, {"percentile": 99.999, "num_bins": 2048}
    if method == "entropy":  # a real search needs many more bins than quantised levels
        return CalibrationMethod.Entropy, {"num_bins": 2048, "num_quantized_bins": 128}
    raise UnsupportedError(f"unknown calibration method {method!r}", hint=f"choose {', '.join(CALIBRATIONS)}")


def static_qdq(pre: Path, out: Path, cache: Path, method: str, exclude: Sequence[str] = (),
               fallback: Fallback | None = None) -> Path:
    """QDQ: per-channel int8 weights, uint8 activations (the fast recipe for CNNs on x86 and ARM).
    When ONNX Runtime's quantiser fails on the model, ``fallback`` (a fresh one when not given)
    takes the next fallback and tries again, and keeps what it did for the next calls."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    fb = fallback if fallback is not None else Fallback()
    cm, _ = _method(method)

    def build(path: Path) -> None:
        with quiet():
            quantize_static(str(path), str(out), None, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm,
                            calibration_cache_path=str(cache), nodes_to_exclude=[*exclude, *fb.exclude],
                            **fb.ort_kwargs(path, static=True))

    fb.run("static quantisation (quantize_static)", pre, build, static=True)
    return out


def dynamic_int8(pre: Path, out: Path, exclude: Sequence[str] = (), fallback: Fallback | None = None) -> Path:
    """Dynamic int8, per-channel weights: for MatMul-heavy models (transformers). ONNX Runtime
    failing takes ``fallback``'s ladder as :func:`static_qdq` does."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fb = fallback if fallback is not None else Fallback()

    def build(path: Path) -> None:
        kw = {"op_types_to_quantize": list(DYNAMIC_OPS), **fb.ort_kwargs(path, static=False)}
        with quiet():
            quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, nodes_to_exclude=[*exclude, *fb.exclude], **kw)

    fb.run("dynamic quantisation (quantize_dynamic)", pre, build, static=False)
    return out


def fp16(fp32: Path, out: Path) -> Path:
    """Weights and compute in float16; inputs and outputs stay float32 so callers need no change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32))
    unique_initializer_names(model)  # If branches holding weights of one name: the converter asserts on a repeat
    with quiet():
        model = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(model, str(out))
    return out


def choose_method(model: Any) -> str:
    """static for convolutional models, dynamic when MatMul/Gemm carry most of the weights."""
    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    by_op: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in WEIGHTED_OPS:
            by_op[n.op_type] = by_op.get(n.op_type, 0) + sum(sizes.get(x, 0) for x in n.input[1:2])
        elif n.op_type == "Gather" and n.input and n.input[0] in sizes:  # an embedding table
            by_op["Gather"] = by_op.get("Gather", 0) + sizes[n.input[0]]
    conv = by_op.get("Conv", 0) + by_op.get("ConvTranspose", 0)
    dense = by_op.get("MatMul", 0) + by_op.get("Gemm", 0) + by_op.get("Gather", 0)
    return "static" if conv >= dense else "dynamic"


def weighted_nodes(model: Any) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]


# ---- the tensor-level report and per-layer attribution ----------------------------------------

def tensor_report(fp32: Path, qdq: Path, work: Path, names: Sequence[str],
                  samples: Sequence[tuple[np.ndarray, ...]], batch: int) -> dict[str, Any]:
    """Per weight tensor and per activation: scale / zero point, MSE and SQNR; plus each weighted
    node's injected error (how much SQNR its output loses against its input), for attribution."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import qdq_loss_debug as dbg

    qmodel = onnx.load(str(qdq))
    inits = {i.name: i for i in qmodel.graph.initializer}
    qparams: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n in qmodel.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) >= 2:
            s = inits.get(n.input[1])
            z = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None  # no zero point: 0
            if s is not None and (z is not None or len(n.input) < 3 or not n.input[2]):
                key = n.input[0] if n.op_type == "QuantizeLinear" else n.output[0]
                qparams.setdefault(key, (numpy_helper.to_array(s), numpy_helper.to_array(z) if z is not None else np.zeros(())))

    def qp(name: str) -> dict[str, Any]:
        for key in (name, name + "_DequantizeLinear_Output", name + "_QuantizeLinear_Input"):
            if key in qparams:
                return qparams_record(*qparams[key])
        return {}

    # the bias that bias correction gives a bias-less Conv exists only in the int8 model: ORT logs
    # an error for it ("weight tensor ... not found") and matches the rest, as wanted here
    with _quiet(stdout=False, level=logging.CRITICAL):
        wmatch = dbg.create_weight_matching(str(fp32), str(qdq))
    weights = []
    for name, m in wmatch.items():
        f, d = m["float"], m["dequantized"]
        weights.append({"tensor": name, "shape": list(f.shape), "mse": float(np.mean((f - d) ** 2)),
                        "sqnr_db": sqnr_db(f, d), **qp(name)})

    with quiet():
        dbg.modify_model_output_intermediate_tensors(str(fp32), str(work / "float-aug.onnx"))
        dbg.modify_model_output_intermediate_tensors(str(qdq), str(work / "qdq-aug.onnx"))
    # streamed a small batch at a time: every intermediate tensor of both models for every sample
    # at once held ~7 GB for Lite0 (32 samples); only running sums are kept
    sums: dict[str, dict[str, float]] = {}
    sessions = [_intermediate_session(work / "float-aug.onnx"), _intermediate_session(work / "qdq-aug.onnx")]
    for feeds in _Reader(names, samples, 1):
        fa, qa = (_intermediates(sess, feeds) for sess in sessions)
        with quiet():
            match = dbg.create_activation_matching(qa, fa)
        for name, m in match.items():
            pre, post, flt = m["pre_qdq"][0], m["post_qdq"][0], (m.get("float") or [None])[0]
            acc = sums.setdefault(name, {"n": 0, "pre2": 0.0, "dqdq2": 0.0, "float2": 0.0, "dflt2": 0.0, "has_float": 1})
            pre64, post64 = np.asarray(pre, np.float64), np.asarray(post, np.float64)
            acc["n"] += pre64.size
            acc["pre2"] += float(np.sum(pre64 ** 2))
            acc["dqdq2"] += float(np.sum((pre64 - post64) ** 2))
            if flt is None:
                acc["has_float"] = 0
            else:
                f64 = np.asarray(flt, np.float64)
                acc["float2"] += float(np.sum(f64 ** 2))
                acc["dflt2"] += float(np.sum((f64 - post64) ** 2))
    del sessions
    acts = {}
    for name, acc in sums.items():
        rec = {"tensor": name, "mse": acc["dqdq2"] / max(acc["n"], 1), "qdq_sqnr_db": db_from_sums(acc["pre2"], acc["dqdq2"]),
               **qp(name)}
        if acc["has_float"]:
            rec["vs_float_sqnr_db"] = db_from_sums(acc["float2"], acc["dflt2"])
        acts[name] = rec
    # by name: the intermediate outputs come from a set (qdq_loss_debug), in an order that varies between processes
    return {"weights": weights, "activations": sorted(acts.values(), key=lambda r: r["tensor"]), "_acts": acts}


def qparams_record(scale: Any, zero_point: Any) -> dict[str, Any]:
    """A quantisation parameter pair in the report, whatever its shape: a 0-d scale, a size-1 1-d
    one (per-channel over a single channel, e.g. a Conv with one output channel), or one per
    channel (summarised as min, median, max)."""
    s = np.asarray(scale, np.float64).reshape(-1)
    z = np.asarray(zero_point).reshape(-1)
    if not s.size:
        return {}
    return {"scale": float(s[0]) if s.size == 1 else [float(s.min()), float(np.median(s)), float(s.max())],
            "zero_point": (int(z[0]) if z.size == 1 else int(np.median(z))) if z.size else 0,
            "per_channel": bool(s.size > 1)}


def _intermediate_session(path: Path) -> Any:
    return ort_session(path, optimize=False)  # unoptimised, as qdq_loss_debug runs them


def _intermediates(sess: Any, feeds: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """One batch through an augmented model: {tensor: [value]}, as qdq_loss_debug.collect_activations."""
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX

    out = {}
    for info, value in zip(sess.get_outputs(), sess.run(None, feeds)):
        if info.name.endswith(_TENSOR_SAVE_POSTFIX):
            out[info.name[: -len(_TENSOR_SAVE_POSTFIX)]] = [value]
    return out


def attribute(fp32_model: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Weighted layers ranked by the error they inject: the fall in SQNR (vs the float model) from
    a layer's input to its output, with its weight and output-quantisation SQNR beside it."""
    acts = report["_acts"]
    wsqnr = {w["tensor"]: w["sqnr_db"] for w in report["weights"]}
    consumers: dict[str, list[Any]] = {}
    for n in fp32_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def quantised(t: str) -> str:
        # a Conv followed by its activation (Relu, Clip...) is quantised after the activation
        while t not in acts and len(consumers.get(t, [])) == 1 and consumers[t][0].op_type in _FUSED_ACTIVATIONS:
            t = consumers[t][0].output[0]
        return t

    rows = []
    for n in weighted_nodes(fp32_model):
        a_in, a_out = acts.get(n.input[0], {}), acts.get(quantised(n.output[0]), {})
        s_in = a_in.get("vs_float_sqnr_db", float("inf"))
        s_out = a_out.get("vs_float_sqnr_db")
        if s_out is None:
            continue
        injected = (min(s_in, 80.0) - s_out) if math.isfinite(s_out) else 0.0
        rows.append({"node": n.name, "op": n.op_type, "module": module_path(n), "injected_db": injected,
                     "output_sqnr_db": s_out, "weight_sqnr_db": wsqnr.get(n.input[1]),
                     "output_qdq_sqnr_db": a_out.get("qdq_sqnr_db")})
    rows.sort(key=lambda r: -r["injected_db"])
    return rows


# ---- bias correction -----------------------------------------------------------------------------

def _correctable(node: Any, inits: dict[str, Any]) -> bool:
    if len(node.input) < 2 or node.input[1] not in inits:
        return False
    if node.op_type == "Conv":
        return _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and len(inits[node.input[1]].dims) in (3, 4, 5)
    if node.op_type == "Gemm":
        return (_attr(node, "transA", 0) == 0 and len(node.input) > 2 and node.input[2] in inits
                and len(inits[node.input[2]].dims) == 1)
    return False


def _with_outputs(pre: Path, tensors: Sequence[str], path: Path) -> Path:
    """A copy of the model at ``path`` that also outputs ``tensors`` (layer inputs to record)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(pre))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in have)
    onnx.save(model, str(path))
    return path


def input_means(pre: Path, work: Path, names: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]],
                batch: int) -> dict[str, np.ndarray]:
    """Mean over the calibration samples of every Conv/Gemm input tensor (each position kept)."""
    import onnx

    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    wanted = list(dict.fromkeys(n.input[0] for n in model.graph.node if _correctable(n, inits)))
    path = _with_outputs(pre, wanted, work / "input-means.onnx")
    s = ort_session(path)
    outs = [o.name for o in s.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    count = 0
    for feeds in _Reader(names, samples, min(batch, 4)):  # every conv input of a batch is held at once
        for name, v in zip(outs, s.run(None, feeds)):
            if name in wanted:
                sums[name] = sums.get(name, 0) + np.asarray(v, np.float64).sum(0)
        count += next(iter(feeds.values())).shape[0]
    path.unlink()
    return {k: v / count for k, v in sums.items()}


# ---- cross-layer equalisation ---------------------------------------------------------------------

def equalize(pre: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the float model with cross-layer equalisation (:mod:`edgeship.quant.equalize`)
    over every Conv -> [Relu] -> Conv pair whose tensors nothing else reads. Returns it and the
    record of what was equalised and what skipped, and why."""
    import onnx
    from onnx import numpy_helper

    from .equalize import SKIP_CLAMP, Pair, input_ranges, output_ranges, record, scale_input_channels, spread, sweep

    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}

    def owned(t: str) -> bool:  # an initializer read by this layer alone
        return t in inits and len(readers.get(t, ())) == 1

    def conv(n: Any) -> bool:
        return (n.op_type == "Conv" and len(n.input) > 1 and owned(n.input[1])
                and (len(n.input) < 3 or not n.input[2] or owned(n.input[2])))

    pairs: list[Pair] = []
    skipped: list[dict[str, Any]] = []
    nodes = {n.name: n for n in model.graph.node}
    for n in model.graph.node:
        if not conv(n) or n.output[0] in graph_outputs:
            continue
        t, activation = n.output[0], None
        after = readers.get(t, [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip") and after[0].output[0] not in graph_outputs:
            if after[0].op_type == "Clip":
                skipped.append({"first": n.name, "why": SKIP_CLAMP})
                continue
            activation, t = "Relu", after[0].output[0]
            after = readers.get(t, [])
        if len(after) != 1 or not conv(after[0]):
            why = ("its output is also read by " + ", ".join(sorted({a.op_type for a in after[1:]})) + " (e.g. a residual add)"
                   if len(after) > 1 and conv(after[0]) else
                   f"followed by {', '.join(sorted({a.op_type for a in after}))}, not one convolution" if after else "")
            if why:
                skipped.append({"first": n.name, "why": why})
            continue
        second = after[0]
        groups = int(_attr(second, "group", 1))
        if inits[second.input[1]].dims[1] * groups != inits[n.input[1]].dims[0]:
            continue
        pairs.append(Pair(first=n.name, second=second.name, groups=groups, activation=activation))
    weights = {k: numpy_helper.to_array(inits[k]).astype(np.float32).copy()
               for p in pairs for k in (*nodes[p.first].input[1:3], nodes[p.second].input[1]) if k}

    def ranges(p: Pair) -> tuple[np.ndarray, np.ndarray]:
        return output_ranges(weights[nodes[p.first].input[1]]), input_ranges(weights[nodes[p.second].input[1]], p.groups)

    def apply(p: Pair, s: np.ndarray) -> None:
        first, second = nodes[p.first], nodes[p.second]
        w1 = weights[first.input[1]]
        weights[first.input[1]] = (w1 / s.reshape(-1, *[1] * (w1.ndim - 1))).astype(np.float32)
        if len(first.input) > 2 and first.input[2]:
            weights[first.input[2]] = (weights[first.input[2]] / s).astype(np.float32)
        weights[second.input[1]] = scale_input_channels(weights[second.input[1]], s, p.groups)

    before = {p.first: spread(ranges(p)[0]) for p in pairs}
    sweep(pairs, ranges, apply)
    after_ = {p.first: spread(ranges(p)[0]) for p in pairs}
    for init in model.graph.initializer:
        if init.name in weights:
            init.CopyFrom(numpy_helper.from_array(weights[init.name], init.name))
    onnx.save(model, str(out))
    return out, record(pairs, skipped, before, after_)


def learned_rounding(pre: Path, out: Path, work: Path, names: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]],
                     batch: int, iters: int, rows: int = 2048, say: Any = None) -> tuple[Path, list[dict[str, Any]]]:
    """A copy of the float model whose Conv (2-d) and Gemm weights lie on their int8 grid, rounded
    the learned way (:func:`edgeship.quant.rounding.learn_rounding`) from each layer's inputs on the
    calibration samples (about ``rows`` random positions per layer). Returns it and per layer the
    output error with nearest and with learned rounding."""
    import onnx
    from onnx import numpy_helper

    from .rounding import conv_patches, dense_patches, learn_rounding

    say = say or (lambda _m: None)
    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    users = input_users(model)
    nodes = [n for n in model.graph.node if _correctable(n, inits) and users.get(n.input[1], 0) == 1
             and (n.op_type == "Gemm" or len(inits[n.input[1]].dims) == 4)]
    wanted = list(dict.fromkeys(n.input[0] for n in nodes))
    path = _with_outputs(pre, wanted, work / "rounding-inputs.onnx")
    sess = ort_session(path)
    outs = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    per_sample = max(1, -(-rows // max(1, len(samples))))
    patches: dict[str, list[np.ndarray]] = {n.name: [] for n in nodes}
    for feeds in _Reader(names, samples, min(batch, 4)):  # every layer input of a batch is held at once
        got = dict(zip(outs, sess.run(None, feeds)))
        for n in nodes:
            x = got[n.input[0]]
            if n.op_type == "Gemm":
                patches[n.name].append(dense_patches(x, per_sample * len(x), rng))
                continue
            w = inits[n.input[1]]
            pads = list(_attr(n, "pads", [0, 0, 0, 0]))
            patches[n.name].append(conv_patches(
                x, list(w.dims[2:]), list(_attr(n, "strides", [1, 1])), [(pads[0], pads[2]), (pads[1], pads[3])],
                list(_attr(n, "dilations", [1, 1])), int(_attr(n, "group", 1)), per_sample, rng))
    path.unlink()
    del sess, got
    stats = []
    for k, n in enumerate(nodes):
        init = inits[n.input[1]]
        w = numpy_helper.to_array(init)
        gemm_t = n.op_type == "Gemm" and not _attr(n, "transB", 0)  # B as [in, out]: learn on [out, in]
        say(f"learned rounding: layer {k + 1}/{len(nodes)} ({n.name})")
        snapped, st = learn_rounding(w.T if gemm_t else w, np.concatenate(patches.pop(n.name)), iters=iters)
        init.CopyFrom(numpy_helper.from_array((snapped.T if gemm_t else snapped).astype(w.dtype), init.name))
        stats.append({"node": n.name, **st})
    onnx.save(model, str(out))
    return out, stats


def float_weights(base: Path, pre: Path, nodes: Sequence[str], out: Path) -> Path:
    """A copy of ``base`` whose ``nodes`` have their original float weights back from ``pre`` (a layer
    kept in float keeps the weights it was trained with, not ones snapped to an int8 grid)."""
    import onnx

    if not nodes:
        return base
    model = onnx.load(str(base))
    orig = {i.name: i for i in onnx.load(str(pre)).graph.initializer}
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.name in nodes and len(n.input) > 1 and n.input[1] in inits and n.input[1] in orig:
            inits[n.input[1]].CopyFrom(orig[n.input[1]])
    onnx.save(model, str(out))
    return out


def bias_shifts(pre: Path, qdq: Path | None, means: dict[str, np.ndarray],
                dweights: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Empirical bias correction (Nagel et al., "Data-Free Quantization", 2019): the mean output
    error each layer's int8 weights add, E[conv(x, W_q - W)], exact for the calibration inputs'
    mean because convolution is linear. Subtracting it from the bias removes the systematic shift
    that per-channel int8 weights put into depthwise layers with folded batch norm."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as dbg

    from .bias import Conv, mean_output_error

    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    if dweights is None:  # W_int8 - W from the quantised model's own weights
        assert qdq is not None
        with quiet():
            wm = dbg.create_weight_matching(str(pre), str(qdq))
        dweights = {k: np.asarray(v["dequantized"], np.float64) - np.asarray(v["float"], np.float64) for k, v in wm.items()}
    shifts: dict[str, np.ndarray] = {}
    for n in model.graph.node:
        if not _correctable(n, inits) or n.input[1] not in dweights or n.input[0] not in means:
            continue
        dw = np.asarray(dweights[n.input[1]], np.float64)
        if n.op_type == "Gemm":  # Y = alpha * X @ B (B is [in, out] unless transB): the error of B as [out, in]
            shifts[n.name] = mean_output_error(means[n.input[0]], (dw if _attr(n, "transB", 0) else dw.T)
                                               * float(_attr(n, "alpha", 1.0)))
            continue
        k = dw.ndim - 2
        pads = list(_attr(n, "pads", [0] * (2 * k)))
        shifts[n.name] = mean_output_error(means[n.input[0]], dw, Conv(
            stride=list(_attr(n, "strides", [1] * k)), pads=[(pads[i], pads[i + k]) for i in range(k)],
            dilation=list(_attr(n, "dilations", [1] * k)), groups=int(_attr(n, "group", 1))))
    return shifts


def apply_bias_shifts(pre: Path, out: Path, shifts: dict[str, np.ndarray], exclude: Sequence[str] = ()) -> Path:
    """A copy of the float model whose biases absorb ``shifts`` (layers kept in float are left alone)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(pre))
    inits = {i.name: i for i in model.graph.initializer}
    users = input_users(model)
    for n in model.graph.node:
        shift = shifts.get(n.name)
        if shift is None or n.name in exclude:
            continue
        if len(n.input) > 2 and n.input[2] and n.input[2] in inits and users.get(n.input[2], 0) == 1:
            b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
            inits[n.input[2]].CopyFrom(numpy_helper.from_array((b - shift).astype(np.float32), n.input[2]))
        elif len(n.input) == 2 and n.op_type == "Conv":
            name = f"{n.name}_edgeship_bias_correction"
            model.graph.initializer.append(numpy_helper.from_array((-shift).astype(np.float32), name))
            n.input.append(name)
    onnx.save(model, str(out))
    return out


# ---- weight-only int8 ----------------------------------------------------------------------------

def _weight_axis(node: Any) -> int | None:
    """The output-channel axis of a weighted node's weight (per-channel scales run along it)."""
    if node.op_type in ("Conv", "ConvTranspose"):
        return 0 if node.op_type == "Conv" else 1
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        return 1
    return None


def weight_only_int8(fp32: Path, out: Path, exclude: Sequence[str] = (), min_size: int = 32,
                     dweights: dict[str, np.ndarray] | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """int8 weights, float compute: every Conv/Gemm/MatMul weight initializer (>= ``min_size``
    elements) becomes per-channel symmetric int8 + scale behind a DequantizeLinear. The file shrinks
    about 4x; ONNX Runtime folds the DequantizeLinear at load, so it computes (and runs) as fp32.
    ``dweights``, when given, receives each weight's rounding error (W_int8 - W) for bias correction."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    axes: dict[str, int | None] = {}
    for n in graph.node:
        if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits:
            ax = None if n.name in exclude else _weight_axis(n)
            # an initializer shared by nodes that disagree (or one kept float) stays float
            axes[n.input[1]] = ax if axes.get(n.input[1], ax) == ax else None
    stats: list[dict[str, Any]] = []
    new_nodes = []
    for name, ax in axes.items():
        init = inits[name]
        w = numpy_helper.to_array(init)
        if ax is None or w.dtype != np.float32 or w.ndim < 2 or w.size < min_size:
            continue
        red = tuple(i for i in range(w.ndim) if i != ax)
        scale = np.maximum(np.abs(w).max(axis=red), 1e-12) / 127.0
        shape = [1] * w.ndim
        shape[ax] = -1
        q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        deq = q.astype(np.float32) * scale.reshape(shape).astype(np.float32)
        if dweights is not None:
            dweights[name] = deq.astype(np.float64) - w.astype(np.float64)
        stats.append({"tensor": name, "shape": list(w.shape), "scale": [float(scale.min()), float(np.median(scale)),
                      float(scale.max())], "zero_point": 0, "per_channel": True,
                      "mse": float(np.mean((w - deq) ** 2)), "sqnr_db": sqnr_db(w, deq)})
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero_point")])
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero_point"],
                                          [name], name=f"{name}_DequantizeLinear", axis=ax))
    if not stats and not exclude:
        raise UnsupportedError("weight-only int8: no Conv/Gemm/MatMul weight initializer to quantise",
                               hint="the model's weights are not initializers of weighted ops; try --method dynamic")
    # the dequantised weights keep their names, so consumers are untouched; put them first (topological order)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise UnsupportedError("weight-only int8 needs ONNX opset 13 or newer (per-channel DequantizeLinear)",
                               hint="re-export with --opset 17")
    onnx.save(model, str(out))
    return out, stats
