"""The ONNX -> torch bridge (edgeship.sources.bridge): ONNX files reach the torch-only targets
(tflite, executorch), verified against the ONNX model in ONNX Runtime; an op the bridge cannot
take fails its cells by name while the onnx artifact lands."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeship
from edgeship.errors import MissingExtraError, UnsupportedError

# installed with --no-deps (its metadata requires torchvision, which edgeship does not use): not importable as a whole
pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnx2torch") is None,
                                reason="pip install --no-deps onnx2torch==1.5.15")


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    """A Constant node (how paddle2onnx and torch's exporters store weights)."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_t"), name=f"const_{name}")


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_net(path: Path) -> Path:
    """x [N, 3, 8, 8] -> Conv (weights in Constant nodes) -> Relu -> GlobalAveragePool -> Reshape to
    [N, -1] with N read through Shape -> Gather -> Unsqueeze -> Concat -> Gemm -> y [N, 5]."""
    rng = np.random.default_rng(0)
    nodes = [
        _const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3),
        _const("b", rng.standard_normal(4).astype(np.float32) * 0.1),
        _const("fc_w", rng.standard_normal((5, 4)).astype(np.float32)),
        _const("fc_b", rng.standard_normal(5).astype(np.float32)),
        _const("zero", np.array(0, np.int64)),
        _const("minus1", np.array([-1], np.int64)),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Shape", ["p"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0, name="batch"),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0, name="cat"),
        helper.make_node("Reshape", ["p", "target"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1, name="fc"),
    ]
    g = helper.make_graph(nodes, "conv_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                          [numpy_helper.from_array(np.array([0], np.int64), "axes0")])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def nms_net(path: Path) -> Path:
    """boxes [1, 6, 4], scores [1, 1, 6] -> NonMaxSuppression -> selected [?, 3] (int64)."""
    nodes = [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out"], ["selected"], name="nms")]
    g = helper.make_graph(nodes, "nms_net",
                          [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
                           helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 6])],
                          [helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3])],
                          [numpy_helper.from_array(np.array([3], np.int64), "max_out")])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)]), path)


def lstm_net(path: Path, directions: int = 1) -> Path:
    """x [T=3, 1, 4] -> LSTM (hidden 5, weights as initializers) -> Y_h [1, 1, 5]: Silero VAD's class."""
    rng = np.random.default_rng(1)
    d = directions
    inits = [numpy_helper.from_array(rng.standard_normal((d, 20, 4)).astype(np.float32) * 0.5, "W"),
             numpy_helper.from_array(rng.standard_normal((d, 20, 5)).astype(np.float32) * 0.5, "R"),
             numpy_helper.from_array(rng.standard_normal((d, 40)).astype(np.float32) * 0.1, "B")]
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "y_h"], hidden_size=5, name="lstm",
                              direction="forward" if d == 1 else "bidirectional")]
    g = helper.make_graph(nodes, "lstm_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 4])],
                          [helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [d, 1, 5])], inits)
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), path)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_an_onnx_file_reaches_tflite_and_executorch_verified_against_onnx_runtime(tmp_path):
    """Constant-node weights and a Shape -> Gather -> Reshape path (as PaddleOCR's exports have)."""
    path = conv_net(tmp_path / "net.onnx")
    out = tmp_path / "out"
    res = edgeship.deploy(str(path), targets=["onnx", "tflite", "executorch"], isolate=False, package=False, out=out,
                          input_shape=["x=1,3,8,8"])
    arts = {a.target: a for a in res.artifacts}
    assert set(arts) == {"onnx", "tflite", "executorch"}
    for name in ("tflite", "executorch"):
        a = arts[name]
        assert a.verification.passed, (name, a.verification)
        assert a.verification.reference.startswith("onnx source"), a.verification.reference  # ORT, not the torch module
        assert any("bridged from ONNX with onnx2torch 1.5.15 at the example shapes [x=[1, 3, 8, 8]]" in n
                   and "takes those shapes only" in n for n in a.notes), a.notes
        assert a.provenance.parent_digest == arts["onnx"].provenance.parent_digest  # made from the ONNX file
        assert [s.name for s in a.inputs] == ["x"] and [s.name for s in a.outputs] == ["y"]
    assert "onnx2torch" in arts["tflite"].provenance.tool_versions
    assert not any(m.startswith("torchvision") for m in sys.modules)


def test_the_plan_and_the_capability_table_take_onnx_for_tflite_and_executorch(tmp_path):
    from edgeship.targets import target_class

    path = conv_net(tmp_path / "net.onnx")
    p = edgeship.plan(edgeship.DeployConfig.build(model=str(path), targets="all"))
    built = {s["target"] for s in p.steps}
    assert {"tflite", "executorch"} <= built, p.skipped
    assert target_class("tflite").refuses("onnx") is None and target_class("executorch").refuses("onnx") is None


def test_an_op_the_bridge_cannot_take_fails_its_cells_by_name_and_onnx_lands(tmp_path):
    path = nms_net(tmp_path / "nms.onnx")
    out = tmp_path / "out"
    with pytest.raises(UnsupportedError) as e:
        edgeship.deploy(str(path), targets=["onnx", "tflite", "executorch"], isolate=False, package=False, out=out)
    assert "1 of 3 artifacts written" in e.value.message, e.value.message
    failed = {(f["target"], f["precision"]): f for f in _manifest(out)["stages"]["convert"]["failed"]}
    for name in ("tflite", "executorch"):
        f = failed[(name, "fp32")]
        assert f["error"] == "UnsupportedError", f
        assert "NonMaxSuppression" in f["message"] and "node nms" in f["message"], f
        assert f["details"]["ops"] == ["NonMaxSuppression"], f
    assert (out / "onnx-fp32" / "model.onnx").is_file()


def test_to_torch_keeps_names_and_copies_the_examples(tmp_path):
    from edgeship.sources.bridge import to_torch

    source = edgeship.load(str(conv_net(tmp_path / "net.onnx")), input_shape=["x=2,3,8,8"])
    bridged = to_torch(source)
    assert bridged.kind == "torch" and bridged.module is not None
    assert [s.name for s in bridged.inputs] == ["x"] and [s.name for s in bridged.outputs] == ["y"]
    assert bridged.inputs[0].shape == (2, 3, 8, 8) and bridged.outputs[0].shape == (2, 5)
    assert bridged.example_inputs[0] is not source.example_inputs[0] and bridged.example_inputs[0].flags.c_contiguous
    np.testing.assert_allclose(bridged.run(list(source.example_inputs))[0], source.run(list(source.example_inputs))[0],
                               rtol=1e-5, atol=1e-5)


def test_an_lstm_is_bridged_unrolled(tmp_path):
    """onnx2torch 1.5.15 has no LSTM converter: the bridge's own (Silero VAD's class)."""
    path = lstm_net(tmp_path / "lstm.onnx")
    res = edgeship.deploy(str(path), targets=["executorch"], isolate=False, package=False, out=tmp_path / "out")
    assert res.artifacts[0].verification.passed


def test_a_converter_that_fails_names_the_onnx_op_and_node(tmp_path):
    from edgeship.sources.bridge import to_torch

    source = edgeship.load(str(lstm_net(tmp_path / "bi.onnx", directions=2)))
    with pytest.raises(UnsupportedError) as e:
        to_torch(source)
    assert "LSTM node 'lstm'" in e.value.message and "sequence_lens" in e.value.message, e.value.message
    assert e.value.details["ops"] == ["LSTM"] and e.value.details["nodes"] == ["lstm"]


def test_without_onnx2torch_the_refusal_names_the_install_command(tmp_path, monkeypatch):
    from edgeship.sources import bridge
    from edgeship.targets import target_class

    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # as if it were not installed
    why = bridge.available()
    assert why is not None and "pip install --no-deps onnx2torch==1.5.15" in why
    for name in ("tflite", "executorch"):
        assert "pip install --no-deps onnx2torch==1.5.15" in target_class(name).refuses("onnx")
        assert target_class(name).refuses("torch") is None
    source = edgeship.load(str(conv_net(tmp_path / "net.onnx")))
    with pytest.raises(MissingExtraError) as e:
        edgeship.convert(source, "tflite", tmp_path / "art")
    assert "pip install --no-deps onnx2torch==1.5.15" in (e.value.hint or "")
    assert not (tmp_path / "art").exists()


def test_a_wrong_onnx2torch_version_is_refused(monkeypatch):
    import importlib.metadata

    from edgeship.sources import bridge

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.5.14" if name == "onnx2torch" else real(name))
    why = bridge.available()
    assert why is not None and "pinned to onnx2torch 1.5.15, 1.5.14 is installed" in why


def test_reduced_precisions_of_a_bridged_source_are_built_and_judged_against_onnx(tmp_path):
    """tflite fp16/int8 derive from the bridged fp32 file; executorch int8 quantises the bridged
    program; each int8 budget is measured against the ONNX model in ONNX Runtime."""
    path = conv_net(tmp_path / "net.onnx")
    res = edgeship.deploy(str(path), targets=["tflite", "executorch"], quantize=["fp16", "int8"], isolate=False,
                          package=False, out=tmp_path / "out", input_shape=["x=1,3,8,8"])
    cells = {(a.target, a.precision): a for a in res.artifacts}
    assert set(cells) == {("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("executorch", "fp32"),
                          ("executorch", "int8")}
    for a in cells.values():
        assert a.verification.reference.startswith("onnx source"), a.verification.reference
        assert a.verification.status != "failed"
    assert any(n.startswith("bridged from ONNX") for n in cells[("executorch", "int8")].notes)


def test_an_opset_18_export_made_by_edgeship_reaches_executorch_and_tflite(tiny_onnx, tmp_path):
    """torch.onnx's dynamo exporter writes opset 18 (ReduceMean takes its axes as an input), which
    onnx2torch 1.5.15 does not convert by itself."""
    source = edgeship.load(str(tiny_onnx / "model.onnx"))
    for name in ("executorch", "tflite"):
        art = edgeship.convert(source, name, tmp_path / name)
        assert art.verification.passed and art.verification.reference.startswith("onnx source")


def test_analyze_does_not_call_a_file_the_bridge_refuses_ready_for_tflite(tmp_path):
    """Newcomer item 15: analyze model.onnx said tflite "ready 100%" for a file deploy --targets
    tflite then refused."""
    from edgeship.api import analyze

    path = nms_net(tmp_path / "nms.onnx")
    tfl = analyze(str(path), targets=["tflite"])["compatibility"]["tflite"]
    assert tfl["status"] == "unsupported", tfl
    assert any(u["node"] == "nms" and "onnx2torch" in u["hint"] for u in tfl["unsupported"]), tfl["unsupported"]
    assert len(tfl["unsupported"]) == 1
    ok = analyze(str(conv_net(tmp_path / "conv.onnx")), targets=["tflite"])["compatibility"]["tflite"]
    assert ok["status"] != "unsupported", ok
