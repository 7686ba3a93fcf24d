"""Model sources: detection by content, safe loading, and each error with its type."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

import tinymodels
from edgeship.errors import FormatError, InputError, SecurityError, UnsupportedError, UsageError
from edgeship.sources import load_source, sniff_format


class _RunsCode:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.fixture
def evil_pt(tmp_path):
    sentinel = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(str(sentinel))}, path)
    return path, sentinel


def test_factory_forms():
    s = load_source("tinymodels:tiny_classifier")
    assert s.kind == "torch" and s.preprocess and s.labels and s.inputs[0].name == "image"
    assert s.inputs[0].shape == ("batch", 3, 32, 32)
    s = load_source("tinymodels:cnn_with_example")
    assert s.inputs[0].shape[1:] == (3, 16, 16)
    s = load_source("tinymodels:plain_cnn", input_shapes=[(1, 3, 20, 20)])
    assert s.example_inputs[0].shape == (1, 3, 20, 20)
    s = load_source("tinymodels:two_inputs")
    assert [i.name for i in s.inputs] == ["input_0", "input_1"]
    assert [o.name for o in s.outputs] == ["sum", "prod"]
    s = load_source("tinymodels:token_encoder")
    assert s.inputs[0].dtype == "int64"


def test_factory_from_a_file(tests_dir):
    s = load_source(f"{tests_dir / 'tinymodels.py'}:cnn_with_example")
    assert s.kind == "torch"


def test_factory_errors():
    with pytest.raises(UsageError, match="--input-shape"):
        load_source("tinymodels:plain_cnn")
    with pytest.raises(InputError, match="does not accept input"):
        load_source("tinymodels:plain_cnn", input_shapes=[(1, 5, 8, 8)])
    with pytest.raises(InputError, match="cannot import"):
        load_source("no_such_pkg.mod:fn")
    with pytest.raises(InputError, match="has no attribute"):
        load_source("tinymodels:no_such_fn")
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        load_source("tinymodels:returns_string")
    with pytest.raises(UsageError, match="--input-dtype"):
        load_source("tinymodels:two_inputs", input_shapes=[(1, 6), (1, 3)], input_dtypes=["float32"] * 3)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such model file"):
        load_source(str(tmp_path / "missing.onnx"))


def test_sniff_by_content_not_extension(tmp_path, tiny_onnx):
    onnx_renamed = tmp_path / "model.tflite"
    shutil.copy(tiny_onnx / "model.onnx", onnx_renamed)
    assert sniff_format(onnx_renamed) == "onnx"
    tfl = tmp_path / "x.onnx"
    tfl.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 32)
    assert sniff_format(tfl) == "tflite"
    npy = tmp_path / "a.onnx"
    np.save(npy.with_suffix(".npy"), np.zeros(3))
    shutil.move(npy.with_suffix(".npy"), npy)
    assert sniff_format(npy) == "npy"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        sniff_format(empty)


def test_corrupt_and_wrong_files_are_format_errors(tmp_path, tiny_onnx):
    data = (tiny_onnx / "model.onnx").read_bytes()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError):
        load_source(str(trunc))
    rnd = tmp_path / "random.onnx"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FormatError):
        load_source(str(rnd))
    arr = tmp_path / "arr.bin"
    np.save(str(arr) + ".npy", np.zeros(3))
    shutil.move(str(arr) + ".npy", arr)
    with pytest.raises(FormatError, match="numpy"):
        load_source(str(arr))


def test_onnx_source(tiny_onnx):
    s = load_source(str(tiny_onnx / "model.onnx"))
    assert s.kind == "onnx" and s.inputs[0].shape[0] == "batch"
    out = s.run(s.example_inputs)
    assert out[0].shape == (1, 10)


def test_tflite_is_recognised_but_not_converted(tmp_path):
    tfl = tmp_path / "m.bin"
    tfl.write_bytes(b"\x1c\0\0\0TFL3" + b"\0" * 64)
    s = load_source(str(tfl))
    assert s.kind == "tflite"
    import edgeship

    with pytest.raises(UnsupportedError, match="cannot convert a tflite"):
        edgeship.deploy(str(tfl), out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pickle_that_runs_code_is_refused(evil_pt, tmp_path):
    path, sentinel = evil_pt
    for name in ("evil.pt", "evil.bin", "evil.onnx", "evil.tflite"):
        renamed = tmp_path / name
        if renamed != path:
            shutil.copy(path, renamed)
        with pytest.raises(SecurityError, match="--allow-pickle"):
            load_source(str(renamed))
        assert not sentinel.exists()


def test_weights_are_loaded_weights_only(evil_pt):
    path, sentinel = evil_pt
    with pytest.raises(SecurityError):
        load_source("tinymodels:cnn_with_example", weights=path)
    assert not sentinel.exists()


def test_state_dict_needs_an_architecture(tmp_path):
    m, _ = tinymodels.cnn_with_example()
    ckpt = tmp_path / "ckpt.pt"
    torch.save(m.state_dict(), ckpt)
    with pytest.raises(UsageError, match="--weights"):
        load_source(str(ckpt))
    s = load_source("tinymodels:cnn_with_example", weights=ckpt)
    for k, v in s.module.state_dict().items():
        assert torch.equal(v, m.state_dict()[k])
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(InputError, match="does not fit"):
        load_source("tinymodels:cnn_with_example", weights=other)


def test_full_module_pickle_needs_opt_in(tmp_path):
    m, _ = tinymodels.cnn_with_example()
    path = tmp_path / "full.pt"
    torch.save(m, path)
    with pytest.raises(SecurityError, match="--allow-pickle"):
        load_source(str(path), input_shapes=[(1, 3, 16, 16)])
    s = load_source(str(path), input_shapes=[(1, 3, 16, 16)], allow_pickle=True)
    assert s.allow_pickle and s.record()["allow_pickle"] is True


def test_pt2_program(tmp_path):
    m, ex = tinymodels.cnn_with_example()
    path = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(m, ex), str(path))
    s = load_source(str(path))
    assert s.kind == "pt2" and s.exported is not None
    np.testing.assert_allclose(s.run(s.example_inputs)[0], m(torch.from_numpy(s.example_inputs[0])).detach().numpy(),
                               atol=1e-6)


def test_pt2_with_a_code_running_pickle_is_refused(tmp_path):
    import zipfile

    m, ex = tinymodels.cnn_with_example()
    good = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(m, ex), str(good))
    sentinel = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt2"
    import io

    buf = io.BytesIO()
    torch.save(_RunsCode(str(sentinel)), buf)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr("prog/data/weights/evil_weight", buf.getvalue())
    with pytest.raises(SecurityError, match="--allow-pickle"):
        load_source(str(evil))
    assert not sentinel.exists()


def _external_data_model(folder, location: str):
    import onnx
    from onnx import TensorProto, helper

    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": location, "offset": "0", "length": "16"}.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    node = helper.make_node("Add", ["x", "w"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    path = folder / "m.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_onnx_external_data_cannot_escape(tmp_path, location):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = _external_data_model(model_dir, location)
    with pytest.raises(SecurityError, match="outside|absolute"):
        load_source(str(path))


def test_onnx_external_data_link_escaping_is_refused(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (model_dir / "w.bin").symlink_to(tmp_path / "secret.bin")
    path = _external_data_model(model_dir, "w.bin")
    with pytest.raises(SecurityError, match="outside"):
        load_source(str(path))


def test_onnx_external_data_inside_the_folder_works(tmp_path):
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = _external_data_model(tmp_path, "w.bin")
    s = load_source(str(path))
    out = s.run([np.ones(4, np.float32)])
    np.testing.assert_array_equal(out[0], np.arange(4) + 1)


def test_onnx_external_data_past_the_end(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    path = _external_data_model(tmp_path, "w.bin")
    with pytest.raises(FormatError, match="past the end"):
        load_source(str(path))


def test_sample_inputs_are_split_between_evaluation_and_calibration():
    import dataclasses

    import numpy as np

    from edgeship.sources import load_source

    src = load_source("tinymodels:tiny_classifier")
    samples = tuple((np.full((1, 3, 32, 32), i, np.float32),) for i in range(6))
    six = dataclasses.replace(src, sample_inputs=samples)
    ev, cal = six.evaluation_inputs(64), six.calibration_inputs(64)
    assert [int(s[0].flat[0]) for s in ev] == [0, 1, 2] and [int(s[0].flat[0]) for s in cal] == [3, 4, 5]
    assert len(six.verification_inputs(8)) == 6
    assert "first half" in six.inputs_origin("evaluation") and "second half" in six.inputs_origin("calibration")
    two = dataclasses.replace(src, sample_inputs=samples[:2])
    assert len(two.calibration_inputs(64)) == 2 and "alike" in two.inputs_origin("calibration")


def _rewrite_pt2(good, evil, replace):
    """A copy of the .pt2 ``good`` with members replaced: ``replace`` maps a member's path after its
    archive folder (e.g. 'data/weights/weight_0') to new bytes, or to a function of the old ones."""
    import zipfile

    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        top = zin.infolist()[0].filename.split("/", 1)[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = zin.read(info)
            new = replace.get(rel, data)
            zout.writestr(info, new(data) if callable(new) else new)
        names = {i.filename.split("/", 1)[1] for i in zin.infolist()}
        for rel, new in replace.items():  # members that were not there
            if rel not in names:
                zout.writestr(f"{top}/{rel}", new)


@pytest.mark.parametrize("how", ["weight marked use_pickle", "sample inputs", "pickled weight named .json"])
def test_pt2_protocol_0_pickle_in_any_member_torch_unpickles_is_refused(tmp_path, how):
    """A protocol-0 pickle starts with neither \\x80 nor PK: vetting by first bytes let it through,
    and torch.export.load unpickled it with weights_only=False (issue 20, item 0)."""
    import json

    m, ex = tinymodels.cnn_with_example()
    good = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(m, ex), str(good))
    sentinel = tmp_path / "PWNED"
    payload = f"cbuiltins\nopen\n(S'{sentinel}'\nS'w'\ntR.".encode()  # protocol 0: creates the sentinel file
    assert payload[:1] not in (b"\x80", b"P")

    member = "evil.json" if how.endswith(".json") else "weight_0"

    def mark_pickled(data: bytes) -> bytes:
        cfg = json.loads(data)
        first = next(iter(cfg["config"]))
        cfg["config"][first]["use_pickle"] = True
        cfg["config"][first]["path_name"] = member
        return json.dumps(cfg).encode()

    replace = ({"data/sample_inputs/model.pt": payload} if how == "sample inputs"
               else {"data/weights/model_weights_config.json": mark_pickled, f"data/weights/{member}": payload})
    evil = tmp_path / "evil.pt2"
    _rewrite_pt2(good, evil, replace)
    with pytest.raises(SecurityError, match="--allow-pickle"):
        load_source(str(evil))
    assert not sentinel.exists()


def test_pt2_raw_weights_and_text_members_still_load(tmp_path):
    m, ex = tinymodels.cnn_with_example()
    good = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(m, ex), str(good), extra_files={"notes.txt": "not a pickle"})
    assert load_source(str(good)).kind == "pt2"
