"""Model analysis: where the compute is, what memory it needs, which layers to make lighter, and
which target will take which ops — before any conversion.

``analyze(model_or_path, targets=None, profile=None)`` takes a torch source (built-in name,
factory ``pkg.mod:fn``, ``.pt2``), an ``.onnx`` or a ``.tflite`` file, or an artifact folder
written by ``edgeship deploy`` (its model file is analysed; a benchmark in the deploy manifest is
shown beside the estimate). It returns one JSON-ready dict (``edgeship analyze --json`` prints it
as ``{"ok": true, "analysis": ...}``).

MACs are counted by edgeship itself from shapes (ptflops/thop miss Lite0's padded conv subclass):
convolutions (incl. depthwise/grouped/transposed), dense layers, matrix products, attention and
recurrent layers (LSTM/GRU/RNN, every time step); other ops count 0 MACs. An ONNX graph is
counted with its subgraphs: the branch an ``If`` takes (the larger when its condition is known only
at run time, said in ``notes``), a ``Loop``/``Scan`` body once per iteration. Parameters are every
weight the file holds: initializers and ``Constant`` nodes, in subgraphs too. A torch source is counted on its ``torch.export`` graph and, when an ONNX
based target is previewed, also on its ONNX export (``cross_check``); the two agree.

Report schema ``edgeship.analysis/1`` (readers ignore keys they do not know; writers only add):

``schema``          "edgeship.analysis/1"
``model``           ``name``, ``kind`` (torch | pt2 | onnx | tflite), ``origin``, ``frontend`` (the graph
                    counted: torch | onnx | tflite), ``inputs`` / ``outputs`` [{name, shape, dtype}]
``totals``          ``macs``, ``gmacs``, ``flops`` (2·MACs), ``params`` (torch: nn.Parameter elements;
                    ONNX/TFLite: weight elements, BatchNorm already folded), ``layers`` (count),
                    ``weight_bytes`` {``fp32``, ``fp16``, ``int8``, ``as_stored``} (all weight tensors incl.
                    buffers), ``peak_activation_bytes``, ``peak_activation_at`` {layer, module}
                    (from tensor lifetimes over the execution order; views allocate nothing; weights
                    excluded), ``activation_bytes_total`` (sum of every layer's output)
``macs_by_type``    {canonical op type (ONNX spelling: Conv, Gemm, MatMul, ...): MACs}
``macs_by_kind``    {kind: MACs}; kinds: conv_kxk, pointwise (1×1), depthwise, grouped_conv,
                    conv_transpose, dense, matmul, attention, recurrent, normalization, activation,
                    elementwise, pool, shape, other
``layers``          one per op, in execution order: ``index``, ``name`` (graph node), ``module`` (source
                    module path where known, else null), ``op`` (as the graph spells it), ``type``,
                    ``kind``, ``params``, ``macs``, ``macs_share``, ``output_shape``, ``output_elements``,
                    ``output_bytes``, ``intensity`` (ops per byte moved, fp32), ``conv`` (for convolutions:
                    c_in, c_out, kernel, stride, groups, spatial_out, layout); ``scope`` (ONNX: the
                    subgraph it is in, e.g. "If_0/then_branch") and ``repeat`` (runs per inference
                    inside a Loop/Scan body; its macs include them) when they apply; with a profile
                    also ``bound`` (compute | memory) and ``est_us``
``top_layers``      the ``top`` layers by MACs: index, name, module, kind, macs, macs_share
``ranked_by_kind``  {kind: {count, macs, macs_share, top: [index, name, module, macs, macs_share]}}
                    for the MAC-carrying kinds (pointwise, depthwise, conv_kxk, dense, ...)
``advice``          ``separable``: every standard k×k conv (groups 1, k > 1) with ``macs``,
                    ``separable_macs`` {depthwise, pointwise, total}, ``saving_macs``, ``ratio``
                    (= 1/C_out + 1/k²), ``ratio_formula``, ``saving_share_of_model``, ``params``, ``rank``
                    (by absolute saving); ``patterns``: [{pattern: large_dense | large_kernel |
                    pointwise_dominant, where, estimate_after, suggestion}]
``roofline``        null when disabled (``profile=False``), else ``estimate`` (always true), ``label``, ``profile``,
                    ``precision``, ``ridge_ops_per_byte``, ``total_ms``, ``int8_total_ms``,
                    ``compute_bound`` / ``memory_bound`` {layers, ms}, ``assumptions``,
                    ``onnx_graph_total_ms`` (torch sources: the same estimate on the ONNX export,
                    BatchNorm and padding folded — closer to what a runtime executes), ``measured``
                    (null, or {artifact, latency_ms, ...} from the deploy manifest's benchmark stage,
                    with ``estimate_over_measured``), ``measured_note``
``compatibility``   {target: {target, status (ready | partial | unsupported | not_applicable |
                    unavailable | error), checked_with, fast_kernels, macs_share_fast (0..1 or null),
                    ops: [{type, count, macs, supported, fast}], unsupported: [{op, type, node, module,
                    hint}], off_fast_path: [{op, type, node, module, macs}], notes, (ort) delegation}}
                    — see :mod:`edgeship.analysis.compat` for the tool behind each target
``cross_check``     torch sources with an ONNX export: torch_macs, onnx_macs, rel_diff, agree (≤ 1%),
                    params and peak activation of both graphs, note; else null
``notes``           what was assumed (dynamic dims fixed to 1, ops without a MAC formula, ...)
``timings_s``       wall time of each step

``model_macs(path)`` returns the total MACs of an ONNX file (or None when it cannot be counted
completely); the benchmark harness divides it by the latency for achieved GOP/s.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import cache
from ..artifact import ARTIFACT_JSON
from ..errors import EdgeshipError, InputError, UnsupportedError, UsageError
from ..locate import locate
from ..targets import available_targets, load_artifact
from .compat import needs_onnx, preview, preview_targets
from .graph import Graph, layer_kind, peak_activation

__all__ = ["analyze", "model_macs", "models_macs", "preview_targets", "SCHEMA"]

SCHEMA = "edgeship.analysis/1"
DEFAULT_PROFILE = "host-1core"


def _targets(targets: str | Sequence[str] | None) -> list[str]:
    if targets is None:
        return preview_targets()
    if isinstance(targets, str):
        targets = [targets]
    names = [p.strip() for t in targets for p in str(t).split(",") if p.strip()]
    if names == ["all"]:
        return preview_targets()
    if names in ([], ["none"]):
        return []

    known = available_targets()
    bad = [n for n in names if n not in known]
    if bad:
        raise UsageError(f"unknown target {bad[0]!r} for the compatibility preview",
                         hint=f"known targets: {', '.join(known)} (or all, none)")
    return list(dict.fromkeys(names))


def _resolve(model_or_path: Any) -> tuple[Any, str | None, Path | None]:
    """(spec or Source, artifact id, folder to look for a manifest in)."""
    from ..sources import Source

    if isinstance(model_or_path, Source):
        return model_or_path, None, None
    spec = str(model_or_path)
    p = Path(spec)
    loc = locate(p)
    if loc.kind == "artifact":
        art = loc.artifact
        assert art is not None
        if art.format.value not in ("onnx", "tflite"):
            raise UnsupportedError(f"analysis of {art.format.value} artifacts is not supported",
                                   hint="analyze the source model, or the onnx/tflite artifact of the same deploy")
        return str(art.model_path), art.root.name, art.root
    if loc.kind == "outdir":
        m = loc.manifest
        assert m is not None
        for a in m.records:
            if a.get("format") in ("onnx", "tflite"):
                art = load_artifact(m.artifact_folder(a))  # confined to the output folder
                return str(art.model_path), art.root.name, p
        raise UnsupportedError(f"{p} holds no onnx or tflite artifact to analyze",
                               hint="analyze the source model instead")
    if loc.kind == "folder":
        raise InputError(f"{p} is a folder without artifact.json or manifest.json",
                         hint="give a model file, an artifact folder written by edgeship deploy, or a factory")
    if loc.kind == "file" and (p.parent / ARTIFACT_JSON).is_file():
        try:
            art = load_artifact(p)
            return spec, art.root.name, art.root
        except EdgeshipError:
            pass
    return spec, None, p.parent if p.is_file() else None


def _export_onnx(source: Any) -> Any:
    """The ONNX graph the onnx target would build (torch.onnx dynamo + onnxslim), static batch."""
    from ..config import DeployConfig
    from ..targets.onnx import OnnxTarget

    return OnnxTarget().graph(source, DeployConfig.build(model=source.origin, dynamic_batch=False))[0]


def _io(specs: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]


def analyze(model_or_path: Any, targets: str | Sequence[str] | None = None, profile: Any = None, *,
            input_shapes: Sequence[Sequence[int]] | None = None, manifest: dict[str, Any] | Path | None = None,
            top: int = 10, source_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Analyse a model; return the JSON-ready report described in this module's docstring.

    ``targets``: preview targets (default :func:`preview_targets`, what ``--targets all`` deploys; ``[]`` for none).
    ``profile``: device profile name, file or :class:`~edgeship.profiles.DeviceProfile` for the
    roofline (None: ``host-1core``; False: no roofline). ``input_shapes``: fix an ONNX file's dynamic input shapes (or a factory's input).
    ``manifest``: a deploy manifest (dict or path) whose benchmark to compare with; found by
    itself when ``model_or_path`` lies in a deploy folder. ``source_options``: keyword arguments
    for :func:`edgeship.sources.load_source` (weights, allow_pickle, input_dtypes, ...).
    """
    from ..profiles import load_profile
    from ..sources import load_source, sniff_format

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    tlist = _targets(targets)
    from ..profiles import DeviceProfile

    prof = None
    if isinstance(profile, DeviceProfile):
        prof = profile
    elif profile is not False:
        prof = load_profile(DEFAULT_PROFILE if profile is None else profile)
    spec, artifact_id, near = _resolve(model_or_path)
    notes: list[str] = []
    ctx: dict[str, Any] = {}
    onnx_graph: Graph | None = None
    cross: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="edgeship-analyze-") as tmp:
        kind = None
        if isinstance(spec, str) and Path(spec).is_file():
            k = sniff_format(Path(spec))
            kind = k if k in ("onnx", "tflite") else None
        if kind == "onnx":
            from .onnx_graph import graph_from_onnx, load_model

            path = Path(spec)
            model = load_model(path)
            g = onnx_graph = graph_from_onnx(model, input_shapes, (source_options or {}).get("input_values"))
            from ..formats.onnx import io_specs

            ins, outs = io_specs(model)
            info = {"name": path.stem, "kind": "onnx", "origin": str(path), "frontend": "onnx",
                    "inputs": _io(ins), "outputs": _io(outs)}
            ctx.update(kind="onnx", path=path, onnx_model_original=model)
        elif kind == "tflite":
            from ..formats.tflite import read_tflite
            from .tflite_graph import graph_from_tflite

            path = Path(spec)
            data = read_tflite(path)
            g = graph_from_tflite(data)
            tin = {t["index"]: t for t in data["tensors"]}
            info = {"name": path.stem, "kind": "tflite", "origin": str(path), "frontend": "tflite",
                    "inputs": [{"name": tin[i]["name"], "shape": tin[i]["shape"], "dtype": tin[i]["dtype"]}
                               for i in data["inputs"]],
                    "outputs": [{"name": tin[i]["name"], "shape": tin[i]["shape"], "dtype": tin[i]["dtype"]}
                                for i in data["outputs"]]}
            ctx.update(kind="tflite", path=path, tflite_data=data)
        else:
            from .torch_graph import export_program, graph_from_program

            opts = dict(source_options or {})
            if input_shapes is not None:
                opts["input_shapes"] = input_shapes
            source = spec if not isinstance(spec, str) else load_source(spec, **opts)
            if source.kind not in ("torch", "pt2"):  # e.g. a Source object for a file
                return analyze(source.path, tlist, profile, input_shapes=input_shapes, manifest=manifest, top=top)
            timings["load"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            ep = export_program(source)
            g = graph_from_program(ep)
            timings["torch_export_and_count"] = time.perf_counter() - t1
            info = {"name": source.name, "kind": source.kind, "origin": source.origin, "frontend": "torch",
                    "inputs": [{"name": s.name, "shape": list(a.shape), "dtype": str(a.dtype)}
                               for s, a in zip(source.inputs, source.example_inputs)],
                    "outputs": _io(source.outputs)}
            ctx.update(kind=source.kind, exported=ep)
            if needs_onnx(tlist):
                t1 = time.perf_counter()
                from .onnx_graph import graph_from_onnx

                try:
                    onnx_graph = graph_from_onnx(_export_onnx(source))
                except UnsupportedError as e:
                    ctx["onnx_export_error"] = e.message
                    notes.append(f"ONNX export failed: {e.message}")
                timings["onnx_export_and_count"] = time.perf_counter() - t1
        ctx["graph"] = g
        if onnx_graph is not None:
            fixed = onnx_graph.source_model
            ctx.update(onnx_graph=onnx_graph, onnx_model_fixed=fixed, onnx_bytes=fixed.SerializeToString())
            onnx_file = Path(tmp) / "model.onnx"
            onnx_file.write_bytes(ctx["onnx_bytes"])
            ctx["onnx_file"] = onnx_file
        report = _report(g, info, prof, top, notes)
        if onnx_graph is not None and g is not onnx_graph:
            cross = _cross_check(g, onnx_graph, report)
            if report["roofline"] is not None:
                from .roofline import roofline

                report["roofline"]["onnx_graph_total_ms"] = roofline(onnx_graph, prof, "fp32")[0]["total_ms"]
        report["cross_check"] = cross
        if report["roofline"] is not None:
            m = manifest
            if m is None and near is not None:
                from .roofline import find_manifest

                m = find_manifest(near)
            from .roofline import measured_from_manifest

            measured = measured_from_manifest(m if not isinstance(m, (str,)) else Path(m), artifact_id)
            report["roofline"]["measured"] = measured
            if measured:
                est = report["roofline"]["total_ms"]
                report["roofline"]["estimate_over_measured"] = round(est / measured["latency_ms"], 3) \
                    if measured["latency_ms"] else None
                report["roofline"]["measured_note"] = (
                    "measured on the machine that ran the benchmark, with its thread count; the estimate is for "
                    f"the {prof.name} profile")
            else:
                report["roofline"]["measured_note"] = (
                    "no benchmark measurement found (run the benchmark stage of edgeship deploy to compare)")
        t1 = time.perf_counter()
        report["compatibility"] = preview(tlist, ctx)
        timings["compatibility"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    report["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return report


def _report(g: Graph, info: dict[str, Any], prof: Any, top: int, notes: list[str]) -> dict[str, Any]:
    from .advice import pattern_advice, separable_advice
    from .roofline import layer_cost, roofline

    total = sum(layer.macs for layer in g.layers)
    visible = [(i, layer) for i, layer in enumerate(g.layers) if layer.note != "hidden"]
    precision = "int8" if any(t.dtype in ("int8", "uint8") and (t.elems or 0) > 1 for t in g.weights.values()) \
        else "fp32"
    per_layer_roof: list[dict[str, Any]] | None = None
    roof = None
    if prof is not None:
        roof, per_layer_roof = roofline(g, prof, precision)
    layers = []
    index_of: dict[int, int] = {}
    by_type: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    act_total = 0
    for vi, (i, layer) in enumerate(visible):
        index_of[i] = vi
        kind = layer_kind(layer)
        out = g.tensors.get(layer.outputs[0]) if layer.outputs else None
        ops, moved = layer_cost(g, layer)
        row: dict[str, Any] = {
            "index": vi, "name": layer.name, "module": layer.module, "op": layer.op, "type": layer.type,
            "kind": kind, "params": layer.params, "macs": layer.macs,
            "macs_share": round(layer.macs / total, 5) if total else 0.0,
            "output_shape": list(out.shape) if out and out.shape is not None else None,
            "output_elements": out.elems if out else None,
            "output_bytes": out.nbytes if out and not layer.alias else 0,
            "intensity": round(ops / moved, 3) if moved else None,
        }
        if layer.conv:
            row["conv"] = layer.conv
        if layer.scope:
            row["scope"] = layer.scope
        if layer.repeat != 1:
            row["repeat"] = layer.repeat
        if per_layer_roof is not None:
            row.update(per_layer_roof[i])
        layers.append(row)
        by_type[layer.type] += layer.macs
        by_kind[kind] += layer.macs
        act_total += row["output_bytes"]
    ranked = sorted(layers, key=lambda r: -r["macs"])

    def brief(r: dict[str, Any]) -> dict[str, Any]:
        return {k: r[k] for k in ("index", "name", "module", "kind", "macs", "macs_share")}

    ranked_by_kind = {}
    for kind in [k for k, v in by_kind.most_common() if v > 0]:
        rows = [r for r in ranked if r["kind"] == kind]
        ranked_by_kind[kind] = {"count": len(rows), "macs": by_kind[kind],
                                "macs_share": round(by_kind[kind] / total, 4) if total else 0.0,
                                "top": [brief(r) for r in rows[:5]]}
    peak = peak_activation(g)
    at = next((layer for layer in g.layers if layer.name == peak["at_layer"]), None)
    wsizes = [t for t in g.weights.values() if t.dtype.startswith(("float", "bfloat", "int8", "uint8"))
              and (t.elems or 0) > 1]
    welems = sum(t.elems or 0 for t in wsizes)
    sep = separable_advice(g, total)
    for a in sep:
        a["index"] = index_of.get(a["index"], a["index"])
    pats = pattern_advice(g, total, g.total_params)
    for p in pats:
        if "index" in p:
            p["index"] = index_of.get(p["index"], p["index"])
        for lay in p.get("layers", []):
            lay["index"] = index_of.get(lay["index"], lay["index"])
    return {
        "schema": SCHEMA,
        "model": info,
        "totals": {
            "macs": total, "gmacs": round(total / 1e9, 4), "flops": 2 * total, "params": g.total_params,
            "layers": len(layers),
            "weight_bytes": {"fp32": welems * 4, "fp16": welems * 2, "int8": welems,
                             "as_stored": sum(t.nbytes for t in wsizes)},
            "peak_activation_bytes": peak["bytes"],
            "peak_activation_at": {"layer": peak["at_layer"], "module": at.module if at else None,
                                   "index": index_of.get(g.layers.index(at)) if at else None},
            "activation_bytes_total": act_total,
        },
        "macs_by_type": {k: v for k, v in by_type.most_common() if v > 0},
        "macs_by_kind": {k: v for k, v in by_kind.most_common() if v > 0},
        "layers": layers,
        "top_layers": [brief(r) for r in ranked[:top] if r["macs"] > 0],
        "ranked_by_kind": ranked_by_kind,
        "advice": {"separable": sep, "patterns": pats},
        "roofline": roof,
        "notes": notes + g.notes,
    }


def _cross_check(g: Graph, og: Graph, report: dict[str, Any]) -> dict[str, Any]:
    tm = report["totals"]["macs"]
    om = sum(layer.macs for layer in og.layers)
    rel = abs(tm - om) / max(tm, om) if max(tm, om) else 0.0
    return {"torch_macs": tm, "onnx_macs": om, "rel_diff": round(rel, 6), "agree": rel <= 0.01,
            "torch_params": g.total_params, "onnx_params": og.total_params,
            "torch_peak_activation_bytes": report["totals"]["peak_activation_bytes"],
            "onnx_peak_activation_bytes": peak_activation(og)["bytes"],
            "note": "the ONNX graph is the onnx target's export (onnxslim): BatchNorm and padding fold into the "
                    "convolutions there, so its parameter count and peak activation differ slightly"}


_MACS_CACHE = cache.Memo("MACs of model files", keep=1024)  # (path, mtime, size) -> MACs


def model_macs(path: Path) -> int | None:
    """Total MACs of an ONNX file at batch 1 (dynamic dims at 1), or of a .tflite file (its main
    subgraph), or None if it cannot be counted fully; parsed in an isolated child."""
    return models_macs([path])[str(path)]


def models_macs(paths: Sequence[Path]) -> dict[str, int | None]:
    """:func:`model_macs` of several files, counted in one isolated child (the files are untrusted:
    ONNX shape inference with data propagation can take gigabytes on a crafted file)."""
    from ..isolate import in_child, run_isolated

    keys: dict[str, tuple[str, int, int] | None] = {}
    for path in paths:
        try:
            st = Path(path).stat()
            keys[str(path)] = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
        except OSError:
            keys[str(path)] = None
    todo = sorted({p for p, k in keys.items() if k is not None and k not in _MACS_CACHE})
    if todo:
        if in_child():
            counted = _count_macs(todo)
        else:
            try:
                counted = run_isolated("edgeship.analysis:_count_macs", {"paths": todo}, what=", ".join(todo)[:200])
            except EdgeshipError:
                counted = {}
        for p in todo:
            _MACS_CACHE.put(keys[p], counted.get(p))
    return {p: (_MACS_CACHE.get(k) if k is not None else None) for p, k in keys.items()}


def _count_macs(paths: list[str]) -> dict[str, int | None]:
    from ..formats.tflite import read_tflite
    from .onnx_graph import graph_from_onnx, load_model
    from .tflite_graph import graph_from_tflite

    out: dict[str, int | None] = {}
    for path in paths:
        p = Path(path)
        try:
            g = graph_from_tflite(read_tflite(p)) if p.suffix == ".tflite" else graph_from_onnx(load_model(p))
            complete = not any(n.startswith("MACs not counted") for n in g.notes)
            out[path] = sum(layer.macs for layer in g.layers) if complete else None
        except EdgeshipError:
            out[path] = None
    return out
