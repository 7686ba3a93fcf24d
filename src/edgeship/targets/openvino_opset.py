"""ONNX sources below opset 13 made unambiguous for OpenVINO's reader.

Softmax, LogSoftmax and Hardmax changed meaning at opset 13: before it they flatten their input to
2-D at ``axis`` and normalise over every axis from there on; from 13 on, along ``axis`` alone.
OpenVINO 2026.4 reads opset-11 and -12 ones as opset 13's single-axis op (a 4-D ``Softmax(axis=1)``
at opset 12: max |diff| 0.76 against ONNX Runtime), so :func:`pin_old_axis_ops` spells each such
node out as Flatten(axis) -> op(axis=1) -> Reshape before conversion.
"""

from __future__ import annotations

from typing import Any

from ..formats.onnx import node_subgraphs

__all__ = ["pin_old_axis_ops"]

#: ops whose meaning changed at ONNX opset 13: before it they flatten their input to 2-D at ``axis``
#: (default 1) and normalise over every axis from there on; from 13 on, along ``axis`` alone
_AXIS_OPS = ("Softmax", "LogSoftmax", "Hardmax")
_AXIS_OPSET = 13


def _default_opset(model: Any) -> int | None:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def pin_old_axis_ops(model: Any) -> dict[str, Any] | None:
    """Rewrite, in place, every Softmax/LogSoftmax/Hardmax of an ONNX model below opset 13 whose
    meaning depends on the opset (input rank > 2, or unknown, and ``axis`` not the last one) as
    Flatten(axis) -> op(axis=1) -> Reshape(Shape(input)): what the node means at its own opset,
    spelled so that a reader taking it in the opset-13 sense (OpenVINO 2026.4 for opset 11 and 12)
    computes the same. The output keeps its tensor name; subgraphs are included. Returns
    ``{"opset", "nodes": [{"node", "op", "rank", "axis"}]}``, or None when nothing needed it."""
    import onnx
    from onnx import helper

    opset = _default_opset(model)
    if opset is None or opset >= _AXIS_OPSET:
        return None

    def has_axis_op(graph: Any) -> bool:
        return any((n.op_type in _AXIS_OPS and n.domain in ("", "ai.onnx")) or any(has_axis_op(g) for g in node_subgraphs(n))
                   for n in graph.node)

    if not has_axis_op(model.graph):
        return None
    try:  # ranks from shape inference (dims only: external data need not be loaded)
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - unknown ranks: every such node is rewritten (exact either way)
        inferred = None

    taken: set[str] = set()

    def collect(graph: Any) -> None:
        taken.update(v.name for v in (*graph.input, *graph.output, *graph.value_info))
        taken.update(t.name for t in graph.initializer)
        for n in graph.node:
            taken.update(n.output)
            taken.add(n.name)
            for g in node_subgraphs(n):
                collect(g)

    collect(model.graph)

    def fresh(name: str) -> str:
        out, k = name, 1
        while out in taken:
            out, k = f"{name}_{k}", k + 1
        taken.add(out)
        return out

    pinned: list[dict[str, Any]] = []

    def rewrite(graph: Any, info: Any, outer: dict[str, int]) -> None:
        ranks = dict(outer)
        if info is not None:
            for v in (*info.input, *info.output, *info.value_info):
                if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
                    ranks[v.name] = len(v.type.tensor_type.shape.dim)
            ranks.update({t.name: len(t.dims) for t in info.initializer})
        infos = list(info.node) if info is not None and len(info.node) == len(graph.node) else [None] * len(graph.node)
        nodes, changed = [], False
        for node, inode in zip(graph.node, infos):
            subs = node_subgraphs(node)
            isubs = node_subgraphs(inode) if inode is not None else []
            for k, g in enumerate(subs):
                rewrite(g, isubs[k] if len(isubs) == len(subs) else None, ranks)
            if node.op_type not in _AXIS_OPS or node.domain not in ("", "ai.onnx") or not node.input or not node.output:
                nodes.append(node)
                continue
            axis = next((int(a.i) for a in node.attribute if a.name == "axis"), 1)
            rank = ranks.get(node.input[0])
            if rank is not None:
                a = axis + rank if axis < 0 else axis
                if rank <= 2 or a == rank - 1 or not 0 <= a < rank:
                    nodes.append(node)  # one axis either way (or invalid: left for the reader to refuse)
                    continue
            elif axis < 0 and opset < 11:
                nodes.append(node)  # Flatten takes a negative axis from opset 11 on only
                continue
            else:
                a = axis
            x, y = node.input[0], node.output[0]
            base = node.name or fresh(f"{node.op_type}_{y}")
            flat, two_d, shape = fresh(f"{y}__flat"), fresh(f"{y}__2d"), fresh(f"{y}__shape")
            nodes += [helper.make_node("Flatten", [x], [flat], name=fresh(f"{base}/flatten"), axis=a),
                      helper.make_node(node.op_type, [flat], [two_d], name=base, axis=1),
                      helper.make_node("Shape", [x], [shape], name=fresh(f"{base}/shape")),
                      helper.make_node("Reshape", [two_d, shape], [y], name=fresh(f"{base}/reshape"))]
            pinned.append({"node": base, "op": node.op_type, "rank": rank, "axis": axis})
            changed = True
        if changed:
            del graph.node[:]
            graph.node.extend(nodes)

    rewrite(model.graph, inferred, {})
    return {"opset": opset, "nodes": pinned} if pinned else None
