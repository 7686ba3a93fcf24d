"""ONNX Runtime quantisation recipes, the tensor-level report and per-layer error attribution.

Everything here uses ``onnxruntime.quantization``: ``quant_pre_process``, the calibrators (ranges
computed once and cached, so re-quantising with layers excluded is cheap), ``quantize_static``
(QDQ, per-channel int8 weights, uint8 activations), ``quantize_dynamic`` (per-channel, for
MatMul-heavy models), the fp16 converter, and ``qdq_loss_debug`` to match float and quantised
tensors.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnsupportedError

WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
CALIBRATIONS = ("minmax", "percentile", "entropy")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _Reader:
    """CalibrationDataReader over samples, batched along a dynamic batch axis when there is one."""

    def __init__(self, names: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]], batch: int) -> None:
        self.names = list(names)
        self.batches = []
        for i in range(0, len(samples), batch):
            chunk = samples[i:i + batch]
            self.batches.append({n: np.concatenate([s[k] for s in chunk]) for k, n in enumerate(self.names)})
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
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    cache = work / f"calibration-{method}.json"
    if cache.is_file():
        return cache
    cm, extra = _method(method)
    with quiet():
        cal = create_calibrator(pre, [], augmented_model_path=str(work / f"augmented-{method}.onnx"),
                                calibrate_method=cm, extra_options=extra)
        # one batch per call: a calibrator keeps every intermediate tensor of a call in memory before
        # folding it into its histograms (all 128 samples at once took ~10 GB for Lite0 with entropy)
        for b in _Reader(names, samples, batch).batches:
            one = _Reader(names, [], batch)
            one.batches = [b]
            cal.collect_data(one)
        save_tensors_data(cal.compute_data(), cache)
    del cal, CalibrationMethod
    return cache


def _method(method: str) -> tuple[Any, dict[str, Any]]:
    from onnxruntime.quantization import CalibrationMethod

    if method == "minmax":
        return CalibrationMethod.MinMax, {}
    if method == "percentile":
        return CalibrationMethod.Percentile, {"percentile": 99.999, "num_bins": 2048}
    if method == "entropy":  # a real search needs many more bins than quantised levels (FACTS.md)
        return CalibrationMethod.Entropy, {"num_bins": 2048, "num_quantized_bins": 128}
    raise UnsupportedError(f"unknown calibration method {method!r}", hint=f"choose {', '.join(CALIBRATIONS)}")


def static_qdq(pre: Path, out: Path, cache: Path, method: str, exclude: Sequence[str] = ()) -> Path:
    """QDQ: per-channel int8 weights, uint8 activations (the fast recipe for CNNs on x86 and ARM)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cm, _ = _method(method)
    with quiet():
        quantize_static(str(pre), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm,
                        calibration_cache_path=str(cache), nodes_to_exclude=list(exclude))
    return out


def dynamic_int8(pre: Path, out: Path, exclude: Sequence[str] = ()) -> Path:
    """Dynamic int8, per-channel weights: for MatMul-heavy models (transformers)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet():
        quantize_dynamic(str(pre), str(out), per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_exclude=list(exclude), op_types_to_quantize=["MatMul", "Gemm", "Attention"])
    return out


def fp16(fp32: Path, out: Path) -> Path:
    """Weights and compute in float16; inputs and outputs stay float32 so callers need no change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with quiet():
        model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.save(model, str(out))
    return out


def choose_method(model: Any) -> str:
    """static for convolutional models, dynamic when MatMul/Gemm carry most of the weights."""
    from onnx import numpy_helper

    sizes = {i.name: int(np.prod(i.dims)) for i in model.graph.initializer}
    by_op: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in WEIGHTED_OPS:
            by_op[n.op_type] = by_op.get(n.op_type, 0) + sum(sizes.get(x, 0) for x in n.input[1:2])
    conv = by_op.get("Conv", 0) + by_op.get("ConvTranspose", 0)
    dense = by_op.get("MatMul", 0) + by_op.get("Gemm", 0)
    del numpy_helper
    return "static" if conv >= dense else "dynamic"


def weighted_nodes(model: Any) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in inits]


# ---- the tensor-level report and per-layer attribution ----------------------------------------

def _sqnr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    noise = float(np.linalg.norm(a - b))
    return float("inf") if noise == 0 else 20 * math.log10(max(float(np.linalg.norm(a)), 1e-30) / noise)


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
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) >= 3:
            s, z = inits.get(n.input[1]), inits.get(n.input[2])
            if s is not None and z is not None:
                key = n.input[0] if n.op_type == "QuantizeLinear" else n.output[0]
                qparams.setdefault(key, (numpy_helper.to_array(s), numpy_helper.to_array(z)))

    def qp(name: str) -> dict[str, Any]:
        for key in (name, name + "_DequantizeLinear_Output", name + "_QuantizeLinear_Input"):
            if key in qparams:
                s, z = qparams[key]
                return {"scale": float(s) if s.size == 1 else [float(s.min()), float(np.median(s)), float(s.max())],
                        "zero_point": int(z) if z.size == 1 else int(np.median(z)), "per_channel": bool(s.size > 1)}
        return {}

    with quiet():
        wmatch = dbg.create_weight_matching(str(fp32), str(qdq))
    weights = []
    for name, m in wmatch.items():
        f, d = m["float"], m["dequantized"]
        weights.append({"tensor": name, "shape": list(f.shape), "mse": float(np.mean((f - d) ** 2)),
                        "sqnr_db": _sqnr(f, d), **qp(name)})

    with quiet():
        dbg.modify_model_output_intermediate_tensors(str(fp32), str(work / "float-aug.onnx"))
        dbg.modify_model_output_intermediate_tensors(str(qdq), str(work / "qdq-aug.onnx"))
        fa = dbg.collect_activations(str(work / "float-aug.onnx"), _Reader(names, samples, batch))
        qa = dbg.collect_activations(str(work / "qdq-aug.onnx"), _Reader(names, samples, batch))
        match = dbg.create_activation_matching(qa, fa)
    acts = {}
    for name, m in match.items():
        pre, post, flt = m["pre_qdq"], m["post_qdq"], m.get("float")
        pre_c, post_c = np.concatenate([p.ravel() for p in pre]), np.concatenate([p.ravel() for p in post])
        rec = {"tensor": name, "mse": float(np.mean((pre_c - post_c) ** 2)), "qdq_sqnr_db": _sqnr(pre_c, post_c), **qp(name)}
        if flt:
            rec["vs_float_sqnr_db"] = _sqnr(np.concatenate([x.ravel() for x in flt]), post_c)
        acts[name] = rec
    return {"weights": weights, "activations": list(acts.values()), "_acts": acts}


def attribute(fp32_model: Any, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Weighted layers ranked by the error they inject: the fall in SQNR (vs the float model) from
    a layer's input to its output, with its weight and output-quantisation SQNR beside it."""
    from ..targets.onnx import module_path

    acts = report["_acts"]
    wsqnr = {w["tensor"]: w["sqnr_db"] for w in report["weights"]}
    rows = []
    for n in weighted_nodes(fp32_model):
        a_in, a_out = acts.get(n.input[0], {}), acts.get(n.output[0], {})
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
