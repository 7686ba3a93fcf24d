"""Compatibility preview per target, before any conversion.

For each target: which op types the model uses and whether the target takes them, the share of
MACs that would run on the target's fast (optimised or delegated) kernels, and every op it cannot
take, named with node and module path and a hint. The real tools are used where cheap:

=============  ==========================================================================
target         checked with
=============  ==========================================================================
onnx           torch sources: the ONNX export itself (torch.onnx, dynamo); then ONNX Runtime's
               CPU provider loading the graph (``InferenceSession``)
ort            ONNX Runtime's mobile usability checker (NNAPI / CoreML EP partitioning,
               ``onnxruntime.tools.mobile_helpers.usability_checker``) on the ONNX graph
openvino       ``openvino.Core().read_model`` + ``query_model(model, "CPU")`` on the ONNX graph
               (or the .tflite file, which OpenVINO reads directly); when the graph fails at the
               placeholder shape (dynamic dims at 1), the model as shipped (dims dynamic) is read
               instead and the note says so; a node the frontend fails on is named with its
               reason, and only op types it has no rule for are called unsupported
executorch     torch sources: ``to_edge`` + ``XnnpackPartitioner().partition`` (tags, no lowering)
tflite         .tflite files: the LiteRT interpreter with its default XNNPACK delegate; other
               sources the tflite target accepts: the documented op list in
               :mod:`edgeship.analysis.optables`; a source kind it does not accept (an ONNX file
               while it converts from torch only) is ``not_applicable``, its reason said
coreml         torch sources: coremltools' torch op registry, read from its installed sources
               without importing coremltools (a 7 s import); the Neural Engine share is an
               estimate from a documented list (placement is decided on Apple hardware)
=============  ==========================================================================

``status`` is one of ``ready`` (every op supported, ≥ 99% of MACs on fast kernels), ``partial``
(every op supported, some MACs off the fast path), ``unsupported`` (some op cannot be taken),
``not_applicable`` (the target does not convert from this kind of model), ``unavailable`` (its SDK
is not installed) or ``error`` (the tool itself failed; the message says how).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections import Counter
from pathlib import Path
from typing import Any

from .._util import quiet
from ..errors import first_line
from .graph import Graph, Layer
from .optables import (
    COREML_ANE_FRIENDLY,
    SHAPE_ONLY,
    TFLITE_CONVERTIBLE,
    TFLITE_XNNPACK,
    TFLITE_XNNPACK_BUILTINS,
)

__all__ = ["preview", "preview_targets", "needs_onnx", "coreml_torch_ops"]


def _quiet() -> Any:
    """Probing a target's tool: its warnings, logs and prints stay off the screen."""
    return quiet()


def _visible(layer: Layer) -> bool:
    return layer.note != "hidden"


def _result(target: str, checked_with: str, **kw: Any) -> dict[str, Any]:
    out = {"target": target, "status": "ready", "checked_with": checked_with, "ops": [],
           "macs_share_fast": None, "fast_kernels": None, "unsupported": [], "off_fast_path": [], "notes": []}
    out.update(kw)
    return out


def _finish(res: dict[str, Any], graph: Graph, supported: dict[str, bool], fast_nodes: set[str] | None,
            unsupported: list[dict[str, Any]], fast_types: set[str] | None = None, limit: int = 25) -> dict[str, Any]:
    """Fill ops, shares and status from per-type support and the set of nodes on fast kernels."""
    counts: Counter[str] = Counter()
    macs_by_type: Counter[str] = Counter()
    for layer in graph.layers:
        if _visible(layer):
            counts[layer.type] += 1
            macs_by_type[layer.type] += layer.macs
    total = sum(macs_by_type.values())

    def is_fast(layer: Layer) -> bool:
        if fast_nodes is not None:
            return layer.name in fast_nodes
        return fast_types is not None and (layer.type in fast_types or layer.type in SHAPE_ONLY)

    fast_macs = sum(layer.macs for layer in graph.layers if is_fast(layer))
    res["ops"] = [{"type": t, "count": counts[t], "macs": macs_by_type[t], "supported": supported.get(t, True),
                   **({"fast": any(is_fast(lay) for lay in graph.layers if lay.type == t)}
                      if (fast_nodes is not None or fast_types is not None) else {})}
                  for t in sorted(counts, key=lambda t: (-macs_by_type[t], t))]
    if fast_nodes is not None or fast_types is not None:
        res["macs_share_fast"] = round(fast_macs / total, 4) if total else 1.0
        off = [lay for lay in graph.layers if _visible(lay) and not is_fast(lay) and lay.type not in SHAPE_ONLY
               and not lay.alias]
        off.sort(key=lambda lay: -lay.macs)
        res["off_fast_path"] = [{"op": lay.op, "type": lay.type, "node": lay.name, "module": lay.module,
                                 "macs": lay.macs} for lay in off[:limit]]
        if len(off) > limit:
            res["notes"].append(f"{len(off) - limit} more layers off the fast path not listed")
    res["unsupported"] = unsupported
    if unsupported:
        res["status"] = "unsupported"
    elif res["macs_share_fast"] is not None and res["macs_share_fast"] < 0.99:
        res["status"] = "partial"
    return res


def _entry(layer: Layer, hint: str) -> dict[str, Any]:
    return {"op": layer.op, "type": layer.type, "node": layer.name, "module": layer.module, "hint": hint}


# ---- onnx: ONNX Runtime CPU -------------------------------------------------------------

_ORT_NOIMPL = re.compile(r"Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'")


def _ort_cpu(model_bytes: bytes) -> str | None:
    """None if ORT's CPU provider loads the graph, else its error."""
    from ..formats.onnx import ort_session

    try:
        ort_session(model_bytes, optimize=False)
        return None
    except Exception as e:  # noqa: BLE001 - the message is the finding
        return str(e)


def _preview_onnx(ctx: dict[str, Any]) -> dict[str, Any]:
    kind = ctx["kind"]
    if kind == "tflite":
        return _result("onnx", "-", status="not_applicable",
                       notes=["edgeship does not convert from .tflite; analyze the torch or ONNX source instead"])
    og: Graph | None = ctx.get("onnx_graph")
    if og is None:
        err = ctx.get("onnx_export_error", "no ONNX graph")
        res = _result("onnx", "torch.onnx.export (dynamo)", status="unsupported")
        res["unsupported"] = [{"op": None, "type": None, "node": None, "module": None,
                               "hint": f"torch.onnx cannot export the model: {err}"}]
        _name_failing_op(res, err, ctx.get("graph"))
        return res
    checked = ("torch.onnx.export (dynamo) + onnxslim, then onnxruntime InferenceSession (CPU)"
               if kind in ("torch", "pt2") else "onnxruntime InferenceSession (CPU)")
    res = _result("onnx", checked, fast_kernels="ONNX Runtime CPU provider (MLAS)")
    err = _ort_cpu(ctx["onnx_bytes"])
    dims = _placeholders(ctx) if err else None
    if dims and ctx.get("onnx_model_original") is not None:  # the placeholder shape may be what fails, not an op
        try:
            err2 = _ort_cpu(ctx["onnx_model_original"].SerializeToString())
        except Exception:  # noqa: BLE001 - over 2 GB: no second look
            err2 = err
        if err2 is None:
            res["notes"].append(f"at the placeholder shape ({dims}) ONNX Runtime cannot load the graph "
                                f"({err.splitlines()[0][:200]}); as shipped, dims left dynamic, it loads: give "
                                "--input-shape NAME=... with the real sizes")
            err = None
    unsupported: list[dict[str, Any]] = []
    supported: dict[str, bool] = {}
    if err:
        by_name = {lay.name: lay for lay in og.layers}
        for op, node in _ORT_NOIMPL.findall(err):
            lay = by_name.get(node)
            supported[op] = False
            unsupported.append(_entry(lay, f"ONNX Runtime has no CPU kernel for {op} with these types; change "
                                           "the dtype or replace the op") if lay else
                               {"op": op, "type": op, "node": node, "module": None, "hint": "no CPU kernel"})
        if not unsupported:
            res["status"] = "error"
            res["notes"].append(f"ONNX Runtime cannot load the graph: {err.splitlines()[0][:300]}")
            unsupported = []
            for lay in og.layers:  # custom domains are the usual cause
                if ":" in lay.op:
                    supported[lay.type] = False
                    unsupported.append(_entry(lay, f"op from custom domain {lay.op.split(':')[0]!r}: ONNX Runtime "
                                                   "needs a custom-op library for it"))
    fast = {lay.name for lay in og.layers if supported.get(lay.type, True)}
    return _finish(res, og, supported, fast, unsupported)


def _name_failing_op(res: dict[str, Any], err: str, graph: Graph | None) -> None:
    """Point an exporter error at the graph node it names, when it names one."""
    if graph is None:
        return
    for lay in graph.layers:
        short = lay.op.split(".")[1] if lay.op.startswith("aten.") else lay.op
        if re.search(rf"\b{re.escape(short)}\b", err) and lay.type not in SHAPE_ONLY:
            res["unsupported"][0].update({"op": lay.op, "type": lay.type, "node": lay.name, "module": lay.module})
            return


# ---- ort: the mobile usability checker ---------------------------------------------------

def _preview_ort(ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["kind"] == "tflite":
        return _result("ort", "-", status="not_applicable", notes=["ORT format is built from ONNX, not from .tflite"])
    og: Graph | None = ctx.get("onnx_graph")
    if og is None:
        res = _preview_onnx(ctx)
        res["target"] = "ort"
        res["notes"].append("the ORT format is built from the ONNX export, which fails")
        return res
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    res = _result("ort", "onnxruntime.tools.mobile_helpers.usability_checker (NNAPI and CoreML EP partitions) "
                         "+ onnxruntime InferenceSession (CPU)",
                  fast_kernels="ORT CPU provider (all ops); NNAPI / CoreML EP delegation shown under 'delegation'")
    base = _preview_onnx(ctx)  # the CPU provider decides whether the model runs at all
    model = ctx["onnx_model_fixed"]
    delegation: dict[str, Any] = {}
    by_name = {lay.name: lay for lay in og.layers}
    total = sum(lay.macs for lay in og.layers) or 1
    for ep, fn in (("nnapi", lambda m: uc.check_nnapi_partitions(m, True)),
                   ("coreml_mlprogram", lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"))):
        try:
            with _quiet():
                info = fn(model)
        except Exception as e:  # noqa: BLE001
            delegation[ep] = {"error": first_line(e, 300)}
            continue
        nodes = {n.name for grp in info.supported_groups for n in grp}
        not_taken = [lay for lay in og.layers if lay.name not in nodes and _visible(lay)]
        delegation[ep] = {
            "partitions": int(info.num_partitions),
            "nodes_supported": int(info.num_supported_nodes), "nodes": int(info.num_nodes),
            "macs_share": round(sum(by_name[n].macs for n in nodes if n in by_name) / total, 4),
            "suitability": info.suitability().name,
            "ops_not_taken": sorted(o.split(":")[-1] for o in info.unsupported_ops),
            "nodes_not_taken": [{"op": lay.op, "node": lay.name, "module": lay.module} for lay in not_taken[:10]],
        }
    res.update({k: base[k] for k in ("ops", "macs_share_fast", "unsupported", "off_fast_path", "status")})
    res["notes"] = base["notes"] + [
        "the .ort format runs on the CPU provider everywhere; NNAPI (Android) and CoreML (iOS) take the listed "
        "partitions, and many small partitions cost more in copies than they save",
        "on x86 an .ort file runs ~3x slower than the .onnx (its layout optimisations are for ARM)"]
    res["delegation"] = delegation
    return res


# ---- openvino ---------------------------------------------------------------------------

#: above this many ops the OpenVINO preview reads the model but skips the CPU plugin's query_model,
#: whose time grows with the square of the ops (a crafted file of a few thousand nodes took minutes)
OV_QUERY_MAX_OPS = 1000

_OV_AT_NODE = re.compile(r"Error is encountered while working with operation of type (\S+) and name (\S+?)\.?\s*$", re.M)


_OV_NO_RULE = re.compile(r"No conversion rule found for operations:\s*(.+)")
_OV_FAILED_AT = re.compile(r"While validating ONNX node '<Node\((\w+)\):\s*([^>]*)>'")


def _placeholders(ctx: dict[str, Any]) -> str | None:
    """The dynamic input dims an ONNX file was analysed at a placeholder size for, as text, or None."""
    g = ctx.get("onnx_graph")
    dims = getattr(g, "placeholder_dims", None) if ctx.get("kind") == "onnx" else None
    if not dims:
        return None
    return "; ".join(f"{name} dim {', '.join(map(str, axes))} at 1" for name, axes in dims.items())


def _original_file(ctx: dict[str, Any]) -> Path | None:
    """The model as shipped (dynamic dims kept) written beside the analysed one, or None."""
    model, fixed = ctx.get("onnx_model_original"), ctx.get("onnx_file")
    if model is None or fixed is None:
        return None
    path = Path(fixed).with_name("as_shipped.onnx")
    if not path.is_file():
        try:
            path.write_bytes(model.SerializeToString())
        except Exception:  # noqa: BLE001 - over 2 GB: no second look
            return None
    return path


def _ov_read(core: Any, path: Path) -> tuple[Any, str | None]:
    try:
        with _quiet():
            return core.read_model(str(path)), None
    except Exception as e:  # noqa: BLE001 - the frontend's message is the finding
        return None, str(e)


def _ov_summary(msg: str) -> str:
    """The frontend's one-line summary ("Conversion is failed for: Conv-12") or its last line."""
    lines = [ln.strip(" -") for ln in msg.splitlines() if ln.strip(" -")]
    said = [ln for ln in lines if ln.startswith(("No conversion rule", "Conversion is failed"))]
    if said:
        return "; ".join(said)[:300]
    return next((ln for ln in lines if "support" in ln.lower()), lines[-1] if lines else "no message")[:300]


def _ov_failure(res: dict[str, Any], g: Graph, msg: str) -> dict[str, Any]:
    """The preview when OpenVINO's frontend cannot read the model: op types it has no rule for are
    unsupported ops; a node it failed to convert (a rule exists) is named with the frontend's reason,
    and the op type is not blamed."""
    at = _OV_AT_NODE.search(msg)
    if at is not None:  # the frontend failed at one node (e.g. a graph it cannot read), not on an op type
        op_type, name = at.group(1), at.group(2)
        lines = [ln.strip() for ln in msg[: at.start()].splitlines() if ln.strip()]
        why = lines[-1] if lines else "the frontend failed"
        node = next((lay for lay in g.layers if lay.op.split(":")[-1] == op_type
                     and (lay.name == name or lay.name.endswith(f"_{name}"))), None)
        entry = (_entry(node, "") if node is not None
                 else {"op": op_type, "type": op_type, "node": name, "module": None, "hint": ""})
        entry["hint"] = (f"OpenVINO's frontend failed at this node ({why[:200]}); the op type itself is "
                         "supported elsewhere: convert from the source model or its ONNX export instead")
        res["notes"].append(f"read_model failed at {op_type} node {name}: {why[:300]}")
        res["status"] = "error"
        res["unsupported"] = [entry]
        return res
    res["notes"].append(f"read_model failed: {_ov_summary(msg)}")
    unsupported: list[dict[str, Any]] = []
    supported: dict[str, bool] = {}
    no_rule = {t.strip().rsplit("-", 1)[0].rsplit(".", 1)[-1] for m in _OV_NO_RULE.finditer(msg)
               for t in m.group(1).split(",") if t.strip()}
    for lay in g.layers:
        if _visible(lay) and lay.op.split(":")[-1] in no_rule:
            supported[lay.type] = False
            unsupported.append(_entry(lay, "OpenVINO's frontend has no conversion rule for this op; replace it, or "
                                           "write an OpenVINO extension for it"))
    by_output = {o: lay for lay in g.layers for o in lay.outputs}
    reasons = msg.split("While validating ONNX node")
    for m in _OV_FAILED_AT.finditer(msg):
        lay = by_output.get(m.group(2).strip()) or next((x for x in g.layers if x.name == m.group(2).strip()), None)
        if lay is None or any(u["node"] == lay.name for u in unsupported):
            continue
        tail = next((r for r in reasons if r.lstrip(" '").startswith(f"<Node({m.group(1)}): {m.group(2)}")), "")
        why = [ln.strip() for ln in tail.splitlines()[1:] if ln.strip() and not ln.strip().startswith(("Check ", "FrontEnd"))]
        unsupported.append(_entry(lay, f"OpenVINO's frontend failed to convert this {m.group(1)} node "
                                       f"({(why[0] if why else 'no reason given')[:160]}); it has a rule for "
                                       f"{m.group(1)}: the shapes or types reaching it here are the cause"))
    if not unsupported:
        first = _OV_FAILED_AT.search(msg)
        if first is not None:  # failed nodes the counted graph does not hold (an If branch not counted)
            tail = msg[first.end():].splitlines()
            why = next((ln.strip("': ") for ln in tail if ln.strip("': ")
                        and not ln.strip("': ").startswith(("Check ", "FrontEnd", "Summary"))), "")
            res["notes"].append(f"the frontend has rules for these op types; it failed on this graph, first at "
                                f"{first.group(1)} node {first.group(2).strip()}: {why[:200] or 'no reason given'}")
        res["status"] = "error"
        return res
    return _finish(res, g, supported, set(), unsupported)


def _preview_openvino(ctx: dict[str, Any]) -> dict[str, Any]:
    if importlib.util.find_spec("openvino") is None:
        return _result("openvino", "-", status="unavailable", notes=["pip install 'edgeship[openvino]'"])
    kind = ctx["kind"]
    if kind == "tflite":
        path, g = ctx["path"], ctx["graph"]
    else:
        g = ctx.get("onnx_graph")
        if g is None:
            res = _preview_onnx(ctx)
            res["target"] = "openvino"
            res["notes"].append("checked through the ONNX export, which fails")
            return res
        path = ctx["onnx_file"]
    import openvino as ov

    how = "openvino Core().read_model + query_model(CPU)" + (" on the ONNX export" if kind in ("torch", "pt2") else "")
    res = _result("openvino", how, fast_kernels="OpenVINO CPU plugin")
    core = ov.Core()
    model, msg = _ov_read(core, path)
    dims = _placeholders(ctx)
    if msg is not None and dims:  # the placeholder shape (dynamic dims at 1) may be what fails, not an op
        orig = _original_file(ctx)
        shipped, msg2 = _ov_read(core, orig) if orig is not None else (None, None)
        if shipped is not None:
            res["checked_with"] += " on the model as shipped (dynamic dims left dynamic)"
            res["notes"].append(f"at the placeholder shape ({dims}) OpenVINO's frontend fails ({_ov_summary(msg)}); "
                                "the model as shipped, its dims left dynamic, reads: that is what is checked here. "
                                "Give --input-shape NAME=... with the real sizes to check those")
            model, msg = shipped, None
        elif msg2 is not None:
            msg = msg2
            res["notes"].append(f"read_model fails with the dims left dynamic as at the placeholder shape ({dims})")
    if msg is not None:
        return _ov_failure(res, g, msg)
    ops = model.get_ordered_ops()
    if len(ops) > OV_QUERY_MAX_OPS:  # query_model's time grows with the square of the ops (1k: 5 s, 2k: 15 s)
        res["checked_with"] = res["checked_with"].replace("read_model + query_model(CPU)",
                                                          "read_model (query_model skipped: too many ops)")
        res["notes"].append(f"the frontend converts every op; the CPU plugin's per-op check was skipped: {len(ops)} "
                            f"ops is over {OV_QUERY_MAX_OPS}, where it takes minutes; deploy --targets openvino "
                            "checks them")
        return _finish(res, g, {}, None, [])
    with _quiet():
        q = core.query_model(model, "CPU")
    bad_prefixes: set[str] = set()
    for op in ops:
        if op.get_type_name() in ("Parameter", "Result", "Constant"):
            continue
        if op.get_friendly_name() not in q:
            bad_prefixes.add(op.get_friendly_name().split("/")[0])
    unsupported = []
    supported = {}
    fast = set()
    for lay in g.layers:
        names = {lay.name, *lay.outputs}
        if names & bad_prefixes:
            supported[lay.type] = False
            unsupported.append(_entry(lay, "the OpenVINO CPU plugin cannot run this op; replace it or run it "
                                           "outside the model"))
        else:
            fast.add(lay.name)
    if bad_prefixes and not unsupported:
        res["notes"].append("ops the CPU plugin rejects: " + ", ".join(sorted(bad_prefixes))[:300])
    return _finish(res, g, supported, fast, unsupported)


# ---- executorch -------------------------------------------------------------------------

def _preview_executorch(ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["kind"] not in ("torch", "pt2"):
        return _result("executorch", "-", status="not_applicable",
                       notes=["ExecuTorch converts from torch programs only; analyze the torch source"])
    if importlib.util.find_spec("executorch") is None:
        return _result("executorch", "-", status="unavailable", notes=["pip install 'edgeship[executorch]'"])
    ep = ctx["exported"]
    res = _result("executorch", "executorch.exir.to_edge + XnnpackPartitioner().partition (tags only, no lowering)",
                  fast_kernels="XNNPACK delegate")
    try:
        with _quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )
            from executorch.exir import to_edge

            edge = to_edge(ep)
            tagged = XnnpackPartitioner().partition(edge.exported_program()).tagged_exported_program
    except Exception as e:  # noqa: BLE001 - the message is the finding
        res["status"] = "unsupported"
        res["unsupported"] = [{"op": None, "type": None, "node": None, "module": None,
                               "hint": f"executorch to_edge fails: {type(e).__name__}: {first_line(e, 300)}"}]
        _name_failing_op(res, str(e), ctx.get("graph"))
        return res
    from .torch_graph import graph_from_program

    eg = graph_from_program(tagged)
    delegated = {n.name for n in tagged.graph.nodes if "delegation_tag" in n.meta}
    res["notes"].append("ops not delegated run on ExecuTorch's portable kernels (much slower) if it has one; "
                        "an op with neither fails at load time")
    return _finish(res, eg, {}, delegated, [])


# ---- tflite -----------------------------------------------------------------------------

def _tflite_delegated(data: dict[str, Any]) -> set[int] | None:
    """Op indices inside the XNNPACK delegate's partitions, from its boundary tensors."""
    dels = data.get("delegates") or []
    if not dels or any("error" in d for d in dels):
        return None
    produced = {i for o in data["ops"] for i in o["outputs"]}
    consts = {t["index"] for t in data["tensors"]} - produced - set(data["inputs"])
    inside: set[int] = set()
    for d in dels:
        frontier = set(d["inputs"]) | consts
        boundary_in = set(d["inputs"])
        for o in data["ops"]:
            if o["op"] not in TFLITE_XNNPACK_BUILTINS:
                continue
            if any(i in boundary_in for i in o["outputs"]):
                continue
            if all(i < 0 or i in frontier for i in o["inputs"]):
                inside.add(o["index"])
                frontier.update(o["outputs"])
    return inside


def _preview_tflite(ctx: dict[str, Any]) -> dict[str, Any]:
    g: Graph = ctx["graph"]
    if ctx["kind"] == "tflite":
        data = ctx["tflite_data"]
        res = _result("tflite", "LiteRT interpreter (ai_edge_litert) with its default XNNPACK delegate",
                      fast_kernels="XNNPACK delegate")
        inside = _tflite_delegated(data)
        if inside is None:
            res["notes"].append("the XNNPACK delegate was not applied; share from the documented op list")
            return _finish(res, g, {}, None, [], fast_types=TFLITE_XNNPACK)
        fast = {f"{o['op'].lower()}_{o['index']}" for o in data["ops"] if o["index"] in inside}
        res["notes"].append("delegated nodes are inferred from the delegate's boundary tensors")
        return _finish(res, g, {}, fast, [])
    unlisted = [lay for lay in g.layers if _visible(lay) and lay.type not in TFLITE_CONVERTIBLE]
    why = _refuses("tflite", ctx["kind"])
    if why is not None:  # e.g. an ONNX file while the tflite target converts from torch programs only
        res = _result("tflite", "-", status="not_applicable",
                      notes=[f"not applicable: {why}" + ("; an ONNX file needs a bridge to torch (onnx2torch) first"
                                                         if ctx["kind"] == "onnx" else "")])
        if unlisted:
            types = sorted({lay.type for lay in unlisted})
            res["notes"].append("ops outside the documented list of TFLite builtins, should it be bridged: "
                                + ", ".join(types[:12]) + (f" (+{len(types) - 12})" if len(types) > 12 else ""))
        return res
    how = "documented op list (edgeship.analysis.optables): TFLite builtins and the XNNPACK delegate's ops"
    res = _result("tflite", how + (" (the ONNX graph, as the torch bridge would carry it)" if ctx["kind"] == "onnx"
                                   else ""), fast_kernels="XNNPACK delegate")
    unsupported = []
    supported: dict[str, bool] = {}
    for lay in unlisted:
        supported[lay.type] = False
        unsupported.append(_entry(lay, f"{lay.type} is not in edgeship's documented list of ops that lower to TFLite "
                                       "builtins (edgeship.analysis.optables): the converter may fail or emit a custom "
                                       "op the standard runtime lacks; deploy --targets tflite tells"))
    if ctx["kind"] == "onnx":  # it gets there only through the bridge: an op the bridge lacks ends it
        gaps = _bridge_gaps(ctx, g, supported, "tflite")  # the refusal deploy gives: it replaces the op-list guess
        unsupported = [u for u in unsupported if u["node"] not in {x["node"] for x in gaps}] + gaps
    res["notes"].append("from documentation, not from running the converter; litert-torch may still decompose "
                        "some ops into builtins")
    return _finish(res, g, supported, None, unsupported, fast_types=TFLITE_XNNPACK)


def _bridge_gaps(ctx: dict[str, Any], g: Graph, supported: dict[str, bool], target: str) -> list[dict[str, Any]]:
    """The nodes of an ONNX source the bridge to torch has no converter for (deploy refuses the
    file for ``target`` because of them), as unsupported entries."""
    model = ctx.get("onnx_model_original")
    if model is None:
        return []
    try:
        from ..sources.bridge import missing_converters

        missing = missing_converters(model)
    except Exception:  # noqa: BLE001 - the bridge failing to load is said by its own check
        return []
    by_name = {lay.name: lay for lay in g.layers}
    out = []
    for op, node in missing:
        supported[op] = False
        hint = (f"the ONNX -> torch bridge (onnx2torch) has no converter for {op}: deploy --targets {target} "
                "refuses this file (use onnx, ort or openvino, or export the model from torch)")
        lay = by_name.get(node)
        out.append(_entry(lay, hint) if lay is not None else
                   {"op": op, "type": op, "node": node, "module": None, "hint": hint})
    return out


def _refuses(target: str, kind: str) -> str | None:
    """Why ``target`` does not convert from a ``kind`` model (its declared ``accepts``), or None."""
    try:
        from ..targets import target_class

        return target_class(target).refuses(source_kind=kind)
    except Exception:  # noqa: BLE001 - a target that cannot be imported is not this preview's finding
        return None


# ---- coreml -----------------------------------------------------------------------------

_COREML_OPS: set[str] | None = None
_SUFFIXES = {"default", "int", "tensor", "tensor_mode", "scalar", "tensor_scalar"}


def coreml_torch_ops() -> set[str] | None:
    """Names coremltools' torch frontend converts, read from its sources (no import), or None."""
    global _COREML_OPS
    if _COREML_OPS is not None:
        return _COREML_OPS
    spec = importlib.util.find_spec("coremltools")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "converters" / "mil" / "frontend" / "torch"
    names: set[str] = set()
    for f in ("ops.py", "quantization_ops.py", "dim_order_ops.py"):
        p = root / f
        if not p.is_file():
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                fn = d.func if isinstance(d, ast.Call) else d
                if getattr(fn, "id", getattr(fn, "attr", None)) != "register_torch_op":
                    continue
                names.add(node.name)
                if isinstance(d, ast.Call):
                    for kw in d.keywords:
                        if kw.arg == "torch_alias" and isinstance(kw.value, (ast.List, ast.Tuple)):
                            names.update(e.value for e in kw.value.elts if isinstance(e, ast.Constant))
    _COREML_OPS = names or None
    return _COREML_OPS


def _coreml_key(op: str) -> str:
    """coremltools' ``sanitize_op_kind`` + ``unify_inplace_and_functional`` on 'aten.add.Tensor'."""
    parts = op.lower().split(".")
    start = 1 if parts[0] in ("aten", "prim") and len(parts) > 1 else 0
    stop = -1 if parts[-1] in _SUFFIXES and len(parts) - start > 1 else len(parts)
    key = ".".join(parts[start:stop])
    return key[:-1] if key.endswith("_") else key


def _preview_coreml(ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["kind"] not in ("torch", "pt2"):
        return _result("coreml", "-", status="not_applicable",
                       notes=["coremltools (6+) converts from PyTorch only; analyze the torch source"])
    names = coreml_torch_ops()
    if names is None:
        return _result("coreml", "-", status="unavailable", notes=["pip install 'edgeship[coreml]'"])
    from .torch_graph import graph_from_program

    with _quiet():  # what coremltools is given: the ATen-dialect program (its docs: run_decompositions({}))
        g = graph_from_program(ctx["exported"].run_decompositions({}))
    res = _result("coreml", "coremltools torch op registry (read from its installed sources) on the "
                            "run_decompositions({}) program; Neural Engine share from a documented list",
                  fast_kernels="Apple Neural Engine (estimate)")
    unsupported = []
    supported: dict[str, bool] = {}
    for lay in g.layers:
        if not lay.op.startswith("aten.") or _coreml_key(lay.op) in names:
            continue
        supported[lay.type] = False
        short = lay.op.split(".")[1]
        unsupported.append(_entry(lay, f"coremltools has no converter for aten::{short}; rewrite it with "
                                       "supported ops or register one with @register_torch_op"))
    res["notes"].append("the Neural Engine / GPU / CPU placement is decided by Core ML on Apple hardware; "
                        "the share is an estimate (fp16, documented op families)")
    return _finish(res, g, supported, None, unsupported, fast_types=COREML_ANE_FRIENDLY)


# the previews analysis writes itself, by target name; any other registered target is previewed as
# the target it derives from (_preview_registered)
_PREVIEWS = {"onnx": _preview_onnx, "ort": _preview_ort, "openvino": _preview_openvino,
             "executorch": _preview_executorch, "tflite": _preview_tflite, "coreml": _preview_coreml}
_READS_ONNX = {"onnx", "ort", "openvino"}  # previews that read the exported ONNX graph


def preview_targets() -> list[str]:
    """What analyze previews by default and for ``all``: the targets ``--targets all`` deploys
    (every registered target not marked hidden)."""
    from ..targets import default_targets

    return default_targets()


def needs_onnx(targets: list[str]) -> bool:
    """Whether the preview of any of ``targets`` reads the exported ONNX graph (its own preview's,
    or that of the target a plugin derives from)."""
    from ..targets import registered_ref, target_class

    return any((t if t in _PREVIEWS else target_class(t).derives_from if registered_ref(t) is not None else None)
               in _READS_ONNX for t in targets)


def _preview_registered(t: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """A target edgeship does not ship (a plugin): previewed as the target it is built from, when
    it declares one (``derives_from``), else said to offer no preview."""
    from ..targets import target_class

    base = target_class(t).derives_from
    if base in _PREVIEWS:
        res = dict(_PREVIEWS[base](ctx))
        res["target"] = t
        res["notes"] = [*res.get("notes", []), f"previewed as {base}: {t} is built from the {base} artifact"]
        return res
    return _result(t, "-", status="unknown", notes=[f"the {t} target offers no preview: deploy it to find out"])


def preview(targets: list[str], ctx: dict[str, Any]) -> dict[str, Any]:
    """Run the preview of each target on the analysis context; a failing tool is reported, not raised."""
    out: dict[str, Any] = {}
    for t in targets:
        try:
            out[t] = _PREVIEWS[t](ctx) if t in _PREVIEWS else _preview_registered(t, ctx)
        except Exception as e:  # noqa: BLE001 - one tool's failure must not hide the others
            out[t] = _result(t, "-", status="error", notes=[f"the preview failed: {type(e).__name__}: {first_line(e, 300)}"])
    return out
