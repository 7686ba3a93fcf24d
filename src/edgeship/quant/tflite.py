"""Bias correction for TFLite int8 (ai-edge-quantizer): this module reads the int8 weights and
mean inputs in TFLite's layouts; the maths is :func:`edgeship.quant.bias.mean_output_error`, the
same for every backend.

``bias_corrected(fp32, int8, feeds, signature)`` takes the fp32 model, a first int8 quantisation of
it, and the calibration feeds. For every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with a
float bias it computes the mean output error of the int8 weights, ``E[conv(x, W_int8 - W)]``, from
the weights actually written in the int8 model (matched by tensor name) and the mean input the fp32
interpreter sees on the feeds (convolution being linear, the mean input gives the exact mean error,
padding included), and returns the fp32 model with that error subtracted from each bias. Quantising
that model again with the same ranges gives int8 weights identical to the first ones and
corrected biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED = 3, 4, 9


def _opcode(model: Any, op: Any) -> int:
    c = model.operatorCodes[op.opcodeIndex]
    return max(int(c.builtinCode or 0), int(c.deprecatedBuiltinCode or 0))


def _name(t: Any) -> str:
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _int8_layers(fm: Any, qm: Any) -> list[tuple[Any, int, Any, np.ndarray, np.ndarray]]:
    """(op, opcode, weight tensor, float weights, int8 weights dequantised - float weights) for
    every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose weights the int8 model stores as int8
    (matched by tensor name)."""
    sg, qsg = fm.subgraphs[0], qm.subgraphs[0]
    qtensors = {_name(t): t for t in qsg.tensors}
    out = []
    for op in sg.operators:
        code = _opcode(fm, op)
        if code not in (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) or len(op.inputs) < 2:
            continue
        w_t = sg.tensors[op.inputs[1]]
        q_t = qtensors.get(_name(w_t))
        w_buf = fm.buffers[w_t.buffer].data
        if q_t is None or q_t.quantization is None or q_t.quantization.scale is None or w_buf is None or w_t.type != 0:
            continue
        q_data = qm.buffers[q_t.buffer].data
        if q_data is None or q_t.type != 9:  # 9: INT8
            continue
        w = np.frombuffer(bytes(w_buf), np.float32).reshape(w_t.shape).astype(np.float64)
        scale = np.asarray(q_t.quantization.scale, np.float64)
        zp = np.asarray(q_t.quantization.zeroPoint if q_t.quantization.zeroPoint is not None else [0], np.float64)
        shape = [1] * w.ndim
        if scale.size > 1:
            shape[int(q_t.quantization.quantizedDimension or 0)] = -1
        wq = (np.frombuffer(bytes(q_data), np.int8).reshape(w_t.shape).astype(np.float64) - zp.reshape(shape)) * scale.reshape(shape)
        out.append((op, code, w_t, w, wq - w))
    return out


_OP_NAMES = {CONV_2D: "CONV_2D", DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D", FULLY_CONNECTED: "FULLY_CONNECTED"}


def op_scopes(fp32: bytes, weights: Sequence[str]) -> list[str]:
    """The first output tensor's name of each conv / depthwise / fully-connected op whose weight
    tensor is named in ``weights``: the scope ai-edge-quantizer matches its recipe regexes on."""
    if not weights:
        return []
    from ai_edge_litert.tools import flatbuffer_utils as fb

    fm = fb.read_model_from_bytearray(bytearray(fp32))
    sg = fm.subgraphs[0]
    wanted = set(weights)
    return [_name(sg.tensors[op.outputs[0]]) for op in sg.operators
            if _opcode(fm, op) in _OP_NAMES and len(op.inputs) > 1 and op.outputs
            and _name(sg.tensors[op.inputs[1]]) in wanted]


def weight_report(fp32: bytes, int8: bytes) -> list[dict[str, Any]]:
    """Per-layer attribution of a TFLite int8 model: for every conv / depthwise / fully-connected
    layer, the SQNR of its int8 weights against the float ones (dB), worst first, with its source
    module when litert-torch named the tensor after it."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from ..fidelity import db_from_sums
    from ..formats.tflite import module_from_tensor_name

    fm = fb.read_model_from_bytearray(bytearray(fp32))
    qm = fb.read_model_from_bytearray(bytearray(int8))
    rows = [{"node": _name(w_t), "module": module_from_tensor_name(_name(w_t)), "op": _OP_NAMES[code],
             "weight_sqnr_db": round(db_from_sums(float(np.sum(w ** 2)), float(np.sum(dw ** 2))), 2)}
            for _op, code, w_t, w, dw in _int8_layers(fm, qm)]
    return sorted(rows, key=lambda r: r["weight_sqnr_db"])


def bias_corrected(fp32: bytes, int8: bytes, feeds: Sequence[dict[str, np.ndarray]], signature: str) -> tuple[bytes, int]:
    """(the fp32 model with corrected biases, how many layers were corrected)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from .bias import Conv, mean_output_error, same_pads

    fm = fb.read_model_from_bytearray(bytearray(fp32))
    qm = fb.read_model_from_bytearray(bytearray(int8))
    sg = fm.subgraphs[0]
    users: dict[int, int] = {}
    for t in sg.tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    layers = []
    for op, code, _w_t, _w, dw in _int8_layers(fm, qm):
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        b_t = sg.tensors[op.inputs[2]]
        if users.get(b_t.buffer, 0) != 1 or fm.buffers[b_t.buffer].data is None or b_t.type != 0:  # 0: FLOAT32
            continue
        layers.append((op, code, dw, b_t))
    if not layers:
        return fp32, 0

    interp = Interpreter(model_content=bytes(fp32), experimental_preserve_all_tensors=True, num_threads=1)
    runner = interp.get_signature_runner(signature)
    sums: dict[int, Any] = {}
    count: dict[int, int] = {}
    wanted = {op.inputs[0] for op, *_ in layers}
    for feed in feeds:
        runner(**feed)
        for idx in wanted:
            x = np.asarray(interp.get_tensor(idx), np.float64)
            flat = x if x.ndim == 4 else x.reshape(-1, x.shape[-1])
            sums[idx] = sums.get(idx, 0) + flat.sum(0)
            count[idx] = count.get(idx, 0) + flat.shape[0]

    fixed = 0
    for op, code, dw, b_t in layers:
        idx = op.inputs[0]
        mean = sums[idx] / count[idx]
        if code == FULLY_CONNECTED:  # weights [out, in]
            shift = mean_output_error(mean, dw.reshape(dw.shape[0], -1))
        else:
            o = op.builtinOptions
            x = np.moveaxis(mean, -1, 0)  # HWC -> CHW
            # CONV_2D weights [O, H, W, I]; DEPTHWISE_CONV_2D [1, H, W, O], one input channel per group
            wt = dw.transpose(0, 3, 1, 2) if code == CONV_2D else dw.transpose(3, 0, 1, 2)
            groups = x.shape[0] // wt.shape[1]
            stride = (int(o.strideH or 1), int(o.strideW or 1))
            dilation = (int(getattr(o, "dilationHFactor", 1) or 1), int(getattr(o, "dilationWFactor", 1) or 1))
            pads = [(0, 0), (0, 0)]
            if int(o.padding) == 0:  # SAME
                pads = [same_pads(x.shape[1 + i], wt.shape[2 + i], stride[i], dilation[i]) for i in range(2)]
            shift = mean_output_error(x, wt, Conv(stride=stride, pads=pads, dilation=dilation, groups=groups))
        buf = fm.buffers[b_t.buffer]
        b = np.frombuffer(bytes(buf.data), np.float32).astype(np.float64)
        if b.shape != shift.shape:
            continue
        buf.data = np.frombuffer((b - shift).astype(np.float32).tobytes(), np.uint8)
        fixed += 1
    del interp, runner
    return bytes(fb.convert_object_to_bytearray(fm)), fixed
