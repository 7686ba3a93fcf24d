"""A pipeline of tiny models (tests/tinyocr.py) built, shipped and run: ``edgeship deploy
pipeline.yaml`` -> per-stage artifacts, end-to-end figures, one signed release that
``Pipeline.from_bundle`` serves, falling back per model by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeship import api
from edgeship.errors import FormatError, InputError, SecurityError, UnsupportedError, UsageError
from edgeship.runtime import Classifier, Pipeline
from edgeship.tasks.ocr import Stages, box_iou, read_characters, read_page
from edgeship.tasks.spec import read_pipeline
from tinyocr import CHARACTERS, tiny_page, write_tiny_ocr


def _original(folder: Path, spec_path: Path) -> Stages:
    """The glue on the original model files, as the pipeline file declares them."""
    spec = read_pipeline(spec_path)

    def model(name: str):  # noqa: ANN202
        s = ort.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        n = s.get_inputs()[0].name
        return lambda x: s.run(None, {n: x})[0]

    cls = spec.stage("cls")
    return Stages(det=model("det"), rec=model("rec"), cls=model("cls") if cls else None,
                  det_task=spec.stage("det").task, rec_task=spec.stage("rec").task, cls_task=cls.task if cls else None,
                  characters=read_characters("\n".join(CHARACTERS)))


@pytest.fixture(scope="module")
def shipped(tiny_ocr: dict) -> tuple[Path, Path, dict]:
    """A two-stage pipeline (detection, recognition) deployed to onnx fp32 and fp16 (conftest)."""
    return tiny_ocr["root"], tiny_ocr["spec"], tiny_ocr["record"]


def _bundle(root: Path, record: dict) -> Path:
    return root / "out" / record["bundle"]["folder"]


def test_a_two_stage_pipeline_ships_as_one_signed_release_that_reads_as_the_original(shipped) -> None:
    root, spec, record = shipped
    assert set(record["stages"]) == {"det", "rec"}
    assert all(s["ok"] and "onnx-fp32" in s["artifacts"] for s in record["stages"].values())
    fp32 = next(s for s in record["sets"] if s["id"] == "onnx-fp32")
    assert fp32["passed"] and fp32["cer"] == 0.0 and fp32["lines"] > 10  # the artifacts read as the original models
    # the task record travels in every artifact's record
    art = json.loads((root / "out/models/rec/onnx-fp32/artifact.json").read_text())
    assert art["task"]["kind"] == "text_recognition" and art["task"]["text_score"] == 0.0
    bundle = _bundle(root, record)
    pub = root / "out" / record["bundle"]["public_key"]
    assert api.verify_bundle(bundle, key=pub)["ok"] is True
    doc = json.loads((bundle / "pipeline.json").read_text())
    assert doc["stages"] == ["det", "rec"] and doc["set_order"]
    assert (bundle / "characters.txt").read_text().split() == list(CHARACTERS)
    entries = json.loads((bundle / "bundle.json").read_text())["artifacts"]
    assert {e["stage"] for e in entries} == {"det", "rec"} and all(e["task"] for e in entries)

    pipe = Pipeline.from_bundle(bundle)
    try:
        assert pipe.skipped == [] and set(pipe.served_by) == {"det", "rec"}
        assert pipe.check_golden()["passed"] is True
        page = tiny_page(seed=7)
        want = read_page(page, _original(root / "models", spec)).to_dict()
        got = pipe.read(page).to_dict()  # the lowest precision measured within the budget: the same lines
        assert len(got["lines"]) == len(want["lines"]) > 0
        assert all(box_iou(g["box"], w["box"]) > 0.9 for g, w in zip(got["lines"], want["lines"]))
    finally:
        pipe.close()
    fp32 = Pipeline.from_bundle(bundle, artifacts={"det": "det-onnx-fp32", "rec": "rec-onnx-fp32"})
    try:  # the fp32 artifacts read exactly as the original models
        assert fp32.read(page).to_dict() == want
    finally:
        fp32.close()


def test_a_tampered_release_fails_its_signature(shipped, tmp_path: Path) -> None:
    root, _, record = shipped
    copy = tmp_path / "b"
    shutil.copytree(_bundle(root, record), copy)
    (copy / "characters.txt").write_text("x\n")
    with pytest.raises(SecurityError, match="changed: characters.txt"):
        api.verify_bundle(copy, key=root / "out" / record["bundle"]["public_key"])


def test_a_failing_model_is_named_and_the_next_measured_set_serves(shipped, tmp_path: Path) -> None:
    root, _, record = shipped
    copy = tmp_path / "b"
    shutil.copytree(_bundle(root, record), copy)
    first = json.loads((copy / "pipeline.json").read_text())["set_order"][0]["artifacts"]
    # the first set's recogniser gives other outputs than its golden vectors say: skipped by name
    rec = copy / "artifacts" / first["rec"]
    model = rec / json.loads((rec / "artifact.json").read_text())["model_file"]
    import onnx

    m = onnx.load(model)
    for init in m.graph.initializer:
        if init.name == "w":
            w = onnx.numpy_helper.to_array(init).copy() * -1.0
            init.CopyFrom(onnx.numpy_helper.from_array(w.astype(w.dtype), "w"))
    onnx.save(m, model)
    pipe = Pipeline.from_bundle(copy)
    try:
        assert [s["artifact"] for s in pipe.skipped] == [first["rec"]]
        assert pipe.skipped[0]["stage"] == "rec" and "golden vectors" in pipe.skipped[0]["reason"]
        assert pipe.served_by["rec"] != first["rec"]
    finally:
        pipe.close()
    # no detector loads: the error names the stage and every artifact's reason
    for d in (copy / "artifacts").glob("det-*"):
        (d / "artifact.json").write_text("{not json")
    with pytest.raises(UnsupportedError, match=r"the det stage: det-onnx-\w+ does not load here"):
        Pipeline.from_bundle(copy)


def test_a_pipeline_bundle_is_not_taken_for_a_classifier(shipped) -> None:
    root, _, record = shipped
    with pytest.raises(UnsupportedError, match="holds a pipeline"):
        Classifier.from_bundle(_bundle(root, record))


def test_pipeline_files_are_checked_before_any_work(tmp_path: Path) -> None:
    spec = write_tiny_ocr(tmp_path / "m")
    with pytest.raises(UsageError, match="--input-shape describes one model"):
        api.deploy(str(spec), out=tmp_path / "out", input_shape=["x=1,3,64,64"])
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "m" / "bad.yaml"
    bad.write_text("models:\n  det: {model: det.onnx}\n  ocr: {model: rec.onnx}\n")
    with pytest.raises(FormatError, match=r"bad.yaml: models.ocr: ocr has no stage 'ocr'"):
        read_pipeline(bad)
    bad.write_text("models:\n  det: {model: det.onnx}\n")
    with pytest.raises(FormatError, match="needs a rec model"):
        read_pipeline(bad)
    bad.write_text("models:\n  det: {model: nothere.onnx}\n  rec: {model: rec.onnx}\n")
    with pytest.raises(InputError, match="no model file at"):
        read_pipeline(bad)
    bad.write_text("models:\n  det: {model: det.onnx, task: {kind: text_detection, thresh: 3}}\n"
                   "  rec: {model: rec.onnx}\n")
    with pytest.raises(FormatError, match=r"models.det: task thresh: Input should be less than 1 \(see the fields of a text_detection"):
        read_pipeline(bad)


def test_a_recogniser_without_a_character_list_is_refused_by_name(tmp_path: Path) -> None:
    import onnx

    spec = write_tiny_ocr(tmp_path / "m", stages=("det", "rec"))
    m = onnx.load(tmp_path / "m" / "rec.onnx")
    del m.metadata_props[:]
    onnx.save(m, tmp_path / "m" / "rec.onnx")
    with pytest.raises(InputError, match=r"rec.onnx: no character list.*models.rec.characters"):
        api.deploy(str(spec), out=tmp_path / "out", targets=["onnx"], isolate=False)


def test_golden_pages_and_traces_are_in_the_release(shipped) -> None:
    root, _, record = shipped
    bundle = _bundle(root, record)
    g = json.loads((bundle / "golden/pipeline.json").read_text())
    assert len(g["images"]) == 2 and all((bundle / im["file"]).is_file() for im in g["images"])
    im = g["images"][0]
    det_map = np.load(bundle / im["trace"]["det_map"])
    assert list(det_map.shape[2:]) == im["trace"]["det_input_shape"][2:]
    assert len(im["trace"]["boxes_page"]) >= len(im["expected"]["lines"]) > 0


def test_the_bundles_own_python_reads_pages_without_edgeship(shipped, tmp_path: Path) -> None:
    """integration/python/ocr.py on the light runtime the bundle carries, edgeship not importable."""
    import subprocess
    import sys

    from PIL import Image

    root, _, record = shipped
    bundle = _bundle(root, record)
    page = tmp_path / "page.png"
    Image.fromarray(tiny_page(seed=11)).save(page)
    # numpy, Pillow and onnxruntime on the path, without site's .pth files: edgeship is not importable
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(np.__file__).parents[1])}
    assert subprocess.run([sys.executable, "-S", "-c", "import edgeship"], env=env, capture_output=True).returncode != 0
    out = subprocess.run([sys.executable, "-S", str(bundle / "integration/python/ocr.py"), str(page), "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    pipe = Pipeline.from_bundle(bundle)
    try:
        want = pipe.read(page).to_dict()
        assert doc["served_by"] == pipe.served_by
    finally:
        pipe.close()
    assert doc["results"][0]["lines"] == want["lines"] and want["lines"]
    assert (bundle / "integration/python/edgeship_light/tasks/ocr.py").is_file()
    assert not (bundle / "integration/python/edgeship_light/tasks/records.py").exists()  # pydantic stays behind
    # running it leaves the signed bundle as it was (no __pycache__ that verify would name extra)
    assert api.verify_bundle(bundle, key=root / "out" / record["bundle"]["public_key"])["ok"] is True


def test_the_task_record_option_does_not_take_the_fidelity_task_options_place() -> None:
    """--task (how fp16/int8 fidelity is judged) and --task-record (what the model is) are two options."""
    from edgeship.config import DeployConfig

    cfg = DeployConfig.build(task="other", task_record='{"kind": "text_detection"}')
    assert cfg.task == "other" and cfg.source_kwargs()["task"] == '{"kind": "text_detection"}'
    with pytest.raises(UsageError, match="--task"):
        DeployConfig.build(task='{"kind": "text_detection"}')
