"""edgeship serve: an artifact behind HTTP, bad uploads refused with a reason, batching, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from edgeship.cloud import _run_async
from edgeship.serving import ServeConfig, make_app
from servers import free_port, wait_healthy


@pytest.fixture(scope="module")
def png(photo_file) -> bytes:
    return photo_file.read_bytes()


@pytest.fixture(scope="module")
def client(tiny_onnx):
    with TestClient(make_app(tiny_onnx, ServeConfig(max_body_bytes=1 << 20))) as c:
        yield c


def test_classify_an_image_as_an_app_sends_it(client, png, tiny_onnx):
    r = client.post("/v1/classify", content=png, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert len(doc["predictions"]) == 5 and doc["predictions"][0]["label"].startswith("class_")
    scores = [p["score"] for p in doc["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    # the same figures the library gives for the same photo
    from edgeship.runtime import Classifier

    want = Classifier(tiny_onnx).classify(io.BytesIO(png) and _image(png), top_k=5, threshold=0.0)
    assert [p["label"] for p in doc["predictions"]] == [w.label for w in want]
    h = client.get("/healthz").json()
    assert h["ok"] and h["classify"] and h["inputs"][0]["shape"][1:] == [3, 32, 32]


def _image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("body, ctype, status, words", [
    ("truncated", "image/jpeg", 400, "not a decodable image"),
    (b"\x00" * 100, "image/png", 400, "not a decodable image"),
    ("big", "image/png", 413, "at most"),
    (b"{}", "text/plain", 415, "content type"),
    (b"", "image/png", 400, "empty"),
])
def test_a_bad_upload_is_a_4xx_with_its_reason_and_the_server_keeps_serving(client, png, body, ctype, status, words):
    if body == "truncated":
        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").save(buf, "JPEG")
        body = buf.getvalue()[: len(buf.getvalue()) // 2]
    elif body == "big":
        body = b"\xff" * (2 << 20)
    r = client.post("/v1/classify", content=body, headers={"content-type": ctype})
    assert r.status_code == status and words in r.json()["error"], r.text
    ok = client.post("/v1/classify", content=png, headers={"content-type": "image/png"})
    assert ok.status_code == 200


@pytest.mark.parametrize("payload, status, words", [
    ({"inputs": {"image": np.zeros((1, 3, 16, 16)).tolist()}}, 422, "has shape [1, 3, 16, 16]"),
    ({"inputs": {"nope": [1]}}, 422, "no input named 'nope'"),
    ({"inputs": {"image": [["a"]]}}, 422, "not a float32 tensor"),
    ({"wrong": 1}, 422, '{"inputs"'),
    ("not json", 400, "not JSON"),
])
def test_a_bad_tensor_is_a_4xx_with_its_reason(client, payload, status, words):
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    r = client.post("/v1/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and words in r.json()["error"], r.text


def test_infer_takes_json_and_npy_and_gives_the_runtimes_figures(client, tiny_onnx):
    from edgeship.targets import load_artifact, runner_for

    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = runner_for(load_artifact(tiny_onnx)).run([x])[0]
    r = client.post("/v1/infer", json={"inputs": {"image": x.tolist()}})
    assert r.status_code == 200, r.text
    got = np.asarray(next(iter(r.json()["outputs"].values())), np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    buf = io.BytesIO()
    np.save(buf, x)
    r = client.post("/v1/infer", content=buf.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 200 and np.allclose(next(iter(r.json()["outputs"].values())), want, atol=1e-6)
    pickled = io.BytesIO()
    np.save(pickled, np.array([object()], dtype=object), allow_pickle=True)
    r = client.post("/v1/infer", content=pickled.getvalue(), headers={"content-type": "application/x-npy"})
    assert r.status_code == 400  # never unpickled


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(tiny_onnx):
    app = make_app(tiny_onnx, ServeConfig(max_batch=8, max_wait_ms=50))
    xs = [np.random.default_rng(i).normal(size=(1, 3, 32, 32)).astype(np.float32) for i in range(16)]

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as c:
                rs = await asyncio.gather(*[c.post("/v1/infer", json={"inputs": [x.tolist()]}) for x in xs])
                metrics = (await c.get("/metrics")).text
        return rs, metrics

    rs, metrics = _run_async(go())
    from edgeship.targets import load_artifact, runner_for

    runner = runner_for(load_artifact(tiny_onnx))
    for x, r in zip(xs, rs):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(next(iter(r.json()["outputs"].values())), runner.run([x])[0], rtol=1e-4, atol=1e-5)
    calls = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("edgeship_batch_size_count")))
    assert calls < 16, metrics  # some requests shared a model call
    assert 'edgeship_requests_total{route="/v1/infer",status="200"} 16.0' in metrics
    assert "edgeship_queue_wait_seconds_bucket" in metrics and "edgeship_request_seconds_bucket" in metrics




def test_the_cli_serves_and_answers_the_requests_in_flight_before_stopping(tiny_onnx, png, cli_env):
    """SIGTERM while a request waits (here: for a batch to fill, 3 s): it is answered, then the
    server stops."""
    import threading

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeship", "serve", str(tiny_onnx), "--port", str(port),
                             "--max-batch", "4", "--max-wait-ms", "3000"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        got = {}

        def call():
            got["r"] = httpx.post(url + "/v1/classify", content=png, headers={"content-type": "image/png"}, timeout=30)

        t = threading.Thread(target=call)
        t0 = time.monotonic()
        t.start()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert got["r"].status_code == 200 and got["r"].json()["predictions"]
        assert time.monotonic() - t0 >= 2.5  # it waited its batch window out, not cut short
        out, err = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal it handled
        assert "Traceback" not in err and f"http://127.0.0.1:{port}" in err and "POST /v1/classify" in err
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- form uploads (curl -F file=@photo.jpg), naming a bad upload, Ctrl-C ----------------------

@pytest.fixture(params=["python-multipart", "stdlib"])
def form_parser(request, monkeypatch):
    """Both ways a form is parsed: python-multipart (starlette's parser) when installed, else the
    standard library's MIME parser."""
    if request.param == "stdlib":
        monkeypatch.setitem(sys.modules, "python_multipart", None)
    else:
        pytest.importorskip("python_multipart")
    return request.param


def test_a_form_upload_is_classified_like_the_raw_image(client, png, form_parser):
    raw = client.post("/v1/classify", content=png, headers={"content-type": "image/png"})
    want = raw.json()["predictions"]
    # curl -F file=@photo.png: the part named file, beside other fields
    r = client.post("/v1/classify", files={"file": ("photo.png", png, "image/png")}, data={"note": "kitchen"})
    assert r.status_code == 200 and r.json()["predictions"] == want, r.text
    # a part named image, with a content type the client did not know
    r = client.post("/v1/classify", files={"image": ("IMG_0001", png, "application/octet-stream")})
    assert r.status_code == 200 and r.json()["predictions"] == want, r.text
    # any other name: the first file part
    r = client.post("/v1/classify", files={"upload": ("photo.png", png, "image/png")}, data={"a": "b"})
    assert r.status_code == 200 and r.json()["predictions"] == want, r.text
    # the raw body keeps working, and the 415 says a form is taken too
    r = client.post("/v1/classify", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"] and "curl -F file=@" in r.json()["error"]


def test_a_bad_upload_is_named_by_what_arrived_never_an_object_repr(client, png, form_parser):
    r = client.post("/v1/classify", files={"file": ("notes.txt", b"hello world", "text/plain")})
    err = r.json()["error"]
    assert r.status_code == 400 and err.startswith("the uploaded file 'notes.txt' (form field 'file', 11 bytes, "
                                                   "Content-Type text/plain) is not a decodable image"), err
    r = client.post("/v1/classify", content=b"hello world", headers={"content-type": "image/png"})
    err = r.json()["error"]
    assert r.status_code == 400 and err.startswith("the uploaded body (11 bytes, Content-Type image/png) is not"), err
    r = client.post("/v1/classify", files={"file": ("photo.png", png[: len(png) // 2], "image/png")})
    assert r.status_code == 400 and "'photo.png'" in r.json()["error"]
    for err in (client.post("/v1/classify", files={"file": ("x.pdf", b"%PDF-1.4\n" + b"\0" * 64, "application/pdf")}).json()["error"],
                client.post("/v1/classify", content=b"GIF89a" + b"\0" * 20, headers={"content-type": "image/gif"}).json()["error"]):
        assert "0x" not in err and "BytesIO" not in err and " object at " not in err, err
    # a form with no file part, a form that is not one, a part that is empty
    r = client.post("/v1/classify", data={"a": "b"}, files={"x": ("", b"", "")})
    assert r.status_code == 400 and "no image part" in r.json()["error"] and "curl -F file=@" in r.json()["error"]
    r = client.post("/v1/classify", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400 and "not a well-formed multipart/form-data" in r.json()["error"]
    r = client.post("/v1/classify", files={"file": ("empty.jpg", b"", "image/jpeg")})
    assert r.status_code == 400 and "'empty.jpg'" in r.json()["error"] and "empty" in r.json()["error"]
    assert client.post("/v1/classify", content=png, headers={"content-type": "image/png"}).status_code == 200


def test_ctrl_c_stops_the_server_with_a_line_true_of_a_server(tiny_onnx, cli_env):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeship", "serve", str(tiny_onnx), "--port", str(port)],
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "half-written" not in err and "output folder" not in err and err.rstrip().endswith("stopped: the requests in flight were answered")
    # a port that is taken: said, exit 2, no traceback
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        run = subprocess.run([sys.executable, "-m", "edgeship", "serve", str(tiny_onnx), "--port", str(s.getsockname()[1])],
                             env=cli_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "cannot listen on 127.0.0.1:" in run.stderr and "--port" in run.stderr, run.stderr
