"""ExecuTorch target: XNNPACK delegation (share recorded), PT2E int8 that survives ReLU6, runner threads."""

from __future__ import annotations

import pytest

import edgeship
from edgeship.errors import UnsupportedError, ValidationError

pytest.importorskip("executorch")

from edgeship.targets.executorch import ExecuTorchTarget  # noqa: E402


class StockQuantizerTarget(ExecuTorchTarget):
    """The stock XNNPACKQuantizer: conv+hardtanh (ReLU6) not fused."""

    name = "executorch-stock"
    fuse_clamps = False


@pytest.fixture(scope="module")
def cfg(relu6_cfg):
    return relu6_cfg


@pytest.fixture(scope="module")
def fp32_art(relu6, cfg, tmp_path_factory):
    return edgeship.convert(relu6, "executorch", tmp_path_factory.mktemp("et") / "fp32", cfg)


def test_fp32_is_fully_delegated_and_the_share_is_recorded(fp32_art):
    d = fp32_art.provenance.config["delegation"]
    assert d["backend"] == "XnnpackBackend"
    assert d["macs_total"] > 0 and d["mac_share"] == 1.0 and d["macs_delegated"] == d["macs_total"]
    assert d["nodes_delegated"] == d["nodes_total"] and d["not_delegated_ops"] == {}
    assert any("XNNPACK runs 100.0% of MACs" in n for n in fp32_art.notes)
    assert fp32_art.files[0].path == "model.pte" and fp32_art.verification.passed
    rec = edgeship.load_artifact(fp32_art.root).record()
    assert rec["provenance"]["config"]["delegation"]["mac_share"] == 1.0


def test_runner_sets_the_thread_pool_before_load_and_keeps_input_names(fp32_art, relu6):
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

    runner = edgeship.runner_for(edgeship.load_artifact(fp32_art.root), threads=1)
    assert _threadpool_get_thread_count() == 1
    assert [s.name for s in runner.inputs] == ["image"] and runner.inputs[0].shape == (1, 3, 32, 32)
    x = relu6.verification_inputs(limit=1)[0]
    import numpy as np

    np.testing.assert_allclose(runner.run({"image": x[0]})[0], relu6.run(x)[0], atol=1e-4, rtol=1e-4)


def test_int8_survives_relu6_where_the_stock_quantizer_collapses(relu6, cfg, fp32_art, tmp_path):
    edgeship.register_target("executorch-stock", StockQuantizerTarget)
    # the stock quantizer quantises each conv output before its clamp: the fidelity check refuses it
    with pytest.raises(ValidationError, match="cosine"):  # (no layer kept in float to rescue it)
        edgeship.convert(relu6, "executorch-stock", tmp_path / "stock",  # its miss, not the ladder above it
                         cfg.model_copy(update={"max_float_layers": 0, "rounding": "nearest"}), precision="int8",
                         parent=fp32_art)
    assert not (tmp_path / "stock").exists()

    x = list(relu6.verification_inputs(1)[0])
    before = relu6.run(x)[0].copy()
    art = edgeship.convert(relu6, "executorch", tmp_path / "int8", cfg, precision="int8", parent=fp32_art)
    assert (relu6.run(x)[0] == before).all()  # bias correction never touches the source model
    v = art.verification
    assert v.passed and v.outputs[0].cosine > 0.999 and v.samples == cfg.eval_samples
    assert art.provenance.config["fused_clamps"] == 4  # every conv+ReLU6 of the net
    assert art.provenance.config["bias_corrected_layers"] == 5  # 4 convs and the fc
    assert art.provenance.config["delegation"]["mac_share"] == 1.0


def test_an_unexportable_model_is_unsupported_and_leaves_nothing(tmp_path):
    source = edgeship.load("tinymodels:not_exportable")
    with pytest.raises(UnsupportedError, match="torch.export could not export"):
        edgeship.convert(source, "executorch", tmp_path / "art")
    assert list(tmp_path.iterdir()) == []


def test_onnx_sources_go_through_the_bridge_and_are_verified_against_onnx(tiny_onnx, tmp_path):
    source = edgeship.load(str(tiny_onnx / "model.onnx"))
    art = edgeship.convert(source, "executorch", tmp_path / "art")
    assert art.verification.passed and art.verification.reference.startswith("onnx source")
