"""When an fp32 artifact fails verification, the error names where: the first node of the source
ONNX graph whose output diverges in the artifact (node, op type, source module, error)."""

from __future__ import annotations

import importlib.util

import onnx
import pytest

import edgeship


def test_a_wrong_conversion_names_the_first_diverging_node(tiny_onnx, tmp_path):
    edgeship.register_target("corrupt", "corrupting_target:CorruptingTarget")
    src = tiny_onnx / "model.onnx"
    second_conv = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"][1]
    with pytest.raises(edgeship.ValidationError) as e:
        edgeship.deploy(str(src), out=tmp_path / "o", targets=["corrupt"], isolate=False)
    d = e.value.details["first_divergence"]
    assert d["node"] == second_conv.name and d["op"] == "Conv" and d["max_abs"] > 0
    assert f"first diverges at node {second_conv.name!r} (Conv" in e.value.message
    assert not (tmp_path / "o").exists()


def test_a_correct_conversion_has_no_divergence(tiny_onnx):
    src = edgeship.load(str(tiny_onnx / "model.onnx"))
    t = edgeship.get_target("onnx")
    art = edgeship.load_artifact(tiny_onnx)
    cfg = edgeship.DeployConfig.build(model=str(tiny_onnx / "model.onnx"))
    assert t.locate_divergence(src, art, cfg) is None


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the openvino extra")
def test_openvino_exposes_the_onnx_tensor_names(tiny_onnx, tmp_path):
    src_path = tiny_onnx / "model.onnx"
    res = edgeship.deploy(str(src_path), out=tmp_path, targets=["openvino"], isolate=False)
    art = res.artifacts[0]
    t = edgeship.get_target("openvino")
    src = edgeship.load(str(src_path))
    feeds = dict(zip([s.name for s in src.inputs], src.verification_inputs(limit=1)[0]))
    got = t.intermediates(art, feeds)
    node_outputs = {o for n in onnx.load(str(src_path)).graph.node for o in n.output}
    assert got is not None and len(node_outputs & set(got)) >= 3  # the names map, so a divergence can be located
    cfg = edgeship.DeployConfig.build(model=str(src_path))
    assert t.locate_divergence(src, art, cfg) is None
