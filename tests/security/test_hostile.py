"""Hostile inputs, generated: every malformed field of a model, an artifact or a manifest, for every
command that reads it, ends as a typed error (exit code 2-6, one ``error:`` line, no traceback), or
as a result; nothing reaches the terminal raw; no path leaves its folder; time and memory stay bounded.

The classes (issue 20): 1 malformed values inside a valid container, 2 terminal injection, 3 paths
escaping their folder, 4 resource bombs. Each case is built here from a tiny valid ONNX graph and
changed in one field. The CLI runs in this process (the isolated child's work done in place, as
``EDGESHIP_ISOLATED=1`` makes it) so hundreds of cases take a couple of minutes; a few cases per
class run through the real command line and its limited child. Pure boundary functions get
property-based tests (hypothesis).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from edgeship.isolate import ENV_FLAG

EDGESHIP = str(Path(sys.executable).parent / "edgeship")

#: strings a hostile file carries into names and labels: OSC title, screen clear + colour, rich
#: markup that crashed the renderer, a NUL, a right-to-left override, carriage returns, a C1 CSI
NASTY = ["\x1b]0;PWNED\x07", "\x1b[2J\x1b[31mred", "[/]", "[bold]x[/bold", "nul\x00byte", "\u202eevil",
         "\r\rover", "\x9b31m", "bell\x07"]


# ---- the cases: a valid tiny graph, changed in one field -------------------------------------

def tiny_model(labels: list | None = None, preprocess: bool = True) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flat")]
    m = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    if preprocess:
        helper.set_model_props(m, {"edgeship.preprocess": json.dumps({"input": "x", "height": 8, "width": 8}),
                                   "edgeship.labels": json.dumps(labels or ["a", "b", "c", "d"])})
    return m


def _save(m: onnx.ModelProto, folder: Path) -> Path:
    p = folder / "m.onnx"
    onnx.save(m, str(p))
    return p


def _external(field: str, value: str):
    def make(folder: Path) -> Path:
        m = tiny_model()
        w = m.graph.initializer[0]
        (folder / "w.bin").write_bytes(w.raw_data)
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in {"location": "w.bin", "offset": "0", "length": "432", field: value}.items():
            e = w.external_data.add()
            e.key, e.value = k, v
        return _save(m, folder)
    return make


def _value(kind: str, dim: int | None = None, elem: int | None = None):
    def make(folder: Path) -> Path:
        m = tiny_model(preprocess=False)
        v = (m.graph.input if kind == "input" else m.graph.output)[0]
        if dim is not None:
            v.type.tensor_type.shape.dim[-1].dim_value = dim
        if elem is not None:
            v.type.tensor_type.elem_type = elem
        return _save(m, folder)
    return make


def _conv(name: str, value):
    def make(folder: Path) -> Path:
        m = tiny_model()
        conv = m.graph.node[0]
        for a in [a for a in conv.attribute if a.name == name]:
            conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute(name, value))
        return _save(m, folder)
    return make


def _meta(key: str, value: str):
    def make(folder: Path) -> Path:
        m = tiny_model()
        for p in m.metadata_props:
            if p.key == key:
                p.value = value
        return _save(m, folder)
    return make


def _named(where: str, text: str):
    def make(folder: Path) -> Path:
        m = tiny_model()
        g = m.graph
        if where == "label":
            return _meta("edgeship.labels", json.dumps([text, "b", "c", "d"]))(folder)
        if where == "node":
            g.node[1].name = text
        elif where == "input":
            g.input[0].name = g.node[0].input[0] = text
            helper.set_model_props(m, {"edgeship.preprocess": json.dumps({"input": text, "height": 8, "width": 8}),
                                       "edgeship.labels": json.dumps(["a", "b", "c", "d"])})
        elif where == "output":
            g.output[0].name = g.node[3].output[0] = text
        elif where == "op":
            g.node[1].op_type = text
        return _save(m, folder)
    return make


def _pre(**fields):
    return _meta("edgeship.preprocess", json.dumps({"input": "x", "height": 8, "width": 8, **fields}))


DEEP = "[" * 100_000 + "]" * 100_000

MALFORMED = {  # class 1: each must be an InputError/FormatError/UnsupportedError naming the field
    **{f"external-{f}-{n}": _external(f, v) for f, (n, v) in itertools.product(
        ["offset", "length"], [("text", "abc"), ("nul", "1\x002"), ("negative", "-5"), ("float", "1e30"),
                               ("huge", "9" * 25), ("spaces", " 1 ")])},
    "external-location-nul": _external("location", "w.bin\x00x"),
    "external-location-outside": _external("location", "../w.bin"),
    "external-location-absolute": _external("location", "/etc/passwd"),
    **{f"{kind}-dim-{n}": _value(kind, dim=d) for kind, (n, d) in itertools.product(
        ["input", "output"], [("huge", 1 << 40)])},  # <= 0: a dynamic dim (Paddle2ONNX writes -1)
    **{f"{kind}-elem-{n}": _value(kind, elem=e) for kind, (n, e) in itertools.product(
        ["input", "output"], [("unknown", 999), ("undefined", 0), ("string", TensorProto.STRING)])},
    "input-too-large-for-memory": _value("input", dim=1 << 30),
    **{f"conv-group-{v}": _conv("group", v) for v in (0, -3, 2)},
    "meta-preprocess-not-json": _meta("edgeship.preprocess", "{not json"),
    "meta-preprocess-deep": _meta("edgeship.preprocess", DEEP),
    "meta-preprocess-height-0": _pre(height=0),
    "meta-preprocess-height-negative": _pre(height=-4),
    "meta-preprocess-height-huge": _pre(height=10 ** 12),
    "meta-preprocess-std-0": _pre(std=[0, 0, 0]),
    "meta-preprocess-mean-nan": _meta("edgeship.preprocess", '{"input": "x", "height": 8, "width": 8, "mean": [NaN, 1, 1]}'),
    "meta-labels-not-strings": _meta("edgeship.labels", "[1, 2, 3, 4]"),
    "meta-labels-object": _meta("edgeship.labels", '{"a": 1}'),
    "meta-labels-deep": _meta("edgeship.labels", DEEP),
    "meta-labels-not-json": _meta("edgeship.labels", "\x00\x01"),
}

TERMINAL = {f"{where}-{i}": _named(where, text)  # class 2: shown as text, never obeyed; every string as a label,
            for where, (i, text) in itertools.product(["label", "node", "input", "output", "op"], enumerate(NASTY))
            if where == "label" or i in (0, 1, 2, 4)}  # escapes, markup and NUL in every other place


# ---- running a command and judging what it did ------------------------------------------------

def image(folder: Path) -> Path:
    from PIL import Image

    p = folder / "photo.png"
    if not p.exists():
        Image.new("RGB", (16, 16), (200, 30, 30)).save(p)
    return p


def run_cli(args: list[str], capfd, monkeypatch, cwd: Path) -> tuple[int, str]:
    """The CLI in this process, everything the isolated child would do done in place; exit code and
    all it wrote (stdout and stderr)."""
    from edgeship.cli import app

    monkeypatch.setenv(ENV_FLAG, "1")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(cwd)
    capfd.readouterr()
    try:
        code = app(args, standalone_mode=False)
    except SystemExit as e:
        code = e.code
    out, err = capfd.readouterr()
    return int(code or 0), out + err


def raw_characters(text: str) -> list[str]:
    """Characters a terminal would obey (escapes, controls, bidi overrides) rather than show."""
    return sorted({repr(c) for c in text if not (c.isprintable() or c in "\n")})


def assert_contained(code: int, text: str, allowed=(0, 2, 3, 4, 5, 6)) -> None:
    assert code in allowed, (code, text[-2000:])
    assert "Traceback" not in text and "internal error" not in text, text[-3000:]
    assert not raw_characters(text), (raw_characters(text), text[-1500:])
    if code:
        errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, text[-1500:]


def model_commands(path: Path, folder: Path) -> dict[str, list[str]]:
    return {"analyze": ["analyze", str(path)],
            "classify": ["classify", str(path), str(image(folder))],
            "deploy": ["deploy", str(path), "--targets", "onnx", "--no-package", "--out", str(folder / "out")]}


COMMANDS = ["analyze", "classify", "deploy"]


@pytest.mark.parametrize("case,command", list(itertools.product(MALFORMED, COMMANDS)))
def test_malformed_values_are_typed_errors(case, command, tmp_path, capfd, monkeypatch):
    before = set(tmp_path.rglob("*"))
    path = MALFORMED[case](tmp_path)
    code, text = run_cli(model_commands(path, tmp_path)[command], capfd, monkeypatch, tmp_path)
    # a valid container with one impossible value: refused (classify, which takes what ONNX Runtime
    # can run, or analyze, which reads no preprocessing, may still answer where the value is unused)
    assert_contained(code, text)
    if command == "deploy":
        assert code != 0, text[-1500:]
        assert not (tmp_path / "out").exists(), "a failed deploy left a folder"
    assert set(tmp_path.rglob("*")) - before <= {*tmp_path.rglob("m.onnx"), *tmp_path.rglob("w.bin"),
                                                 *tmp_path.rglob("photo.png"), *tmp_path.rglob("out*")}


@pytest.mark.parametrize("case,command", list(itertools.product(TERMINAL, COMMANDS)))
def test_names_and_labels_from_a_file_never_reach_the_terminal_raw(case, command, tmp_path, capfd, monkeypatch):
    path = TERMINAL[case](tmp_path)
    code, text = run_cli(model_commands(path, tmp_path)[command], capfd, monkeypatch, tmp_path)
    assert_contained(code, text)
    if case.startswith("label-") and command == "classify":
        assert code == 0, text  # a label is data: shown, made printable
    if case in ("label-2", "label-3") and command == "classify":
        assert NASTY[int(case[-1])] in text  # markup-like text is shown as it is, not interpreted


@pytest.mark.parametrize("case", ["label-0", "node-1", "external-offset-nul", "conv-group-0"])
def test_the_real_command_line_and_its_child(case, tmp_path, cli_env):
    """A sample per class through the installed command and the limited child: the child's stderr
    is relayed made printable, its errors cross typed."""
    path = {**MALFORMED, **TERMINAL}[case](tmp_path)
    for args in model_commands(path, tmp_path).values():
        r = subprocess.run([EDGESHIP, *args], capture_output=True, text=True, env={**cli_env, "COLUMNS": "80"},
                           cwd=tmp_path, timeout=300)
        assert_contained(r.returncode, r.stdout + r.stderr)
        shutil.rmtree(tmp_path / "out", ignore_errors=True)


# ---- class 3: paths read from artifact.json and manifest.json stay in their folder -----------

@pytest.fixture(scope="module")
def artifact_folder(tmp_path_factory) -> Path:
    """A deployed tiny ONNX artifact and, beside the deploy folder, a different model outside it."""
    import edgeship

    root = tmp_path_factory.mktemp("paths")
    src = _save(tiny_model(), root)
    edgeship.deploy(str(src), targets=["onnx"], out=root / "deploy", package=False)
    outside = root / "outside"
    outside.mkdir()
    m = tiny_model(labels=["OUTSIDE-1", "OUTSIDE-2", "OUTSIDE-3", "OUTSIDE-4"])
    onnx.save(m, str(outside / "model.onnx"))
    return root


ESCAPES = {"parent": "../../outside/model.onnx", "absolute": "{root}/outside/model.onnx", "nul": "model.onnx\x00x",
           "symlink": "link.onnx", "dot-dot-inside": "../onnx-fp32/../../outside/model.onnx"}


def _hostile_copy(root: Path, tmp: Path, field: str, how: str) -> Path:
    deploy = tmp / "deploy"
    shutil.copytree(root / "deploy", deploy, symlinks=True)
    shutil.copytree(root / "outside", tmp / "outside")
    art = deploy / "onnx-fp32"
    if how == "symlink":
        os.symlink(tmp / "outside" / "model.onnx", art / "link.onnx")
    value = ESCAPES[how].format(root=tmp)
    if field == "manifest":
        doc = json.loads((deploy / "manifest.json").read_text())
        doc["artifacts"][0]["path"] = value.replace("model.onnx", "").rstrip("/") or value
        (deploy / "manifest.json").write_text(json.dumps(doc))
        return deploy
    doc = json.loads((art / "artifact.json").read_text())
    if field == "model_file":
        doc["model_file"] = value
    else:
        doc["files"][0]["path"] = value
    (art / "artifact.json").write_text(json.dumps(doc))
    return art


@pytest.mark.parametrize("field,how,command", [
    *itertools.product(["model_file", "files"], ESCAPES, ["classify", "benchmark", "analyze"]),
    *itertools.product(["manifest"], ["parent", "absolute", "nul"], ["benchmark", "analyze", "report"]),
])
def test_paths_in_records_are_confined(field, how, command, artifact_folder, tmp_path, capfd, monkeypatch):
    target = _hostile_copy(artifact_folder, tmp_path, field, how)
    args = {"classify": ["classify", str(target), str(image(tmp_path))],
            "benchmark": ["benchmark", str(target), "--runs", "3", "--rounds", "1", "--no-roofline"],
            "analyze": ["analyze", str(target)],
            "report": ["report", str(target), str(target)]}[command]
    code, text = run_cli(args, capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3, 6))
    assert "OUTSIDE" not in text  # the model outside was never loaded
    assert ("outside" in text or "NUL" in text or "changed" in text or "missing" in text), text[-800:]


RECORD_FIELDS = {  # class 1 in artifact.json: (field path, value)
    "preprocess-height-0": (("preprocess", "height"), 0),
    "preprocess-height-negative": (("preprocess", "height"), -224),
    "preprocess-std-0": (("preprocess", "std"), [0, 0, 0]),
    "preprocess-mean-text": (("preprocess", "mean"), ["a", "b", "c"]),
    "input-shape-negative": (("inputs", 0, "shape"), [1, 3, -8, 8]),
    "input-shape-zero": (("inputs", 0, "shape"), [1, 3, 0, 8]),
    "input-shape-huge": (("inputs", 0, "shape"), [1, 3, 1 << 40, 8]),
    "model-file-not-a-string": (("model_file",), 123),
    "files-not-a-list": (("files",), "model.onnx"),
    "file-size-text": (("files", 0, "size"), "big"),
    "format-unknown": (("format",), "exe"),
    "inputs-deep": (("inputs",), json.loads("[" * 500 + "]" * 500)),
}


@pytest.mark.parametrize("case,command", list(itertools.product(RECORD_FIELDS, ["classify", "benchmark"])))
def test_malformed_artifact_records_are_format_errors(case, command, artifact_folder, tmp_path, capfd, monkeypatch):
    art = tmp_path / "onnx-fp32"
    shutil.copytree(artifact_folder / "deploy" / "onnx-fp32", art)
    doc = json.loads((art / "artifact.json").read_text())
    keys, value = RECORD_FIELDS[case]
    at = doc
    for k in keys[:-1]:
        at = at[k]
    at[keys[-1]] = value
    (art / "artifact.json").write_text(json.dumps(doc))
    args = (["classify", str(art), str(image(tmp_path))] if command == "classify"
            else ["benchmark", str(art), "--runs", "3", "--rounds", "1", "--no-roofline"])
    code, text = run_cli(args, capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3,))
    assert "artifact.json" in text


def test_an_artifacts_labels_txt_is_read_as_printable_lines(artifact_folder, tmp_path):
    from edgeship.artifact import read_artifact

    art = tmp_path / "onnx-fp32"
    shutil.copytree(artifact_folder / "deploy" / "onnx-fp32", art)
    (art / "labels.txt").write_text("\n".join(NASTY[:4]) + "\n")
    labels = read_artifact(art).labels
    assert len(labels) == 4 and not raw_characters("".join(labels)) and labels[2] == "[/]"


# ---- a bare model file is read by its format's one reader ------------------------------------

BARE_ONNX = {  # case -> what the error line names (before: ONNX Runtime's own words, or a runner crash)
    "external-offset-text": "external data field 'offset'",
    "external-length-float": "external data field 'length'",
    "input-dim-huge": "declares dimension 3 as 1099511627776",
    "input-elem-unknown": "element type 999",
    "input-too-large-for-memory": "more than 1 GB for one example",
}


@pytest.mark.parametrize("case,command", list(itertools.product(BARE_ONNX, ["classify", "benchmark"])))
def test_a_bare_onnx_file_is_vetted_by_the_one_onnx_reader(case, command, tmp_path, capfd, monkeypatch):
    path = MALFORMED[case](tmp_path)
    args = (["classify", str(path), str(image(tmp_path))] if command == "classify"
            else ["benchmark", str(path), "--runs", "3", "--rounds", "1", "--no-roofline"])
    code, text = run_cli(args, capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3, 4))
    assert BARE_ONNX[case] in text and "m.onnx" in text, text[-1500:]


def tiny_tflite(shape: list[int]) -> bytes:
    """A one-RELU TFLite flatbuffer whose input and output declare ``shape`` (any values: the
    schema's object API writes what it is given)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT()
    m.version, m.description, m.buffers = 3, b"hostile", [fb.BufferT()]
    tensors = []
    for name in (b"x", b"y"):
        t = fb.TensorT()
        t.shape, t.type, t.name, t.buffer = list(shape), fb.TensorType.FLOAT32, name, 0
        tensors.append(t)
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sg = fb.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [1], [op]
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.RELU
    code.version = 1
    m.operatorCodes, m.subgraphs = [code], [sg]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


BARE_TFLITE = {  # shape -> what the error line names (before: a benchmark of an empty tensor, or
    "zero": ([1, 0], "declares the shape [1, 0]"),  # 'LiteRT cannot load: RuntimeError')
    "huge": ([1, (1 << 31) - 1], "more than 1 GB for one example"),
    "bomb": ([65536, 65536, 16], "more than 1 GB for one example"),
}


@pytest.mark.parametrize("case,command", list(itertools.product(BARE_TFLITE, ["classify", "benchmark"])))
def test_a_bare_tflite_file_declaring_impossible_shapes_is_a_format_error(case, command, tmp_path, capfd, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    shape, says = BARE_TFLITE[case]
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite(shape))
    args = (["classify", str(path), str(image(tmp_path))] if command == "classify"
            else ["benchmark", str(path), "--runs", "3", "--rounds", "1", "--no-roofline"])
    code, text = run_cli(args, capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3,))
    assert says in text and "m.tflite" in text, text[-1500:]


def test_a_sound_bare_tflite_file_still_benchmarks(tmp_path, capfd, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "m.tflite"
    path.write_bytes(tiny_tflite([1, 8]))
    code, text = run_cli(["benchmark", str(path), "--runs", "3", "--rounds", "1", "--no-roofline", "--json"],
                         capfd, monkeypatch, tmp_path)
    assert code == 0, text[-1500:]


def test_benchmark_inputs_too_large_for_memory_are_refused_before_they_allocate():
    """A dynamic batch times the declared dims: the benchmark worker names the input, not the OOM killer."""
    from edgeship.artifact import TensorSpec
    from edgeship.bench.worker import make_inputs
    from edgeship.errors import InputError

    spec = TensorSpec(name="x", shape=("batch", 3, 16384, 16384), dtype="float32")  # 3 GB at batch 1
    with pytest.raises(InputError, match="'x' has the shape 1x3x16384x16384"):
        make_inputs([spec], 1, np.random.default_rng(0))
    assert make_inputs([spec.model_copy(update={"shape": ("batch", 3, 8, 8)})], 2,
                       np.random.default_rng(0))["x"].shape == (2, 3, 8, 8)


def test_python_warnings_in_the_cli_process_are_printed_printable(tmp_path):
    """A library's warning in the CLI process may quote a name from a file: shown, not obeyed."""
    script = ("import warnings\nfrom edgeship.cli import main as cli\n"
              "cli.app = lambda: warnings.warn('node \\x1b]0;PWNED\\x07 \\x1b[31mred')\ncli.entrypoint()\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "UserWarning: node" in r.stderr and "red" in r.stderr, r.stderr
    assert not raw_characters(r.stderr), r.stderr


# ---- class 4: resource bombs stay bounded ----------------------------------------------------

def _chain(n: int):
    def make(folder: Path) -> Path:
        m = tiny_model()
        nodes = list(m.graph.node)
        del m.graph.node[:]
        chain = [helper.make_node("Relu", ["x" if i == 0 else f"t{i - 1}"], [f"t{i}"], name=f"n{i}") for i in range(n)]
        nodes[0].input[0] = f"t{n - 1}"
        m.graph.node.extend(chain + nodes)
        return _save(m, folder)
    return make


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3000])
def test_a_file_of_thousands_of_trivial_nodes_is_analysed_in_bounded_time(nodes, tmp_path, capfd, monkeypatch):
    path = _chain(nodes)(tmp_path)
    t0 = time.monotonic()
    code, text = run_cli(["analyze", str(path)], capfd, monkeypatch, tmp_path)
    took = time.monotonic() - t0
    assert_contained(code, text, allowed=(0,))
    assert took < 30, f"analyze of {nodes} nodes took {took:.0f} s"  # was 21 s at 2k nodes, quadratic


def test_a_huge_input_shape_is_refused_before_anything_allocates(tmp_path, capfd, monkeypatch):
    path = _save(tiny_model(), tmp_path)
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, text = run_cli(["deploy", str(path), "--input-shape", "1,3,65536,65536", "--out", str(tmp_path / "o")],
                         capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3,))
    assert "48 GB" in text and "--input-shape" in text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0 < 512 * 1024  # kB: nothing allocated


def test_mac_counting_for_the_roofline_parses_in_the_limited_child(tmp_path, monkeypatch):
    """The benchmark's MAC count (ONNX shape inference with data propagation, gigabytes on a
    crafted file) never runs in the calling process."""
    from edgeship.analysis import models_macs, onnx_graph

    path = _save(tiny_model(), tmp_path)

    def not_here(*a, **k):
        raise AssertionError("the ONNX file was parsed in the calling process")

    monkeypatch.delenv(ENV_FLAG, raising=False)
    monkeypatch.setattr(onnx_graph, "graph_from_onnx", not_here)
    assert models_macs([path])[str(path)] == 1 * 4 * 8 * 8 * 3 * 9


def test_a_bare_onnx_file_is_described_in_the_limited_child(tmp_path, monkeypatch):
    """classify and benchmark of a bare .onnx read its metadata (labels, preprocessing, I/O) through
    load_artifact: the protobuf parser sees the untrusted file in the child, never here."""
    from edgeship.targets import load_artifact

    path = _save(tiny_model(labels=["w", "x", "y", "z"]), tmp_path)

    def not_here(*a, **k):
        raise AssertionError("the ONNX file was parsed in the calling process")

    monkeypatch.delenv(ENV_FLAG, raising=False)
    monkeypatch.setattr(onnx, "load", not_here)
    art = load_artifact(path)
    assert art.labels == ("w", "x", "y", "z") and art.preprocess.height == 8 and art.model_path == path
    assert art.inputs[0].shape == (1, 3, 8, 8) and art.files[0].path == "m.onnx"


@pytest.mark.parametrize("name", ["artifact.json", "manifest.json"])
def test_deeply_nested_json_records_are_format_errors(name, artifact_folder, tmp_path, capfd, monkeypatch):
    deploy = tmp_path / "deploy"
    shutil.copytree(artifact_folder / "deploy", deploy)
    where = deploy / "onnx-fp32" if name == "artifact.json" else deploy
    (where / name).write_text(DEEP)
    code, text = run_cli(["classify" if name == "artifact.json" else "benchmark", str(where),
                          *([str(image(tmp_path))] if name == "artifact.json" else ["--runs", "3"])],
                         capfd, monkeypatch, tmp_path)
    assert_contained(code, text, allowed=(3,))
    assert name in text


# ---- property-based: the boundary functions themselves ---------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_the_console_draws_any_text_as_printable_text(text):
    import io

    from rich.table import Table

    from edgeship.cli import SafeConsole

    buf = io.StringIO()
    c = SafeConsole(file=buf, width=80)
    t = Table("label")
    t.add_row(text)
    c.print(text)
    c.print(t)
    assert not raw_characters(buf.getvalue())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"./\\\x00ab~", "..", "/etc", "link"]), max_size=12).map("".join))
def test_confined_paths_never_leave_their_root(tmp_path_factory, relative):
    from edgeship._util import confined
    from edgeship.errors import SecurityError

    root = tmp_path_factory.getbasetemp() / "confined-root"
    root.mkdir(exist_ok=True)
    try:
        p = confined(root, relative, "a path")
    except SecurityError:
        return
    assert p == root.resolve() or root.resolve() in p.parents


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["input", "height", "width", "mean", "std", "crop_fraction", "layout"]),
                       st.one_of(st.integers(-2 ** 63, 2 ** 63), st.floats(), st.text(max_size=5),
                                 st.lists(st.floats(), max_size=4))))
def test_preprocessing_from_a_file_is_valid_or_a_format_error(fields):
    from edgeship.errors import FormatError
    from edgeship.sources import onnx_metadata

    m = tiny_model()
    helper.set_model_props(m, {"edgeship.preprocess": json.dumps(fields)})
    try:
        pre, _, _ = onnx_metadata(m, Path("m.onnx"))
    except FormatError as e:
        assert "edgeship.preprocess" in str(e)
        return
    assert pre is not None and pre.height > 0 and all(s > 0 for s in pre.std)
    assert all(np.isfinite(pre.mean)) and all(np.isfinite(pre.std))
