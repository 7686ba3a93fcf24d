"""The classes of failure real models from other projects showed (issue: real models), each on a
tiny ONNX graph built here: dynamic dims written as -1, shapes and values given by input name,
an int64 scalar feeding an If, an output declared with a shape the model does not return, and a
cell that fails beside cells that pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeship
from edgeship.errors import EdgeshipError, InputError, UsageError


def _save(model: onnx.ModelProto, folder: Path, name: str = "m.onnx") -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / name
    onnx.save(model, str(path))
    return path


def _value(name: str, elem: int, dims: list) -> onnx.ValueInfoProto:
    v = helper.make_tensor_value_info(name, elem, None)
    shape = v.type.tensor_type.shape
    shape.SetInParent()  # declared, even with no dims (a scalar)
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    return v


def dense(folder: Path, in_dims: list, out_dims: list | None = None) -> Path:
    """x [in_dims] @ W[4, 3] -> y; dims as given (ints, -1, names)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "dense",
                          [_value("x", TensorProto.FLOAT, in_dims)],
                          [_value("y", TensorProto.FLOAT, out_dims if out_dims is not None else [in_dims[0], 3])], [w])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folder)


def conv1d(folder: Path) -> Path:
    """x [N, 1, L] -> a 5-tap valid Conv: fails on ONNX Runtime when L < 5 (a 1 placeholder)."""
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((2, 1, 5)).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "conv1d",
                          [_value("x", TensorProto.FLOAT, ["N", 1, "L"])], [_value("y", TensorProto.FLOAT, ["N", 2, "M"])], [w])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folder)


def rate_switch(folder: Path, else_fails: bool = True, name: str = "m.onnx") -> Path:
    """Silero VAD's shape in small: x [N, S] float and sr an int64 scalar; the network lives in an If
    on sr == 16000; the other branch scales by 3 and (``else_fails``) reshapes to a size no input
    has, and fails."""
    then = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y_then"])], "then", [],
                             [_value("y_then", TensorProto.FLOAT, ["N", "S"])],
                             [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    # both branches hold a float weight named 'two' (ONNX scopes names per graph; tools with one table choke)
    other = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Reshape", ["x2", "bad"], ["y_else"])],
                              "else", [], [_value("y_else", TensorProto.FLOAT, ["N", "S"])],
                              [numpy_helper.from_array(np.array([7, 7, 7] if else_fails else [-1, 512], np.int64), "bad"),
                               numpy_helper.from_array(np.array(3.0, np.float32), "two")])
    nodes = [helper.make_node("Equal", ["sr", "khz16"], ["is16"]),
             helper.make_node("If", ["is16"], ["y"], then_branch=then, else_branch=other, name="if_sr")]
    g = helper.make_graph(nodes, "rate", [_value("x", TensorProto.FLOAT, ["N", "S"]), _value("sr", TensorProto.INT64, [])],
                          [_value("y", TensorProto.FLOAT, ["N", "S"])],
                          [numpy_helper.from_array(np.array(16000, np.int64), "khz16")])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folder, name)


def test_dims_declared_minus_one_are_dynamic(tmp_path):
    """Paddle2ONNX marks a dynamic dim with dim_value -1 (ONNX's checker, ORT and OpenVINO take it):
    it was refused as 'corrupt or hand-edited'."""
    path = dense(tmp_path, [-1, 4], [-1, 3])
    src = edgeship.load(str(path))
    assert not isinstance(src.inputs[0].shape[0], int) and src.inputs[0].shape[1] == 4
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False)
    art = res.artifacts[0]
    assert art.verification.passed and not isinstance(art.inputs[0].shape[0], int)


def test_input_shape_by_name_is_used_for_an_onnx_file(tmp_path):
    """--input-shape was ignored for ONNX files: every dynamic dim became 1 with no word."""
    path = conv1d(tmp_path)
    with pytest.raises(InputError) as e:  # the 1 placeholder fails inside the model: say which flag fixes it
        edgeship.load(str(path))
    assert "x [1, 1, 1]" in e.value.message and "--input-shape x=" in e.value.hint
    src = edgeship.load(str(path), input_shape=["x=1,1,16"])
    assert src.example_inputs[0].shape == (1, 1, 16)
    assert all(s[0].shape == (1, 1, 16) for s in src.verification_inputs())
    assert src.outputs[0].shape[1] == 2
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False, input_shape=["x=1,1,16"])
    assert res.artifacts[0].verification.passed
    # the positional form is kept
    assert edgeship.load(str(path), input_shape=["1,1,9"]).example_inputs[0].shape == (1, 1, 9)


@pytest.mark.parametrize("shape,says", [
    (["y=1,1,16"], "names input 'y', which the model does not have"),
    (["x=1,16"], "has 3 dims"),
    (["x=1,3,16"], "dim 1 of input 'x' is fixed at 1"),
    (["1,1,16", "1,1,8"], "2 --input-shape given in order"),
    (["x=1,1,16", "1,1,8"], "not both"),
])
def test_a_shape_given_and_not_used_is_an_error(tmp_path, shape, says):
    path = conv1d(tmp_path)
    with pytest.raises(UsageError) as e:
        edgeship.load(str(path), input_shape=shape)
    assert says in e.value.message


def test_an_int64_scalar_takes_the_values_given(tmp_path):
    """A scalar input (a sample rate) is described by the values it takes: random ids in [0, 100)
    sent the model down the branch that fails."""
    path = rate_switch(tmp_path)
    with pytest.raises(InputError) as e:
        edgeship.load(str(path), input_shape=["x=1,512"])
    assert "sr [] int64" in e.value.message and "--input-value sr=" in e.value.hint
    path = rate_switch(tmp_path, else_fails=False, name="both.onnx")
    src = edgeship.load(str(path), input_shape=["x=1,512"], input_value=["sr=16000,8000"])
    assert src.inputs[1].shape == () and src.input_values[1] == (16000.0, 8000.0)
    seen = {int(s[1]) for s in src.verification_inputs() + src.calibration_inputs(16)}
    assert seen == {16000, 8000} and all(s[1].shape == () for s in src.calibration_inputs(4))
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False,
                          input_shape=["x=1,512"], input_value=["sr=16000,8000"], quantize=["fp16"])
    assert res.artifacts[0].verification.passed
    assert res.manifest["source"]["input_values"] == [None, [16000.0, 8000.0]]
    # fp16 of a graph whose If branches hold weights of one name (ORT's converter asserted: internal error)
    assert [a.precision for a in res.artifacts] == ["fp32", "fp16"]


def test_a_scalar_given_one_value_is_folded_into_the_model(tmp_path):
    """sr=16000 alone makes sr a constant: the If on it folds away (ONNX Runtime's quantiser does not
    enter an If, OpenVINO could not read Silero VAD's), checked equal to the original."""
    path = rate_switch(tmp_path)
    src = edgeship.load(str(path), input_shape=["x=1,512"], input_value=["sr=16000"])
    assert [i.name for i in src.inputs] == ["x"] and src.origin == str(path) and src.name == "m"
    assert any("specialised for sr=16000" in n for n in src.notes)
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False,
                          input_shape=["x=1,512"], input_value=["sr=16000"])
    model = onnx.load(str(res.artifacts[0].model_path))
    assert [i.name for i in model.graph.input] == ["x"] and "If" not in {n.op_type for n in model.graph.node}
    x = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    got = edgeship.load(str(res.artifacts[0].model_path)).run([x])[0]
    assert np.allclose(got, 2 * x)


@pytest.mark.parametrize("value,says", [("sr=16000.5", "whole numbers"), ("rate=16000", "names input 'rate'"),
                                        ("sr", "is not NAME=V")])
def test_input_values_are_checked(tmp_path, value, says):
    path = rate_switch(tmp_path)
    with pytest.raises(UsageError) as e:
        edgeship.load(str(path), input_shape=["x=1,512"], input_value=[value])
    assert says in e.value.message


def test_an_output_declared_with_a_shape_it_does_not_return(tmp_path):
    """An output declared rank 0 (or with wrong dims) is described by what the model returns."""
    path = dense(tmp_path, ["N", 4], [])
    src = edgeship.load(str(path))
    assert len(src.outputs[0].shape) == 2 and src.outputs[0].shape[1] == 3
    assert any("declared [] but returns [1, 3]" in n for n in src.notes)
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False)
    assert res.artifacts[0].verification.passed


def _failed(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["stages"]["convert"]["failed"]


def test_a_converter_that_crashes_loses_no_verified_artifact(tmp_path):
    """One cell's converter raising its own exception ended the whole run as 'internal error' and
    wrote nothing; now it is that cell's failure, named as internal, and the verified cells land."""
    edgeship.register_target("crash", "crashing_target:CrashingTarget")
    path = dense(tmp_path, ["N", 4])
    out = tmp_path / "out"
    with pytest.raises(EdgeshipError) as e:
        edgeship.deploy(str(path), out=out, targets=["onnx", "crash"], isolate=False)
    assert "1 of 2 artifacts written, 1 failed" in e.value.message and "crash-fp32: internal error: RuntimeError" in e.value.message
    assert (out / "onnx-fp32" / "model.onnx").is_file() and not (out / "crash-fp32").exists()
    (f,) = _failed(out)
    assert f["error"] == "InternalError" and "index 7 is out of range" in f["message"] and "RuntimeError" in f["traceback"]
    assert [a["path"] for a in json.loads((out / "manifest.json").read_text())["artifacts"]] == ["onnx-fp32"]


def test_a_failed_fp32_does_not_take_the_other_targets_with_it(tmp_path):
    """A target whose fp32 does not verify (here: a converter that changes the weights) was the end
    of the run; the other targets' verified artifacts land and its reduced precisions fail with it."""
    from edgeship.errors import ValidationError

    edgeship.register_target("corrupt0", "crashing_target:CorruptFirstConv")
    path = conv1d(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValidationError) as e:
        edgeship.deploy(str(path), out=out, targets=["corrupt0", "onnx"], isolate=False, package=False,
                        input_shape=["x=1,1,16"])
    assert e.value.exit_code == 5 and "1 of 2 artifacts written" in e.value.message
    assert (out / "onnx-fp32").is_dir() and not (out / "corrupt0-fp32").exists()
    (f,) = _failed(out)
    assert (f["target"], f["precision"], f["error"]) == ("corrupt0", "fp32", "ValidationError")


def test_when_every_cell_fails_nothing_is_written(tmp_path):
    edgeship.register_target("crash", "crashing_target:CrashingTarget")
    path = dense(tmp_path, ["N", 4])
    out = tmp_path / "out"
    with pytest.raises(EdgeshipError) as e:
        edgeship.deploy(str(path), out=out, targets=["crash"], isolate=False)
    assert "no artifact written" in e.value.message and "index 7" in e.value.message
    assert not out.exists()


def test_a_failed_cell_through_the_command_line(tmp_path, cli_env):
    """The command exits non-zero, says how many were written, and shows the written ones."""
    import subprocess
    import sys

    path = dense(tmp_path, [-1, 4], [-1, 3])
    out = tmp_path / "out"
    code = ("import sys, edgeship; edgeship.register_target('crash', 'crashing_target:CrashingTarget');"
            "from edgeship.cli import entrypoint; sys.argv[1:] = " + repr(
                ["deploy", str(path), "--out", str(out), "--targets", "onnx,crash", "--no-package", "--no-isolate"]) + "; entrypoint()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "1 of 2 artifacts written" in r.stderr and "Traceback" not in r.stderr
    assert "onnx-fp32" in r.stdout
    assert (out / "onnx-fp32" / "model.onnx").is_file()


def test_a_named_target_that_cannot_take_the_model_is_one_failed_cell(tmp_path):
    """`--targets onnx,tflite` on an ONNX file refused the whole run; now tflite is a failed cell
    with its reason and the onnx artifact lands."""
    from edgeship.errors import UnsupportedError

    path = dense(tmp_path, ["N", 4])
    out = tmp_path / "out"
    with pytest.raises(UnsupportedError) as e:
        edgeship.deploy(str(path), out=out, targets=["onnx", "coreml"], quantize=["fp16"], isolate=False, package=False)
    assert "2 of 4 artifacts written" in e.value.message, e.value.message
    failed = {(f["target"], f["precision"]): f["message"] for f in _failed(out)}
    assert "cannot convert an onnx model" in failed[("coreml", "fp32")]
    assert "coreml fp32, which it is built from, was not written" in failed[("coreml", "fp16")]
    assert (out / "onnx-fp32").is_dir() and (out / "onnx-fp16").is_dir()


def stateful(folder: Path) -> Path:
    """x [N, 4] and a recurrent state laid out (layers, batch, hidden) = [2, N, 3]: y = x @ W + sum(state)."""
    w = numpy_helper.from_array(np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
             helper.make_node("ReduceSum", ["state", "axes"], ["s"], keepdims=0),
             helper.make_node("Add", ["xw", "s"], ["y"])]
    g = helper.make_graph(nodes, "stateful", [_value("x", TensorProto.FLOAT, ["N", 4]), _value("state", TensorProto.FLOAT, [2, "N", 3])],
                          [_value("y", TensorProto.FLOAT, ["N", 3])], [w, numpy_helper.from_array(np.array([0], np.int64), "axes")])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), folder)


def test_npz_rows_hold_whole_tensors_for_scalars_and_state(tmp_path):
    """The .npz convention 'first axis = samples' could not express a scalar input or a state laid
    out (layers, batch, hidden): a row now holds that input whole."""
    from edgeship.data import load_samples

    rng = np.random.default_rng(3)
    path = stateful(tmp_path)
    data = tmp_path / "eval.npz"
    np.savez(data, x=rng.standard_normal((6, 4)).astype(np.float32), state=rng.standard_normal((6, 2, 1, 3)).astype(np.float32))
    samples, _ = load_samples(str(data), edgeship.load(str(path)), 8, "evaluation")
    assert len(samples) == 6 and samples[0][0].shape == (1, 4) and samples[0][1].shape == (2, 1, 3)
    res = edgeship.deploy(str(path), out=tmp_path / "out", isolate=False, package=False, quantize=["fp16"], eval=str(data))
    assert {a.precision for a in res.artifacts} == {"fp32", "fp16"}
    rate = rate_switch(tmp_path, else_fails=False, name="rate.onnx")
    np.savez(tmp_path / "audio.npz", x=rng.standard_normal((5, 512)).astype(np.float32), sr=np.full(5, 16000, np.int64))
    src = edgeship.load(str(rate), input_shape=["x=1,512"], input_value=["sr=16000,8000"])
    samples, _ = load_samples(str(tmp_path / "audio.npz"), src, 8, "evaluation")
    assert samples[0][0].shape == (1, 512) and samples[0][1].shape == () and int(samples[0][1]) == 16000


def test_an_already_quantised_model_is_deployed_as_it_is_on_every_target(tmp_path):
    """A QDQ int8 model (as some packages ship only) converts where the target can take it and is
    verified against itself; quantising it again is answered by name, on every target."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgeship.errors import UnsupportedError

    path = conv1d(tmp_path)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{"x": np.random.default_rng(i).standard_normal((1, 1, 16)).astype(np.float32)} for i in range(8)])

        def get_next(self):
            return next(self.data, None)

    q = tmp_path / "q.onnx"
    quantize_static(str(path), str(q), Reader(), quant_format=QuantFormat.QDQ)
    src = edgeship.load(str(q), input_shape=["x=1,1,16"])
    assert src.quantised and "QDQ" in src.quantised and any("already quantised" in n for n in src.notes)
    out = tmp_path / "out"
    with pytest.raises(UnsupportedError) as e:
        edgeship.deploy(str(q), out=out, targets=["onnx", "openvino"], quantize=["fp16"], input_shape=["x=1,1,16"],
                        isolate=False, package=False)
    assert "2 of 4 artifacts written" in e.value.message
    failed = {(f["target"], f["precision"]): f["message"] for f in _failed(out)}
    assert set(failed) == {("onnx", "fp16"), ("openvino", "fp16")}
    assert all("already quantised" in m for m in failed.values())
    assert (out / "onnx-fp32").is_dir() and (out / "openvino-fp32").is_dir()


@pytest.mark.parametrize("stage", ["analysis_stage", "sample_predictions"])
def test_a_stage_after_verification_that_crashes_loses_no_artifact(tmp_path, monkeypatch, stage):
    """The analysis (or predictions) ran before the artifacts were committed: its crash lost every
    verified artifact. Now its failure is recorded in its place and the artifacts are written."""
    import edgeship.pipeline.orchestration as engine

    def boom(*a, **k):
        raise TypeError("Graph.__init__() got an unexpected keyword argument 'derived'")

    monkeypatch.setattr(engine, stage, boom)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "out", targets=["onnx"])
    assert (tmp_path / "out" / "onnx-fp32" / "model.onnx").is_file() and (tmp_path / "out" / "report.html").is_file()
    key = "analysis" if stage == "analysis_stage" else "predictions"
    err = res.manifest["stages"][key]["error"]
    assert err["error"] == "InternalError" and "unexpected keyword argument 'derived'" in err["message"]


def test_an_fp32_verified_on_random_inputs_is_not_reused_for_a_run_with_eval_data(tmp_path, monkeypatch):
    """fp32 is verified on --eval data when given; the task cache served the fp32 an earlier run had
    verified on random inputs (its key left the evaluation data out)."""
    monkeypatch.delenv("EDGESHIP_NO_CACHE", raising=False)
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    path = stateful(tmp_path)
    rng = np.random.default_rng(5)
    data = tmp_path / "eval.npz"
    np.savez(data, x=rng.standard_normal((6, 4)).astype(np.float32), state=rng.standard_normal((6, 2, 1, 3)).astype(np.float32))
    first = edgeship.deploy(str(path), out=tmp_path / "a", isolate=False, package=False)
    assert "random" in first.artifacts[0].verification.inputs
    again = edgeship.deploy(str(path), out=tmp_path / "b", isolate=False, package=False, eval=str(data))
    assert "eval.npz" in again.artifacts[0].verification.inputs
    assert again.manifest["stages"]["convert"]["cache"]["reused"] == []


def test_openvino_takes_a_model_it_cannot_read_with_dynamic_dims_at_the_example_shapes(tmp_path, monkeypatch):
    """OpenVINO 2026.4 cannot read Silero VAD with its dynamic dims (ranks lost inside If branches);
    at the example shapes, with onnxslim folding what they decide, it can: the IR is static and the
    notes say so. (OpenVINO's refusal is stood in for here: the tiny graph converts either way.)"""
    pytest.importorskip("openvino")
    import edgeship.targets.openvino as ov_target

    real = ov_target._convert_onnx

    def refuses_dynamic(path):
        model = onnx.load(str(path))
        if any(not d.HasField("dim_value") for i in model.graph.input for d in i.type.tensor_type.shape.dim):
            raise RuntimeError("Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
                               "Summary:\n-- Conversion is failed for: Conv-16")
        return real(path)

    monkeypatch.setattr(ov_target, "_convert_onnx", refuses_dynamic)
    path = conv1d(tmp_path)
    res = edgeship.deploy(str(path), out=tmp_path / "out", targets=["openvino"], isolate=False, package=False,
                          input_shape=["x=1,1,16"])
    art = res.artifacts[0]
    assert art.verification.passed and art.inputs[0].shape == (1, 1, 16)
    assert any("at the example shapes" in n and "x [1, 1, 16]" in n for n in art.notes)
