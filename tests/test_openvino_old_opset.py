"""Softmax, LogSoftmax and Hardmax changed meaning at ONNX opset 13: before it they flatten their
input to 2-D at ``axis`` and normalise over every axis from there on, from 13 on along ``axis``
alone. OpenVINO 2026.4 reads an opset-11/12 Softmax on a 4-D input in the opset-13 sense (max |diff|
0.5-1.0 against ONNX Runtime); the OpenVINO target rewrites such nodes as Flatten + op + Reshape,
what they mean at their own opset, before converting, and says so in the artifact's notes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeship

SHAPE = [1, 4, 3, 3]


def _conv_then(op: str, opset: int, path, axis: int | None = 1, shape=SHAPE):
    """x [N,4,H,W] -> Conv 1x1 (4->C) -> ``op``(axis) at ``opset`` ([N,C,H,W] = ``shape``), saved to ``path``."""
    rng = np.random.default_rng(0)
    c = shape[1]
    w = numpy_helper.from_array(rng.standard_normal((c, 4, 1, 1)).astype(np.float32), "w")
    attrs = {} if axis is None else {"axis": axis}
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"),
         helper.make_node(op, ["h"], ["y"], name="norm", **attrs)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [shape[0], 4, *shape[2:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("opset", [11, 12])
def test_an_old_opset_softmax_on_a_4d_input_converts_to_openvino_and_verifies(opset, tmp_path):
    pytest.importorskip("openvino")
    src = _conv_then("Softmax", opset, tmp_path / f"softmax{opset}.onnx")
    # before the rewrite: "does not match its source ... it first diverges at node 'norm' (Softmax)"
    res = edgeship.deploy(str(src), out=tmp_path / "out", targets=["openvino"], isolate=False)
    (art,) = res.artifacts
    assert art.verification.passed
    assert art.provenance.config["old_opset_axis_ops"] == {
        "opset": opset, "nodes": [{"node": "norm", "op": "Softmax", "rank": 4, "axis": 1}]}
    note = next(n for n in art.notes if "opset 13" in n)
    assert f"opset {opset}" in note and "norm (Softmax, 4-D input, axis 1)" in note and "OpenVINO" in note


def test_the_ir_computes_what_onnx_runtime_computes_for_every_old_axis_op(tmp_path):
    ov = pytest.importorskip("openvino")
    from edgeship.targets.openvino import _convert_onnx

    x = np.random.default_rng(1).standard_normal((1, 4, 3, 3)).astype(np.float32)
    for opset in (9, 11, 12):
        for op in ("Softmax", "LogSoftmax", "Hardmax"):
            for axis in (None, 0, 1, 2, -2):
                if axis is not None and axis < 0 and opset < 11:
                    continue
                path = _conv_then(op, opset, tmp_path / f"{op}{opset}{axis}.onnx", axis=axis)
                ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                model, pinned = _convert_onnx(path)
                assert pinned and pinned["nodes"][0]["op"] == op
                got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: x})[0]
                assert np.abs(np.asarray(got) - ref).max() < 1e-5, (op, opset, axis)


def test_the_rewrite_is_exact_and_leaves_one_axis_nodes_alone(tmp_path):
    from edgeship.targets.openvino import pin_old_axis_ops

    x = np.random.default_rng(2).standard_normal((2, 4, 3, 5)).astype(np.float32)
    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        for axis in (None, 0, 1, 2, 3, -1, -3):
            path = _conv_then(op, 12, tmp_path / f"{op}{axis}.onnx", axis=axis, shape=[2, 6, 3, 5])
            model = onnx.load(str(path))
            before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            pinned = pin_old_axis_ops(model)
            last = axis in (3, -1)  # the last axis: one axis at every opset, nothing to rewrite
            assert (pinned is None) == last, (op, axis)
            onnx.checker.check_model(model)
            after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            feeds = {"x": x}
            np.testing.assert_allclose(after.run(None, feeds)[0], before.run(None, feeds)[0], atol=1e-6)
            assert [o.name for o in model.graph.output] == ["y"]


def test_opset_13_rank_2_and_unrelated_models_are_converted_as_they_are(tmp_path):
    from edgeship.targets.openvino import pin_old_axis_ops

    m13 = onnx.load(str(_conv_then("Softmax", 13, tmp_path / "s13.onnx")))
    assert pin_old_axis_ops(m13) is None
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7])])
    m2d = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    assert pin_old_axis_ops(m2d) is None
    assert len(m2d.graph.node) == 1


def test_a_softmax_inside_a_subgraph_or_of_unknown_rank_is_rewritten(tmp_path):
    from edgeship.targets.openvino import pin_old_axis_ops

    body = helper.make_graph([helper.make_node("Softmax", ["x"], ["s"], name="inner", axis=1)], "then", [],
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "else", [],
                              [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=other)], "g",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],  # rank unknown
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 7
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    pinned = pin_old_axis_ops(m)
    assert pinned == {"opset": 11, "nodes": [{"node": "inner", "op": "Softmax", "rank": None, "axis": 1}]}
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    feeds = {"c": np.array(True), "x": x}
    np.testing.assert_allclose(got.run(None, feeds)[0], ref.run(None, feeds)[0], atol=1e-6)
