"""The release bundle (issue 13): package, sign, verify; golden vectors; tampering is refused by name."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import edgeship
from edgeship.runtime import check_golden


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "out"
    edgeship.deploy("tinymodels:tiny_classifier", out=out, targets=["onnx"], quantize=["int8"], package=False)
    return out


@pytest.fixture(scope="module")
def bundle(deployed):
    return edgeship.package(deployed, version="1.0.0")


def test_a_deploy_output_becomes_a_signed_bundle_with_golden_vectors(deployed, bundle):
    doc = json.loads((bundle.folder / "bundle.json").read_text())
    assert doc["schema"] == "edgeship.bundle/1" and doc["version"] == "1.0.0" and doc["release"] == 1
    assert sorted(doc["fallback_order"]) == ["onnx-fp32", "onnx-int8"] and doc["fallback_order"][0] == "onnx-int8"
    assert doc["labels_count"] == 10 and (bundle.folder / "labels.txt").read_text().count("\n") == 10
    listed = {f["path"] for f in doc["files"]}
    assert {"MODEL_CARD.md", "labels.txt", "golden/golden.json", "artifacts/onnx-int8/model.onnx"} <= listed
    assert "model.sig" not in listed and "bundle.json" not in listed
    onnx_int8 = next(a for a in doc["artifacts"] if a["id"] == "onnx-int8")
    assert onnx_int8["runtime"]["name"] == "onnxruntime" and onnx_int8["runtime"]["tested_version"]
    assert onnx_int8["runtime"]["requires"].startswith("ONNX opset ")
    assert onnx_int8["fidelity"]["passed"] and onnx_int8["golden"]
    card = (bundle.folder / "MODEL_CARD.md").read_text()
    assert "tiny-classifier" in card and "onnx-int8" in card and "## Limits" in card
    # the signing key stays in the output folder, never in the bundle; the private half is 0600
    assert bundle.key == deployed / "keys" / "signing-key.pem" and bundle.key_created
    assert stat.S_IMODE(bundle.key.stat().st_mode) == 0o600
    assert not any("key" in p for p in listed)
    assert edgeship.verify_bundle(bundle.folder, bundle.public_key)["ok"]
    assert edgeship.verify_bundle(bundle.tarball, bundle.public_key)["files"] == len(listed)
    m = json.loads((deployed / "manifest.json").read_text())
    assert m["stages"]["bundle"]["version"] == "1.0.0"


def test_golden_vectors_check_the_artifact_a_device_loaded(bundle):
    art = edgeship.load_artifact(bundle.folder / "artifacts" / "onnx-int8")
    runner = edgeship.runner_for(art)
    res = check_golden(bundle.folder, "onnx-int8", runner.run)
    assert res["passed"] and res["checked"] == 3 and not res["failures"]
    # another model's outputs fail it, naming the input
    other = edgeship.runner_for(edgeship.load_artifact(bundle.folder / "artifacts" / "onnx-fp32"))
    bad = check_golden(bundle.folder, "onnx-int8", lambda feeds: [o[:, ::-1].copy() for o in other.run(feeds)])
    assert not bad["passed"] and any("coffee" in f for f in bad["failures"])


def test_releases_count_up_and_a_version_is_never_rewritten(deployed, bundle):
    before = sorted(p.name for p in bundle.folder.parent.iterdir())
    with pytest.raises(edgeship.UsageError, match="never rewritten"):
        edgeship.package(deployed, version="1.0.0")
    with pytest.raises(edgeship.UsageError, match="semantic version"):
        edgeship.package(deployed, version="v1")
    assert sorted(p.name for p in bundle.folder.parent.iterdir()) == before  # nothing half-written
    b2 = edgeship.package(deployed, dest=bundle.folder.parent)  # no version: the next patch
    assert b2.doc["version"] == "1.0.1" and b2.doc["release"] == 2 and not b2.key_created and b2.key == bundle.key
    shutil.rmtree(b2.folder)
    b2.tarball.unlink()


def _copy(bundle, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(bundle.folder, dst)
    return dst


@pytest.mark.parametrize("tamper, named", [
    ("change", "changed: artifacts/onnx-int8/model.onnx"),
    ("extra", "extra: artifacts/onnx-int8/evil.py"),
    ("missing", "missing: labels.txt"),
    ("manifest", "changed: bundle.json"),
])
def test_a_tampered_bundle_is_refused_naming_the_file(bundle, tmp_path, tamper, named):
    dst = _copy(bundle, tmp_path)
    if tamper == "change":
        p = dst / "artifacts/onnx-int8/model.onnx"
        p.write_bytes(p.read_bytes()[:-1] + b"\0")
    elif tamper == "extra":
        (dst / "artifacts/onnx-int8/evil.py").write_text("import os\n")
    elif tamper == "missing":
        (dst / "labels.txt").unlink()
    else:  # bundle.json edited after signing: a fallback order that favours another artifact
        doc = json.loads((dst / "bundle.json").read_text())
        doc["fallback_order"].reverse()
        (dst / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(edgeship.SecurityError) as e:
        edgeship.verify_bundle(dst, bundle.public_key)
    assert named in e.value.message and e.value.exit_code == 6


def test_a_wrong_key_or_no_signature_fails_closed(bundle, tmp_path):
    _, other_pub = edgeship.keygen(tmp_path / "other")
    with pytest.raises(edgeship.SecurityError, match="fails its signature check"):
        edgeship.verify_bundle(bundle.folder, other_pub)
    dst = _copy(bundle, tmp_path)
    (dst / "model.sig").unlink()
    with pytest.raises(edgeship.SecurityError, match="is not signed"):
        edgeship.verify_bundle(dst, bundle.public_key)
    with pytest.raises(edgeship.UsageError, match="never replaced"):
        edgeship.keygen(tmp_path / "other")


def test_a_tarball_with_an_escaping_member_is_refused_and_writes_nothing_outside(bundle, tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"owned"
        ti = tarfile.TarInfo("../outside.txt")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    with pytest.raises(edgeship.SecurityError, match=r"climbs out"):
        edgeship.verify_bundle(evil, bundle.public_key)
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_cli_verify_exits_6_naming_the_changed_file(bundle, tmp_path, cli_env):
    dst = _copy(bundle, tmp_path)
    (dst / "MODEL_CARD.md").write_text("# not the card\n")
    run = subprocess.run([sys.executable, "-m", "edgeship", "verify", str(dst), "--key", str(bundle.public_key), "--json"],
                         capture_output=True, text=True, env=cli_env, timeout=120)
    assert run.returncode == 6
    doc = json.loads(run.stdout)
    assert "changed: MODEL_CARD.md" in doc["error"]["message"] and "Traceback" not in run.stderr
    ok = subprocess.run([sys.executable, "-m", "edgeship", "verify", str(bundle.tarball), "--key", str(bundle.public_key)],
                        capture_output=True, text=True, env=cli_env, timeout=120)
    assert ok.returncode == 0 and "signature valid" in ok.stdout


def test_hostile_names_stay_inert_in_the_model_card():
    from edgeship.bundle.card import model_card

    card = model_card({"name": "m`x` <script>", "version": "1.0.0", "release": 1,
                       "source": {"name": "a|b\n# heading", "inputs": [{"name": "in]put", "shape": [1], "dtype": "float32"}]},
                       "artifacts": [], "fallback_order": []})
    assert "<script>" not in card and "\n# heading" not in card and "in\\]put" in card


def test_golden_tensors_are_plain_npy_without_pickles(bundle):
    for p in (bundle.folder / "golden" / "t").iterdir():
        a = np.load(p, allow_pickle=False)
        assert a.dtype != object
    assert os.path.getsize(bundle.folder / "golden" / "golden.json") < 20_000


def test_deploy_ends_with_a_signed_bundle_and_says_where_the_key_is(tmp_path, cli_env):
    run = subprocess.run([sys.executable, "-m", "edgeship", "deploy", "tinymodels:tiny_classifier", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env={**cli_env, "COLUMNS": "80"}, timeout=300)
    assert run.returncode == 0, run.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    b = m["stages"]["bundle"]
    assert b["version"] == "0.1.0" and b["key_created"] and "package" in m["timings_s"]
    words = " ".join(run.stdout.split())  # wrapped at 80 columns
    assert "keep signing-key.pem private" in words and "edgeship verify" in words
    assert all(len(line) <= 80 for line in run.stdout.splitlines())
    assert edgeship.verify_bundle(tmp_path / "o" / b["tarball"], tmp_path / "o" / b["public_key"])["ok"]
    # the same model again, nothing changed: the same release (newcomer item 5)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o")
    assert res.manifest["stages"]["bundle"]["version"] == "0.1.0" and res.manifest["stages"]["bundle"]["unchanged"]
    # with a change (another precision): the next patch version, the same key
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", quantize=["fp16"])
    assert res.manifest["stages"]["bundle"]["version"] == "0.1.1" and not res.manifest["stages"]["bundle"]["key_created"]
    no = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "p", package=False)
    assert "bundle" not in no.manifest["stages"] and not (tmp_path / "p" / "release").exists()


def test_the_python_runtime_degrades_along_the_fallback_order_and_says_why(bundle, tmp_path):
    from edgeship.data import sample_photos
    from edgeship.runtime import Classifier

    coffee = sample_photos()["coffee"]
    dst = _copy(bundle, tmp_path)
    first = Classifier.from_bundle(dst)
    assert first.served_by == "onnx-int8" and first.skipped == []
    top = first.classify(coffee, top_k=1, threshold=0.0)
    # the first artifact gone: the next one serves, and the result says why
    shutil.rmtree(dst / "artifacts" / "onnx-int8")
    second = Classifier.from_bundle(dst)
    assert second.served_by == "onnx-fp32"
    assert second.skipped[0]["artifact"] == "onnx-int8" and "does not load here" in second.skipped[0]["reason"]
    assert second.classify(coffee, top_k=1, threshold=0.0)[0].label == top[0].label
    # an artifact that loads but misses its golden vectors is skipped too
    dst2 = _copy(bundle, tmp_path / "b")
    g = json.loads((dst2 / "golden/golden.json").read_text())
    for files in g["artifacts"]["onnx-int8"]["outputs"].values():
        for f in files:
            np.save(dst2 / f, -np.load(dst2 / f))
    third = Classifier.from_bundle(dst2)
    assert third.served_by == "onnx-fp32" and "fails its golden vectors" in third.skipped[0]["reason"]
    # none left: one error naming each artifact's reason
    shutil.rmtree(dst / "artifacts" / "onnx-fp32")
    with pytest.raises(edgeship.UnsupportedError, match="onnx-int8 does not load here.*onnx-fp32 does not load here"):
        Classifier.from_bundle(dst)


def test_cli_classify_with_a_bundle_says_which_artifact_served(bundle, tmp_path, cli_env):
    import skimage

    photo = os.path.join(os.path.dirname(skimage.__file__), "data", "coffee.png")
    dst = _copy(bundle, tmp_path)
    shutil.rmtree(dst / "artifacts" / "onnx-int8")
    cmd = [sys.executable, "-m", "edgeship", "classify", str(dst), photo, "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["served_by"] == "onnx-fp32" and doc["skipped"][0]["artifact"] == "onnx-int8"
    assert doc["signature"].startswith("not checked") and doc["results"][0]["predictions"]
    # with --key the signature is checked first: the removed folder is named, nothing runs
    run = subprocess.run(cmd + ["--key", str(bundle.public_key)], capture_output=True, text=True, env=cli_env, timeout=300)
    assert run.returncode == 6 and "missing: artifacts/onnx-int8/model.onnx" in json.loads(run.stdout)["error"]["message"]
    with pytest.raises(edgeship.UsageError, match="an artifact has none"):
        edgeship.classify(bundle.folder / "artifacts" / "onnx-fp32", [photo], key=bundle.public_key)


def test_an_artifact_changed_since_deploy_is_not_shipped_and_nothing_is_left(deployed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(deployed, out, ignore=shutil.ignore_patterns("release", "keys"))
    p = out / "onnx-fp32" / "model.onnx"
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(edgeship.FormatError, match="changed since it was written"):
        edgeship.package(out, version="2.0.0", dest=tmp_path / "rel")
    assert not [q for q in (tmp_path / "rel").iterdir() if "2.0.0" in q.name]  # no half-written bundle


def test_an_artifact_that_cannot_run_here_borrows_an_fp32_artifacts_golden_outputs(tmp_path):
    from test_pipeline import CannotRunHere

    edgeship.register_target("norun", CannotRunHere)
    res = edgeship.deploy("tinymodels:tiny_classifier", out=tmp_path / "o", targets=["onnx", "norun"])
    b = res.manifest["stages"]["bundle"]
    g = json.loads((tmp_path / "o" / b["folder"] / "golden" / "golden.json").read_text())
    norun = g["artifacts"]["norun-fp32"]
    assert norun["expected_from"].startswith("onnx-fp32 (this artifact cannot run here: norun artifacts run only on the moon")
    assert norun["tolerance"]["cosine_min"] == 0.999 and "max_abs_rel_to_scale" not in norun["tolerance"]
