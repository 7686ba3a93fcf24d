"""analyze on the classes of real models from other ecosystems (issue 31): the network inside an ``If``
(silero-vad), ``Loop``/``Scan`` bodies, weights held in ``Constant`` nodes (Paddle2ONNX), recurrent
layers (LSTM/GRU/RNN), dims declared -1 and shapes by input name, and previews at a placeholder
shape. Every model is built here with onnx.helper."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeship.analysis import analyze
from edgeship.analysis.onnx_graph import graph_from_onnx
from edgeship.errors import UsageError

F = TensorProto.FLOAT


def _const(name: str, arr: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(arr, name))


def _save(path: Path, nodes: list, inputs: list, outputs: list, inits: list | None = None, opset: int = 17) -> Path:
    g = helper.make_graph(nodes, "g", inputs, outputs, inits or [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def _conv_branch(tag: str, c_out: int, k: int) -> onnx.GraphProto:
    """x [1, 1, length] padded by pads computed in the graph (a Transpose of a constant, as the torch
    exporter writes them: ONNX's own inference cannot follow it), then a Conv 1->c_out, kernel k."""
    rng = np.random.default_rng(0)
    nodes = [
        _const(f"{tag}_p", np.array([[0, 0, 0], [0, 0, 2]], np.int64).T.copy()),
        helper.make_node("Transpose", [f"{tag}_p"], [f"{tag}_pt"], name=f"{tag}_transpose"),
        _const(f"{tag}_flat", np.array([6], np.int64)),
        helper.make_node("Reshape", [f"{tag}_pt", f"{tag}_flat"], [f"{tag}_pads"], name=f"{tag}_reshape"),
        helper.make_node("Pad", ["x", f"{tag}_pads"], [f"{tag}_xp"], name=f"{tag}_pad"),
        _const(f"{tag}.conv.weight", rng.standard_normal((c_out, 1, k)).astype(np.float32)),
        helper.make_node("Conv", [f"{tag}_xp", f"{tag}.conv.weight"], [f"{tag}_y"], name=f"{tag}_conv"),
        helper.make_node("ReduceMean", [f"{tag}_y"], [f"{tag}_out"], name=f"{tag}_mean", keepdims=0),
    ]
    return helper.make_graph(nodes, f"{tag}_branch", [], [helper.make_tensor_value_info(f"{tag}_out", F, [])])


def _if_model(path: Path) -> Path:
    """The network inside an If on an int64 scalar input ``sr`` (silero-vad's layout): 16 kHz branch
    Conv 1->8 k5, 8 kHz branch Conv 1->4 k3; x [batch, 1, samples] dynamic."""
    nodes = [_const("sr16k", np.array(16000, np.int64)),
             helper.make_node("Equal", ["sr", "sr16k"], ["is16k"], name="equal_sr"),
             helper.make_node("If", ["is16k"], ["y"], name="if_sr", then_branch=_conv_branch("hi", 8, 5),
                              else_branch=_conv_branch("lo", 4, 3))]
    return _save(path, nodes, [helper.make_tensor_value_info("x", F, ["batch", 1, "samples"]),
                               helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                 [helper.make_tensor_value_info("y", F, [])])


# x [1, 1, 64] padded by 2: length 66; conv k5 -> 62 outputs x 8 channels; k3 -> 64 x 4
HI_MACS, LO_MACS = 62 * 8 * 5, 64 * 4 * 3


def test_if_branches_are_counted_and_the_choice_is_said(tmp_path):
    path = _if_model(tmp_path / "vad.onnx")
    r = analyze(path, targets=[], profile=False, input_shapes={"x": (1, 1, 64), "sr": ()})
    assert r["totals"]["macs"] == HI_MACS  # the larger branch, its shapes through the computed pads
    assert r["totals"]["params"] == 8 * 5 + 4 * 3  # the file holds both branches' weights
    said = [n for n in r["notes"] if n.startswith("If if_sr")]
    assert said and "then_branch" in said[0] and "else_branch" in said[0] and "'sr'" in said[0]
    assert "--input-value sr=" in said[0]
    conv = next(row for row in r["layers"] if row["name"] == "hi_conv")
    assert conv["scope"] == "if_sr/then_branch" and conv["macs"] == HI_MACS
    # a value given for sr decides the If: the 8 kHz branch alone, no guess said
    r8 = analyze(path, targets=[], profile=False, input_shapes={"x": (1, 1, 64), "sr": ()},
                 source_options={"input_values": {"sr": (8000.0,)}})
    assert r8["totals"]["macs"] == LO_MACS
    assert not any(n.startswith("If if_sr") for n in r8["notes"])
    assert any("decided" in n for n in r8["notes"])


def test_loop_and_scan_bodies_count_once_per_iteration(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
         helper.make_node("MatMul", ["h_in", "w"], ["h_out"], name="body_matmul")],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", F, [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", F, [1, 4])])
    loop = helper.make_node("Loop", ["trips", "", "x"], ["h"], name="loop", body=body)
    scan_body = helper.make_graph(
        [helper.make_node("MatMul", ["s_in", "w2"], ["s_out"], name="scan_matmul")], "scan_body",
        [helper.make_tensor_value_info("s_in", F, [1, 4])], [helper.make_tensor_value_info("s_out", F, [1, 3])])
    scan = helper.make_node("Scan", ["seq"], ["ys"], name="scan", body=scan_body, num_scan_inputs=1)
    inits = [numpy_helper.from_array(np.ones((4, 4), np.float32), "w"),
             numpy_helper.from_array(np.ones((4, 3), np.float32), "w2"),
             numpy_helper.from_array(np.array(5, np.int64), "trips")]
    path = _save(tmp_path / "loops.onnx", [loop, scan],
                 [helper.make_tensor_value_info("x", F, [1, 4]), helper.make_tensor_value_info("seq", F, [7, 1, 4])],
                 [helper.make_tensor_value_info("h", F, [1, 4]), helper.make_tensor_value_info("ys", F, [7, 1, 3])], inits)
    r = analyze(path, targets=[], profile=False)
    rows = {row["name"]: row for row in r["layers"]}
    assert rows["body_matmul"]["macs"] == 5 * 4 * 4 and rows["body_matmul"]["repeat"] == 5
    assert rows["scan_matmul"]["macs"] == 7 * 3 * 4 and rows["scan_matmul"]["repeat"] == 7
    assert r["totals"]["macs"] == 80 + 84
    assert rows["scan_matmul"]["scope"] == "scan/body" and rows["body_matmul"]["scope"] == "loop/body"
    assert r["totals"]["params"] == 16 + 12


def test_constant_node_weights_are_params(tmp_path):
    """Paddle2ONNX keeps every weight in a Constant node: they are the model's parameters."""
    rng = np.random.default_rng(1)
    nodes = [_const("conv1.w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
             _const("conv1.b", rng.standard_normal(8).astype(np.float32)),
             _const("shape", np.array([1, -1], np.int64)),
             helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["y"], name="flatten")]
    path = _save(tmp_path / "paddle_like.onnx", nodes, [helper.make_tensor_value_info("x", F, [1, 3, 4, 4])],
                 [helper.make_tensor_value_info("y", F, [1, 128])])
    r = analyze(path, targets=[], profile=False)
    assert r["totals"]["params"] == 8 * 3 * 3 * 3 + 8  # the int64 shape constant is not a parameter
    assert r["totals"]["weight_bytes"]["fp32"] == r["totals"]["params"] * 4
    assert next(row for row in r["layers"] if row["name"] == "conv1")["params"] == 8 * 27 + 8


@pytest.mark.parametrize("op,gates,layout,direction", [("LSTM", 4, 0, "bidirectional"), ("GRU", 3, 1, "forward"),
                                                       ("RNN", 1, 0, "forward")])
def test_recurrent_layers_count_every_step(tmp_path, op, gates, layout, direction):
    seq, batch, n_in, hidden = 10, 2, 16, 32
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, n_in)).astype(np.float32), "W")
    rr = numpy_helper.from_array(rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32), "R")
    x_shape = [seq, batch, n_in] if layout == 0 else [batch, seq, n_in]
    node = helper.make_node(op, ["x", "W", "R"], ["y"], name="rnn", hidden_size=hidden, direction=direction,
                            layout=layout)
    y_shape = [seq, dirs, batch, hidden] if layout == 0 else [batch, seq, dirs, hidden]
    path = _save(tmp_path / f"{op}.onnx", [node], [helper.make_tensor_value_info("x", F, x_shape)],
                 [helper.make_tensor_value_info("y", F, y_shape)], [w, rr])
    r = analyze(path, targets=[], profile=False)
    expect = gates * (n_in + hidden) * hidden * seq * batch * dirs
    assert r["totals"]["macs"] == expect
    assert r["macs_by_kind"] == {"recurrent": expect}


def test_torch_lstm_is_counted(tmp_path, monkeypatch):
    (tmp_path / "rnn_factory.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.rnn = torch.nn.LSTM(16, 32, num_layers=2, batch_first=True)\n"
        "    def forward(self, x):\n"
        "        return self.rnn(x)[0]\n"
        "def model():\n"
        "    return M().eval(), (torch.randn(1, 10, 16),)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = analyze("rnn_factory:model", targets=[], profile=False)
    assert r["totals"]["macs"] == 4 * (16 + 32) * 32 * 10 + 4 * (32 + 32) * 32 * 10


def test_tflite_sequence_lstm_is_counted():
    from edgeship.analysis.graph import Layer
    from edgeship.analysis.tflite_graph import _count

    # UNIDIRECTIONAL_SEQUENCE_LSTM: input [batch 1, time 10, 16]; 4 input weights [32, 16], 4 recurrent [32, 32]
    tinfo = {0: {"shape": [1, 10, 16]}, 99: {"shape": [1, 10, 32]}}
    tinfo.update({i: {"shape": [32, 16]} for i in range(1, 5)})
    tinfo.update({i: {"shape": [32, 32]} for i in range(5, 9)})
    tinfo.update({i: {"shape": [32]} for i in range(9, 13)})
    o = {"op": "UNIDIRECTIONAL_SEQUENCE_LSTM", "inputs": [0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -1, -1, 9, 10, 11, 12],
         "outputs": [99]}
    layer = Layer(name="lstm", op="UNIDIRECTIONAL_SEQUENCE_LSTM", type="LSTM")
    _count(layer, o, tinfo)
    assert layer.macs == 4 * (16 + 32) * 32 * 10


def test_dims_declared_minus_one_and_shapes_by_name(tmp_path):
    """Paddle2ONNX marks a dynamic dim -1; shapes given by input name reach the graph."""
    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "fc.weight")
    x = helper.make_tensor_value_info("x", F, [-1, 4])
    m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"], name="fc")], "g",
                                            [x], [helper.make_tensor_value_info("y", F, [-1, 2])], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    g = graph_from_onnx(m)
    assert sum(lay.macs for lay in g.layers) == 8 and g.placeholder_dims == {"x": [0]}
    g = graph_from_onnx(m, {"x": (5, 4)})
    assert sum(lay.macs for lay in g.layers) == 5 * 8 and g.placeholder_dims == {}
    g = graph_from_onnx(m, {"x": (0, 4)})  # 0 keeps the dim dynamic
    assert g.placeholder_dims == {"x": [0]}
    with pytest.raises(UsageError, match="'nope'"):
        graph_from_onnx(m, {"nope": (1, 4)})


def _pool_model(path: Path) -> Path:
    """x [N, 3, H, W] all dynamic, then a 3x3 AveragePool without padding: at the 1x1 placeholder the
    pool's window is larger than its input, which OpenVINO's frontend refuses."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "conv.weight")
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv"),
             helper.make_node("AveragePool", ["c"], ["y"], name="pool", kernel_shape=[3, 3])]
    return _save(path, nodes, [helper.make_tensor_value_info("x", F, ["n", 3, "h", "w"])],
                 [helper.make_tensor_value_info("y", F, ["n", 4, "h2", "w2"])], [w], opset=12)


def test_openvino_preview_at_a_placeholder_shape_blames_no_op(tmp_path):
    pytest.importorskip("openvino")
    r = analyze(_pool_model(tmp_path / "pool.onnx"), targets="openvino", profile=False)
    ov = r["compatibility"]["openvino"]
    assert ov["status"] == "ready", ov
    assert ov["unsupported"] == []
    assert any("placeholder shape" in n for n in ov["notes"])
    assert "as shipped" in ov["checked_with"]


def test_tflite_preview_of_an_onnx_file_is_not_applicable_and_knows_the_builtins(tmp_path):
    from edgeship.analysis.optables import TFLITE_BUILTIN_OF, TFLITE_CONVERTIBLE
    from edgeship.targets import target_class

    r = analyze(_pool_model(tmp_path / "pool.onnx"), targets="tflite", profile=False)
    tfl = r["compatibility"]["tflite"]
    if "onnx" not in target_class("tflite").accepts:
        assert tfl["status"] == "not_applicable", tfl
        assert tfl["unsupported"] == [] and "onnx" in tfl["notes"][0]
    assert {"Equal", "Shape", "Max", "Min", "Reciprocal"} <= TFLITE_CONVERTIBLE
    litert = pytest.importorskip("ai_edge_litert.schema_py_generated")
    builtins = {k for k in vars(litert.BuiltinOperator) if not k.startswith("_")}
    assert set(TFLITE_BUILTIN_OF.values()) <= builtins


def test_silero_layout_counts_like_its_static_variant(tmp_path):
    """The If model at a given sample rate counts what the same network without the If counts."""
    path = _if_model(tmp_path / "vad.onnx")
    flat = onnx.load(str(path))
    then = next(a.g for a in flat.graph.node[2].attribute if a.name == "then_branch")
    static = _save(tmp_path / "static.onnx", list(then.node) + [helper.make_node("Identity", ["hi_out"], ["y"])],
                   [helper.make_tensor_value_info("x", F, [1, 1, 64])], [helper.make_tensor_value_info("y", F, [])])
    a = analyze(path, targets=[], profile=False, input_shapes={"x": (1, 1, 64), "sr": ()},
                source_options={"input_values": {"sr": (16000.0,)}})
    b = analyze(static, targets=[], profile=False)
    assert a["totals"]["macs"] == b["totals"]["macs"] == HI_MACS
    assert math.isclose(a["totals"]["params"], 8 * 5 + 4 * 3)
