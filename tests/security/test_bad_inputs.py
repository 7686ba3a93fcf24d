"""Untrusted models and bad input. Every bad input is generated here (never committed as a blob);
each case asserts the typed error and exit code, that a sentinel file never appears, and that
nothing is written outside the output folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeship._archive import safe_extract
from edgeship.data import load_arrays
from edgeship.errors import FormatError, SecurityError
from edgeship.isolate import IsolatedInternalError, Limits, ResourceLimitError, run_isolated

EDGESHIP = str(Path(sys.executable).parent / "edgeship")


class RunsCode:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def deploy_cli(args, env, cwd):
    return subprocess.run([EDGESHIP, "deploy", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.fixture
def sandbox(tmp_path):
    (tmp_path / "models").mkdir()
    return tmp_path


def assert_refused(r, code: int, sandbox: Path, before: set[str], *words: str):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    errs = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errs) == 1, r.stderr
    for w in words:
        assert w in errs[0], errs[0]
    assert not (sandbox / "PWNED").exists()
    # nothing new outside the output folder, and nothing half-written inside it
    new = snapshot(sandbox) - before
    assert all(n == "out" or n.startswith("out/") for n in new), new
    out = sandbox / "out"
    assert not out.exists() or not any(out.rglob("*.onnx")), list(out.rglob("*"))


# ---- pickles that run code --------------------------------------------------------------

@pytest.mark.parametrize("name", ["evil.pt", "evil.bin", "evil.onnx", "evil.tflite"])
def test_pickle_that_runs_a_command(sandbox, cli_env, name):
    path = sandbox / "models" / name
    torch.save({"w": torch.zeros(1), "x": RunsCode(str(sandbox / "PWNED"))}, path)
    before = snapshot(sandbox)
    r = deploy_cli([path, "--out", sandbox / "out", "--input-shape", "1,4"], cli_env, sandbox)
    assert_refused(r, 6, sandbox, before, "--allow-pickle")


def test_legacy_pickle_format(sandbox, cli_env):
    path = sandbox / "models" / "legacy.pt"
    torch.save(RunsCode(str(sandbox / "PWNED")), path, _use_new_zipfile_serialization=False)
    before = snapshot(sandbox)
    r = deploy_cli([path, "--out", sandbox / "out"], cli_env, sandbox)
    assert_refused(r, 6, sandbox, before, "--allow-pickle")


# ---- ONNX external data escaping the model folder ----------------------------------------

def onnx_with_external(folder: Path, location: str, offset: int = 0, length: int = 16) -> Path:
    import onnx
    from onnx import TensorProto, helper

    w = TensorProto()
    w.name, w.data_type = "w", TensorProto.FLOAT
    w.dims.extend([4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in {"location": location, "offset": str(offset), "length": str(length)}.items():
        e = w.external_data.add()
        e.key, e.value = k, v
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], initializer=[w])
    path = folder / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("location,code,word", [
    ("../../secret.bin", 6, "outside"),
    ("/etc/hostname", 6, "absolute"),
    ("sub/../../secret.bin", 6, "outside"),
    ("link.bin", 6, "outside"),
    ("short.bin", 3, "past the end"),
])
def test_onnx_external_data(sandbox, cli_env, location, code, word):
    model_dir = sandbox / "models" / "m"
    model_dir.mkdir()
    (sandbox / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (model_dir / "link.bin").symlink_to(sandbox / "secret.bin")
    (model_dir / "short.bin").write_bytes(b"\0" * 8)
    path = onnx_with_external(model_dir, location)
    before = snapshot(sandbox)
    r = deploy_cli([path, "--out", sandbox / "out"], cli_env, sandbox)
    assert_refused(r, code, sandbox, before, word)


# ---- broken and mislabelled model files --------------------------------------------------

def _tiny_onnx_bytes() -> bytes:
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


@pytest.mark.parametrize("name,content,code", [
    ("tfl3.tflite", b"\x1c\0\0\0TFL3", 4),            # recognised as TFLite: not a conversion source
    ("truncated.tflite", b"\x1c\0\0\0TFL3" + b"\x00" * 100, 4),
    ("random.onnx", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), 3),
    ("empty.onnx", b"", 3),
    ("onnx_renamed.tflite", None, 0),                  # a valid ONNX file under another name still works
])
def test_broken_model_files(sandbox, cli_env, name, content, code):
    path = sandbox / "models" / name
    path.write_bytes(_tiny_onnx_bytes() if content is None else content)
    before = snapshot(sandbox)
    r = deploy_cli([path, "--out", sandbox / "out"], cli_env, sandbox)
    if code == 0:
        assert r.returncode == 0, r.stderr
        return
    assert_refused(r, code, sandbox, before)


@pytest.mark.parametrize("content", [b"\x1c\0\0\0TFL3", b"\x1c\0\0\0TFL3" + b"\xff" * 300])
def test_tflite_parser_runs_isolated(tmp_path, content):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "x.tflite"
    path.write_bytes(content)
    with pytest.raises(FormatError):  # a typed error, whether the parser refuses or crashes
        run_isolated("edgeship.probe:probe", {"path": str(path)})


def test_onnx_that_allocates_absurd_memory(sandbox, cli_env):
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [200_000, 200_000])  # 160 GB of float32
    g = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], initializer=[shape])
    path = sandbox / "models" / "bomb.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    before = snapshot(sandbox)
    env = dict(cli_env, EDGESHIP_MAX_MEMORY_GB="6", EDGESHIP_MAX_WALL_S="120")
    r = deploy_cli([path, "--out", sandbox / "out"], env, sandbox)
    assert r.returncode in (3, 4), r.stderr  # a typed error: memory limit or a refusing runtime
    assert_refused(r, r.returncode, sandbox, before)


# ---- names that try to reach paths or generated text ---------------------------------------

def test_hostile_names_and_labels_stay_inside(sandbox, cli_env, tests_dir):
    factory = sandbox / "models" / "hostile.py"
    factory.write_text(
        "import torch\n"
        "from edgeship import TorchModel, Preprocess\n"
        "def build():\n"
        "    m = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())\n"
        "    return TorchModel(module=m.eval(), example_inputs=(torch.zeros(1, 3, 8, 8),),\n"
        "        name='../../\"evil\\nname' + 'x' * 500,\n"
        "        input_names=('in\"put',),\n"
        "        preprocess=Preprocess(input='in\"put', height=8, width=8),\n"
        "        labels=('a\\nb', '../../c', '\"quoted\"\\r\\n' + 'y' * 1000))\n")
    before = snapshot(sandbox)
    r = deploy_cli([f"{factory}:build", "--out", sandbox / "out", "--json"], cli_env, sandbox)
    assert r.returncode == 0, r.stderr
    new = snapshot(sandbox) - before
    assert all(n == "out" or n.startswith("out/") for n in new), new
    labels = (sandbox / "out" / "onnx-fp32" / "labels.txt").read_text().splitlines()
    assert len(labels) == 3 and labels[0] == "a b" and len(labels[2]) <= 256
    assert json.loads(r.stdout)["manifest"]["artifacts"][0]["labels_count"] == 3


# ---- archives ------------------------------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
        if symlink:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16)
            z.writestr(info, symlink)
    return path


@pytest.mark.parametrize("members,symlink,word", [
    ({"../escape.txt": b"x"}, None, ".."),
    ({"/abs.txt": b"x"}, None, "absolute"),
    ({"ok.txt": b"x"}, "../../etc/passwd", "link"),
])
def test_zip_members_cannot_escape(tmp_path, members, symlink, word):
    arc = _zip(tmp_path / "a.zip", members, symlink)
    with pytest.raises(SecurityError, match=word):
        safe_extract(arc, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "escape.txt").exists()


def test_zip_bomb_is_stopped(tmp_path):
    arc = _zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * (64 << 20)})  # 64 MB -> ~64 kB compressed
    with pytest.raises(SecurityError, match="zip bomb"):
        safe_extract(arc, tmp_path / "dest", max_bytes=16 << 20)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink_out", "hardlink_out"])
def test_tar_members_cannot_escape(tmp_path, kind):
    arc = tmp_path / "a.tar"
    with tarfile.open(arc, "w") as t:
        info = tarfile.TarInfo("../escape.txt" if kind == "dotdot" else "/abs.txt" if kind == "absolute" else "l")
        if kind == "symlink_out":
            info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        elif kind == "hardlink_out":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        else:
            info.size = 1
        t.addfile(info, io.BytesIO(b"x") if info.size else None)
    with pytest.raises(SecurityError):
        safe_extract(arc, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "escape.txt").exists()


def test_good_archive_extracts(tmp_path):
    arc = _zip(tmp_path / "a.zip", {"model/model.onnx": b"abc", "labels.txt": b"x\n"})
    assert sorted(safe_extract(arc, tmp_path / "dest")) == ["labels.txt", "model/model.onnx"]
    assert (tmp_path / "dest" / "model" / "model.onnx").read_bytes() == b"abc"


# ---- numpy data ------------------------------------------------------------------------------

def test_numpy_files_with_objects_are_refused(tmp_path):
    sentinel = tmp_path / "PWNED"
    obj = np.array([RunsCode(str(sentinel))], dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    np.savez(tmp_path / "o.npz", a=np.zeros(3), b=obj)
    for name in ("o.npy", "o.npz"):
        with pytest.raises(SecurityError, match="objects"):
            load_arrays(tmp_path / name)
    assert not sentinel.exists()
    np.savez(tmp_path / "ok.npz", a=np.ones(3, np.float32))
    assert load_arrays(tmp_path / "ok.npz")["a"].sum() == 3
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(FormatError):
        load_arrays(tmp_path / "bad.npz")


# ---- isolation ----------------------------------------------------------------------------------

def test_a_native_crash_becomes_a_typed_error():
    with pytest.raises(FormatError, match="SIGSEGV") as e:
        run_isolated("edgeship.testing:crash", {"signal_name": "SIGSEGV"})
    assert e.value.exit_code == 3


def test_a_hang_is_stopped_by_the_wall_limit():
    with pytest.raises(ResourceLimitError, match="longer than"):
        run_isolated("edgeship.testing:hang", {"seconds": 60}, limits=Limits(wall_seconds=1.5))


def test_memory_limit():
    with pytest.raises(ResourceLimitError, match="memory"):
        run_isolated("edgeship.testing:allocate", {"gb": 6}, limits=Limits(memory_gb=3))


def test_cpu_limit():
    with pytest.raises(ResourceLimitError, match="CPU"):
        run_isolated("edgeship.testing:spin", {"seconds": 30}, limits=Limits(cpu_seconds=1, wall_seconds=30))


def test_only_edgeship_code_runs_in_the_child():
    from edgeship.errors import UsageError

    with pytest.raises(UsageError):
        run_isolated("os:system", {"command": "true"})


def test_results_and_errors_cross_as_json(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))  # the internal error's log goes here
    assert run_isolated("edgeship.testing:echo", {"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(IsolatedInternalError, match="internal error"):
        run_isolated("edgeship.testing:echo_missing_function_does_not_exist", {})


def test_analyze_parses_model_files_in_the_isolated_child(tmp_path, monkeypatch):
    """analyze on a file goes through run_isolated (the child re-enters with isolate off)."""
    import edgeship.api as api

    seen = []
    real = api.run_isolated

    def spy(func, kwargs=None, **kw):
        seen.append(func)
        return real(func, kwargs, **kw)

    monkeypatch.setattr(api, "run_isolated", spy)
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"\x08\x07" + b"\xff" * 64)
    with pytest.raises(FormatError):
        api.analyze(str(bad))
    assert seen == ["edgeship.api:_analyze_child"]
