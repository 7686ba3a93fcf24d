"""Lighter-layer advice: where a cheaper layer would do the same job.

``separable``: every standard k×k convolution (groups = 1, k > 1) with the MACs of its
depthwise-separable replacement (a k×k depthwise conv at the same stride, then a 1×1 conv),
ranked by absolute saving. The saving ratio is the seed's ``1/C_out + 1/k²``.

``patterns``: other heavy layers worth replacing — large dense layers (low-rank factorisation),
large-kernel convolutions (k ≥ 5: a 3×3, or two stacked 3×3 for the same receptive field), and a
model whose pointwise (1×1) convs dominate the MACs (grouped 1×1 with channel shuffle, or a
narrower width). Estimates are MAC/parameter counts, not measured speed-ups.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from .graph import Graph, Layer, layer_kind, separable_macs

__all__ = ["separable_advice", "pattern_advice"]


def _where(layer: Layer, index: int) -> dict[str, Any]:
    return {"index": index, "layer": layer.name, "module": layer.module, "op": layer.op}


def separable_advice(g: Graph, total_macs: int) -> list[dict[str, Any]]:
    out = []
    for i, layer in enumerate(g.layers):
        c = layer.conv
        if layer.type != "Conv" or not c or c["groups"] != 1 or math.prod(c["kernel"]) <= 1 or len(c["kernel"]) != 2:
            continue
        h, w = c["spatial_out"]
        kh, kw = c["kernel"]
        per_image = h * w * c["c_in"] * c["c_out"] * kh * kw
        batch = max(1, layer.macs // per_image) if per_image else 1
        est = separable_macs(h, w, c["c_in"], c["c_out"], kh, kw)
        est = {k: v * batch for k, v in est.items()}
        ratio = Fraction(1, c["c_out"]) + Fraction(1, kh * kw)
        out.append({
            **_where(layer, i),
            "input_channels": c["c_in"], "output_channels": c["c_out"], "kernel": [kh, kw], "stride": c["stride"],
            "output_hw": [h, w],
            "macs": layer.macs,
            "separable_macs": {"depthwise": est["depthwise"], "pointwise": est["pointwise"], "total": est["separable"]},
            "saving_macs": est["saving"],
            "ratio": float(ratio),
            "ratio_formula": f"1/{c['c_out']} + 1/{kh * kw}",
            "saving_share_of_model": round(est["saving"] / total_macs, 4) if total_macs else 0.0,
            "params": {"standard": c["c_in"] * c["c_out"] * kh * kw,
                       "separable": c["c_in"] * kh * kw + c["c_in"] * c["c_out"]},
            "suggestion": f"replace the {kh}x{kw} conv ({c['c_in']}->{c['c_out']}) with a {kh}x{kw} depthwise conv "
                          f"and a 1x1 conv: {est['separable']:,} instead of {est['standard']:,} MACs",
        })
    out.sort(key=lambda a: -a["saving_macs"])
    for rank, a in enumerate(out, 1):
        a["rank"] = rank
    return out


def pattern_advice(g: Graph, total_macs: int, total_params: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, layer in enumerate(g.layers):
        kind = layer_kind(layer)
        if kind in ("dense", "matmul") and layer.params:
            w = next((g.tensors[n] for n in layer.weights if g.tensors.get(n) and len(g.tensors[n].shape or ()) == 2),
                     None)
            if w is None:
                continue
            n_out, n_in = w.shape
            share = layer.params / total_params if total_params else 0.0
            if layer.params < 1_000_000 and share < 0.2:
                continue
            r = max(1, min(n_in, n_out) // 4)
            after = r * (n_in + n_out)
            out.append({
                "pattern": "large_dense", **_where(layer, i), "macs": layer.macs, "params": layer.params,
                "params_share_of_model": round(share, 4),
                "estimate_after": {"rank": r, "params": after, "macs": layer.macs * after // max(1, n_in * n_out)},
                "suggestion": f"dense {n_in}->{n_out} holds {share:.0%} of the parameters: a low-rank factorisation "
                              f"(rank {r}: {n_in}->{r}->{n_out}) keeps {after:,} of {n_in * n_out:,} weights; "
                              "for a classifier head, fewer classes or a smaller feature width also help",
            })
        elif layer.type == "Conv" and layer.conv and math.prod(layer.conv["kernel"]) >= 25:
            c = layer.conv
            k2 = math.prod(c["kernel"])
            kk = "x".join(map(str, c["kernel"]))
            out.append({
                "pattern": "large_kernel", **_where(layer, i), "kind": kind, "kernel": c["kernel"], "macs": layer.macs,
                "estimate_after": {"3x3": layer.macs * 9 // k2, "two_stacked_3x3": layer.macs * 18 // k2},
                "suggestion": f"{kk} {kind.replace('_', ' ')}: a 3x3 costs {9 / k2:.0%} of its MACs; two stacked 3x3 "
                              f"({18 / k2:.0%}) keep the receptive field" +
                              ("; or factorise into kx1 + 1xk" if kind == "conv_kxk" else ""),
            })
    pw = [(i, lay) for i, lay in enumerate(g.layers) if layer_kind(lay) == "pointwise"]
    pw_macs = sum(lay.macs for _, lay in pw)
    has_dw = any(layer_kind(lay) == "depthwise" for lay in g.layers)
    if total_macs and pw_macs / total_macs >= 0.5:
        top = sorted(pw, key=lambda t: -t[1].macs)[:3]
        out.append({
            "pattern": "pointwise_dominant", "macs": pw_macs, "share_of_model": round(pw_macs / total_macs, 4),
            "layers": [{**_where(lay, i), "macs": lay.macs} for i, lay in top],
            "estimate_after": {"groups_2": pw_macs // 2, "width_0.75": int(pw_macs * 0.5625)},
            "suggestion": f"1x1 convs carry {pw_macs / total_macs:.0%} of the MACs: grouped 1x1 convs with a channel "
                          "shuffle (ShuffleNet) divide them by the group count; a 0.75 width multiplier cuts them to "
                          "~56%." + (" Depthwise-separable blocks are already in use, so the remaining cost is here."
                                     if has_dw else ""),
        })
    order = {"pointwise_dominant": 0, "large_dense": 1, "large_kernel": 2}
    out.sort(key=lambda a: (order[a["pattern"]], -(a.get("params") or a["macs"])))
    return out
