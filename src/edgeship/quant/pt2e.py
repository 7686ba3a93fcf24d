"""Bias correction for PyTorch 2 Export (PT2E) quantisation on a ``prepare_pt2e`` module: this
module reads the weights and mean inputs; the maths is :func:`edgeship.quant.bias.mean_output_error`,
the same for every backend.

``calibrate_and_correct(prepared, samples)`` runs the calibration samples through the prepared
module (the observers see them as usual) while recording the mean input of every conv/linear, then
subtracts from each bias the mean output error its int8 weights will add: ``E[conv(x, W_q - W)]``
with ``W_q`` fake-quantised from the weight observer's own scale and zero point, so the correction
matches what ``convert_pt2e`` will build. Batch norm is already folded into the conv by
``prepare_pt2e``, so the folded weights are the ones corrected for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _ops() -> tuple[dict[Any, Any], set[Any]]:
    import torch
    import torch.nn.functional as F

    aten = torch.ops.aten
    conv = {aten.conv1d.default: F.conv1d, aten.conv2d.default: F.conv2d, aten.conv3d.default: F.conv3d}
    return conv, {aten.linear.default}


def calibrate_and_correct(prepared: Any, samples: Sequence[tuple[np.ndarray, ...]]) -> int:
    """Calibrate ``prepared`` on ``samples`` and correct its conv/linear biases; return how many."""
    import torch

    from .bias import Conv, mean_output_error

    conv, linear = _ops()
    sums: dict[str, list[Any]] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            if n.op == "call_function" and (n.target in conv or n.target in linear):
                x = self.env[n.args[0]] if isinstance(n.args[0], torch.fx.Node) else None
                if isinstance(x, torch.Tensor):
                    x = x.detach().double()
                    flat = x if n.target in conv else x.reshape(-1, x.shape[-1])
                    acc = sums.setdefault(n.name, [0, 0])
                    acc[0] = acc[0] + flat.sum(0)
                    acc[1] += flat.shape[0]
            return super().run_node(n)

    with torch.no_grad():
        for s in samples:
            _Recorder(prepared).run(*[torch.from_numpy(np.ascontiguousarray(a)) for a in s])
        fixed = 0
        for n in prepared.graph.nodes:
            if n.op != "call_function" or n.name not in sums or len(n.args) < 3:
                continue
            w_obs, bias = n.args[1], n.args[2]
            if not (isinstance(w_obs, torch.fx.Node) and w_obs.op == "call_module" and w_obs.args
                    and isinstance(w_obs.args[0], torch.fx.Node) and w_obs.args[0].op == "get_attr"
                    and isinstance(bias, torch.fx.Node) and bias.op == "get_attr"):
                continue  # weight not observed (kept float) or no bias to correct
            obs = prepared.get_submodule(w_obs.target)
            if not hasattr(obs, "calculate_qparams"):
                continue
            w = _attr(prepared, w_obs.args[0].target).detach()
            dw = (_fake_quantised(w, obs) - w).double()
            total, count = sums[n.name]
            mean = (total / count).numpy()
            if n.target in conv:
                stride, padding, dilation, groups = (list(n.args[3:7]) + [None] * 4)[:4]
                if isinstance(padding, str):
                    continue  # 'same'/'valid' strings: not worth a special case here
                k = dw.ndim - 2
                shift = mean_output_error(mean, dw.numpy(), Conv(
                    stride=_per_axis(stride, 1, k), pads=[(p, p) for p in _per_axis(padding, 0, k)],
                    dilation=_per_axis(dilation, 1, k), groups=int(groups or 1)))
            else:
                shift = mean_output_error(mean, dw.numpy())
            shift = torch.from_numpy(shift)
            # a new tensor, never in place: the prepared module shares its parameters with the
            # source model, which later targets and the verification still use
            owner_path, _, leaf = bias.target.rpartition(".")
            owner = _attr(prepared, owner_path) if owner_path else prepared
            b = getattr(owner, leaf)
            new = (b.detach() - shift.to(b.dtype)).clone()
            if isinstance(b, torch.nn.Parameter):
                setattr(owner, leaf, torch.nn.Parameter(new, requires_grad=False))
            else:
                setattr(owner, leaf, new)
            fixed += 1
    return fixed


def _per_axis(value: Any, default: int, k: int) -> list[int]:
    """An aten conv argument (None, an int, or one int per spatial axis) as one int per axis."""
    if value is None:
        return [default] * k
    if isinstance(value, int):
        return [value] * k
    values = [int(v) for v in value]
    return values * k if len(values) == 1 else values


def _attr(module: Any, path: str) -> Any:
    for p in path.split("."):
        module = getattr(module, p)
    return module


def weight_report(prepared: Any) -> list[dict[str, Any]]:
    """Per-layer attribution of a calibrated ``prepare_pt2e`` module: for every conv/linear whose
    weight is observed, the SQNR of its int8 weights (fake-quantised with the observer's own
    scale and zero point, as ``convert_pt2e`` will store them) against the float ones, worst
    first, with the source module from the node's module stack."""
    import torch

    from ..fidelity import db_from_sums

    conv, linear = _ops()
    rows = []
    with torch.no_grad():
        for n in prepared.graph.nodes:
            if n.op != "call_function" or not (n.target in conv or n.target in linear) or len(n.args) < 2:
                continue
            w_obs = n.args[1]
            if not (isinstance(w_obs, torch.fx.Node) and w_obs.op == "call_module" and w_obs.args
                    and isinstance(w_obs.args[0], torch.fx.Node) and w_obs.args[0].op == "get_attr"):
                continue
            obs = prepared.get_submodule(w_obs.target)
            if not hasattr(obs, "calculate_qparams"):
                continue
            w = _attr(prepared, w_obs.args[0].target).detach()
            wq = _fake_quantised(w, obs)
            stack = n.meta.get("nn_module_stack") or {}
            module = next(reversed(list(stack.values())))[0] if stack else None
            rows.append({"node": n.name, "module": module, "op": "conv" if n.target in conv else "linear",
                         "weight_sqnr_db": round(db_from_sums(float((w.double() ** 2).sum()),
                                                              float(((wq - w).double() ** 2).sum())), 2)})
    return sorted(rows, key=lambda r: r["weight_sqnr_db"])


def _fake_quantised(w: Any, obs: Any) -> Any:
    import torch

    scale, zp = obs.calculate_qparams()
    if scale.numel() > 1:
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zp.int(), obs.ch_axis, obs.quant_min, obs.quant_max)
    return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zp), obs.quant_min, obs.quant_max)


#: the public names of the two graph helpers, for other parts (the targets' per-layer naming)
weighted_ops = _ops
graph_attr = _attr
