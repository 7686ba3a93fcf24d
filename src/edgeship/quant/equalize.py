"""Cross-layer equalisation (CLE), the maths once for every int8 backend.

Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction" (ICCV 2019):
for two consecutive layers ``y = W2 · f(W1 · x + b1)`` with ``f`` positively homogeneous
(ReLU, or nothing), scaling channel ``i`` of layer 1's output by ``1/s_i`` and layer 2's input
channel ``i`` by ``s_i`` leaves the float model unchanged. With ``s_i = sqrt(r1_i / r2_i)``
(``r1_i``: the range of layer 1's output channel ``i``, ``r2_i``: of layer 2's input channel ``i``)
both become ``sqrt(r1_i · r2_i)``: depthwise-separable networks, whose per-channel ranges differ by
orders of magnitude, lose less to int8 (per-tensor activations most of all).

ReLU6 is not homogeneous: ``min(max(y, 0), 6)`` clamps at a fixed 6 whatever the scale, so a pair
through it is skipped (Nagel et al. replace ReLU6 by ReLU first, which changes the model: not done
here). Bounding each channel's scale by its calibration peak keeps the float model exact only on
inputs like the calibration data: on EfficientNet-Lite0 it moved the logits by up to 0.09 on the
evaluation photos and cost int8 1.6 points of top-1 agreement, so it is not offered. A residual
add after layer 1 (its output also read elsewhere) breaks the pair too. The record says which pairs
were equalised and which were skipped, and why.

Each backend finds its pairs its own way (:func:`edgeship.quant.onnxruntime_recipes.equalize` on
an ONNX graph, :func:`equalize_torch_module` on a torch model with its batch norms) and calls
:func:`sweep` here. Equalisation needs no data: the float model is unchanged (to rounding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import cache

__all__ = ["Pair", "output_ranges", "input_ranges", "pair_scales", "scale_input_channels", "sweep", "spread",
           "record", "equalize_torch_module", "equalized_source", "plan", "note", "choice", "OFF", "SKIP_CLAMP"]

SKIP_CLAMP = "a clamp (ReLU6 / Clip) follows: scaling would change the model"
SWEEPS = 4  # a layer sits in two pairs (as the second, then the first): a few sweeps settle both
S_MIN, S_MAX = 1e-3, 1e3


@dataclasses.dataclass
class Pair:
    """Two consecutive layers: ``first`` (its output channels) and ``second`` (its input channels,
    ``groups`` its groups), by name, through ``activation`` (None, or ReLU); ``scale`` the total
    per-channel scale the sweeps applied."""

    first: str
    second: str
    groups: int = 1
    activation: str | None = None
    scale: np.ndarray | None = None


def output_ranges(w: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """Per output channel (axis 0) of a weight, ``max |w|``, times ``gain`` (a batch norm's
    ``gamma / sigma``) when the layer's output is scaled after it."""
    r = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    return r * np.abs(gain) if gain is not None else r


def input_ranges(w: np.ndarray, groups: int) -> np.ndarray:
    """Per input channel of a weight ``[out, in/groups, *kernel]`` (or ``[out, in]``), ``max |w|``
    over what reads it."""
    out, per = w.shape[0], w.shape[1]
    g = np.abs(w.reshape(groups, out // groups, per, -1)).max(axis=(1, 3))  # [groups, in/groups]
    return g.reshape(-1).astype(np.float64)


def scale_input_channels(w: np.ndarray, s: np.ndarray, groups: int) -> np.ndarray:
    """``w`` with its input channel ``i`` multiplied by ``s[i]``."""
    out, per = w.shape[0], w.shape[1]
    shaped = w.reshape(groups, out // groups, per, -1) * s.reshape(groups, 1, per, 1)
    return shaped.reshape(w.shape).astype(w.dtype)


def pair_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Per channel the scale ``s`` (layer 1's output divided by it, layer 2's input multiplied) that
    equalises the two ranges; 1 for a channel either side of which is all zero."""
    ok = (r1 > 0) & (r2 > 0)
    s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
    return np.clip(s, S_MIN, S_MAX)


def sweep(pairs: Sequence[Pair], ranges: Callable[[Pair], tuple[np.ndarray, np.ndarray]],
          apply: Callable[[Pair, np.ndarray], None], sweeps: int = SWEEPS) -> None:
    """Equalise every pair ``sweeps`` times, in network order: ``ranges(pair)`` gives the current
    (r1, r2), ``apply(pair, s)`` rescales the two layers; each pair keeps its total scale."""
    for _ in range(sweeps):
        for p in pairs:
            s = pair_scales(*ranges(p))
            if np.all(s == 1.0):
                continue
            apply(p, s)
            p.scale = s if p.scale is None else p.scale * s


def spread(r: np.ndarray) -> float:
    """How unequal a layer's channel ranges are: largest over median (1 when equal)."""
    r = r[r > 0]
    return float(r.max() / np.median(r)) if len(r) else 1.0


def record(pairs: Sequence[Pair], skipped: Sequence[dict[str, Any]], before: dict[str, float],
           after: dict[str, float]) -> dict[str, Any]:
    """What equalisation did (``details.quantization.equalization``): the pairs equalised, those
    skipped and why; per pair the spread of layer 1's channel ranges before and after."""
    why: dict[str, int] = {}
    for sk in skipped:
        why[sk["why"]] = why.get(sk["why"], 0) + 1
    return {"method": "cross-layer equalisation (Nagel et al. 2019)", "pairs": len(pairs), "skipped": len(skipped),
            "skipped_why": why,
            "spread_median_before": round(float(np.median(list(before.values()))), 2) if before else None,
            "spread_median_after": round(float(np.median(list(after.values()))), 2) if after else None,
            "per_pair": [{"first": p.first, "second": p.second, "activation": p.activation,
                          "scale_min": round(float(np.min(p.scale)), 4) if p.scale is not None else 1.0,
                          "scale_max": round(float(np.max(p.scale)), 4) if p.scale is not None else 1.0,
                          "spread_before": round(before.get(p.first, 1.0), 2),
                          "spread_after": round(after.get(p.first, 1.0), 2)} for p in pairs],
            "skipped_pairs": list(skipped)}


def equalize_torch_module(module: Any, example_inputs: Sequence[np.ndarray]) -> tuple[Any, dict[str, Any]]:
    """A copy of a torch ``module`` with cross-layer equalisation over every 2-d convolution ->
    [batch norm] -> [ReLU] -> convolution chain of its ``torch.export`` graph whose tensors nothing
    else reads. A batch norm after layer 1 takes the scale in its weight and bias (the backends fold
    it into the convolution later); without one the convolution's weight and bias take it. The
    module itself is never changed. Returns the copy and the record (:func:`record`)."""
    import copy

    import torch

    from .pt2e import _ops

    conv_ops, _ = _ops()
    conv2d = torch.ops.aten.conv2d.default
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in example_inputs)
    with torch.no_grad():
        gm = torch.export.export(module, args).module()
    out = copy.deepcopy(module)
    params = dict(out.named_parameters())
    buffers = dict(out.named_buffers())

    def attr(node: Any) -> str | None:
        return node.target if isinstance(node, torch.fx.Node) and node.op == "get_attr" else None

    def owned(name: str | None) -> bool:
        return name is not None and name in params and shared.get(name, 1) == 1  # a weight two layers share: left alone

    shared: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in conv_ops and len(n.args) > 1 and attr(n.args[1]):
            shared[n.args[1].target] = shared.get(n.args[1].target, 0) + 1

    def through(n: Any) -> Any:
        """The one reader of ``n`` (a tuple's element 0 passed through), or None."""
        users = list(n.users)
        if len(users) != 1:
            return None
        u = users[0]
        if u.op == "call_function" and "getitem" in str(u.target) and u.args[1] == 0:
            return through(u)
        return u

    def batch_norm(node: Any) -> tuple[str, str, str, float] | None:
        """(weight, bias, running var, eps) of a batch norm node whose parameters can be scaled."""
        if node is None or "batch_norm" not in str(node.target) or len(node.args) < 5:
            return None
        gamma, beta, var = attr(node.args[1]), attr(node.args[2]), attr(node.args[4])
        # batch_norm(x, w, b, mean, var, training, momentum, eps, cudnn); the no-training form has no 'training'
        at = 6 if "no_training" in str(node.target) else 7
        eps = float(node.args[at]) if len(node.args) > at else 1e-5
        return (gamma, beta, var, eps) if owned(gamma) and owned(beta) and var in buffers else None

    def zero_pad(node: Any) -> bool:
        if node.op != "call_function" or str(node.target) not in ("aten.pad.default", "aten.constant_pad_nd.default"):
            return False
        mode = node.args[2] if len(node.args) > 2 and isinstance(node.args[2], str) else "constant"
        value = [a for a in node.args[2:] if isinstance(a, (int, float)) and not isinstance(a, bool)]
        return mode == "constant" and (not value or float(value[0]) == 0.0)

    found: list[tuple[Pair, dict[str, Any]]] = []
    skipped: list[dict[str, Any]] = []
    for n in gm.graph.nodes:
        if not (n.op == "call_function" and n.target == conv2d and len(n.args) > 1 and owned(attr(n.args[1]))):
            continue
        first = {"weight": attr(n.args[1]), "bias": attr(n.args[2]) if len(n.args) > 2 else None, "bn": None}
        nxt, activation = through(n), None
        first["bn"] = batch_norm(nxt)
        if first["bn"] is not None:
            nxt = through(nxt)
        elif nxt is not None and "batch_norm" in str(nxt.target):
            continue
        elif first["bias"] is not None and not owned(first["bias"]):
            continue
        if nxt is not None and nxt.op == "call_function" and str(nxt.target).startswith(("aten.hardtanh", "aten.clamp",
                                                                                        "aten.relu6")):
            skipped.append({"first": n.name, "why": SKIP_CLAMP})
            continue
        if nxt is not None and nxt.op == "call_function" and str(nxt.target).startswith("aten.relu"):
            activation, nxt = "Relu", through(nxt)
        if nxt is not None and zero_pad(nxt):  # an explicit zero padding scales with its input
            nxt = through(nxt)
        if nxt is None or not (nxt.op == "call_function" and nxt.target == conv2d and owned(attr(nxt.args[1]))):
            skipped.append({"first": n.name, "why": "its output is read by more than the next layer (e.g. a residual add)"
                            if nxt is None else f"followed by {nxt.target}, not one convolution"})
            continue
        groups = int(nxt.args[6]) if len(nxt.args) > 6 else 1
        w1, w2 = params[first["weight"]], params[attr(nxt.args[1])]
        if w2.shape[1] * groups != w1.shape[0]:
            continue
        found.append((Pair(first=first["weight"].rsplit(".", 1)[0], second=attr(nxt.args[1]).rsplit(".", 1)[0],
                           groups=groups, activation=activation),
                      {**first, "second": attr(nxt.args[1]), "second_bn": batch_norm(through(nxt))}))
    parts = {id(p): f for p, f in found}

    def gain(bn: tuple[str, str, str, float] | None) -> np.ndarray | None:
        if bn is None:
            return None
        gamma, _, var, eps = bn
        return (params[gamma].detach().double() / torch.sqrt(buffers[var].detach().double() + eps)).numpy()

    def ranges(p: Pair) -> tuple[np.ndarray, np.ndarray]:
        """Both ranges as the backends quantise them: with each layer's batch norm folded in."""
        f = parts[id(p)]
        w2 = params[f["second"]].detach().numpy().astype(np.float64)
        g2 = gain(f["second_bn"])
        if g2 is not None:
            w2 = w2 * g2.reshape(-1, *[1] * (w2.ndim - 1))
        return output_ranges(params[f["weight"]].detach().numpy(), gain(f["bn"])), input_ranges(w2, p.groups)

    def apply(p: Pair, s: np.ndarray) -> None:
        f = parts[id(p)]
        inv = torch.from_numpy(1.0 / s)
        with torch.no_grad():
            if f["bn"] is not None:  # the batch norm's output is what layer 2 reads: scale it
                for name in f["bn"][:2]:
                    params[name].mul_(inv.to(params[name].dtype))
            else:
                w = params[f["weight"]]
                w.mul_(inv.to(w.dtype).reshape(-1, *[1] * (w.ndim - 1)))
                if f["bias"] is not None:
                    params[f["bias"]].mul_(inv.to(params[f["bias"]].dtype))
            w2 = params[f["second"]]
            w2.copy_(torch.from_numpy(scale_input_channels(w2.detach().numpy(), s, p.groups)))

    pairs = [p for p, _ in found]
    before = {p.first: spread(ranges(p)[0]) for p in pairs}
    sweep(pairs, ranges, apply)
    after = {p.first: spread(ranges(p)[0]) for p in pairs}
    return out, record(pairs, skipped, before, after)


def coverage(rec: dict[str, Any], layers: int) -> float:
    """The share of a model's ``layers`` weighted layers that sit in an equalised pair."""
    inside = {x for p in rec["per_pair"] for x in (p["first"], p["second"])}
    return len(inside) / max(layers, 1)


MIN_COVERAGE = 0.25  # --equalization auto tries it when at least this share of the weighted layers is in a pair


#: the record of an int8 made with ``--equalization off`` (nothing looked at)
OFF = {"asked": "off", "chosen": "off", "why": "turned off (--equalization off)"}


def plan(cfg: Any, rec: dict[str, Any], layers: int) -> tuple[bool, dict[str, Any]]:
    """Whether to build and measure an equalised candidate, and the record when not (``off`` is
    :data:`OFF`, decided before any of this): ``on`` whenever a pair exists; ``auto`` when at least a quarter of the ``layers`` weighted
    layers are in pairs (each candidate is a whole quantisation and measurement: not spent on a
    model where it could change little, like EfficientNet-Lite0 with its ReLU6 and residual adds,
    2 pairs among 49 convolutions)."""
    share = coverage(rec, layers)
    summary = {k: v for k, v in rec.items() if k not in ("per_pair", "skipped_pairs")}
    base = {**summary, "asked": cfg.equalization, "coverage": round(share, 3)}
    if not rec["pairs"]:
        return False, {**base, "chosen": "off", "why": "no pair of layers can be equalised without changing the model"}
    if cfg.equalization == "auto" and share < MIN_COVERAGE:
        return False, {**base, "chosen": "off",
                       "why": f"{share:.0%} of the weighted layers are in pairs (auto tries it from {MIN_COVERAGE:.0%}); "
                              "--equalization on measures it anyway"}
    return True, base


def note(rec: dict[str, Any]) -> str:
    """The budget step's name for an equalised candidate."""
    return f"cross-layer equalisation ({rec['pairs']} pair{'s' if rec['pairs'] != 1 else ''})"


def choice(cfg: Any, base: dict[str, Any], with_eq: dict[str, Any], without: dict[str, Any],
           rec: dict[str, Any], t0: float) -> tuple[bool, dict[str, Any]]:
    """Whether to keep the equalised candidate (``on``, or ``auto`` when its budget step came out
    closer to fp32), and the record (``details.quantization.equalization``)."""
    import time

    from .flow import closer

    keep = cfg.equalization == "on" or closer(with_eq, without)
    return keep, {**base, "chosen": "on" if keep else "off", "seconds": round(time.perf_counter() - t0, 1),
                  "why": ("asked for (--equalization on)" if cfg.equalization == "on" else
                          "closer to fp32 than without it on the evaluation data" if keep else
                          "no closer to fp32 than without it on the evaluation data"),
                  "per_pair": rec["per_pair"]}


_EQUALIZED = cache.Memo("equalisation")  # one source at a time


def equalized_source(source: Any) -> tuple[Any, dict[str, Any]]:
    """The torch ``source`` equalised (:func:`equalize_torch_module`) and the record; made once per
    source and process, so every int8 target of a deploy shares it."""
    import dataclasses

    key = (source.digest, id(source.module))
    if key not in _EQUALIZED:
        module, rec = equalize_torch_module(source.module, source.example_inputs)
        _EQUALIZED.put(key, (dataclasses.replace(source, module=module), rec))
    return _EQUALIZED.get(key)
