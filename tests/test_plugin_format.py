"""A runtime with a file format edgeship does not know is one file (tests/npz_graph_target.py):
its format, runner and option go through plan, convert and verify (in a worker process), the
manifest, the report, the bundle and the benchmark with nothing in edgeship touched; a record
naming a format nobody registered is still refused as before."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

import edgeship
from edgeship.artifact import Format, read_artifact

PLUGIN = "npz_graph_target:NpzGraphTarget"


def test_a_plugin_with_its_own_format_goes_through_every_stage(tmp_path):
    edgeship.register_target("npz-graph", PLUGIN)
    out = tmp_path / "out"

    plan = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx", "npz-graph"], dry_run=True)
    step = next(s for s in plan.steps if s["target"] == "npz-graph")
    assert step["format"] == "npz-graph" and plan.ready and not out.exists()

    # two target families: two worker processes, the plugin imported there by its module path
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx", "npz-graph"], jobs=2,
                          npz_graph_compress=True)
    art = next(a for a in res.artifacts if a.target == "npz-graph")
    assert art.format == "npz-graph" and art.format is Format("npz-graph") and art.format.value == "npz-graph"
    assert art.verification.verified and art.provenance.config["compressed"] is True  # its own option reached it
    with zipfile.ZipFile(art.model_path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    assert json.loads((art.root / "artifact.json").read_text())["format"] == "npz-graph"
    again = edgeship.load_artifact(art.root)
    assert again.record() == art.record() and again.format is art.format

    m = json.loads((out / "manifest.json").read_text())
    assert {(a["id"], a["format"]) for a in m["artifacts"]} == {("onnx-fp32", "onnx"), ("npz-graph-fp32", "npz-graph")}
    assert m["config"]["npz_graph_compress"] is True
    assert "npz-graph-fp32" in (out / "report.html").read_text()

    bundle = edgeship.package(out, version="2.0.0")
    doc = json.loads((bundle.folder / "bundle.json").read_text())
    entry = next(a for a in doc["artifacts"] if a["id"] == "npz-graph-fp32")
    assert entry["format"] == "npz-graph" and entry["runtime"]["name"] == "onnxruntime" and entry["golden"]
    assert "artifacts/npz-graph-fp32/model.npz" in {f["path"] for f in doc["files"]}
    assert edgeship.verify_bundle(bundle.folder, bundle.public_key)["ok"]
    assert "npz-graph-fp32" in (out / "report.html").read_text()  # the report, refreshed with the bundle

    rep = edgeship.benchmark(out, runs=5, warmup=1, rounds=1, roofline=False, auto_baseline=False)
    row = next(r for r in rep.results if r["id"] == "npz-graph-fp32")
    assert row["runtime"]["target"] == "npz-graph" and row["format"] == "npz-graph" and not row.get("error")


def test_a_record_naming_an_unregistered_format_is_refused_as_before(tmp_path):
    import npz_graph_target  # noqa: F401 - registers npz-graph

    src = tmp_path / "a"
    src.mkdir()
    record = {"name": "m", "target": "npz-graph", "format": "npz-grahp", "files": [], "model_file": "model.npz",
              "inputs": [], "outputs": [], "provenance": {"stage": "test"}}
    (src / "artifact.json").write_text(json.dumps(record))
    with pytest.raises(edgeship.FormatError) as e:
        read_artifact(src)
    assert ("format: Input should be 'torch', 'onnx', 'ort', 'tflite', 'coreml', 'pte', 'openvino', 'web'"
            in e.value.message) and "'npz-graph'" in e.value.message  # every registered format named
    with pytest.raises(ValueError):
        Format("npz-grahp")
    assert [f.value for f in Format][:8] == ["torch", "onnx", "ort", "tflite", "coreml", "pte", "openvino", "web"]

    ok = tmp_path / "b"
    shutil.copytree(src, ok)
    (ok / "artifact.json").write_text(json.dumps({**record, "format": "npz-graph"}))
    assert read_artifact(ok).format is Format("npz-graph")
