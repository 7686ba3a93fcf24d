"""A pipeline's release run from the command line and served: ``edgeship ocr BUNDLE IMAGE...``
(tables that fit 80 columns, --json, unread images reported, a classifier's bundle or a tampered
one refused) and ``edgeship serve BUNDLE`` (``POST /v1/ocr`` answers what ``Pipeline.read`` gives,
bad uploads and the wrong route are 4xx with a reason, /healthz says what is served). One tiny
two-stage pipeline (tests/tinyocr.py) is deployed for the whole module."""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image
from rich.cells import cell_len
from starlette.testclient import TestClient

from edgeship import api
from edgeship.cli.console import SafeConsole
from edgeship.cli.views_ocr import box_extent, print_ocr
from edgeship.runtime import Pipeline
from edgeship.serving import ServeConfig, make_app
from servers import free_port, wait_healthy
from tinyocr import tiny_page

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def shipped(tiny_ocr: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The two-stage pipeline's release (conftest's tiny_ocr), its key and some pages."""
    root = tmp_path_factory.mktemp("ocr-run")
    rec = tiny_ocr["record"]
    pages = []
    for seed in SEEDS:
        pages.append(root / f"page-{seed}.png")
        Image.fromarray(tiny_page(seed)).save(pages[-1])
    bundle = tiny_ocr["bundle"]
    pipe = Pipeline.from_bundle(bundle)
    try:  # what the library reads on each page: every way of running the release must give it
        want = [pipe.read(p).to_dict() for p in pages]
        served = dict(pipe.served_by)
    finally:
        pipe.close()
    assert all(w["lines"] for w in want)  # pages the tiny pipeline finds text on
    return {"bundle": bundle, "key": tiny_ocr["out"] / rec["bundle"]["public_key"], "pages": pages, "want": want,
            "served_by": served}


def ocr(args: list, env: dict, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeship", "ocr", *map(str, args)], capture_output=True, text=True,
                          env={**env, "COLUMNS": str(columns)}, timeout=300)


# ---- edgeship ocr -------------------------------------------------------------------------------

def test_ocr_prints_each_pages_lines_in_80_columns(shipped, cli_env) -> None:
    r = ocr([shipped["bundle"], *shipped["pages"]], cli_env, columns=80)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert all(cell_len(line) <= 80 for line in out.splitlines()), out
    for page, want in zip(shipped["pages"], shipped["want"]):
        n = len(want["lines"])
        assert f"{page}: {n} line{'s' if n != 1 else ''}" in out
        for i, ln in enumerate(want["lines"], 1):  # number, text, score and box extent in one row
            row = next(x for x in out.splitlines() if f" {ln['text']} " in x and box_extent(ln["box"]) in x)
            assert row.split()[1] == str(i) and f"{ln['score']:.3f}" in row, row
    served = ", ".join(f"{k}={v}" for k, v in shipped["served_by"].items())
    assert f"served by {served}" in out and "signature not checked: give --key" in out


def test_ocr_json_is_what_the_pipeline_reads_and_the_key_is_checked(shipped, cli_env) -> None:
    # one thread, as the reference read: more threads may sum a reduced-precision model in another order
    r = ocr([shipped["bundle"], *shipped["pages"], "--json", "--key", shipped["key"], "--threads", "1"], cli_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one document
    assert doc["ok"] is True and doc["bundle"] == str(shipped["bundle"]) and doc["signature"] == "checked"
    assert doc["served_by"] == shipped["served_by"] and doc["skipped"] == []
    assert [x["image"] for x in doc["results"]] == [str(p) for p in shipped["pages"]]
    assert [{"lines": x["lines"], "text": x["text"]} for x in doc["results"]] == shipped["want"]
    # an option ocr does not take is refused by name, before any work
    bad = ocr([shipped["bundle"], shipped["pages"][0], "--top-k", "2"], cli_env)
    assert bad.returncode == 2 and "--top-k" in bad.stderr


def test_an_unreadable_image_is_reported_and_the_others_are_read(shipped, cli_env, tmp_path: Path) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    page = shipped["pages"][0]
    r = ocr([shipped["bundle"], page, notes, tmp_path / "missing.png"], cli_env)
    assert r.returncode == 3, r.stderr  # as classify: the answers shown, then the images not read named
    assert f"{page}: {len(shipped['want'][0]['lines'])} lines" in r.stdout
    assert f"{notes}: not read (see below)" in r.stdout and "missing.png: not read" in r.stdout
    assert "2 of 3 images could not be read" in r.stderr and "notes.png" in r.stderr and "missing.png" in r.stderr
    r = ocr([shipped["bundle"], page, notes, "--json"], cli_env)
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and doc["ok"] is False
    results = doc["error"]["details"]["results"]
    assert results[0]["lines"] == shipped["want"][0]["lines"]
    assert results[1]["image"] == str(notes) and "notes.png" in results[1]["error"]["message"]


def test_a_classifier_bundle_is_sent_to_classify_and_a_pipeline_to_ocr(shipped, tiny_onnx, photo_file, cli_env) -> None:
    clf = next(tiny_onnx.parent.glob("release/*/bundle.json")).parent  # the deploy's own release
    r = ocr([clf, photo_file], cli_env)
    assert r.returncode == 4 and "holds a classifier" in r.stderr and f"edgeship classify {clf} IMAGE" in r.stderr
    r = subprocess.run([sys.executable, "-m", "edgeship", "classify", str(shipped["bundle"]), str(shipped["pages"][0])],
                       capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 4 and "holds a pipeline" in r.stderr and "edgeship ocr" in r.stderr
    r = ocr([tiny_onnx, photo_file], cli_env)  # an artifact folder, not a bundle
    assert r.returncode == 3 and "bundle.json" in r.stderr


def test_a_tampered_bundle_is_refused_with_the_key_before_any_model_runs(shipped, cli_env, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(shipped["bundle"], copy)
    (copy / "characters.txt").write_text("x\n")
    r = ocr([copy, shipped["pages"][0], "--key", shipped["key"], "--json"], cli_env)
    assert r.returncode == 6 and "changed: characters.txt" in json.loads(r.stdout)["error"]["message"], r.stdout
    # a stage no artifact of which loads: named, exit 4
    for d in (copy / "artifacts").glob("rec-*"):
        (d / "artifact.json").write_text("{not json")
    r = ocr([copy, shipped["pages"][0]], cli_env)
    assert r.returncode == 4 and re.search(r"the rec stage: rec-onnx-fp\d+ does not load here", r.stderr), r.stderr


def test_the_tables_fit_80_columns_whatever_the_text(shipped) -> None:
    """Text the tiny models do not make: a word longer than the table, wide characters, a line read
    turned, an empty page, a stage that fell back."""
    first = shipped["want"][0]["lines"][0]
    long_word = "https://example.com/" + "a" * 150
    lines = [first, {**first, "text": f"see {long_word} now", "turned": True}, {**first, "text": "文字認識" * 20}]
    doc = {"results": [{"image": "p.png", "lines": lines}, {"image": "blank.png", "lines": []}],
           "served_by": {"det": "det-onnx-int8", "rec": "rec-onnx-fp32"},
           "skipped": [{"stage": "rec", "artifact": "rec-onnx-int8", "reason": "fails its golden vectors: x"}]}
    buf = io.StringIO()
    print_ocr(SafeConsole(file=buf, width=80), doc, key_checked=True)
    out = buf.getvalue()
    assert all(cell_len(line) <= 80 for line in out.splitlines()), out
    cells = "".join(line.split("│")[2].strip() for line in out.splitlines() if line.count("│") > 3)
    assert long_word in cells and "文字認識" * 20 in cells  # cut across rows, not lost
    assert "turned" in out and "blank.png: no text found" in out and "signature not checked" not in out
    assert "skipped rec-onnx-int8 (rec): fails its golden vectors" in out


# ---- edgeship serve -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(shipped):
    with TestClient(make_app(shipped["bundle"], ServeConfig(max_body_bytes=1 << 20))) as c:
        yield c


def test_the_served_answer_is_what_the_pipeline_reads(client, shipped) -> None:
    for page, want in zip(shipped["pages"], shipped["want"]):
        png = page.read_bytes()
        r = client.post("/v1/ocr", content=png, headers={"content-type": "image/png"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["lines"] == want["lines"] and doc["text"] == want["text"]  # exactly: same floats, same text
        assert doc["served_by"] == shipped["served_by"] and doc["ms"] > 0
        form = client.post("/v1/ocr", files={"file": (page.name, png, "image/png")}, data={"note": "x"})
        assert form.status_code == 200 and form.json()["lines"] == want["lines"]
    h = client.get("/healthz").json()
    assert h["ok"] and h["task"] == "ocr" and h["served_by"] == shipped["served_by"] and h["routes"] == ["/v1/ocr"]
    assert h["stages"] == ["det", "rec"] and h["skipped"] == [] and h["model"] == "tiny-ocr"
    metrics = client.get("/metrics").text
    assert f'edgeship_requests_total{{route="/v1/ocr",status="200"}} {2.0 * len(SEEDS)}' in metrics, metrics


@pytest.mark.parametrize("body, ctype, status, words", [
    (b"hello world", "image/png", 400, "the uploaded body (11 bytes, Content-Type image/png) is not a decodable image"),
    (b"", "image/png", 400, "empty"),
    (b"\xff" * (2 << 20), "image/png", 413, "at most"),
    (b"{}", "application/json", 415, "curl -F file=@"),
    ("form", None, 400, "the uploaded file 'notes.txt' (form field 'file', 5 bytes, Content-Type text/plain)"),
])
def test_a_bad_upload_is_a_4xx_with_its_reason(client, shipped, body, ctype, status, words) -> None:
    if body == "form":
        r = client.post("/v1/ocr", files={"file": ("notes.txt", b"hello", "text/plain")})
    else:
        r = client.post("/v1/ocr", content=body, headers={"content-type": ctype})
    assert r.status_code == status and words in r.json()["error"], r.text
    ok = client.post("/v1/ocr", content=shipped["pages"][0].read_bytes(), headers={"content-type": "image/png"})
    assert ok.status_code == 200  # and the server keeps serving


def test_the_wrong_route_says_which_one_serves(client, shipped, tiny_onnx, photo_file) -> None:
    png = shipped["pages"][0].read_bytes()
    for route in ("/v1/classify", "/v1/infer"):
        r = client.post(route, content=png, headers={"content-type": "image/png"})
        assert r.status_code == 404 and "POST the image to /v1/ocr" in r.json()["error"], r.text
    metrics = client.get("/metrics").text
    assert 'edgeship_requests_total{route="/v1/classify",status="404"}' in metrics
    photo = photo_file.read_bytes()
    with TestClient(make_app(tiny_onnx)) as one:  # one model: /v1/ocr points to /v1/classify
        r = one.post("/v1/ocr", content=photo, headers={"content-type": "image/png"})
        assert r.status_code == 404 and "not a pipeline that reads text: use /v1/classify" in r.json()["error"]
        assert one.get("/healthz").json()["task"] == "class_scores"
    clf = next(tiny_onnx.parent.glob("release/*/bundle.json")).parent
    with TestClient(make_app(clf)) as bundled:  # a classifier's bundle: the artifact its fallback order takes
        h = bundled.get("/healthz").json()
        first = json.loads((clf / "bundle.json").read_text())["fallback_order"][0]
        assert h["served_by"] == first and h["skipped"] == [] and h["routes"] == ["/v1/classify", "/v1/infer"]
        want = [label for label, _ in api.classify_bundle(clf, [photo_file], top_k=3, threshold=0)["results"][0]]
        got = bundled.post("/v1/classify", content=photo, headers={"content-type": "image/png"}).json()["predictions"]
        assert [g["label"] for g in got[:3]] == want
        assert bundled.post("/v1/ocr", content=photo, headers={"content-type": "image/png"}).status_code == 404


def test_the_cli_serves_a_pipeline_and_says_what_it_serves(shipped, cli_env) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeship", "serve", str(shipped["bundle"]), "--port", str(port)],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        r = httpx.post(url + "/v1/ocr", files={"file": ("page.png", shipped["pages"][1].read_bytes(), "image/png")},
                       timeout=60)
        assert r.status_code == 200 and r.json()["lines"] == shipped["want"][1]["lines"], r.text
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    served = ", ".join(f"{k}={v}" for k, v in shipped["served_by"].items())
    assert f"serving tiny-ocr 0.1.0 (ocr pipeline: {served}) at {url} — POST /v1/ocr" in err, err
    assert err.rstrip().endswith("stopped: the requests in flight were answered")
