"""Roofline estimate of latency on a device profile — an estimate, never a measurement.

Per layer: ``ops = 2·MACs`` (plus one op per output element for the other compute layers) and
``bytes = activations read + weights read + activation written``; its time is
``max(ops / peak, bytes / bandwidth)`` and it is compute-bound when the first term wins (its
arithmetic intensity is above the profile's ridge point ``peak / bandwidth``). Views (reshape,
dropout at inference) cost nothing. The model figure is the sum over layers, single stream.

Assumptions, stated in the report: every tensor goes through DRAM (caches make small layers
faster than this), kernels reach the peak (real kernels reach a fraction; depthwise convs much
less), no fusion (a runtime fusing conv + activation saves that activation's traffic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .graph import MAC_TYPES, Graph, Layer

__all__ = ["layer_cost", "roofline", "measured_from_manifest", "find_manifest"]


def layer_cost(g: Graph, layer: Layer, int8: bool = False) -> tuple[int, int]:
    """(ops, bytes) of one layer; ``int8`` counts float tensors at one byte each."""
    if layer.alias or layer.note == "hidden":
        return 0, 0

    def nbytes(name: str) -> int:
        t = g.tensors.get(name)
        if t is None:
            return 0
        return (t.elems or 0) if (int8 and t.dtype.startswith(("float", "bfloat"))) else t.nbytes

    rep = max(1, int(layer.repeat))  # a loop body's layer moves its tensors every iteration
    moved = rep * sum(nbytes(n) for n in dict.fromkeys(layer.inputs + layer.weights + layer.outputs))
    if layer.type in MAC_TYPES or layer.macs:
        ops = 2 * layer.macs  # MACs already count the repeats
    else:
        ops = rep * sum((g.tensors[o].elems or 0) for o in layer.outputs if o in g.tensors)
    return int(ops), int(moved)


def roofline(g: Graph, profile: Any, precision: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(summary, per-layer [{bound, est_us}]) for ``precision`` ('fp32' or 'int8'); int8 total also given."""
    peak = profile.peak_gops_int8 if precision == "int8" else profile.peak_gops_fp32
    bw = profile.memory_bandwidth_gbs
    per_layer = []
    total = compute_s = memory_s = 0.0
    n_compute = n_memory = 0
    for layer in g.layers:
        ops, moved = layer_cost(g, layer, int8=False)
        tc, tm = ops / (peak * 1e9), moved / (bw * 1e9)
        t = max(tc, tm)
        bound = None
        if ops or moved:
            bound = "compute" if tc >= tm else "memory"
            if bound == "compute":
                n_compute += 1
                compute_s += t
            else:
                n_memory += 1
                memory_s += t
        total += t
        per_layer.append({"bound": bound, "est_us": round(t * 1e6, 3)})
    int8_total = 0.0
    if precision != "int8":
        for layer in g.layers:
            ops, moved = layer_cost(g, layer, int8=True)
            int8_total += max(ops / (profile.peak_gops_int8 * 1e9), moved / (bw * 1e9))
    summary = {
        "estimate": True,
        "label": "roofline estimate from the device profile's nominal peaks - not a measurement",
        "profile": profile.model_dump(mode="json"),
        "precision": precision,
        "ridge_ops_per_byte": round(peak / bw, 2),
        "total_ms": round(total * 1e3, 4),
        "int8_total_ms": round(int8_total * 1e3, 4) if precision != "int8" else round(total * 1e3, 4),
        "compute_bound": {"layers": n_compute, "ms": round(compute_s * 1e3, 4)},
        "memory_bound": {"layers": n_memory, "ms": round(memory_s * 1e3, 4)},
        "assumptions": [
            "every tensor goes through DRAM (caches make small layers faster)",
            "kernels reach the profile's peak (real ones reach a fraction; depthwise convs far less)",
            "no operator fusion, one stream, batch as analysed",
        ],
    }
    return summary, per_layer


def find_manifest(path: Path | None) -> Path | None:
    """manifest.json of the deploy folder holding ``path`` (the folder itself, or up to two levels up)."""
    if path is None:
        return None
    p = Path(path).resolve()
    for cand in [p, *list(p.parents)[:2]]:
        m = cand / "manifest.json" if cand.is_dir() else None
        if m is not None and m.is_file():
            return m
    return None


def measured_from_manifest(manifest: Any, artifact_id: str | None) -> dict[str, Any] | None:
    """What the deploy's benchmark measured for ``artifact_id`` (any artifact if None), read with
    the one manifest reader (:meth:`edgeship.manifest.Manifest.benchmark`); None without one."""
    from ..errors import EdgeshipError
    from ..manifest import Manifest, load_manifest

    if manifest is None:
        return None
    try:
        m = manifest if isinstance(manifest, Manifest) else (
            Manifest(Path("."), manifest) if isinstance(manifest, dict) else load_manifest(Path(manifest).parent))
    except EdgeshipError:
        return None
    return m.benchmark(artifact_id) if m is not None else None
